"""The manifest checks fail on broken manifests: each test breaks a copy of deploy/ one way."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MAPPINGS, ROOT
from tests.deploy.manifests import RenderError, lint_errors, policy_errors, render, schema_errors
from tests.deploy.monitoring import render_with_monitoring


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of deploy/ and mappings/ (the base reads ../../mappings) to break."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def single(tree: Path) -> Path:
    return tree / "deploy" / "overlays" / "single"


def test_the_unbroken_copy_passes(tree: Path) -> None:
    docs = render(single(tree))
    assert schema_errors(docs) == [] and policy_errors(docs) == []


def monitored(tree: Path) -> list[dict[str, Any]]:
    """The single overlay with the copy's monitoring component switched on."""
    component = tree / "deploy/components/monitoring"
    return render_with_monitoring(single(tree), tree / "monitored", component)


def test_the_unbroken_copy_with_monitoring_passes(tree: Path) -> None:
    docs = monitored(tree)
    assert {"ServiceMonitor", "PrometheusRule"} <= {d["kind"] for d in docs}
    assert schema_errors(docs) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "finding"),
    [
        (
            "servicemonitor.yaml",
            "scrapeTimeout: 10s",
            "scrapeTimout: 10s",
            "ServiceMonitor/aep-relay (operator CRD) at spec.endpoints.0.scrapeTimout: Extra inputs are not permitted",
        ),
        (
            "servicemonitor.yaml",
            "  endpoints:\n    - port: http",
            "  endpoints:\n      port: http",  # a mapping, not a list of one
            "ServiceMonitor/aep-relay (operator CRD) at spec.endpoints: Input should be a valid array",
        ),
        (
            "servicemonitor.yaml",
            "scrapeTimeout: 10s",
            'scrapeTimeout: 10s\n      honorLabels: "true"',  # a string, which lax parsing would take
            "at spec.endpoints.0.honorLabels: Input should be a valid boolean",
        ),
        (
            "servicemonitor.yaml",
            "interval: 30s",
            "interval: 30 seconds",
            "at spec.endpoints.0.interval: String should match pattern",
        ),
        (
            "servicemonitor.yaml",
            "spec:\n  selector:",
            "spec:\n  namespaceSelector: {any: true}\n  selectr:",
            "ServiceMonitor/aep-relay (operator CRD) at spec.selector: Field required",
        ),
        (
            "servicemonitor.yaml",
            "apiVersion: monitoring.coreos.com/v1",
            "apiVersion: monitoring.coreos.com/v2",
            "ServiceMonitor/aep-relay: no schema for monitoring.coreos.com/v2 ServiceMonitor",
        ),
        (
            "prometheusrule.yaml",
            "for: 1m",
            "for: 60",
            "PrometheusRule/aep-relay (operator CRD) at spec.groups.0.rules.1.for: Input should be a valid string",
        ),
        (
            "prometheusrule.yaml",
            "- alert: AepRelayDeadLetters\n          expr:",
            "- expr:",
            "PrometheusRule/aep-relay at spec.groups.0.rules.0: set exactly one of alert and record",
        ),
        (
            "prometheusrule.yaml",
            "- alert: AepRelayDeadLetters\n",
            "- alert: AepRelayDeadLetters\n          record: aep_relay:dead_letters\n",
            "PrometheusRule/aep-relay at spec.groups.0.rules.0: set exactly one of alert and record",
        ),
        (
            "prometheusrule.yaml",
            "    - name: aep-relay\n      rules:",
            "    - nam: aep-relay\n      rules:",
            "PrometheusRule/aep-relay (operator CRD) at spec.groups.0.name: Field required",
        ),
    ],
)
def test_a_broken_monitoring_resource_fails_the_operator_schema(
    tree: Path, file: str, old: str, new: str, finding: str
) -> None:
    edit(tree / "deploy/components/monitoring" / file, old, new)
    errors = schema_errors(monitored(tree))
    assert any(finding in e for e in errors), errors


