"""Sealing segments, truncation and retention: the EventLog methods that drop or
close segment files.

Truncation drops whole segments. It first rewrites ``TRUNCATION`` with the
new first offset and the stream versions of the dropped segments. Then it
removes the files and fsyncs the directory. A crash in between leaves only
leftovers below the first offset, and the next open removes them.
"""

from __future__ import annotations

import logging
import posixpath

from ._checks import check_offset
from .index import TRUNCATION_NAME, encode_index, encode_truncation
from .segment import Segment

__all__ = ["SegmentsMixin"]

logger = logging.getLogger("storekit.eventlog")


class SegmentsMixin:
    """EventLog methods for sealing and dropping segments, which use the log's state."""

    def rotate(self) -> int:
        """Seal the active segment, start a new one and return its base offset.

        An empty active segment is kept, and its base is returned.
        """
        with self._lock:
            self._check_writable()
            self._rotate_locked()
            return self._segments[-1].base

    def _rotate_locked(self, only_if_full: bool = False) -> None:
        # Waiting for a running fsync releases the lock, so other appends and
        # rotations may run meanwhile: read the active segment only after it.
        while self._syncing:
            self._synced_cond.wait()
        self._check_open()
        active = self._segments[-1]
        if active.event_count == 0:
            return
        if only_if_full and active.size < self._segment_bytes:
            return
        try:
            if self._synced_bytes < self._written_bytes:
                active.handle.sync()  # type: ignore[union-attr]
                self._fsyncs += 1
                self._mark_synced(self._written_bytes, self._next_offset)
            self._fs.write_file_atomic(active.index_path, encode_index(active))
            active.sealed = True
            self._start_segment(active.next_offset)
        except BaseException as exc:
            raise self._fail(exc) from exc
        logger.debug("event log %s: sealed %s", self.path, active)
        if self._retention_bytes is not None or self._retention_seconds is not None:
            self._enforce_retention_locked()

    def segments(self) -> list[int]:
        """Return the base offsets of the retained segments, ascending."""
        with self._lock:
            return list(self._bases)

    def truncate_before(self, offset: int) -> int:
        """Drop every segment whose events are all below ``offset`` and return first_offset.

        Whole segments are dropped, so events from the returned first
        offset up to ``offset`` stay readable. ``offset`` equal to
        ``next_offset`` drops every event: the active segment is sealed
        first. Stream versions are kept, so offsets and versions continue
        where they were. Raises ValueError for an offset above next_offset.
        """
        check_offset(offset, "offset")
        with self._lock:
            self._check_writable()
            if offset > self._next_offset:
                raise ValueError(
                    f"offset {offset} is above the next offset {self._next_offset} "
                    f"of event log {self.path}"
                )
            if offset == self._next_offset:
                self._rotate_locked()
            self._truncate_locked(offset)
            return self._segments[0].base

    def _truncate_locked(self, offset: int) -> None:
        doomed = [s for s in self._segments[:-1] if s.next_offset <= offset]
        if not doomed:
            return
        self._check_open()
        retained = self._segments[len(doomed) :]
        carried = dict(self._carried)
        for segment in doomed:
            for name, run in segment.streams.items():
                if run.last_version > carried.get(name, 0):
                    carried[name] = run.last_version
        try:
            # The new first offset and versions are durable before any file
            # goes, so a crash in between leaves leftovers that open removes.
            self._fs.write_file_atomic(
                posixpath.join(self.path, TRUNCATION_NAME),
                encode_truncation(retained[0].base, carried),
            )
            for segment in doomed:
                self._fs.remove(segment.path)
                self._fs.remove(segment.index_path)
            self._fs.sync_dir(self.path)
        except BaseException as exc:
            raise self._fail(exc) from exc
        self._carried = carried
        self._drop_segments(doomed)
        logger.info(
            "event log %s: removed %d segment(s); first offset is now %d",
            self.path,
            len(doomed),
            retained[0].base,
        )

    def _drop_segments(self, doomed: list[Segment]) -> None:
        self._segments = self._segments[len(doomed) :]
        self._bases = self._bases[len(doomed) :]
        for segment in doomed:
            for event_id, offset in segment.event_ids:
                if self._ids.get(event_id) == offset:
                    del self._ids[event_id]
            with self._handles_lock:
                segment.retired = True
                if segment.readers == 0 and segment.handle is not None:
                    segment.handle.close()
                    segment.handle = None

    def enforce_retention(self) -> int:
        """Apply ``retention_bytes`` and ``retention_seconds`` now and return first_offset."""
        with self._lock:
            self._check_writable()
            self._enforce_retention_locked()
            return self._segments[0].base

    def _enforce_retention_locked(self) -> None:
        sealed = self._segments[:-1]
        target = self._segments[0].base
        if self._retention_seconds is not None:
            cutoff_ns = int((self._clock() - self._retention_seconds) * 1e9)
            for segment in sealed:
                if segment.last_timestamp_ns >= cutoff_ns:
                    break
                target = segment.next_offset
        if self._retention_bytes is not None:
            total = sum(segment.size for segment in self._segments)
            for segment in sealed:
                if total <= self._retention_bytes:
                    break
                total -= segment.size
                target = max(target, segment.next_offset)
        if target > self._segments[0].base:
            self._truncate_locked(target)
