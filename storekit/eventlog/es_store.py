"""EventSourcedStore: a Store whose writes are events and whose reads are a projection.

Each ``put``, ``delete`` or ``write`` appends one event to a stream of the
log; its data is the encoded WriteBatch (``storekit.batch.encode_batch``).
A Projection applies those events to the inner store, which serves every
read. The log is the source of truth: the inner store can be any Store
(memory, durable, cached, sharded) and can be rebuilt from the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._validate import check_key, check_value
from ..batch import KIND_DELETE, KIND_PUT, WriteBatch, decode_batch, encode_batch
from ..errors import ClosedError
from ..store import ScanItem, Snapshot, Store
from .projection import OFFSET_KEY_PREFIX, Projection, ProjectionBatch
from .record import Event

if TYPE_CHECKING:  # pragma: no cover
    from .log import EventLog

__all__ = ["EventSourcedStore"]


def _apply_write(event: Event, batch: ProjectionBatch) -> None:
    _, ops = decode_batch(event.data)
    for kind, key, value in ops:
        if kind == KIND_PUT:
            batch.put(key, value)  # type: ignore[arg-type]
        else:
            batch.delete(key)


def _user_key(key: object) -> bytes:
    key = check_key(key)
    if key.startswith(OFFSET_KEY_PREFIX):
        raise ValueError(
            f"key {key!r} starts with {OFFSET_KEY_PREFIX!r}, which is reserved for "
            "projection offsets"
        )
    return key


def _hide_offsets(items: Iterator[ScanItem], keys_only: bool) -> Iterator[ScanItem]:
    for item in items:
        key = item if keys_only else item[0]
        if not key.startswith(OFFSET_KEY_PREFIX):
            yield item


class _FilteredSnapshot(Snapshot):
    """A snapshot of the inner store without the projection's offset key."""

    def __init__(self, inner: Snapshot) -> None:
        self._inner = inner

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        key = check_key(key)
        if key.startswith(OFFSET_KEY_PREFIX):
            return default
        return self._inner.get(key, default)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        items = self._inner.scan(
            start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
        )
        return _hide_offsets(items, keys_only)

    def close(self) -> None:
        self._inner.close()


class EventSourcedStore(Store):
    """A Store backed by an event log (writes) and an inner store (reads).

    ``stream`` is the log stream that receives the writes and ``name`` the
    projection's name in the inner store. With ``follow=False`` (default)
    each write catches the projection up before returning, so a thread
    reads its own writes. With ``follow=True`` a background thread applies
    events and reads are eventually consistent: ``projection.wait()``
    waits for them. Opening catches up with events that a crash left
    unapplied. ``close`` also closes the log and the inner store when
    ``owns`` is true.

    Keys starting with ``OFFSET_KEY_PREFIX`` are reserved: writing one
    raises ValueError, and reads and scans never return one.

    >>> import tempfile, storekit
    >>> log = storekit.EventLog(tempfile.mkdtemp())
    >>> db = storekit.EventSourcedStore(log, storekit.MemoryStore())
    >>> db.put(b"apple", b"red")
    >>> db.get(b"apple")
    b'red'
    >>> [event.stream for event in log.read()]
    ['store']
    >>> db.close()
    """

    def __init__(
        self,
        log: EventLog,
        inner: Store,
        *,
        stream: str = "store",
        name: str = "store",
        follow: bool = False,
        owns: bool = True,
    ) -> None:
        self._log = log
        self._inner = inner
        self._stream = stream
        self._follow = follow
        self._owns = owns
        self._closed = False
        self._projection = Projection(log, inner, _apply_write, name, stream=stream)
        self._projection.catch_up()
        if follow:
            self._projection.start()

    @property
    def log(self) -> EventLog:
        """The event log that receives every write."""
        return self._log

    @property
    def inner(self) -> Store:
        """The store that the projection writes and reads come from."""
        return self._inner

    @property
    def projection(self) -> Projection:
        """The projection from the log into the inner store."""
        return self._projection

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("EventSourcedStore is closed")

    # -- writes ----------------------------------------------------------------

    def _append(self, ops: list[tuple[int, bytes, bytes | None]]) -> None:
        self._check_open()
        self._log.append(self._stream, [encode_batch(ops, 0)])
        if not self._follow:
            self._projection.catch_up()

    def put(self, key: bytes, value: bytes) -> None:
        self._append([(KIND_PUT, _user_key(key), check_value(value))])

    def delete(self, key: bytes) -> None:
        self._append([(KIND_DELETE, _user_key(key), None)])

    def write(self, batch: WriteBatch) -> None:
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        ops = list(batch)
        for _, key, _ in ops:
            _user_key(key)
        if ops:
            self._append(ops)

    # -- reads -----------------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._check_open()
        key = check_key(key)
        if key.startswith(OFFSET_KEY_PREFIX):
            return default
        return self._inner.get(key, default)

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
        items = self._inner.scan(
            start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
        )
        return _hide_offsets(items, keys_only)

    def snapshot(self) -> Snapshot:
        self._check_open()
        return _FilteredSnapshot(self._inner.snapshot())

    # -- lifecycle -------------------------------------------------------------

    def flush(self) -> None:
        """Fsync the log and flush the inner store."""
        self._check_open()
        if not self._log.read_only:
            self._log.sync()
        self._inner.flush()

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Compact the key range in the inner store."""
        self._check_open()
        self._inner.compact(start, end)

    def stats(self) -> dict[str, Any]:
        self._check_open()
        return {
            "log": self._log.stats(),
            "projection_offset": self._projection.offset,
            "lag": self._projection.lag,
            "inner": self._inner.stats(),
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._projection.stop()
        if self._owns:
            try:
                self._log.close()
            finally:
                self._inner.close()

    def __repr__(self) -> str:
        return f"<EventSourcedStore log={self._log.path!r} inner={self._inner!r}>"
