"""The Store interface, checked the same way on every store kind.

Every test runs against each kind in ``stores.KINDS``: the in-memory
reference store, the durable store, whatever ``storekit.open`` returns, and
the LSM store when it is installed. Tests that reopen a store check that
durable kinds keep their contents across close and open.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import DURABLE_KINDS, KINDS, StoreKind, child_env

import storekit
from storekit import (
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    ClosedError,
    LockedError,
    ReadOnlyError,
    WriteBatch,
)
from storekit.store import Store

# -- fixtures -----------------------------------------------------------------


class StoreHandle:
    """The store under test, and a way to close and open it again."""

    def __init__(self, kind: StoreKind, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.store = kind.make(path)

    def reopen(self) -> Store:
        """Flush, close and reopen the store, and return the new object."""
        self.store.flush()
        self.store = self.kind.reopen(self.store, self.path)
        return self.store

    def before_and_after_reopen(self) -> Iterator[Store]:
        """Yield the open store, then reopen it and yield the new object."""
        yield self.store
        yield self.reopen()

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> StoreKind:
    return KINDS[request.param]


@pytest.fixture(params=DURABLE_KINDS)
def durable_kind(request: pytest.FixtureRequest) -> StoreKind:
    return KINDS[request.param]


@pytest.fixture
def opened(kind: StoreKind, tmp_path: Path):
    handle = StoreHandle(kind, tmp_path / "db")
    yield handle
    handle.close()


@pytest.fixture
def db(opened: StoreHandle) -> Store:
    return opened.store


def put_all(db: Store, items: dict[bytes, bytes]) -> None:
    for key, value in items.items():
        db.put(key, value)


def force_background_work(db: Store) -> None:
    """Make the store write its data files now: WAL fsync, checkpoint, tables."""
    db.flush()
    checkpoint = getattr(db, "checkpoint", None)
    if checkpoint is not None:
        checkpoint()
    db.compact()


# -- argument types -----------------------------------------------------------

NOT_BYTES = [("text", "str"), (7, "int"), (None, "NoneType")]


@pytest.mark.parametrize(("bad", "type_name"), NOT_BYTES)
def test_put_rejects_non_bytes(db: Store, bad: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=type_name):
        db.put(bad, b"value")
    with pytest.raises(TypeError, match=type_name):
        db.put(b"key", bad)
    with pytest.raises(TypeError, match=type_name):
        db[bad] = b"value"
    assert list(db.scan()) == []


@pytest.mark.parametrize(("bad", "type_name"), NOT_BYTES)
def test_get_and_delete_reject_non_bytes(db: Store, bad: Any, type_name: str) -> None:
    db.put(b"key", b"value")
    with pytest.raises(TypeError, match=type_name):
        db.get(bad)
    with pytest.raises(TypeError, match=type_name):
        db.delete(bad)
    assert db.get(b"key") == b"value"


@pytest.mark.parametrize(("bad", "type_name"), NOT_BYTES[:2])
@pytest.mark.parametrize("bound", ["start", "end", "prefix"])
def test_scan_rejects_non_bytes_bound(
    db: Store, bound: str, bad: Any, type_name: str
) -> None:
    # None is a valid bound (unbounded), so only str and int are wrong here.
    db.put(b"key", b"value")
    with pytest.raises(TypeError, match=type_name):
        list(db.scan(**{bound: bad}))
    with pytest.raises(TypeError, match=type_name):
        list(db.scan(**{bound: bad}, reverse=True))


@pytest.mark.parametrize("flag", ["reverse", "keys_only"])
@pytest.mark.parametrize("bad", ["no", 0, 1, None])
def test_scan_rejects_non_bool_flag(db: Store, flag: str, bad: Any) -> None:
    # A truthy string such as "no" must not silently reverse the scan.
    db.put(b"key", b"value")
    with pytest.raises(TypeError, match=flag):
        list(db.scan(**{flag: bad}))
    with db.snapshot() as snapshot, pytest.raises(TypeError, match=flag):
        list(snapshot.scan(**{flag: bad}))


@pytest.mark.parametrize(("bad", "type_name"), NOT_BYTES)
def test_batch_rejects_non_bytes(db: Store, bad: Any, type_name: str) -> None:
    batch = WriteBatch()
    with pytest.raises(TypeError, match=type_name):
        batch.put(bad, b"value")
    with pytest.raises(TypeError, match=type_name):
        batch.put(b"key", bad)
    with pytest.raises(TypeError, match=type_name):
        batch.delete(bad)
    assert len(batch) == 0

    with pytest.raises(TypeError, match=type_name):
        with db.batch() as context_batch:
            context_batch.put(b"first", b"1")
            context_batch.put(bad, b"value")
    assert db.get(b"first") is None


def test_write_rejects_non_batch(db: Store) -> None:
    with pytest.raises(TypeError, match="list"):
        db.write([(1, b"key", b"value")])  # type: ignore[arg-type]
    assert db.get(b"key") is None


def test_bytes_like_input_returns_bytes(opened: StoreHandle) -> None:
    db = opened.store
    key = bytearray(b"key")
    value = bytearray(b"value")
    db.put(key, memoryview(value))
    db.put(memoryview(b"other"), value)
    key[0] = ord("X")
    value[0] = ord("X")

    assert db.get(b"key") == b"value"
    assert type(db.get(bytearray(b"key"))) is bytes
    items = list(db.scan())
    assert items == [(b"key", b"value"), (b"other", b"value")]
    assert all(type(k) is bytes and type(v) is bytes for k, v in items)

    db = opened.reopen()
    assert list(db.scan()) == [(b"key", b"value"), (b"other", b"value")]


# -- size limits --------------------------------------------------------------


def test_key_above_limit_raises(db: Store) -> None:
    key = b"k" * (MAX_KEY_SIZE + 1)
    calls: list[Callable[[], object]] = [
        lambda: db.put(key, b"value"),
        lambda: db.get(key),
        lambda: db.delete(key),
        lambda: WriteBatch().put(key, b"value"),
        lambda: WriteBatch().delete(key),
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert str(MAX_KEY_SIZE + 1) in message
        assert str(MAX_KEY_SIZE) in message
    assert list(db.scan()) == []


def test_value_above_limit_raises(db: Store) -> None:
    # bytes(n) is allocated with calloc and never touched, so the oversized value
    # costs little time or memory.
    value = bytes(MAX_VALUE_SIZE + 1)
    for call in (lambda: db.put(b"key", value), lambda: WriteBatch().put(b"k", value)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert str(MAX_VALUE_SIZE + 1) in message
        assert str(MAX_VALUE_SIZE) in message
    assert db.get(b"key") is None


def test_key_at_limit_accepted(opened: StoreHandle) -> None:
    db = opened.store
    key = b"k" * MAX_KEY_SIZE
    db.put(key, b"long key")
    with db.batch() as batch:
        batch.put(b"\xff" * MAX_KEY_SIZE, b"long key in batch")

    assert db.get(key) == b"long key"
    assert db.get(b"\xff" * MAX_KEY_SIZE) == b"long key in batch"
    db = opened.reopen()
    assert db.get(key) == b"long key"
    assert list(db.scan(keys_only=True)) == [key, b"\xff" * MAX_KEY_SIZE]


def test_value_at_limit_accepted_in_memory() -> None:
    db = storekit.MemoryStore()
    value = bytes(MAX_VALUE_SIZE)
    db.put(b"key", value)
    WriteBatch().put(b"key", value)
    assert len(db.get(b"key")) == MAX_VALUE_SIZE


@pytest.mark.slow
def test_value_at_limit_round_trip(opened: StoreHandle) -> None:
    # random.randbytes(n) raises OverflowError for n of 256 MiB on CPython 3.11,
    # so the value is built from 64 MiB pieces.
    rng = random.Random(256)
    value = b"".join(rng.randbytes(64 << 20) for _ in range(MAX_VALUE_SIZE >> 26))
    digest = hashlib.sha256(value).hexdigest()
    opened.store.put(b"key", value)
    del value
    for db in opened.before_and_after_reopen():
        found = db.get(b"key")
        assert found is not None
        assert len(found) == MAX_VALUE_SIZE
        assert hashlib.sha256(found).hexdigest() == digest


def test_64_mib_value_round_trip(opened: StoreHandle) -> None:
    value = random.Random(64).randbytes(64 << 20)
    digest = hashlib.sha256(value).hexdigest()
    opened.store.put(b"big", value)
    opened.store.put(b"small", b"after the big value")
    del value

    for db in opened.before_and_after_reopen():
        found = db.get(b"big")
        assert found is not None
        assert len(found) == 64 << 20
        assert hashlib.sha256(found).hexdigest() == digest
        assert db.get(b"small") == b"after the big value"
        assert list(db.scan(keys_only=True)) == [b"big", b"small"]


# -- empty keys and values ----------------------------------------------------


def test_empty_value_on_every_write_path(opened: StoreHandle) -> None:
    db = opened.store
    db.put(b"k1", b"")
    with db.batch() as batch:
        batch.put(b"k2", b"")

    for db in opened.before_and_after_reopen():
        assert db.get(b"k1") == b""
        assert db.get(b"k2") == b""
        assert db.get(b"k1", b"default") == b""
        assert b"k1" in db
        assert b"k2" in db
        assert db[b"k2"] == b""
        assert list(db.scan()) == [(b"k1", b""), (b"k2", b"")]

    db.delete(b"k1")
    assert db.get(b"k1") is None
    assert b"k1" not in db
    assert db.get(b"k2") == b""
    db = opened.reopen()
    assert db.get(b"k1") is None
    assert list(db.scan()) == [(b"k2", b"")]


def test_empty_key_on_every_write_path(opened: StoreHandle) -> None:
    db = opened.store
    db.put(b"", b"from put")
    db.put(b"\x00", b"zero byte")
    assert db.get(b"") == b"from put"
    assert b"" in db

    with db.batch() as batch:
        batch.put(b"", b"from batch")
    for db in opened.before_and_after_reopen():
        assert db.get(b"") == b"from batch"
        assert b"" in db
        assert list(db.scan()) == [(b"", b"from batch"), (b"\x00", b"zero byte")]
        assert list(db.scan(reverse=True))[-1] == (b"", b"from batch")
        assert list(db.scan(prefix=b"")) == list(db.scan())
        assert list(db.scan(b"", b"\x00")) == [(b"", b"from batch")]

    db.put(b"", b"")
    assert db.get(b"") == b""
    db.delete(b"")
    assert db.get(b"") is None
    assert b"" not in db
    assert db.get(b"\x00") == b"zero byte"
    db = opened.reopen()
    assert list(db.scan()) == [(b"\x00", b"zero byte")]


# -- binary keys --------------------------------------------------------------


def test_keys_with_zero_bytes(opened: StoreHandle) -> None:
    # A key must never be cut at its first zero byte, as a C string would be.
    db = opened.store
    db.put(b"a,\x00", b"1")
    db.put(b"a,", b"2")
    db.put(b"\x00", b"3")
    db.put(b"\x00\x00", b"4")
    expected = [(b"\x00", b"3"), (b"\x00\x00", b"4"), (b"a,", b"2"), (b"a,\x00", b"1")]

    for db in opened.before_and_after_reopen():
        assert db.get(b"a,\x00") == b"1"
        assert db.get(b"a,") == b"2"
        assert db.get(b"\x00") == b"3"
        assert db.get(b"\x00\x00") == b"4"
        assert db.get(b"\x00\x00\x00") is None
        assert db.get(b"a") is None
        assert list(db.scan()) == expected
        assert list(db.scan(reverse=True)) == expected[::-1]
        assert len(db) == 4
        assert list(db.scan(prefix=b"\x00")) == expected[:2]
        assert list(db.scan(prefix=b"a,")) == expected[2:]


PREFIX_KEYS = [
    b"\x01",
    b"\x01\xfe",
    b"\x01\xfe\xff",
    b"\x01\xff",
    b"\x01\xff\x00",
    b"\x01\xff\xff",
    b"\x01\xff\xff\xff",
    b"\x02",
    b"\x02\x00",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\x00",
    b"\xff\xff\xff",
]


def fill_prefix_keys(db: Store) -> None:
    with db.batch() as batch:
        for key in reversed(PREFIX_KEYS):
            batch.put(key, b"v" + key)


@pytest.mark.parametrize("reverse", [False, True])
def test_prefix_ending_in_ff(db: Store, reverse: bool) -> None:
    fill_prefix_keys(db)
    keys = list(db.scan(prefix=b"\x01\xff", reverse=reverse, keys_only=True))

    expected = [b"\x01\xff", b"\x01\xff\x00", b"\x01\xff\xff", b"\x01\xff\xff\xff"]
    assert keys == (expected[::-1] if reverse else expected)
    assert b"\x02" not in keys
    assert b"\x01\xfe\xff" not in keys


ONLY_FF_PREFIX_CASES = [
    (b"\xff", [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]),
    (b"\xff\xff", [b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]),
    (b"\xff\xff\xff", [b"\xff\xff\xff"]),
    (b"\xff\xff\xff\xff", []),
]


def test_prefix_of_only_ff_bytes(db: Store) -> None:
    # No key is above every key that starts with 0xFF bytes, so the scan runs
    # to the end of the key space.
    fill_prefix_keys(db)
    for prefix, expected in ONLY_FF_PREFIX_CASES:
        forward = list(db.scan(prefix=prefix, keys_only=True))
        assert forward == expected, prefix
        backward = list(db.scan(prefix=prefix, reverse=True, keys_only=True))
        assert backward == expected[::-1], prefix


@pytest.mark.parametrize("reverse", [False, True])
def test_prefix_matches_startswith(db: Store, reverse: bool) -> None:
    fill_prefix_keys(db)
    for prefix in {key[:length] for key in PREFIX_KEYS for length in range(4)}:
        expected = [key for key in PREFIX_KEYS if key.startswith(prefix)]
        if reverse:
            expected.reverse()
        items = list(db.scan(prefix=prefix, reverse=reverse))
        assert items == [(key, b"v" + key) for key in expected], prefix


# (prefix, start, end, keys expected in ascending order)
PREFIX_RANGE_CASES = [
    (b"\x01\xff", b"\x01\xff\x00", b"\x01\xff\xff", [b"\x01\xff\x00"]),
    (
        b"\x01\xff",
        b"\x00",
        b"\x03",
        [b"\x01\xff", b"\x01\xff\x00", b"\x01\xff\xff", b"\x01\xff\xff\xff"],
    ),
    (b"\x01\xff", b"\x01\xff\xff", None, [b"\x01\xff\xff", b"\x01\xff\xff\xff"]),
    (b"\x01\xff", None, b"\x01\xff\x00", [b"\x01\xff"]),
    (b"\x01\xff", b"\x02", None, []),
    (b"\x01\xff", None, b"\x01\xff", []),
    (
        b"\x01",
        b"\x01\xfe\xff",
        b"\x01\xff\xff",
        [b"\x01\xfe\xff", b"\x01\xff", b"\x01\xff\x00"],
    ),
    (
        b"\xff",
        b"\xff\x00",
        None,
        [b"\xff\x00", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"],
    ),
    (b"\xff", None, b"\xff\xff", [b"\xff", b"\xff\x00"]),
    (b"\xff\xff", b"\x00", b"\xff\xff\xff", [b"\xff\xff", b"\xff\xff\x00"]),
]


def test_prefix_intersects_start_end(db: Store) -> None:
    fill_prefix_keys(db)
    for prefix, start, end, expected in PREFIX_RANGE_CASES:
        case = (prefix, start, end)
        forward = list(db.scan(start, end, prefix=prefix, keys_only=True))
        assert forward == expected, case
        backward = list(
            db.scan(start, end, prefix=prefix, reverse=True, keys_only=True)
        )
        assert backward == expected[::-1], case


# -- ranges -------------------------------------------------------------------

RANGE_KEYS = [b"a", b"b", b"bb", b"c", b"d", b"e"]

# (start, end, keys expected in ascending order)
RANGE_CASES = [
    (b"b", b"d", [b"b", b"bb", b"c"]),
    (b"b", None, [b"b", b"bb", b"c", b"d", b"e"]),
    (None, b"b", [b"a"]),
    (b"ba", b"cc", [b"bb", b"c"]),
    (b"\x00", b"zzz", RANGE_KEYS),
    (None, None, RANGE_KEYS),
    (b"c", b"c", []),
    (b"d", b"b", []),
    (b"f", None, []),
    (None, b"a", []),
]


def test_scan_range_bounds(db: Store) -> None:
    # start is inclusive and end exclusive in both directions.
    put_all(db, {key: key.upper() for key in RANGE_KEYS})

    for start, end, expected in RANGE_CASES:
        case = (start, end)
        forward = list(db.scan(start, end))
        assert forward == [(key, key.upper()) for key in expected], case
        backward = list(db.scan(start, end, reverse=True))
        assert backward == [(key, key.upper()) for key in reversed(expected)], case
        keys = list(db.scan(start=start, end=end, keys_only=True))
        assert keys == expected, case


def test_scan_keys_only(db: Store) -> None:
    put_all(db, {key: b"value" for key in RANGE_KEYS})

    keys = list(db.scan(keys_only=True))
    assert keys == RANGE_KEYS
    assert all(type(key) is bytes for key in keys)
    assert list(db.scan(keys_only=True, reverse=True)) == RANGE_KEYS[::-1]
    assert list(db.scan(prefix=b"b", keys_only=True)) == [b"b", b"bb"]
    assert list(db) == RANGE_KEYS


def test_scan_many_keys_in_order(opened: StoreHandle) -> None:
    # More keys than one read chunk of a memtable, and than a 4 KiB memtable
    # holds, so scans cross chunk and table boundaries.
    rng = random.Random(7)
    items = {
        rng.randbytes(rng.randrange(0, 12)): rng.randbytes(20) for _ in range(1500)
    }
    db = opened.store
    put_all(db, items)
    expected = sorted(items.items())

    for db in opened.before_and_after_reopen():
        assert list(db.scan()) == expected
        assert list(db.scan(reverse=True)) == expected[::-1]
        assert len(db) == len(expected)
        middle = expected[len(expected) // 3][0]
        upper = expected[2 * len(expected) // 3][0]
        assert list(db.scan(middle, upper)) == [
            item for item in expected if middle <= item[0] < upper
        ]


# -- batches ------------------------------------------------------------------


def test_batch_later_operation_wins(opened: StoreHandle) -> None:
    db = opened.store
    db.put(b"b", b"old")
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"a", b"2")
    batch.delete(b"b")
    batch.put(b"c", b"3")
    batch.delete(b"c")
    batch.delete(b"d")
    batch.put(b"d", b"4")
    db.write(batch)

    for db in opened.before_and_after_reopen():
        assert list(db.scan()) == [(b"a", b"2"), (b"d", b"4")]


def test_batch_block_raising_writes_nothing(db: Store) -> None:
    db.put(b"kept", b"before")
    with pytest.raises(RuntimeError, match="stop"):
        with db.batch() as batch:
            batch.put(b"new", b"value")
            batch.delete(b"kept")
            raise RuntimeError("stop")
    assert list(db.scan()) == [(b"kept", b"before")]


def test_empty_batch_writes_nothing(db: Store) -> None:
    db.write(WriteBatch())
    with db.batch():
        pass
    assert list(db.scan()) == []


def test_write_batch_reuse(opened: StoreHandle) -> None:
    db = opened.store
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"b", b"1")
    db.write(batch)

    # The store copied the operations: changing the batch later changes nothing.
    batch.put(b"c", b"1")
    assert db.get(b"c") is None

    batch.clear()
    assert len(batch) == 0
    batch.delete(b"a")
    batch.put(b"b", b"2")
    db.write(batch)
    db.write(batch)  # writing the same batch again leaves the same contents

    for db in opened.before_and_after_reopen():
        assert list(db.scan()) == [(b"b", b"2")]


def test_batch_visible_all_or_nothing(db: Store) -> None:
    # Each batch sets every key to one round number, so a reader that sees a
    # mix of two rounds saw half a batch.
    keys = [b"key%02d" % i for i in range(20)]
    rounds = 150
    done = threading.Event()
    errors: list[BaseException] = []

    def write_rounds() -> None:
        try:
            for number in range(1, rounds + 1):
                batch = WriteBatch()
                for key in keys:
                    batch.put(key, b"%d" % number)
                db.write(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the reader
            errors.append(exc)
        finally:
            done.set()

    with db.batch() as batch:
        for key in keys:
            batch.put(key, b"0")
    writer = threading.Thread(target=write_rounds)
    writer.start()
    views = 0
    while not done.is_set() or views == 0:
        values = {value for _, value in db.scan()}
        assert len(values) == 1, values
        with db.snapshot() as snap:
            values = {snap.get(key) for key in keys}
        assert len(values) == 1, values
        views += 1
    writer.join()

    assert errors == []
    assert {value for _, value in db.scan()} == {b"%d" % rounds}


# -- the MutableMapping interface ---------------------------------------------


def test_mapping_interface(db: Store) -> None:
    db[b"a"] = b"1"
    db[b"b"] = b"2"

    assert db[b"a"] == b"1"
    with pytest.raises(KeyError) as info:
        db[b"missing"]
    assert info.value.args == (b"missing",)
    with pytest.raises(KeyError):
        del db[b"missing"]
    assert db.get(b"missing") is None
    assert db.get(b"missing", b"default") == b"default"
    db.delete(b"missing")  # deleting a missing key is not an error

    assert b"a" in db
    assert b"missing" not in db
    assert len(db) == 2
    assert list(db) == [b"a", b"b"]
    assert list(db.keys()) == [b"a", b"b"]
    assert list(db.values()) == [b"1", b"2"]
    assert dict(db.items()) == {b"a": b"1", b"b": b"2"}

    del db[b"a"]
    assert b"a" not in db
    assert len(db) == 1
    assert db.pop(b"b") == b"2"
    with pytest.raises(KeyError):
        db.pop(b"b")
    assert len(db) == 0
    assert list(db) == []


# -- closed stores ------------------------------------------------------------


def _batch_with_one_put() -> WriteBatch:
    batch = WriteBatch()
    batch.put(b"k", b"v")
    return batch


def _write_through_context(db: Store) -> None:
    with db.batch() as batch:
        batch.put(b"k", b"v")


def _delete_item(db: Store) -> None:
    del db[b"k"]


def _set_item(db: Store) -> None:
    db[b"k"] = b"v"


CLOSED_STORE_CALLS: dict[str, Callable[[Store], object]] = {
    "get": lambda db: db.get(b"k"),
    "put": lambda db: db.put(b"k", b"v"),
    "delete": lambda db: db.delete(b"k"),
    "write": lambda db: db.write(_batch_with_one_put()),
    "batch": _write_through_context,
    "scan": lambda db: list(db.scan()),
    "scan_reverse": lambda db: list(db.scan(reverse=True)),
    "snapshot": lambda db: db.snapshot(),
    "flush": lambda db: db.flush(),
    "compact": lambda db: db.compact(),
    "stats": lambda db: db.stats(),
    "getitem": lambda db: db[b"k"],
    "setitem": _set_item,
    "delitem": _delete_item,
    "contains": lambda db: b"k" in db,
    "iter": lambda db: list(db),
    "len": len,
}


@pytest.mark.parametrize("call", list(CLOSED_STORE_CALLS))
def test_closed_store_raises_closed_error(opened: StoreHandle, call: str) -> None:
    db = opened.store
    db.put(b"k", b"v")
    db.close()
    with pytest.raises(ClosedError):
        CLOSED_STORE_CALLS[call](db)


def test_close_twice_is_allowed(db: Store) -> None:
    db.close()
    db.close()


def test_scan_from_before_close_raises(db: Store) -> None:
    put_all(db, {b"key%04d" % i: b"v" for i in range(600)})
    unstarted = db.scan()
    started = db.scan(reverse=True)
    assert next(started) == (b"key0599", b"v")
    db.close()

    with pytest.raises(ClosedError):
        list(unstarted)
    with pytest.raises(ClosedError):
        list(started)


def test_snapshot_from_before_close_raises(db: Store) -> None:
    db.put(b"k", b"v")
    snap = db.snapshot()
    db.close()

    with pytest.raises(ClosedError):
        snap.get(b"k")
    with pytest.raises(ClosedError):
        list(snap.scan())
    snap.close()


# -- consistent views ---------------------------------------------------------

VIEW_KEYS = 600


def _original_items() -> dict[bytes, bytes]:
    return {b"key%04d" % i: b"old%d" % i for i in range(VIEW_KEYS)}


def _change_everything(db: Store) -> None:
    """Overwrite, delete and add keys: over 100 KB of WAL, past the checkpoint size."""
    for i in range(VIEW_KEYS):
        key = b"key%04d" % i
        if i % 2:
            db.delete(key)
        else:
            db.put(key, b"new" * 50)
        db.put(key + b"-added", b"added" * 20)


def _assert_checkpoint_ran(kind: StoreKind, db: Store) -> None:
    # The durable kind checkpoints after 8 KiB of WAL, so the changes above
    # must have triggered at least one checkpoint while the view was open.
    if kind.name == "durable":
        assert db.stats()["checkpoints"] >= 1


def test_scan_sees_view_at_creation(opened: StoreHandle) -> None:
    db = opened.store
    original = _original_items()
    put_all(db, original)
    expected = sorted(original.items())

    forward = db.scan()
    backward = db.scan(reverse=True)
    keys = db.scan(keys_only=True)
    ranged = db.scan(b"key0100", b"key0200")
    first = next(forward)

    _change_everything(db)
    force_background_work(db)
    _assert_checkpoint_ran(opened.kind, db)

    assert [first, *forward] == expected
    assert list(backward) == expected[::-1]
    assert list(keys) == [key for key, _ in expected]
    assert list(ranged) == expected[100:200]
    assert len(db) == VIEW_KEYS + VIEW_KEYS // 2


def test_snapshot_sees_view_at_creation(opened: StoreHandle) -> None:
    db = opened.store
    original = _original_items()
    put_all(db, original)
    expected = sorted(original.items())

    snap = db.snapshot()
    _change_everything(db)
    force_background_work(db)
    _assert_checkpoint_ran(opened.kind, db)
    iterator = snap.scan()
    db.put(b"key0000", b"after the snapshot scan began")

    assert list(iterator) == expected
    assert list(snap.scan(reverse=True)) == expected[::-1]
    assert list(snap.scan(prefix=b"key01", keys_only=True)) == [
        key for key, _ in expected[100:200]
    ]
    assert snap.get(b"key0001") == b"old1"
    assert snap.get(b"key0000-added") is None
    assert b"key0003" in snap
    assert b"key0003-added" not in snap
    assert db.get(b"key0001") is None
    assert db.get(b"key0000") == b"after the snapshot scan began"

    snap.close()
    snap.close()
    with pytest.raises(ClosedError):
        snap.get(b"key0001")


def test_snapshot_context_manager(db: Store) -> None:
    db.put(b"k", b"1")
    with db.snapshot() as snap:
        db.put(b"k", b"2")
        assert snap.get(b"k") == b"1"
        assert snap.get(b"missing", b"default") == b"default"
    assert db.get(b"k") == b"2"
    snap.close()


# -- opening durable stores ---------------------------------------------------


def test_read_only_store_rejects_writes(
    durable_kind: StoreKind, tmp_path: Path
) -> None:
    path = tmp_path / "db"
    with durable_kind.make(path) as db:
        db.put(b"k", b"v")

    with durable_kind.make(path, read_only=True) as db:
        assert db.get(b"k") == b"v"
        assert list(db.scan()) == [(b"k", b"v")]
        with pytest.raises(ReadOnlyError):
            db.put(b"k", b"new")
        with pytest.raises(ReadOnlyError):
            db.delete(b"k")
        with pytest.raises(ReadOnlyError):
            db.write(_batch_with_one_put())
        with pytest.raises(ReadOnlyError):
            db[b"other"] = b"v"
        assert db.get(b"k") == b"v"

    with durable_kind.make(path) as db:
        assert list(db.scan()) == [(b"k", b"v")]


def test_second_open_raises_locked_error(
    durable_kind: StoreKind, tmp_path: Path
) -> None:
    path = tmp_path / "db"
    first = durable_kind.make(path)
    first.put(b"k", b"v")

    with pytest.raises(LockedError):
        durable_kind.make(path)
    # The failed attempt must not release the first holder's lock.
    with pytest.raises(LockedError):
        durable_kind.make(path)
    assert first.get(b"k") == b"v"
    first.put(b"k2", b"v2")

    first.close()
    with durable_kind.make(path) as second:
        assert list(second.scan()) == [(b"k", b"v"), (b"k2", b"v2")]


CHILD_OPEN = textwrap.dedent(
    """
    import sys
    import storekit
    try:
        db = storekit.open(sys.argv[1])
    except storekit.LockedError as exc:
        print("LockedError:", exc)
        sys.exit(0)
    print("opened")
    sys.exit(3)
    """
)

CHILD_HOLD = textwrap.dedent(
    """
    import sys
    import time
    import storekit
    db = storekit.open(sys.argv[1], sync="none")
    db.put(b"written by child", b"1")
    print("ready", flush=True)
    time.sleep(120)
    """
)


def _run_child(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"child wrote nothing within {timeout} seconds")
    return process.stdout.readline().strip()


def test_open_locked_by_other_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with storekit.open(str(path)) as db:
        db.put(b"k", b"v")
        child = _run_child(CHILD_OPEN, str(path))
        assert child.returncode == 0, child.stdout + child.stderr
        assert child.stdout.startswith("LockedError:")
        db.put(b"k2", b"v2")

    child = _run_child(CHILD_OPEN, str(path))
    assert child.returncode == 3, child.stdout + child.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_lock_of_killed_process_is_released(tmp_path: Path) -> None:
    path = tmp_path / "db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_HOLD, str(path)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _read_line(child, 60) == "ready"
        with pytest.raises(LockedError):
            storekit.open(str(path))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL

    with storekit.open(str(path)) as db:
        # The put returned before the kill, so its WAL record reached the OS.
        assert db.get(b"written by child") == b"1"


def test_open_missing_dir_without_create(
    durable_kind: StoreKind, tmp_path: Path
) -> None:
    path = tmp_path / "missing"
    with pytest.raises(FileNotFoundError):
        durable_kind.make(path, create=False)
    with pytest.raises(FileNotFoundError):
        durable_kind.make(path, read_only=True)
    assert not path.exists()


@pytest.mark.parametrize(
    ("option", "value"), [("sync", "sometimes"), ("recovery", "x")]
)
def test_bad_option_value_raises(
    durable_kind: StoreKind, tmp_path: Path, option: str, value: str
) -> None:
    path = tmp_path / "db"
    with pytest.raises(ValueError, match=repr(value)):
        durable_kind.make(path, **{option: value})
    # The failed open leaves no lock behind.
    with durable_kind.make(path) as db:
        db.put(b"k", b"v")
