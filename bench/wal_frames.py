"""WAL frames one ingest commit writes, for the store's schema and variants without its indexes.

Not a test. Inserts batches of ``--rows`` deliveries (about 550 bytes each, time-ordered ids,
as the relay stores them) with the store's own multi-row ``INSERT`` into a fresh SQLite file
in WAL mode, with automatic checkpoints off, and prints the WAL frames (4 KiB pages plus a
24-byte header each) one commit adds. Each frame is two ``pwrite`` calls and, later, a
checkpoint write. Event ids are sequential unless ``--random-ids`` makes them random UUIDs, as
Adobe's are: then an index on them is written at a random leaf per row. Results and what they
mean: ``bench/RESULTS.md`` (thirteenth and fourteenth sessions).

    .venv/bin/python bench/wal_frames.py --rows 14
    .venv/bin/python bench/wal_frames.py --rows 14 --random-ids
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.delivery import sqlite as store

FRAME = 24 + 4096
WARM_COMMITS = 300
MEASURED_COMMITS = 50
TABLE = store.SCHEMA.split("CREATE INDEX")[0].split(";", 1)[1]
INDEXES = {
    "deliveries_due": "CREATE INDEX deliveries_due ON deliveries (destination, due_at) "
    "WHERE status IN ('pending', 'in_flight')",
    "deliveries_idem": "CREATE UNIQUE INDEX deliveries_idem ON deliveries (idem_key) "
    "WHERE idem_key IS NOT NULL",
    "deliveries_event": "CREATE INDEX deliveries_event ON deliveries (event_id) WHERE event_id IS NOT NULL",
}
VARIANTS = (  # label, indexes kept, integer rowid key with `id` unindexed
    ("schema v2 (table, id key, due, idem)", ("deliveries_due", "deliveries_idem"), False),
    ("without deliveries_due", ("deliveries_idem",), False),
    ("without deliveries_idem (schema v3)", ("deliveries_due",), False),
    ("with an event-id index (tried for trace)", ("deliveries_due", "deliveries_event"), False),
    ("without both", (), False),
    ("rowid key, id unindexed, without both", (), True),
)


def frames_per_commit(
    rows: int, indexes: tuple[str, ...], rowid_key: bool, random_ids: bool = False
) -> float:
    """WAL frames per commit of ``rows`` inserts, after a warm-up that grows the B-trees."""
    with tempfile.TemporaryDirectory() as folder:
        return _measure(Path(folder) / "frames.db", rows, indexes, rowid_key, random_ids)


def _measure(path: Path, rows: int, indexes: tuple[str, ...], rowid_key: bool, random_ids: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    table = TABLE.replace("id TEXT PRIMARY KEY", "rid INTEGER PRIMARY KEY, id TEXT")
    conn.execute(table if rowid_key else TABLE)
    for name in indexes:
        conn.execute(INDEXES[name])
    sql = store._insert_sql(rows)
    if "deliveries_idem" not in indexes:
        sql = sql.split(" ON CONFLICT")[0]
    count = 0

    def commit() -> None:
        nonlocal count
        now = time.time()
        values: list[object] = []
        for _ in range(rows):
            count += 1
            event_id = str(uuid.uuid4()) if random_ids else f"5d8c1f2a-{count:08d}-4e1b"
            values += [
                f"{int(now * 1000):012x}{count:020x}", "zendesk-order-completed", "zendesk", event_id, None,
                "POST", "/api/v2/user_profiles/events", b"x" * 377, "pending", now, now, now,
                f"zendesk-order-completed\x1f{event_id}", now + 86400,
            ]  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, values)
        conn.execute("COMMIT")

    for _ in range(WARM_COMMITS):
        commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(MEASURED_COMMITS):
        commit()
    wal = path.with_name(path.name + "-wal")
    frames = (wal.stat().st_size - 32) / FRAME / MEASURED_COMMITS
    conn.close()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=14, help="rows per commit (default 14)")
    parser.add_argument("--random-ids", action="store_true", help="random UUIDs as event ids")
    args = parser.parse_args()
    for label, indexes, rowid_key in VARIANTS:
        frames = frames_per_commit(args.rows, indexes, rowid_key, args.random_ids)
        per_row = frames * FRAME / args.rows
        print(f"{label:40s} {frames:5.1f} frames per commit of {args.rows} ({per_row:.0f} B/row)")


if __name__ == "__main__":
    main()
