"""Memtable: the sorted in-memory write buffer, with versions for snapshots.

Each key maps to a short list of ``(sequence, value)`` versions in
ascending sequence order; a value of None is a tombstone. A read at
sequence S returns the newest version with a sequence <= S. Old versions are
dropped when the key is next written, unless a live snapshot can still see
them, so a memtable without snapshots keeps exactly one version per key.

The memtable does no locking: its owner serializes writes and holds the
same lock around reads, so that a reader never sees a half-applied write.
The one exception is the key order of a memtable that keeps tombstones
(see ``_InsertOnlyMap``), which has its own lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator

from sortedcontainers import SortedDict

from .batch import KIND_PUT

# Per-entry bookkeeping (dict slot, list, tuple) counted on top of key and
# value lengths, so that memtable_bytes limits track real memory roughly.
ENTRY_OVERHEAD = 64

#: Keys read from the map per lock hold while iterating.
ITERATION_CHUNK = 256


#: Up to this many new keys are inserted one by one into the sorted keys.
#: More are merged in with one sort of the whole list.
_INSORT_LIMIT = 64


class _InsertOnlyMap(dict):
    """A dict whose keys are never removed, with the keys in sorted order on demand.

    The owner appends every new key to ``new_keys``. ``sorted_keys`` sorts
    them into the sorted list when a reader needs the order, so a write
    costs a dict insert and a list append instead of a sorted insert.
    Sorting a sorted list with a short unsorted tail is a merge (Timsort),
    which costs a copy of the list plus O(k log n) comparisons for k new
    keys. The sort runs under ``_lock`` because frozen memtables are read
    by several threads without the owner's lock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.new_keys: list[bytes] = []
        self._sorted: list[bytes] = []
        self._lock = threading.Lock()

    def sorted_keys(self) -> list[bytes]:
        """Return every key in ascending order; the caller must not change the list."""
        if self.new_keys:
            with self._lock:
                new_keys = self.new_keys
                if len(new_keys) <= _INSORT_LIMIT:
                    # A few keys, as when writes and scans alternate: one
                    # binary search and one move each, where the sort below
                    # would compare every key. Changing the list in place is
                    # safe because a reader that holds it sliced it under the
                    # owner's lock, which writers also hold, and a frozen
                    # memtable gets no new keys after its first sort.
                    sorted_keys = self._sorted
                    for key in new_keys:
                        insort(sorted_keys, key)
                else:
                    keys = self._sorted + new_keys
                    keys.sort()
                    self._sorted = keys
                # Cleared in place: the owner keeps its bound append.
                new_keys.clear()
        return self._sorted

    def keys_from(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        after: bytes | None,
        limit: int,
    ) -> list[bytes]:
        """Return what ``Memtable.keys_from`` returns, as slices of the sorted keys."""
        keys = self.sorted_keys()
        if not reverse:
            if after is not None:
                start = bisect_right(keys, after)
            else:
                start = 0 if low is None else bisect_left(keys, low)
            stop = len(keys) if high is None else bisect_left(keys, high)
            return keys[start : min(stop, start + limit)]
        start = 0 if low is None else bisect_left(keys, low)
        if after is not None:
            stop = bisect_left(keys, after)
        else:
            stop = len(keys) if high is None else bisect_left(keys, high)
        return keys[max(start, stop - limit) : stop][::-1]


