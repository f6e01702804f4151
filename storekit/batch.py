"""WriteBatch, the unit of atomic writes, and its byte encoding.

The encoding is the payload of one WAL record, so a batch is applied whole
or not at all after a crash. Layout (little-endian, see docs/formats.md):

    sequence   u64   sequence number of the first operation
    count      u32   number of operations
    count times:
        kind   u8    1 = put, 0 = delete
        klen   varint, then klen key bytes
        vlen   varint, then vlen value bytes   (puts only)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ._validate import MAX_KEY_SIZE, MAX_VALUE_SIZE, check_key, check_value
from .errors import CorruptionError

KIND_DELETE = 0
KIND_PUT = 1

_HEADER = struct.Struct("<QI")


class WriteBatch:
    """An ordered list of puts and deletes that a store applies atomically.

    Later operations on the same key win. A batch may be reused after
    ``clear()``. It is not thread-safe.

    >>> batch = WriteBatch()
    >>> batch.put(b"a", b"1")
    >>> batch.delete(b"b")
    >>> len(batch)
    2
    """

    __slots__ = ("_ops", "_bytes")

    def __init__(self) -> None:
        self._ops: list[tuple[int, bytes, bytes | None]] = []
        self._bytes = 0

    def put(self, key: bytes, value: bytes) -> None:
        """Add a put of ``key`` to ``value``."""
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = check_value(value)
        self._ops.append((KIND_PUT, key, value))
        self._bytes += len(key) + len(value)

    def delete(self, key: bytes) -> None:
        """Add a delete of ``key``; deleting a missing key is not an error."""
        key = check_key(key)
        self._ops.append((KIND_DELETE, key, None))
        self._bytes += len(key)

    def clear(self) -> None:
        """Remove every operation."""
        self._ops.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """Yield ``(kind, key, value)`` with kind KIND_PUT or KIND_DELETE."""
        return iter(self._ops)

    @property
    def approximate_size(self) -> int:
        """Total bytes of keys and values in the batch."""
        return self._bytes

    def __repr__(self) -> str:
        return f"<WriteBatch {len(self._ops)} ops, {self._bytes} bytes>"


def _append_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def encode_batch(ops: list[tuple[int, bytes, bytes | None]], sequence: int) -> bytes:
    """Encode operations whose first sequence number is ``sequence``."""
    out = bytearray(_HEADER.pack(sequence, len(ops)))
    put_structs = _PUT_OPERATION
    for kind, key, value in ops:
        key_size = len(key)
        if kind == KIND_PUT and key_size < 0x80 and len(value) < 0x80:  # type: ignore[arg-type]
            # The common small put: kind, key length, key and value length
            # in one struct call.
            out += put_structs[key_size].pack(KIND_PUT, key_size, key, len(value))  # type: ignore[arg-type]
            out += value  # type: ignore[operator]
            continue
        if key_size < 0x80:
            out += bytes((kind, len(key)))
        else:
            out.append(kind)
            _append_varint(out, len(key))
        out += key
        if kind == KIND_PUT:
            if len(value) < 0x80:  # type: ignore[arg-type]
                out.append(len(value))  # type: ignore[arg-type]
            else:
                _append_varint(out, len(value))  # type: ignore[arg-type]
            out += value  # type: ignore[operator]
    return bytes(out)


# _PUT_OPERATION[n]: kind, key length, the n-byte key and the value length
# of a put in a batch, every length a one-byte varint, for n below 0x80.
_PUT_OPERATION = [struct.Struct(f"<BB{size}sB") for size in range(0x80)]

# Header of a one-operation batch: sequence, count 1, kind, and the key
# length as a one-byte varint.
_SINGLE_HEADER = struct.Struct("<QIBB")


# _SINGLE_PUT[n]: the header of a one-put batch, its n-byte key and the
# value length as a one-byte varint, for n below 0x80.
_SINGLE_PUT = [struct.Struct(f"<QIBB{size}sB") for size in range(0x80)]


def encode_put(key: bytes, value: bytes, sequence: int) -> bytes:
    """Encode a batch of one put; the same bytes as ``encode_batch`` gives."""
    key_size = len(key)
    if key_size < 0x80 and len(value) < 0x80:
        return (
            _SINGLE_PUT[key_size].pack(sequence, 1, KIND_PUT, key_size, key, len(value))
            + value
        )
    return encode_batch([(KIND_PUT, key, value)], sequence)


def encode_delete(key: bytes, sequence: int) -> bytes:
    """Encode a batch of one delete; the same bytes as ``encode_batch`` gives."""
    if len(key) < 0x80:
        return _SINGLE_HEADER.pack(sequence, 1, KIND_DELETE, len(key)) + key
    return encode_batch([(KIND_DELETE, key, None)], sequence)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def decode_batch(data: bytes) -> tuple[int, list[tuple[int, bytes, bytes | None]]]:
    """Decode a batch payload into ``(sequence, ops)``.

    Raises CorruptionError when the payload is malformed. The caller adds
    the file and offset, because a payload has no location of its own.
    """
    if len(data) < _HEADER.size:
        raise CorruptionError(f"batch payload of {len(data)} bytes is too short")
    sequence, count = _HEADER.unpack_from(data, 0)
    pos = _HEADER.size
    ops: list[tuple[int, bytes, bytes | None]] = []
    try:
        for _ in range(count):
            kind = data[pos]
            pos += 1
            klen, pos = _read_varint(data, pos)
            key = data[pos : pos + klen]
            if len(key) != klen:
                raise ValueError("key runs past the end of the payload")
            pos += klen
            if kind == KIND_PUT:
                vlen, pos = _read_varint(data, pos)
                value = data[pos : pos + vlen]
                if len(value) != vlen:
                    raise ValueError("value runs past the end of the payload")
                pos += vlen
                ops.append((KIND_PUT, key, value))
            elif kind == KIND_DELETE:
                ops.append((KIND_DELETE, key, None))
            else:
                raise ValueError(f"unknown operation kind {kind}")
    except (IndexError, ValueError) as exc:
        raise CorruptionError(f"malformed batch payload: {exc}") from None
    if pos != len(data):
        raise CorruptionError(
            f"batch payload has {len(data) - pos} trailing bytes after {count} ops"
        )
    return sequence, ops
