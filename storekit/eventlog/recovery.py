"""Opening an event log directory: load side files, recover the newest segment.

Opening reads ``TRUNCATION``, every sealed segment's ``.index`` side file
and the body of the newest segment only. A sealed segment's body is read
at open only when its side file is missing or damaged, and the side file
is then rebuilt from the body. Sealing writes the side file before the
next segment starts, so this happens only after outside damage.

Damage policy (``recovery``), applied to the newest segment and to any
segment whose body has to be scanned:

- ``tolerate_tail``: a torn or zero-filled tail is cut, the file is
  truncated before new appends, and the cut is logged with file and
  offset. Damage followed by a valid record header later in the file is
  not a torn tail and raises CorruptionError.
- ``strict``: any damage raises CorruptionError.
- ``point_in_time``: every record before the first damage is kept; the
  rest of that segment and every later segment are dropped.

A read-only open never changes a file, and it treats damage at the end of
the newest segment as an append in progress by the writer.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

from .._backend import framing
from ..errors import CorruptionError
from ..fs import FileSystem
from ..wal import find_valid_record_after, iter_records
from .index import TRUNCATION_NAME, decode_index, decode_truncation, encode_index
from .record import decode_summary
from .segment import (
    INDEX_SUFFIX,
    SEGMENT_HEADER_SIZE,
    SEGMENT_SUFFIX,
    Segment,
    check_segment_header,
    encode_segment_header,
    index_name,
    parse_file_name,
    segment_name,
)

__all__ = ["LoadedLog", "load_log", "scan_records_into", "new_segment"]

logger = logging.getLogger("storekit.eventlog")


@dataclass
class LoadedLog:
    """The segments and stream state that ``load_log`` found in a log directory."""

    segments: list[Segment]
    carried_versions: dict[str, int]
    #: True when the newest segment is sealed, so appends need a new segment.
    newest_sealed: bool = False
    recovery: dict[str, Any] = field(
        default_factory=lambda: {"dropped_bytes": 0, "events": []}
    )


def new_segment(path: str, base: int) -> Segment:
    """Return the metadata of an empty segment ``base`` in directory ``path``."""
    return Segment(
        base,
        posixpath.join(path, segment_name(base)),
        posixpath.join(path, index_name(base)),
    )


def scan_records_into(
    segment: Segment,
    buffer: bytes,
    buffer_base: int,
    start: int,
    index_interval: int,
) -> tuple[int, tuple[int, str] | None]:
    """Parse records from ``buffer[start:]`` into ``segment``.

    ``buffer[0]`` is at file position ``buffer_base``. Returns
    ``(valid_end, damage)``: the file position after the last
    valid record, and None or ``(file_position, reason)`` for the first
    damage found. Each record must continue at ``segment.next_offset``.
    """
    records, result = iter_records(buffer, start, buffer_base)
    _, consumed, status, bad_position, reason = result
    valid_end = buffer_base + consumed
    damage: tuple[int, str] | None = None
    if status == framing.STATUS_TRUNCATED:
        damage = (valid_end, "record cut off at end of file")
    elif status == framing.STATUS_CORRUPT:
        damage = (buffer_base + bad_position, framing.REASON_TEXT[reason])

    for index, (position, payload) in enumerate(records):
        file_position = buffer_base + position
        try:
            summary = decode_summary(payload)
        except ValueError as exc:
            return file_position, (file_position, f"malformed record: {exc}")
        if summary.first_offset != segment.next_offset:
            return (
                file_position,
                (
                    file_position,
                    f"record starts at offset {summary.first_offset}, "
                    f"expected {segment.next_offset}",
                ),
            )
        if index + 1 < len(records):
            end = buffer_base + records[index + 1][0]
        else:
            end = valid_end
        segment.add_record(
            file_position,
            end,
            summary.first_offset,
            summary.count,
            summary.stream,
            summary.first_version,
            summary.timestamp_ns,
            summary.event_ids,
            index_interval,
        )
    return valid_end, damage


class _Loader:
    def __init__(
        self,
        fs: FileSystem,
        path: str,
        recovery: str,
        read_only: bool,
        index_interval: int,
    ) -> None:
        self.fs = fs
        self.path = path
        self.recovery = recovery
        self.read_only = read_only
        self.index_interval = index_interval
        self.report: dict[str, Any] = {"dropped_bytes": 0, "events": []}

    def load(self) -> LoadedLog:
        names = self.fs.listdir(self.path)
        floor = 0
        carried: dict[str, int] = {}
        if TRUNCATION_NAME in names:
            truncation_path = posixpath.join(self.path, TRUNCATION_NAME)
            floor, carried = decode_truncation(
                self.fs.read_file(truncation_path), truncation_path
            )
        bases: list[int] = []
        indexed: set[int] = set()
        for name in names:
            parsed = parse_file_name(name)
            if parsed is None:
                if name.endswith(".tmp") and not self.read_only:
                    # A side file whose atomic write was cut short.
                    self.fs.remove(posixpath.join(self.path, name))
                continue
            base, suffix = parsed
            if suffix == SEGMENT_SUFFIX:
                bases.append(base)
            elif suffix == INDEX_SUFFIX:
                indexed.add(base)
        bases.sort()
        bases = self._drop_truncated(bases, floor)
        bases = self._drop_stray_newest(bases, indexed)
        if not bases:
            return LoadedLog(
                [new_segment(self.path, floor)], carried, False, self.report
            )

        segments: list[Segment] = []
        newest_sealed = False
        for position, base in enumerate(bases):
            segment = new_segment(self.path, base)
            newest = position == len(bases) - 1
            if segments and segments[-1].next_offset != base:
                raise CorruptionError(
                    f"event log {self.path} has a gap: {segments[-1].path} ends at "
                    f"offset {segments[-1].next_offset} but the next segment starts "
                    f"at {base}",
                    segment.path,
                    0,
                )
            if base in indexed and self._load_index(segment):
                segments.append(segment)
                newest_sealed = newest
                continue
            cut = self._scan_body(segment, newest)
            segments.append(segment)
            if cut and not newest:
                self._drop_later(bases[position + 1 :])
                break
            if not newest and not self.read_only:
                logger.warning(
                    "event log %s: rebuilt the missing or damaged side file %s",
                    self.path,
                    segment.index_path,
                )
                segment.sealed = True
                self.fs.write_file_atomic(segment.index_path, encode_index(segment))
            elif not newest:
                segment.sealed = True
        return LoadedLog(segments, carried, newest_sealed, self.report)

    def _drop_truncated(self, bases: list[int], floor: int) -> list[int]:
        """Remove segments that a truncation interrupted by a crash left behind."""
        retained = [base for base in bases if base >= floor]
        leftovers = [base for base in bases if base < floor]
        if leftovers and not self.read_only:
            for base in leftovers:
                self.fs.remove(posixpath.join(self.path, segment_name(base)))
                self.fs.remove(posixpath.join(self.path, index_name(base)))
            self.fs.sync_dir(self.path)
            logger.info(
                "event log %s: removed %d segment(s) below the first offset %d "
                "left by an interrupted truncation",
                self.path,
                len(leftovers),
                floor,
            )
        return retained

    def _drop_stray_newest(self, bases: list[int], indexed: set[int]) -> list[int]:
        """Remove an event-less newest segment that does not follow a sealed one.

        A new segment is created only after the previous one's side file is
        durable, so an empty segment without that evidence contains nothing
        acknowledged: it was created by a failed rotation or, in crash
        simulations, by a log object that outlived the crash.
        """
        while len(bases) > 1 and bases[-1] not in indexed:
            newest = new_segment(self.path, bases[-1])
            if self.fs.file_size(newest.path) > SEGMENT_HEADER_SIZE:
                break
            previous = new_segment(self.path, bases[-2])
            if bases[-2] in indexed:
                try:
                    decode_index(self.fs.read_file(previous.index_path), previous)
                except CorruptionError:
                    pass
                else:
                    if previous.next_offset == newest.base:
                        break
            logger.info(
                "event log %s: removing %s, an empty segment that no sealed segment "
                "leads to",
                self.path,
                newest.path,
            )
            if not self.read_only:
                self.fs.remove(newest.path)
                self.fs.sync_dir(self.path)
            bases = bases[:-1]
        return bases

    def _load_index(self, segment: Segment) -> bool:
        """Fill ``segment`` from its side file; False if the file is damaged."""
        try:
            decode_index(self.fs.read_file(segment.index_path), segment)
        except CorruptionError as exc:
            logger.warning("event log %s: ignoring side file: %s", self.path, exc)
            return False
        actual = self.fs.file_size(segment.path)
        if actual < segment.size:
            raise CorruptionError(
                f"{segment.path} is {actual} bytes but its side file "
                f"{segment.index_path} records {segment.size}: the segment lost data",
                segment.path,
                actual,
            )
        return True

    def _scan_body(self, segment: Segment, newest: bool) -> bool:
        """Read and check a whole segment; return True if recovery cut it."""
        data = self.fs.read_file(segment.path)
        if newest and not data:
            # Created right before a crash, header not yet written.
            return False
        header_problem = check_segment_header(data, segment.base, segment.path)
        if header_problem is not None:
            damage: tuple[int, str] | None = (0, header_problem)
            valid_end = 0
            # Valid records behind a damaged header prove the header was
            # written and synced once, so the damage is not a torn tail.
            records = []
            if len(data) > SEGMENT_HEADER_SIZE:
                records, _ = iter_records(data, SEGMENT_HEADER_SIZE, 0)
            valid_after = (
                records[0][0] if records else framing.first_valid_header(data, 0, 1)
            )
        else:
            valid_end, damage = scan_records_into(
                segment, data, 0, SEGMENT_HEADER_SIZE, self.index_interval
            )
            valid_after = -1
            if damage is not None:
                valid_after = find_valid_record_after(data, 0, damage[0])
        if damage is None:
            return False
        self._handle_damage(segment, data, valid_end, damage, valid_after, newest)
        return True

    def _handle_damage(
        self,
        segment: Segment,
        data: bytes,
        valid_end: int,
        damage: tuple[int, str],
        valid_after: int,
        newest: bool,
    ) -> None:
        """Apply the recovery mode to damage found in ``segment``.

        ``valid_after`` is the position of a valid record after the damage,
        or -1 when none follows.
        """
        if self.read_only and newest and valid_after < 0:
            # The writer may be in the middle of an append.
            segment.size = max(valid_end, SEGMENT_HEADER_SIZE)
            return
        self._raise_unless_tolerated(segment.path, damage, valid_after, newest)
        self._cut(segment, len(data), valid_end, damage)

    def _raise_unless_tolerated(
        self, path: str, damage: tuple[int, str], valid_after: int, newest: bool
    ) -> None:
        offset, reason = damage
        where = f"{path} at offset {offset}: {reason}"
        if self.recovery == "strict":
            raise CorruptionError(
                f"event log damaged in {where} (recovery='strict')", path, offset
            )
        if self.recovery != "tolerate_tail" or (valid_after < 0 and newest):
            return
        if valid_after >= 0:
            detail = (
                f"a valid record header follows at offset {valid_after}, "
                "so this is not a torn tail"
            )
        else:
            detail = "the segment is not the newest, so this is not a torn tail"
        raise CorruptionError(
            f"event log damaged in {where}; {detail}. Open with "
            "recovery='point_in_time' to keep only the events before the damage.",
            path,
            offset,
        )

    def _cut(
        self, segment: Segment, file_size: int, valid_end: int, damage: tuple[int, str]
    ) -> None:
        """Drop everything after ``valid_end``, report it and truncate the file."""
        path = segment.path
        offset, reason = damage
        dropped = file_size - valid_end
        logger.warning(
            "event log recovery (%s) cut %s at offset %d (%s); %d bytes dropped",
            self.recovery,
            path,
            valid_end,
            reason,
            dropped,
        )
        self.report["dropped_bytes"] += dropped
        self.report["events"].append(
            {
                "file": path,
                "offset": valid_end,
                "damage_offset": offset,
                "reason": reason,
                "dropped_bytes": dropped,
            }
        )
        segment.size = max(valid_end, SEGMENT_HEADER_SIZE)
        if self.read_only:
            return

        # Cut before any new append, so new records never land behind garbage.
        if valid_end < SEGMENT_HEADER_SIZE:
            with self.fs.open(path, "w") as handle:
                handle.append(encode_segment_header(segment.base))
                handle.sync()
        else:
            with self.fs.open(path, "a") as handle:
                handle.truncate(valid_end)
                handle.sync()

    def _drop_later(self, bases: list[int]) -> None:
        """Remove the segments after a point-in-time cut."""
        dropped = 0
        for base in bases:
            path = posixpath.join(self.path, segment_name(base))
            dropped += self.fs.file_size(path)
            if not self.read_only:
                self.fs.remove(path)
                self.fs.remove(posixpath.join(self.path, index_name(base)))
        if not self.read_only:
            self.fs.sync_dir(self.path)
        self.report["dropped_bytes"] += dropped
        logger.warning(
            "event log recovery (point_in_time) dropped %d later segment(s) of %s, "
            "%d bytes",
            len(bases),
            self.path,
            dropped,
        )


def load_log(
    fs: FileSystem,
    path: str,
    *,
    recovery: str,
    read_only: bool,
    index_interval: int,
) -> LoadedLog:
    """Load the segments of the log in ``path``; see the module docstring."""
    return _Loader(fs, path, recovery, read_only, index_interval).load()
