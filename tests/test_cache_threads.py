"""Thread-safety of the caches: concurrent mixed operations keep every invariant."""

from __future__ import annotations

import random
import threading
import time

import pytest

from storekit.cache import LRUCache, S3FIFOCache, TTLCache

CACHE_CLASSES = [LRUCache, S3FIFOCache]


@pytest.mark.parametrize("cache_class", CACHE_CLASSES, ids=lambda cls: cls.__name__)
def test_tiny_cache_concurrent_put_get_clear(cache_class: type) -> None:
    cache = cache_class(max_items=2)
    threads_count = 8
    iterations = 20_000
    barrier = threading.Barrier(threads_count + 1)
    errors: list[BaseException] = []
    wrong_values: list[tuple[int, object]] = []
    stop_clearing = threading.Event()

    def worker() -> None:
        try:
            barrier.wait()
            for i in range(iterations):
                cache.put(i % 50, i % 50)
                key = (7 * i) % 50
                value = cache.get(key)
                if value is not None and value != key:
                    wrong_values.append((key, value))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    def clearer() -> None:
        barrier.wait()
        while not stop_clearing.is_set():
            cache.clear()
            time.sleep(0.001)

    workers = [threading.Thread(target=worker) for _ in range(threads_count)]
    clearing = threading.Thread(target=clearer)
    for thread in [*workers, clearing]:
        thread.start()
    for thread in workers:
        thread.join()
    stop_clearing.set()
    clearing.join()

    assert errors == []
    assert wrong_values == []
    assert len(cache) <= 2
    for key in cache:
        assert cache.peek(key) == key
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == threads_count * iterations
    cache._check_invariants()


class SteppingClock:
    """A clock shared by threads: one thread advances it, every thread reads it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "make_cache",
    [
        lambda clock: LRUCache(max_items=64, max_bytes=2000, ttl=0.05, clock=clock),
        lambda clock: TTLCache(max_items=500, ttl=0.02, clock=clock),
        lambda clock: S3FIFOCache(max_items=64, max_bytes=2000, ttl=0.05, clock=clock),
    ],
    ids=["LRUCache-bytes-ttl", "TTLCache", "S3FIFOCache-bytes-ttl"],
)
def test_mixed_operations_eight_threads(make_cache) -> None:
    clock = SteppingClock()
    evictions = []
    cache = make_cache(clock)
    cache._on_evict = lambda key, value: evictions.append(key)
    duration = 3.0
    deadline = time.monotonic() + duration
    errors: list[BaseException] = []
    gets = [0] * 8

    def worker(index: int) -> None:
        rng = random.Random(index)
        try:
            while time.monotonic() < deadline:
                for _ in range(200):
                    key = rng.randrange(200)
                    action = rng.random()
                    if action < 0.45:
                        gets[index] += 1
                        value = cache.get(key)
                        assert value is None or value[:1] == bytes([key])
                    elif action < 0.80:
                        cache.put(
                            key,
                            bytes([key]) * rng.randrange(1, 80),
                            ttl=rng.choice([None, 0.01, 0.1]),
                        )
                    elif action < 0.88:
                        cache.delete(key)
                    elif action < 0.92:
                        key in cache  # noqa: B015 - exercised for races only
                    elif action < 0.95:
                        cache.expire()
                    elif action < 0.97:
                        list(cache)
                    elif action < 0.99:
                        cache.stats()
                    else:
                        len(cache)
                clock.now += 0.001
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    cache._check_invariants()
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == sum(gets)
    assert stats["callback_errors"] == 0
    assert len(evictions) == stats["evictions"]
