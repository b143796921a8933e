"""The SQLite store's in-memory index of idempotency keys: expiry, undo and pruning."""

from __future__ import annotations

from app.delivery.key_index import KeyIndex
from app.ids import new_id


def test_a_key_is_held_until_it_expires() -> None:
    keys = KeyIndex()
    keys.take("m1\x1fevt-1", "d1", expires_at=100.0)
    assert keys.holder("m1\x1fevt-1", now=99.9) == "d1"
    assert keys.holder("m1\x1fevt-1", now=100.0) is None
    assert keys.holder("m1\x1fevt-2", now=0.0) is None


def test_undo_gives_back_what_changed_since_begin() -> None:
    keys = KeyIndex()
    keys.begin()
    keys.take("a", "d1", 100.0)
    keys.begin()  # the first transaction committed
    keys.take("b", "d2", 100.0)
    keys.take("a", "d3", 200.0)  # a's holder replaced
    keys.undo()
    assert (keys.holder("a", 0.0), keys.holder("b", 0.0), len(keys)) == ("d1", None, 1)


def test_undo_to_a_mark_keeps_what_came_before_it() -> None:
    keys = KeyIndex()
    keys.begin()
    keys.take("a", "d1", 100.0)
    mark = keys.mark()
    keys.take("b", "d2", 100.0)
    keys.take("b", "d3", 100.0)
    keys.undo(mark)
    assert (keys.holder("a", 0.0), keys.holder("b", 0.0)) == ("d1", None)
    keys.undo()
    assert len(keys) == 0


def test_prune_drops_expired_keys_oldest_first() -> None:
    keys = KeyIndex()
    keys.take("a", "d1", 10.0)
    keys.take("b", "d2", 20.0)
    keys.take("c", "d3", 30.0)
    keys.take("a", "d4", 40.0)  # taken again: now the newest
    assert keys.prune(now=25.0) == 1  # b; a moved behind c
    assert [keys.holder(k, 25.0) for k in "abc"] == ["d4", None, "d3"]
    assert keys.prune(now=50.0) == 2
    assert len(keys) == 0


def test_prune_stops_at_the_first_live_key() -> None:
    keys = KeyIndex()
    keys.take("long", "d1", 1000.0)
    keys.take("short", "d2", 10.0)  # a shorter TTL after a longer one
    assert keys.prune(now=20.0) == 0
    assert keys.holder("short", 20.0) is None  # expired all the same


def test_every_form_of_holder_id_comes_back_as_it_was_given() -> None:
    keys = KeyIndex()
    ids = [
        new_id(),  # packed into one integer
        "0" * 32,
        "live",  # the others are kept as they are
        "ABCDEF0123456789ABCDEF0123456789",
        "0x" + "a" * 30,
        "+" + "1" * 31,
        "1_" + "2" * 30,
    ]
    for n, delivery_id in enumerate(ids):
        keys.take(f"k{n}", delivery_id, 1_800_000_000.123456)
    assert [keys.holder(f"k{n}", 1_800_000_000.123455) for n in range(len(ids))] == ids
    assert [keys.holder(f"k{n}", 1_800_000_000.123457) for n in range(len(ids))] == [None] * len(ids)
