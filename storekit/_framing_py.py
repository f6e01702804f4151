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
from typing import Any

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

# Largest offset or length the argument checks accept: the largest signed
# 64-bit file offset, which is also the integer range of the C version.
_MAX_OFFSET = 2**63 - 1


# Argument checks. storekit._framing_c calls these same functions, so both
# implementations raise the same exceptions with the same messages.


def _check_int(value: Any, name: str) -> None:
    """Raise TypeError unless ``value`` is an int (bool is rejected)."""
    if type(value) is not int and (
        not isinstance(value, int) or isinstance(value, bool)
    ):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _check_buffer(value: Any, name: str) -> int:
    """Return the size in bytes of bytes-like ``value``, or raise TypeError.

    Any contiguous one-dimensional buffer of single bytes is accepted:
    bytes, bytearray, memoryview, mmap, array('b').
    """
    if type(value) is bytes or type(value) is bytearray:
        return len(value)
    try:
        view = memoryview(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a bytes-like object, not {type(value).__name__}"
        ) from None
    with view:
        if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
            raise TypeError(
                f"{name} must be a contiguous one-dimensional buffer of bytes, "
                f"not a {type(value).__name__} with format {view.format!r}, "
                f"{view.ndim} dimensions and {view.itemsize}-byte items"
            )
        return view.nbytes


def _check_block_offset(block_offset: Any) -> None:
    _check_int(block_offset, "block_offset")
    if not 0 <= block_offset < BLOCK_SIZE:
        raise ValueError(
            f"block_offset must be between 0 and {BLOCK_SIZE - 1} "
            f"(a file offset modulo BLOCK_SIZE), got {block_offset}"
        )


def _check_base_offset(base_offset: Any) -> None:
    _check_int(base_offset, "base_offset")
    if not 0 <= base_offset <= _MAX_OFFSET:
        raise ValueError(
            f"base_offset must be a file offset between 0 and {_MAX_OFFSET}, "
            f"got {base_offset}"
        )


def _check_framed_size_arguments(length: Any, block_offset: Any) -> None:
    _check_int(length, "length")
    if not 0 <= length <= _MAX_OFFSET:
        raise ValueError(f"length must be between 0 and {_MAX_OFFSET}, got {length}")
    _check_block_offset(block_offset)


def _check_frame_arguments(payload: Any, block_offset: Any) -> int:
    """Check ``frame``'s arguments and return the payload size in bytes."""
    size = _check_buffer(payload, "payload")
    _check_block_offset(block_offset)
    return size


def _check_scan_arguments(buffer: Any, start: Any, base_offset: Any) -> int:
    """Check ``scan``'s arguments and return the buffer size in bytes."""
    size = _check_buffer(buffer, "buffer")
    _check_int(start, "start")
    if not 0 <= start <= size:
        raise ValueError(
            f"start must be between 0 and the buffer size {size}, got {start}"
        )
    _check_base_offset(base_offset)
    return size


def _check_first_valid_header_arguments(
    buffer: Any, base_offset: Any, from_position: Any
) -> int:
    """Check ``first_valid_header``'s arguments and return the buffer size.

    ``from_position`` may lie beyond the end of the buffer: there is then no
    header to find and the result is -1.
    """
    size = _check_buffer(buffer, "buffer")
    _check_base_offset(base_offset)
    _check_int(from_position, "from_position")
    if not 0 <= from_position <= _MAX_OFFSET:
        raise ValueError(
            f"from_position must be between 0 and {_MAX_OFFSET}, got {from_position}"
        )
    return size


def checksum(data: bytes) -> int:
    """Return the xxh32 (seed 0) of ``data``: the checksum every format uses."""
    _check_buffer(data, "data")
    return _xxh32(data)


def framed_size(length: int, block_offset: int) -> int:
    """Return how many bytes ``frame`` writes for a ``length``-byte payload."""
    _check_framed_size_arguments(length, block_offset)
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
    _check_frame_arguments(payload, block_offset)
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
    _check_scan_arguments(buffer, start, base_offset)
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
    _check_first_valid_header_arguments(buffer, base_offset, from_position)
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
