"""The alerts of deploy/components/monitoring, checked and unit-tested with promtool (Debian's
``prometheus`` package): the rules are extracted from the rendered PrometheusRule, so what is
tested is what is applied; deploy/components/monitoring/alerts/alerts.test.yaml feeds series
and says which alerts fire and which stay quiet."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.monitoring import (
    DEPLOY,
    PROMTOOL_TESTS,
    alert_rules,
    debian_binary,
    render_with_monitoring,
    rule_groups,
)

LABEL_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    docs = render_with_monitoring(DEPLOY / "overlays" / "single", tmp_path_factory.mktemp("rules"))
    return rule_groups(docs)


def expand(template: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus expands it, for the label templates the rules use (any
    other template would need its own expected text: refused here)."""
    expanded = LABEL_TEMPLATE.sub(lambda m: labels[m.group(1)], template)
    assert "{{" not in expanded, f"only $labels templates are expected: {template!r}"
    return expanded


def with_annotations(tests: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The promtool test file with each expected alert's annotations filled in from its rule."""
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            rule = rules[check["alertname"]]
            for alert in check.get("exp_alerts") or []:
                labels = {**alert["exp_labels"], "alertname": check["alertname"]}
                alert.setdefault(
                    "exp_annotations",
                    {k: expand(v, labels) for k, v in rule.get("annotations", {}).items()},
                )
    return tests


def promtool_test(groups: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on the test file, beside the rules it names (rules.yaml)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    tests = yaml.safe_load((PROMTOOL_TESTS / "alerts.test.yaml").read_text())
    (workdir / "alerts.test.yaml").write_text(yaml.safe_dump(with_annotations(tests, alert_rules(groups))))
    return subprocess.run(
        [debian_binary("promtool"), "test", "rules", "alerts.test.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_promtool_checks_the_rules(groups: dict[str, Any], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(groups, sort_keys=False))
    done = subprocess.run(
        [debian_binary("promtool"), "check", "rules", str(rules)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules(groups))} rules found" in done.stdout


def test_promtool_unit_tests_pass(groups: dict[str, Any], tmp_path: Path) -> None:
    done = promtool_test(groups, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_seen_firing_and_seen_quiet() -> None:
    tests = yaml.safe_load((PROMTOOL_TESTS / "alerts.test.yaml").read_text())
    checks = [c for case in tests["tests"] for c in case["alert_rule_test"]]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    source = yaml.safe_load((DEPLOY / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    names = set(alert_rules({"groups": source["spec"]["groups"]}))
    assert firing == names
    assert quiet == names


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("AepRelayDeadLetters", "> 0", "< 0"),
        ("AepRelayDeliveryLag", "> 600", "> 6000"),
        ("AepRelayDeliveringSlowly", "< 0.5 *", "< 0.1 *"),
        ("AepRelayThrottled", 'code="rate_limited"', 'code="rate_limit"'),
        ("AepRelayCircuitOpen", 'state!="closed"', 'state="open"'),
        ("AepRelayStoreUnavailable", "> 60", "> 600"),
        ("AepRelayNotReady", "== 0", "== 1"),
        ("AepRelayIngestProblems", "0.05 *", "0.5 *"),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(
    groups: dict[str, Any], tmp_path: Path, alert: str, old: str, new: str
) -> None:
    groups = copy.deepcopy(groups)
    rule = alert_rules(groups)[alert]
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    done = promtool_test(groups, tmp_path)
    assert done.returncode != 0, f"the tests still pass with {alert} broken:\n{done.stdout}"
    assert alert in done.stdout + done.stderr
