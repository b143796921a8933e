"""Strict validation of the Prometheus Operator's kinds (``monitoring.coreos.com``) against the
operator's CRD schemas, as PyPI's ``cloudcoil-models-prometheus-operator`` generates them into
pydantic models (field names, types, required fields, enums and patterns). The models ignore
unknown fields and coerce by default, so each document is validated as JSON with pydantic's
``strict`` and ``extra="forbid"``: a misspelt field or a wrong type is an error, as the API
server's structural schema would prune or refuse it."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pydantic
from cloudcoil.models.prometheus_operator import v1, v1alpha1
from cloudcoil.resources import Resource

GROUP = "monitoring.coreos.com"


def _kinds(*modules: ModuleType) -> dict[tuple[str, str], type[Resource]]:
    """Each Resource model the modules define, by (apiVersion, kind)."""
    found: dict[tuple[str, str], type[Resource]] = {}
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Resource)
                and value.__module__ == module.__name__
            ):
                gvk = value.gvk()
                found[(gvk.api_version, gvk.kind)] = value
    return found


MODELS = _kinds(v1, v1alpha1)


def is_operator_kind(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(f"{GROUP}/")


def operator_schema_errors(doc: dict[str, Any]) -> list[str]:
    """Findings for one operator document: the CRD schema's, then the rule the PrometheusRule CRD
    states in words only (each rule sets exactly one of ``alert`` and ``record``)."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    model = MODELS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
    if model is None:
        return [f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    try:
        model.model_validate_json(json.dumps(doc), strict=True, extra="forbid", by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        return [
            f"{where} (operator CRD) at {'.'.join(map(str, error['loc'])) or '/'}: {error['msg']}"
            for error in exc.errors()
        ]
    found: list[str] = []
    if doc["kind"] == "PrometheusRule":
        for g, group in enumerate((doc.get("spec") or {}).get("groups") or []):
            for r, rule in enumerate(group.get("rules") or []):
                if bool(rule.get("alert")) == bool(rule.get("record")):
                    found.append(f"{where} at spec.groups.{g}.rules.{r}: set exactly one of alert and record")
    return found
