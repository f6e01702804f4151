"""Blocks of a table file: entry encoding, restart points and the block trailer.

Every block of a table (data, index, properties and filter) is stored as
``contents`` (possibly compressed) followed by a 5-byte trailer:

    type       u8    0 = stored as is, 1 = LZ4
    checksum   u32   xxh32 (seed 0) of the stored bytes and the type byte

An LZ4 block stores a u32 little-endian uncompressed length and then one
LZ4 block, which is what ``lz4.block.compress(data, store_size=True)``
writes. The uncompressed ``contents`` of a data, index or properties block
are the entries followed by the restart array:

    entry:     shared       varint  bytes shared with the previous key
               unshared     varint  key bytes that follow
               value_size   varint
               key_delta    unshared bytes
               tag          u64     data blocks only: sequence << 8 | kind
               value        value_size bytes
    restarts:  u32 offset of each restart point, then u32 restart count

An entry at a restart point stores its whole key (``shared`` is 0), so a
reader can start decoding there. Data blocks carry the tag. Index and
properties blocks are "plain" blocks without it.

This module also contains the other byte encodings of a table file: block
handles, index separators, the properties block and the footer.
docs/formats.md (section 6) describes the whole file.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from typing import NamedTuple

import lz4.block

from .._backend import framing
from ..batch import KIND_DELETE, KIND_PUT

__all__ = [
    "ABSENT",
    "BLOCK_TRAILER_SIZE",
    "CONTINUES",
    "NOT_VISIBLE",
    "COMPRESSION_LZ4",
    "COMPRESSION_NONE",
    "FOOTER_SIZE",
    "FORMAT_VERSION",
    "INTEGER_PROPERTIES",
    "KIND_DELETE",
    "KIND_PUT",
    "MAGIC",
    "MAX_SEQUENCE",
    "BlockBuilder",
    "BlockFormatError",
    "DataBlock",
    "Entry",
    "Footer",
    "REQUIRED_PROPERTIES",
    "decode_data_block",
    "decode_data_entries",
    "decode_handle",
    "decode_plain_block",
    "decode_properties",
    "encode_handle",
    "encode_properties",
    "encode_varint",
    "seal_block",
    "shared_prefix_length",
    "shortest_separator",
    "unseal_block",
    "walk_block",
]

BLOCK_TRAILER_SIZE = 5

COMPRESSION_NONE = 0
COMPRESSION_LZ4 = 1

#: Largest sequence number that fits in a tag: 56 bits. The low byte of a
#: data entry's tag is the kind, KIND_PUT (1) or KIND_DELETE (0).
MAX_SEQUENCE = (1 << 56) - 1

_TAG = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<BI")


class BlockFormatError(Exception):
    """Block bytes that fail a check.

    Only the table reader catches it, and it re-raises it as
    ``storekit.errors.CorruptionError`` with the file path and block offset.
    """


# -- small encodings -----------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Return ``value`` (>= 0) as a little-endian base-128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_varint(data: bytes, position: int) -> tuple[int, int]:
    """Return ``(value, next_position)`` for the varint at ``position``."""
    result = 0
    shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 35:
            raise BlockFormatError("varint longer than 5 bytes")


def _decode_entry_header(data: bytes, position: int) -> tuple[int, int, int, int]:
    """Return ``(shared, unshared, value_size, next_position)`` for any varint sizes."""
    shared, position = _decode_varint(data, position)
    unshared, position = _decode_varint(data, position)
    value_size, position = _decode_varint(data, position)
    return shared, unshared, value_size, position


def shared_prefix_length(first: bytes, second: bytes) -> int:
    """Return the length of the longest common prefix of two byte strings."""
    length = min(len(first), len(second))
    # XOR of the prefixes as big-endian integers: the number of leading zero
    # bytes of the result is the shared length, and the work happens in C.
    difference = int.from_bytes(first[:length], "big") ^ int.from_bytes(
        second[:length], "big"
    )
    return length - (difference.bit_length() + 7) // 8


# -- building ------------------------------------------------------------------


class BlockBuilder:
    """An encoder of sorted entries into block contents with prefix compression.

    Keys must arrive in the order the reader expects. The builder does not
    check it, because the table builder checks order on internal keys.
    """

    def __init__(self, restart_interval: int) -> None:
        self._restart_interval = restart_interval
        self._buffer = bytearray()
        self._restarts = [0]
        self._since_restart = 0
        self._last_key = b""
        self.entries = 0

    def add(self, key: bytes, value: bytes, tag: int | None = None) -> None:
        """Append one entry; ``tag`` is given for data blocks only."""
        buffer = self._buffer
        if self._since_restart < self._restart_interval:
            shared = shared_prefix_length(self._last_key, key)
        else:
            self._restarts.append(len(buffer))
            self._since_restart = 0
            shared = 0
        unshared = len(key) - shared
        value_size = len(value)
        if shared < 0x80 and unshared < 0x80 and value_size < 0x80:
            buffer += bytes((shared, unshared, value_size))
        else:
            buffer += encode_varint(shared)
            buffer += encode_varint(unshared)
            buffer += encode_varint(value_size)
        buffer += key[shared:]
        if tag is not None:
            buffer += _TAG.pack(tag)
        buffer += value
        self._last_key = key
        self._since_restart += 1
        self.entries += 1

    @property
    def size_estimate(self) -> int:
        """Size in bytes of the contents ``finish`` would return now."""
        return len(self._buffer) + 4 * len(self._restarts) + 4

    def finish(self) -> bytes:
        """Return the block contents: the entries and the restart array."""
        restarts = self._restarts
        return (
            bytes(self._buffer)
            + struct.pack(f"<{len(restarts)}I", *restarts)
            + _U32.pack(len(restarts))
        )

    def reset(self) -> None:
        """Forget every entry so the builder can encode the next block."""
        self._buffer = bytearray()
        self._restarts = [0]
        self._since_restart = 0
        self._last_key = b""
        self.entries = 0


def seal_block(contents: bytes, compression: int) -> bytes:
    """Return the bytes to store for ``contents``: maybe compressed, plus the trailer.

    With COMPRESSION_LZ4 the block is stored compressed only when that
    saves at least 12.5% of the contents, the rule LevelDB applies to its
    compressed blocks: a smaller gain does not pay for decompressing the
    block on every read.
    """
    stored = contents
    block_type = COMPRESSION_NONE
    if compression == COMPRESSION_LZ4:
        compressed = lz4.block.compress(contents, store_size=True)
        if len(compressed) < len(contents) - len(contents) // 8:
            stored = compressed
            block_type = COMPRESSION_LZ4
    typed = stored + bytes((block_type,))
    return typed + _U32.pack(framing.checksum(typed))


# -- reading -------------------------------------------------------------------


#: Bound on uncompressed / compressed size of an LZ4 block. A match
#: length spends one extra byte per 255 bytes of output, so no block
#: expands by a larger factor.
_LZ4_MAX_RATIO = 255


def unseal_block(
    raw: bytes, size: int, verify_checksum: bool, max_contents: int | None
) -> bytes:
    """Check the trailer of a stored block and return its uncompressed contents.

    ``raw`` is the ``size`` stored bytes followed by the trailer. With
    ``verify_checksum`` false a damaged block may decode to wrong entries.
    ``max_contents`` bounds the uncompressed size that an LZ4 header may
    claim, so an unchecked corrupt header cannot make the reader allocate
    gigabytes.
    """
    if len(raw) != size + BLOCK_TRAILER_SIZE:
        raise BlockFormatError(
            f"block of {size} bytes plus trailer runs past the end of the file "
            f"({len(raw)} bytes readable)"
        )
    block_type, stored_checksum = _TRAILER.unpack_from(raw, size)
    if verify_checksum:
        computed = framing.checksum(raw[: size + 1])
        if computed != stored_checksum:
            raise BlockFormatError(
                f"checksum mismatch (stored {stored_checksum:#010x}, "
                f"computed {computed:#010x})"
            )
    if block_type == COMPRESSION_NONE:
        return raw[:size]
    if block_type != COMPRESSION_LZ4:
        raise BlockFormatError(f"unknown compression type {block_type}")
    if size < 4:
        raise BlockFormatError(f"LZ4 block of {size} bytes has no length header")
    (uncompressed_size,) = _U32.unpack_from(raw, 0)
    if uncompressed_size > _LZ4_MAX_RATIO * (size - 4) + 16:
        # No LZ4 block expands more than this, so the header is corrupt.
        # Checking before decompressing avoids allocating the claimed size.
        raise BlockFormatError(
            f"LZ4 header claims {uncompressed_size} bytes, more than "
            f"{size - 4} compressed bytes can hold"
        )
    if max_contents is not None and uncompressed_size > max_contents:
        raise BlockFormatError(
            f"LZ4 header claims {uncompressed_size} bytes, more than the "
            f"largest block in the table ({max_contents} bytes)"
        )
    try:
        contents = lz4.block.decompress(
            memoryview(raw)[4:size], uncompressed_size=uncompressed_size
        )
    except lz4.block.LZ4BlockError as exc:
        raise BlockFormatError(f"LZ4 decompression failed: {exc}") from None
    if len(contents) != uncompressed_size:
        raise BlockFormatError(
            f"LZ4 block decompressed to {len(contents)} bytes, "
            f"header says {uncompressed_size}"
        )
    return contents


def _entries_end(contents: bytes) -> int:
    """Return the offset where the restart array starts."""
    if len(contents) < 4:
        raise BlockFormatError(f"block contents of {len(contents)} bytes are too short")
    (restart_count,) = _U32.unpack_from(contents, len(contents) - 4)
    end = len(contents) - 4 - 4 * restart_count
    if restart_count == 0 or end < 0:
        raise BlockFormatError(f"invalid restart count {restart_count}")
    return end


#: ``DataBlock.find`` results other than an entry.
ABSENT = 0  # the block has no entry for the key
NOT_VISIBLE = 1  # every version of the key here is newer than the read sequence
CONTINUES = 2  # as NOT_VISIBLE, and older versions may follow in the next block

#: A decoded data entry: ``(key, sequence, value)``, value None for a tombstone.
Entry = tuple[bytes, int, bytes | None]

# Bytes of one bytes object apart from its data (CPython 3.11, 64-bit).
_BYTES_OBJECT_OVERHEAD = sys.getsizeof(b"")


class DataBlock:
    """A decoded data block: the unit kept in the block cache.

    Construction decodes every entry once. Entry ``i`` has the tag
    ``tags[i]`` (sequence << 8 | kind) stored at offset ``tag_positions[i]``
    of the contents, and its value runs from 8 bytes after that offset up
    to ``value_ends[i]``. Values are sliced out of the contents on demand
    instead of kept as one object per value.

    When every key of the block has the same length and the keys are not
    all equal, the block keeps the prefix ``P`` that all its keys share and
    one bytes object of the remaining ``n``-byte suffixes, the suffix of
    entry ``i`` at ``[i * n, (i + 1) * n)``. A point lookup is then one
    ``bytes.find`` that skips matches at offsets that are not a multiple of
    ``n``. That form stores no object per key, which keeps a cached block
    of 16-byte keys and 100-byte values at about 1.3 times its contents in
    memory instead of 1.7 times with a list of keys, so more blocks fit in
    the block cache. Other blocks keep a list of keys and are searched with
    ``bisect``.

    Immutable once built, so threads share it without a lock.
    """

    __slots__ = (
        "_contents",
        "_key_list",
        "_key_prefix",
        "_suffixes",
        "_key_length",
        "_suffix_length",
        "_count",
        "_tags",
        "_tag_positions",
        "_value_ends",
    )

    def __init__(self, contents: bytes) -> None:
        end = _entries_end(contents)
        (first_restart,) = _U32.unpack_from(contents, end)
        if first_restart != 0:
            raise BlockFormatError(f"first restart point is {first_restart}, not 0")
        # Entries are decoded from offset 0, so the other restart points are
        # not needed here. TableReader.verify checks them (walk_block).

        keys: list[bytes] = []
        tag_positions: list[int] = []
        value_ends: list[int] = []
        # Locals: this loop runs once per entry of every block read from disk.
        append_key = keys.append
        append_tag_position = tag_positions.append
        append_value_end = value_ends.append
        position = 0
        key = b""
        try:
            while position < end:
                shared = contents[position]
                unshared = contents[position + 1]
                value_size = contents[position + 2]
                if (shared | unshared | value_size) < 0x80:
                    position += 3
                else:
                    shared, unshared, value_size, position = _decode_entry_header(
                        contents, position
                    )
                key_end = position + unshared
                if shared:
                    if shared > len(key):
                        raise BlockFormatError(
                            f"entry at {position} shares {shared} bytes of a "
                            f"{len(key)}-byte key"
                        )
                    key = key[:shared] + contents[position:key_end]
                else:
                    key = contents[position:key_end]
                position = key_end + 8 + value_size
                append_key(key)
                append_tag_position(key_end)
                append_value_end(position)
        except IndexError:
            raise BlockFormatError(
                f"entry at {position} runs past the entries"
            ) from None
        if position != end:
            raise BlockFormatError(
                f"entries end at {position}, but the restart array starts at {end}"
            )

        # The tags in one C-level pass: their bytes joined, read as u64s.
        # Tags are little-endian, so every 8th byte is a kind (low byte).
        tag_bytes = b"".join([contents[at : at + 8] for at in tag_positions])
        kinds = tag_bytes[::8]
        tags = array("Q", tag_bytes)
        if sys.byteorder == "big":
            tags.byteswap()
        if kinds.translate(None, b"\x00\x01"):
            bad = next(index for index, kind in enumerate(kinds) if kind > KIND_PUT)
            raise BlockFormatError(
                f"entry with its tag at {tag_positions[bad]} has kind {kinds[bad]}"
            )
        if KIND_DELETE in kinds:
            for index, kind in enumerate(kinds):
                if (
                    kind == KIND_DELETE
                    and value_ends[index] != tag_positions[index] + 8
                ):
                    raise BlockFormatError(
                        f"tombstone ending at {value_ends[index]} has a "
                        f"{value_ends[index] - tag_positions[index] - 8}-byte value"
                    )

        self._contents = contents
        self._count = len(keys)
        self._key_list: list[bytes] | None = keys
        self._key_prefix = b""
        self._suffixes: bytes | None = None
        self._key_length = 0
        self._suffix_length = 0
        if keys and len(set(map(len, keys))) == 1:
            # Keys are sorted, so the first and last share the common prefix.
            first = keys[0]
            prefix_length = shared_prefix_length(first, keys[-1])
            if prefix_length < len(first):
                self._key_list = None
                self._key_prefix = first[:prefix_length]
                self._suffixes = b"".join([key[prefix_length:] for key in keys])
                self._key_length = len(first)
                self._suffix_length = len(first) - prefix_length
        self._tags = tags
        positions_type = "H" if len(contents) <= 0xFFFF else "I"
        self._tag_positions = array(positions_type, tag_positions)
        self._value_ends = array(positions_type, value_ends)

    @property
    def keys(self) -> list[bytes]:
        """Entry keys in internal-key order; a key repeats for each of its versions.

        Built on each access when the block stores its keys as one bytes
        object, so callers read it once per block.
        """
        if self._key_list is not None:
            return self._key_list
        prefix = self._key_prefix
        suffixes = self._suffixes
        length = self._suffix_length
        return [
            prefix + suffixes[at : at + length]  # type: ignore[index]
            for at in range(0, len(suffixes), length)  # type: ignore[arg-type]
        ]

    @property
    def contents_size(self) -> int:
        """Size of the uncompressed block contents in bytes."""
        return len(self._contents)

    @property
    def memory_size(self) -> int:
        """Estimated bytes of memory the decoded block uses: its cache charge."""
        size = (
            sys.getsizeof(self)
            + sys.getsizeof(self._contents)
            + sys.getsizeof(self._tags)
            + sys.getsizeof(self._tag_positions)
            + sys.getsizeof(self._value_ends)
        )
        keys = self._key_list
        if keys is None:
            return (
                size + sys.getsizeof(self._key_prefix) + sys.getsizeof(self._suffixes)
            )
        return (
            size
            + sys.getsizeof(keys)
            + sum(map(len, keys))
            + _BYTES_OBJECT_OVERHEAD * len(keys)
        )

    def __len__(self) -> int:
        """Number of entries."""
        return self._count

    def entries(self, start: int, stop: int) -> list[Entry]:
        """Return entries ``start`` up to ``stop`` (exclusive) as tuples."""
        keys = self._key_list
        if keys is None:
            prefix = self._key_prefix
            suffixes = self._suffixes
            length = self._suffix_length
            keys = [
                prefix + suffixes[at : at + length]  # type: ignore[index]
                for at in range(start * length, stop * length, length)
            ]
        else:
            keys = keys[start:stop]
        contents = self._contents
        # Zipped slices of the arrays, which costs less than indexing each.
        return [
            (key, tag >> 8, contents[position + 8 : end] if tag & 0xFF else None)
            for key, tag, position, end in zip(
                keys,
                self._tags[start:stop],
                self._tag_positions[start:stop],
                self._value_ends[start:stop],
                strict=True,
            )
        ]

    def bisect(self, key: bytes) -> int:
        """Return the index of the first entry whose key is >= ``key``."""
        keys = self._key_list
        if keys is not None:
            return bisect_left(keys, key)
        prefix = self._key_prefix
        if not key.startswith(prefix):
            # Every key of the block starts with the prefix.
            return 0 if key < prefix else self._count
        suffix = key[len(prefix) :]
        suffixes = self._suffixes
        length = self._suffix_length
        low = 0
        high = self._count
        while low < high:
            middle = (low + high) >> 1
            at = middle * length
            if suffixes[at : at + length] < suffix:  # type: ignore[index]
                low = middle + 1
            else:
                high = middle
        return low

    def key_at(self, index: int) -> bytes:
        """Return the key of entry ``index``; -1 is the last entry."""
        keys = self._key_list
        if keys is not None:
            return keys[index]
        if index < 0:
            index += self._count
        at = index * self._suffix_length
        return self._key_prefix + self._suffixes[at : at + self._suffix_length]  # type: ignore[index]

    def find(self, key: bytes, sequence: int) -> tuple[int, bytes | None] | int:
        """Return ``(sequence, value)`` of the newest version of ``key`` <= ``sequence``.

        The value is None for a tombstone. Returns ABSENT, NOT_VISIBLE or
        CONTINUES when the block has no such version.
        """
        count = self._count
        keys = self._key_list
        if keys is None:
            prefix = self._key_prefix
            if len(key) != self._key_length or not key.startswith(prefix):
                return ABSENT
            suffix = key[len(prefix) :]
            suffixes = self._suffixes
            length = self._suffix_length
            at = suffixes.find(suffix)  # type: ignore[union-attr]
            # A match at an offset that is not a multiple of the suffix
            # length spans two suffixes, so the search goes on past it.
            while at > 0 and at % length:
                at = suffixes.find(suffix, at + 1)  # type: ignore[union-attr]
            if at < 0:
                return ABSENT
            index = at // length
        else:
            index = bisect_left(keys, key)
            if index == count or keys[index] != key:
                return ABSENT
        tags = self._tags
        while True:
            tag = tags[index]
            if tag >> 8 <= sequence:
                if tag & 0xFF:
                    start = self._tag_positions[index] + 8
                    return tag >> 8, self._contents[start : self._value_ends[index]]
                return tag >> 8, None
            index += 1
            if index == count:
                return CONTINUES
            if self.key_at(index) != key:
                return NOT_VISIBLE

    def all_entries(self) -> list[Entry]:
        """Return every entry in order."""
        return self.entries(0, self._count)


def decode_data_block(contents: bytes) -> DataBlock:
    """Decode ``contents`` into a DataBlock, raising BlockFormatError for bad bytes."""
    return DataBlock(contents)


def decode_data_entries(contents: bytes) -> list[Entry]:
    """Decode every entry of a data block's ``contents``, as ``all_entries`` returns them.

    One pass with the checks of ``DataBlock``, for a reader that takes each
    entry once (compaction) and so needs no ``DataBlock`` for the cache.
    """
    end = _entries_end(contents)
    (first_restart,) = _U32.unpack_from(contents, end)
    if first_restart != 0:
        raise BlockFormatError(f"first restart point is {first_restart}, not 0")
    entries: list[Entry] = []
    append = entries.append
    unpack_tag = _TAG.unpack_from
    position = 0
    key = b""
    try:
        while position < end:
            shared = contents[position]
            unshared = contents[position + 1]
            value_size = contents[position + 2]
            if (shared | unshared | value_size) < 0x80:
                position += 3
            else:
                shared, unshared, value_size, position = _decode_entry_header(
                    contents, position
                )
            key_end = position + unshared
            if shared:
                if shared > len(key):
                    raise BlockFormatError(
                        f"entry at {position} shares {shared} bytes of a "
                        f"{len(key)}-byte key"
                    )
                key = key[:shared] + contents[position:key_end]
            else:
                key = contents[position:key_end]
            (tag,) = unpack_tag(contents, key_end)
            position = key_end + 8 + value_size
            kind = tag & 0xFF
            if kind == KIND_PUT:
                append((key, tag >> 8, contents[key_end + 8 : position]))
            elif kind == KIND_DELETE and not value_size:
                append((key, tag >> 8, None))
            elif kind == KIND_DELETE:
                raise BlockFormatError(
                    f"tombstone ending at {position} has a {value_size}-byte value"
                )
            else:
                raise BlockFormatError(
                    f"entry with its tag at {key_end} has kind {kind}"
                )
    except (IndexError, struct.error):
        raise BlockFormatError(f"entry at {position} runs past the entries") from None
    if position != end:
        raise BlockFormatError(
            f"entries end at {position}, but the restart array starts at {end}"
        )
    return entries


def decode_plain_block(contents: bytes) -> list[tuple[bytes, bytes]]:
    """Decode every ``(key, value)`` entry of an index or properties block."""
    end = _entries_end(contents)
    result: list[tuple[bytes, bytes]] = []
    position = 0
    key = b""
    try:
        while position < end:
            shared, unshared, value_size, position = _decode_entry_header(
                contents, position
            )
            if shared > len(key):
                raise BlockFormatError(
                    f"entry at {position} shares {shared} bytes of a {len(key)}-byte key"
                )
            key_end = position + unshared
            key = key[:shared] + contents[position:key_end]
            position = key_end + value_size
            result.append((key, contents[key_end:position]))
    except IndexError:
        raise BlockFormatError(f"entry at {position} runs past the entries") from None
    if position != end:
        raise BlockFormatError(
            f"entries end at {position}, but the restart array starts at {end}"
        )
    return result


def walk_block(contents: bytes, tagged: bool) -> list[tuple[int, int, bytes]]:
    """Check a block's restart array and return ``(offset, shared, key)`` per entry.

    A full check for ``verify``: every restart offset must be the start of
    an entry that stores its whole key, the first restart must be 0, and
    restarts must ascend. Entry parsing errors raise BlockFormatError too.
    """
    end = _entries_end(contents)
    restart_count = (len(contents) - 4 - end) // 4
    restarts = struct.unpack_from(f"<{restart_count}I", contents, end)
    walked: list[tuple[int, int, bytes]] = []
    position = 0
    key = b""
    try:
        while position < end:
            start = position
            shared, unshared, value_size, position = _decode_entry_header(
                contents, position
            )
            if shared > len(key):
                raise BlockFormatError(
                    f"entry at {start} shares {shared} bytes of a {len(key)}-byte key"
                )
            key = key[:shared] + contents[position : position + unshared]
            position += unshared + (8 if tagged else 0) + value_size
            walked.append((start, shared, key))
    except IndexError:
        raise BlockFormatError(f"entry at {position} runs past the entries") from None
    if position != end:
        raise BlockFormatError(
            f"entries end at {position}, but the restart array starts at {end}"
        )
    if not walked:
        return walked
    starts = {offset: shared for offset, shared, _ in walked}
    if restarts[0] != 0:
        raise BlockFormatError(f"first restart point is {restarts[0]}, not 0")
    previous = -1
    for restart in restarts:
        if restart <= previous:
            raise BlockFormatError(f"restart points not ascending at {restart}")
        previous = restart
        if starts.get(restart) != 0:
            raise BlockFormatError(
                f"restart point {restart} is not an entry that stores its whole key"
            )
    return walked


# -- table-level encodings -------------------------------------------------------

#: Version written in the footer; a reader rejects any other version.
FORMAT_VERSION = 1

#: The last 8 bytes of every table file.
MAGIC = b"storeSST"

# Footer fields: filter offset and size, properties offset and size, index
# offset and size, entry count and format version. The xxh32 of those 48
# bytes and the magic follow them.
_FOOTER_FIELDS = struct.Struct("<QIQIQIQI")
_FOOTER_TAIL = struct.Struct("<I8s")
FOOTER_SIZE = _FOOTER_FIELDS.size + _FOOTER_TAIL.size  # 60 bytes

# A block handle, the value of an index entry: offset u64, size u32. The
# size excludes the 5-byte trailer.
_HANDLE = struct.Struct("<QI")
_U64 = struct.Struct("<Q")


def encode_handle(offset: int, size: int) -> bytes:
    """Return the index entry value that points at a block."""
    return _HANDLE.pack(offset, size)


def decode_handle(value: bytes) -> tuple[int, int]:
    """Return ``(offset, size)`` from an index entry value."""
    if len(value) != _HANDLE.size:
        raise BlockFormatError(f"block handle of {len(value)} bytes, expected 12")
    return _HANDLE.unpack(value)  # type: ignore[return-value]


def shortest_separator(start: bytes, limit: bytes) -> bytes:
    """Return a key s with ``start <= s < limit`` that is shorter than ``start``.

    Returns ``start`` itself when no shorter key exists, when ``start`` is a
    prefix of ``limit``, or when ``start >= limit`` (the versions of one
    key continue in the next block).
    """
    if start >= limit:
        return start
    shared = shared_prefix_length(start, limit)
    if shared == len(start):
        return start
    # start[shared] < limit[shared]. Incrementing that byte works when the
    # result stays below limit[shared]. Otherwise incrementing any later
    # byte below 0xFF gives a key above start that still sorts below limit.
    if start[shared] + 1 < limit[shared]:
        return start[:shared] + bytes((start[shared] + 1,))
    for position in range(shared + 1, len(start) - 1):
        if start[position] < 0xFF:
            return start[:position] + bytes((start[position] + 1,))
    return start


#: Properties stored as u64 little-endian; every other property is raw bytes.
INTEGER_PROPERTIES = frozenset(
    {
        "block_size",
        "bloom_bits_per_key",
        "data_blocks",
        "entries",
        "filter_keys",
        "largest_sequence",
        "max_data_block_size",
        "raw_key_bytes",
        "raw_value_bytes",
        "restart_interval",
        "smallest_sequence",
        "tombstones",
    }
)

#: Properties a reader needs; a table without one of them is corrupt.
REQUIRED_PROPERTIES = (
    "data_blocks",
    "entries",
    "largest_key",
    "largest_sequence",
    "max_data_block_size",
    "smallest_key",
    "smallest_sequence",
    "tombstones",
)


def encode_properties(values: dict[str, int | bytes], restart_interval: int) -> bytes:
    """Return the contents of a properties block: one plain entry per name, sorted."""
    block = BlockBuilder(restart_interval)
    for name in sorted(values):
        value = values[name]
        encoded = _U64.pack(value) if isinstance(value, int) else value
        block.add(name.encode("ascii"), encoded)
    return block.finish()


def decode_properties(contents: bytes) -> dict[str, int | bytes]:
    """Decode a properties block and check that the required properties are present."""
    properties: dict[str, int | bytes] = {}
    for raw_name, value in decode_plain_block(contents):
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise BlockFormatError(f"property name {raw_name!r} is not ASCII") from None
        if name in INTEGER_PROPERTIES:
            if len(value) != 8:
                raise BlockFormatError(f"property {name} is not 8 bytes")
            properties[name] = _U64.unpack(value)[0]
        else:
            properties[name] = value
    missing = [name for name in REQUIRED_PROPERTIES if name not in properties]
    if missing:
        raise BlockFormatError(f"missing properties {', '.join(missing)}")
    return properties


class Footer(NamedTuple):
    """The fixed-size end of a table file: where the metadata blocks are."""

    filter_offset: int
    filter_size: int
    properties_offset: int
    properties_size: int
    index_offset: int
    index_size: int
    entries: int
    format_version: int = FORMAT_VERSION

    @property
    def has_filter(self) -> bool:
        """Whether a filter block exists; a handle of (0, 0) means none."""
        return self.filter_offset != 0 or self.filter_size != 0

    def encode(self) -> bytes:
        """Return the 60 footer bytes."""
        fields = _FOOTER_FIELDS.pack(*self)
        return fields + _FOOTER_TAIL.pack(framing.checksum(fields), MAGIC)

    @classmethod
    def decode(cls, data: bytes) -> Footer:
        """Parse 60 footer bytes, checking the magic, checksum and format version."""
        if len(data) != FOOTER_SIZE:
            raise BlockFormatError(
                f"footer of {len(data)} bytes, expected {FOOTER_SIZE}"
            )
        stored_checksum, magic = _FOOTER_TAIL.unpack_from(data, _FOOTER_FIELDS.size)
        if magic != MAGIC:
            raise BlockFormatError(f"bad magic {magic!r}, expected {MAGIC!r}")
        computed = framing.checksum(data[: _FOOTER_FIELDS.size])
        if computed != stored_checksum:
            raise BlockFormatError(
                f"checksum mismatch (stored {stored_checksum:#010x}, "
                f"computed {computed:#010x})"
            )
        footer = cls(*_FOOTER_FIELDS.unpack_from(data))
        if footer.format_version != FORMAT_VERSION:
            raise BlockFormatError(
                f"unsupported format version {footer.format_version}; this "
                f"storekit reads version {FORMAT_VERSION}"
            )
        return footer
