"""Matching by a precompiled dispatch on ``xdm.eventType``."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.mapping.expressions import Expression
from app.mapping.loader import load_mappings, required_event_type

DESTINATIONS = {"zendesk": ("events", "profile_events", "user_events")}


@pytest.mark.parametrize(
    ("when", "event_type"),
    [
        ("xdm.eventType == 'commerce.purchases'", "commerce.purchases"),
        ("'commerce.purchases' == xdm.eventType", "commerce.purchases"),
        ('xdm.eventType == `"a.b"`', "a.b"),
        ("xdm.eventType == 'x' && data.ok", "x"),
        ("data.ok && xdm.eventType == 'x'", "x"),
        ("xdm.eventType == 'x' || xdm.eventType == 'y'", None),
        ("xdm.eventType != 'x'", None),
        ("data.eventType == 'x'", None),
        ("xdm.eventType == `1`", None),
        ("starts_with(xdm.eventType, 'commerce.')", None),
    ],
)
def test_required_event_type(when: str, event_type: str | None) -> None:
    assert required_event_type(Expression(when).parsed) == event_type


def write(folder: Path, name: str, when: str | None) -> None:
    line = f'when: "{when}"\n' if when else ""
    folder.joinpath(f"{name}.yaml").write_text(
        f"destination: zendesk\n{line}body:\n  event: {{source: s, type: t, properties: {{}}}}\n"
    )


def test_candidates_keep_file_order_and_include_untyped_mappings(tmp_path: Path) -> None:
    write(tmp_path, "1-purchase", "xdm.eventType == 'commerce.purchases'")
    write(tmp_path, "2-any", None)
    write(tmp_path, "3-cart", "xdm.eventType == 'commerce.productListAdds'")
    write(tmp_path, "4-purchase-vip", "xdm.eventType == 'commerce.purchases' && data.vip")
    mappings = load_mappings(tmp_path, DESTINATIONS)

    def names(event: object) -> list[str]:
        return [m.name for m in mappings.candidates(event)]

    assert names({"xdm": {"eventType": "commerce.purchases"}}) == ["1-purchase", "2-any", "4-purchase-vip"]
    assert names({"xdm": {"eventType": "commerce.productListAdds"}}) == ["2-any", "3-cart"]
    assert names({"xdm": {"eventType": "web.webpagedetails.pageViews"}}) == ["2-any"]
    assert names({"xdm": {}}) == ["2-any"]
    assert names({"xdm": {"eventType": ["not", "a", "string"]}}) == ["2-any"]