class Memtable:
    """A sorted map from key to its versions."""

    def __init__(self, keep_tombstones: bool) -> None:
        # An LSM memtable keeps tombstones because older tables may still
        # hold the key; a store with nothing below it can drop them.
        self._keep_tombstones = keep_tombstones
        # A memtable that keeps tombstones never removes a key, so its key
        # order can be built lazily. The other kind deletes keys and keeps
        # them sorted on every write.
        self._map: SortedDict | _InsertOnlyMap = (
            _InsertOnlyMap() if keep_tombstones else SortedDict()
        )
        self._note_new_key = (
            self._map.new_keys.append if keep_tombstones else None  # type: ignore[union-attr]
        )
        #: The version list of a key, or None: the map's own C-level get,
        #: for the engine's point lookups without a snapshot.
        self.versions_of = self._map.get
        self.approximate_bytes = 0
        self.first_sequence = 0
        self.last_sequence = 0

    def __len__(self) -> int:
        """Number of keys, tombstones included."""
        return len(self._map)

    def apply(
        self,
        ops: Iterable[tuple[int, bytes, bytes | None]],
        first_sequence: int,
        snapshots: list[int],
    ) -> int:
        """Apply operations numbered from ``first_sequence``; return the last number.

        ``snapshots`` is the sorted list of live snapshot sequences, which
        decides which old versions must be kept.
        """
        sequence = first_sequence - 1
        # Locals, written back at the end: this loop runs once per operation.
        mapping = self._map
        versions_of = mapping.get
        note_new_key = self._note_new_key
        keep_tombstones = self._keep_tombstones
        size = self.approximate_bytes
        try:
            for kind, key, value in ops:
                sequence += 1
                if kind != KIND_PUT:
                    value = None
                versions = versions_of(key)
                if versions is None:
                    if value is None and not keep_tombstones:
                        continue
                    mapping[key] = [(sequence, value)]
                    if note_new_key is not None:
                        note_new_key(key)
                    size += len(key) + ENTRY_OVERHEAD
                    if value is not None:
                        size += len(value)
                    continue
                if not snapshots:
                    for _, old in versions:
                        if old is not None:
                            size -= len(old)
                    if value is None and not keep_tombstones:
                        del mapping[key]
                        size -= len(key) + ENTRY_OVERHEAD
                        continue
                    versions[:] = [(sequence, value)]
                else:
                    versions.append((sequence, value))
                    self.approximate_bytes = size
                    self._prune(versions, snapshots)
                    size = self.approximate_bytes
                if value is not None:
                    size += len(value)
        finally:
            self.approximate_bytes = size
        if self.first_sequence == 0:
            self.first_sequence = first_sequence
        if sequence >= first_sequence:
            self.last_sequence = sequence
        return sequence

    def add(
        self,
        key: bytes,
        sequence: int,
        value: bytes | None,
        snapshots: list[int],
    ) -> None:
        """Apply one put, or a delete when ``value`` is None, numbered ``sequence``.

        The same as ``apply`` with a single operation, without building one.
        """
        versions = self._map.get(key)
        if versions is None:
            if value is not None or self._keep_tombstones:
                self._map[key] = [(sequence, value)]
                if self._note_new_key is not None:
                    self._note_new_key(key)
                self.approximate_bytes += (
                    len(key) + ENTRY_OVERHEAD + (len(value) if value is not None else 0)
                )
        elif not snapshots:
            for _, old in versions:
                if old is not None:
                    self.approximate_bytes -= len(old)
            if value is None and not self._keep_tombstones:
                del self._map[key]
                self.approximate_bytes -= len(key) + ENTRY_OVERHEAD
            else:
                versions[:] = [(sequence, value)]
                if value is not None:
                    self.approximate_bytes += len(value)
        else:
            versions.append((sequence, value))
            self._prune(versions, snapshots)
            if value is not None:
                self.approximate_bytes += len(value)
        if self.first_sequence == 0:
            self.first_sequence = sequence
        self.last_sequence = sequence

    def _prune(
        self, versions: list[tuple[int, bytes | None]], snapshots: list[int]
    ) -> None:
        """Drop versions that neither the newest read nor any snapshot can see."""
        keep = {len(versions) - 1}
        sequences = [version[0] for version in versions]
        for snapshot in snapshots:
            index = bisect_right(sequences, snapshot)
            if index:
                keep.add(index - 1)
        if len(keep) == len(versions):
            return
        for index in range(len(versions)):
            if index not in keep:
                value = versions[index][1]
                self.approximate_bytes -= len(value) if value is not None else 0
        versions[:] = [versions[i] for i in sorted(keep)]

    def get(self, key: bytes, sequence: int | None = None):
        """Return ``(sequence, value)`` of the visible version, or None.

        A returned value of None is a tombstone: the key was deleted.
        """
        versions = self._map.get(key)
        if versions is None:
            return None
        if sequence is None:
            return versions[-1]
        sequences = [version[0] for version in versions]
        index = bisect_right(sequences, sequence)
        if index == 0:
            return None
        return versions[index - 1]

    def keys_from(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        after: bytes | None,
        limit: int = ITERATION_CHUNK,
    ) -> list[bytes]:
        """Return up to ``limit`` keys in ``[low, high)`` past ``after``.

        ``after`` is the last key already returned (exclusive), so iteration
        can resume by key after the map changed between chunks.
        """
        if isinstance(self._map, _InsertOnlyMap):
            return self._map.keys_from(low, high, reverse, after, limit)
        if not reverse:
            if after is not None:
                iterator = self._map.irange(after, high, inclusive=(False, False))
            else:
                iterator = self._map.irange(low, high, inclusive=(True, False))
        else:
            if after is not None:
                iterator = self._map.irange(
                    low, after, inclusive=(True, False), reverse=True
                )
            else:
                iterator = self._map.irange(
                    low, high, inclusive=(True, False), reverse=True
                )
        chunk = []
        for key in iterator:
            chunk.append(key)
            if len(chunk) == limit:
                break
        return chunk

    def items(self) -> Iterator[tuple[bytes, int, bytes | None]]:
        """Yield ``(key, sequence, value)`` of the newest version of every key.

        The caller must not write to the memtable while iterating; this is
        for frozen memtables that are being flushed.
        """
        mapping = self._map
        for key in self._ordered_keys():
            sequence, value = mapping[key][-1]
            yield key, sequence, value

    def versions(self) -> Iterator[tuple[bytes, list[tuple[int, bytes | None]]]]:
        """Yield ``(key, versions)`` for every key of a frozen memtable."""
        # zip and map run in C; the items view of a SortedDict is a Python
        # generator.
        keys = self._ordered_keys()
        return zip(keys, map(self._map.__getitem__, keys), strict=True)

    def _ordered_keys(self) -> Iterable[bytes]:
        """Return the keys in ascending order."""
        mapping = self._map
        if isinstance(mapping, _InsertOnlyMap):
            return mapping.sorted_keys()
        return mapping.keys()
