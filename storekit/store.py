"""The Store interface that every engine and wrapper implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, MutableMapping
from typing import Any

from .batch import WriteBatch

__all__ = ["Store", "Snapshot", "ScanItem"]

#: The item type ``scan`` yields: a ``(key, value)`` pair, or a key with ``keys_only``.
ScanItem = Any

_MISSING: Any = object()


class Snapshot(ABC):
    """A read-only view of a store at one moment.

    Later writes, flushes and compactions do not change what a snapshot
    returns. Close it (or use it as a context manager) so the store can
    release the old versions it keeps for it.
    """

    @abstractmethod
    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """Return the value of ``key`` in this view, or ``default``."""

    @abstractmethod
    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        """Iterate this view with the bounds of ``Store.scan``."""

    @abstractmethod
    def close(self) -> None:
        """Release the snapshot; closing twice is allowed."""

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Store(MutableMapping, ABC):  # type: ignore[type-arg]
    """A sorted key-value store of bytes keys and bytes values.

    Every storekit engine and wrapper implements this interface, so they
    compose: a cache can sit in front of a sharded store of LSM stores.
    Keys and values are ``bytes``; ``bytearray`` and ``memoryview`` are
    accepted and copied. Keys sort by their bytes, as ``bytes`` compare.

    The MutableMapping methods (``db[key]``, ``key in db``, ``del db[key]``,
    ``len(db)``, iteration) are built on ``get``, ``put``, ``delete`` and
    ``scan``. ``len(db)`` and iteration walk every key, so they are O(n).
    """

    # -- the methods an engine implements ---------------------------------

    @abstractmethod
    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """Return the value stored under ``key``, or ``default`` if absent."""

    @abstractmethod
    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any earlier value."""

    @abstractmethod
    def delete(self, key: bytes) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Apply every operation of ``batch`` atomically, also across a crash."""

    @abstractmethod
    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        """Iterate keys in ``[start, end)`` that also start with ``prefix``.

        Yields ``(key, value)`` pairs in ascending key order, or descending
        with ``reverse=True`` over the same range; with ``keys_only=True``
        it yields keys alone. The iterator reads one consistent view taken
        when ``scan`` was called, so later writes do not show in it.
        """

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Return a consistent read-only view of the store as it is now."""

    @abstractmethod
    def close(self) -> None:
        """Release files, locks and threads; later calls raise ClosedError."""

    # -- methods with defaults ---------------------------------------------

    def flush(self) -> None:
        """Make every write so far durable. In-memory stores do nothing."""

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Compact the key range now. Stores without compaction do nothing."""

    def stats(self) -> dict[str, Any]:
        """Return counters and sizes that describe the store."""
        return {}

    def batch(self) -> _BatchContext:
        """Return a WriteBatch that is written when its ``with`` block exits.

        Nothing is written if the block raises.

        >>> from storekit import MemoryStore
        >>> db = MemoryStore()
        >>> with db.batch() as b:
        ...     b.put(b"a", b"1")
        ...     b.put(b"b", b"2")
        >>> db.get(b"b")
        b'2'
        """
        return _BatchContext(self)

    # -- MutableMapping ----------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        # MutableMapping requires KeyError for a missing key, unlike delete().
        if self.get(key, _MISSING) is _MISSING:
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[bytes]:
        """Iterate every key in order; O(n)."""
        return self.scan(keys_only=True)

    def __len__(self) -> int:
        """Count every key by scanning; O(n)."""
        count = 0
        for _ in self.scan(keys_only=True):
            count += 1
        return count

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Two stores are equal only when they are the same object: comparing
    # contents would scan both stores, which MutableMapping would do silently.
    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


class _BatchContext(WriteBatch):
    """The WriteBatch returned by ``Store.batch()``."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store

    def __enter__(self) -> _BatchContext:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and len(self):
            self._store.write(self)
