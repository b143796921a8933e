"""Custom JMESPath functions used in mapping files (app/mapping/functions.py)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import jmespath
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jmespath.exceptions import ArityError, JMESPathTypeError, UnknownFunctionError

from app.destinations.timestamps import is_rfc3339
from app.mapping.functions import format_timestamp, jmespath_options, parse_timestamp

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA256_CAFE = "850f7dc43910ff890f8879c0ed26fe697c93a067ad93a7d50f466a7028a9bf4e"
SHA256_FOO_EXAMPLE = "321ba197033e81286fedb719d60d4ed5cecaed170733cb4a92013811afc0e3b6"


def search(expression: str, data: Any = None) -> Any:
    return jmespath.search(expression, data, options=jmespath_options())


# ----------------------------------------------------------------- lower / upper / trim


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        ("lower(s)", {"s": "Foo@Example.COM"}, "foo@example.com"),
        ("lower(s)", {"s": "ÉCOLE"}, "école"),
        ("lower(s)", {}, None),
        ("upper(s)", {"s": "us-ca"}, "US-CA"),
        ("upper(s)", {"s": None}, None),
        ("trim(s)", {"s": "  \tgold member\n "}, "gold member"),
        ("trim(s)", {"s": "   "}, ""),
        ("trim(s)", {}, None),
    ],
)
def test_string_functions(expression: str, data: Any, expected: Any) -> None:
    assert search(expression, data) == expected


@pytest.mark.parametrize("name", ["lower", "upper", "trim", "sha256", "hashed_email", "snake_case"])
@pytest.mark.parametrize("bad", ["`1`", "`true`", "`[]`", "`{}`"])
def test_string_functions_reject_other_types(name: str, bad: str) -> None:
    with pytest.raises(JMESPathTypeError):
        search(f"{name}({bad})")


# ----------------------------------------------------------------- sha256 / hashed_email


def test_sha256() -> None:
    assert search("sha256('abc')") == SHA256_ABC
    assert search("sha256('')") == SHA256_EMPTY
    assert search("sha256(s)", {"s": "café"}) == SHA256_CAFE  # UTF-8 bytes
    assert search("sha256(missing)", {}) is None


def test_sha256_does_not_normalise() -> None:
    assert search("sha256('Foo@Example.com')") != SHA256_FOO_EXAMPLE


@pytest.mark.parametrize("email", ["foo@example.com", "  Foo@Example.COM ", "FOO@EXAMPLE.COM\n"])
def test_hashed_email_normalises(email: str) -> None:
    assert search("hashed_email(e)", {"e": email}) == SHA256_FOO_EXAMPLE


def test_hashed_email_null_and_blank() -> None:
    assert search("hashed_email(e)", {}) is None
    assert search("hashed_email(e)", {"e": "   "}) is None


def test_hashed_email_of_primary_identity() -> None:
    data = {
        "xdm": {
            "identityMap": {
                "Email": [
                    {"id": "other@example.com", "primary": False},
                    {"id": " Foo@Example.com", "primary": "true"},
                ]
            }
        }
    }
    expr = "hashed_email(primary_identity(xdm.identityMap, 'email'))"
    assert search(expr, data) == SHA256_FOO_EXAMPLE


# ----------------------------------------------------------------- e164


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        ("e164(p, 'US')", {"p": "(415) 555-0100"}, "+14155550100"),
        ("e164(p, 'us')", {"p": "415.555.0100"}, "+14155550100"),
        ("e164(p)", {"p": "+1 415-555-0100"}, "+14155550100"),
        ("e164(p, 'US')", {"p": "+44 20 7946 0958"}, "+442079460958"),  # + wins over region
        ("e164(p, 'US')", {"p": "0044 20 7946 0958"}, "+442079460958"),  # 00 is international
        ("e164(p)", {"p": "0041 44 668 18 00"}, "+41446681800"),
        ("e164(p, 'CH')", {"p": "044 668 18 00"}, "+41446681800"),  # national trunk 0
        ("e164(p, 'US')", {"p": 4155550100}, "+14155550100"),
        ("e164(p, 'US')", {"p": 4155550100.0}, "+14155550100"),
        ("e164(p)", {"p": 14155550100}, None),  # a number has no + and no region
        ("e164(p, 'US')", {"p": "1-415-555-0100"}, "+14155550100"),
        ("e164(p, r)", {"p": "(415) 555-0100", "r": None}, None),
    ],
)
def test_e164(expression: str, data: Any, expected: Any) -> None:
    assert search(expression, data) == expected


@pytest.mark.parametrize(
    ("phone", "region"),
    [
        (None, "US"),
        ("", "US"),
        ("not a phone", "US"),
        ("12", "US"),
        ("415 555 0100 999 999 999", "US"),
        ("(415) 555-0100", "ZZ"),  # unknown region
        ("(415) 555-0100", None),  # national number without a region
        (4155550100.5, "US"),
    ],
)
def test_e164_unparseable_is_null(phone: Any, region: Any) -> None:
    assert search("e164(p, r)", {"p": phone, "r": region}) is None


def test_e164_without_region_argument() -> None:
    assert search("e164(p)", {"p": None}) is None
    assert search("e164(p)", {"p": "(415) 555-0100"}) is None


def test_e164_argument_errors() -> None:
    with pytest.raises(JMESPathTypeError):
        search("e164(`true`, 'US')")
    with pytest.raises(JMESPathTypeError):
        search("e164('4155550100', `1`)")
    with pytest.raises(ArityError):
        search("e164('4155550100', 'US', 'x')")
    with pytest.raises(ArityError):
        search("e164()")


# ----------------------------------------------------------------- iso8601 / now


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00Z"),
        ("2024-05-01T07:30:00-04:30", "2024-05-01T12:00:00Z"),
        ("2024-04-30T23:30:00-01:00", "2024-05-01T00:30:00Z"),  # crosses midnight
        ("2024-05-01T12:00:00.123+00:00", "2024-05-01T12:00:00.123Z"),
        ("2024-05-01T12:00:00.123456Z", "2024-05-01T12:00:00.123Z"),
        ("2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00Z"),
        ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),  # no offset: UTC
        ("2024-05-01 12:00:00", "2024-05-01T12:00:00Z"),
        ("2024-05-01", "2024-05-01T00:00:00Z"),
        ("20240501", "2024-05-01T00:00:00Z"),
        (" 2024-05-01T12:00:00Z ", "2024-05-01T12:00:00Z"),
        (1714564800, "2024-05-01T12:00:00Z"),
        (1714564800123, "2024-05-01T12:00:00.123Z"),
        (1714564800000, "2024-05-01T12:00:00Z"),
        (1714564800.5, "2024-05-01T12:00:00.500Z"),
        (1714564800.123, "2024-05-01T12:00:00.123Z"),
        ("1714564800", "2024-05-01T12:00:00Z"),
        ("1714564800123", "2024-05-01T12:00:00.123Z"),
        (0, "1970-01-01T00:00:00Z"),
        (100000000000, "5138-11-16T09:46:40Z"),  # 1e11 itself is still seconds
        (100000000001, "1973-03-03T09:46:40.001Z"),  # above 1e11: milliseconds
        # a leap second (valid RFC 3339) is the last millisecond of its minute, in order
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999Z"),
        ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999Z"),
    ],
)
def test_iso8601(value: Any, expected: str) -> None:
    assert search("iso8601(v)", {"v": value}) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "2024-13-01", "2024-05-01T25:00:00Z", "NaN", "1e5", 1e30, "2024/05/01"],
)
def test_iso8601_unparseable_is_null(value: Any) -> None:
    assert search("iso8601(v)", {"v": value}) is None


CANONICAL_LOOKING = [
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.000Z",
    "2024-05-01T12:00:00.001Z", "2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
    "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z", "2024-05-01T12:00:60Z", "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2024-05-01T12:00:00.12Z", "2024-05-01t12:00:00Z",
    "2024-05-01T12:00:00z", "2024-05-01T12:00:00Z\n", "\u0662024-05-01T12:00:00Z",
    "2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00.000+00:00", "2024-05-01T12:00:00.250+00:00",
    "2024-05-01T12:00:00-00:00", "2024-05-01T12:00:00+01:00", "2024-02-30T12:00:00.000Z",
]  # fmt: skip


@pytest.mark.parametrize("value", CANONICAL_LOOKING)
def test_iso8601_shortcut_answers_as_the_long_way(value: str) -> None:
    """The shortcut for the usual UTC forms gives what parsing and formatting would."""
    parsed = parse_timestamp(value)
    assert search("iso8601(v)", {"v": value}) == (None if parsed is None else format_timestamp(parsed))


def test_iso8601_rejects_other_types() -> None:
    with pytest.raises(JMESPathTypeError):
        search("iso8601(`true`)")
    with pytest.raises(JMESPathTypeError):
        search("iso8601(`[]`)")


@given(
    st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat(sep=" ")),
        st.dates().map(str),
        st.integers(min_value=-(10**14), max_value=10**14),
        st.floats(min_value=-1e12, max_value=1e12),
        st.text(alphabet="0123456789-:TZ+. W", max_size=30),
    )
)
def test_iso8601_gives_rfc3339_or_null(value: str | float) -> None:
    """What it gives is what Zendesk's created_at and Yotpo's timestamp must be."""
    result = search("iso8601(v)", {"v": value})
    assert result is None or is_rfc3339(result)
    assert result is None or result.endswith("Z")


def test_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    value = search("now()")
    after = datetime.now(UTC)
    assert isinstance(value, str)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z", value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert before <= parsed <= after
    assert search("iso8601(@)", value) == value  # now() is already in iso8601 form
    with pytest.raises(ArityError):
        search("now('x')")


# ----------------------------------------------------------------- snake_case


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("productListAdds", "product_list_adds"),
        ("Add-to-Cart!", "add_to_cart"),
        ("commerce.productListAdds", "commerce_product_list_adds"),
        ("  --Order   __ Completed--  ", "order_completed"),
        ("HTTPServerError", "http_server_error"),
        ("page2View", "page2_view"),
        ("already_snake_case", "already_snake_case"),
        ("Café Crème", "café_crème"),
        ("ÉtapeSuivante", "étape_suivante"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_snake_case(value: str, expected: str) -> None:
    assert search("snake_case(v)", {"v": value}) == expected


def test_snake_case_null() -> None:
    assert search("snake_case(v)", {}) is None


# ----------------------------------------------------------------- coalesce


def test_coalesce() -> None:
    data = {"a": None, "b": "second", "c": "third"}
    assert search("coalesce(a, b, c)", data) == "second"
    assert search("coalesce(missing, a, c)", data) == "third"
    assert search("coalesce(b)", data) == "second"
    assert search("coalesce(a, missing)", data) is None


def test_coalesce_keeps_falsy_values() -> None:
    assert search("coalesce(a, b)", {"a": None, "b": ""}) == ""
    assert search("coalesce(a, b)", {"a": 0, "b": 1}) == 0
    assert search("coalesce(a, b)", {"a": False, "b": True}) is False
    assert search("coalesce(a, b)", {"a": [], "b": [1]}) == []


def test_coalesce_needs_an_argument() -> None:
    with pytest.raises(ArityError):
        search("coalesce()")


# ----------------------------------------------------------------- identities


IDENTITY_MAP: dict[str, Any] = {
    "ECID": [{"id": "ecid-1", "authenticatedState": "ambiguous"}],
    "Email": [
        {"id": "first@example.com", "primary": False},
        {"id": "second@example.com", "primary": True},
    ],
    "CRMID": [
        {"id": "crm-1"},
        {"id": "crm-2", "primary": "TRUE"},
    ],
    "Phone": [{"id": "+14155550100", "primary": "false"}, {"id": "+14155550101"}],
    "https://data.adobe.io/entities/namespace/4": [{"id": "92312748749128"}],
    "Empty": [],
}


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("Email", "second@example.com"),  # boolean primary
        ("email", "second@example.com"),
        ("EMAIL", "second@example.com"),
        ("crmid", "crm-2"),  # string "TRUE"
        ("Phone", "+14155550100"),  # "false" is not primary: first entry
        ("ecid", "ecid-1"),
        ("HTTPS://data.adobe.io/entities/namespace/4", "92312748749128"),
        ("https://data.adobe.io/entities/namespace/10", None),
        ("Empty", None),
        ("Missing", None),
    ],
)
def test_primary_identity(namespace: str, expected: Any) -> None:
    assert search("primary_identity(m, ns)", {"m": IDENTITY_MAP, "ns": namespace}) == expected


def test_primary_identity_string_true() -> None:
    data = {"m": {"email": [{"id": "a"}, {"id": "b", "primary": "true"}]}}
    assert search("primary_identity(m, 'Email')", data) == "b"


def test_primary_identity_no_primary_takes_first() -> None:
    data = {"m": {"Email": [{"id": "a", "primary": False}, {"id": "b"}]}}
    assert search("primary_identity(m, 'email')", data) == "a"


def test_primary_identity_across_key_casings() -> None:
    # A batch merge can leave both spellings; the primary entry wins wherever it is.
    data = {"m": {"Email": [{"id": "a"}], "email": [{"id": "b", "primary": True}]}}
    assert search("primary_identity(m, 'EMAIL')", data) == "b"
    assert search("identities(m, 'EMAIL')", data) == ["a", "b"]


@pytest.mark.parametrize(
    "identity_map",
    [None, "Email", 42, [], {"Email": "a@example.com"}, {"Email": [{"primary": True}, "x"]}],
)
def test_primary_identity_malformed_is_null(identity_map: Any) -> None:
    assert search("primary_identity(m, 'email')", {"m": identity_map}) is None
    assert search("identities(m, 'email')", {"m": identity_map}) == []


def test_primary_identity_skips_entries_without_id() -> None:
    data = {"m": {"Email": [{"primary": True}, {"id": "a"}, {"id": None}]}}
    assert search("primary_identity(m, 'email')", data) == "a"
    assert search("identities(m, 'email')", data) == ["a"]


def test_primary_identity_null_namespace() -> None:
    assert search("primary_identity(m, ns)", {"m": IDENTITY_MAP}) is None
    assert search("identities(m, ns)", {"m": IDENTITY_MAP}) == []


def test_identities() -> None:
    data = {"m": IDENTITY_MAP}
    assert search("identities(m, 'email')", data) == ["first@example.com", "second@example.com"]
    assert search("identities(m, 'CRMID')", data) == ["crm-1", "crm-2"]
    assert search("identities(m, 'Empty')", data) == []
    assert search("identities(m, 'Missing')", data) == []
    assert search("identities(m, 'email')[0]", data) == "first@example.com"


def test_identity_functions_reject_non_string_namespace() -> None:
    with pytest.raises(JMESPathTypeError):
        search("primary_identity(m, `1`)", {"m": IDENTITY_MAP})
    with pytest.raises(JMESPathTypeError):
        search("identities(m, `[]`)", {"m": IDENTITY_MAP})


# ----------------------------------------------------------------- underscore_keys / drop_nulls


def test_underscore_keys() -> None:
    data = {"p": {"order id": "ORD-1", "gift  wrap": True, "loyalty\ttier\n": "gold", "total": 1}}
    assert search("underscore_keys(p)", data) == {
        "order_id": "ORD-1",
        "gift_wrap": True,  # a run of spaces is one underscore
        "loyalty_tier_": "gold",  # tabs and line breaks count, at the ends too
        "total": 1,
    }


def test_underscore_keys_nested_and_values_unchanged() -> None:
    data = {
        "p": {
            "shipping address": {"post code": "10115", "city": "Berlin Mitte"},
            "line items": [{"unit price": 9.5}, "a b", None],
            "note": None,
        }
    }
    assert search("underscore_keys(p)", data) == {
        "shipping_address": {"post_code": "10115", "city": "Berlin Mitte"},
        "line_items": [{"unit_price": 9.5}, "a b", None],
        "note": None,
    }


def test_underscore_keys_copies() -> None:
    data = {"p": {"a b": {"c d": 1}}}
    result = search("underscore_keys(p)", data)
    result["a_b"]["c_d"] = 2
    assert data == {"p": {"a b": {"c d": 1}}}
    assert search("underscore_keys(p)", {"p": {}}) == {}


def test_drop_nulls() -> None:
    data = {"p": {"order_id": "ORD-1", "coupon": None, "total": 0, "gift": False, "note": ""}}
    assert search("drop_nulls(p)", data) == {"order_id": "ORD-1", "total": 0, "gift": False, "note": ""}


def test_drop_nulls_nested() -> None:
    data = {"p": {"a": {"b": None, "c": {"d": None, "e": 1}}, "l": [None, 1, {"f": None, "g": "x"}]}}
    assert search("drop_nulls(p)", data) == {"a": {"c": {"e": 1}}, "l": [1, {"g": "x"}]}
    # an object left empty stays (as {}), it is not itself removed
    assert search("drop_nulls(p)", {"p": {"a": {"b": None}}}) == {"a": {}}


def test_drop_nulls_of_a_multiselect() -> None:
    expr = "drop_nulls({order_id: o.id, coupon: o.coupon, total: o.total})"
    assert search(expr, {"o": {"id": "ORD-1", "total": 10.5}}) == {"order_id": "ORD-1", "total": 10.5}
    assert search("drop_nulls(underscore_keys(p))", {"p": {"gift wrap": None, "a b": 1}}) == {"a_b": 1}


@pytest.mark.parametrize("name", ["underscore_keys", "drop_nulls"])
def test_object_functions_null(name: str) -> None:
    assert search(f"{name}(p)", {}) is None
    assert search(f"{name}(`null`)") is None


@pytest.mark.parametrize("name", ["underscore_keys", "drop_nulls"])
@pytest.mark.parametrize("bad", ["'a b'", "`1`", "`true`", "`[]`"])
def test_object_functions_reject_other_types(name: str, bad: str) -> None:
    with pytest.raises(JMESPathTypeError):
        search(f"{name}({bad})")


# ----------------------------------------------------------------- integration


def test_builtins_still_available() -> None:
    assert search("length(lower('ABC'))") == 3
    assert search("not_null(`null`, 'x')") == "x"


def test_functions_absent_without_options() -> None:
    with pytest.raises(UnknownFunctionError):
        jmespath.search("lower('A')", None)


def test_compiled_expression_with_options() -> None:
    compiled = jmespath.compile("snake_case(xdm.eventType)")
    data = {"xdm": {"eventType": "commerce.productListAdds"}}
    assert compiled.search(data, options=jmespath_options()) == "commerce_product_list_adds"


def test_optional_field_vanishes() -> None:
    expr = "{email: hashed_email(primary_identity(xdm.identityMap, 'email')), phone: e164(p, 'US')}"
    assert search(expr, {"xdm": {}}) == {"email": None, "phone": None}


@pytest.mark.parametrize("text", ["1" * 65_536, "-" + "9" * 65_536, "1" * 65_536 + ".5"])
def test_an_epoch_of_thousands_of_digits_is_refused_before_any_quadratic_work(text: str) -> None:
    """Turning such a number into an int took 0.2-0.4 s (a 64 KB `xdm.timestamp`, read by
    every shipped mapping's `iso8601`)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        assert parse_timestamp(text) is None
        best = min(best, time.perf_counter() - started)
    assert best < 0.05
