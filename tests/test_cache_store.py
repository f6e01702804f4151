"""CachedStore: read-through, invalidation on writes, negative entries, model checks."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import storekit
from storekit import ClosedError, MemoryStore, WriteBatch
from storekit.cache import CachedStore, LRUCache, S3FIFOCache, TTLCache


class CountingStore(MemoryStore):
    """A MemoryStore that counts the reads that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self.reads += 1
        return super().get(key, default)


class SlowReadStore(MemoryStore):
    """A MemoryStore whose reads pause, widening the window for read/write races."""

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = super().get(key, default)
        time.sleep(random.random() * 0.001)
        return value


def test_read_through_fills_cache() -> None:
    inner = CountingStore()
    inner.put(b"k", b"v")
    db = CachedStore(inner, LRUCache(max_items=10))
    assert db.get(b"k") == b"v"
    assert db.get(b"k") == b"v"
    assert inner.reads == 1
    assert db.stats()["cache"]["hits"] == 1


def test_put_invalidates_cached_value() -> None:
    db = CachedStore(MemoryStore(), LRUCache(max_items=10))
    db.put(b"k", b"old")
    assert db.get(b"k") == b"old"
    db.put(b"k", b"new")
    assert db.get(b"k") == b"new"
    assert db[b"k"] == b"new"


def test_delete_invalidates_cached_value() -> None:
    db = CachedStore(MemoryStore(), LRUCache(max_items=10))
    db.put(b"k", b"v")
    db.get(b"k")
    db.delete(b"k")
    assert db.get(b"k") is None
    assert b"k" not in db
    with pytest.raises(KeyError):
        db[b"k"]


def test_write_batch_invalidates_every_key() -> None:
    db = CachedStore(MemoryStore(), LRUCache(max_items=10))
    db.put(b"a", b"1")
    db.put(b"b", b"2")
    db.get(b"a")
    db.get(b"b")
    batch = WriteBatch()
    batch.put(b"a", b"10")
    batch.delete(b"b")
    db.write(batch)
    assert db.get(b"a") == b"10"
    assert db.get(b"b") is None
    with db.batch() as grouped:
        grouped.put(b"b", b"20")
    assert db.get(b"b") == b"20"


def test_misses_not_cached_by_default() -> None:
    inner = CountingStore()
    db = CachedStore(inner, LRUCache(max_items=10))
    assert db.get(b"missing") is None
    assert db.get(b"missing", b"default") == b"default"
    assert inner.reads == 2


def test_negative_entries_skip_inner_store() -> None:
    inner = CountingStore()
    db = CachedStore(inner, LRUCache(max_items=10), cache_misses=True)
    assert db.get(b"missing") is None
    assert db.get(b"missing", b"default") == b"default"
    assert inner.reads == 1
    db.put(b"missing", b"now here")
    assert db.get(b"missing") == b"now here"


def test_negative_entries_expire() -> None:
    now = [0.0]
    inner = CountingStore()
    cache = TTLCache(max_items=10, ttl=100, clock=lambda: now[0])
    db = CachedStore(inner, cache, cache_misses=True, negative_ttl=1)
    db.get(b"k")
    inner.put(b"k", b"behind the cache")
    assert db.get(b"k") is None
    now[0] = 2
    assert db.get(b"k") == b"behind the cache"


def test_negative_entry_has_size_zero() -> None:
    cache = LRUCache(max_bytes=100)
    db = CachedStore(MemoryStore(), cache, cache_misses=True)
    db.get(b"missing")
    assert cache.stats()["items"] == 1
    assert cache.stats()["bytes"] == 0


def test_empty_value_is_not_a_miss() -> None:
    db = CachedStore(MemoryStore(), LRUCache(max_items=10), cache_misses=True)
    db.put(b"k1", b"")
    assert db.get(b"k1") == b""
    assert db.get(b"k1") == b""
    assert b"k1" in db
    assert list(db.scan()) == [(b"k1", b"")]


def test_scan_and_snapshot_read_inner() -> None:
    inner = MemoryStore()
    db = CachedStore(inner, LRUCache(max_items=10))
    for key in (b"a", b"b", b"c"):
        db.put(key, key.upper())
    snapshot = db.snapshot()
    db.put(b"b", b"changed")
    assert list(db.scan(b"b")) == [(b"b", b"changed"), (b"c", b"C")]
    assert list(db.scan(reverse=True, keys_only=True)) == [b"c", b"b", b"a"]
    assert snapshot.get(b"b") == b"B"
    snapshot.close()
    assert len(db) == 3


def test_key_and_value_types_checked() -> None:
    db = CachedStore(MemoryStore(), LRUCache(max_items=10))
    with pytest.raises(TypeError, match="key must be bytes"):
        db.get("text")
    with pytest.raises(TypeError, match="value must be bytes"):
        db.put(b"k", "text")
    with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
        db.put(b"k" * (storekit.MAX_KEY_SIZE + 1), b"v")
    db.put(bytearray(b"k"), memoryview(b"v"))
    assert db.get(b"k") == b"v"


