"""The destination circuit breaker against the fake Zendesk answering 503 for a while.

While the circuit is open the fake sees one probe per interval, not the backlog at the rate
limit; /readyz (still ready), /metrics and the dead-letter route show it; once Zendesk
answers 2xx again a probe closes it and the backlog drains.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_metrics import scrape, value
from tests.conftest import auth, zendesk_settings
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import order_ids, purchase, wait_until

Client = Callable[..., TestClient]
ADMIN_TOKEN = "circuit-admin-token"
PROBE_SECONDS = 2.0
BACKLOG = 30


def circuit(client: TestClient) -> dict[str, Any]:
    ready = client.get("/readyz")
    assert ready.status_code == 200  # an open circuit never makes the relay unready
    assert ready.json()["status"] == "ready"
    state: dict[str, Any] = ready.json()["circuits"]["zendesk"]
    return state


def test_an_outage_opens_the_circuit_probes_once_per_interval_and_a_success_drains_the_backlog(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}))  # no Retry-After: no 429-like pause
    settings = zendesk_settings(
        fake_zendesk.base_url,
        relay_admin_token=ADMIN_TOKEN,
        relay_circuit_failures=3,
        relay_circuit_probe_seconds=PROBE_SECONDS,
        relay_retry_base_seconds=0.05,  # every delivery is due again at once: a backlog at the rate limit
        relay_retry_cap_seconds=0.2,
        zendesk_rate_limit_per_minute=600,
    )
    client = relay_client(settings)
    assert circuit(client)["state"] == "closed"
    assert list(client.get("/readyz").json()["circuits"]) == ["zendesk"]  # Yotpo is dry-run
    batch = {"events": [json.loads(purchase(f"circuit-{i:02d}")) for i in range(BACKLOG)]}
    posted = client.post("/v1/events", json=batch, headers=auth())
    assert posted.status_code == 202

    assert wait_until(lambda: circuit(client)["state"] != "closed", 15)
    opened = circuit(client)
    assert opened["state"] in ("open", "half_open")
    assert abs(opened["since"] - time.time()) < 15
    time.sleep(0.5)  # answers to sends that left before it opened
    before = len(fake_zendesk.received)
    assert before < 3 + 16  # the threshold, and at most the sends already in flight
    started = time.monotonic()
    time.sleep(3 * PROBE_SECONDS + 0.5)
    during = [r for r in fake_zendesk.received if r.received_at >= started]
    # 600/min would have let ~65 through in this time; an open circuit lets one per interval
    assert len(during) <= 4, f"{len(during)} requests while the circuit was open"
    assert len(during) >= 2, "no probe went out"
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(during)]
    assert all(gap >= PROBE_SECONDS * 0.9 for gap in gaps), gaps

    metrics = scrape(client)
    assert value(metrics, "aep_relay_circuit_state", destination="zendesk", state="closed") == 0
    assert value(metrics, "aep_relay_circuit_state", destination="zendesk") == 1  # one-hot
    assert value(metrics, "aep_relay_circuit_state", destination="yotpo") == 0  # dry-run: no circuit
    letters = client.get("/v1/dead-letters", headers=auth(ADMIN_TOKEN))
    assert letters.status_code == 200
    assert letters.json()["circuits"]["zendesk"]["state"] in ("open", "half_open")
    assert circuit(client)["since"] == opened["since"]  # probes do not move it

    fake_zendesk.set_default(None)  # Zendesk is back
    assert wait_until(lambda: circuit(client)["state"] == "closed", PROBE_SECONDS + 10)
    assert wait_until(lambda: len(set(order_ids(fake_zendesk.accepted))) == BACKLOG, 30)
    assert value(scrape(client), "aep_relay_circuit_state", destination="zendesk", state="closed") == 1


def test_429s_and_rejections_never_open_the_circuit(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.set_default(CannedResponse(429, {"error": "slow down"}, {"Retry-After": "0"}))
    settings = zendesk_settings(
        fake_zendesk.base_url,
        relay_circuit_failures=2,
        relay_retry_base_seconds=0.05,
        relay_retry_cap_seconds=0.2,
        zendesk_rate_limit_per_minute=6000,
    )
    client = relay_client(settings)
    batch = {"events": [json.loads(purchase(f"nocircuit-{i}")) for i in range(4)]}
    assert client.post("/v1/events", json=batch, headers=auth()).status_code == 202
    assert wait_until(lambda: len([r for r in fake_zendesk.received if r.status == 429]) >= 6, 20)
    assert circuit(client)["state"] == "closed"  # throttling is the rate limiter's business

    fake_zendesk.set_default(CannedResponse(400, {"errors": [{"code": "InvalidValue", "title": "bad"}]}))
    letters = lambda: client.get("/readyz").json()["dead_letters"]  # noqa: E731
    assert wait_until(lambda: letters() == 4, 20)
    assert circuit(client)["state"] == "closed"  # rejections show the destination is up
