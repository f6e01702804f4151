"""Trace replay: measure the hit ratio of cache policies on a recorded key stream.

The replay convention is libCacheSim's, which the published tables use too.
Every request is a ``get``, and a miss inserts the key (demand fill), so the
policy evicts as needed. Every entry has size 1 and the capacity counts
entries. The cache starts empty, and the hit ratio is hits / all requests,
cold misses included.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import POLICIES, make_cache
from ._base import MISSING

__all__ = ["SimResult", "replay", "simulate"]

# Requests replayed between two progress callbacks.
_PROGRESS_STEP = 65536


@dataclass(frozen=True)
class SimResult:
    """The outcome of replaying one trace through one policy at one size."""

    policy: str
    size: int
    requests: int
    hits: int

    @property
    def hit_ratio(self) -> float:
        """Hits divided by requests, 0.0 for an empty trace."""
        return self.hits / self.requests if self.requests else 0.0


def replay(
    cache: Any,
    keys: Iterable[Hashable],
    progress: Callable[[int], object] | None = None,
) -> tuple[int, int]:
    """Replay ``keys`` through ``cache`` with demand fill; return ``(requests, hits)``.

    ``progress(n)`` is called after every 65,536 requests and at the end
    with the number of requests since the previous call.
    """
    # The loop runs once per request (13 million times for the ARC P12
    # trace), so the cache's methods are bound to locals once.
    get = cache.get
    put = cache.put
    missing = MISSING
    hits = 0
    requests = 0
    pending = 0
    for key in keys:
        if get(key, missing) is missing:
            put(key, True)
        else:
            hits += 1
        pending += 1
        if pending == _PROGRESS_STEP:
            requests += pending
            if progress is not None:
                progress(pending)
            pending = 0
    requests += pending
    if progress is not None and pending:
        progress(pending)
    return requests, hits


def simulate(
    keys: Sequence[Hashable],
    policies: Sequence[str],
    sizes: Sequence[int],
    progress: Callable[[int], object] | None = None,
) -> list[SimResult]:
    """Replay ``keys`` through every policy at every size, in that order.

    ``policies`` are names from :data:`storekit.cache.POLICIES` (``ttl`` is
    rejected: a replay has no time). ``sizes`` are capacities in entries.
    """
    for name in policies:
        if name not in POLICIES:
            raise ValueError(
                f"unknown cache policy {name!r}; expected one of {', '.join(POLICIES)}"
            )
        if name == "ttl":
            raise ValueError(
                "policy 'ttl' needs a time to live, which a trace replay does not have"
            )
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"cache size must be an int >= 1, got {size!r}")
    results = []
    for name in policies:
        for size in sizes:
            cache = make_cache(name, max_items=size)
            requests, hits = replay(cache, keys, progress)
            results.append(SimResult(name, size, requests, hits))
    return results
