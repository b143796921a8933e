"""``aep-relay dlq list|show|replay|purge`` run as real processes against an SQLite store file.

The store is filled through the real store API (enqueue, lease, mark_dead), as the dispatcher
would, and every change the CLI makes is checked through the store API again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from app.delivery.sqlite import SqliteStore
from app.delivery.store import Delivery, NewDelivery
from app.destinations.base import OutboundRequest
from app.status import DeliveryStatus
from tests.conftest import EXAMPLES
from tests.e2e.relay_process import ROOT, RelayProcess
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk

pytestmark = pytest.mark.e2e
T = TypeVar("T")


@dataclass(frozen=True)
class Letter:
    id: str
    mapping: str = "order-completed"
    destination: str = "zendesk"
    code: str = "destination_rejected"
    detail: str = "Zendesk: StartTimestampNotValid: Start Timestamp not valid"


def problem(letter: Letter) -> dict[str, Any]:
    return {
        "type": "/problems/" + letter.code.replace("_", "-"),
        "code": letter.code,
        "status": 422,
        "retryable": False,
        "detail": letter.detail,
        "destination": letter.destination,
        "upstream": {
            "status": 400,
            "request_id": f"zd-{letter.id}",
            "body": {"errors": [{"code": "StartTimestampNotValid", "title": "Start Timestamp not valid"}]},
        },
    }


def body(letter: Letter) -> dict[str, Any]:
    return {
        "profile": {"source": "shop", "type": "customer", "identifiers": [{"type": "email", "value": "x"}]},
        "event": {"source": "shop", "type": "order_completed", "properties": {"order": letter.id}},
    }


def with_store(db: Path, action: Callable[[SqliteStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteStore(str(db))
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def kill(store: SqliteStore, letters: list[Letter]) -> None:
    """Store the letters as deliveries, lease them as the dispatcher would, and mark them dead."""
    await store.enqueue(
        [
            NewDelivery(
                id=letter.id,
                mapping=letter.mapping,
                destination=letter.destination,
                event_id=f"event-{letter.id}",
                request=OutboundRequest("POST", "/api/v2/user_profiles/events", body(letter)),
            )
            for letter in letters
        ],
        max_pending=1000,
        idempotency_ttl=3600,
    )
    by_id = {letter.id: letter for letter in letters}
    for destination in {letter.destination for letter in letters}:
        for leased in await store.lease(destination, 100, 60):
            assert await store.mark_dead(leased, problem(by_id[leased.id]))


def fill(db: Path, letters: list[Letter]) -> None:
    with_store(db, lambda store: kill(store, letters))


def get(db: Path, *ids: str) -> dict[str, Delivery]:
    async def run(store: SqliteStore) -> dict[str, Delivery]:
        return {d.id: d for d in await store.get_many(ids)}

    return with_store(db, run)


def env_for(db: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "RELAY_STORE": f"sqlite:///{db}"}


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT, env=env_for(db), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def listed(db: Path, *args: str) -> list[str]:
    done = cli(db, "dlq", "list", "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(json.loads(line)["id"] for line in done.stdout.splitlines())


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


LETTERS = [
    Letter("dl-a"),
    Letter("dl-b", mapping="product-added-to-cart"),
    Letter("dl-c", destination="yotpo", mapping="yotpo-order", code="validation_failed",
           detail="Yotpo: type must be snake_case " + "x" * 100),
]  # fmt: skip
IDS = [letter.id for letter in LETTERS]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "relay.db"
    fill(path, LETTERS)
    yield path


def test_list_prints_a_table_of_every_dead_letter(db: Path) -> None:
    done = cli(db, "dlq", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["ID", "DEAD", "AT", "DESTINATION", "MAPPING", "CODE", "ATTEMPTS", "DETAIL"]
    assert len(rows) == 3
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id["dl-a"][2:6] == ["zendesk", "order-completed", "destination_rejected", "1"]
    assert by_id["dl-c"][2:5] == ["yotpo", "yotpo-order", "validation_failed"]
    dead_at = datetime.fromisoformat(by_id["dl-a"][1])
    assert dead_at.tzinfo is not None and by_id["dl-a"][1].endswith("Z")
    assert abs(dead_at.timestamp() - time.time()) < 120
    row_c = next(row for row in rows if row.startswith("dl-c"))
    assert "Yotpo: type must be snake_case" in row_c and row_c.endswith("...")
    assert "x" * 100 not in row_c


def test_list_json_lines_and_limit(db: Path) -> None:
    done = cli(db, "dlq", "list", "--json")
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(d["id"] for d in docs) == IDS
    doc = next(d for d in docs if d["id"] == "dl-a")
    assert doc["status"] == DeliveryStatus.DEAD and doc["attempts"] == 1
    assert doc["last_problem"]["code"] == "destination_rejected"
    assert doc["dead_at"].endswith("Z")
    assert "body" not in doc
    assert len(listed(db, "--limit", "2")) == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--destination", "zendesk"], ["dl-a", "dl-b"]),
        (["--destination", "yotpo"], ["dl-c"]),
        (["--mapping", "product-added-to-cart"], ["dl-b"]),
        (["--code", "validation_failed"], ["dl-c"]),
        (["--code", "destination_rejected", "--mapping", "order-completed"], ["dl-a"]),
        (["--destination", "nowhere"], []),
    ],
)
def test_list_filters(db: Path, args: list[str], expected: list[str]) -> None:
    assert listed(db, *args) == expected


def test_list_since_and_until(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    fill(db, [Letter("early")])
    middle = time.time()
    fill(db, [Letter("late")])
    assert listed(db, "--since", iso(middle)) == ["late"]
    assert listed(db, "--until", iso(middle)) == ["early"]
    assert listed(db, "--since", iso(middle - 3600), "--until", iso(middle + 3600)) == ["early", "late"]
    assert listed(db, "--since", iso(middle + 3600)) == []
    # without an offset the time is UTC
    naive = datetime.fromtimestamp(middle, UTC).replace(tzinfo=None).isoformat()
    assert listed(db, "--since", naive) == ["late"]


def test_empty_store_lists_nothing(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    fill(db, [])
    done = cli(db, "dlq", "list")
    assert (done.returncode, done.stdout.strip()) == (0, "no dead letters")
    assert cli(db, "dlq", "list", "--json").stdout == ""


def test_bad_time_and_missing_store_exit_2(db: Path, tmp_path: Path) -> None:
    done = cli(db, "dlq", "list", "--since", "yesterday")
    assert done.returncode == 2
    assert "--since" in done.stderr
    missing = tmp_path / "nowhere" / "relay.db"
    done = cli(missing, "dlq", "list")
    assert done.returncode == 2
    assert "no store" in done.stderr
    assert not missing.parent.exists()


def test_show_prints_body_problem_and_upstream(db: Path) -> None:
    done = cli(db, "dlq", "show", "dl-a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{\n  ")  # indented
    doc = json.loads(done.stdout)
    assert doc["id"] == "dl-a" and doc["status"] == DeliveryStatus.DEAD
    assert doc["body"] == body(LETTERS[0])
    assert doc["last_problem"]["detail"] == LETTERS[0].detail
    assert doc["last_problem"]["upstream"]["status"] == 400
    assert doc["last_problem"]["upstream"]["body"]["errors"][0]["code"] == "StartTimestampNotValid"
    assert doc["endpoint"] == "POST /api/v2/user_profiles/events"


def test_show_exits_1_when_there_is_no_such_dead_letter(db: Path) -> None:
    done = cli(db, "dlq", "show", "nope")
    assert done.returncode == 1
    assert "nope" in done.stderr
    assert done.stdout == ""


def test_show_exits_1_for_a_delivery_that_is_not_dead(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"

    async def pending(store: SqliteStore) -> None:
        request = OutboundRequest("POST", "/api/v2/user_profiles/events", {})
        await store.enqueue(
            [NewDelivery("alive", "m", "zendesk", None, request)], max_pending=10, idempotency_ttl=60
        )

    with_store(db, pending)
    assert cli(db, "dlq", "show", "alive").returncode == 1


def test_replay_by_id_makes_it_pending_again(db: Path) -> None:
    before = get(db, "dl-a")["dl-a"]
    done = cli(db, "dlq", "replay", "dl-a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "replayed 1"
    after = get(db, *IDS)
    assert after["dl-a"].status == DeliveryStatus.PENDING
    assert after["dl-a"].attempts == 0
    assert after["dl-a"].due_at is not None and after["dl-a"].due_at <= time.time()
    assert after["dl-a"].request == before.request
    assert after["dl-b"].status == DeliveryStatus.DEAD and after["dl-c"].status == DeliveryStatus.DEAD
    assert listed(db) == ["dl-b", "dl-c"]


def test_replay_several_ids_and_report_unknown_ones(db: Path) -> None:
    done = cli(db, "dlq", "replay", "dl-a", "dl-b", "ghost")
    assert done.returncode == 1
    assert done.stdout.strip() == "replayed 2"
    assert "ghost" in done.stderr
    after = get(db, *IDS)
    assert [after[i].status for i in IDS] == [
        DeliveryStatus.PENDING,
        DeliveryStatus.PENDING,
        DeliveryStatus.DEAD,
    ]


def test_replay_by_filter(db: Path) -> None:
    done = cli(db, "dlq", "replay", "--destination", "zendesk")
    assert (done.returncode, done.stdout.strip()) == (0, "replayed 2")
    after = get(db, *IDS)
    assert [after[i].status for i in IDS] == [
        DeliveryStatus.PENDING,
        DeliveryStatus.PENDING,
        DeliveryStatus.DEAD,
    ]
    assert after["dl-a"].attempts == after["dl-b"].attempts == 0


def test_replay_all(db: Path) -> None:
    done = cli(db, "dlq", "replay", "--all")
    assert (done.returncode, done.stdout.strip()) == (0, "replayed 3")
    assert {d.status for d in get(db, *IDS).values()} == {DeliveryStatus.PENDING}


def test_purge_by_id_and_by_filter(db: Path) -> None:
    done = cli(db, "dlq", "purge", "dl-a")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 1")
    assert sorted(get(db, *IDS)) == ["dl-b", "dl-c"]
    assert cli(db, "dlq", "show", "dl-a").returncode == 1
    done = cli(db, "dlq", "purge", "--code", "validation_failed")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 1")
    assert sorted(get(db, *IDS)) == ["dl-b"]
    done = cli(db, "dlq", "purge", "--all")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 1")
    assert get(db, *IDS) == {}


def test_purge_leaves_pending_deliveries_alone(db: Path) -> None:
    assert cli(db, "dlq", "replay", "dl-a").returncode == 0
    done = cli(db, "dlq", "purge", "--all")
    assert done.stdout.strip() == "purged 2"
    assert sorted(get(db, *IDS)) == ["dl-a"]
    assert cli(db, "dlq", "purge", "dl-a").returncode == 1  # not a dead letter


@pytest.mark.parametrize("command", ["replay", "purge"])
def test_replay_and_purge_everything_need_all(db: Path, command: str) -> None:
    before = get(db, *IDS)
    done = cli(db, "dlq", command)
    assert done.returncode == 2
    assert "--all" in done.stderr
    assert get(db, *IDS) == before


def test_the_cli_works_next_to_a_running_relay(fake_zendesk: FakeZendesk, tmp_path: Path) -> None:
    """Dead letters made by a served relay, replayed from the CLI, are sent by that relay."""
    relay = RelayProcess(
        {
            "RELAY_INGEST_TOKENS": "e2e-token",
            "ZENDESK_BASE_URL": fake_zendesk.base_url,
            "ZENDESK_EMAIL": "agent@example.com",
            "ZENDESK_API_TOKEN": "test-api-token",
        },
        tmp_path / "relay.log",
    )
    db = tmp_path / "relay.db"
    fake_zendesk.set_default(ERROR_BODIES["errors_array_400"])
    relay.start()
    try:
        response = httpx.post(
            f"{relay.url}/v1/events?wait=10",
            content=(EXAMPLES / "purchase.json").read_bytes(),
            headers={"Authorization": "Bearer e2e-token", "Content-Type": "text/plain"},
            timeout=30,
        )
        [result] = response.json()["results"]
        assert result["status"] == "dead", response.text
        delivery_id = result["delivery_id"]
        assert listed(db) == [delivery_id]
        shown = json.loads(cli(db, "dlq", "show", delivery_id).stdout)
        assert shown["last_problem"]["upstream"]["status"] == 400

        fake_zendesk.set_default(None)
        done = cli(db, "dlq", "replay", delivery_id)
        assert (done.returncode, done.stdout.strip()) == (0, "replayed 1")
        assert fake_zendesk.wait_for(1, timeout=30), relay.logs()  # answered 202
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = httpx.get(
                f"{relay.url}/v1/deliveries/{delivery_id}",
                headers={"Authorization": "Bearer e2e-token"},
                timeout=5,
            ).json()["status"]
            if status == DeliveryStatus.DELIVERED:
                break
            time.sleep(0.05)
        assert status == DeliveryStatus.DELIVERED
        assert len(fake_zendesk.accepted) == 1
        assert listed(db) == []
    finally:
        assert relay.stop() in (0, -15)


def test_a_dlq_command_does_not_steal_a_running_relays_leases(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"

    async def scenario() -> bool:
        relay_store = SqliteStore(str(db))  # stands for the running relay
        await relay_store.open()
        try:
            request = OutboundRequest("POST", "/api/v2/user_profiles/events", {})
            await relay_store.enqueue(
                [NewDelivery("busy", "m", "zendesk", None, request)], max_pending=10, idempotency_ttl=60
            )
            [leased] = await relay_store.lease("zendesk", 1, 60)
            done = await asyncio.to_thread(cli, db, "dlq", "list")
            assert done.returncode == 0, done.stderr
            return await relay_store.mark_delivered(leased, {"status": 202})
        finally:
            await relay_store.close()

    assert asyncio.run(scenario())
