"""memoize: single flight per key, parallel misses on different keys, exception caching."""

from __future__ import annotations

import threading
import time

import pytest

from storekit.cache import LRUCache, S3FIFOCache, TTLCache, memoize


def test_memoize_caches_result() -> None:
    calls = []

    @memoize(LRUCache(max_items=10))
    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert double(3) == 6
    assert double(3) == 6
    assert double(4) == 8
    assert calls == [3, 4]
    assert double.cache.stats()["hits"] == 1


def test_memoize_caches_none_result() -> None:
    calls = []

    @memoize(S3FIFOCache(max_items=10))
    def nothing(n: int) -> None:
        calls.append(n)

    nothing(1)
    nothing(1)
    assert calls == [1]


def test_single_flight_for_same_key() -> None:
    calls = []
    calls_lock = threading.Lock()
    release = threading.Event()

    @memoize(LRUCache(max_items=10))
    def slow(n: int) -> str:
        with calls_lock:
            calls.append(n)
        release.wait(5)
        return f"result-{n}"

    threads_count = 16
    barrier = threading.Barrier(threads_count)
    results: list[str] = []

    def caller() -> None:
        barrier.wait()
        results.append(slow(7))

    threads = [threading.Thread(target=caller) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let every thread reach the flight before it finishes
    release.set()
    for thread in threads:
        thread.join()
    assert calls == [7]
    assert results == ["result-7"] * threads_count


def test_misses_on_different_keys_run_in_parallel() -> None:
    keys = 4
    # Every call waits until all calls are inside the function at once; if
    # memoize ran them one after another, the barrier would time out.
    inside = threading.Barrier(keys, timeout=5)

    @memoize(LRUCache(max_items=10))
    def meet(n: int) -> int:
        inside.wait()
        return n

    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            results[n] = meet(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {n: n for n in range(keys)}


def test_exceptions_not_cached_by_default() -> None:
    attempts = []

    @memoize(LRUCache(max_items=10))
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return n

    with pytest.raises(ConnectionError):
        flaky(1)
    assert flaky(1) == 1
    assert attempts == [1, 1]


def test_exceptions_cached_when_asked() -> None:
    attempts = []

    @memoize(LRUCache(max_items=10), cache_exceptions=(LookupError,))
    def lookup(n: int) -> int:
        attempts.append(n)
        raise KeyError(n)

    for _ in range(3):
        with pytest.raises(KeyError):
            lookup(5)
    assert attempts == [5]


def test_exception_not_in_cached_types_is_retried() -> None:
    attempts = []

    @memoize(LRUCache(max_items=10), cache_exceptions=(LookupError,))
    def broken(n: int) -> int:
        attempts.append(n)
        raise ValueError(n)

    for _ in range(2):
        with pytest.raises(ValueError):
            broken(5)
    assert attempts == [5, 5]


def test_waiters_share_leader_exception() -> None:
    release = threading.Event()
    calls = []

    @memoize(LRUCache(max_items=10))
    def failing(n: int) -> int:
        calls.append(n)
        release.wait(5)
        raise RuntimeError("leader failed")

    errors: list[BaseException] = []

    def caller() -> None:
        try:
            failing(1)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert len(errors) == 6


def test_keyword_arguments_and_custom_key() -> None:
    calls = []

    @memoize(LRUCache(max_items=10))
    def power(base: int, exponent: int = 2) -> int:
        calls.append((base, exponent))
        return base**exponent

    assert power(3, exponent=3) == 27
    assert power(3, exponent=3) == 27
    assert power(3) == 9
    assert len(calls) == 2

    @memoize(LRUCache(max_items=10), key=lambda text: text.lower())
    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    assert shout("Hi") == "HI"
    assert shout("hI") == "HI"
    assert shout.cache_key("HI") == "hi"


def test_result_ttl() -> None:
    now = [0.0]
    calls = []

    @memoize(TTLCache(max_items=10, ttl=100, clock=lambda: now[0]), ttl=5)
    def stamp(n: int) -> int:
        calls.append(n)
        return n

    stamp(1)
    now[0] = 4
    stamp(1)
    now[0] = 6
    stamp(1)
    assert calls == [1, 1]


def test_memoize_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="get, put and peek"):
        memoize({})
    with pytest.raises(TypeError, match="cache_exceptions"):
        memoize(LRUCache(max_items=1), cache_exceptions=(int,))
    with pytest.raises(TypeError, match="key must be callable"):
        memoize(LRUCache(max_items=1), key="name")
