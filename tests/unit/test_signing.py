"""HMAC request signatures (app/signing.py): secrets, skew window, replays, bounds."""

from __future__ import annotations

import hashlib
import hmac
import io
from datetime import date
from typing import Any

import pytest
from pydantic import SecretStr

from app.problems import Problem
from app.signing import BODY_ONLY, METHOD_PATH, SignatureVerifier, sign_body_only
from app.signing import sign as sign_request
from tests.conftest import log_lines

BODY = b'{"xdm": {"eventType": "commerce.purchases"}}'
NOW = 1_800_000_000.0  # 2027-01-15
PATH = "/v1/events"


def sign(secret: str, timestamp: str, body: bytes, method: str = "POST", path: str = PATH) -> str:
    return sign_request(secret, timestamp, body, method=method, path=path)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(
    *secrets: str, clock: Clock | None = None, body_only_until: date | None = None, **kwargs: int
) -> SignatureVerifier:
    return SignatureVerifier(
        [SecretStr(s) for s in secrets], clock=clock or Clock(), body_only_until=body_only_until, **kwargs
    )


def verify(
    check: SignatureVerifier,
    signature: str | None,
    timestamp: str | None,
    body: bytes = BODY,
    method: str = "POST",
    path: str = PATH,
) -> str:
    return check.verify(signature, timestamp, body, method=method, path=path)


def refused(
    check: SignatureVerifier, signature: str | None, timestamp: str | None, *args: Any, **kwargs: Any
) -> str:
    """``verify``'s detail when it refuses (the other arguments as ``verify`` takes them)."""
    with pytest.raises(Problem) as caught:
        verify(check, signature, timestamp, *args, **kwargs)
    assert caught.value.code == "invalid_signature"
    assert caught.value.status == 401
    return str(caught.value.detail)


def test_the_signed_string_is_timestamp_method_path_and_body_on_lines_of_their_own() -> None:
    expected = hmac.new(b"k1", b"1800000000\nPOST\n/v1/events/x.y\n" + BODY, hashlib.sha256).hexdigest()
    assert sign("k1", "1800000000", BODY, "post", "/v1/events/x.y") == f"sha256={expected}"


def test_the_body_only_form_is_timestamp_dot_body() -> None:
    expected = hmac.new(b"k1", b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign_body_only("k1", "1800000000", BODY) == f"sha256={expected}"


def test_a_good_signature_is_accepted_once() -> None:
    check = verifier("k1")
    signature = sign("k1", "1800000000", BODY)
    assert verify(check, signature, "1800000000") == METHOD_PATH
    assert "already used" in refused(check, signature, "1800000000")


def test_hex_case_and_surrounding_spaces_do_not_matter() -> None:
    check = verifier("k1")
    verify(check, " " + sign("k1", "1800000000", BODY).upper() + " ", " 1800000000 ")


def test_any_of_several_secrets_signs_for_rotation() -> None:
    check = verifier("old-secret", "new-secret")
    verify(check, sign("old-secret", "1800000000", BODY), "1800000000")
    verify(check, sign("new-secret", "1800000001", BODY), "1800000001")
    refused(check, sign("retired-secret", "1800000002", BODY), "1800000002")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/preview"), ("POST", "/v1/events/order-completed"), ("PUT", PATH), ("POST", PATH + "/")],
)
def test_a_signature_is_good_for_its_method_and_path_only(method: str, path: str) -> None:
    check = verifier("k1", body_only_until=date(2099, 1, 1))
    signature = sign("k1", "1800000000", BODY)
    assert "does not match" in refused(check, signature, "1800000000", method=method, path=path)
    assert verify(check, signature, "1800000000") == METHOD_PATH


