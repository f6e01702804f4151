"""LRUCache and TTLCache: least-recently-used eviction with optional expiry.

The hit path of ``get`` runs in C when the extension ``storekit._chitpath``
(csrc/hitpath.c) is built, and otherwise in the Python closures
``_make_plain_get`` and ``_make_paired_get``. Both perform the same steps on
the same structures and give identical results, exceptions and stats.
:data:`HITPATH` names the one in use. ``STOREKIT_PUREPYTHON=1`` selects the
Python closures, and a free-threaded build running without the GIL uses the
locked ``_get_locked`` instead of either.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .._backend import PURE_PYTHON
from ._base import GIL_DISABLED, MISSING, CacheBase

__all__ = ["HITPATH", "LRUCache", "TTLCache"]

# Key types whose hashing and equality run no Python code. get() takes the
# lock-free path only for these and for tuples of these and None. A key with
# a Python __eq__ or __hash__ could let another thread change the
# OrderedDict in the middle of move_to_end, and CPython's OrderedDict then
# reads freed memory (python/cpython issue 142637), so get() takes the lock for it.
_LOCK_FREE_KEY_TYPES = frozenset({str, bytes, int, float})
_LOCK_FREE_ITEM_TYPES = frozenset({str, bytes, int, float, type(None)})


def _is_lock_free_key(key: object) -> bool:
    """Return whether ``get`` may serve ``key`` without the lock."""
    key_type = type(key)
    if key_type in _LOCK_FREE_KEY_TYPES:
        return True
    if key_type is not tuple:
        return False
    return all(type(item) in _LOCK_FREE_ITEM_TYPES for item in key)  # type: ignore[attr-defined]


def _load_c_hitpath() -> type | None:
    """Return the C ``HitPath`` type, or None when the Python closures are used."""
    # Without the GIL the locked get is used, and importing a module that does
    # not declare free-threading support would enable the GIL for the process.
    if PURE_PYTHON or GIL_DISABLED:
        return None
    try:
        from .._chitpath import HitPath
    except ImportError:
        return None
    return HitPath


_HitPath = _load_c_hitpath()

#: ``"c"`` when the hit path of ``get`` runs in ``storekit._chitpath``,
#: ``"python"`` when it runs in Python closures or, without the GIL, under
#: the cache's lock.
HITPATH = "python" if _HitPath is None else "c"


class LRUCache(CacheBase):
    """A thread-safe least-recently-used cache of any hashable keys and any values.

    The cache is bounded by ``max_items`` entries and/or by ``max_bytes``,
    the sum of ``size_of(value)`` over its entries (``len`` by default); with
    neither it is unbounded. When a put needs room, the least recently used
    entries are evicted until the new entry fits. A value larger than
    ``max_bytes`` is not stored, and any older value of its key is removed.

    An entry put with ``ttl`` seconds (or the default ``ttl``) at time ``t``
    is expired once ``clock() >= t + ttl``. An expired entry is never
    returned, and ``len``, ``in`` and iteration never count it. ``math.inf``
    as a per-entry ``ttl`` means "never expires".

    Recency: ``get`` hits and ``put`` count as a use and make the entry the
    most recent. ``in``, ``peek``, ``len`` and iteration do not. Overwriting
    a key replaces its value, resets its TTL and evicts only what the size
    difference needs, never another key when the new size still fits.

    ``on_evict(key, value)`` runs for entries evicted to make room and
    ``on_expire(key, value)`` for expired entries removed. Both run after
    the change is complete and outside the lock. An exception they raise is
    logged on the ``storekit.cache`` logger and counted in
    ``stats()["callback_errors"]``, but never undoes the change.

    Thread-safety: every method may be called from any thread. Changes take
    one lock. A ``get`` hit on a str, bytes, int or float key, or a tuple of
    those and None, does not need it. It relies on the atomicity of
    C-implemented dict operations under the GIL, so it returns an entry as
    it was either before or after a concurrent change. ``get`` of any other
    key takes the lock, because a Python ``__eq__`` or ``__hash__`` could
    let another thread change the entries in the middle of the lookup. ``get``,
    ``put`` and ``delete`` are O(1), and ``put`` of an entry with a TTL is
    O(log n), for the expiry heap.

    >>> cache = LRUCache(max_items=2)
    >>> cache.put("a", 1)
    >>> cache.put("b", 2)
    >>> cache.get("a")
    1
    >>> cache.put("c", 3)          # evicts "b", the least recently used
    >>> list(cache)
    ['a', 'c']
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
        super().__init__(
            max_items,
            max_bytes,
            ttl,
            size_of,
            clock,
            on_evict=on_evict,
            on_expire=on_expire,
        )
        # Recency order is the OrderedDict's order, least recent first.
        # With a default ttl every entry expires, and each value is stored as
        # a (value, deadline) pair so the hit path reads both with one lookup.
        # The deadline of an entry put with ttl=math.inf is math.inf there.
        # Without one, values are stored as they are, which made the hit path
        # about 15% faster in a micro-benchmark on CPython 3.11. The rare
        # per-entry deadlines are then read from self._deadlines.
        self._paired = self._ttl is not None
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._move_to_end = self._data.move_to_end
        # get() is the hot path, so each instance gets its own version of it
        # with direct references to its structures. That is the C HitPath
        # when it is built, else a closure that reads them from closure cells.
        if type(self).get is not LRUCache.get:
            pass  # a subclass's own get stays in place
        elif GIL_DISABLED:
            self.get = self._get_locked  # type: ignore[method-assign]
        elif _HitPath is not None:
            self.get = self._make_c_get()  # type: ignore[method-assign]
        elif self._paired:
            self.get = self._make_paired_get()  # type: ignore[method-assign]
        else:
            self.get = self._make_plain_get()  # type: ignore[method-assign]

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the live value of ``key`` and mark it most recent, or ``default``."""
        # Each instance replaces this method with _make_c_get, _make_paired_get
        # or _make_plain_get; this is the locked equivalent.
        return self._get_locked(key, default)

    def _make_c_get(self) -> Callable[..., Any]:
        """Return the C version of the closures below, on the same structures."""
        assert _HitPath is not None
        return _HitPath(
            self._data,
            self._move_to_end,
            self._clock,
            self._miss_counter,
            self._get_locked,
            None if self._paired else self._deadlines,
            self._paired,
            f"{type(self).__qualname__}.get",
        )

    def _counters(self) -> tuple[int, int]:
        """Return (hits, misses) so far, with the hits the C get counted itself."""
        hits, misses = super()._counters()
        get = self.__dict__.get("get")
        if _HitPath is not None and type(get) is _HitPath:
            hits += get.hits
        return hits, misses

    def _make_paired_get(self) -> Callable[..., Any]:
        data = self._data
        move_to_end = self._move_to_end
        clock = self._clock
        hit_counter = self._hit_counter
        miss_counter = self._miss_counter
        get_locked = self._get_locked
        advance = next
        lock_free_types = _LOCK_FREE_KEY_TYPES
        is_lock_free = _is_lock_free_key

        def get(key: Hashable, default: Any = None) -> Any:
            # No lock for the key types of _is_lock_free_key: a subscript,
            # move_to_end and next() on an itertools.count are each atomic
            # under the GIL. A KeyError means the key is missing, or a
            # concurrent change removed it between the two calls, which is
            # a miss after that change.
            if type(key) not in lock_free_types and not is_lock_free(key):
                return get_locked(key, default)
            try:
                value, deadline = data[key]
                move_to_end(key)
            except KeyError:
                advance(miss_counter)
                return default
            if deadline <= clock():
                return get_locked(key, default)
            advance(hit_counter)
            return value

        return self._as_method(get)

    def _make_plain_get(self) -> Callable[..., Any]:
        data = self._data
        move_to_end = self._move_to_end
        deadlines = self._deadlines
        clock = self._clock
        hit_counter = self._hit_counter
        miss_counter = self._miss_counter
        get_locked = self._get_locked
        advance = next
        lock_free_types = _LOCK_FREE_KEY_TYPES
        is_lock_free = _is_lock_free_key

        def get(key: Hashable, default: Any = None) -> Any:
            # The same lock-free steps as the paired version; a deadline
            # exists only for entries put with their own ttl.
            if type(key) not in lock_free_types and not is_lock_free(key):
                return get_locked(key, default)
            try:
                value = data[key]
                move_to_end(key)
            except KeyError:
                advance(miss_counter)
                return default
            if deadlines:
                deadline = deadlines.get(key)
                if deadline is not None and deadline <= clock():
                    return get_locked(key, default)
            advance(hit_counter)
            return value

        return self._as_method(get)

    def _as_method(self, function: Callable[..., Any]) -> Callable[..., Any]:
        function.__doc__ = LRUCache.get.__doc__
        function.__qualname__ = f"{type(self).__qualname__}.get"
        return function

    def _get_locked(self, key: Hashable, default: Any = None) -> Any:
        expired = None
        with self._lock:
            value = self._lookup_live(key)
            if value is not MISSING:
                self._move_to_end(key)
                self._count_hit()
                return value
            if key in self._data:
                expired = [(key, self._remove(key))]
                self._expirations += 1
            self._count_miss()
        if expired:
            self._notify((), expired)
        return default

    def _lookup_live(self, key: Hashable) -> Any:
        """Return the value of ``key`` if it is stored and not expired, else MISSING."""
        stored = self._data.get(key, MISSING)
        if stored is MISSING:
            return MISSING
        if self._paired:
            value, deadline = stored
        else:
            value = stored
            deadline = self._deadlines.get(key)
        if deadline is not None and deadline <= self._clock():
            return MISSING
        return value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Return the live value of ``key`` or ``default``; no recency change, no stats."""
        # Lock-free like get: it reads one entry and changes nothing.
        value = self._lookup_live(key)
        return default if value is MISSING else value

    def put(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` as the most recent entry, evicting as needed.

        ``ttl`` overrides the cache's default time to live for this entry.
        """
        if self._size_of is not None:
            self._put_sized(key, value, ttl)
            return
        # Without sizes every entry counts 1, so an overwrite never evicts
        # and a new key evicts at most the least recent entry.
        ttl = self._ttl if ttl is None else self._entry_ttl(ttl)
        evicted = expired = None
        with self._lock:
            heap = self._heap
            deadline = None
            if ttl is not None or heap:
                now = self._clock()
                if heap and heap[0][0] <= now:
                    expired = []
                    self._purge(now, expired)
                if ttl is not None and ttl != math.inf:
                    deadline = now + ttl
            data = self._data
            stored = (value, _paired_deadline(deadline)) if self._paired else value
            if key in data:
                if self._deadlines:
                    self._deadlines.pop(key, None)
                data[key] = stored
                self._move_to_end(key)
            elif self._max_items is None or len(data) < self._max_items:
                data[key] = stored
            elif data:
                # The eviction of _evict_oldest, inlined for the miss path.
                old_key, old_stored = data.popitem(last=False)
                if self._deadlines:
                    self._deadlines.pop(old_key, None)
                self._evictions += 1
                if self._on_evict is not None:
                    old_value = old_stored[0] if self._paired else old_stored
                    evicted = [(old_key, old_value)]
                data[key] = stored
            else:
                self._rejections += 1  # max_items == 0
                deadline = None
            if deadline is not None:
                self._set_deadline(key, deadline)
        if evicted or (expired and self._on_expire):
            self._notify(evicted or (), expired or ())

    def _put_sized(self, key: Hashable, value: Any, ttl: float | None) -> None:
        size = self._measure(key, value)
        ttl = self._ttl if ttl is None else self._entry_ttl(ttl)
        evicted: list[tuple[Hashable, Any]] = []
        expired: list[tuple[Hashable, Any]] = []
        with self._lock:
            now = self._clock() if ttl is not None or self._heap else 0.0
            if self._heap and self._heap[0][0] <= now:
                self._purge(now, expired)
            data = self._data
            if key in data:
                # Free the old entry's room first, so the eviction below
                # only makes room for the size difference.
                self._remove(key)
            if not self._fits(size):
                self._rejections += 1
            else:
                max_items = self._max_items
                max_bytes = self._max_bytes
                while data and (
                    (max_items is not None and len(data) >= max_items)
                    or (max_bytes is not None and self._bytes + size > max_bytes)
                ):
                    evicted.append(self._evict_oldest())
                deadline = None if ttl is None or ttl == math.inf else now + ttl
                data[key] = (
                    (value, _paired_deadline(deadline)) if self._paired else value
                )
                self._sizes[key] = size
                self._bytes += size
                if deadline is not None:
                    self._set_deadline(key, deadline)
        if evicted or expired:
            self._notify(evicted, expired)

    def _evict_oldest(self) -> tuple[Hashable, Any]:
        key, stored = self._data.popitem(last=False)
        self._forget(key)
        self._evictions += 1
        return key, (stored[0] if self._paired else stored)

    def _remove(self, key: Hashable) -> Any:
        stored = self._data.pop(key)
        self._forget(key)
        return stored[0] if self._paired else stored

    def _policy_keys(self) -> list[Hashable]:
        return list(self._data)

    def _clear_policy(self) -> None:
        pass

    def _check_policy_invariants(self) -> None:
        if self._paired:
            for key, (_value, deadline) in self._data.items():
                expected = self._deadlines.get(key, math.inf)
                assert deadline == expected, f"deadline of {key!r} disagrees"


def _paired_deadline(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline


class TTLCache(LRUCache):
    """An LRUCache whose entries always expire: ``ttl`` is required.

    >>> now = [0.0]
    >>> cache = TTLCache(max_items=100, ttl=10, clock=lambda: now[0])
    >>> cache.put("k", "v")        # put at 0.0, so it expires at 10.0
    >>> now[0] = 5.0
    >>> cache.get("k")
    'v'
    >>> now[0] = 10.0
    >>> cache.get("k") is None
    True
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
        if ttl is None:
            raise TypeError(
                "TTLCache requires ttl, the default time to live in seconds"
            )
        super().__init__(
            max_items,
            max_bytes,
            ttl,
            size_of,
            clock,
            on_evict=on_evict,
            on_expire=on_expire,
        )
