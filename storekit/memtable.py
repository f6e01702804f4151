"""Memtable: the sorted in-memory write buffer, with versions for snapshots.

Each key maps to a short list of ``(sequence, value)`` versions in
ascending sequence order; a value of None is a tombstone. A read at
sequence S returns the newest version with a sequence <= S. Old versions are
dropped when the key is next written, unless a live snapshot can still see
them, so a memtable without snapshots keeps exactly one version per key.

The memtable does no locking: its owner serializes writes and holds the
same lock around reads, so that a reader never sees a half-applied write.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from sortedcontainers import SortedDict

from .batch import KIND_PUT

# Per-entry bookkeeping (dict slot, list, tuple) counted on top of key and
# value lengths, so that memtable_bytes limits track real memory roughly.
ENTRY_OVERHEAD = 64

#: Keys read from the map per lock hold while iterating.
ITERATION_CHUNK = 256


class Memtable:
    """A sorted map from key to its versions."""

    def __init__(self, keep_tombstones: bool) -> None:
        # An LSM memtable keeps tombstones because older tables may still
        # hold the key; a store with nothing below it can drop them.
        self._keep_tombstones = keep_tombstones
        self._map: SortedDict = SortedDict()
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
        versions_of = self._map.get
        for kind, key, value in ops:
            sequence += 1
            if kind != KIND_PUT:
                value = None
            versions = versions_of(key)
            if versions is None:
                if value is None and not self._keep_tombstones:
                    continue
                self._map[key] = [(sequence, value)]
                self.approximate_bytes += (
                    len(key) + ENTRY_OVERHEAD + (len(value) if value is not None else 0)
                )
                continue
            if not snapshots:
                for _, old in versions:
                    self.approximate_bytes -= len(old) if old is not None else 0
                if value is None and not self._keep_tombstones:
                    del self._map[key]
                    self.approximate_bytes -= len(key) + ENTRY_OVERHEAD
                    continue
                versions[:] = [(sequence, value)]
            else:
                versions.append((sequence, value))
                self._prune(versions, snapshots)
            self.approximate_bytes += len(value) if value is not None else 0
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
        self, low: bytes | None, high: bytes | None, reverse: bool, after: bytes | None
    ) -> list[bytes]:
        """Return up to ITERATION_CHUNK keys in ``[low, high)`` past ``after``.

        ``after`` is the last key already returned (exclusive), so iteration
        can resume by key after the map changed between chunks.
        """
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
            if len(chunk) == ITERATION_CHUNK:
                break
        return chunk

    def items(self) -> Iterator[tuple[bytes, int, bytes | None]]:
        """Yield ``(key, sequence, value)`` of the newest version of every key.

        The caller must not write to the memtable while iterating; this is
        for frozen memtables that are being flushed.
        """
        for key, versions in self._map.items():
            sequence, value = versions[-1]
            yield key, sequence, value

    def versions(self) -> Iterator[tuple[bytes, list[tuple[int, bytes | None]]]]:
        """Yield ``(key, versions)`` for every key of a frozen memtable."""
        # zip and map run in C; the items view of a SortedDict is a Python
        # generator.
        mapping = self._map
        return zip(
            mapping.keys(), map(mapping.__getitem__, mapping.keys()), strict=True
        )
