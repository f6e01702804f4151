"""Aggregate snapshots: rebuild one stream's state without replaying all of it.

An aggregate is the state folded from the events of one stream.
``AggregateSnapshots`` keeps, in any Store, the state of each aggregate at
one stream version, and ``load_aggregate`` starts from that snapshot and
replays only the later events. A snapshot also keeps an aggregate
loadable after truncation removed its early events.

Snapshot value layout: format byte 1, version u64 big-endian, then the
state bytes as the caller encoded them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .._validate import check_key, check_value
from ..errors import CorruptionError
from ..store import Store
from .record import Event

if TYPE_CHECKING:  # pragma: no cover
    from .log import EventLog

__all__ = ["AggregateSnapshots", "AggregateState", "load_aggregate"]

logger = logging.getLogger("storekit.eventlog")

_FORMAT = 1
State = TypeVar("State")


class AggregateSnapshots:
    """Aggregate snapshots kept in ``store`` under ``prefix + stream`` (UTF-8)."""

    def __init__(self, store: Store, *, prefix: bytes = b"snapshot/") -> None:
        if not isinstance(store, Store):
            raise TypeError(
                f"store must be a storekit Store, not {type(store).__name__}"
            )
        self.store = store
        self.prefix = check_key(prefix)

    def _key(self, stream: str) -> bytes:
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty str, not {stream!r}")
        return check_key(self.prefix + stream.encode("utf-8"))

    def save(self, stream: str, version: int, state: bytes) -> None:
        """Store ``state`` as the aggregate of ``stream`` after event ``version``."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version must be an int, not {type(version).__name__}")
        if version < 1:
            raise ValueError(f"version must be >= 1, not {version}")
        state = check_value(state)
        self.store.put(
            self._key(stream), bytes([_FORMAT]) + version.to_bytes(8, "big") + state
        )

    def load(self, stream: str) -> tuple[int, bytes] | None:
        """Return ``(version, state)`` of the latest snapshot of ``stream``, or None."""
        key = self._key(stream)
        raw = self.store.get(key)
        if raw is None:
            return None
        if len(raw) < 9 or raw[0] != _FORMAT:
            raise CorruptionError(f"aggregate snapshot under {key!r} is malformed")
        return int.from_bytes(raw[1:9], "big"), raw[9:]

    def delete(self, stream: str) -> None:
        """Remove the snapshot of ``stream``."""
        self.store.delete(self._key(stream))


class AggregateState(NamedTuple):
    """An aggregate's state, the stream version it reflects and the events replayed."""

    state: Any
    version: int
    replayed: int


def load_aggregate(
    log: EventLog,
    stream: str,
    fold: Callable[[State, Event], State],
    initial: State,
    *,
    snapshots: AggregateSnapshots | None = None,
    decode: Callable[[bytes], State] | None = None,
) -> AggregateState:
    """Fold the events of ``stream`` into a state, starting from its snapshot.

    ``fold(state, event)`` returns the next state; ``initial`` is the state
    of an empty stream. With ``snapshots``, the latest snapshot is decoded
    with ``decode`` (default: the raw bytes) and only later events are
    replayed. A snapshot newer than the stream, which happens when the log
    lost events in a crash, is ignored with a warning.

    >>> import tempfile, storekit
    >>> from storekit.eventlog import AggregateSnapshots, load_aggregate
    >>> log = storekit.EventLog(tempfile.mkdtemp())
    >>> _ = log.append("account-1", [b"10", b"5", b"-3"])
    >>> total = lambda state, event: state + int(event.data)
    >>> snapshots = AggregateSnapshots(storekit.MemoryStore())
    >>> snapshots.save("account-1", 2, b"15")
    >>> load_aggregate(log, "account-1", total, 0, snapshots=snapshots, decode=int)
    AggregateState(state=12, version=3, replayed=1)
    >>> log.close()
    """
    state = initial
    version = 0
    if snapshots is not None:
        found = snapshots.load(stream)
        if found is not None:
            snapshot_version, raw = found
            current = log.stream_version(stream)
            if snapshot_version > current:
                logger.warning(
                    "aggregate snapshot of stream %r is at version %d but the log has "
                    "only %d events; replaying from the start",
                    stream,
                    snapshot_version,
                    current,
                )
            else:
                state = decode(raw) if decode is not None else raw  # type: ignore[assignment]
                version = snapshot_version
    replayed = 0
    for event in log.read_stream(stream, version + 1):
        state = fold(state, event)
        version = event.version
        replayed += 1
    return AggregateState(state, version, replayed)
