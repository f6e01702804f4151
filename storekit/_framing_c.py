"""Record framing through the compiled cffi module ``storekit._cframing``.

The functions and constants are those of ``storekit._framing_py``, which is
the reference and documents the format, and they give the same results for
every input. The argument checks are the reference's own functions, so
both modules raise the same exceptions. Importing this module raises
ImportError when the C extension was not built; ``storekit._backend`` then
falls back to the pure-Python module.

The C functions release the GIL while they run (cffi's default), so several
threads can verify logs at once. A bytearray or mmap must therefore not be
written by another thread while it is being scanned or framed.
"""

from __future__ import annotations

from typing import Any

from . import _framing_py
from ._cframing import ffi, lib
from ._framing_py import (
    BLOCK_SIZE,
    FIRST,
    FULL,
    HEADER_SIZE,
    LAST,
    MIDDLE,
    REASON_BAD_LENGTH,
    REASON_BAD_TYPE,
    REASON_CHECKSUM,
    REASON_NONE,
    REASON_ORDER,
    REASON_TEXT,
    REASON_ZEROS,
    STATUS_CORRUPT,
    STATUS_OK,
    STATUS_TRUNCATED,
    _check_first_valid_header_arguments,
    _check_frame_arguments,
    _check_framed_size_arguments,
    _check_scan_arguments,
)

__all__ = [
    "BLOCK_SIZE",
    "FIRST",
    "FULL",
    "HEADER_SIZE",
    "LAST",
    "MIDDLE",
    "REASON_BAD_LENGTH",
    "REASON_BAD_TYPE",
    "REASON_CHECKSUM",
    "REASON_NONE",
    "REASON_ORDER",
    "REASON_TEXT",
    "REASON_ZEROS",
    "STATUS_CORRUPT",
    "STATUS_OK",
    "STATUS_TRUNCATED",
    "checksum",
    "first_valid_header",
    "frame",
    "framed_size",
    "scan",
]

# scan() reinterprets the fragment array as a flat int64_t array, which
# needs sk_fragment to be exactly three int64_t fields.
_FRAGMENT_FIELDS = 3
if ffi.sizeof("sk_fragment") != _FRAGMENT_FIELDS * ffi.sizeof("int64_t"):
    raise ImportError(
        "storekit._cframing has an unexpected sk_fragment layout; rebuild it "
        "with `python setup.py build_ext --inplace` or reinstall storekit"
    )

# Most fragments one sk_scan call can return (24 bytes each, so 1.5 MiB).
# A longer buffer is scanned in several calls, each resuming where the last
# stopped.
_MAX_FRAGMENTS_PER_CALL = 1 << 16

# Output and fragment arrays are fully written by the C code before they
# are read, so zero-filling them first would be wasted work.
_new_uninitialised = ffi.new_allocator(should_clear_after_alloc=False)


# checksum() is the reference's: the xxhash package's C function has less
# call overhead than a cffi call (about 0.13 us against 0.28 us for 100
# bytes on CPython 3.11, x86-64), and both compute the same XXH32.
checksum = _framing_py.checksum


def framed_size(length: int, block_offset: int) -> int:
    """Return how many bytes ``frame`` writes for a ``length``-byte payload."""
    _check_framed_size_arguments(length, block_offset)
    return lib.sk_framed_size(length, block_offset)


def frame(payload: bytes, block_offset: int) -> bytes:
    """Return the bytes that store ``payload`` when the file is at ``block_offset``.

    ``block_offset`` is the file offset modulo BLOCK_SIZE. The result may
    start with zero padding that finishes the current block.
    """
    length = _check_frame_arguments(payload, block_offset)
    size = lib.sk_framed_size(length, block_offset)
    out = _new_uninitialised("uint8_t[]", size)
    # cffi passes bytes to a pointer parameter without a copy. Other
    # bytes-like objects go through ffi.from_buffer, released by the with
    # block so that an mmap can be closed right after the call.
    if type(payload) is bytes:
        written = lib.sk_frame(payload, length, block_offset, out, size)
    else:
        with ffi.from_buffer(payload) as pointer:
            written = lib.sk_frame(pointer, length, block_offset, out, size)
    if written != size:
        raise RuntimeError(
            f"storekit._cframing wrote {written} bytes instead of {size}; "
            "the extension does not match this version of storekit"
        )
    return ffi.buffer(out, size)[:]


def scan(
    buffer: Any, start: int, base_offset: int
) -> tuple[list[tuple[int, int, int]], int, int, int, int]:
    """Parse fragments from ``buffer[start:]``; ``buffer[0]`` is at ``base_offset``.

    Returns ``(fragments, next_position, status, bad_position, reason)``
    exactly as ``storekit._framing_py.scan`` documents.
    """
    end = _check_scan_arguments(buffer, start, base_offset)
    fragments: list[tuple[int, int, int]] = []
    result = ffi.new("sk_scan_result *")
    # Every fragment uses at least HEADER_SIZE bytes, so this many entries
    # hold every fragment of a buffer that is not too long.
    capacity = min((end - start) // HEADER_SIZE + 1, _MAX_FRAGMENTS_PER_CALL)
    array = _new_uninitialised("sk_fragment[]", capacity)
    position = start
    with ffi.from_buffer(buffer) as pointer:
        while True:
            status = lib.sk_scan(
                pointer, end, position, base_offset, array, capacity, result
            )
            if status != 0:
                raise RuntimeError(
                    f"storekit._cframing rejected scan arguments ({status}); "
                    "the extension does not match this version of storekit"
                )
            _append_fragments(fragments, array, result.count)
            if result.status != lib.SK_STATUS_FULL:
                break
            if result.count == 0:
                # One record has more fragments than the array holds.
                capacity *= 2
                array = _new_uninitialised("sk_fragment[]", capacity)
            position = result.next_position
    return (
        fragments,
        result.next_position,
        result.status,
        result.bad_position,
        result.reason,
    )


def _append_fragments(
    fragments: list[tuple[int, int, int]], array: Any, count: int
) -> None:
    """Append the first ``count`` entries of an sk_fragment array as tuples."""
    if count == 0:
        return
    values = ffi.unpack(ffi.cast("int64_t *", array), count * _FRAGMENT_FIELDS)
    # zip over one iterator three times groups the flat values in threes.
    fields = iter(values)
    fragments.extend(zip(fields, fields, fields, strict=True))


def first_valid_header(buffer: Any, base_offset: int, from_position: int) -> int:
    """Return the buffer index of the first block start at or after ``from_position``
    whose fragment header passes its checksum, or -1.
    """
    end = _check_first_valid_header_arguments(buffer, base_offset, from_position)
    with ffi.from_buffer(buffer) as pointer:
        found = lib.sk_first_valid_header(pointer, end, base_offset, from_position)
    if found < -1:
        raise RuntimeError(
            f"storekit._cframing rejected first_valid_header arguments ({found}); "
            "the extension does not match this version of storekit"
        )
    return found
