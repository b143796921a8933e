"""The SQLite store's disk fills up under a running relay, then space is freed: ingest answers
503 and ``/readyz`` says why while writes fail; both recover once they work, and the outcomes
of sends the full disk could not record are recorded then, not sent again.

The store lives on a small tmpfs of its own (mounting one needs root, as CI runs)."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.relay_process import RelayProcess
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import order_ids, purchase, wait_until
from tests.load.test_durability import TOKEN, relay_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow(seconds=30),
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="mounting a small tmpfs to fill needs root (CI runs as root, where this test must run)",
    ),
]

LEASE_SECONDS = 10.0  # a send whose outcome was lost would be sent again after this
ANSWER_DELAY = 2.0  # the fake holds its answers this long: sends are in flight as the disk fills
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}


@contextmanager
def small_tmpfs(path: Path, size: str = "16m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (CI can): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until its file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)


def post(relay: RelayProcess, event_id: str) -> httpx.Response:
    return httpx.post(f"{relay.url}/v1/events", content=purchase(event_id), headers=HEADERS, timeout=30)


def readyz(relay: RelayProcess) -> httpx.Response:
    return httpx.get(f"{relay.url}/readyz", timeout=10)


def store_writable(relay: RelayProcess) -> str:
    """The ``aep_relay_store_writable`` line of a scrape (the AepRelayNotReady alert reads it)."""
    scrape = httpx.get(f"{relay.url}/metrics", timeout=10).text
    [line] = [line for line in scrape.splitlines() if line.startswith("aep_relay_store_writable ")]
    return line


def test_disk_full_503_and_not_ready_until_space_is_freed_then_outcomes_recorded(
    fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    fake_zendesk.set_default(CannedResponse(202, {"status": "received"}, delay=ANSWER_DELAY))
    with small_tmpfs(tmp_path / "disk") as disk:
        env = relay_env(
            fake_zendesk,
            RELAY_STORE=f"sqlite:///{disk / 'relay.db'}",
            RELAY_LEASE_SECONDS=str(LEASE_SECONDS),
            RELAY_LOG_LEVEL="info",
            ZENDESK_RATE_LIMIT_PER_MINUTE="600000",
        )
        relay = RelayProcess(env, tmp_path / "relay.log")
        relay.start()
        try:
            assert readyz(relay).status_code == 200
            assert store_writable(relay) == "aep_relay_store_writable 1.0"
            in_flight = [f"inflight-{n}" for n in range(5)]
            acked = {event_id for event_id in in_flight if post(relay, event_id).status_code == 202}
            assert acked == set(in_flight)
            assert wait_until(lambda: len(fake_zendesk.received) >= len(in_flight), 10), "not sent"

            filler = disk / "filler"
            fill(filler)
            refused = None
            for n in range(200):  # what the log's file had left is used up first
                answer = post(relay, f"full-{n}")
                if answer.status_code == 503:
                    refused = answer
                    break
                assert answer.status_code == 202, answer.text
                acked.add(f"full-{n}")
            assert refused is not None, "ingest never failed on a full disk"
            assert refused.json()["code"] == "store_unavailable"
            assert "Retry-After" in refused.headers

            not_ready = readyz(relay)
            assert not_ready.status_code == 503, not_ready.text
            problem = not_ready.json()
            assert problem["code"] == "store_unavailable"
            assert "database or disk is full" in problem["detail"], problem
            assert problem["detail"].startswith("last write failed"), problem
            assert problem["store"]["reason"] == "SQLite: database or disk is full"
            assert store_writable(relay) == "aep_relay_store_writable 0.0"

            # the sends in flight get their answers now; recording them fails on the full disk
            assert wait_until(lambda: len(fake_zendesk.accepted) >= len(in_flight), 10)
            assert wait_until(lambda: relay.logs().count('"outcome_not_recorded"') >= len(in_flight), 10), (
                relay.logs()[-3000:]
            )
            assert readyz(relay).status_code == 503  # the probe writes fail too
            fake_zendesk.set_default(None)

            filler.unlink()
            freed_at = time.monotonic()
            assert wait_until(lambda: readyz(relay).status_code == 200, 5, interval=0.2), readyz(relay).text
            ready_after = time.monotonic() - freed_at
            assert store_writable(relay) == "aep_relay_store_writable 1.0"
            after = post(relay, "after-1")
            assert after.status_code == 202, after.text
            acked.add("after-1")

            assert wait_until(lambda: acked <= set(order_ids(fake_zendesk.accepted)), 15, interval=0.2), (
                f"not delivered: {sorted(acked - set(order_ids(fake_zendesk.accepted)))}\n{relay.logs()[-3000:]}"
            )
            # past the leases of the sends whose outcome the full disk refused: a lost outcome
            # would be sent again by now
            time.sleep(max(0.0, LEASE_SECONDS + 2.0 - (time.monotonic() - freed_at)))
        finally:
            relay.stop()
    counts = Counter(order_ids(fake_zendesk.accepted))
    assert [event_id for event_id, n in counts.items() if n > 1] == [], counts
    assert '"outcomes_recorded"' in relay.logs()
    assert ready_after < 5.0
