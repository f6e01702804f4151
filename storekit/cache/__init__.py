"""In-memory caches, a memoizing decorator and a read-through cache for stores.

- :class:`LRUCache` evicts the least recently used entry; :class:`TTLCache`
  is an LRUCache whose entries always expire.
- :class:`S3FIFOCache` evicts by S3-FIFO, which keeps hot entries through
  scans and loops that flush an LRU cache.
- :func:`make_cache` builds any of them from a policy name (see
  :data:`POLICIES`), for configuration files and the ``cache-sim`` command.
- :func:`memoize` caches a function's results with one call per key at a time.
- :class:`CachedStore` puts a cache in front of any storekit ``Store``.

Every cache is thread-safe, takes any hashable key and any value, and is
bounded by entry count and/or by bytes. ``docs/cache.md`` states the
semantics and the measured hit ratios.
"""

from __future__ import annotations

from typing import Any

from ._base import CacheBase
from .cached_store import CachedStore
from .lru import LRUCache, TTLCache
from .memoize import memoize
from .s3fifo import S3FIFOCache

__all__ = [
    "POLICIES",
    "CacheBase",
    "CachedStore",
    "LRUCache",
    "S3FIFOCache",
    "TTLCache",
    "make_cache",
    "memoize",
]

#: Cache classes by policy name, as ``make_cache`` and ``cache-sim`` accept them.
POLICIES: dict[str, type[CacheBase]] = {
    "lru": LRUCache,
    "ttl": TTLCache,
    "s3fifo": S3FIFOCache,
}


def make_cache(policy: str, /, **options: Any) -> CacheBase:
    """Build the cache of the named ``policy`` with the constructor ``options``.

    >>> make_cache("s3fifo", max_items=1000)
    S3FIFOCache(max_items=1000, max_bytes=None, ttl=None, items=0)
    """
    try:
        cls = POLICIES[policy.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown cache policy {policy!r}; expected one of {', '.join(POLICIES)}"
        ) from None
    return cls(**options)
