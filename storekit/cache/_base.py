"""Machinery shared by storekit's caches: limits, sizes, TTL deadlines, stats, callbacks.

A cache subclass owns ``_data`` (a dict keyed by cache key) and the policy's
own structures. This base keeps everything that does not depend on the
policy: argument checks, the byte total, the expiry heap, the counters, the
lock and the eviction and expiry callbacks.

Locking: every method that changes the structures takes ``_lock`` (a
``threading.Lock``). The hit path of ``get`` does not: it is a few calls of
C-implemented dict and OrderedDict methods, each atomic under the GIL, and
it counts hits and misses with ``itertools.count``, whose ``next`` is atomic
too. A ``get`` racing with a change therefore returns the entry as it was
either before or after the change. On a free-threaded build (no GIL),
``get`` takes the lock instead. User code (``size_of``, ``on_evict``, ``on_expire``) never runs
under the lock, so a callback may call the cache again. ``clock`` may run
under the lock and must not call the cache.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

__all__ = ["CacheBase", "GIL_DISABLED", "MISSING", "check_ttl"]

logger = logging.getLogger("storekit.cache")

#: Marker for "no value", distinct from every value a user can store.
MISSING: Any = object()

#: True on a free-threaded CPython build running without the GIL, where the
#: lock-free hit path of ``get`` is not atomic and the locked one is used.
GIL_DISABLED = hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled()

# The expiry heap keeps stale entries (of overwritten or removed keys) until
# they reach the top. It is rebuilt once it contains this many times more
# entries than there are live deadlines, so its size is O(live deadlines).
_HEAP_SLACK = 2


def check_limit(name: str, limit: object) -> int | None:
    """Return ``limit`` as an int >= 0, or None; raise TypeError/ValueError otherwise."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{name} must be an int or None, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"{name} must be >= 0, got {limit}")
    return limit


