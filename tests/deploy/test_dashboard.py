"""The Grafana dashboard ConfigMap (deploy/components/monitoring/dashboard.yaml), read as the
file itself: a valid ConfigMap the Grafana sidecar picks up, holding a dashboard with the
panels the operators asked for, every one of whose metrics a running relay exposes. The same
check covers every PrometheusRule in that folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.manifests import lint_errors, schema_errors
from tests.deploy.promql_names import exposed_names, metric_names, panel_expressions, rule_expressions
from tests.e2e.relay_process import ROOT, RelayProcess

MONITORING = ROOT / "deploy" / "components" / "monitoring"
DASHBOARD_FILE = MONITORING / "dashboard.yaml"
# Series an alert may read that Prometheus itself or kube-state-metrics provide, not the relay
FROM_ELSEWHERE = re.compile(r"^(up|scrape_\w+|kube_\w+)$")
# What the panels must show (issue 30): a title for each, and a metric each must read
WANTED_PANELS = {
    "Ingest rate by outcome": "aep_relay_events_routed_total",
    "Backlog per destination": "aep_relay_store_pending_deliveries",
    "Oldest waiting delivery per destination": "aep_relay_store_oldest_pending_age_seconds",
    "Delivered per minute against the limit": "aep_relay_ratelimit_rate_per_minute",
    "Attempts by code": "aep_relay_delivery_attempts_total",
    "Dead letters": "aep_relay_dead_letters_total",
    "Circuit state": "aep_relay_circuit_state",
    "p99 ingest latency": "aep_relay_ingest_duration_seconds_bucket",
}


def config_map() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DASHBOARD_FILE.read_text())
    return doc


def dashboard(doc: dict[str, Any] | None = None) -> dict[str, Any]:
    data = (doc or config_map())["data"]
    [text] = data.values()
    board: dict[str, Any] = json.loads(text)
    return board


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``GET /metrics`` of ``aep-relay serve`` (a real process, the Zendesk mappings in dry run)."""
    relay = RelayProcess(
        {"RELAY_INGEST_TOKENS": "dashboard-token"}, tmp_path_factory.mktemp("dash") / "relay.log"
    )
    relay.start()
    try:
        yield httpx.get(f"{relay.url}/metrics", timeout=10).text
    finally:
        relay.stop()


def test_the_config_map_is_valid_and_labelled_for_the_grafana_sidecar() -> None:
    doc = config_map()
    assert schema_errors([doc]) == []
    assert lint_errors([DASHBOARD_FILE]) == []
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    [key] = doc["data"]
    assert key.endswith(".json")  # the sidecar loads files by this suffix


def test_the_dashboard_has_each_wanted_panel_reading_its_metric() -> None:
    board = dashboard()
    panels = {p["title"]: p for p in board["panels"]}
    for title, metric in WANTED_PANELS.items():
        assert title in panels, f"no panel {title!r}"
        assert metric in metric_names(t["expr"] for t in panels[title]["targets"]), title
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]  # the data source is chosen
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}


def test_every_metric_the_dashboard_reads_is_one_the_relay_exposes(exposition: str) -> None:
    named = metric_names(panel_expressions(dashboard()))
    exposed = exposed_names(exposition)
    assert "aep_relay_circuit_state" in exposed  # the scrape is the relay's
    assert named - exposed == set()


def test_a_misspelt_metric_in_a_panel_is_caught(exposition: str) -> None:
    board = dashboard()
    board["panels"][0]["targets"][0]["expr"] = "sum(rate(aep_relay_event_routed_total[5m]))"
    assert metric_names(panel_expressions(board)) - exposed_names(exposition) == {
        "aep_relay_event_routed_total"
    }


def test_every_metric_the_alert_rules_read_is_one_the_relay_exposes(exposition: str) -> None:
    rules = [
        doc
        for path in sorted(MONITORING.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "PrometheusRule"
    ]
    named = metric_names(e for doc in rules for e in rule_expressions(doc))
    assert {n for n in named - exposed_names(exposition) if not FROM_ELSEWHERE.match(n)} == set()
