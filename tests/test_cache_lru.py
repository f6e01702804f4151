"""LRUCache recency order, checked directly and against a reference model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storekit.cache import LRUCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reinserted_key_evicted_in_order() -> None:
    cache = LRUCache(max_items=3)
    for key in ["A", "A", "B", "A", "C", "B", "D", "E"]:
        cache.put(key, "v")
        cache._check_invariants()
    # A put counts as a use: A is evicted when D arrives, C when E arrives.
    assert set(cache) == {"B", "D", "E"}
    assert len(cache) == 3


def test_get_hit_refreshes_recency() -> None:
    cache = LRUCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert list(cache) == ["a", "c"]


def test_contains_and_peek_keep_recency() -> None:
    cache = LRUCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    assert cache.peek("a") == 1
    cache.put("c", 3)
    assert list(cache) == ["b", "c"]


def test_get_miss_keeps_recency() -> None:
    cache = LRUCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("zz")
    assert list(cache) == ["a", "b"]


def test_iteration_least_recent_first() -> None:
    cache = LRUCache()
    for key in "abcde":
        cache.put(key, key)
    cache.get("b")
    cache.put("d", "again")
    assert list(cache) == ["a", "c", "e", "b", "d"]
    assert cache.items()[0] == ("a", "a")


def test_iteration_is_a_snapshot() -> None:
    cache = LRUCache(max_items=100)
    for number in range(10):
        cache.put(number, number)
    seen = []
    for key in cache:
        seen.append(key)
        cache.put(key + 100, key)  # changing the cache while iterating is allowed
    assert seen == list(range(10))


class ReferenceLRU:
    """A slow, obviously correct LRU with sizes and TTLs: a list, least recent first."""

    def __init__(
        self, max_items: int | None, max_bytes: int | None, clock: FakeClock
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.clock = clock
        self.entries: list[list] = []  # [key, value, deadline]

    def _purge(self) -> None:
        now = self.clock()
        self.entries = [e for e in self.entries if e[2] is None or now < e[2]]

    def _find(self, key: object) -> int | None:
        for index, entry in enumerate(self.entries):
            if entry[0] == key:
                return index
        return None

    def get(self, key: object) -> object:
        self._purge()
        index = self._find(key)
        if index is None:
            return None
        entry = self.entries.pop(index)
        self.entries.append(entry)
        return entry[1]

    def put(self, key: object, value: bytes, ttl: float | None) -> None:
        self._purge()
        index = self._find(key)
        if index is not None:
            self.entries.pop(index)
        if self.max_items == 0 or (
            self.max_bytes is not None and len(value) > self.max_bytes
        ):
            return
        while self.entries and (
            (self.max_items is not None and len(self.entries) >= self.max_items)
            or (
                self.max_bytes is not None
                and sum(len(e[1]) for e in self.entries) + len(value) > self.max_bytes
            )
        ):
            self.entries.pop(0)
        deadline = None if ttl is None else self.clock() + ttl
        self.entries.append([key, value, deadline])

    def delete(self, key: object) -> None:
        index = self._find(key)
        if index is not None:
            self.entries.pop(index)

    def keys(self) -> list:
        self._purge()
        return [e[0] for e in self.entries]

    def total_bytes(self) -> int:
        self._purge()
        return sum(len(e[1]) for e in self.entries)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 9),
            st.integers(0, 12),
            st.sampled_from([None, 1.0, 3.0]),
        ),
        st.tuples(st.just("get"), st.integers(0, 9)),
        st.tuples(st.just("delete"), st.integers(0, 9)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 2.0])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    max_items=st.one_of(st.none(), st.integers(0, 5)),
    max_bytes=st.one_of(st.none(), st.integers(0, 30)),
    ops=operations,
)
def test_lru_matches_reference_model(
    max_items: int | None, max_bytes: int | None, ops: list[tuple]
) -> None:
    clock = FakeClock()
    cache = LRUCache(max_items=max_items, max_bytes=max_bytes, clock=clock)
    model = ReferenceLRU(max_items, max_bytes, clock)
    for op in ops:
        if op[0] == "put":
            _, key, length, ttl = op
            value = bytes([key]) * length
            cache.put(key, value, ttl=ttl)
            model.put(key, value, ttl)
        elif op[0] == "get":
            assert cache.get(op[1]) == model.get(op[1])
        elif op[0] == "delete":
            cache.delete(op[1])
            model.delete(op[1])
        else:
            clock.now += op[1]
        assert list(cache) == model.keys()
        if max_bytes is not None:
            assert cache.stats()["bytes"] == model.total_bytes()
        cache._check_invariants()
