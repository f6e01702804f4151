"""Projection: apply the events of a log, in order, as writes to any Store.

For each event the user's ``apply(event, batch)`` adds puts and deletes to
``batch``. The projection adds its own offset (the next offset to apply)
to the same batch and writes it with ``target.write``. When the target's
``write`` is atomic, as every storekit store's is, an event's effect and
the offset that records it are stored together or not at all, so after a
crash each event is applied exactly once.

Where the offset is kept: under the key ``OFFSET_KEY_PREFIX + name``
(UTF-8) in the target store, as 8 bytes big-endian. ``OFFSET_KEY_PREFIX``
starts with ``b"\\xff\\xff"``, so every key below it sorts first: a scan of
the projected data that must not see offsets uses ``end=OFFSET_KEY_PREFIX``
or a ``prefix`` of its own (see ``Projection.key_prefix``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._validate import check_key
from ..batch import KIND_PUT, WriteBatch
from ..errors import ClosedError, CorruptionError, OffsetError
from ..store import Store
from .record import Event

if TYPE_CHECKING:  # pragma: no cover
    from .log import EventLog

__all__ = ["OFFSET_KEY_PREFIX", "Projection", "ProjectionBatch"]

logger = logging.getLogger("storekit.eventlog")

#: Prefix of the keys under which projections store their offsets.
OFFSET_KEY_PREFIX = b"\xff\xffstorekit.projection\x00"

_OFFSET_SIZE = 8


class ProjectionBatch(WriteBatch):
    """The WriteBatch handed to ``apply``, whose ``get`` reads the batch's own writes.

    Several events go into one batch, so an ``apply`` that reads a value
    to update it (a counter, say) must read through the batch. ``get``
    returns the latest put or delete in the batch for a key, and the
    target store's value otherwise.
    """

    __slots__ = ("_target", "_pending")

    def __init__(self, target: Store) -> None:
        super().__init__()
        self._target = target
        self._pending: dict[bytes, bytes | None] = {}

    def put(self, key: bytes, value: bytes) -> None:
        super().put(key, value)
        _, stored_key, stored_value = self._ops[-1]
        self._pending[stored_key] = stored_value

    def delete(self, key: bytes) -> None:
        super().delete(key)
        self._pending[self._ops[-1][1]] = None

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """Return the value of ``key`` with this batch's writes applied."""
        key = check_key(key)
        if key in self._pending:
            value = self._pending[key]
            return default if value is None else value
        return self._target.get(key, default)

    def clear(self) -> None:
        super().clear()
        self._pending.clear()


