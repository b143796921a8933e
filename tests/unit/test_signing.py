"""HMAC request signatures (app/api/signing.py): secrets, skew window, replays, bounds."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import SecretStr

from app.api.signing import SignatureVerifier, sign
from app.problems import Problem

BODY = b'{"xdm": {"eventType": "commerce.purchases"}}'
NOW = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(*secrets: str, clock: Clock | None = None, **kwargs: int) -> SignatureVerifier:
    return SignatureVerifier([SecretStr(s) for s in secrets], clock=clock or Clock(), **kwargs)


def refused(
    check: SignatureVerifier, signature: str | None, timestamp: str | None, body: bytes = BODY
) -> str:
    with pytest.raises(Problem) as caught:
        check.verify(signature, timestamp, body)
    assert caught.value.code == "invalid_signature"
    assert caught.value.status == 401
    return str(caught.value.detail)


def test_the_signed_string_is_timestamp_dot_body() -> None:
    expected = hmac.new(b"k1", b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("k1", "1800000000", BODY) == f"sha256={expected}"


def test_a_good_signature_is_accepted_once() -> None:
    check = verifier("k1")
    signature = sign("k1", "1800000000", BODY)
    check.verify(signature, "1800000000", BODY)
    assert "already used" in refused(check, signature, "1800000000")


def test_hex_case_and_surrounding_spaces_do_not_matter() -> None:
    check = verifier("k1")
    check.verify(" " + sign("k1", "1800000000", BODY).upper() + " ", " 1800000000 ", BODY)


def test_any_of_several_secrets_signs_for_rotation() -> None:
    check = verifier("old-secret", "new-secret")
    check.verify(sign("old-secret", "1800000000", BODY), "1800000000", BODY)
    check.verify(sign("new-secret", "1800000001", BODY), "1800000001", BODY)
    refused(check, sign("retired-secret", "1800000002", BODY), "1800000002")


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
        check.verify(sign("k1", stamp, BODY), stamp, BODY)
    for offset in (-301, 301):
        stamp = str(int(NOW) + offset)
        assert "300 s" in refused(check, sign("k1", stamp, BODY), stamp)


def test_remembered_signatures_are_forgotten_once_stale() -> None:
    clock = Clock()
    check = verifier("k1", clock=clock, max_remembered=2)
    for stamp in ("1800000000", "1800000001"):
        check.verify(sign("k1", stamp, BODY), stamp, BODY)
    with pytest.raises(Problem) as caught:  # full: refuse rather than forget a live signature
        check.verify(sign("k1", "1800000002", BODY), "1800000002", BODY)
    assert caught.value.code == "overloaded"
    clock.now = NOW + 302  # both earlier ones are now outside the window: their memory goes
    stamp = str(int(clock.now))
    check.verify(sign("k1", stamp, BODY), stamp, BODY)
    assert "300 s" in refused(check, sign("k1", "1800000000", BODY), "1800000000")


def test_without_secrets_it_is_off() -> None:
    assert not verifier().enabled
    assert not SignatureVerifier([SecretStr("")]).enabled
    assert verifier("k1").enabled
