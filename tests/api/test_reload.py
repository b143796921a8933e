"""Hot reload of the mappings folder in-process: a real folder laid out as Kubernetes mounts a
ConfigMap (files linked through a ``..data`` symlink that an update swaps), a plain folder
edited in place, a broken set refused while the old one serves, and swaps under traffic."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.relay import Relay
from app.reload import fingerprint
from tests.conftest import EXAMPLES, MAPPINGS, auth, log_lines, make_settings
from tests.load.loadgen import purchase, wait_until

Client = Callable[..., TestClient]
ORDER = (MAPPINGS / "zendesk-order-completed.yaml").read_text()
CART = (MAPPINGS / "zendesk-product-added-to-cart.yaml").read_text()
BROKEN = 'destination: zendesk\nwhen: "xdm.eventType == \'x\'"\nbody:\n  event: "{{ xdm. }}"\n'


class ConfigMapFolder:
    """A folder as the kubelet writes a ConfigMap volume: ``name -> ..data/name`` links, and
    ``..data -> ..<version>``, swapped by one atomic rename on every update."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        (root / "examples").symlink_to(EXAMPLES)  # the examples' inputs, beside the files

    def publish(self, files: dict[str, str]) -> None:
        self.version += 1
        data = self.root / f"..2026_11_23_{self.version:04d}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        staged = self.root / "..data_tmp"
        staged.symlink_to(data.name)
        os.replace(staged, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        for link in self.root.glob("*.yaml"):
            if link.name not in files:
                link.unlink()


def served(client: TestClient) -> list[str]:
    return list(client.get("/readyz").json()["mappings"])


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not exposed")


def cart_add() -> bytes:
    return (EXAMPLES / "cart-add.json").read_bytes()


def test_a_configmap_update_is_picked_up_and_a_broken_one_refused(
    relay_client: Client, tmp_path: Path, logs: io.StringIO
) -> None:
    folder = ConfigMapFolder(tmp_path)
    folder.publish({"order.yaml": ORDER})
    client = relay_client(make_settings(relay_mappings_dir=tmp_path, relay_reload_interval=0.05))
    assert served(client) == ["order-completed"]
    assert client.post("/v1/events", content=cart_add(), headers=auth()).json()["results"][0]["status"] == (
        "ignored"
    )

    folder.publish({"order.yaml": ORDER, "cart.yaml": CART})
    assert wait_until(lambda: served(client) == ["product-added-to-cart", "order-completed"], 10)
    [result] = client.post("/v1/events", content=cart_add(), headers=auth()).json()["results"]
    assert (result["status"], result["mapping"]) == ("dry_run", "product-added-to-cart")
    assert metric(client, 'aep_relay_mapping_reloads_total{result="succeeded"}') == 1
    assert metric(client, "aep_relay_mappings_loaded") == 2

    folder.publish({"order.yaml": ORDER, "cart.yaml": CART, "broken.yaml": BROKEN})
    assert wait_until(lambda: metric(client, 'aep_relay_mapping_reloads_total{result="failed"}') == 1, 10)
    assert metric(client, "aep_relay_mapping_last_reload_successful") == 0
    assert served(client) == ["product-added-to-cart", "order-completed"]  # the old set keeps serving
    [again] = client.post("/v1/events", content=cart_add(), headers=auth()).json()["results"]
    assert (again["status"], again["mapping"]) == ("duplicate", "product-added-to-cart")
    [failed] = [line for line in log_lines(logs) if line["event"] == "mappings_reload_failed"]
    [issue] = failed["issues"]
    assert (issue["file"], issue["line"]) == (str(tmp_path / "broken.yaml"), 4)
    assert failed["level"] == "error"

    folder.publish({"order.yaml": ORDER})  # fixed by the next update
    assert wait_until(lambda: served(client) == ["order-completed"], 10)
    assert metric(client, "aep_relay_mapping_last_reload_successful") == 1
    assert metric(client, 'aep_relay_mapping_reloads_total{result="succeeded"}') == 2


def test_a_plain_folder_edited_in_place_is_reloaded(relay_client: Client, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(EXAMPLES)
    (tmp_path / "order.yaml").write_text(ORDER)
    client = relay_client(make_settings(relay_mappings_dir=tmp_path, relay_reload_interval=0.05))
    (tmp_path / "order.yaml").write_text(ORDER.replace("name: order-completed", "name: order-completed-v2"))
    assert wait_until(lambda: served(client) == ["order-completed-v2"], 10)
    (tmp_path / "order.yaml").unlink()
    assert wait_until(lambda: served(client) == [], 10)


def test_reload_interval_zero_leaves_the_folder_alone(relay_client: Client, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(EXAMPLES)
    (tmp_path / "order.yaml").write_text(ORDER)
    client = relay_client(make_settings(relay_mappings_dir=tmp_path, relay_reload_interval=0))
    (tmp_path / "cart.yaml").write_text(CART)
    relay: Relay = client.app.state.relay  # type: ignore[attr-defined]
    assert relay.reloader is not None
    assert not relay.reloader._tasks  # no watcher: only SIGHUP (or a call) reloads
    assert client.portal.call(relay.reloader.reload, "test")  # type: ignore[union-attr]
    assert served(client) == ["product-added-to-cart", "order-completed"]


def test_fingerprint_sees_a_symlink_swap_even_with_identical_files(tmp_path: Path) -> None:
    folder = ConfigMapFolder(tmp_path)
    folder.publish({"order.yaml": ORDER})
    before = fingerprint(tmp_path)
    assert before == fingerprint(tmp_path)
    folder.publish({"order.yaml": ORDER})
    assert fingerprint(tmp_path) != before


def test_swaps_are_atomic_for_requests_in_flight(relay_client: Client, tmp_path: Path) -> None:
    """Batches of two purchases keep posting while the set flips between two names: every
    answer was planned by one set, never a mix, and none failed."""
    (tmp_path / "examples").symlink_to(EXAMPLES)
    sets = [ORDER, ORDER.replace("name: order-completed", "name: order-completed-b")]
    (tmp_path / "order.yaml").write_text(sets[0])
    client = relay_client(make_settings(relay_mappings_dir=tmp_path, relay_reload_interval=0))
    relay: Relay = client.app.state.relay  # type: ignore[attr-defined]
    answers: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:
        index = 0
        while not stop.is_set() and index < 500:
            index += 1
            batch = {"events": [json.loads(purchase(f"swap-{index}-{n}")) for n in (1, 2)]}
            answers.append(client.post("/v1/events", content=json.dumps(batch), headers=auth()))

    poster = threading.Thread(target=traffic)
    poster.start()

    def names_seen() -> set[str]:
        return {result["mapping"] for response in list(answers) for result in response.json()["results"]}

    try:
        flip = 0
        # flip at least 8 times, and until answers from both sets came back
        while flip < 8 or (names_seen() != {"order-completed", "order-completed-b"} and flip < 200):
            flip += 1
            (tmp_path / "order.yaml").write_text(sets[flip % 2])
            assert client.portal.call(relay.reloader.reload, "test")  # type: ignore[union-attr]
    finally:
        stop.set()
        poster.join()
    assert names_seen() == {"order-completed", "order-completed-b"}
    for response in answers:
        assert response.status_code == 200, response.text
        assert len({result["mapping"] for result in response.json()["results"]}) == 1
