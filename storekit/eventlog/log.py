"""EventLog: an append-only log of events in streams, stored in segment files.

Every event has a global offset (0, 1, 2, ... with no gaps, kept across
restarts and truncation) and belongs to a stream, in which it has a version
(1, 2, ...). One ``append`` call writes one checksummed record holding all
of its events, so they survive a crash together or not at all.

Directory layout::

    LOCK                      held by the one writer (in any process)
    <base>.log                segment files, ``base`` = first offset, 20 digits
    <base>.index              side file of a sealed segment
    TRUNCATION                first offset kept and stream versions of removed segments

The formats are in ``segment.py``, ``record.py`` and ``index.py``.

Durability follows the WAL's sync policies. Every append reaches the
operating system before it returns.

- ``sync="always"`` also fsyncs before returning. Concurrent appenders
  share one fsync (group commit), and an event becomes readable only once
  it is durable.
- ``sync="batch"`` fsyncs at least every ``sync_interval`` seconds in a
  background thread, which also starts an fsync once half of
  ``sync_bytes`` is unsynced. An append waits for an fsync once
  ``sync_bytes`` are unsynced.
- ``sync="none"`` fsyncs only in ``sync()``, ``close()`` and when a
  segment is sealed.

A failed write or fsync is sticky: every later append raises
DurabilityError until the log is reopened.
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._backend import framing
from .._exit import close_at_exit, forget_at_exit
from .._validate import check_value
from ..errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DurabilityError,
    ReadOnlyError,
)
from ..fs import FileSystem, default_fs
from ..wal import RECOVERY_MODES, SYNC_POLICIES, check_path
from ._checks import check_event_ids, check_name, check_offset, check_positive_int
from .reads import ReadsMixin
from .record import encode_bodies, encode_header
from .recovery import load_log, new_segment
from .retention import SegmentsMixin
from .segment import SEGMENT_HEADER_SIZE, Segment, encode_segment_header

__all__ = ["EventLog"]

logger = logging.getLogger("storekit.eventlog")

_BLOCK = framing.BLOCK_SIZE
_LOCK_NAME = "LOCK"


class EventLog(ReadsMixin, SegmentsMixin):
    """An append-only event log in directory ``path``; see the module docstring.

    Options:

    - ``sync``: ``"always"``, ``"batch"`` or ``"none"``.
    - ``recovery``: ``"tolerate_tail"``, ``"strict"`` or ``"point_in_time"``,
      as ``storekit.eventlog.recovery`` describes.
    - ``segment_bytes``: a segment is sealed once it reaches this size.
    - ``index_interval_bytes``: bytes of records between sparse index entries.
    - ``sync_interval`` (seconds) and ``sync_bytes``: the ``batch`` window.
    - ``retention_bytes`` and ``retention_seconds``: drop the oldest sealed
      segments beyond this total size or older than this age. They are
      checked when a segment is sealed and by ``enforce_retention``.
    - ``read_only``: follow a log that another object or process writes,
      and ``refresh`` picks up its appends.
    - ``create``: create the directory if it is missing.
    - ``clock``: seconds since the epoch, for age-based retention.

    Thread-safety: every method may be called from any thread. Appends are
    serialised, so ``expected_version`` checks cannot race.
    """

    def __init__(
        self,
        path: str,
        sync: str = "batch",
        fs: FileSystem | None = None,
        *,
        recovery: str = "tolerate_tail",
        segment_bytes: int = 64 << 20,
        index_interval_bytes: int = 4096,
        sync_interval: float = 1.0,
        sync_bytes: int = 1 << 20,
        retention_bytes: int | None = None,
        retention_seconds: float | None = None,
        read_only: bool = False,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(
                f"sync must be one of {', '.join(SYNC_POLICIES)}, not {sync!r}"
            )
        if recovery not in RECOVERY_MODES:
            raise ValueError(
                f"recovery must be one of {', '.join(RECOVERY_MODES)}, not {recovery!r}"
            )
        check_positive_int(segment_bytes, "segment_bytes", 1024)
        check_positive_int(index_interval_bytes, "index_interval_bytes", 1)
        check_positive_int(sync_bytes, "sync_bytes", 1)
        if isinstance(sync_interval, bool) or not isinstance(
            sync_interval, (int, float)
        ):
            raise TypeError(f"sync_interval must be a number, not {sync_interval!r}")
        if sync_interval <= 0:
            raise ValueError(f"sync_interval must be > 0 seconds, not {sync_interval}")
        if retention_bytes is not None:
            check_positive_int(retention_bytes, "retention_bytes", 1)
        if retention_seconds is not None and (
            isinstance(retention_seconds, bool)
            or not isinstance(retention_seconds, (int, float))
            or retention_seconds <= 0
        ):
            raise ValueError(
                f"retention_seconds must be a positive number or None, not {retention_seconds!r}"
            )
        for name, flag in (("read_only", read_only), ("create", create)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, not {flag!r}")

        self.path = check_path(path)
        self.sync_policy = sync
        self.recovery_mode = recovery
        self.read_only = read_only
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self._segment_bytes = segment_bytes
        self._index_interval = index_interval_bytes
        self._sync_interval = float(sync_interval)
        self._sync_bytes = sync_bytes
        self._retention_bytes = retention_bytes
        self._retention_seconds = retention_seconds
        self._clock = clock

        self._lock = threading.Lock()
        # Both conditions share the lock: _synced_cond wakes appenders waiting
        # for an fsync, _appended wakes readers waiting for new events.
        self._synced_cond = threading.Condition(self._lock)
        self._appended = threading.Condition(self._lock)
        # Guards Segment.handle, readers and retired. Code that needs both
        # locks takes _lock first.
        self._handles_lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._failure: BaseException | None = None
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._carried: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._ids: dict[str, int] = {}
        self._next_offset = 0
        self._visible_end = 0
        # Durability marks, in bytes written since open: a record is durable
        # once _synced_bytes reaches the _written_bytes taken after it.
        self._written_bytes = 0
        self._synced_bytes = 0
        self._syncing = False
        self._appends = 0
        self._events_appended = 0
        self._fsyncs = 0
        self._syncer: threading.Thread | None = None
        self._stop_syncer = threading.Event()
        self._wake_syncer = threading.Event()
        self._file_lock = None

        if not self._fs.exists(self.path):
            if read_only or not create:
                raise FileNotFoundError(
                    f"event log directory {self.path} does not exist"
                )
            self._fs.mkdir(self.path)
        if not read_only:
            self._file_lock = self._fs.lock(posixpath.join(self.path, _LOCK_NAME))
        try:
            loaded = load_log(
                self._fs,
                self.path,
                recovery=recovery,
                read_only=read_only,
                index_interval=index_interval_bytes,
            )
            self.recovery: dict[str, Any] = loaded.recovery
            self._segments = loaded.segments
            self._bases = [segment.base for segment in self._segments]
            self._carried = loaded.carried_versions
            self._rebuild_stream_state()
            if not read_only:
                self._open_active(loaded.newest_sealed)
        except BaseException:
            self._release_resources()
            raise
        close_at_exit(self)

    # -- opening ---------------------------------------------------------------

    def _rebuild_stream_state(self) -> None:
        versions = dict(self._carried)
        ids: dict[str, int] = {}
        for segment in self._segments:
            for name, run in segment.streams.items():
                if run.last_version > versions.get(name, 0):
                    versions[name] = run.last_version
            for event_id, offset in segment.event_ids:
                ids[event_id] = offset
        self._versions = versions
        self._ids = ids
        self._next_offset = self._segments[-1].next_offset
        self._visible_end = self._next_offset

    def _open_active(self, newest_sealed: bool) -> None:
        active = self._segments[-1]
        if newest_sealed:
            self._start_segment(active.next_offset)
            return
        # A side file of the active segment is stale: it is rewritten on sealing.
        self._fs.remove(active.index_path)
        handle = self._fs.open(active.path, "a")
        active.handle = handle
        size = handle.size()
        if size == 0:
            handle.append(encode_segment_header(active.base))
        elif size != active.size:
            raise CorruptionError(
                f"{active.path} is {size} bytes after recovery, expected {active.size}",
                active.path,
                size,
            )
        # After a killed process under sync="none", recovered records may be
        # only in the OS cache, so they are made durable before new ones follow.
        handle.sync()

    def _start_segment(self, base: int) -> None:
        segment = new_segment(self.path, base)
        # Mode "a" and the epoch check after opening: a log object that
        # outlived a simulated crash must not truncate a file of the
        # recovered state, and every call on the handle checks the epoch.
        handle = self._fs.open(segment.path, "a")
        try:
            self._check_open()
            if handle.size():
                handle.truncate(0)  # left by an earlier attempt that failed
            handle.append(encode_segment_header(base))
        except BaseException:
            handle.close()
            raise
        segment.handle = handle
        self._written_bytes += SEGMENT_HEADER_SIZE
        self._segments.append(segment)
        self._bases.append(base)

    # -- state checks ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._fs.epoch != self._epoch:
            raise ClosedError(f"event log {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._closing:
            raise ClosedError(f"event log {self.path} is closing")
        if self.read_only:
            raise ReadOnlyError(f"event log {self.path} was opened with read_only=True")
        if self._failure is not None:
            raise DurabilityError(
                f"event log {self.path} failed earlier ({self._failure}); "
                "reopen it to continue"
            ) from self._failure

    def _fail(self, exc: BaseException) -> DurabilityError:
        """Record a write or fsync failure and return the error to raise."""
        if self._failure is None:
            self._failure = exc
            logger.error(
                "event log %s failed; no more appends are accepted until reopen: %s",
                self.path,
                exc,
            )
        self._synced_cond.notify_all()
        if isinstance(exc, DurabilityError):
            return exc
        error = DurabilityError(f"event log {self.path}: write or fsync failed: {exc}")
        error.__cause__ = exc
        return error

    # -- appending -------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[bytes],
        expected_version: int | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        """Append ``events`` to ``stream`` atomically and return the last event's offset.

        ``expected_version`` is the version the stream must be at (0 for a
        new stream), or None for no check. A mismatch raises
        ConcurrencyError and appends nothing. With ``event_ids`` (one
        unique, non-empty string per event), an append whose ids are all in
        the log already writes nothing and returns the offset of the last of
        those events. Ids are remembered for the events still retained.
        Raises DurabilityError if the write or fsync fails.
        """
        stream_bytes = check_name(stream, "stream")
        if isinstance(events, (bytes, bytearray, memoryview, str)) or not isinstance(
            events, Sequence
        ):
            raise TypeError(
                f"events must be a list of bytes, not {type(events).__name__}"
            )
        if not events:
            raise ValueError("events must contain at least one event")
        datas = [check_value(data) for data in events]
        ids, encoded_ids = check_event_ids(event_ids, len(datas))
        if expected_version is not None:
            check_offset(expected_version, "expected_version")
        bodies = encode_bodies(datas, encoded_ids)
        count = len(datas)

        need_sync = False
        with self._lock:
            self._check_writable()
            if ids is not None:
                existing = self._existing_offset(ids)
                if existing is not None:
                    mark = self._written_bytes
                    if self.sync_policy == "always":
                        self._wait_durable_locked(mark)
                    return existing
            current = self._versions.get(stream, 0)
            if expected_version is not None and expected_version != current:
                raise ConcurrencyError(
                    f"stream {stream!r} is at version {current}, but the append "
                    f"expected version {expected_version}"
                )
            first = self._next_offset
            timestamp_ns = time.time_ns()
            payload = (
                encode_header(first, current + 1, timestamp_ns, count, stream_bytes)
                + bodies
            )
            active = self._segments[-1]
            position = active.size
            data = framing.frame(payload, position % _BLOCK)
            try:
                active.handle.append(data)  # type: ignore[union-attr]
            except BaseException as exc:
                raise self._fail(exc) from exc
            id_offsets = (
                [] if ids is None else [(i, first + n) for n, i in enumerate(ids)]
            )
            active.add_record(
                position,
                position + len(data),
                first,
                count,
                stream,
                current + 1,
                timestamp_ns,
                id_offsets,
                self._index_interval,
            )
            for event_id, offset in id_offsets:
                self._ids[event_id] = offset
            self._versions[stream] = current + count
            self._next_offset = first + count
            self._written_bytes += len(data)
            self._appends += 1
            self._events_appended += count
            mark = self._written_bytes
            if self.sync_policy != "always":
                self._publish(self._next_offset)
            if active.size >= self._segment_bytes:
                self._rotate_locked(only_if_full=True)
            elif self.sync_policy == "batch":
                unsynced = self._written_bytes - self._synced_bytes
                need_sync = unsynced >= self._sync_bytes
                if self._syncer is None:
                    self._start_syncer()
                if unsynced >= self._sync_bytes // 2:
                    # The background fsync starts at half the window, so it
                    # usually ends before an append has to wait at the full one.
                    self._wake_syncer.set()
            if self.sync_policy == "always" or need_sync:
                self._wait_durable_locked(mark)
        return first + count - 1

    def _existing_offset(self, ids: list[str]) -> int | None:
        """Return the offset of the last of ``ids`` if all are stored, else None."""
        found = [self._ids.get(event_id) for event_id in ids]
        present = [offset for offset in found if offset is not None]
        if not present:
            return None
        if len(present) != len(ids):
            stored = [
                i for i, offset in zip(ids, found, strict=True) if offset is not None
            ]
            raise ValueError(
                f"event ids {stored[:3]!r} are already in the log but others of "
                "this append are not; an append is retried with exactly its "
                "original ids"
            )
        return max(present)

    def _publish(self, end: int) -> None:
        if end > self._visible_end:
            self._visible_end = end
            self._appended.notify_all()

    # -- fsync and group commit ------------------------------------------------

    def _wait_durable_locked(self, mark: int) -> None:
        """Block until an fsync covers ``mark``. The caller holds the lock.

        Group commit: if an fsync is running, wait for it and check again.
        Otherwise become the leader and fsync everything written so far.
        """
        while self._synced_bytes < mark:
            if self._failure is not None:
                raise DurabilityError(
                    f"event log {self.path}: fsync failed ({self._failure}); "
                    "the append is not durable, reopen to continue"
                ) from self._failure
            self._check_open()
            if self._syncing:
                self._synced_cond.wait()
                continue
            self._sync_locked()

    def _sync_locked(self) -> None:
        """Fsync the active segment, releasing the lock during the fsync."""
        self._syncing = True
        goal_bytes = self._written_bytes
        goal_offset = self._next_offset
        handle = self._segments[-1].handle
        self._lock.release()
        error: BaseException | None = None
        try:
            handle.sync()  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised below
            error = exc
        finally:
            self._lock.acquire()
            self._syncing = False
            self._synced_cond.notify_all()
        if error is not None:
            raise self._fail(error) from error
        self._fsyncs += 1
        self._mark_synced(goal_bytes, goal_offset)

    def _mark_synced(self, goal_bytes: int, goal_offset: int) -> None:
        if goal_bytes > self._synced_bytes:
            self._synced_bytes = goal_bytes
        if self.sync_policy == "always":
            self._publish(goal_offset)

    def sync(self) -> None:
        """Fsync every event appended so far (also called ``flush``)."""
        with self._lock:
            self._check_writable()
            self._wait_durable_locked(self._written_bytes)

    flush = sync

    def _start_syncer(self) -> None:
        reference = weakref.ref(self)
        stop = self._stop_syncer
        wake = self._wake_syncer
        interval = self._sync_interval

        def run() -> None:
            while True:
                wake.wait(interval)
                wake.clear()
                log = reference()
                if log is None or stop.is_set():
                    return
                try:
                    with log._lock:
                        if log._closed or log._fs.epoch != log._epoch or log._failure:
                            return
                        log._wait_durable_locked(log._written_bytes)
                except (DurabilityError, ClosedError):
                    return
                del log

        self._syncer = threading.Thread(
            target=run, name=f"storekit-eventlog-sync {self.path}", daemon=True
        )
        self._syncer.start()

    # -- lifecycle -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return counters and sizes: appends, events, fsyncs, bytes, segments, recovery."""
        with self._lock:
            return {
                "appends": self._appends,
                "events_appended": self._events_appended,
                "fsyncs": self._fsyncs,
                "bytes_written": self._written_bytes,
                "bytes_unsynced": self._written_bytes - self._synced_bytes,
                "segments": len(self._segments),
                "bytes": sum(segment.size for segment in self._segments),
                "first_offset": self._segments[0].base if self._segments else 0,
                "next_offset": self._visible_end,
                "streams": len(self._versions),
                "sync": self.sync_policy,
                "failed": self._failure is not None,
                "recovery": dict(self.recovery),
            }

    def close(self) -> None:
        """Fsync and close the log, which stops its subscriptions.

        Raises DurabilityError if the final fsync fails.
        """
        error: BaseException | None = None
        with self._lock:
            if self._closed:
                return
            alive = self._fs.epoch == self._epoch
            self._closing = True
            if alive and not self.read_only and self._failure is None:
                try:
                    self._wait_durable_locked(self._written_bytes)
                except BaseException as exc:  # noqa: BLE001 - raised after cleanup
                    error = exc
                while self._syncing:
                    self._synced_cond.wait()
            self._closed = True
            self._stop_syncer.set()
            self._wake_syncer.set()
            self._synced_cond.notify_all()
            self._appended.notify_all()
            self._release_resources()
        forget_at_exit(self)
        if error is not None:
            raise error

    def _release_resources(self) -> None:
        self._stop_syncer.set()
        self._wake_syncer.set()
        with self._handles_lock:
            for segment in self._segments:
                if segment.handle is not None:
                    segment.handle.close()
                    segment.handle = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    @property
    def closed(self) -> bool:
        """True once closed, or once the file system crashed under it."""
        return self._closed or self._fs.epoch != self._epoch

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<EventLog {self.path!r} offsets {self._bases[0] if self._bases else 0}"
            f"..{self._visible_end} sync={self.sync_policy}>"
        )
