"""deploy/grafana and deploy/prometheus: the alert rules are well-formed rule groups, the
dashboard's panels all query something, and every metric they read is one the server exports
(tests/integration/test_metrics.py checks them against a running server's scrape)."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pullthrough.api.metrics import storage_families
from pullthrough.metadata.inventory import CacheTotals
from pullthrough.telemetry.metrics import Metrics
from tests.rig.metrics import (
    ALERTS,
    DASHBOARD,
    ROOT,
    alert_queries,
    dashboard_queries,
    metric_names,
)

_DURATION = re.compile(r"^[0-9]+[smhd]$")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names() -> set[str]:
    """The sample names of every metric the server can export, from its own exposition."""
    registry = CollectorRegistry()
    Metrics(registry)
    totals = CacheTotals(repositories=1, manifests=1, tags=1, blobs=1, blob_bytes=1)
    for family in storage_families(totals, cap=10):
        registry.register(_Fixed(family))
    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


class _Fixed:
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1, "{": 1, "}": -1, "[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alert_rules_are_well_formed_rule_groups() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    names = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            names.append(rule["alert"])
            assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
            assert isinstance(rule["expr"], str) and balanced(rule["expr"]), rule["alert"]
            assert _DURATION.match(rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert len(names) == len(set(names))
    # What operators asked to be told about.
    assert {
        "PullthroughUpstreamFailing",
        "PullthroughRateLimitLow",
        "PullthroughStorageNearCap",
        "PullthroughFillsStuck",
    } <= set(names)


def test_scrape_config_names_the_alert_rules_and_a_job() -> None:
    document = yaml.safe_load((ROOT / "deploy" / "prometheus" / "scrape.yml").read_text())
    assert document["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    assert jobs["pullthrough"]["metrics_path"] == "/metrics"
    assert "password_file" in jobs["pullthrough"]["basic_auth"]


def test_dashboard_panels_query_and_use_the_datasource_variable() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] == "pullthrough"
    variables = {v["name"] for v in document["templating"]["list"]}
    assert variables == {"datasource", "rule"}
    panels = [p for p in document["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert balanced(target["expr"]), panel["title"]
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))


def test_every_metric_the_dashboard_and_alerts_read_is_exported() -> None:
    exported = exported_names()
    used = metric_names(dashboard_queries() + alert_queries())
    assert used - exported == set()
    # The dashboard shows the headline figures.
    dashboard = metric_names(dashboard_queries())
    assert {
        "pullthrough_cache_requests_total",
        "pullthrough_served_bytes_total",
        "pullthrough_upstream_ratelimit_remaining",
        "pullthrough_fills_in_progress",
        "pullthrough_storage_bytes",
        "pullthrough_http_request_duration_seconds_bucket",
    } <= dashboard
