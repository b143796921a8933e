"""The metric names PromQL expressions read: Grafana panel targets and Prometheus rule ``expr``s.

Not a full PromQL parser (none is packaged for Python): it removes what cannot be a metric name
(string literals, label matchers in braces, range and offset durations, Grafana variables, the
label lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``), then keeps
each remaining identifier that is not a function call, a keyword or a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
     "offset", "inf", "nan"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(\s*([^,()]*?)\s*,\s*\w+\s*\)")  # Grafana's query
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z_]+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def metric_names(expressions: Iterable[str]) -> set[str]:
    """Every metric name the expressions select (``foo_total``, ``foo_bucket``: as written)."""
    names: set[str] = set()
    for expression in expressions:
        text = _GRAFANA_VARIABLE.sub("x", _STRING.sub('""', expression))
        text = _LABEL_VALUES.sub(r"\1", text)
        text = _MATCHERS.sub(" ", text)
        text = _RANGE.sub(" ", text)
        text = _OFFSET.sub(" ", text)
        text = _LABEL_LIST.sub(" ", text)
        for match in _IDENTIFIER.finditer(text):
            name, call = match.group(1), match.group(2)
            if call or name.lower() in KEYWORDS or name == "x":
                continue
            names.add(name)
    return names


def panel_expressions(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target (rows' nested panels too) and of each query variable."""
    found: list[str] = []
    for panel in _panels(dashboard.get("panels", [])):
        found += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            found.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return found


def rule_expressions(document: dict[str, Any]) -> list[str]:
    """The ``expr`` of every alerting and recording rule in a Prometheus rules file
    (``groups: [...]``) or a Prometheus Operator ``PrometheusRule`` (``spec.groups``)."""
    groups = document.get("spec", document).get("groups", [])
    return [rule["expr"] for group in groups for rule in group.get("rules", []) if "expr" in rule]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def exposed_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition can hold, from its ``# TYPE`` lines (so a
    labelled metric that has no sample yet counts): a counter ``foo`` gives ``foo_total`` and
    ``foo_created``, a histogram ``foo_bucket``, ``foo_sum``, ``foo_count`` and ``foo_created``."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "untyped": ("",),
    }
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            # the text format names a counter's family `foo_total`, OpenMetrics `foo`
            family = parts[2].removesuffix("_total") if parts[3] == "counter" else parts[2]
            names.update(family + suffix for suffix in suffixes.get(parts[3], ("",)))
    return names
