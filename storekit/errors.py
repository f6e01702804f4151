"""Exception hierarchy shared by every storekit component."""

from __future__ import annotations

__all__ = [
    "StorekitError",
    "CorruptionError",
    "LockedError",
    "ClosedError",
    "ReadOnlyError",
    "DurabilityError",
    "ConcurrencyError",
    "OffsetError",
]


class StorekitError(Exception):
    """Base class of every error that storekit raises on its own behalf."""


class CorruptionError(StorekitError):
    """A file failed a checksum or format check.

    ``path`` and ``offset`` name where the damage was found, when known.
    """

    def __init__(
        self, message: str, path: str | None = None, offset: int | None = None
    ):
        super().__init__(message)
        self.path = path
        self.offset = offset


class LockedError(StorekitError):
    """Another store object, in this process or another, has the directory locked."""


class ClosedError(StorekitError):
    """The object was closed, or its file system crashed under it."""


class ReadOnlyError(StorekitError):
    """A write was attempted on a store opened with ``read_only=True``."""


class DurabilityError(StorekitError):
    """A write or fsync failed, so this write may not be durable.

    After a failed WAL write or fsync the store accepts no more writes
    until it is reopened. A failed table flush of an LSM store is different:
    the flushed writes stay in the WAL and the flush is retried, so writes
    go on. Writes acknowledged before any failure are unaffected.
    """


class ConcurrencyError(StorekitError):
    """An append's ``expected_version`` did not match the stream's version."""


class OffsetError(StorekitError):
    """A read asked for an offset below the first retained offset.

    ``first_offset`` is the lowest offset that can still be read.
    """

    def __init__(self, message: str, first_offset: int):
        super().__init__(message)
        self.first_offset = first_offset
