"""CachedStore: a read-through cache in front of any storekit Store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .._validate import check_key, check_value
from ..batch import WriteBatch
from ..errors import ClosedError
from ..store import ScanItem, Snapshot, Store
from ._base import MISSING, check_ttl

__all__ = ["CachedStore"]


class _Absent(bytes):
    """The type of the negative-entry marker: an empty bytes object, so ``len`` is 0."""

    __slots__ = ()


# Stored in the cache for a key the inner store does not have, when negative
# caching is on. It is compared by identity, never by value.
_ABSENT = _Absent()


class CachedStore(Store):
    """A Store that serves ``get`` from ``cache`` and reads through to ``inner`` on a miss.

    Writes go to ``inner`` first and then invalidate the cached entries of
    the keys they touch: the key of ``put`` and ``delete``, and every key of
    a ``write`` batch. So a read through this object never returns a value
    older than the last write through it. A miss fills the cache only if no write
    through this object started since the miss began, so a slow read can
    not store a value that a concurrent write replaced.

    With ``cache_misses=True`` a key that ``inner`` does not have is cached
    as a negative entry (for ``negative_ttl`` seconds if given, else for the
    cache's default ``ttl``), so repeated reads of missing keys skip
    ``inner`` too. Negative entries have size 0.

    Scans, snapshots, ``flush`` and ``compact`` go to ``inner`` unchanged.
    ``close`` closes ``inner`` and clears the cache. Writes made to
    ``inner`` without going through this object are not seen until the
    cached entry is evicted, expires or is invalidated.

    Thread-safety: as thread-safe as ``inner``; the cache is thread-safe.

    >>> from storekit import LRUCache, MemoryStore
    >>> db = CachedStore(MemoryStore(), LRUCache(max_items=1000))
    >>> db.put(b"k", b"v")
    >>> db.get(b"k")
    b'v'
    >>> db.cache.stats()["misses"], db.get(b"k"), db.cache.stats()["hits"]
    (1, b'v', 1)
    """

    def __init__(
        self,
        inner: Store,
        cache: Any,
        *,
        cache_misses: bool = False,
        negative_ttl: float | None = None,
    ) -> None:
        if not isinstance(inner, Store):
            raise TypeError(
                f"inner must be a storekit Store, not {type(inner).__name__}"
            )
        if not all(
            callable(getattr(cache, name, None)) for name in ("get", "put", "delete")
        ):
            raise TypeError(
                f"cache must have get, put and delete methods, not {type(cache).__name__}"
            )
        self._inner = inner
        self._cache = cache
        if not isinstance(cache_misses, bool):
            raise TypeError(f"cache_misses must be True or False, not {cache_misses!r}")
        self._cache_misses = cache_misses
        self._negative_ttl = check_ttl(negative_ttl, "negative_ttl")
        # Incremented by every write. A miss fills the cache only if it saw
        # no increment between its start and the fill. Both happen under
        # _fill_lock, so a fill can not slip in after a write's invalidation.
        self._write_generation = 0
        self._fill_lock = threading.Lock()
        self._closed = False

    @property
    def inner(self) -> Store:
        """The store that contains the data."""
        return self._inner

    @property
    def cache(self) -> Any:
        """The cache of recently read values."""
        return self._cache

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("CachedStore is closed")

    # -- reads ------------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        key = check_key(key)
        self._check_open()
        cached = self._cache.get(key, MISSING)
        if cached is _ABSENT:
            return default
        if cached is not MISSING:
            return cached

        generation = self._write_generation
        value = self._inner.get(key, MISSING)
        with self._fill_lock:
            if generation == self._write_generation:
                if value is not MISSING:
                    self._cache.put(key, value)
                elif self._cache_misses:
                    self._cache.put(key, _ABSENT, self._negative_ttl)
        return default if value is MISSING else value

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        self._check_open()
        return self._inner.scan(
            start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
        )

    def snapshot(self) -> Snapshot:
        self._check_open()
        return self._inner.snapshot()

    # -- writes -----------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        key = check_key(key)
        value = check_value(value)
        self._check_open()
        try:
            self._inner.put(key, value)
        finally:
            # Invalidate even when the write failed: inner may have applied it.
            self._invalidate((key,))

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        self._check_open()
        try:
            self._inner.delete(key)
        finally:
            self._invalidate((key,))

    def write(self, batch: WriteBatch) -> None:
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        self._check_open()
        keys = [key for _kind, key, _value in batch]
        try:
            self._inner.write(batch)
        finally:
            self._invalidate(keys)

    def _invalidate(self, keys: Any) -> None:
        delete = self._cache.delete
        with self._fill_lock:
            self._write_generation += 1
            for key in keys:
                delete(key)

    # -- lifecycle and maintenance ----------------------------------------

    def flush(self) -> None:
        self._check_open()
        self._inner.flush()

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        self._check_open()
        self._inner.compact(start, end)

    def close(self) -> None:
        """Close ``inner`` and drop every cached entry; closing twice is allowed."""
        if self._closed:
            return
        self._closed = True
        clear = getattr(self._cache, "clear", None)
        if callable(clear):
            clear()
        self._inner.close()

    @property
    def closed(self) -> bool:
        """True once the store was closed."""
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Return ``inner``'s stats with the cache's under the ``"cache"`` key."""
        result = dict(self._inner.stats())
        cache_stats = getattr(self._cache, "stats", None)
        if callable(cache_stats):
            result["cache"] = cache_stats()
        return result
