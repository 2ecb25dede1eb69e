// The overview's charts: uPlot over the JSON the page carries (#chart-data), sized to its box.
(function () {
  "use strict";
  function units(value) {
    const names = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(value) >= 1024 && i < names.length - 1) { value /= 1024; i++; }
    return (i ? value.toFixed(1) : String(Math.round(value))) + " " + names[i];
  }
  function draw() {
    const source = document.getElementById("chart-data");
    if (!source || typeof uPlot === "undefined") return;
    const data = JSON.parse(source.textContent);
    const charts = [
      ["chart-requests", [["hits", "#1a7f37"], ["misses", "#c62828"]], (v) => String(v)],
      ["chart-bytes", [["bytes_from_cache", "#1f6feb"], ["bytes_from_upstream", "#b26b00"]], units],
    ];
    for (const [id, series, format] of charts) {
      const box = document.getElementById(id);
      if (!box) continue;
      box.textContent = "";
      const width = Math.max(200, box.clientWidth);
      const options = {
        width: width,
        height: Math.round(Math.min(260, Math.max(160, width * 0.45))),
        series: [{}].concat(series.map(([name, color]) => ({
          label: name.replace(/_/g, " "), stroke: color, width: 2, fill: color + "22",
          value: (u, v) => (v == null ? "—" : format(v)),
        }))),
        axes: [{}, { values: (u, ticks) => ticks.map(format), size: 70 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      };
      new uPlot(options, [data.x].concat(series.map(([name]) => data[name])), box);
    }
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  let pending;
  window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(draw, 200); });
})();
