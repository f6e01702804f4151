"""BlockCache: an LRU cache of decoded data blocks shared by the tables of a store."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["BlockCache"]


class BlockCache:
    """A thread-safe LRU cache of decoded blocks keyed by ``(file_number, block_offset)``.

    ``capacity_bytes`` limits the sum of the charges of the cached blocks.
    A charge is the caller's estimate of a block's memory. A block whose
    charge exceeds the capacity is not cached, and a capacity of 0 disables
    caching: every lookup is a miss.

    Thread-safety: every method but ``lookup`` takes one internal lock, so
    the contents and the usage stay consistent under concurrent use.
    ``lookup`` runs without it (see there), so under concurrent lookups the
    ``hits`` and ``misses`` counters may miss increments.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int):
            raise TypeError(
                f"capacity_bytes must be an int, not {type(capacity_bytes).__name__}"
            )
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, not {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        # (file_number, offset) -> (block, charge), least recently used first.
        self._entries: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()
        self._offsets_by_file: dict[int, set[int]] = {}
        self._usage = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        """Number of cached blocks."""
        return len(self._entries)

    @property
    def usage(self) -> int:
        """Sum of the charges of the cached blocks, in bytes."""
        return self._usage

    def lookup(self, file_number: int, offset: int) -> Any | None:
        """Return the cached block and mark it most recently used, or None on a miss."""
        return self.lookup_key((file_number, offset))

    def lookup_key(self, key: tuple[int, int]) -> Any | None:
        """Return ``lookup(*key)``, for callers that keep the key tuples."""
        # No lock, because this runs on every point lookup. The get and the
        # move_to_end are each one C-level step under the GIL. A block that
        # another thread evicts in between makes move_to_end raise KeyError,
        # and the LRU order stays as it is.
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        try:
            entries.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return entry[0]

    def insert(self, file_number: int, offset: int, block: Any, charge: int) -> None:
        """Cache ``block`` with ``charge`` bytes, evicting least recently used blocks."""
        if charge > self.capacity_bytes or self.capacity_bytes == 0:
            return
        key = (file_number, offset)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._usage -= old[1]
            self._entries[key] = (block, charge)
            self._offsets_by_file.setdefault(file_number, set()).add(offset)
            self._usage += charge
            while self._usage > self.capacity_bytes:
                (evicted_file, evicted_offset), (_, evicted_charge) = (
                    self._entries.popitem(last=False)
                )
                self._forget_offset(evicted_file, evicted_offset)
                self._usage -= evicted_charge
                self.evictions += 1

    def _forget_offset(self, file_number: int, offset: int) -> None:
        offsets = self._offsets_by_file[file_number]
        offsets.discard(offset)
        if not offsets:
            del self._offsets_by_file[file_number]

    def evict_file(self, file_number: int) -> int:
        """Drop every block of one table, as when the table file is deleted.

        Returns the number of blocks dropped. These drops do not count as
        evictions in ``stats``.
        """
        with self._lock:
            offsets = self._offsets_by_file.pop(file_number, set())
            for offset in offsets:
                _, charge = self._entries.pop((file_number, offset))
                self._usage -= charge
            return len(offsets)

    def clear(self) -> None:
        """Drop every block; the hit and miss counters keep their values."""
        with self._lock:
            self._entries.clear()
            self._offsets_by_file.clear()
            self._usage = 0

    def stats(self) -> dict[str, int]:
        """Return the counters: hits, misses, evictions, blocks, usage and capacity bytes."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "blocks": len(self._entries),
                "usage_bytes": self._usage,
                "capacity_bytes": self.capacity_bytes,
            }

    def _check_invariants(self) -> None:
        """Raise AssertionError if the LRU order, the per-file index and usage disagree."""
        with self._lock:
            keys = set(self._entries)
            indexed = {
                (file_number, offset)
                for file_number, offsets in self._offsets_by_file.items()
                for offset in offsets
            }
            assert keys == indexed, f"cache keys {keys} != per-file index {indexed}"
            assert all(self._offsets_by_file.values()), "empty per-file offset set"
            total = sum(charge for _, charge in self._entries.values())
            assert total == self._usage, (
                f"usage {self._usage} != sum of charges {total}"
            )
            assert self._usage <= self.capacity_bytes, (
                f"usage {self._usage} exceeds capacity {self.capacity_bytes}"
            )
