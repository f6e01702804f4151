"""Events and the payload of one event-log record.

One call of ``EventLog.append`` writes one record, so the events of an
append survive a crash together or not at all. The record payload is
framed by ``storekit._backend.framing`` (the WAL's block framing, which
adds the xxh32 checksum). Payload layout, little-endian, format version 1:

    type          u8    1 = events
    first_offset  u64   offset of the first event in the record
    first_version u64   stream version of the first event
    timestamp_ns  u64   append time, nanoseconds since the Unix epoch
    count         u32   number of events (at least 1)
    stream_len    u16   then stream_len bytes of UTF-8 stream name
    count times:
        id_len    u16   0 when the event has no id
        data_len  u32
        id bytes, then data bytes

Event ``i`` of the record has offset ``first_offset + i`` and version
``first_version + i``.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import CorruptionError

__all__ = [
    "Event",
    "RecordSummary",
    "RECORD_EVENTS",
    "MAX_NAME_BYTES",
    "encode_bodies",
    "encode_header",
    "decode_events",
    "decode_summary",
]

RECORD_EVENTS = 1

#: Largest stream name or event id, in UTF-8 bytes; the formats store its
#: length in a u16.
MAX_NAME_BYTES = 0xFFFF

_HEADER = struct.Struct("<BQQQIH")
_EVENT = struct.Struct("<HI")
_HEADER_SIZE = _HEADER.size
_EVENT_SIZE = _EVENT.size


class Event(NamedTuple):
    """One event as stored in the log.

    ``timestamp`` is the append time in seconds since the Unix epoch (the
    same clock as ``time.time()``); all events of one append share it.
    ``event_id`` is the id given at append time, or None.
    """

    offset: int
    stream: str
    version: int
    data: bytes
    timestamp: float
    event_id: str | None


class RecordSummary(NamedTuple):
    """The fields of a record that recovery and indexing need, without the data."""

    first_offset: int
    first_version: int
    timestamp_ns: int
    count: int
    stream: str
    event_ids: list[tuple[str, int]]  # (id, offset) for events that have an id


def encode_bodies(datas: list[bytes], ids: list[bytes] | None) -> bytes:
    """Encode the per-event part of a record: lengths, ids and data."""
    pack = _EVENT.pack
    parts: list[bytes] = []
    append = parts.append
    if ids is None:
        for data in datas:
            append(pack(0, len(data)))
            append(data)
    else:
        for event_id, data in zip(ids, datas, strict=True):
            append(pack(len(event_id), len(data)))
            append(event_id)
            append(data)
    return b"".join(parts)


def encode_header(
    first_offset: int,
    first_version: int,
    timestamp_ns: int,
    count: int,
    stream: bytes,
) -> bytes:
    """Encode the fixed part of a record; the bodies follow it."""
    return (
        _HEADER.pack(
            RECORD_EVENTS, first_offset, first_version, timestamp_ns, count, len(stream)
        )
        + stream
    )


def _read_header(payload: bytes) -> tuple[int, int, int, int, str, int]:
    if len(payload) < _HEADER_SIZE:
        raise ValueError(f"record of {len(payload)} bytes is shorter than its header")
    kind, first_offset, first_version, timestamp_ns, count, stream_len = (
        _HEADER.unpack_from(payload, 0)
    )
    if kind != RECORD_EVENTS:
        raise ValueError(f"unknown record type {kind}")
    if count == 0:
        raise ValueError("record contains no events")
    end = _HEADER_SIZE + stream_len
    if end > len(payload):
        raise ValueError("stream name runs past the end of the record")
    stream = payload[_HEADER_SIZE:end].decode("utf-8")
    return first_offset, first_version, timestamp_ns, count, stream, end


def decode_summary(payload: bytes) -> RecordSummary:
    """Decode a record's header and event ids; raise ValueError if malformed."""
    try:
        first_offset, first_version, timestamp_ns, count, stream, position = (
            _read_header(payload)
        )
        ids: list[tuple[str, int]] = []
        unpack = _EVENT.unpack_from
        size = len(payload)
        for index in range(count):
            id_len, data_len = unpack(payload, position)
            position += _EVENT_SIZE
            if id_len:
                ids.append(
                    (
                        payload[position : position + id_len].decode("utf-8"),
                        first_offset + index,
                    )
                )
            position += id_len + data_len
            if position > size:
                raise ValueError("event runs past the end of the record")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed record: {exc}") from None
    if position != size:
        raise ValueError(f"{size - position} trailing bytes after {count} events")
    return RecordSummary(first_offset, first_version, timestamp_ns, count, stream, ids)


def decode_events(
    payload: bytes,
    path: str,
    position: int,
    min_offset: int = 0,
    only_stream: str | None = None,
) -> list[Event]:
    """Decode the events of a record whose offset is at least ``min_offset``.

    With ``only_stream``, a record of another stream decodes to no events.
    ``path`` and ``position`` locate the record for the CorruptionError
    raised when the payload is malformed.
    """
    try:
        first_offset, first_version, timestamp_ns, count, stream, cursor = _read_header(
            payload
        )
        if only_stream is not None and stream != only_stream:
            return []
        timestamp = timestamp_ns / 1e9
        unpack = _EVENT.unpack_from
        events: list[Event] = []
        append = events.append
        new = tuple.__new__
        for index in range(count):
            id_len, data_len = unpack(payload, cursor)
            cursor += _EVENT_SIZE
            event_id = None
            if id_len:
                event_id = payload[cursor : cursor + id_len].decode("utf-8")
                cursor += id_len
            end = cursor + data_len
            offset = first_offset + index
            if offset >= min_offset:
                data = payload[cursor:end]
                if len(data) != data_len:
                    raise ValueError("event runs past the end of the record")
                # tuple.__new__ skips NamedTuple's argument parsing, which is
                # a visible share of read time for small events.
                append(
                    new(
                        Event,
                        (
                            offset,
                            stream,
                            first_version + index,
                            data,
                            timestamp,
                            event_id,
                        ),
                    )
                )
            cursor = end
        if cursor != len(payload):
            raise ValueError(f"record length does not match its {count} events")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptionError(
            f"malformed event record in {path} at offset {position}: {exc}",
            path,
            position,
        ) from None
    return events