def check_ttl(ttl: object, name: str = "ttl") -> float | None:
    """Return ``ttl`` in seconds as a float > 0, or None; reject anything else.

    ``math.inf`` is accepted and means "never expires".
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or None, not {type(ttl).__name__}"
        )
    if not ttl > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0 seconds, got {ttl!r}")
    return float(ttl)


class CacheBase:
    """Limits, byte accounting, TTL expiry, stats and callbacks for one cache.

    Subclasses implement ``get``, ``put``, ``peek``, ``_remove``,
    ``_policy_keys``, ``_clear_policy`` and ``_check_policy_invariants``.
    """

    def __init__(
        self,
        max_items: int | None = None,
        max_bytes: int | None = None,
        ttl: float | None = None,
        size_of: Callable[[Any], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        on_evict: Callable[[Any, Any], object] | None = None,
        on_expire: Callable[[Any, Any], object] | None = None,
    ) -> None:
        self._max_items = check_limit("max_items", max_items)
        self._max_bytes = check_limit("max_bytes", max_bytes)
        self._ttl = check_ttl(ttl)
        for name, function in (
            ("size_of", size_of),
            ("on_evict", on_evict),
            ("on_expire", on_expire),
        ):
            if function is not None and not callable(function):
                raise TypeError(
                    f"{name} must be callable or None, not {type(function).__name__}"
                )
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        # Sizes are measured only when they are needed: for a byte limit, or
        # when the caller gave size_of so that stats() can report bytes.
        if size_of is None and max_bytes is not None:
            size_of = len
        self._size_of = size_of
        self._clock = clock
        self._on_evict = on_evict
        self._on_expire = on_expire

        self._lock = threading.Lock()
        self._data: dict[Hashable, Any] = {}
        self._sizes: dict[Hashable, int] = {}
        self._bytes = 0
        # key -> absolute deadline for entries that expire, plus a min-heap of
        # (deadline, tie-breaker, key) to find due entries without a scan.
        self._deadlines: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._tiebreak = itertools.count()

        # Hits and misses are counted outside the lock; next() on an
        # itertools.count is one atomic C call.
        self._hit_counter = itertools.count()
        self._miss_counter = itertools.count()
        self._count_hit = self._hit_counter.__next__
        self._count_miss = self._miss_counter.__next__
        self._evictions = 0
        self._expirations = 0
        self._rejections = 0
        self._callback_errors = 0

    # -- configuration -----------------------------------------------------

    @property
    def max_items(self) -> int | None:
        """Maximum number of entries, or None for no count limit."""
        return self._max_items

    @property
    def max_bytes(self) -> int | None:
        """Maximum sum of ``size_of(value)`` over all entries, or None."""
        return self._max_bytes

    @property
    def ttl(self) -> float | None:
        """Default time to live in seconds of an entry put without a ``ttl``."""
        return self._ttl

    # -- helpers for put() -------------------------------------------------

    def _measure(self, key: Hashable, value: Any) -> int:
        """Return ``size_of(value)``, checked; called outside the lock."""
        size_of = self._size_of
        if size_of is None:
            return 0
        try:
            size = size_of(value)
        except TypeError as exc:
            raise TypeError(
                f"size_of failed on the value for key {key!r} "
                f"({type(value).__name__}): {exc}; pass size_of= for values without len()"
            ) from exc
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(
                f"size_of must return an int, got {type(size).__name__} for key {key!r}"
            )
        if size < 0:
            raise ValueError(f"size_of returned a negative size {size} for key {key!r}")
        return size

    def _entry_ttl(self, ttl: object) -> float | None:
        if ttl is None:
            return self._ttl
        return check_ttl(ttl)

    def _fits(self, size: int) -> bool:
        """Return whether an entry of ``size`` can be held at all."""
        if self._max_items == 0:
            return False
        return self._max_bytes is None or size <= self._max_bytes

    def _set_deadline(self, key: Hashable, deadline: float) -> None:
        if deadline == math.inf:
            return
        self._deadlines[key] = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._tiebreak), key))
        if len(heap) > _HEAP_SLACK * len(self._deadlines) + 64:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        tiebreak = self._tiebreak
        self._heap = [
            (deadline, next(tiebreak), key) for key, deadline in self._deadlines.items()
        ]
        heapq.heapify(self._heap)

    def _forget(self, key: Hashable) -> None:
        """Drop the size and deadline of a key that left ``_data``."""
        if self._size_of is not None:
            self._bytes -= self._sizes.pop(key)
        if self._deadlines:
            # The heap entry stays behind; _purge skips it as stale.
            self._deadlines.pop(key, None)

    # -- expiry --------------------------------------------------------------

    def _counters(self) -> tuple[int, int]:
        """Return (hits, misses) so far."""
        # repr(itertools.count(n)) is "count(n)": the only way to read the
        # count without advancing it.
        return int(repr(self._hit_counter)[6:-1]), int(repr(self._miss_counter)[6:-1])

    def _is_live(self, key: Hashable) -> bool:
        """Return whether the stored ``key`` has not expired; call under the lock."""
        deadline = self._deadlines.get(key)
        return deadline is None or self._clock() < deadline

    def _purge(self, now: float, expired: list[tuple[Hashable, Any]]) -> None:
        """Remove every entry whose deadline is <= ``now``; call under the lock."""
        heap = self._heap
        deadlines = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if deadlines.get(key) == deadline:
                expired.append((key, self._remove(key)))
                self._expirations += 1

    def _purge_now(self, expired: list[tuple[Hashable, Any]]) -> None:
        if self._heap:
            self._purge(self._clock(), expired)

    def expire(self) -> int:
        """Remove every expired entry now and return how many were removed.

        Expired entries are never returned or counted even without this
        call; it only frees their memory early and runs ``on_expire``.
        """
        expired: list[tuple[Hashable, Any]] = []
        with self._lock:
            self._purge_now(expired)
        self._notify((), expired)
        return len(expired)

    # -- callbacks -----------------------------------------------------------

    def _notify(
        self,
        evicted: list[tuple[Hashable, Any]] | tuple[()],
        expired: list[tuple[Hashable, Any]] | tuple[()],
    ) -> None:
        """Run the callbacks outside the lock; log and count their exceptions.

        The cache change that caused the callback is already complete, so a
        failing callback cannot undo the put that evicted the entry.
        """
        for callback, entries, reason in (
            (self._on_evict, evicted, "on_evict"),
            (self._on_expire, expired, "on_expire"),
        ):
            if callback is None:
                continue
            for key, value in entries:
                try:
                    callback(key, value)
                except Exception:
                    with self._lock:
                        self._callback_errors += 1
                    logger.exception(
                        "%s callback raised for key %r; the entry is removed",
                        reason,
                        key,
                    )

    # -- the mapping view ----------------------------------------------------

    def __contains__(self, key: object) -> bool:
        """Return whether ``key`` has a live entry, without counting a use."""
        with self._lock:
            if key not in self._data:
                return False
            return not self._deadlines or self._is_live(key)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """Return the number of live entries (expired entries are removed first)."""
        expired: list[tuple[Hashable, Any]] = []
        with self._lock:
            self._purge_now(expired)
            count = len(self._data)
        self._notify((), expired)
        return count

    def __iter__(self) -> Iterator[Hashable]:
        """Iterate a snapshot of the live keys taken at the call."""
        expired: list[tuple[Hashable, Any]] = []
        with self._lock:
            self._purge_now(expired)
            keys = self._policy_keys()
        self._notify((), expired)
        return iter(keys)

    def keys(self) -> list[Hashable]:
        """Return the live keys, in the order ``iter`` yields them."""
        return list(self)

    def items(self) -> list[tuple[Hashable, Any]]:
        """Return ``(key, value)`` for every live entry without counting a use."""
        result = []
        for key in self:
            value = self.peek(key, MISSING)
            if value is not MISSING:
                result.append((key, value))
        return result

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; return True if a live entry was removed.

        No callback runs: deleting is neither an eviction nor an expiry.
        """
        with self._lock:
            if key not in self._data:
                return False
            live = not self._deadlines or self._is_live(key)
            self._remove(key)
            return live

    def pop(self, key: Hashable, default: Any = MISSING) -> Any:
        """Remove ``key`` and return its value, or ``default`` (KeyError if none given)."""
        with self._lock:
            value = MISSING
            if key in self._data:
                live = not self._deadlines or self._is_live(key)
                removed = self._remove(key)
                if live:
                    value = removed
        if value is MISSING:
            if default is MISSING:
                raise KeyError(key)
            return default
        return value

    def clear(self) -> None:
        """Remove every entry without running callbacks; the counters stay."""
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self._bytes = 0
            self._deadlines.clear()
            self._heap.clear()
            self._clear_policy()

    def __getitem__(self, key: Hashable) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Hashable) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_items={self._max_items}, "
            f"max_bytes={self._max_bytes}, ttl={self._ttl}, items={len(self._data)})"
        )

    # -- stats and checks ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return the counters and the current size.

        - ``hits`` and ``misses``: ``get`` calls that found a live entry or not.
        - ``evictions``: entries removed to make room.
        - ``expirations``: expired entries removed.
        - ``rejections``: puts of a value larger than ``max_bytes``.
        - ``callback_errors``: exceptions raised by ``on_evict``/``on_expire``.
        - ``items`` and ``bytes``: the live entries and the sum of their
          sizes. ``bytes`` is None when sizes are not measured, that is
          with neither ``max_bytes`` nor ``size_of``.
        - ``hit_ratio``: hits / (hits + misses), 0.0 before the first get.
        """
        expired: list[tuple[Hashable, Any]] = []
        with self._lock:
            self._purge_now(expired)
            hits, misses = self._counters()
            lookups = hits + misses
            result = {
                "hits": hits,
                "misses": misses,
                "evictions": self._evictions,
                "expirations": self._expirations,
                "rejections": self._rejections,
                "callback_errors": self._callback_errors,
                "items": len(self._data),
                "bytes": self._bytes if self._size_of is not None else None,
                "hit_ratio": hits / lookups if lookups else 0.0,
                "max_items": self._max_items,
                "max_bytes": self._max_bytes,
            }
        self._notify((), expired)
        return result

    def _check_invariants(self) -> None:
        """Raise AssertionError if the internal structures disagree.

        Property and stress tests call this; it takes O(n) time.
        """
        with self._lock:
            data = self._data
            if self._size_of is not None:
                assert set(self._sizes) == set(data), (
                    "sizes and entries hold different keys"
                )
                total = sum(self._sizes.values())
                assert total == self._bytes, (
                    f"byte total {self._bytes} != sum of sizes {total}"
                )
                if self._max_bytes is not None:
                    assert self._bytes <= self._max_bytes, (
                        f"{self._bytes} bytes exceed max_bytes"
                    )
            else:
                assert not self._sizes, "sizes kept without size_of"
                assert self._bytes == 0, "byte total kept without size_of"
            if self._max_items is not None:
                assert len(data) <= self._max_items, (
                    f"{len(data)} entries exceed max_items"
                )
            for key, deadline in self._deadlines.items():
                assert key in data, f"deadline kept for missing key {key!r}"
                assert deadline != math.inf, "an infinite deadline is stored"
            in_heap = {(key, deadline) for deadline, _, key in self._heap}
            for key, deadline in self._deadlines.items():
                assert (key, deadline) in in_heap, (
                    f"deadline of {key!r} is not in the heap"
                )
            heap = self._heap
            for index in range(1, len(heap)):
                assert heap[(index - 1) // 2] <= heap[index], (
                    "expiry heap order is broken"
                )
            self._check_policy_invariants()

    # -- the policy's part -----------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def put(
        self, key: Hashable, value: Any, ttl: float | None = None
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    def peek(self, key: Hashable, default: Any = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _remove(self, key: Hashable) -> Any:  # pragma: no cover
        """Remove a present ``key`` from every structure and return its value."""
        raise NotImplementedError

    def _policy_keys(self) -> list[Hashable]:  # pragma: no cover
        raise NotImplementedError

    def _clear_policy(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _check_policy_invariants(self) -> None:  # pragma: no cover
        raise NotImplementedError
