"""Reading an EventLog: offset and stream reads, subscriptions, and following a
log that another object or process writes.

Under the log's lock, a read takes the list of segments to visit, the
sparse-index position to start from and the end offset readable at that
moment. Then it reads the files without the lock. Segment handles are
shared and reference-counted, so a truncation closes a removed segment's
file only after its last reader is done.
"""

from __future__ import annotations

import bisect
import posixpath
import threading
import time
from collections.abc import Iterator

from ..errors import ClosedError, OffsetError
from ._checks import check_name, check_offset
from .index import TRUNCATION_NAME, decode_index, decode_truncation
from .record import Event, decode_events
from .recovery import new_segment, scan_records_into
from .segment import (
    INDEX_SUFFIX,
    SEGMENT_HEADER_SIZE,
    SEGMENT_SUFFIX,
    Segment,
    check_segment_header,
    parse_file_name,
    read_records,
)
from .subscription import Subscription

__all__ = ["ReadsMixin"]


class ReadsMixin:
    """EventLog methods for reading, which use the log's state and locks."""

    @property
    def first_offset(self) -> int:
        """The lowest offset that can still be read."""
        with self._lock:
            self._check_open()
            return self._segments[0].base

    @property
    def next_offset(self) -> int:
        """One past the last readable event: the offset the next append gets
        once every append in progress is done."""
        with self._lock:
            self._check_open()
            return self._visible_end

    def stream_version(self, stream: str) -> int:
        """Return the version of ``stream``: its number of events, 0 if it has none."""
        check_name(stream, "stream")
        with self._lock:
            self._check_open()
            return self._versions.get(stream, 0)

    def streams(self) -> list[str]:
        """Return the names of every stream that has events, sorted."""
        with self._lock:
            self._check_open()
            return sorted(self._versions)

    def read(self, from_offset: int = 0, stream: str | None = None) -> Iterator[Event]:
        """Iterate the events from ``from_offset`` that exist when read is called.

        With ``stream``, only that stream's events. Raises OffsetError now
        if ``from_offset`` is below ``first_offset``, and while iterating if
        a truncation removes the events before they are read.
        """
        check_offset(from_offset, "from_offset")
        if stream is not None:
            check_name(stream, "stream")
        plan, end = self._plan(from_offset, stream)
        return self._iterate(plan, end, stream, 1)

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Event]:
        """Iterate the events of ``stream`` from version ``from_version``.

        Raises OffsetError if events of the stream at or above
        ``from_version`` were removed by truncation.
        """
        check_name(stream, "stream")
        if isinstance(from_version, bool) or not isinstance(from_version, int):
            raise TypeError(
                f"from_version must be an int, not {type(from_version).__name__}"
            )
        if from_version < 1:
            raise ValueError(f"from_version must be >= 1, not {from_version}")
        with self._lock:
            self._check_open()
            if self.read_only:
                self._refresh_locked()
            removed = self._carried.get(stream, 0)
            first = self._segments[0].base
            if from_version <= removed:
                raise OffsetError(
                    f"events of stream {stream!r} up to version {removed} were removed "
                    f"by truncation; the first retained offset is {first}",
                    first,
                )
            end = self._visible_end
            plan = []
            for segment in self._segments:
                run = segment.streams.get(stream)
                if (
                    run is None
                    or run.last_version < from_version
                    or run.first_offset >= end
                ):
                    continue
                plan.append(
                    (
                        segment,
                        segment.position_for(run.first_offset),
                        segment.size,
                        run.first_offset,
                    )
                )
        return self._iterate(plan, end, stream, from_version)

    def subscribe(
        self,
        from_offset: int | None = None,
        *,
        stream: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.1,
    ) -> Subscription:
        """Return a blocking iterator over events from ``from_offset`` on.

        ``from_offset`` None starts at ``next_offset``: only new events.
        Iteration waits for new events and stops when ``timeout`` seconds
        pass without one (None waits forever), when the subscription or the
        log is closed. ``Subscription.close`` may be called from any thread.
        A read-only log checks the files for new events every
        ``poll_interval`` seconds.
        """
        if from_offset is None:
            from_offset = self.next_offset
        check_offset(from_offset, "from_offset")
        if stream is not None:
            check_name(stream, "stream")
        return Subscription(self, from_offset, stream, timeout, poll_interval)

    def _plan(
        self, offset: int, stream: str | None
    ) -> tuple[list[tuple[Segment, int, int, int]], int]:
        """Return the segments to read from ``offset`` and the end offset, under the lock."""
        with self._lock:
            self._check_open()
            if self.read_only:
                self._refresh_locked()
            first = self._segments[0].base
            if offset < first:
                raise OffsetError(
                    f"offset {offset} is below the first retained offset {first} "
                    f"of event log {self.path}",
                    first,
                )
            end = self._visible_end
            plan = []
            if offset >= end:
                return plan, end
            index = bisect.bisect_right(self._bases, offset) - 1
            for segment in self._segments[index:]:
                if segment.base >= end:
                    break
                start = max(offset, segment.base)
                if stream is not None:
                    run = segment.streams.get(stream)
                    if run is None or run.last_offset < start:
                        continue
                    start = max(start, run.first_offset)
                plan.append((segment, segment.position_for(start), segment.size, start))
            return plan, end

    def _iterate(
        self,
        plan: list[tuple[Segment, int, int, int]],
        end: int,
        stream: str | None,
        min_version: int,
    ) -> Iterator[Event]:
        for segment, start_position, end_position, start_offset in plan:
            handle = self._acquire(segment)
            try:
                for position, payload in read_records(
                    handle, start_position, end_position, segment.path
                ):
                    events = decode_events(
                        payload, segment.path, position, start_offset, stream
                    )
                    for event in events:
                        if event.offset >= end:
                            return
                        if event.version >= min_version:
                            yield event
            except OSError:
                self._check_open()
                raise
            finally:
                self._release(segment)

    def _acquire(self, segment: Segment):
        with self._handles_lock:
            self._check_open()
            if segment.retired:
                first = self._bases[0] if self._bases else segment.next_offset
                raise OffsetError(
                    f"events of {segment.path} were removed by truncation before they "
                    f"were read; the first retained offset is {first}",
                    first,
                )
            if segment.handle is None:
                segment.handle = self._fs.open(segment.path, "r")
            segment.readers += 1
            return segment.handle

    def _release(self, segment: Segment) -> None:
        with self._handles_lock:
            segment.readers -= 1
            if segment.readers == 0 and segment.retired and segment.handle is not None:
                segment.handle.close()
                segment.handle = None

    def _fetch(
        self, offset: int, limit: int, stream: str | None
    ) -> tuple[list[Event], int]:
        """Return up to about ``limit`` readable events from ``offset`` and the next offset."""
        plan, end = self._plan(offset, stream)
        events: list[Event] = []
        for event in self._iterate(plan, end, stream, 1):
            events.append(event)
            if len(events) >= limit:
                return events, event.offset + 1
        return events, max(end, offset)

    def _wait_beyond(
        self,
        offset: int,
        timeout: float | None,
        stop: threading.Event | None,
        poll_interval: float = 0.1,
    ) -> bool:
        """Wait until an event at ``offset`` or later is readable.

        Returns False on timeout, when ``stop`` is set or when the log is
        closed normally; raises ClosedError after a crash of its file system.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._fs.epoch != self._epoch:
                    raise ClosedError(f"event log {self.path} is closed")
                if self._closed or (stop is not None and stop.is_set()):
                    return False
                if self.read_only:
                    self._refresh_locked()
                if self._visible_end > offset:
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Waking regularly notices a crash of the file system, a stop
                # request made without notify and, on a read-only log, new files.
                slice_seconds = poll_interval if self.read_only else 0.1
                if remaining is not None:
                    slice_seconds = min(remaining, slice_seconds)
                self._appended.wait(slice_seconds)

    def _wake_waiters(self) -> None:
        with self._lock:
            self._appended.notify_all()

    # -- following a log written by another object or process ------------------

    def refresh(self) -> int:
        """Pick up events appended by the writer and return how many became readable.

        Only a read-only log needs this (reads and subscriptions call it);
        on the writer it returns 0.
        """
        with self._lock:
            self._check_open()
            if not self.read_only:
                return 0
            before = self._visible_end
            self._refresh_locked()
            return self._visible_end - before

    def _refresh_locked(self) -> None:
        """Load what the writer changed since the last refresh: truncation, sealed
        segments, new segments and new records."""
        bases: list[int] = []
        indexed: set[int] = set()
        for name in self._fs.listdir(self.path):
            parsed = parse_file_name(name)
            if parsed is None:
                continue
            if parsed[1] == SEGMENT_SUFFIX:
                bases.append(parsed[0])
            elif parsed[1] == INDEX_SUFFIX:
                indexed.add(parsed[0])
        if not bases:
            return
        bases.sort()

        changed = False
        if bases[0] > self._segments[0].base:
            changed = True
            self._follow_truncation(bases[0])
        last = self._segments[-1] if self._segments else None
        if last is not None and not last.sealed:
            if bases[-1] > last.base:
                self._seal_followed(last, last.base in indexed)
            else:
                changed |= self._scan_tail(last)

        newer = [base for base in bases if last is None or base > last.base]
        for base in newer:
            segment = new_segment(self.path, base)
            if base in indexed:
                decode_index(self._fs.read_file(segment.index_path), segment)
            else:
                self._scan_tail(segment)
            self._segments.append(segment)
            self._bases.append(base)
            changed = True

        if changed or self._segments[-1].next_offset != self._visible_end:
            self._rebuild_stream_state()
            self._appended.notify_all()

    def _follow_truncation(self, first: int) -> None:
        truncation_path = posixpath.join(self.path, TRUNCATION_NAME)
        if self._fs.exists(truncation_path):
            _, self._carried = decode_truncation(
                self._fs.read_file(truncation_path), truncation_path
            )
        doomed = [segment for segment in self._segments if segment.base < first]
        self._drop_segments(doomed)

    def _seal_followed(self, segment: Segment, has_index: bool) -> None:
        """Finish reading a segment that the writer has sealed."""
        if has_index:
            decode_index(self._fs.read_file(segment.index_path), segment)
        else:
            self._scan_tail(segment)
            segment.sealed = True

    def _scan_tail(self, segment: Segment) -> bool:
        """Parse records the writer appended to ``segment`` and return True if any were found."""
        size = self._fs.file_size(segment.path)
        if size <= segment.size:
            return False
        with self._handles_lock:
            if segment.handle is None:
                segment.handle = self._fs.open(segment.path, "r")
            handle = segment.handle
        before = segment.next_offset
        if segment.event_count == 0:
            data = handle.read(0, size)
            if check_segment_header(data, segment.base, segment.path) is not None:
                return False
            scan_records_into(
                segment, data, 0, SEGMENT_HEADER_SIZE, self._index_interval
            )
        else:
            data = handle.read(segment.size, size - segment.size)
            scan_records_into(segment, data, segment.size, 0, self._index_interval)
        # Damage at the end is an append in progress, which the next refresh reads.
        return segment.next_offset != before
