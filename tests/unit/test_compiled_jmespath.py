"""The compiled evaluator is the same language as the reference ``jmespath`` interpreter.

Runs the official compliance suite (``tests/data/jmespath-compliance``) and a differential
comparison on mapping-style expressions.
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from jmespath.exceptions import JMESPathError

from app import mapping
from app.mapping.functions import jmespath_options
from tests.conftest import EXAMPLES, ROOT

SUITE = ROOT / "tests" / "data" / "jmespath-compliance"


def compliance_cases() -> list[Any]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        if path.name == "benchmarks.json":
            continue
        for group_index, group in enumerate(json.loads(path.read_text())):
            for case_index, case in enumerate(group["cases"]):
                if "result" in case or "error" in case:
                    case_id = f"{path.stem}-{group_index}-{case_index}"
                    cases.append(pytest.param(group["given"], case, id=case_id))
    return cases


CASES = compliance_cases()


def test_the_suite_has_every_case() -> None:
    assert len(CASES) == 892


@pytest.mark.filterwarnings("ignore:deprecated string literal syntax:PendingDeprecationWarning")
@pytest.mark.parametrize(("given", "case"), CASES)
def test_compliance_case(given: Any, case: dict[str, Any]) -> None:
    expression = case["expression"]
    if "error" in case:
        with pytest.raises(JMESPathError):
            mapping.compile(expression).search(given)
    else:
        assert mapping.compile(expression).search(given) == case["result"]
        assert mapping.search(expression, given) == case["result"]


PURCHASE = json.loads((EXAMPLES / "purchase.json").read_text())
DIFFERENTIAL = [
    "xdm.commerce.order.priceTotal",
    "xdm.productListItems[].{sku: SKU, qty: quantity, price: priceTotal}",
    "xdm.productListItems[?quantity > `1`].SKU",
    "xdm.productListItems[0].name",
    "xdm.productListItems[-1]",
    "xdm.identityMap.*[].id",
    "xdm.identityMap | keys(@)",
    "sum(xdm.productListItems[].quantity || `[]`)",
    "xdm.eventType == 'commerce.purchases' && !data.missing",
    "data.customer.name || 'anonymous'",
    "xdm.productListItems[:1].SKU",
    "sort_by(xdm.productListItems, &priceTotal)[].SKU",
    "max_by(xdm.productListItems, &quantity).name",
    "length(xdm.productListItems) > `1`",
    "[xdm._id, xdm.timestamp]",
    "xdm.missing.deep.path",
    "xdm.productListItems[*].quantity",
    "xdm.productListItems[].quantity | [0]",
    "not_null(data.nothing, xdm._id)",
    "xdm.commerce.order.priceTotal >= `500`",
    "primary_identity(xdm.identityMap, 'email')",
    "[{type: 'email', value: lower(primary_identity(xdm.identityMap, 'email'))}][?value]",
]


@pytest.mark.parametrize("expression", DIFFERENTIAL)
def test_compiled_matches_the_reference_on_mapping_expressions(expression: str) -> None:
    expected = jmespath.search(expression, PURCHASE, options=jmespath_options())
    assert mapping.search(expression, PURCHASE) == expected


def test_errors_are_jmespath_exception_classes() -> None:
    with pytest.raises(jmespath.exceptions.ParseError):
        mapping.compile("a.[")
    with pytest.raises(jmespath.exceptions.JMESPathTypeError):
        mapping.search("abs('x')", {})
    with pytest.raises(jmespath.exceptions.UnknownFunctionError):
        mapping.search("nope(@)", {})


def test_other_functions_can_be_passed_in_options() -> None:
    class Double(jmespath.functions.Functions):
        @jmespath.functions.signature({"types": ["number"]})
        def _func_double(self, value: float) -> float:
            return value * 2

    options = jmespath.Options(custom_functions=Double())
    assert mapping.compile("double(a)").search({"a": 2}, options=options) == 4