def test_constructor_checks_arguments() -> None:
    with pytest.raises(TypeError, match="inner must be a storekit Store"):
        CachedStore({}, LRUCache(max_items=1))
    with pytest.raises(TypeError, match="cache must have"):
        CachedStore(MemoryStore(), {})
    with pytest.raises(ValueError, match="negative_ttl"):
        CachedStore(MemoryStore(), LRUCache(max_items=1), negative_ttl=0)


def test_closed_store_raises_even_on_cached_key() -> None:
    inner = MemoryStore()
    db = CachedStore(inner, LRUCache(max_items=10))
    db.put(b"k", b"v")
    db.get(b"k")
    db.close()
    db.close()
    assert db.closed
    assert inner.closed
    with pytest.raises(ClosedError):
        db.get(b"k")
    with pytest.raises(ClosedError):
        db.put(b"k", b"v")
    assert len(db.cache) == 0


def test_failed_inner_write_still_invalidates() -> None:
    class FailingStore(MemoryStore):
        def put(self, key: bytes, value: bytes) -> None:
            super().put(key, value)
            raise OSError("disk failed after the write")

    db = CachedStore(FailingStore(), LRUCache(max_items=10))
    MemoryStore.put(db.inner, b"k", b"old")
    assert db.get(b"k") == b"old"
    with pytest.raises(OSError):
        db.put(b"k", b"new")
    assert db.get(b"k") == b"new"


@pytest.mark.parametrize(
    "cache_class", [LRUCache, S3FIFOCache], ids=lambda c: c.__name__
)
def test_concurrent_reads_never_older_than_last_write(cache_class: type) -> None:
    db = CachedStore(SlowReadStore(), cache_class(max_items=4))
    db.put(b"k", b"0")
    last_written = [0]
    stop = threading.Event()
    stale: list[tuple[int, int]] = []

    def writer() -> None:
        for version in range(1, 200):
            db.put(b"k", str(version).encode())
            last_written[0] = version
            # A pause lets a stale fill, if one slipped in, stay visible.
            time.sleep(0.0005)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            floor = last_written[0]
            seen = int(db.get(b"k"))
            if seen < floor:
                stale.append((seen, floor))

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stale == []
    assert db.get(b"k") == b"199"


# -- model check ---------------------------------------------------------------

keys = st.sampled_from([b"", b"a", b"a\x00", b"b", b"bb", b"c"])
values = st.binary(max_size=6)


class CachedStoreMachine(RuleBasedStateMachine):
    """Compare a CachedStore over a real store with MemoryStore, the model."""

    inner_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.directory: str | None = None
        self.db: CachedStore | None = None
        self.model = MemoryStore()

    @initialize(
        policy=st.sampled_from(["lru", "s3fifo"]),
        max_items=st.integers(1, 4),
        cache_misses=st.booleans(),
    )
    def open_store(self, policy: str, max_items: int, cache_misses: bool) -> None:
        if self.inner_kind == "memory":
            inner = MemoryStore()
        else:
            self.directory = tempfile.mkdtemp(prefix="storekit-cached-")
            inner = storekit.open(self.directory)
        cache = (
            LRUCache(max_items=max_items)
            if policy == "lru"
            else S3FIFOCache(max_items=max_items)
        )
        self.db = CachedStore(inner, cache, cache_misses=cache_misses)

    @precondition(lambda self: self.db is not None)
    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)
        self.model.put(key, value)

    @precondition(lambda self: self.db is not None)
    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.db.delete(key)
        self.model.delete(key)

    @precondition(lambda self: self.db is not None)
    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.db.get(key) == self.model.get(key)

    @precondition(lambda self: self.db is not None)
    @rule(key=keys)
    def contains(self, key: bytes) -> None:
        assert (key in self.db) == (key in self.model)

    @precondition(lambda self: self.db is not None)
    @rule(ops=st.lists(st.tuples(st.booleans(), keys, values), max_size=4))
    def write_batch(self, ops: list[tuple[bool, bytes, bytes]]) -> None:
        batch = WriteBatch()
        for is_put, key, value in ops:
            if is_put:
                batch.put(key, value)
            else:
                batch.delete(key)
        if len(batch):
            self.db.write(batch)
            self.model.write(batch)

    @precondition(lambda self: self.db is not None)
    @rule(start=st.one_of(st.none(), keys), reverse=st.booleans())
    def scan(self, start: bytes | None, reverse: bool) -> None:
        assert list(self.db.scan(start, reverse=reverse)) == list(
            self.model.scan(start, reverse=reverse)
        )

    @precondition(lambda self: self.db is not None)
    @invariant()
    def cache_within_bounds(self) -> None:
        self.db.cache._check_invariants()

    def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


class CachedDurableStoreMachine(CachedStoreMachine):
    inner_kind = "open"


TestCachedMemoryStore = CachedStoreMachine.TestCase
TestCachedMemoryStore.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestCachedOpenStore = CachedDurableStoreMachine.TestCase
TestCachedOpenStore.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None
)
