"""Record framing in pure Python: the reference for the C version in csrc/.

A log file is a sequence of 32 KiB blocks. A logical record is stored as
one or more fragments, each with a 7-byte header, and no fragment crosses
a block boundary, so every block starts with a fragment header and a
reader can resynchronise at any block. When fewer than 7 bytes remain in a
block they are filled with zeros. Header layout (little-endian):

    checksum  u32  xxh32 (seed 0) of the length, type and payload bytes
    length    u16  payload bytes in this fragment
    type      u8   1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST

``frame`` and ``scan`` here and in ``storekit._cframing`` must produce the
same bytes and the same results for every input; tests check both.
"""

from __future__ import annotations

import struct

import xxhash

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7

FULL = 1
FIRST = 2
MIDDLE = 3
LAST = 4

# scan() status codes.
STATUS_OK = 0  # every byte up to the end of the buffer was consumed
STATUS_TRUNCATED = 1  # the buffer ends inside a record
STATUS_CORRUPT = 2  # a fragment failed a check; see the reason code

# Reason codes that come with STATUS_CORRUPT.
REASON_NONE = 0
REASON_CHECKSUM = 1  # checksum mismatch
REASON_ZEROS = 2  # an all-zero header where a fragment should start
REASON_BAD_TYPE = 3  # type byte outside 1..4
REASON_BAD_LENGTH = 4  # length runs past the end of its block
REASON_ORDER = 5  # FIRST/MIDDLE/LAST out of order

REASON_TEXT = {
    REASON_NONE: "no error",
    REASON_CHECKSUM: "checksum mismatch",
    REASON_ZEROS: "zero-filled header",
    REASON_BAD_TYPE: "invalid fragment type",
    REASON_BAD_LENGTH: "fragment length runs past its block",
    REASON_ORDER: "fragment out of order",
}

_LENGTH_TYPE = struct.Struct("<HB")
_HEADER = struct.Struct("<IHB")
_ZERO_HEADER = bytes(HEADER_SIZE)

_xxh32 = xxhash.xxh32_intdigest


def checksum(data: bytes) -> int:
    """Return the xxh32 (seed 0) of ``data``: the checksum every format uses."""
    return _xxh32(data)


def framed_size(length: int, block_offset: int) -> int:
    """Return how many bytes ``frame`` writes for a ``length``-byte payload."""
    total = 0
    first = True
    while first or length > 0:
        first = False
        left = BLOCK_SIZE - block_offset
        if left < HEADER_SIZE:
            total += left
            block_offset = 0
            left = BLOCK_SIZE
        take = min(length, left - HEADER_SIZE)
        total += HEADER_SIZE + take
        block_offset += HEADER_SIZE + take
        length -= take
    return total


def frame(payload: bytes, block_offset: int) -> bytes:
    """Return the bytes that store ``payload`` when the file is at ``block_offset``.

    ``block_offset`` is the file offset modulo BLOCK_SIZE. The result may
    start with zero padding that finishes the current block.
    """
    out = bytearray()
    view = memoryview(payload)
    length = len(payload)
    position = 0
    first = True
    while first or position < length:
        left = BLOCK_SIZE - block_offset
        if left < HEADER_SIZE:
            out += bytes(left)
            block_offset = 0
            left = BLOCK_SIZE
        take = min(length - position, left - HEADER_SIZE)
        last = position + take == length
        if first:
            kind = FULL if last else FIRST
        else:
            kind = LAST if last else MIDDLE
        first = False
        fragment = view[position : position + take]
        length_type = _LENGTH_TYPE.pack(take, kind)
        hasher = xxhash.xxh32(length_type)
        hasher.update(fragment)
        out += struct.pack("<I", hasher.intdigest())
        out += length_type
        out += fragment
        position += take
        block_offset += HEADER_SIZE + take
    return bytes(out)


def scan(buffer: bytes, start: int, base_offset: int):
    """Parse fragments from ``buffer[start:]``; ``buffer[0]`` is at ``base_offset``.

    ``start`` must be where a logical record begins. Returns
    ``(fragments, next_position, status, bad_position, reason)``:

    - ``fragments``: ``(payload_start, payload_length, type)`` tuples, indexes
      into ``buffer``, covering whole logical records only, in order;
    - ``next_position``: the buffer index where the first record not in
      ``fragments`` starts (``len(buffer)`` when everything was consumed);
    - ``status``: STATUS_OK, STATUS_TRUNCATED or STATUS_CORRUPT;
    - ``bad_position``: buffer index of the fragment that failed, or -1;
    - ``reason``: a REASON_* code.

    Zero padding at the end of a block is skipped. A buffer that ends in
    the padding of a block counts as fully consumed.
    """
    fragments: list[tuple[int, int, int]] = []
    pending: list[tuple[int, int, int]] = []
    record_start = start
    position = start
    end = len(buffer)
    while position < end:
        block_left = BLOCK_SIZE - (base_offset + position) % BLOCK_SIZE
        if block_left < HEADER_SIZE:
            # Trailer padding: skip it whether or not it is all zeros; the
            # next header is checked on its own.
            position += min(block_left, end - position)
            if not pending:
                record_start = position
            continue
        if end - position < HEADER_SIZE:
            return fragments, record_start, STATUS_TRUNCATED, -1, REASON_NONE
        stored, length, kind = _HEADER.unpack_from(buffer, position)
        if stored == 0 and length == 0 and kind == 0:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_ZEROS
        if kind < FULL or kind > LAST:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_BAD_TYPE
        if HEADER_SIZE + length > block_left:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_BAD_LENGTH
        payload_start = position + HEADER_SIZE
        if payload_start + length > end:
            return fragments, record_start, STATUS_TRUNCATED, -1, REASON_NONE
        computed = _xxh32(buffer[position + 4 : payload_start + length])
        if computed != stored:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_CHECKSUM
        in_record = bool(pending)
        if kind in (FULL, FIRST) and in_record:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_ORDER
        if kind in (MIDDLE, LAST) and not in_record:
            return fragments, record_start, STATUS_CORRUPT, position, REASON_ORDER
        pending.append((payload_start, length, kind))
        position = payload_start + length
        if kind in (FULL, LAST):
            fragments.extend(pending)
            pending.clear()
            record_start = position
    if pending:
        return fragments, record_start, STATUS_TRUNCATED, -1, REASON_NONE
    return fragments, position, STATUS_OK, -1, REASON_NONE


def first_valid_header(buffer: bytes, base_offset: int, from_position: int) -> int:
    """Return the buffer index of the first block start at or after ``from_position``
    whose fragment header passes its checksum, or -1.

    Every block starts with a fragment header, so a valid header at a block
    start after some damage proves the damage is not a torn tail.
    """
    block = -((base_offset + from_position) // -BLOCK_SIZE)  # ceiling division
    position = block * BLOCK_SIZE - base_offset
    end = len(buffer)
    while position + HEADER_SIZE <= end:
        stored, length, kind = _HEADER.unpack_from(buffer, position)
        payload_end = position + HEADER_SIZE + length
        if (
            FULL <= kind <= LAST
            and length <= BLOCK_SIZE - HEADER_SIZE
            and payload_end <= end
            and _xxh32(buffer[position + 4 : payload_end]) == stored
        ):
            return position
        position += BLOCK_SIZE
    return -1