def test_a_misspelt_field_fails_the_schema(tree: Path) -> None:
    edit(tree / "deploy/base/deployment.yaml", "readinessProbe:", "readynessProbe:")
    errors = schema_errors(render(single(tree)))
    assert any("'readynessProbe' was unexpected" in e for e in errors), errors


def test_a_wrong_type_fails_the_schema(tree: Path) -> None:
    edit(tree / "deploy/overlays/single/deployment.yaml", "replicas: 1", "replicas: one")
    errors = schema_errors(render(single(tree)))
    assert any("Deployment/aep-relay" in e and "spec.replicas" in e for e in errors), errors


def test_an_unknown_kind_fails_the_schema(tree: Path) -> None:
    edit(
        tree / "deploy/overlays/single/pvc.yaml", "kind: PersistentVolumeClaim", "kind: PersistentVolumeClam"
    )
    edit(tree / "deploy/overlays/single/deployment.yaml", "claimName: aep-relay-data", "claimName: x")
    errors = schema_errors(render(single(tree)))
    assert any("PersistentVolumeClam" in e for e in errors), errors


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "readOnlyRootFilesystem must be true",
        ),
        ("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation"),
        ("drop: [ALL]", "drop: [NET_RAW]", "capabilities must drop ALL"),
        ("runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"),
        ("type: RuntimeDefault", "type: Unconfined", "seccompProfile"),
        ('limits: {cpu: "1", memory: 512Mi}', 'limits: {cpu: "1"}', "resources.limits.memory missing"),
        ("readinessProbe:  # mappings loaded", "startupProbe2:  # mappings loaded", "readinessProbe missing"),
        ("name: aep-relay-env\n", "name: aep-relay-environment\n", "is not rendered"),
        (
            "mountPath: /tmp",
            "mountPath: /tmp\n            - name: scratch\n              mountPath: /x",
            "does not declare",
        ),
    ],
)
def test_a_weakened_workload_breaks_the_rules(tree: Path, old: str, new: str, finding: str) -> None:
    edit(tree / "deploy/base/deployment.yaml", old, new)
    try:
        docs = render(single(tree))
    except RenderError:
        pytest.fail("the edit should render")
    errors = policy_errors(docs)
    assert any(finding in e for e in errors), errors


def test_a_service_that_selects_nothing_is_caught(tree: Path) -> None:
    selector = "selector:\n    app.kubernetes.io/name: aep-relay"
    edit(tree / "deploy/base/service.yaml", selector, selector.replace("aep-relay", "relay"))
    errors = policy_errors(render(single(tree)))
    assert errors == ["Service/aep-relay: selects no pod"]


def test_an_autoscaler_fighting_a_fixed_replica_count_is_caught(tree: Path) -> None:
    patch = tree / "deploy/overlays/replicas/deployment.yaml"
    edit(patch, "spec:\n  strategy:", "spec:\n  replicas: 3\n  strategy:")
    errors = policy_errors(render(tree / "deploy/overlays/replicas"))
    assert any("sets replicas, which fights the autoscaler" in e for e in errors), errors


def test_a_broken_kustomization_does_not_render(tree: Path) -> None:
    edit(tree / "deploy/overlays/single/kustomization.yaml", "- pvc.yaml", "- missing.yaml")
    with pytest.raises(RenderError, match=r"missing\.yaml"):
        render(single(tree))


LintBreak = Callable[[Path], Path]


@pytest.mark.parametrize(
    ("break_it", "rule"),
    [
        (lambda t: _append(t / "deploy/base/service.yaml", "spec:\n  type: ClusterIP\n"), "key-duplicates"),
        (lambda t: _append(t / "deploy/base/service.yaml", "# " + "word " * 30 + "\n"), "line-length"),
        (lambda t: _append(t / "deploy/base/service.yaml", "metadata2: {a: 1}   \n"), "trailing-spaces"),
    ],
)
def test_yamllint_catches_style_and_duplicate_keys(tree: Path, break_it: LintBreak, rule: str) -> None:
    path = break_it(tree)
    errors = lint_errors([path])
    assert any(f"({rule})" in e for e in errors), errors


def _append(path: Path, text: str) -> Path:
    path.write_text(path.read_text() + text)
    return path
