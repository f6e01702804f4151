"""Semantics every storekit cache policy shares: TTL, sizes, callbacks, stats, arguments."""

from __future__ import annotations

import doctest
import importlib
import logging
import math

import pytest

from storekit.cache import POLICIES, LRUCache, S3FIFOCache, TTLCache, make_cache

CACHE_CLASSES = [LRUCache, S3FIFOCache]


class FakeClock:
    """A monotonic clock that moves only when the test sets ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=CACHE_CLASSES, ids=lambda cls: cls.__name__)
def cache_class(request: pytest.FixtureRequest) -> type:
    return request.param


# -- expiry ------------------------------------------------------------------


def test_expired_item_never_returned(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(max_items=10, ttl=10, clock=clock)
    cache.put("k", "v")
    clock.now = 9.999
    assert cache.get("k") == "v"
    clock.now = 10.0  # expired once clock() >= t + ttl
    assert cache.get("k") is None
    assert cache.peek("k") is None
    cache._check_invariants()


def test_expiry_seen_by_contains_len_iteration(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(ttl=10, clock=clock)
    cache.put("k", "v")
    clock.now = 5
    assert "k" in cache
    clock.now = 11
    # No get() first: expiry must not depend on the get path.
    assert "k" not in cache
    assert len(cache) == 0
    assert list(cache) == []
    assert cache.keys() == []
    assert cache.items() == []
    assert cache.get("k") is None
    assert cache.stats()["misses"] == 1


def test_contains_independent_of_earlier_get(cache_class: type) -> None:
    clock = FakeClock()
    probed = cache_class(ttl=10, clock=clock)
    untouched = cache_class(ttl=10, clock=clock)
    for cache in (probed, untouched):
        cache.put("k", "v")
    clock.now = 11
    probed.get("k")
    assert ("k" in probed) is False
    assert ("k" in untouched) is False


def test_overwrite_resets_ttl(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(max_items=10, ttl=10, clock=clock)
    cache.put("k", "v1")
    clock.now = 8
    cache.put("k", "v2")
    clock.now = 12
    assert cache.get("k") == "v2"
    clock.now = 18
    assert cache.get("k") is None
    cache._check_invariants()


def test_per_item_ttl_overrides_default(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(ttl=10, clock=clock)
    cache.put("short", 1, ttl=2)
    cache.put("forever", 2, ttl=math.inf)
    cache.put("default", 3)
    clock.now = 5
    assert "short" not in cache
    assert "default" in cache
    clock.now = 1e9
    assert cache.keys() == ["forever"]
    cache._check_invariants()


def test_ttl_without_default_ttl(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(max_items=10, clock=clock)
    cache.put("a", 1, ttl=1)
    cache.put("b", 2)
    clock.now = 1
    assert cache.keys() == ["b"]


def test_expire_removes_and_reports(cache_class: type) -> None:
    clock = FakeClock()
    expired = []
    cache = cache_class(
        ttl=5, clock=clock, on_expire=lambda k, v: expired.append((k, v))
    )
    for number in range(4):
        cache.put(number, str(number), ttl=number + 1)
    clock.now = 2.5
    assert cache.expire() == 2
    assert sorted(expired) == [(0, "0"), (1, "1")]
    assert cache.stats()["expirations"] == 2
    assert cache.expire() == 0
    cache._check_invariants()


def test_expired_entries_never_cause_eviction(cache_class: type) -> None:
    clock = FakeClock()
    evicted = []
    cache = cache_class(
        max_items=3, clock=clock, on_evict=lambda k, v: evicted.append(k)
    )
    cache.put("old1", 1, ttl=1)
    cache.put("old2", 2, ttl=1)
    cache.put("live", 3)
    clock.now = 2
    cache.put("new1", 4)
    cache.put("new2", 5)
    assert evicted == []
    assert sorted(cache.keys()) == ["live", "new1", "new2"]
    assert cache.stats()["expirations"] == 2


def test_overwrite_after_many_puts_keeps_heap_bounded(cache_class: type) -> None:
    clock = FakeClock()
    cache = cache_class(max_items=10, ttl=100, clock=clock)
    for step in range(10_000):
        clock.now = step * 0.001
        cache.put(step % 10, step)
    assert len(cache._heap) <= 2 * len(cache._deadlines) + 64
    cache._check_invariants()


# -- sizes ---------------------------------------------------------------------


def test_overwrite_uses_size_difference(cache_class: type) -> None:
    evicted = []
    cache = cache_class(max_bytes=10, on_evict=lambda k, v: evicted.append(k))
    cache.put("a", b"xxx")
    cache.put("b", b"yyy")
    cache.put("b", b"y" * 7)
    assert cache.peek("a") == b"xxx"
    assert cache.peek("b") == b"y" * 7
    assert cache.stats()["bytes"] == 10
    assert evicted == []
    cache.put("b", b"y" * 8)
    assert cache.peek("a") is None
    assert cache.peek("b") == b"y" * 8
    assert cache.stats()["bytes"] == 8
    assert evicted == ["a"]
    cache._check_invariants()


def test_growing_entry_evicts_only_needed(cache_class: type) -> None:
    cache = cache_class(max_bytes=100)
    for name in "abcdefghij":
        cache.put(name, b"." * 10)
    assert cache.stats()["bytes"] == 100
    cache.put("j", b"." * 25)  # needs 15 more bytes: two 10-byte entries go
    stats = cache.stats()
    assert stats["bytes"] == 95
    assert stats["items"] == 8
    assert stats["evictions"] == 2
    assert cache.peek("j") == b"." * 25
    cache._check_invariants()


def test_shrinking_entry_frees_bytes(cache_class: type) -> None:
    cache = cache_class(max_bytes=100)
    cache.put("a", b"." * 60)
    cache.put("a", b"." * 5)
    assert cache.stats()["bytes"] == 5
    cache.put("b", b"." * 95)
    assert sorted(cache.keys()) == ["a", "b"]
    cache._check_invariants()


def test_value_larger_than_max_bytes_is_rejected(cache_class: type) -> None:
    cache = cache_class(max_bytes=10)
    cache.put("k", b"small")
    cache.put("k", b"x" * 11)
    assert "k" not in cache  # the older value must not stay visible
    assert cache.stats()["rejections"] == 1
    assert cache.stats()["bytes"] == 0
    cache._check_invariants()


def test_size_of_custom_and_bytes_without_limit(cache_class: type) -> None:
    cache = cache_class(size_of=lambda value: value["weight"])
    cache.put("a", {"weight": 4})
    cache.put("b", {"weight": 6})
    assert cache.stats()["bytes"] == 10
    plain = cache_class(max_items=5)
    plain.put("a", 1)
    assert plain.stats()["bytes"] is None


def test_max_items_zero_stores_nothing(cache_class: type) -> None:
    cache = cache_class(max_items=0)
    cache.put("k", "v")
    assert len(cache) == 0
    assert cache.get("k") is None


def test_max_items_bound(cache_class: type) -> None:
    cache = cache_class(max_items=50)
    for number in range(1000):
        cache.put(number, number)
        if number % 7 == 0:
            cache.get(number // 2)
    assert len(cache) == 50
    assert cache.stats()["evictions"] == 950
    cache._check_invariants()


# -- callbacks -------------------------------------------------------------------


def test_eviction_callback_receives_entry(cache_class: type) -> None:
    evicted = []
    cache = cache_class(max_items=2, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert len(evicted) == 1
    key, value = evicted[0]
    assert value == {"a": 1, "b": 2}[key]
    assert key not in cache


def test_failing_evict_callback_keeps_replacement(
    cache_class: type, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(key: object, value: object) -> None:
        raise RuntimeError(f"callback failed for {key}")

    cache = cache_class(max_items=1, on_evict=fail)
    cache.put("a", 1)
    with caplog.at_level(logging.ERROR, logger="storekit.cache"):
        cache.put("b", 2)
    assert cache.get("b") == 2
    assert "a" not in cache
    assert cache.stats()["callback_errors"] == 1
    assert any("on_evict" in record.getMessage() for record in caplog.records)
    cache._check_invariants()


def test_failing_expire_callback_keeps_replacement(cache_class: type) -> None:
    clock = FakeClock()

    def fail(key: object, value: object) -> None:
        raise ValueError("expiry callback failed")

    cache = cache_class(max_items=4, ttl=1, clock=clock, on_expire=fail)
    cache.put("k", "old")
    clock.now = 2
    cache.put("k", "new")
    assert cache.get("k") == "new"
    assert cache.stats()["callback_errors"] == 1
    cache._check_invariants()


def test_callback_may_use_the_cache(cache_class: type) -> None:
    cache_holder: list = []
    seen = []

    def use_cache(key: object, value: object) -> None:
        cache = cache_holder[0]
        # The callback runs outside the cache's lock, so these calls must
        # not deadlock; the evicted key is already gone.
        seen.append((cache.peek(key), len(cache)))
        if key == 0:
            cache.put("put-by-callback", value)

    cache = cache_class(max_items=100, on_evict=use_cache)
    cache_holder.append(cache)
    for number in range(300):
        cache.put(number, number)
    # 200 evictions by the loop plus one by the callback's own put.
    assert len(seen) == 201
    assert all(found is None for found, _ in seen)
    cache._check_invariants()


def test_delete_and_clear_run_no_callbacks(cache_class: type) -> None:
    calls = []
    cache = cache_class(max_items=5, on_evict=lambda k, v: calls.append(k))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.clear()
    assert calls == []
    assert len(cache) == 0


# -- lookups, mapping methods and stats ------------------------------------------


def test_stats_counts(cache_class: type) -> None:
    cache = cache_class(max_items=2)
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.get("zz") is None
    cache.put("b", 2)
    cache.put("c", 3)
    stats = cache.stats()
    assert stats["hits"] == 1
    assert stats["misses"] == 1
    assert stats["evictions"] == 1
    assert stats["items"] == 2
    assert stats["hit_ratio"] == 0.5


def test_peek_counts_nothing(cache_class: type) -> None:
    cache = cache_class(max_items=2)
    cache.put("a", 1)
    assert cache.peek("a") == 1
    assert cache.peek("missing", "default") == "default"
    assert cache.stats()["hits"] == 0
    assert cache.stats()["misses"] == 0


def test_none_value_differs_from_missing(cache_class: type) -> None:
    cache = cache_class(max_items=2)
    cache.put("k", None)
    marker = object()
    assert cache.get("k", marker) is None
    assert cache.get("other", marker) is marker
    assert "k" in cache


def test_mapping_methods(cache_class: type) -> None:
    cache = cache_class(max_items=4)
    cache["a"] = 1
    assert cache["a"] == 1
    with pytest.raises(KeyError):
        cache["missing"]
    del cache["a"]
    with pytest.raises(KeyError):
        del cache["a"]
    cache.put("b", 2)
    assert cache.pop("b") == 2
    assert cache.pop("b", "gone") == "gone"
    with pytest.raises(KeyError):
        cache.pop("b")


def test_clear_keeps_counters(cache_class: type) -> None:
    cache = cache_class(max_items=4)
    cache.put("a", 1)
    cache.get("a")
    cache.clear()
    assert cache.stats()["hits"] == 1
    assert cache.stats()["items"] == 0
    cache._check_invariants()


def test_unhashable_key_raises_type_error(cache_class: type) -> None:
    cache = cache_class(max_items=4)
    with pytest.raises(TypeError):
        cache.put(["list"], 1)
    with pytest.raises(TypeError):
        cache.get(["list"])


# -- arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_items": -1}, ValueError),
        ({"max_items": "10"}, TypeError),
        ({"max_items": True}, TypeError),
        ({"max_bytes": -5}, ValueError),
        ({"ttl": 0}, ValueError),
        ({"ttl": -1.0}, ValueError),
        ({"ttl": float("nan")}, ValueError),
        ({"ttl": "10"}, TypeError),
        ({"size_of": 3}, TypeError),
        ({"clock": None}, TypeError),
        ({"on_evict": "print"}, TypeError),
    ],
)
def test_invalid_arguments(cache_class: type, options: dict, error: type) -> None:
    with pytest.raises(error) as info:
        cache_class(**options)
    assert list(options)[0] in str(info.value)


def test_invalid_put_ttl(cache_class: type) -> None:
    cache = cache_class(max_items=4)
    with pytest.raises(ValueError, match="ttl"):
        cache.put("k", 1, ttl=0)
    assert "k" not in cache


def test_bad_size_of_results(cache_class: type) -> None:
    negative = cache_class(max_bytes=10, size_of=lambda value: -1)
    with pytest.raises(ValueError, match="negative size -1"):
        negative.put("k", 1)
    wrong_type = cache_class(max_bytes=10, size_of=lambda value: 1.5)
    with pytest.raises(TypeError, match="must return an int"):
        wrong_type.put("k", 1)
    no_len = cache_class(max_bytes=10)
    with pytest.raises(TypeError, match="size_of"):
        no_len.put("k", 12345)
    assert len(negative) == len(wrong_type) == len(no_len) == 0


def test_ttl_cache_requires_ttl() -> None:
    with pytest.raises(TypeError, match="requires ttl"):
        TTLCache(max_items=10)
    cache = TTLCache(max_items=10, ttl=1, clock=FakeClock())
    assert cache.ttl == 1.0


def test_make_cache_by_name() -> None:
    assert isinstance(make_cache("lru", max_items=3), LRUCache)
    assert isinstance(make_cache("S3FIFO", max_items=3), S3FIFOCache)
    assert isinstance(make_cache("ttl", ttl=5), TTLCache)
    assert set(POLICIES) == {"lru", "ttl", "s3fifo"}
    with pytest.raises(ValueError, match="unknown cache policy 'arc'"):
        make_cache("arc", max_items=3)


@pytest.mark.parametrize(
    "module_name",
    [
        "storekit.cache",
        "storekit.cache.lru",
        "storekit.cache.s3fifo",
        "storekit.cache.memoize",
        "storekit.cache.cached_store",
    ],
)
def test_docstring_examples(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name))
    assert result.attempted > 0
    assert result.failed == 0


def test_locked_get_path(cache_class: type) -> None:
    # Free-threaded builds use _get_locked as get; check it directly here.
    clock = FakeClock()
    cache = cache_class(max_items=4, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2, ttl=5)
    assert cache._get_locked("a") == 1
    assert cache._get_locked("missing", "default") == "default"
    clock.now = 5
    assert cache._get_locked("b") is None
    stats = cache.stats()
    assert stats["hits"] == 1
    assert stats["misses"] == 2
    assert stats["expirations"] == 1
    cache._check_invariants()