def test_the_body_only_form_is_accepted_before_its_end_date_counted_and_logged(logs: io.StringIO) -> None:
    clock = Clock()
    counted: list[str] = []
    until = date(2027, 1, 16)  # NOW is 2027-01-15 08:00 UTC
    check = SignatureVerifier(
        [SecretStr("k1")], clock=clock, body_only_until=until, on_accepted=counted.append
    )
    for stamp in ("1800000000", "1800000001", "1800000002"):
        assert verify(check, sign_body_only("k1", stamp, BODY), stamp) == BODY_ONLY
    verify(check, sign("k1", "1800000003", BODY), "1800000003")
    assert counted == [BODY_ONLY, BODY_ONLY, BODY_ONLY, METHOD_PATH]
    warnings = [line for line in log_lines(logs) if line["event"] == "body_only_signature"]
    assert len(warnings) == 1  # at most one a minute
    assert warnings[0]["accepted_until"] == "2027-01-16"
    assert warnings[0]["level"] == "warning"
    clock.now = NOW + 61
    stamp = str(int(clock.now))
    verify(check, sign_body_only("k1", stamp, BODY), stamp)
    warnings = [line for line in log_lines(logs) if line["event"] == "body_only_signature"]
    assert [w["count"] for w in warnings] == [1, 3]
    clock.now = 1_800_057_600.0  # 2027-01-16 00:00 UTC: from that day on it is refused
    stamp = str(int(clock.now))
    refused(check, sign_body_only("k1", stamp, BODY), stamp)
    verify(check, sign("k1", stamp, BODY), stamp)


def test_without_an_end_date_the_body_only_form_is_refused() -> None:
    refused(verifier("k1"), sign_body_only("k1", "1800000000", BODY), "1800000000")


def test_the_headers_are_checked_before_any_body() -> None:
    check = verifier("k1")
    check.check_headers(sign("k1", "1800000000", BODY), "1800000000")
    for signature, stamp, why in [
        (None, "1800000000", "both"),
        ("sha256=abc", "1800000000", "64 hex digits"),
        (sign("k1", "1800000000", BODY), "soon", "whole seconds"),
        (sign("k1", "1799990000", BODY), "1799990000", "300 s"),
    ]:
        with pytest.raises(Problem, match=why):
            check.check_headers(signature, stamp)


@pytest.mark.parametrize(
    ("signature", "timestamp", "body", "why"),
    [
        (sign("k1", "1800000000", BODY), "1800000000", BODY + b" ", "does not match"),
        (sign("k1", "1800000000", BODY), "1800000001", BODY, "does not match"),
        ("sha256=abc", "1800000000", BODY, "64 hex digits"),
        ("sha256=" + "zz" * 32, "1800000000", BODY, "64 hex digits"),
        (sign("k1", "1800000000", BODY), "1800000000.5", BODY, "whole seconds"),
        (sign("k1", "1800000000", BODY), "-1", BODY, "whole seconds"),
        (sign("k1", "1800000000", BODY), "١٨٠٠٠٠٠٠٠٠", BODY, "whole seconds"),  # non-ASCII digits
        (None, "1800000000", BODY, "both"),
        (sign("k1", "1800000000", BODY), None, BODY, "both"),
    ],
)
def test_bad_signatures_are_refused_with_the_reason(
    signature: str | None, timestamp: str | None, body: bytes, why: str
) -> None:
    assert why in refused(verifier("k1"), signature, timestamp, body)


def test_the_skew_window_is_five_minutes_either_way() -> None:
    clock = Clock()
    check = verifier("k1", clock=clock)
    for offset in (-300, 300):
        stamp = str(int(NOW) + offset)
        verify(check, sign("k1", stamp, BODY), stamp)
    for offset in (-301, 301):
        stamp = str(int(NOW) + offset)
        assert "300 s" in refused(check, sign("k1", stamp, BODY), stamp)


def test_remembered_signatures_are_forgotten_once_stale() -> None:
    clock = Clock()
    check = verifier("k1", clock=clock, max_remembered=2)
    for stamp in ("1800000000", "1800000001"):
        verify(check, sign("k1", stamp, BODY), stamp)
    with pytest.raises(Problem) as caught:  # full: refuse rather than forget a live signature
        verify(check, sign("k1", "1800000002", BODY), "1800000002")
    assert caught.value.code == "overloaded"
    clock.now = NOW + 302  # both earlier ones are now outside the window: their memory goes
    stamp = str(int(clock.now))
    verify(check, sign("k1", stamp, BODY), stamp)
    assert "300 s" in refused(check, sign("k1", "1800000000", BODY), "1800000000")


def test_without_secrets_it_is_off() -> None:
    assert not verifier().enabled
    assert not SignatureVerifier([SecretStr("")]).enabled
    assert verifier("k1").enabled
