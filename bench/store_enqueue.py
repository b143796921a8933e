"""Enqueue throughput of the SQLite store alone, on a store already holding ``--prefill`` rows.

Not a test. Opens ``SqliteStore`` (``synchronous=FULL``, keys in memory, as the relay runs it)
on a fresh file in a temporary folder (``--dir``: on which disk), fills it with ``--prefill``
deliveries (untimed), then times ``--deliveries`` more, each with a random event id (Adobe's
are UUIDs) and a body of about 550 bytes, in two shapes:

* ``1 x 64``: calls of one delivery, 64 callers at once (ingest's shape: the store's group
  commit puts what arrives while a batch is written in the next one);
* ``100 x 1``: calls of 100 deliveries, one after another (a batch of events in one request).

Each shape runs ``--rounds`` times on a fresh file; printed are the medians of deliveries a
second, of the process's CPU time a delivery (all threads) and of the bytes it wrote to the
disk a delivery (``write_bytes`` of ``/proc/self/io``: the log and its checkpoints). The last
two hardly move with other load on the machine, which the first does.
To compare two versions of the store, run the script under each (``PYTHONPATH=other/checkout``
puts that checkout's ``app`` first).

    .venv/bin/python bench/store_enqueue.py --prefill 200000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import app
from app.delivery.sqlite import SCHEMA_VERSION, SqliteStore
from app.delivery.store import NewDelivery
from app.destinations.base import OutboundRequest

BIG = 10**9
TTL = 86_400.0
CALLERS = 64


def delivery() -> NewDelivery:
    event_id = str(uuid.uuid4())
    body = {
        "data": {
            "profile": {
                "source": "adobe",
                "type": "customer",
                "identifiers": [{"type": "email", "value": f"{event_id[:8]}@example.com"}],
            },
            "event": {
                "source": "adobe",
                "type": "order_completed",
                "description": "Order completed",
                "created_at": "2026-12-07T12:00:00.000Z",
                "properties": {
                    "order_id": event_id,
                    "total": "129.90",
                    "currency": "EUR",
                    "items": [{"sku": "SKU-1", "quantity": "2"}, {"sku": "SKU-2", "quantity": "1"}],
                    "channel": "web",
                },
            },
        }
    }
    return NewDelivery(
        uuid.uuid4().hex, "zendesk-order-completed", "zendesk", event_id, OutboundRequest("POST", "/x", body)
    )


async def fill(store: SqliteStore, count: int) -> None:
    for start in range(0, count, 1000):
        batch = [delivery() for _ in range(min(1000, count - start))]
        await store.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)


def written() -> int:
    """Bytes this process has had written to storage so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


async def one_round(folder: Path, shape: str, prefill: int, count: int) -> tuple[float, float, float]:
    """Deliveries a second, CPU microseconds a delivery, bytes written a delivery."""
    store = SqliteStore(str(folder / f"{uuid.uuid4().hex}.db"))
    await store.open()
    try:
        await fill(store, prefill)
        if shape == "1 x 64":
            work = [delivery() for _ in range(count)]

            async def caller(part: list[NewDelivery]) -> None:
                for d in part:
                    await store.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)

            started, cpu, wrote = time.perf_counter(), time.process_time(), written()
            await asyncio.gather(*(caller(work[n::CALLERS]) for n in range(CALLERS)))
        else:
            batches = [[delivery() for _ in range(100)] for _ in range(count // 100)]
            started, cpu, wrote = time.perf_counter(), time.process_time(), written()
            for batch in batches:
                await store.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)
        elapsed, cpu, wrote = time.perf_counter() - started, time.process_time() - cpu, written() - wrote
        return count / elapsed, cpu / count * 1e6, wrote / count
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--prefill", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (a disk, not tmpfs: fsync)")
    args = parser.parse_args()
    print(f"app from {Path(app.__file__).parent.parent}, schema {SCHEMA_VERSION}, prefill {args.prefill}")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for shape in ("1 x 64", "100 x 1"):
            rounds = [
                asyncio.run(one_round(Path(folder), shape, args.prefill, args.deliveries))
                for _ in range(args.rounds)
            ]
            rate, cpu, wrote = (statistics.median(r[n] for r in rounds) for n in range(3))
            print(
                f"{shape:>8}: {rate:8.0f} deliveries/s, {cpu:5.0f} us CPU and {wrote / 1024:5.1f} KiB "
                f"written a delivery (rates: {', '.join(f'{r[0]:.0f}' for r in rounds)})"
            )


if __name__ == "__main__":
    main()
