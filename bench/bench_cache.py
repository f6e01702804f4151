"""Compare storekit's caches with cachetools, cachebox and functools.lru_cache.

Three operations, each over a zipfian key stream (exponent 0.99, as YCSB
uses) with a capacity of 10,000 entries:

- get-hit: every key requested is in the cache.
- get-miss+put: every key is new, so each request is a missed ``get``
  followed by a ``put`` that evicts one entry.
- read-through: ``get``, and on a miss a load and a ``put``; the stream
  covers 100,000 keys, so some requests miss. For ``functools.lru_cache``
  and ``storekit.memoize`` this is a call of the decorated function.

Every contender is used as its library ships it: storekit's caches with
their internal lock, and cachetools and cachebox as they are. cachetools is
not thread-safe, so the ``+lock`` rows add the lock that its documentation
requires when threads share a cache. A result is the best nanoseconds per request over
``--repeat`` rounds; rounds interleave the contenders so that a busy machine
slows them all alike. The first line of the output names the hit path of
storekit's ``LRUCache.get`` and ``TTLCache.get``: ``c`` when the extension
``storekit._chitpath`` is built, ``python`` otherwise.

Run: ``python bench/bench_cache.py`` (``pip install cachetools cachebox``
for the peers; missing peers are skipped).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import itertools
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storekit.cache import LRUCache, S3FIFOCache, TTLCache, memoize  # noqa: E402
from storekit.cache.lru import HITPATH  # noqa: E402

TTL_SECONDS = 3600.0


class _Locked:
    """A cachetools cache behind one lock, as cachetools documents for threads."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._cache.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._cache[key] = value


def _contenders(capacity: int) -> dict[str, Callable[[], Any]]:
    """Return factories of caches with ``get(key)`` and ``put(key, value)``."""
    factories: dict[str, Callable[[], Any]] = {
        "storekit.LRUCache": lambda: LRUCache(max_items=capacity),
        "storekit.TTLCache": lambda: TTLCache(max_items=capacity, ttl=TTL_SECONDS),
        "storekit.S3FIFOCache": lambda: S3FIFOCache(max_items=capacity),
    }
    try:
        import cachetools
    except ImportError:
        print("cachetools is not installed; its rows are skipped", file=sys.stderr)
    else:
        factories["cachetools.LRUCache"] = lambda: _ItemSetter(
            cachetools.LRUCache(capacity)
        )
        factories["cachetools.TTLCache"] = lambda: _ItemSetter(
            cachetools.TTLCache(capacity, TTL_SECONDS)
        )
        factories["cachetools.LRUCache+lock"] = lambda: _Locked(
            cachetools.LRUCache(capacity)
        )
    try:
        import cachebox
    except ImportError:
        print("cachebox is not installed; its rows are skipped", file=sys.stderr)
    else:
        factories["cachebox.LRUCache"] = lambda: _ItemSetter(
            cachebox.LRUCache(capacity)
        )
        factories["cachebox.TTLCache"] = lambda: _ItemSetter(
            cachebox.TTLCache(capacity, TTL_SECONDS)
        )
    return factories


class _ItemSetter:
    """Give a mapping-style cache ``put``; ``get`` stays the library's own method."""

    def __init__(self, cache: Any) -> None:
        self.get = cache.get
        self.put = cache.__setitem__


