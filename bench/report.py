"""Render the figures as `RESULTS.md`: machine and versions, a summary against the targets,
then one section per measurement with absolute figures and ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.env import Machine, Versions
from bench.images import ImageSet
from bench.measure import MB
from bench.metrics_cost import GOAL as METRICS_GOAL
from bench.metrics_cost import MetricsFigures
from bench.metrics_cost import section as metrics_section
from bench.phases import (
    ColdBlobFigures,
    ColdFigures,
    LogFigures,
    MemoryFigures,
    ServerFigures,
    Settings,
    SlowFigures,
    SwarmFigures,
)
from bench.scaleout import (
    FS,
    ONE_FS,
    ONE_REPLICA,
    S3_REDIRECT,
    S3_STREAM,
    SWIFT,
    THREE_REPLICAS,
    ReplicaFigures,
    S3BlobFigures,
)
from bench.scanning_cost import GOAL as SCANNING_GOAL
from bench.scanning_cost import ScanningFigures
from bench.scanning_cost import section as scanning_section

MiB = 2**20
X = "\u00d7"  # the multiplication sign, for ratios
PT, NGINX, DIST = "pullthrough", "nginx", "distribution proxy"
# A peak that grows by less than this from the small blob to the big one counts as flat.
FLAT_TOLERANCE_MIB = 10.0


@dataclass
class Results:
    machine: Machine
    versions: Versions
    settings: Settings
    quick: bool
    only: tuple[int, ...]
    images: ImageSet | None = None
    warm: dict[str, ServerFigures] = field(default_factory=dict)
    memory: MemoryFigures | None = None
    request_log: LogFigures | None = None
    cold: ColdFigures | None = None
    cold_blob: ColdBlobFigures | None = None
    slow: SlowFigures | None = None
    phase_load: list[tuple[str, float]] = field(default_factory=list)  # 1-min load at start
    swarm: list[SwarmFigures] = field(default_factory=list)
    s3_blobs: S3BlobFigures | None = None
    replicas: list[ReplicaFigures] = field(default_factory=list)
    metrics: MetricsFigures | None = None
    scanning: ScanningFigures | None = None
    duration: float = 0.0
    load_before: float = 0.0  # 1-minute load average when the run started
    load_after: float = 0.0
    foreign_cpu_share: float = 0.0  # of all CPU time during the run, what others used
    failure: str | None = None  # the traceback when a phase failed


@dataclass(frozen=True)
class Verdict:
    measurement: str
    figure: str
    target: str
    met: bool | None  # None: a figure reported without a target
    shortfall: str = ""

    def row(self) -> str:
        if self.met is None:
            status = "reported"
        else:
            status = "met" if self.met else f"**missed** ({self.shortfall})"
        return f"| {self.measurement} | {self.figure} | {self.target} | {status} |"


def _at_least(measurement: str, label: str, value: float, target: float) -> Verdict:
    short = f"{(1 - value / target) * 100:.0f}% below" if value < target else ""
    return Verdict(
        measurement, f"{label}: {value:.2f}{X}", f"≥ {target:g}{X}", value >= target, short
    )


def _at_most(measurement: str, label: str, value: float, target: float, unit: str) -> Verdict:
    over = f"{(value / target - 1) * 100:.0f}% over" if value > target else ""
    return Verdict(
        measurement, f"{label}: {value:.2f}{unit}", f"≤ {target:g}{unit}", value <= target, over
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def _fmt_mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


def verdicts(r: Results) -> list[Verdict]:
    out: list[Verdict] = []
    pt, ng, dist = r.warm.get(PT), r.warm.get(NGINX), r.warm.get(DIST)
    if pt and ng and pt.single and ng.single and pt.parallel and ng.parallel:
        n = r.settings.parallel_clients
        out.append(_at_least("1", "1 client, vs nginx", pt.single.median / ng.single.median, 1.0))
        out.append(
            _at_least("1", f"{n} clients, vs nginx", pt.parallel.median / ng.parallel.median, 1.0)
        )
    if pt and dist:
        for kind in ("GET tag", "HEAD tag"):
            if kind in pt.manifests and kind in dist.manifests:
                ratio = _ratio(
                    pt.manifests[kind].requests_per_second,
                    dist.manifests[kind].requests_per_second,
                )
                out.append(_at_least("2", f"manifest {kind}, vs distribution", ratio, 10))
    if r.request_log and r.request_log.on and r.request_log.off:
        out.append(
            _at_least("2", "manifest GET tag, request log on / off", r.request_log.ratio, 0.9)
        )
    if r.metrics:
        for kind in r.metrics.kinds:
            out.append(
                _at_least("10", f"{kind}, metrics on / off", r.metrics.ratio(kind), METRICS_GOAL)
            )
    if r.scanning:
        for kind in ("cold", "warm"):
            if r.scanning.ratio(kind):
                out.append(
                    _at_most(
                        "11",
                        f"{kind} pull while scanning, vs not",
                        r.scanning.ratio(kind),
                        SCANNING_GOAL,
                        X,
                    )
                )
    if r.cold:
        ratio = r.cold.median(PT) / r.cold.median("direct")
        out.append(_at_most("3", "cold pull time, vs direct", ratio, 1.3, X))
    for s in r.swarm:
        if s.name != PT:
            continue
        worst = max(s.blob_gets.values())
        out.append(
            Verdict(
                "4",
                f"upstream GETs per blob, {s.clients} clients: max {worst}",
                "exactly 1",
                worst == 1 and min(s.blob_gets.values()) == 1,
                f"up to {worst} per blob",
            )
        )
        if s.warm_swarm_seconds:
            out.append(
                _at_most(
                    "4",
                    f"{s.clients} cold pulls vs the same {s.clients} warm",
                    s.swarm_seconds / s.warm_swarm_seconds,
                    1.1,
                    X,
                )
            )
        out.append(
            _reported(
                "4", f"{s.clients} cold pulls vs 1: {s.swarm_seconds / s.single_seconds:.2f}{X}"
            )
        )
    if r.memory:
        cold = [max(v) for k, v in r.memory.peaks.items() if k.startswith("cold")]
        mem = r.memory
        if PT in mem.at_rest:
            rest = mem.at_rest[PT]
            out.append(
                _at_most(
                    "5",
                    f"process tree Pss at rest (Rss {rest.rss_mib:.0f} MiB)",
                    rest.pss_mib,
                    150,
                    " MiB",
                )
            )
        if PT in mem.under_load:
            peak = mem.under_load[PT]
            out.append(
                _at_most(
                    "5",
                    f"process tree Pss, peak under load (Rss {peak.rss_mib:.0f} MiB)",
                    peak.pss_mib,
                    150,
                    " MiB",
                )
            )
        if DIST in mem.at_rest and DIST in mem.under_load:
            out.append(
                _reported(
                    "5",
                    f"distribution Pss at rest / peak: {mem.at_rest[DIST].pss_mib:.0f} / "
                    f"{mem.under_load[DIST].pss_mib:.0f} MiB",
                )
            )
        worker_peak = max(max(v) for v in mem.peaks.values())
        out.append(_reported("5", f"peak RSS per worker: {worker_peak:.1f} MiB"))
        if len(cold) == 2:
            growth = cold[1] - cold[0]
            out.append(
                Verdict(
                    "5",
                    f"peak growth, {_sizes(r)}: {growth:+.1f} MiB",
                    f"flat (< {FLAT_TOLERANCE_MIB:g} MiB)",
                    growth < FLAT_TOLERANCE_MIB,
                    f"{growth:.0f} MiB more",
                )
            )
    out += _scaleout_verdicts(r)
    out += _cold_blob_verdicts(r)
    if r.slow:
        ratio = r.slow.median(PT) / r.slow.median("direct")
        out.append(_at_most("9", "cold pull from a slow upstream, vs direct", ratio, 1.0, X))
        out.append(
            _reported(
                "9",
                "distribution, same pull: "
                f"{r.slow.median(DIST) / r.slow.median('direct'):.2f}{X} direct",
            )
        )
    return out


# Measurement 8's goals: a cold 1 GiB GET within a second, at 1.5x distribution's rate, and a
# fill rate (first to last byte) of at least 1 GB/s.
COLD_BLOB_SECONDS = 1.0
COLD_BLOB_VS_DIST = 1.5
FILL_MBPS = 1000.0


def _cold_blob_verdicts(r: Results) -> list[Verdict]:
    c = r.cold_blob
    if c is None or not c.runs.get(PT) or not c.runs.get(DIST):
        return []
    size = _fmt_mib(c.size)
    seconds = c.median_seconds(PT)
    # The goal is for 1 GiB; a quick run's smaller blob gets the same rate.
    goal = round(COLD_BLOB_SECONDS * c.size / 2**30, 2)
    return [
        _at_most(
            "8",
            f"cold {size} blob GET ({c.median_mbps(PT):.0f} MB/s)",
            seconds,
            goal,
            " s",
        ),
        _at_least(
            "8",
            f"cold {size} blob GET, MB/s vs distribution",
            c.median_mbps(PT) / c.median_mbps(DIST),
            COLD_BLOB_VS_DIST,
        ),
        Verdict(
            "8",
            f"one cold fill rate: {c.median_body_mbps(PT):.0f} MB/s",
            f"≥ {FILL_MBPS:g} MB/s",
            c.median_body_mbps(PT) >= FILL_MBPS,
            f"{(1 - c.median_body_mbps(PT) / FILL_MBPS) * 100:.0f}% below",
        ),
    ]


def _reported(measurement: str, figure: str) -> Verdict:
    return Verdict(measurement, figure, "— (side by side)", None)


def _scaleout_verdicts(r: Results) -> list[Verdict]:
    out: list[Verdict] = []
    b = r.s3_blobs
    if b is not None:
        n = b.clients
        for label, kind in (("1 client", b.single), (f"{n} clients", b.parallel)):
            out.append(
                _reported(
                    "6",
                    f"S3 + redirect / filesystem, {label}: "
                    f"{_ratio(kind[S3_REDIRECT].median, kind[FS].median):.2f}{X}",
                )
            )
    by_name = {f.name: f for f in r.replicas}
    three, one = by_name.get(THREE_REPLICAS), by_name.get(ONE_REPLICA)
    for f in r.replicas:
        if f.name == ONE_FS or not f.runs:
            continue
        out.append(
            Verdict(
                "7",
                f"upstream GETs per blob, {f.name}: max {f.max_blob_gets}",
                "exactly 1",
                f.max_blob_gets == 1 and f.min_blob_gets == 1,
                f"{f.min_blob_gets}-{f.max_blob_gets} per blob",
            )
        )
    if three and one and three.runs and one.runs:
        out.append(
            _reported(
                "7",
                f"{three.clients} cold pulls, 3 replicas / 1: {three.median / one.median:.2f}{X}",
            )
        )
    return out


def _sizes(r: Results) -> str:
    if r.images is None:
        return ""
    return f"{_fmt_mib(r.images.small.total_size)} → {_fmt_mib(r.images.big.total_size)}"


def summary(r: Results) -> str:
    lines = ["| # | figure | target | result |", "|---|---|---|---|"]
    lines += [v.row() for v in verdicts(r)]
    return "\n".join(lines)


def _header(r: Results) -> list[str]:
    m, v, s = r.machine, r.versions, r.settings
    mode = "quick" if r.quick else "full"
    if r.only != (1, 2, 3, 4, 5, 6, 7, 8, 9):
        mode += f", only {','.join(map(str, r.only))}"
    lines = [
        "# pullthrough benchmark results",
        "",
        f"Generated by `python -m bench.run` ({mode} run, {r.duration:.0f} s) on {m.date}. "
        "Everything runs on this one machine over loopback: the servers, the upstream and "
        "the clients share its CPUs. See `bench/README.md` for what each figure means.",
        "",
        *_load_warning(r),
        "| machine | |",
        "|---|---|",
        f"| CPUs (`nproc`) | {m.cpus} |",
        f"| CPU model | {m.cpu_model} |",
        f"| memory | {m.memory} |",
        f"| kernel | {m.kernel} |",
        f"| load average (1 min) at start / end | {r.load_before:.2f} / {r.load_after:.2f} |",
        f"| CPU used by other processes during the run | {r.foreign_cpu_share:.0%} of the "
        "machine |",
        "",
        "| software | version |",
        "|---|---|",
        f"| pullthrough | {v.pullthrough} (`workers: {s.workers}`, request log off) |",
        f"| Python | {v.python} |",
        f"| aiohttp | {v.aiohttp} |",
        f"| distribution (`docker-registry`) | {v.distribution} |",
        f"| nginx | {v.nginx} |",
        f"| wrk (manifest GETs) | {v.wrk} |",
        f"| ab (manifest HEADs) | {v.ab} |",
        f"| curl (blob client) | {v.curl} |",
        "",
    ]
    if r.images is not None:
        i = r.images
        lines += [
            "Images (generated, uncompressed tar layers of random bytes, pushed to the upstream):",
            f"`{i.big.repo}` one {_fmt_mib(i.big.largest.size)} layer; "
            f"`{i.small.repo}` one {_fmt_mib(i.small.largest.size)} layer; "
            f"`{i.cold.repo}` {len(i.cold.blobs) - 1} layers, {_fmt_mib(i.cold.total_size)}; "
            f"`{i.swarm.repo}` {len(i.swarm.blobs) - 1} layers, {_fmt_mib(i.swarm.total_size)}; "
            f"`{i.slow.repo}` {len(i.slow.blobs) - 1} layers, {_fmt_mib(i.slow.total_size)}.",
            "",
        ]
    lines += ["## Summary against the targets", "", summary(r), ""]
    return lines


# Other processes taking more than this share of the machine's CPU make the figures noisy.
BUSY_SHARE = 0.10


def _load_warning(r: Results) -> list[str]:
    """Figures from a machine busy with other work are not comparable: say so up front."""
    if r.foreign_cpu_share <= BUSY_SHARE:
        return []
    return [
        f"**Warning: the machine was busy during this run**: processes other than the "
        f"benchmark's used {r.foreign_cpu_share:.0%} of its CPU time (load average "
        f"{r.load_before:.2f} at the start, on {r.machine.cpus} CPUs). They competed with the "
        "servers and clients, so the figures below are noisy and low; re-run on a quiet machine.",
        "",
    ]


def _throughput_section(r: Results) -> list[str]:
    n = r.settings.parallel_clients
    size = _fmt_mib(r.images.big.largest.size) if r.images else "big"
    lines = [
        f"## 1. Warm blob throughput ({size} blob)",
        "",
        f"MB/s (10^6 bytes/s) of `curl -s -o /dev/null` downloads, median of the repetitions "
        f"(samples in brackets); {n} clients = {n} curl processes at once, total bytes over "
        "wall time. Each server already had the blob (pulled once before); nginx serves the "
        "upstream's blob files with sendfile. All three are up during the phase and the "
        "repetitions alternate between them (only one is loaded at a time), so a change in "
        "the machine's load hits each alike.",
        "",
        f"| server | 1 client | {n} clients | cold fill that warmed it (1 client) |",
        "|---|---|---|---|",
    ]
    for name in (PT, NGINX, DIST):
        f = r.warm.get(name)
        if f is None or f.single is None or f.parallel is None:
            continue
        fill = f"{f.fill_mbps:.0f} MB/s" if f.fill_mbps else "—"
        lines.append(
            f"| {name} | {f.single.median:.0f} {_samples(f.single.samples)} | "
            f"{f.parallel.median:.0f} {_samples(f.parallel.samples)} | {fill} |"
        )
    pt = r.warm.get(PT)
    lines.append("")
    for other in (NGINX, DIST):
        o = r.warm.get(other)
        if pt and o and pt.single and o.single and pt.parallel and o.parallel:
            lines.append(
                f"- pullthrough / {other}: **{pt.single.median / o.single.median:.2f}{X}** "
                f"(1 client), **{pt.parallel.median / o.parallel.median:.2f}{X}** ({n} clients)"
            )
    return [*lines, ""]


def _samples(samples: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{x:.0f}" for x in samples) + "]"


def _manifest_section(r: Results) -> list[str]:
    s = r.settings
    pt, dist = r.warm.get(PT), r.warm.get(DIST)
    lines = [
        "## 2. Warm manifest requests per second",
        "",
        f"GETs: `wrk -t{s.wrk_threads} -c{s.wrk_connections} -d{s.wrk_seconds}s`. HEADs: "
        f"`ab -k -i -c{s.wrk_connections} -t{s.wrk_seconds}` (wrk 4.1 waits for a body after a "
        "HEAD response and never completes one; ab is single-threaded, HTTP/1.0 keep-alive). "
        "Both send an `Accept` header for OCI and Docker manifests, for the cold-pull image's "
        "manifest after one GET warmed it. The load tool runs on the same CPUs as the server: "
        "its CPU use and the server's (all its processes) are shown, 100% = one core. "
        "Both servers are up during the phase, each kind measured on one then the other. "
        "By tag, pullthrough answers from its cache within `tag_ttl`; distribution's proxy "
        "asks its upstream about the tag on every request.",
        "",
        "| request | tool | pullthrough req/s | distribution req/s | ratio | latency avg "
        "(pt / dist) | non-2xx (pt / dist) | server CPU (pt / dist) | tool CPU (pt / dist) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if pt and dist:
        for kind in pt.manifests:
            a, b = pt.manifests[kind], dist.manifests.get(kind)
            if b is None:
                continue
            lines.append(
                f"| {kind} | {a.tool} | {a.requests_per_second:,.0f} | "
                f"{b.requests_per_second:,.0f} | "
                f"**{_ratio(a.requests_per_second, b.requests_per_second):.1f}{X}** | "
                f"{a.latency_avg} / {b.latency_avg} | {a.non_2xx} / {b.non_2xx} | "
                f"{a.server_cpu_percent:.0f}% / {b.server_cpu_percent:.0f}% | "
                f"{a.wrk_cpu_percent:.0f}% / {b.wrk_cpu_percent:.0f}% |"
            )
    log = r.request_log
    if log is not None and log.on and log.off:
        lines += [
            "",
            "**Request log on vs off.** A second pullthrough with its default `log_level: "
            "info` (one JSON access-log line per request, to its stdout, a file) runs beside the "
            "one above (`log_level: warning`); GET by tag with the same wrk settings, the runs "
            "alternating off, on, on, off, off, on…:",
            "",
            "| request log | req/s per run | median | server CPU (median) |",
            "|---|---|---|---|",
        ]
        for label, runs in (("off (`warning`)", log.off), ("on (`info`, default)", log.on)):
            rates = [x.requests_per_second for x in runs]
            cpu = statistics.median(x.server_cpu_percent for x in runs)
            lines.append(
                f"| {label} | {', '.join(f'{x:,.0f}' for x in rates)} | "
                f"{statistics.median(rates):,.0f} | {cpu:.0f}% |"
            )
        lines += ["", f"- log on / log off: **{log.ratio:.2f}{X}** (goal ≥ 0.9{X})."]
    return [*lines, ""]


def _cold_section(r: Results) -> list[str]:
    c = r.cold
    if c is None:
        return []
    lines = [
        f"## 3. Cold pull of a {len(c.image.blobs) - 1}-layer image "
        f"({_fmt_mib(c.image.total_size)})",
        "",
        f"Manifest, then config and layers {r.settings.pull_parallel} at a time (an aiohttp "
        "client in its own process, bodies read and dropped). Every pullthrough and distribution "
        "run starts with an empty cache; median seconds (samples in brackets).",
        "",
        "| through | seconds | MB/s | vs direct |",
        "|---|---|---|---|",
    ]
    direct = c.median("direct")
    for target in ("direct", PT, DIST):
        t = c.median(target)
        samples = "[" + ", ".join(f"{x:.2f}" for x in c.seconds[target]) + "]"
        lines.append(
            f"| {target} | {t:.2f} {samples} | {c.image.total_size / t / MB:.0f} | "
            f"**{t / direct:.2f}{X}** |"
        )
    return [*lines, ""]


def _swarm_section(r: Results) -> list[str]:
    if not r.swarm:
        return []
    first = r.swarm[0]
    lines = [
        f"## 4. {first.clients} concurrent cold pulls of one image",
        "",
        "A counting proxy (`tests.rig.proxy.CountingProxy`, Python) sits between the cache and "
        "the upstream. The single pull and the concurrent pulls each start with an empty cache; "
        f"all {first.clients} clients start together in one client process, each with its own "
        "connections, pulling layers 3 at a time.",
        "",
        "| cache | 1 pull (s) | all pulls (s) | ratio | upstream GETs per blob (min-max, total) "
        "| manifest GETs | other upstream requests | last client's first byte (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r.swarm:
        gets = s.blob_gets.values()
        first_byte = "-" if s.first_byte_max is None else f"{s.first_byte_max:.2f}"
        lines.append(
            f"| {s.name} | {s.single_seconds:.2f} | {s.swarm_seconds:.2f} | "
            f"**{s.swarm_seconds / s.single_seconds:.2f}{X}** | {min(gets)}-{max(gets)} "
            f"({sum(gets)} for {len(s.blob_gets)} blobs) | {s.manifest_gets} | "
            f"{s.other_requests} | {first_byte} |"
        )
    for s in r.swarm:
        if s.warm_swarm_seconds:
            lines += [
                "",
                f"The same {s.clients} pulls through {s.name} once warm take "
                f"{s.warm_swarm_seconds:.2f} s: on loopback, where the upstream is as fast as "
                f"the cache, that is the floor for the cold run "
                f"(cold / warm = {s.swarm_seconds / s.warm_swarm_seconds:.2f}{X}).",
            ]
    return [*lines, ""]


def _memory_section(r: Results) -> list[str]:
    mem = r.memory
    if mem is None:
        return []
    lines = [
        "## 5. Memory: pullthrough's process tree, and peak RSS per worker",
        "",
        "VmHWM of each worker process (children of `pullthrough serve`), reset with "
        "`echo 5 > /proc/<pid>/clear_refs` before each step"
        + ("" if mem.reset_worked else " (**the reset failed**: peaks are cumulative)")
        + ". MiB.",
        "",
        "| step | " + " | ".join(f"worker {i + 1}" for i in range(len(mem.baseline))) + " |",
        "|---|" + "---|" * len(mem.baseline),
        "| at rest after start (VmRSS) | " + " | ".join(f"{x:.1f}" for x in mem.baseline) + " |",
    ]
    for label, values in mem.peaks.items():
        lines.append(f"| {label} | " + " | ".join(f"{x:.1f}" for x in values) + " |")
    if mem.at_rest:
        lines += [
            "",
            "The whole process tree (pullthrough: `pullthrough serve` and its workers; "
            "distribution: its one process), summed from `/proc/<pid>/smaps_rollup`: at rest one "
            "second after the start, and the peak of samples taken every 0.1 s through the rest "
            "of the phase (the cold fills, the warming GETs, the warm downloads by 1 then "
            f"{r.settings.parallel_clients} clients). Pss divides each shared page among the "
            "processes that map it, so its sum is what the tree costs the machine; Rss counts "
            "shared pages (interpreter, libraries) once per process. MiB; goal for pullthrough's "
            "Pss: ≤ 150 MiB at rest and under load.",
            "",
            "| server | processes | Pss at rest | Rss at rest | Pss peak under load | "
            "Rss at that peak |",
            "|---|---|---|---|---|---|",
        ]
        for name, rest in mem.at_rest.items():
            peak = mem.under_load.get(name)
            loaded = f"{peak.pss_mib:.1f} | {peak.rss_mib:.1f}" if peak else "— | —"
            lines.append(
                f"| {name} | {rest.processes} | {rest.pss_mib:.1f} | {rest.rss_mib:.1f} | "
                f"{loaded} |"
            )
    return [*lines, ""]


def _cold_blob_section(r: Results) -> list[str]:
    c = r.cold_blob
    if c is None or not c.runs.get(PT):
        return []
    lines = [
        f"## 8. Cold {_fmt_mib(c.size)} blob GET",
        "",
        "One `curl -s -o /dev/null` of the big blob through a cache started empty for each run "
        "(pullthrough, then distribution's proxy, alternating; median of "
        f"{len(c.runs[PT])}). Seconds to the last byte, MB/s over that time, and the fill "
        "rate: bytes over the time from the first body byte to the last (the cache streams "
        "the blob to the client as it receives it, so this is the fill's own rate).",
        "",
        "| cache | seconds per run | median s | MB/s | time to first byte (median) | "
        "fill rate, MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in c.runs.items():
        if not runs:
            continue
        first = statistics.median(g.first_byte for g in runs)
        lines.append(
            f"| {name} | {', '.join(f'{g.total:.2f}' for g in runs)} | "
            f"{c.median_seconds(name):.2f} | {c.median_mbps(name):.0f} | {first * 1000:.0f} ms | "
            f"{c.median_body_mbps(name):.0f} |"
        )
    if c.runs.get(DIST):
        lines += [
            "",
            f"- pullthrough / distribution, MB/s: "
            f"**{c.median_mbps(PT) / c.median_mbps(DIST):.2f}{X}** (goal ≥ "
            f"{COLD_BLOB_VS_DIST:g}{X}); goal for pullthrough: ≤ {COLD_BLOB_SECONDS:g} s per GiB "
            "and a "
            f"fill rate ≥ {FILL_MBPS:g} MB/s.",
        ]
    return [*lines, "", *_cold_blob_cpu(r)]


def _cold_blob_cpu(r: Results) -> list[str]:
    """What each download cost in CPU, and the least time any verifying cache could take."""
    c = r.cold_blob
    if c is None or not c.cpu.get("direct") or not c.cpu.get(PT) or not c.cpu.get(DIST):
        return []
    cpus = r.machine.cpus
    lines = [
        "CPU seconds (user + system) each download cost, median of the runs: the cache's "
        "processes, the upstream registry and curl, read from `/proc` before and after; "
        "*direct* is curl downloading the blob from the upstream itself, once after each pair "
        "of runs.",
        "",
        "| download | cache | upstream | curl | total | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("direct", PT, DIST):
        cpu = c.median_cpu(name)
        seconds = f"{c.median_seconds(name):.2f}" if c.runs.get(name) else "—"
        lines.append(
            f"| {name} | {cpu.cache:.2f} | {cpu.upstream:.2f} | {cpu.client:.2f} | "
            f"{cpu.total:.2f} | {seconds} |"
        )
    floor = c.floor_seconds(cpus)
    target = c.median_seconds(DIST) / COLD_BLOB_VS_DIST
    lines += [
        "",
        f"sha256 of {_fmt_mib(c.size)} on one core, in memory: {c.sha256_seconds:.2f} s. A "
        "download through a cache that verifies what it serves costs at least the direct "
        f"download's CPU ({c.median_cpu('direct').total:.2f} s), plus the cache receiving the "
        "bytes (at least what curl pays doing nothing else, "
        f"{c.median_cpu('direct').client:.2f} s) and sending them (at least what the upstream "
        f"pays, sending from its page cache with sendfile, {c.median_cpu('direct').upstream:.2f}"
        f" s), plus the sha256: {c.floor_cpu():.2f} s of CPU, so on {cpus} cores no such cache "
        f"can finish in less than **{floor:.2f} s**, before it stores a byte. "
        f"{COLD_BLOB_VS_DIST:g}{X} distribution's rate in this run means **{target:.2f} s**"
        + (
            ": below that floor, so out of reach on this machine for any cache that verifies."
            if target < floor
            else "."
        )
        + f" distribution's proxy took {c.median_seconds(DIST) / floor:.2f}{X} that floor, "
        f"pullthrough {c.median_seconds(PT) / floor:.2f}{X}.",
        "",
    ]
    return lines


def _slow_section(r: Results) -> list[str]:
    w = r.slow
    if w is None:
        return []
    lines = [
        f"## 9. Cold pull from a slow upstream ({len(w.image.blobs) - 1} layers, "
        f"{_fmt_mib(w.image.total_size)})",
        "",
        "The upstream sits behind the test rig's proxy (`tests.rig.proxy.CountingProxy`, in the "
        f"harness process) set to wait {w.delay * 1000:.0f} ms before forwarding every request "
        f"and to pace every blob response at most {w.rate / MB:.0f} MB/s (one response at a "
        "time per connection, so per connection): a registry across a network. The client "
        f"pulls the manifest, then config and layers {r.settings.pull_parallel} at a time, "
        "directly through the slow proxy, through pullthrough and through distribution's proxy "
        "(both with the slow proxy as their upstream, each empty at the start of every run); "
        "the runs alternate between the three. Median seconds (samples in brackets); upstream "
        "requests and the most GETs of one blob are those of the last run.",
        "",
        "| through | seconds | MB/s | vs direct | upstream requests | max GETs per blob |",
        "|---|---|---|---|---|---|",
    ]
    direct = w.median("direct")
    for name, samples in w.seconds.items():
        if not samples:
            continue
        t = w.median(name)
        lines.append(
            f"| {name} | {t:.2f} [{', '.join(f'{x:.2f}' for x in samples)}] | "
            f"{w.image.total_size / t / MB:.0f} | **{t / direct:.2f}{X}** | "
            f"{w.upstream_requests.get(name, 0)} | {w.max_blob_gets.get(name, 0)} |"
        )
    lines += [
        "",
        f"Goal: pullthrough ≤ 1.0{X} direct. A cache can beat the direct pull here only by "
        "fetching more than the client asks for at once (pullthrough's eager fill of an "
        "image's layers when its manifest is fetched: `eager_fill`, on by default).",
    ]
    return [*lines, ""]


def _phase_load_section(r: Results) -> list[str]:
    if not r.phase_load:
        return []
    lines = [
        "## Machine load per phase",
        "",
        "1-minute load average when each phase started (the benchmark's own processes "
        f"included; {r.machine.cpus} CPUs).",
        "",
        "| phase | load average |",
        "|---|---|",
    ]
    lines += [f"| {title} | {load:.2f} |" for title, load in r.phase_load]
    return [*lines, ""]


def _s3_blob_section(r: Results) -> list[str]:
    b = r.s3_blobs
    if b is None:
        return []
    n = b.clients
    lines = [
        f"## 6. Warm blob throughput on S3 ({_fmt_mib(b.size)} blob)",
        "",
        "The same blob, warm, downloaded with `curl -L -s -o /dev/null` (MB/s, median of the "
        f"repetitions, samples in brackets; {n} clients = {n} curl processes at once) from "
        "pullthrough on the filesystem; from pullthrough with `storage.url: s3://…` streaming "
        "the object from the bucket; from pullthrough with `redirect_blobs: true`, which "
        "answers 307 to a presigned URL that curl follows, so the bytes come from the object "
        "store; and from that presigned URL fetched directly (the object store's own ceiling). "
        "The object store is the test rig's S3 server: OpenStack Swift with its s3api "
        "middleware (`tests/rig/s3server.py`), one proxy server process and one object server "
        "process, both Python (eventlet), on the same CPUs as everything else, the object on "
        "the same disk. The three pullthroughs run at once (one bucket, a prefix each), each "
        "warmed by its own cold fill; the repetitions alternate between the four sources.",
        "",
        f"| source | 1 client | {n} clients | cold fill that warmed it (1 client) |",
        "|---|---|---|---|",
    ]
    for name in (FS, S3_STREAM, S3_REDIRECT, SWIFT):
        single, parallel = b.single.get(name), b.parallel.get(name)
        if single is None or parallel is None:
            continue
        fill = f"{b.fill_mbps[name]:.0f} MB/s" if name in b.fill_mbps else "—"
        lines.append(
            f"| {name} | {single.median:.0f} {_samples(single.samples)} | "
            f"{parallel.median:.0f} {_samples(parallel.samples)} | {fill} |"
        )
    lines.append("")
    for a, c, label in (
        (S3_REDIRECT, FS, "S3 + redirect / filesystem"),
        (S3_STREAM, FS, "S3 streamed / filesystem"),
        (S3_REDIRECT, SWIFT, "S3 + redirect / Swift directly"),
    ):
        lines.append(
            f"- {label}: **{_ratio(b.single[a].median, b.single[c].median):.2f}{X}** (1 client), "
            f"**{_ratio(b.parallel[a].median, b.parallel[c].median):.2f}{X}** ({n} clients)"
        )
    if b.redirect_ms is not None:
        head = ""
        if b.head_ms is not None:
            head = (
                " A HEAD of the same blob on the same server, answered from its metadata alone, "
                f"took {b.head_ms:.1f} ms"
            )
            if b.store_head_ms is not None:
                head += (
                    ", and a signed HEAD of the object sent to Swift directly (one "
                    f"connection) {b.store_head_ms:.1f} ms"
                )
            head += "."
        lines.append(
            f"- The 307 itself: {b.redirect_ms:.1f} ms per answer (median of 20 GETs on one "
            "connection). Like every hit on S3, it reads the blob's metadata row, then checks "
            "the object's size with a HEAD request to the bucket, then signs the URL locally "
            f"(a fraction of a millisecond).{head}"
        )
    s1, sn = b.single[SWIFT].median, b.parallel[SWIFT].median
    streamed = _ratio(b.single[S3_STREAM].median, b.single[S3_REDIRECT].median)
    because = (
        "close to it because Swift, not pullthrough, is the slower part of that path."
        if streamed >= 0.8
        else "below it: pullthrough's worker adds its own cost on the same cores."
    )
    lines += [
        "",
        "What bounds each:",
        "",
        "- *Filesystem*: `sendfile` from the page cache, as in measurement 1: the kernel's copy "
        "and curl's reads on 2 cores.",
        "- *Swift directly*: the object was uploaded in 8 MiB parts, which s3api keeps as the "
        "segments of a Swift large object. Swift's proxy server (one Python process under "
        "eventlet here: the rig's `workers = 0`) fetches each segment from the object server "
        "(another Python process) over HTTP and writes it on to the client in 64 KiB chunks, "
        f"so two Python processes handle every byte: {s1:.0f} MB/s to one client, {sn:.0f} "
        f"MB/s to {n} at once (one proxy process: more clients share it).",
        "- *S3 + redirect*: pullthrough answers the 307 and the bytes never pass through it, so "
        "this follows Swift directly; the ratio to Swift is the redirect's extra round trip "
        "plus the machine's noise (both draw from the same Swift).",
        "- *S3 streamed*: every byte crosses Swift's two processes and then a pullthrough "
        "worker (aiobotocore's response body read in 1 MiB chunks and written to the client): "
        "three Python processes per byte on 2 cores.",
        "",
        "So the S3 figures are this machine's single-node Swift, not what S3 serves: a real "
        "object store serves from many machines. What the redirect changes is that "
        f"pullthrough's CPU leaves the byte path. Streamed got {streamed:.2f}{X} the "
        f"redirected rate here (1 client), {because} On an object store faster than one "
        "Python process, redirected downloads are bounded by the store, not by the replicas; "
        "this machine cannot show that.",
    ]
    return [*lines, ""]


def _replica_section(r: Results) -> list[str]:
    if not r.replicas:
        return []
    by_name = {f.name: f for f in r.replicas}
    first = r.replicas[0]
    image = r.images.cold if r.images else None
    size = image.total_size if image else 0
    layers = f", {len(image.blobs) - 1} layers, {_fmt_mib(size)}" if image else ""
    lines = [
        f"## 7. Cold pull over replicas ({first.clients} clients at once{layers})",
        "",
        f"{first.clients} clients start together (one client process, each with its own "
        f"connections, layers {r.settings.pull_parallel} at a time, as in measurement 4) "
        "against nginx (the test rig's configuration: round-robin, unbuffered, keepalive, one "
        "worker) in front of: 3 pullthrough replicas sharing one PostgreSQL database (the "
        "machine's, a fresh database each run, `pullthrough migrate` first) and one S3 bucket "
        "(the Swift of measurement 6, a fresh bucket each run), blobs streamed (no redirect); "
        "1 such replica; and 1 pullthrough on its default filesystem + SQLite. Every replica "
        f"has `workers: {r.settings.workers}`, as each would on a machine of its own. A counting "
        "proxy sits between them and the upstream. Every run starts with an empty cache; "
        "seconds until the last client is done, median of the runs (samples in brackets).",
        "",
        "| through nginx | seconds | MB/s delivered | vs 1 replica | upstream GETs per blob "
        "(min-max, total) | manifest GETs | blob GETs per replica | last client's first "
        "byte (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    one = by_name.get(ONE_REPLICA)
    for f in r.replicas:
        if not f.runs:
            continue
        last = f.runs[-1]
        gets = [g for run in f.runs for g in run.blob_gets.values()]
        total = sum(last.blob_gets.values())
        served = ", ".join(str(c) for _, c in sorted(last.served.items())) or "—"
        first_byte = max((x.slowest_first_byte or 0.0 for x in f.runs), default=0.0)
        versus = f"**{f.median / one.median:.2f}{X}**" if one and one.runs else "—"
        delivered = f.clients * size / f.median / MB if size else 0.0
        lines.append(
            f"| {f.name} | {f.median:.2f} {_seconds(f)} | {delivered:.0f} | {versus} | "
            f"{min(gets)}-{max(gets)} ({total} for {len(last.blob_gets)} blobs) | "
            f"{last.manifest_gets} | {served} | {first_byte:.2f} |"
        )
    three, fs = by_name.get(THREE_REPLICAS), by_name.get(ONE_FS)
    lines.append("")
    if three and one and three.runs and one.runs:
        lines.append(
            f"- 3 replicas / 1 replica: **{three.median / one.median:.2f}{X}** the time "
            "(above 1: slower)."
        )
    if one and fs and one.runs and fs.runs:
        lines.append(
            f"- 1 replica on PostgreSQL + S3 / 1 on the filesystem + SQLite: "
            f"**{one.median / fs.median:.2f}{X}** the time. Both serve their clients from the "
            "local spool while the fill downloads; on S3 the fill also sends every byte to "
            "Swift as a multipart upload (8 MiB parts, then Swift's two Python processes "
            "write them), on the same cores."
        )
    if three and one and three.runs and one.runs:
        slow3 = max(x.slowest_first_byte or 0.0 for x in three.runs)
        slow1 = max(x.slowest_first_byte or 0.0 for x in one.runs)
        lines.append(
            f"- The last client to receive a first blob byte got it {slow3:.2f} s after the "
            f"start through 3 replicas, {slow1:.2f} s through 1 (the clients of a replica that "
            "does not lead a blob's fill are served by a stream from the replica that does)."
        )
    lines += [
        "",
        "Blob GETs per replica are those of the last run, from nginx's access log; upstream "
        "GETs per blob count every run. What this shows and what it does not: all replicas, "
        "nginx, PostgreSQL, Swift, the upstream, the counting proxy and the clients share this "
        "machine's 2 cores, so 3 replicas have no more CPU to work with than 1: they add "
        "processes competing for the same cores, and a blob that one replica fills reaches the "
        "clients of the other two through a second hop (the filling replica streams it to its "
        "peers over HTTP while it downloads), which costs CPU on the same cores. "
        + _replica_outcome(three, one)
        + " The figure is the cost of spreading one cold pull over replicas on one machine, "
        "and the check that it stays one upstream GET per blob; what 3 replicas on 3 machines "
        "(each with its own cores, disk and NIC) would give is not measured here.",
    ]
    return [*lines, ""]


def _replica_outcome(three: ReplicaFigures | None, one: ReplicaFigures | None) -> str:
    """What the 3 / 1 ratio of this run says, against the spread of its samples."""
    if not (three and one and three.runs and one.runs):
        return ""
    ratio = three.median / one.median
    spreads = [
        (max(s) - min(s)) / statistics.median(s) * 100
        for f in (three, one)
        if len(s := [run.seconds for run in f.runs]) > 1
    ]
    noise = (
        f"the runs of one target spread by up to {max(spreads):.0f}% of their median"
        if spreads
        else "one run each, so no spread was measured"
    )
    if ratio >= 1:
        return (
            f"Here 3 replicas took {ratio:.2f}{X} the time of 1 ({noise}): that is the price "
            "of the extra processes and hops on the same cores."
        )
    return (
        f"Here 3 replicas took {ratio:.2f}{X} the time of 1 ({noise}); with no more CPU "
        "behind them that is not capacity gained: it is noise, or three times the worker "
        "processes overlapping their waits on the same cores."
    )


def _seconds(f: ReplicaFigures) -> str:
    return "[" + ", ".join(f"{run.seconds:.2f}" for run in f.runs) + "]"


def _why(r: Results) -> list[str]:
    """For each missed target, the evidence this run measured about the reason."""
    missed = {v.measurement for v in verdicts(r) if v.met is False}
    notes: list[str] = []
    pt, dist = r.warm.get(PT), r.warm.get(DIST)
    if "1" in missed and pt and pt.single and pt.parallel:
        spread = [
            (max(t.samples) - min(t.samples)) / t.median * 100
            for f in r.warm.values()
            for t in (f.single, f.parallel)
            if t is not None and t.median
        ]
        notes.append(
            "- **1.** Warm blobs go out through aiohttp's `FileResponse` (`sendfile`), as "
            "nginx's do; the curl clients share the 2 cores with the server. Samples of one "
            f"server spread by up to {max(spread, default=0):.0f}% of their median in this run: "
            "a gap smaller than that is noise, not a difference between the servers."
        )
    rates_missed = any(
        v.measurement == "2" and v.met is False and "vs distribution" in v.figure
        for v in verdicts(r)
    )
    if rates_missed and pt:
        for kind, result in pt.manifests.items():
            if result.requests_per_second:
                ms = result.server_cpu_percent / 100 / result.requests_per_second * 1000
                notes.append(
                    f"- **2.** {kind}: pullthrough's workers used {result.server_cpu_percent:.0f}% "
                    f"CPU (of {r.machine.cpus * 100}%) for {result.requests_per_second:,.0f} "
                    f"req/s, i.e. **{ms:.2f} ms of CPU per cached manifest request**; the load "
                    f"tool used {result.wrk_cpu_percent:.0f}%."
                )
        if dist and "GET tag" in dist.manifests:
            d = dist.manifests["GET tag"]
            notes.append(
                f"  distribution answered {d.requests_per_second:,.0f} req/s by tag here (one "
                "upstream request per GET). See *Profiling notes* in `bench/README.md` for where "
                "pullthrough's time went when this was last profiled."
            )
    if "3" in missed and r.cold:
        direct = r.cold.image.total_size / r.cold.median("direct") / MB
        fill = pt.fill_mbps if pt and pt.fill_mbps else None
        notes.append(
            f"- **3.** Direct, the client read the image at {direct:.0f} MB/s. "
            + (
                f"One cold blob filled through one pullthrough worker at {fill:.0f} MB/s "
                "(measurement 1's warming fill). The bytes no longer pass through Python on "
                "their way to clients (sendfile from the spool file, the head from memory), but "
                "a fill still costs the worker ~2 s of CPU per GiB (receive and aiohttp's copy, "
                "sha256, page-cache writes of the spool file, the send), on the 2 cores the "
                "upstream and the client also use: see *Profiling notes* in `bench/README.md` "
                "and measurement 8's CPU table. "
                if fill
                else ""
            )
            + f"distribution's proxy took {r.cold.median(DIST) / r.cold.median('direct'):.2f}"
            f"{X} direct."
        )
    for s in r.swarm:
        if s.name == PT and "4" in missed and r.images is not None:
            size = r.images.swarm.total_size
            line = (
                f"- **4.** The {s.clients} clients receive {s.clients} {X} {_fmt_mib(size)} = "
                f"{s.clients * size / 2**30:.1f} GiB over loopback, against {_fmt_mib(size)} "
                "for the single pull: on 2 cores serving those bytes dominates."
            )
            if s.warm_swarm_seconds:
                line += (
                    f" The same {s.clients} pulls with everything cached took "
                    f"{s.warm_swarm_seconds:.2f} s = {s.warm_swarm_seconds / s.single_seconds:.1f}"
                    f"{X} a single cold pull: that is this machine's floor, and the cold run was "
                    f"{s.swarm_seconds / s.warm_swarm_seconds:.2f}{X} of it."
                )
            if max(s.blob_gets.values()) > 1:
                line += (
                    f" Upstream GETs per blob reached {max(s.blob_gets.values())}: concurrent "
                    "fills were not all coalesced (across worker processes, most likely)."
                )
            notes.append(line)
    c = r.cold_blob
    if "8" in missed and c is not None and c.runs.get(PT) and c.runs.get(DIST):
        notes.append(
            f"- **8.** Through an empty pullthrough the first byte came after "
            f"{statistics.median(g.first_byte for g in c.runs[PT]) * 1000:.0f} ms and the bytes "
            f"then flowed at {c.median_body_mbps(PT):.0f} MB/s; distribution's proxy streamed "
            f"the same blob at {c.median_body_mbps(DIST):.0f} MB/s. The fill rate, not the "
            "start, sets the time of a big blob, and it is bound by CPU on this machine: see "
            "*Profiling notes* in `bench/README.md` for where the CPU goes."
            + (
                f" The CPU table of measurement 8: sending the bytes twice (the upstream, the "
                f"cache), receiving them twice (the cache, curl) and hashing them alone take "
                f"{c.floor_seconds(r.machine.cpus):.2f} s on "
                f"{r.machine.cpus} cores, against the "
                f"{c.median_seconds(DIST) / COLD_BLOB_VS_DIST:.2f} s that "
                f"{COLD_BLOB_VS_DIST:g}{X} distribution's rate asks."
                if c.cpu.get("direct")
                else ""
            )
        )
    log = r.request_log
    if "2" in missed and log is not None and log.on and log.off:
        per_request = [
            statistics.median(
                x.server_cpu_percent / 100 / x.requests_per_second * 1000 for x in runs
            )
            for runs in (log.off, log.on)
        ]
        notes.append(
            f"- **2.** Request log: {per_request[0]:.2f} ms of server CPU per manifest GET with "
            f"the log off, {per_request[1]:.2f} ms with it on: the difference is what writing "
            "one access-log line costs."
        )
    w = r.slow
    if "9" in missed and w is not None and w.seconds.get(PT):
        notes.append(
            f"- **9.** Through pullthrough the pull made {w.upstream_requests.get(PT, 0)} "
            f"upstream requests, directly {w.upstream_requests.get('direct', 0)}, each waiting "
            f"{w.delay * 1000:.0f} ms. Beating the direct pull needs the cache to fetch layers "
            "ahead of the client's requests (eager fill) and to pass them on at least as fast "
            "as it receives them."
        )
    if "7" in missed:
        for f in r.replicas:
            if f.name != ONE_FS and f.runs and f.max_blob_gets != 1:
                notes.append(
                    f"- **7.** Through {f.name}, upstream GETs per blob ranged "
                    f"{f.min_blob_gets}-{f.max_blob_gets}: a blob's fill was not held to one "
                    "download across the replicas (the lease, or a peer stream that failed and "
                    "fell back to upstream)."
                )
    if not notes:
        return []
    return ["## Where targets were missed, and why", "", *notes, ""]


def render(r: Results) -> str:
    lines = _header(r)
    if r.failure:
        lines += ["## The run failed", "", "```", r.failure.rstrip()[-4000:], "```", ""]
    lines += _why(r)
    lines += _throughput_section(r)
    lines += _manifest_section(r)
    lines += _cold_section(r)
    lines += _swarm_section(r)
    lines += _memory_section(r)
    lines += _s3_blob_section(r)
    lines += _replica_section(r)
    lines += _cold_blob_section(r)
    lines += _slow_section(r)
    lines += metrics_section(r.metrics)
    lines += scanning_section(r.scanning)
    lines += _phase_load_section(r)
    return "\n".join(lines).rstrip() + "\n"
