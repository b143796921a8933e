"""The fake Yotpo keeps Yotpo's documented 5 requests per second per store (reference 2.4)."""

from __future__ import annotations

import time

from tests.contract.test_fake_yotpo import EVENTS, get_token, make_client, payload
from tests.fakes.yotpo import FakeYotpo


def test_a_sixth_call_within_a_second_is_429_with_reset_one_second() -> None:
    with FakeYotpo() as fake, make_client(fake.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        started = time.monotonic()
        answers = [c.post(EVENTS, json=payload(id=str(n))) for n in range(6)]
        took = time.monotonic() - started
        assert [r.status_code for r in answers[:5]] == [200] * 5
        if took < 1.0:  # six calls on loopback take milliseconds; a stalled test process longer
            sixth = answers[5]
            assert sixth.status_code == 429
            assert (sixth.headers["ratelimit-reset"], sixth.headers["ratelimit-remaining"]) == ("1", "0")
            assert sixth.content == b""  # no 429 body is documented
            assert fake.throttled == 1 and "5" not in fake.events
            time.sleep(1.05)  # the first five are a second old
            assert c.post(EVENTS, json=payload(id="later")).status_code == 200


def test_refused_bodies_and_token_calls_do_not_count() -> None:
    with FakeYotpo(per_second=1) as fake, make_client(fake.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        assert c.post(EVENTS, json={}).status_code == 422
        get_token(c)
        assert c.post(EVENTS, json=payload(id="1")).status_code == 200
        assert fake.throttled == 0


def test_per_second_none_lifts_the_limit() -> None:
    with FakeYotpo(per_second=None) as fake, make_client(fake.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        assert [c.post(EVENTS, json=payload(id=str(n))).status_code for n in range(12)] == [200] * 12
        assert fake.throttled == 0