class Projection:
    """Apply a log's events to ``target`` with ``apply(event, batch)``; see the module docstring.

    ``name`` identifies the projection's offset in the target store.
    ``key_prefix``, if given, is the part of the key space the projection
    owns: ``apply`` may write only keys that start with it, and
    ``rebuild`` deletes only those keys. ``stream`` limits the projection
    to one stream's events. ``batch_events`` events share one write.

    Thread-safety: ``catch_up``, ``rebuild`` and the background thread of
    ``start`` take turns on one lock.
    """

    def __init__(
        self,
        log: EventLog,
        target_store: Store,
        apply: Callable[[Event, ProjectionBatch], None],
        name: str,
        *,
        key_prefix: bytes | None = None,
        stream: str | None = None,
        batch_events: int = 256,
    ) -> None:
        key_prefix = _check_arguments(
            target_store, apply, name, key_prefix, batch_events
        )
        self.log = log
        self.target = target_store
        self.name = name
        self.key_prefix = key_prefix
        self.stream = stream
        #: The key under which the offset is stored in the target store.
        self.offset_key = OFFSET_KEY_PREFIX + name.encode("utf-8")
        self._apply = apply
        self._batch_events = batch_events
        self._apply_lock = threading.Lock()
        self._progress = threading.Condition()
        self._offset = self._load_offset()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: The exception that stopped the background thread, or None.
        self.error: BaseException | None = None

    def _load_offset(self) -> int:
        raw = self.target.get(self.offset_key)
        if raw is None:
            return 0
        if len(raw) != _OFFSET_SIZE:
            raise CorruptionError(
                f"projection {self.name!r}: stored offset under {self.offset_key!r} "
                f"has {len(raw)} bytes, expected {_OFFSET_SIZE}"
            )
        return int.from_bytes(raw, "big")

    @property
    def offset(self) -> int:
        """The next log offset to apply: every event below it has been applied."""
        return self._offset

    @property
    def lag(self) -> int:
        """Number of readable log offsets not applied yet."""
        return max(0, self.log.next_offset - self._offset)

    # -- applying --------------------------------------------------------------

    def catch_up(self, max_events: int | None = None) -> int:
        """Apply every event readable now (at most ``max_events``) and return how many.

        If ``apply`` raises, the events of the unfinished batch are not
        written and the exception propagates; the next call retries them.
        Raises CorruptionError if the stored offset is beyond the log's
        end, which means the log lost acknowledged events (a crash under
        ``sync="batch"`` or ``"none"``) or belongs to another log.
        """
        if max_events is not None:
            if isinstance(max_events, bool) or not isinstance(max_events, int):
                raise TypeError(
                    f"max_events must be an int or None, not {type(max_events).__name__}"
                )
            if max_events < 0:
                raise ValueError(f"max_events must be >= 0, not {max_events}")
            if max_events == 0:
                return 0
        with self._apply_lock:
            offset = self._offset
            log_end = self.log.next_offset
            if offset > log_end:
                raise CorruptionError(
                    f"projection {self.name!r} has applied events up to offset {offset}, "
                    f"beyond the end {log_end} of event log {self.log.path}: the log lost "
                    "events or is another log; call rebuild()"
                )
            applied = 0
            pending = 0
            next_offset = offset
            finished = True
            batch = ProjectionBatch(self.target)
            events = self.log.read(offset, self.stream)
            try:
                for event in events:
                    self._apply(event, batch)
                    applied += 1
                    pending += 1
                    next_offset = event.offset + 1
                    if pending >= self._batch_events:
                        self._commit(batch, next_offset)
                        batch = ProjectionBatch(self.target)
                        pending = 0
                    if max_events is not None and applied >= max_events:
                        finished = False
                        break
            finally:
                events.close()  # type: ignore[attr-defined]
            if self.stream is not None and finished:
                # Every event of the stream below log_end is applied, so the
                # other streams' events up to there count as done too.
                next_offset = max(next_offset, log_end)
            if pending or next_offset != self._offset:
                self._commit(batch, next_offset)
            return applied

    def _commit(self, batch: ProjectionBatch, next_offset: int) -> None:
        for kind, key, _ in batch:
            if key.startswith(OFFSET_KEY_PREFIX):
                raise ValueError(
                    f"projection {self.name!r}: apply wrote {key!r}, a key reserved "
                    f"for projection offsets (prefix {OFFSET_KEY_PREFIX!r})"
                )
            if self.key_prefix is not None and not key.startswith(self.key_prefix):
                action = "put" if kind == KIND_PUT else "delete"
                raise ValueError(
                    f"projection {self.name!r}: apply tried to {action} {key!r}, "
                    f"outside its key_prefix {self.key_prefix!r}"
                )
        WriteBatch.put(
            batch, self.offset_key, next_offset.to_bytes(_OFFSET_SIZE, "big")
        )
        self.target.write(batch)
        with self._progress:
            self._offset = next_offset
            self._progress.notify_all()

    def rebuild(self) -> int:
        """Delete the projection's keys, reset its offset to 0 and catch up.

        Deletes the keys under ``key_prefix``, or, without one, every key of
        the target store except projection offsets. The deletes and the
        offset reset are one atomic write. Returns the events applied.
        Raises OffsetError if the log no longer starts at offset 0.
        """
        with self._apply_lock:
            first = self.log.first_offset
            if first > 0:
                raise OffsetError(
                    f"projection {self.name!r} cannot be rebuilt from offset 0: events "
                    f"below offset {first} were removed by truncation",
                    first,
                )
            batch = WriteBatch()
            if self.key_prefix is not None:
                keys = list(self.target.scan(prefix=self.key_prefix, keys_only=True))
            else:
                keys = [
                    key
                    for key in self.target.scan(keys_only=True)
                    if not key.startswith(OFFSET_KEY_PREFIX)
                ]
            for key in keys:
                batch.delete(key)
            batch.put(self.offset_key, (0).to_bytes(_OFFSET_SIZE, "big"))
            self.target.write(batch)
            with self._progress:
                self._offset = 0
            logger.info(
                "projection %r: deleted %d key(s) and reset to offset 0",
                self.name,
                len(keys),
            )
        return self.catch_up()

    # -- following the log in a background thread ------------------------------

    @property
    def running(self) -> bool:
        """True while the background thread started by ``start`` runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start a thread that catches up and then follows the log.

        The thread stops on ``stop()``, when the log closes, or on an
        error, which it logs and keeps in ``error``.
        """
        if self.running:
            return
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(
            target=self._run, name=f"storekit-projection {self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.catch_up(max_events=self._batch_events * 16):
                    continue
                self.log._wait_beyond(self._offset, 1.0, self._stop)
        except ClosedError as exc:
            if self.log.closed:
                logger.info("projection %r stopped: the log is closed", self.name)
            else:
                self.error = exc
                logger.error("projection %r stopped: %s", self.name, exc)
        except BaseException as exc:  # noqa: BLE001 - kept in self.error for the owner
            self.error = exc
            logger.error(
                "projection %r stopped at offset %d: %s", self.name, self._offset, exc
            )
        finally:
            with self._progress:
                self._progress.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return
        self.log._wake_waiters()
        thread.join(timeout)

    def wait(self, offset: int | None = None, timeout: float | None = None) -> bool:
        """Wait until every event below ``offset`` is applied (default: the log's end).

        Returns False on timeout or when the background thread stopped on
        an error.
        """
        goal = self.log.next_offset if offset is None else offset
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while self._offset < goal:
                if self.error is not None:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def __repr__(self) -> str:
        return f"<Projection {self.name!r} at offset {self._offset}>"


def _check_arguments(
    target_store: object,
    apply: object,
    name: object,
    key_prefix: object,
    batch_events: object,
) -> bytes | None:
    """Check the Projection arguments and return key_prefix as bytes or None."""
    if not isinstance(target_store, Store):
        raise TypeError(
            f"target_store must be a storekit Store, not {type(target_store).__name__}"
        )
    if not callable(apply):
        raise TypeError(f"apply must be callable, not {type(apply).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("name must be a non-empty str")
    if key_prefix is not None:
        key_prefix = check_key(key_prefix)
        if key_prefix.startswith(OFFSET_KEY_PREFIX[: len(key_prefix)]):
            raise ValueError(
                f"key_prefix {key_prefix!r} overlaps the projection offset keys "
                f"{OFFSET_KEY_PREFIX!r}"
            )
    if isinstance(batch_events, bool) or not isinstance(batch_events, int):
        raise TypeError(
            f"batch_events must be an int, not {type(batch_events).__name__}"
        )
    if batch_events < 1:
        raise ValueError(f"batch_events must be >= 1, not {batch_events}")
    return key_prefix
