"""Segment files of the event log and the metadata kept for each of them.

A segment file ``<base>.log`` (``base`` is the offset of its first event,
20 decimal digits) starts with a 22-byte header. Records in the WAL's
block framing follow: 32 KiB blocks, 7-byte fragment headers and xxh32
checksums, as ``storekit._framing_py`` describes. Block offsets count from
the start of the file, header included. Header layout, little-endian:

    magic     8 bytes  b"SKEVLOG\\0"
    version   u16      segment format version (1)
    base      u64      offset of the segment's first event
    checksum  u32      xxh32 of the 18 bytes before it

``Segment`` contains what the log needs to know about a segment without
reading it: its offset range, size, sparse offset index, stream runs and
event ids. It is filled while appending or scanning, or loaded from the
segment's side file (``storekit.eventlog.index``) once the segment is
sealed.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator

from .._backend import framing
from ..errors import CorruptionError
from ..fs import File
from ..wal import iter_records

__all__ = [
    "SEGMENT_HEADER_SIZE",
    "Segment",
    "StreamRun",
    "encode_segment_header",
    "check_segment_header",
    "segment_name",
    "index_name",
    "parse_file_name",
    "read_records",
]

SEGMENT_MAGIC = b"SKEVLOG\x00"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sHQI")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size
SEGMENT_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
_NAME_DIGITS = 20

# A read starts with a small chunk and doubles it up to the maximum, so
# reading one event from the middle of a large segment touches little more
# than one index interval while sequential scans use large reads.
FIRST_READ_CHUNK = 16 * 1024
MAX_READ_CHUNK = 1024 * 1024


def segment_name(base: int) -> str:
    """Return the file name of the segment whose first offset is ``base``."""
    return f"{base:0{_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def index_name(base: int) -> str:
    """Return the file name of the side file of segment ``base``."""
    return f"{base:0{_NAME_DIGITS}d}{INDEX_SUFFIX}"


def parse_file_name(name: str) -> tuple[int, str] | None:
    """Return ``(base, suffix)`` for a segment or side-file name, else None."""
    stem, dot, suffix = name.partition(".")
    if not dot or len(stem) != _NAME_DIGITS or not stem.isdigit():
        return None
    suffix = "." + suffix
    if suffix not in (SEGMENT_SUFFIX, INDEX_SUFFIX):
        return None
    return int(stem), suffix


def encode_segment_header(base: int) -> bytes:
    """Return the header bytes that start segment ``base``."""
    body = struct.pack("<8sHQ", SEGMENT_MAGIC, SEGMENT_VERSION, base)
    return body + struct.pack("<I", framing.checksum(body))


def check_segment_header(data: bytes, base: int, path: str) -> str | None:
    """Return why ``data`` does not start with the header of segment ``base``.

    Returns None for a valid header. A header of an unsupported format
    version raises CorruptionError, because no recovery mode may cut it.
    """
    if len(data) < SEGMENT_HEADER_SIZE:
        return "incomplete segment header"
    magic, version, stored_base, stored_checksum = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return "bad segment magic"
    if framing.checksum(data[: SEGMENT_HEADER_SIZE - 4]) != stored_checksum:
        return "segment header checksum mismatch"
    if version != SEGMENT_VERSION:
        raise CorruptionError(
            f"{path}: event log segment format version {version} is not supported "
            f"(this storekit reads version {SEGMENT_VERSION})",
            path,
            0,
        )
    if stored_base != base:
        return f"header names base offset {stored_base}"
    return None


class StreamRun:
    """The events of one stream inside one segment."""

    __slots__ = (
        "first_version",
        "last_version",
        "first_offset",
        "last_offset",
        "count",
    )

    def __init__(
        self,
        first_version: int,
        last_version: int,
        first_offset: int,
        last_offset: int,
        count: int,
    ) -> None:
        self.first_version = first_version
        self.last_version = last_version
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.count = count


class Segment:
    """Metadata of one segment file; see the module docstring.

    ``size`` is the length of the valid part of the file: every byte up to
    it belongs to complete records. ``handle`` is an open file (the append
    handle while the segment is active) shared by readers, and ``readers``
    counts them, so a removed segment's handle is closed by its last reader.
    The log's locks guard every field.
    """

    __slots__ = (
        "base",
        "path",
        "index_path",
        "next_offset",
        "size",
        "index_offsets",
        "index_positions",
        "streams",
        "event_ids",
        "first_timestamp_ns",
        "last_timestamp_ns",
        "sealed",
        "handle",
        "readers",
        "retired",
    )

    def __init__(self, base: int, path: str, index_path: str) -> None:
        self.base = base
        self.path = path
        self.index_path = index_path
        self.next_offset = base
        self.size = SEGMENT_HEADER_SIZE
        self.index_offsets: list[int] = []
        self.index_positions: list[int] = []
        self.streams: dict[str, StreamRun] = {}
        self.event_ids: list[tuple[str, int]] = []
        self.first_timestamp_ns = 0
        self.last_timestamp_ns = 0
        self.sealed = False
        self.handle: File | None = None
        self.readers = 0
        self.retired = False

    @property
    def event_count(self) -> int:
        """Number of events in the segment."""
        return self.next_offset - self.base

    def add_record(
        self,
        position: int,
        end: int,
        first_offset: int,
        count: int,
        stream: str,
        first_version: int,
        timestamp_ns: int,
        event_ids: list[tuple[str, int]],
        index_interval: int,
    ) -> None:
        """Account for a record stored at ``[position, end)`` of the file.

        The sparse index gets an entry for the first record and then for
        the first record at least ``index_interval`` bytes after the last
        entry.
        """
        if (
            not self.index_positions
            or position - self.index_positions[-1] >= index_interval
        ):
            self.index_offsets.append(first_offset)
            self.index_positions.append(position)
        last_offset = first_offset + count - 1
        last_version = first_version + count - 1
        run = self.streams.get(stream)
        if run is None:
            self.streams[stream] = StreamRun(
                first_version, last_version, first_offset, last_offset, count
            )
        else:
            run.last_version = last_version
            run.last_offset = last_offset
            run.count += count
        if event_ids:
            self.event_ids.extend(event_ids)
        if self.next_offset == self.base:
            self.first_timestamp_ns = timestamp_ns
        self.last_timestamp_ns = max(self.last_timestamp_ns, timestamp_ns)
        self.next_offset = first_offset + count
        self.size = end

    def position_for(self, offset: int) -> int:
        """Return the file position of the last indexed record at or before ``offset``."""
        index = bisect.bisect_right(self.index_offsets, offset) - 1
        if index < 0:
            return SEGMENT_HEADER_SIZE
        return self.index_positions[index]

    def __repr__(self) -> str:
        state = "sealed" if self.sealed else "active"
        return f"<Segment {self.base}..{self.next_offset} {self.size} bytes {state}>"


def read_records(
    handle: File, start: int, end: int, path: str
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(position, payload)`` of the records in ``[start, end)`` of a file.

    ``start`` must be where a record (or the block padding before it)
    begins and ``end`` where one ends. Damage inside the range raises
    CorruptionError naming the file and offset.
    """
    position = start
    chunk = FIRST_READ_CHUNK
    while position < end:
        size = min(chunk, end - position)
        buffer = handle.read(position, size)
        if len(buffer) < size:
            raise CorruptionError(
                f"{path} ends at offset {position + len(buffer)}, before the "
                f"recorded end of its events at {end}",
                path,
                position + len(buffer),
            )
        records, result = iter_records(buffer, 0, position)
        for record_position, payload in records:
            yield position + record_position, payload
        _, consumed, status, bad_position, reason = result
        if status == framing.STATUS_CORRUPT:
            raise CorruptionError(
                f"event record in {path} at offset {position + bad_position} failed "
                f"its check ({framing.REASON_TEXT[reason]})",
                path,
                position + bad_position,
            )
        if status == framing.STATUS_TRUNCATED and position + size >= end:
            raise CorruptionError(
                f"event record in {path} at offset {position + consumed} runs past "
                f"the end of the segment's events at {end}",
                path,
                position + consumed,
            )
        if consumed == 0:
            # One record is larger than the chunk: grow until it fits.
            chunk *= 2
            continue
        position += consumed
        if chunk < MAX_READ_CHUNK:
            chunk *= 2
