"""A scrape of a server's `/metrics`, parsed with prometheus_client's own parser, and the
metric names the Grafana dashboard and the alert rules in deploy/ read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape: (sample name, labels) and value."""

    samples: tuple[tuple[str, dict[str, str], float], ...]
    families: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = []
        families = set()
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            for sample in family.samples:
                samples.append((sample.name, dict(sample.labels), float(sample.value)))
                families.add(sample.name)
        return cls(tuple(samples), frozenset(families))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {have[label] for sample, have, _ in self.samples if sample == name and label in have}


def scrape(url: str, **kwargs: object) -> Scrape:
    """GET `url` (a server's /metrics) and parse it; the response must be a 200."""
    response = httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return Scrape.parse(response.text)


ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "pullthrough.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
_METRIC_NAME = re.compile(r"\bpullthrough_[a-z_]+\b")


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard (panels and variables)."""
    document = json.loads(DASHBOARD.read_text())
    queries = [
        str(target["expr"]) for panel in document["panels"] for target in panel.get("targets", [])
    ]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(str(variable["definition"]))
    return queries


def alert_queries() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [str(rule["expr"]) for group in document["groups"] for rule in group["rules"]]


def metric_names(queries: list[str]) -> set[str]:
    """The pullthrough sample names (`…_total`, `…_bucket`, gauges) the queries read."""
    return {name for query in queries for name in _METRIC_NAME.findall(query)}