def zipf_stream(universe: int, count: int, exponent: float, seed: int) -> list[int]:
    """Return ``count`` keys out of ``range(universe)``, zipf-distributed and shuffled."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) ** exponent for rank in range(universe)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    ranks = [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]
    # Rank 0 is the hottest key; a permutation spreads hot keys over the range.
    permutation = list(range(universe))
    rng.shuffle(permutation)
    return [permutation[min(rank, universe - 1)] for rank in ranks]


def _time_per_request(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    requests = run()
    return (time.perf_counter() - start) / requests * 1e9


def bench_get_hit(
    factory: Callable[[], Any], capacity: int, keys: list[int]
) -> Callable[[], float]:
    cache = factory()
    for key in range(capacity):
        cache.put(key, key)
    get = cache.get

    def run() -> int:
        for key in keys:
            get(key)
        return len(keys)

    return lambda: _time_per_request(run)


def bench_miss_put(
    factory: Callable[[], Any], capacity: int, keys: list[int]
) -> Callable[[], float]:
    fresh = [capacity + key for key in range(len(keys))]

    def measure() -> float:
        cache = factory()
        for key in range(capacity):
            cache.put(key, key)
        get = cache.get
        put = cache.put

        def run() -> int:
            for key in fresh:
                if get(key) is None:
                    put(key, key)
            return len(fresh)

        return _time_per_request(run)

    return measure


def bench_read_through(
    factory: Callable[[], Any], keys: list[int]
) -> Callable[[], float]:
    def load(key: int) -> int:
        return key

    def measure() -> float:
        cache = factory()
        get = cache.get
        put = cache.put

        def run() -> int:
            for key in keys:
                value = get(key)
                if value is None:
                    value = load(key)
                    put(key, value)
            return len(keys)

        return _time_per_request(run)

    return measure


def bench_decorated(
    decorate: Callable[[Callable[[int], int]], Callable[[int], int]], keys: list[int]
) -> Callable[[], float]:
    def measure() -> float:
        cached = decorate(lambda key: key)

        def run() -> int:
            for key in keys:
                cached(key)
            return len(keys)

        return _time_per_request(run)

    return measure


def bench_lru_cache_hit(capacity: int, keys: list[int]) -> Callable[[], float]:
    cached = functools.lru_cache(maxsize=capacity)(lambda key: key)
    for key in range(capacity):
        cached(key)

    def run() -> int:
        for key in keys:
            cached(key)
        return len(keys)

    return lambda: _time_per_request(run)


def run_benchmarks(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    capacity = args.capacity
    hit_keys = zipf_stream(capacity, args.requests, args.exponent, seed=1)
    miss_keys = list(range(args.requests))
    through_keys = zipf_stream(args.universe, args.requests, args.exponent, seed=2)

    measures: dict[str, dict[str, Callable[[], float]]] = {
        "get-hit": {},
        "get-miss+put": {},
        "read-through": {},
    }
    for name, factory in _contenders(capacity).items():
        measures["get-hit"][name] = bench_get_hit(factory, capacity, hit_keys)
        measures["get-miss+put"][name] = bench_miss_put(factory, capacity, miss_keys)
        measures["read-through"][name] = bench_read_through(factory, through_keys)
    measures["get-hit"]["functools.lru_cache"] = bench_lru_cache_hit(capacity, hit_keys)
    measures["get-miss+put"]["functools.lru_cache"] = bench_decorated(
        functools.lru_cache(maxsize=capacity), miss_keys
    )
    measures["read-through"]["functools.lru_cache"] = bench_decorated(
        functools.lru_cache(maxsize=capacity), through_keys
    )
    measures["read-through"]["storekit.memoize(LRUCache)"] = bench_decorated(
        memoize(LRUCache(max_items=capacity)), through_keys
    )

    best: dict[str, dict[str, float]] = {op: {} for op in measures}
    for _round in range(args.repeat):
        for operation, contenders in measures.items():
            for name, measure in contenders.items():
                elapsed = measure()
                best[operation][name] = min(best[operation].get(name, elapsed), elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--capacity", type=int, default=10_000, help="cache size in entries"
    )
    parser.add_argument(
        "--universe", type=int, default=100_000, help="distinct keys of read-through"
    )
    parser.add_argument(
        "--requests", type=int, default=20_000, help="requests per timed round"
    )
    parser.add_argument("--exponent", type=float, default=0.99, help="zipf exponent")
    parser.add_argument(
        "--repeat", type=int, default=40, help="timed rounds; the best is kept"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = run_benchmarks(args)
    if args.json:
        print(
            json.dumps(
                {"args": vars(args), "hitpath": HITPATH, "results": results},
                indent=2,
                sort_keys=True,
            )
        )
        return

    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at start; "
        f"capacity {args.capacity}, zipf {args.exponent}, best of {args.repeat} rounds "
        f"of {args.requests} requests; LRUCache/TTLCache get hit path in {HITPATH}"
    )
    for operation, rows in results.items():
        print(f"\n{operation}")
        print(f"  {'cache':<30} {'ns/request':>11}")
        for name, nanoseconds in sorted(rows.items(), key=lambda item: item[1]):
            print(f"  {name:<30} {nanoseconds:>11.0f}")
    hit = results["get-hit"]
    for ours, theirs in (
        ("storekit.LRUCache", "cachetools.LRUCache"),
        ("storekit.TTLCache", "cachetools.TTLCache"),
    ):
        if theirs in hit:
            print(
                f"\nget-hit: {ours} is {hit[theirs] / hit[ours]:.2f}x as fast as {theirs}"
            )


if __name__ == "__main__":
    main()
