"""The monitoring component (deploy/components/monitoring): render it into an overlay and turn
its PrometheusRule into the rules file that promtool and Prometheus read."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.manifests import Doc, render

DEPLOY = ROOT / "deploy"
COMPONENT = DEPLOY / "components" / "monitoring"
PROMTOOL_TESTS = COMPONENT / "alerts"


def render_with_monitoring(overlay: Path | None, workdir: Path, component: Path = COMPONENT) -> list[Doc]:
    """``overlay`` with the component switched on, as an operator's overlay would do it; with
    no overlay, what the component alone adds."""
    workdir.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [] if overlay is None else [os.path.relpath(overlay, workdir)],
        "components": [os.path.relpath(component, workdir)],
    }
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(workdir)


def rule_groups(docs: list[Doc]) -> dict[str, Any]:
    """The rules file (``groups:``) of the one rendered PrometheusRule."""
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    return {"groups": copy.deepcopy(rule["spec"]["groups"])}


def alert_rules(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alerting rules by name."""
    return {r["alert"]: r for g in groups["groups"] for r in g["rules"] if "alert" in r}


def debian_binary(command: str) -> str:
    """A binary of Debian's ``prometheus`` package; skipped when absent (``make test``
    installs it, and under CI=true a skipped test fails the run)."""
    path = shutil.which(command, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if path is None:
        pytest.skip(f"{command} missing: install Debian's prometheus package (make system-deps does)")
    return path
