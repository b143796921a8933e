"""SIGHUP reloads the mappings of a real ``aep-relay serve`` process; a broken set is refused
with its file and line while the old set keeps serving."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES, MAPPINGS
from tests.e2e.relay_process import RelayProcess
from tests.load.loadgen import wait_until

pytestmark = pytest.mark.e2e


def test_sighup_reloads_and_a_broken_set_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "examples").symlink_to(EXAMPLES)
    (folder / "order.yaml").write_text((MAPPINGS / "zendesk-order-completed.yaml").read_text())
    relay = RelayProcess(
        # no polling: only the signal can make the relay look at the folder
        {"RELAY_INGEST_TOKENS": "e2e-token", "RELAY_MAPPINGS_DIR": str(folder), "RELAY_RELOAD_INTERVAL": "0"},
        tmp_path / "relay.log",
    )
    relay.start()
    assert relay.process is not None

    def served() -> list[str]:
        return list(httpx.get(f"{relay.url}/readyz").json()["mappings"])

    def metric(name: str) -> float:
        for line in httpx.get(f"{relay.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{name} not exposed")

    try:
        assert served() == ["order-completed"]
        (folder / "cart.yaml").write_text((MAPPINGS / "zendesk-product-added-to-cart.yaml").read_text())
        os.kill(relay.process.pid, signal.SIGHUP)
        assert wait_until(lambda: served() == ["product-added-to-cart", "order-completed"], 15)
        answer = httpx.post(
            f"{relay.url}/v1/events",
            content=(EXAMPLES / "cart-add.json").read_bytes(),
            headers={"Authorization": "Bearer e2e-token"},
        )
        assert answer.json()["results"][0]["mapping"] == "product-added-to-cart"

        (folder / "cart.yaml").write_text("destination: zendesk\nbody:\n  event: [unclosed\n")
        os.kill(relay.process.pid, signal.SIGHUP)
        assert wait_until(lambda: metric('aep_relay_mapping_reloads_total{result="failed"}') == 1, 15)
        assert metric("aep_relay_mapping_last_reload_successful") == 0
        assert served() == ["product-added-to-cart", "order-completed"]
        assert relay.process.poll() is None  # SIGHUP did not end the process
    finally:
        assert relay.stop() in (0, -15)
    logs = relay.logs()
    assert '"event": "mappings_reloaded"' in logs
    assert '"event": "mappings_reload_failed"' in logs
    assert f'"file": "{folder / "cart.yaml"}", "line": 4' in logs
