"""Side files of the event log: a sealed segment's index and the truncation state.

Both are small, written with ``write_file_atomic`` (temporary file, fsync,
rename, directory fsync) and end with an xxh32 checksum of every byte
before it, so opening the log reads them instead of segment bodies.
Integers are little-endian; strings are a u16 length then UTF-8 bytes.

``<base>.index``, written when segment ``base`` is sealed, format 1::

    magic            8 bytes  b"SKEVIDX\\0"
    version          u16      1
    reserved         u16      0
    base             u64      offset of the segment's first event
    next_offset      u64      one past the segment's last event
    size             u64      length of the segment file in bytes
    first_timestamp  u64      append time of the first event, ns since the epoch
    last_timestamp   u64      latest append time in the segment, ns
    entry_count      u32      sparse offset index:
        offset u64, position u64      first offset of a record, its file position
    stream_count     u32      one run per stream that has events in the segment:
        name, first_version u64, last_version u64,
        first_offset u64, last_offset u64, event_count u64
    id_count         u32      events appended with an id:
        id, offset u64
    checksum         u32

``TRUNCATION``, rewritten by each truncation before segments are removed,
format 1::

    magic            8 bytes  b"SKEVTRN\\0"
    version          u16      1
    reserved         u16      0
    first_offset     u64      base of the first segment kept
    stream_count     u32      version of each stream as of the removed segments:
        name, version u64
    checksum         u32
"""

from __future__ import annotations

import struct

from .._backend import framing
from ..errors import CorruptionError
from .segment import Segment, StreamRun

__all__ = [
    "encode_index",
    "decode_index",
    "encode_truncation",
    "decode_truncation",
    "TRUNCATION_NAME",
]

INDEX_MAGIC = b"SKEVIDX\x00"
TRUNCATION_MAGIC = b"SKEVTRN\x00"
FORMAT_VERSION = 1
TRUNCATION_NAME = "TRUNCATION"

_PREAMBLE = struct.Struct("<8sHH")
_INDEX_FIELDS = struct.Struct("<QQQQQ")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ENTRY = struct.Struct("<QQ")
_RUN = struct.Struct("<QQQQQ")


def _put_string(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    out += _U16.pack(len(data))
    out += data


def _seal(out: bytearray) -> bytes:
    out += _U32.pack(framing.checksum(bytes(out)))
    return bytes(out)


def encode_index(segment: Segment) -> bytes:
    """Return the side-file bytes that describe a sealed ``segment``."""
    out = bytearray(_PREAMBLE.pack(INDEX_MAGIC, FORMAT_VERSION, 0))
    out += _INDEX_FIELDS.pack(
        segment.base,
        segment.next_offset,
        segment.size,
        segment.first_timestamp_ns,
        segment.last_timestamp_ns,
    )
    out += _U32.pack(len(segment.index_offsets))
    for offset, position in zip(
        segment.index_offsets, segment.index_positions, strict=True
    ):
        out += _ENTRY.pack(offset, position)
    out += _U32.pack(len(segment.streams))
    for name, run in segment.streams.items():
        _put_string(out, name)
        out += _RUN.pack(
            run.first_version,
            run.last_version,
            run.first_offset,
            run.last_offset,
            run.count,
        )
    out += _U32.pack(len(segment.event_ids))
    for event_id, offset in segment.event_ids:
        _put_string(out, event_id)
        out += _U64.pack(offset)
    return _seal(out)


class _Reader:
    """Sequential decoding of a side file; raises ValueError on short data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def unpack(self, layout: struct.Struct) -> tuple:
        values = layout.unpack_from(self.data, self.position)
        self.position += layout.size
        return values

    def string(self) -> str:
        (length,) = self.unpack(_U16)
        end = self.position + length
        if end > len(self.data):
            raise ValueError("string runs past the end of the file")
        text = self.data[self.position : end].decode("utf-8")
        self.position = end
        return text


def _open_checked(data: bytes, magic: bytes, path: str) -> _Reader:
    if len(data) < _PREAMBLE.size + 4:
        raise CorruptionError(f"{path} is too short ({len(data)} bytes)", path, 0)
    stored = _U32.unpack_from(data, len(data) - 4)[0]
    if framing.checksum(data[:-4]) != stored:
        raise CorruptionError(f"{path} failed its checksum", path, len(data) - 4)
    reader = _Reader(data[:-4])
    found_magic, version, _reserved = reader.unpack(_PREAMBLE)
    if found_magic != magic:
        raise CorruptionError(f"{path} has bad magic {found_magic!r}", path, 0)
    if version != FORMAT_VERSION:
        raise CorruptionError(
            f"{path}: format version {version} is not supported "
            f"(this storekit reads version {FORMAT_VERSION})",
            path,
            8,
        )
    return reader


def decode_index(data: bytes, segment: Segment) -> None:
    """Fill ``segment`` from its side file; raise CorruptionError if damaged."""
    path = segment.index_path
    reader = _open_checked(data, INDEX_MAGIC, path)
    try:
        base, next_offset, size, first_ns, last_ns = reader.unpack(_INDEX_FIELDS)
        if base != segment.base:
            raise ValueError(f"it describes segment {base}, not {segment.base}")
        if next_offset < base:
            raise ValueError(f"next offset {next_offset} is below base {base}")

        (entry_count,) = reader.unpack(_U32)
        offsets: list[int] = []
        positions: list[int] = []
        for _ in range(entry_count):
            offset, position = reader.unpack(_ENTRY)
            offsets.append(offset)
            positions.append(position)

        (stream_count,) = reader.unpack(_U32)
        streams: dict[str, StreamRun] = {}
        for _ in range(stream_count):
            name = reader.string()
            streams[name] = StreamRun(*reader.unpack(_RUN))

        (id_count,) = reader.unpack(_U32)
        event_ids: list[tuple[str, int]] = []
        for _ in range(id_count):
            event_id = reader.string()
            event_ids.append((event_id, reader.unpack(_U64)[0]))

        if reader.position != len(reader.data):
            raise ValueError(f"{len(reader.data) - reader.position} trailing bytes")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptionError(
            f"{path} is malformed: {exc}", path, reader.position
        ) from None

    segment.next_offset = next_offset
    segment.size = size
    segment.first_timestamp_ns = first_ns
    segment.last_timestamp_ns = last_ns
    segment.index_offsets = offsets
    segment.index_positions = positions
    segment.streams = streams
    segment.event_ids = event_ids
    segment.sealed = True


def encode_truncation(first_offset: int, versions: dict[str, int]) -> bytes:
    """Return the TRUNCATION file bytes."""
    out = bytearray(_PREAMBLE.pack(TRUNCATION_MAGIC, FORMAT_VERSION, 0))
    out += _U64.pack(first_offset)
    out += _U32.pack(len(versions))
    for name, version in versions.items():
        _put_string(out, name)
        out += _U64.pack(version)
    return _seal(out)


def decode_truncation(data: bytes, path: str) -> tuple[int, dict[str, int]]:
    """Return ``(first_offset, versions)`` from a TRUNCATION file."""
    reader = _open_checked(data, TRUNCATION_MAGIC, path)
    try:
        (first_offset,) = reader.unpack(_U64)
        (count,) = reader.unpack(_U32)
        versions: dict[str, int] = {}
        for _ in range(count):
            name = reader.string()
            versions[name] = reader.unpack(_U64)[0]
        if reader.position != len(reader.data):
            raise ValueError(f"{len(reader.data) - reader.position} trailing bytes")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptionError(
            f"{path} is malformed: {exc}", path, reader.position
        ) from None
    return first_offset, versions
