"""MemoryStore, the in-memory reference store, and the memtable-backed base.

``MemtableStore`` holds everything a store built on one memtable needs:
sequence numbers, snapshots, consistent scans, locking and the closed
check. ``MemoryStore`` is that base with nothing durable underneath; the
durable store adds a WAL by overriding ``_log_write``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

from ._validate import check_key, check_value, resolve_bounds
from .batch import KIND_DELETE, KIND_PUT, WriteBatch
from .errors import ClosedError
from .memtable import Memtable
from .store import ScanItem, Snapshot, Store

__all__ = ["MemoryStore", "MemtableStore", "SequenceSnapshot"]


class MemtableStore(Store):
    """A Store over one memtable; subclasses make writes durable.

    Thread-safety: every method may be called from any thread. One lock
    serializes writes with reads of the memtable; scans read in chunks and
    release the lock between chunks.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memtable = Memtable(keep_tombstones=False)
        self._last_sequence = 0
        self._snapshots = SortedList()
        self._closed = False

    # -- hooks for durable subclasses -----------------------------------

    def _log_write(
        self, ops: list[tuple[int, bytes, bytes | None]], first_sequence: int
    ) -> None:
        """Make ``ops`` durable before they are applied; called under the lock."""

    def _after_write(self) -> None:
        """Run after a write was applied, outside the lock."""

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed")

    # -- writes -----------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        self._write_ops([(KIND_PUT, check_key(key), check_value(value))])

    def delete(self, key: bytes) -> None:
        self._write_ops([(KIND_DELETE, check_key(key), None)])

    def write(self, batch: WriteBatch) -> None:
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        ops = list(batch)
        if ops:
            self._write_ops(ops)
        else:
            # An empty batch writes nothing but still reports a closed or
            # read-only store, as a non-empty one would.
            with self._lock:
                self._check_writable()

    def _check_writable(self) -> None:
        self._check_open()

    def _write_ops(self, ops: list[tuple[int, bytes, bytes | None]]) -> None:
        with self._lock:
            self._check_open()
            first = self._last_sequence + 1
            self._log_write(ops, first)
            self._last_sequence = self._memtable.apply(
                ops, first, list(self._snapshots)
            )
        self._after_write()

    # -- reads --------------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        key = check_key(key)
        with self._lock:
            self._check_open()
            found = self._memtable.get(key)
        if found is None or found[1] is None:
            return default
        return found[1]

    def _get_at(self, key: bytes, sequence: int, default: bytes | None) -> bytes | None:
        key = check_key(key)
        with self._lock:
            self._check_open()
            found = self._memtable.get(key, sequence)
        if found is None or found[1] is None:
            return default
        return found[1]

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        low, high = resolve_bounds(start, end, prefix, reverse, keys_only)
        with self._lock:
            self._check_open()
            sequence = self._last_sequence
            self._snapshots.add(sequence)
        return _MemtableIterator(
            self, low, high, reverse, keys_only, sequence, owns=True
        )

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._check_open()
            sequence = self._last_sequence
            self._snapshots.add(sequence)
        return SequenceSnapshot(self, sequence)

    def _scan_at(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        keys_only: bool,
        sequence: int,
    ) -> Iterator[ScanItem]:
        """Iterate at ``sequence``; the caller keeps that snapshot registered."""
        return _MemtableIterator(
            self, low, high, reverse, keys_only, sequence, owns=False
        )

    def _release_snapshot(self, sequence: int) -> None:
        with self._lock:
            self._snapshots.discard(sequence)

    def _read_chunk(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        after: bytes | None,
        sequence: int,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """Return live items of the next chunk and the last key examined."""
        with self._lock:
            self._check_open()
            memtable = self._memtable
            keys = memtable.keys_from(low, high, reverse, after)
            items = []
            for key in keys:
                found = memtable.get(key, sequence)
                if found is not None and found[1] is not None:
                    items.append((key, found[1]))
        return items, (keys[-1] if keys else None)

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        """True once the store was closed."""
        return self._closed

    def flush(self) -> None:
        """Raise ClosedError on a closed store; a memtable alone has nothing to fsync."""
        with self._lock:
            self._check_open()

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Raise ClosedError on a closed store; one memtable needs no compaction."""
        with self._lock:
            self._check_open()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            return {
                "keys": len(self._memtable),
                "memtable_bytes": self._memtable.approximate_bytes,
                "last_sequence": self._last_sequence,
                "snapshots": len(self._snapshots),
            }


class _MemtableIterator:
    """A scan over a MemtableStore at one sequence number.

    The iterator keeps a snapshot registration until it is exhausted,
    closed or garbage collected, so the versions it reads stay in place.
    """

    def __init__(self, store, low, high, reverse, keys_only, sequence, owns):
        self._store = store
        self._low = low
        self._high = high
        self._reverse = reverse
        self._keys_only = keys_only
        self._sequence = sequence
        self._owns = owns
        self._after: bytes | None = None
        self._buffer: list[tuple[bytes, bytes]] = []
        self._position = 0
        self._done = False

    def __iter__(self) -> _MemtableIterator:
        return self

    def __next__(self) -> ScanItem:
        while self._position >= len(self._buffer):
            if self._done:
                raise StopIteration
            items, last = self._store._read_chunk(
                self._low, self._high, self._reverse, self._after, self._sequence
            )
            if last is None:
                self.close()
                raise StopIteration
            self._after = last
            self._buffer = items
            self._position = 0
        item = self._buffer[self._position]
        self._position += 1
        return item[0] if self._keys_only else item

    def close(self) -> None:
        """Stop the scan and release its view."""
        if not self._done:
            self._done = True
            self._buffer = []
            if self._owns:
                self._store._release_snapshot(self._sequence)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class SequenceSnapshot(Snapshot):
    """A read-only view of a store at one sequence number.

    The store provides ``_get_at(key, sequence, default)``,
    ``_scan_at(low, high, reverse, keys_only, sequence)`` and
    ``_release_snapshot(sequence)``; MemtableStore and LSMStore both do.
    """

    def __init__(self, store: Any, sequence: int) -> None:
        self._store = store
        self._sequence = sequence
        self._closed = False

    @property
    def sequence(self) -> int:
        """The sequence number this snapshot reads at."""
        return self._sequence

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("snapshot is closed")

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._check_open()
        return self._store._get_at(key, self._sequence, default)

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
        low, high = resolve_bounds(start, end, prefix, reverse, keys_only)
        return self._store._scan_at(low, high, reverse, keys_only, self._sequence)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store._release_snapshot(self._sequence)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class MemoryStore(MemtableStore):
    """The in-memory reference store: a sorted map with snapshots.

    Nothing is durable; ``flush`` does nothing. Property tests use it as
    the model that every other store is checked against.

    >>> db = MemoryStore()
    >>> db.put(b"k", b"v")
    >>> db.get(b"k")
    b'v'
    >>> list(db.scan())
    [(b'k', b'v')]
    """
