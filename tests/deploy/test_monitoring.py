"""deploy/components/monitoring switched on in every overlay (and alone): it renders, adds a
ServiceMonitor and a PrometheusRule (whose rules promtool checks, test_alert_rules.py) that pass
the Prometheus Operator's CRD schemas, the rest still passes Kubernetes' schemas and the workload
rules, and the ServiceMonitor scrapes the relay's port."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.manifests import Doc, find, policy_errors, render, schema_errors
from tests.deploy.monitoring import DEPLOY, render_with_monitoring
from tests.deploy.operator_schemas import is_operator_kind
from tests.deploy.test_manifests import OVERLAYS

OPERATIONS = DEPLOY.parent / "docs" / "operations.md"


@pytest.fixture(scope="module", params=OVERLAYS)
def monitored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    workdir = tmp_path_factory.mktemp(f"monitored-{request.param}")
    return render_with_monitoring(DEPLOY / "overlays" / request.param, workdir)


def test_the_component_adds_a_service_monitor_and_the_alert_rules(monitored: list[Doc]) -> None:
    operator_kinds = sorted(d["kind"] for d in monitored if is_operator_kind(d))
    assert operator_kinds == ["PrometheusRule", "ServiceMonitor"]
    for doc in monitored:
        if is_operator_kind(doc):
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aep-relay"


def test_every_document_passes_its_schemas_and_the_workload_rules(monitored: list[Doc]) -> None:
    """Kubernetes' schemas for its kinds, the operator's CRD schemas for the two it adds."""
    assert schema_errors(monitored) == []
    assert policy_errors(monitored) == []


def test_the_component_alone_renders_and_passes_the_schemas(tmp_path: Path) -> None:
    docs = render_with_monitoring(None, tmp_path)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    assert schema_errors(docs) == []


def test_the_service_monitor_scrapes_metrics_on_the_relay_service_port(monitored: list[Doc]) -> None:
    monitor = find(monitored, "ServiceMonitor", "aep-relay")
    service = find(monitored, "Service", "aep-relay")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # the Redis Service of replicas-with-redis must not be scraped as a relay
    selected = [
        d["metadata"]["name"]
        for d in monitored
        if d["kind"] == "Service" and selector.items() <= d["metadata"].get("labels", {}).items()
    ]
    assert selected == ["aep-relay"]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"


def test_the_overlays_alone_ship_no_operator_resources() -> None:
    """Opt-in: a cluster without the operator's CRDs would refuse them."""
    for overlay in OVERLAYS:
        docs = render(DEPLOY / "overlays" / overlay)
        assert [d["kind"] for d in docs if is_operator_kind(d)] == []


def test_the_docs_say_how_to_switch_it_on_and_explain_every_alert(monitored: list[Doc]) -> None:
    text = OPERATIONS.read_text()
    assert "components:\n  - ../../components/monitoring" in text
    rule = find(monitored, "PrometheusRule", "aep-relay")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == 8
    documented = set(re.findall(r"^#### (AepRelay\w+)$", text, re.MULTILINE))
    assert documented == set(alerts)
    assert "components/monitoring/" in (DEPLOY / "README.md").read_text()
