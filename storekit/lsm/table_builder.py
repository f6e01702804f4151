"""TableBuilder: the writer of one sorted table file, block by block.

storekit.lsm.table describes the file layout; docs/formats.md gives every
byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .._validate import check_key, check_value
from ..errors import ClosedError
from ..fs import File
from .block import (
    BLOCK_TRAILER_SIZE,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    KIND_DELETE,
    KIND_PUT,
    MAX_SEQUENCE,
    BlockBuilder,
    Entry,
    Footer,
    encode_handle,
    encode_properties,
    encode_varint,
    seal_block,
    shortest_separator,
)
from .bloom import BloomFilterBuilder, key_hash

__all__ = ["TableBuilder", "TableInfo", "short_repr"]

_COMPRESSION_CODES = {None: COMPRESSION_NONE, "lz4": COMPRESSION_LZ4}

# Entry header with one-byte varints (shared, unshared, value size), and
# the tag; as storekit.lsm.block encodes them.
_SMALL_HEADER = struct.Struct("<BBB")
_TAG = struct.Struct("<Q")
_xxh64 = key_hash

# _ENTRY_STRUCTS[n]: the one-byte-varint header, n key bytes and the tag of
# a data block entry, for n below 0x80.
_ENTRY_STRUCTS = [struct.Struct(f"<BBB{size}sQ") for size in range(0x80)]

# Largest block_size accepted, so that a block with one maximum-size value
# still fits the u32 size field of a block handle.
_MAX_BLOCK_SIZE = 64 << 20


def short_repr(key: bytes) -> str:
    """Return a repr of ``key`` cut to 40 bytes, for error messages."""
    if len(key) <= 40:
        return repr(key)
    return f"{key[:40]!r}... ({len(key)} bytes)"


@dataclass(frozen=True)
class TableInfo:
    """Summary of a finished table, returned by ``TableBuilder.finish``."""

    smallest_key: bytes
    largest_key: bytes
    smallest_sequence: int
    largest_sequence: int
    entries: int
    tombstones: int
    file_size: int
    data_blocks: int
    index_size: int
    filter_size: int
    raw_key_bytes: int
    raw_value_bytes: int


# -- writing -------------------------------------------------------------------


class TableBuilder:
    """A writer of one table through ``file``, block by block as entries arrive.

    ``add`` takes entries in internal-key order. ``finish`` writes the
    remaining blocks and the footer but does not fsync: the caller syncs
    and closes the file before a manifest names it. After ``finish``,
    ``abandon`` or a failed write, the builder accepts no more calls.
    Not thread-safe.
    """

    def __init__(
        self,
        file: File,
        *,
        block_size: int = 4096,
        compression: str | None = "lz4",
        bloom_bits_per_key: int = 10,
        restart_interval: int = 16,
    ) -> None:
        _check_int("block_size", block_size, 1, _MAX_BLOCK_SIZE)
        _check_int("bloom_bits_per_key", bloom_bits_per_key, 0, None)
        _check_int("restart_interval", restart_interval, 1, None)
        if compression not in _COMPRESSION_CODES:
            raise ValueError(f"compression must be 'lz4' or None, not {compression!r}")
        self._file = file
        self._block_size = block_size
        self._compression = _COMPRESSION_CODES[compression]
        self._compression_name = compression or "none"
        self._bloom_bits_per_key = bloom_bits_per_key
        self._restart_interval = restart_interval

        self._offset = 0
        self._data_block = BlockBuilder(restart_interval)
        self._index_block = BlockBuilder(restart_interval)
        self._bloom = (
            BloomFilterBuilder(bloom_bits_per_key) if bloom_bits_per_key else None
        )
        # The handle of the last data block written, waiting for the next key
        # so that its index entry can use a short separator.
        self._pending_handle: tuple[int, int] | None = None
        self._pending_last_key = b""
        self._state = "open"

        self._last_key: bytes | None = None
        self._last_sequence = 0
        self._smallest_key = b""
        self._smallest_sequence = MAX_SEQUENCE
        self._largest_sequence = 0
        self._entries = 0
        self._tombstones = 0
        self._data_blocks = 0
        self._max_data_block_size = 0
        self._raw_key_bytes = 0
        self._raw_value_bytes = 0

    @property
    def estimated_size(self) -> int:
        """Bytes written so far plus the uncompressed size of the pending data block."""
        return self._offset + self._data_block.size_estimate

    @property
    def entries(self) -> int:
        """Number of entries added."""
        return self._entries

    def _check_open(self) -> None:
        if self._state != "open":
            raise ClosedError(f"table builder for {self._file.path} is {self._state}")

    def add(self, key: bytes, sequence: int, value: bytes | None) -> None:
        """Add one entry; a value of None is a tombstone.

        Raises ValueError when ``(key, sequence)`` does not follow the
        previous entry in internal-key order (key ascending, then sequence
        descending), and TypeError/ValueError for a key, value or sequence
        of the wrong type or size.
        """
        self._check_open()
        key = check_key(key)
        if value is not None:
            value = check_value(value)
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            raise TypeError(f"sequence must be an int, not {type(sequence).__name__}")
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise ValueError(f"sequence {sequence} is outside 0..{MAX_SEQUENCE}")
        self.add_trusted(key, sequence, value)

    def add_trusted(self, key: bytes, sequence: int, value: bytes | None) -> None:
        """Add one entry whose key, value and sequence are already known to be valid.

        For the engine's flushes and compactions, whose entries passed
        ``add``'s type and size checks when they were written: ``key`` and
        ``value`` must be bytes within the size limits and ``sequence`` an
        int in 0..MAX_SEQUENCE. The order check still runs.
        """
        if self._state != "open":
            self._check_open()
        last_key = self._last_key
        if last_key is None:
            self._smallest_key = key
            new_key = True
        elif key <= last_key:
            if key < last_key or sequence >= self._last_sequence:
                raise ValueError(
                    f"entry {short_repr(key)} at sequence {sequence} is out of "
                    f"order: it must sort after {short_repr(last_key)} at sequence "
                    f"{self._last_sequence} (keys ascending, sequences descending)"
                )
            new_key = False
        else:
            new_key = True
        if new_key and self._bloom is not None:
            self._bloom.add_hash(_xxh64(key))

        if self._pending_handle is not None:
            separator = shortest_separator(self._pending_last_key, key)
            self._index_block.add(separator, encode_handle(*self._pending_handle))
            self._pending_handle = None

        if value is None:
            value = b""
            tag = (sequence << 8) | KIND_DELETE
            self._tombstones += 1
        else:
            tag = (sequence << 8) | KIND_PUT
            self._raw_value_bytes += len(value)

        # BlockBuilder.add inlined, because this runs once per entry of
        # every flush and compaction.
        block = self._data_block
        buffer = block._buffer
        if block._since_restart < self._restart_interval:
            previous = block._last_key
            length = len(key) if len(key) < len(previous) else len(previous)
            difference = int.from_bytes(previous[:length], "big") ^ int.from_bytes(
                key[:length], "big"
            )
            shared = length - (difference.bit_length() + 7) // 8
            block._since_restart += 1
        else:
            block._restarts.append(len(buffer))
            block._since_restart = 1
            shared = 0
        unshared = len(key) - shared
        value_size = len(value)
        if (shared | unshared | value_size) < 0x80:
            buffer += _SMALL_HEADER.pack(shared, unshared, value_size)
        else:
            buffer += encode_varint(shared)
            buffer += encode_varint(unshared)
            buffer += encode_varint(value_size)
        buffer += key[shared:] if shared else key
        buffer += _TAG.pack(tag)
        buffer += value
        block._last_key = key
        block.entries += 1

        self._last_key = key
        self._last_sequence = sequence
        self._entries += 1
        self._raw_key_bytes += len(key)
        if sequence < self._smallest_sequence:
            self._smallest_sequence = sequence
        if sequence > self._largest_sequence:
            self._largest_sequence = sequence

        if len(buffer) + 4 * len(block._restarts) + 4 >= self._block_size:
            self._flush_data_block()

    def add_trusted_entries(
        self,
        entries: Iterator[Entry],
        size_limit: int | None = None,
    ) -> Entry | None:
        """Add ``(key, sequence, value)`` entries from ``entries`` as ``add_trusted`` does.

        Returns None once ``entries`` is exhausted. With ``size_limit``, it
        stops at the first entry of a new key once ``estimated_size`` has
        reached ``size_limit`` (checked every 16 keys, so a table overshoots
        by at most 15 entries) and returns that entry, which is not added.
        One loop with the builder's state in local variables: the work of
        every flush and compaction.
        """
        if self._state != "open":
            self._check_open()
        # New keys are collected here and hashed in one C-level map at the end.
        new_keys: list[bytes] | None = [] if self._bloom is not None else None
        add_new_key = new_keys.append if new_keys is not None else None
        restart_interval = self._restart_interval
        block_size = self._block_size
        block = self._data_block
        buffer = block._buffer
        restarts = block._restarts
        # The block is full once len(buffer) reaches block_limit: block_size
        # minus the restart array (4 bytes per restart and the count).
        block_limit = block_size - 4 * len(restarts) - 4
        since_restart = block._since_restart
        block_last_key = block._last_key
        block_entries = block.entries
        index_pending = self._pending_handle is not None
        last_key = self._last_key
        last_sequence = self._last_sequence
        count = self._entries
        tombstones = self._tombstones
        raw_key_bytes = self._raw_key_bytes
        raw_value_bytes = self._raw_value_bytes
        smallest_sequence = self._smallest_sequence
        largest_sequence = self._largest_sequence
        keys_since_check = 0
        entry_structs = _ENTRY_STRUCTS
        from_bytes = int.from_bytes
        try:
            for entry in entries:
                key, sequence, value = entry
                if last_key is None:
                    self._smallest_key = key
                    new_key = True
                elif key <= last_key:
                    if key < last_key or sequence >= last_sequence:
                        raise ValueError(
                            f"entry {short_repr(key)} at sequence {sequence} is out "
                            f"of order: it must sort after {short_repr(last_key)} at "
                            f"sequence {last_sequence} (keys ascending, sequences "
                            "descending)"
                        )
                    new_key = False
                else:
                    new_key = True
                if new_key:
                    if size_limit is not None:
                        keys_since_check += 1
                        if keys_since_check >= 16:
                            keys_since_check = 0
                            estimated = (
                                self._offset + len(buffer) + 4 * len(restarts) + 4
                            )
                            if estimated >= size_limit:
                                return entry
                    if add_new_key is not None:
                        add_new_key(key)
                if index_pending:
                    separator = shortest_separator(self._pending_last_key, key)
                    self._index_block.add(
                        separator, encode_handle(*self._pending_handle)
                    )
                    self._pending_handle = None
                    index_pending = False

                if value is None:
                    value = b""
                    tag = (sequence << 8) | KIND_DELETE
                    tombstones += 1
                else:
                    tag = (sequence << 8) | KIND_PUT
                    raw_value_bytes += len(value)
                key_size = len(key)
                if since_restart < restart_interval:
                    if key_size == len(block_last_key):
                        difference = from_bytes(block_last_key, "big") ^ from_bytes(
                            key, "big"
                        )
                        shared = key_size - (difference.bit_length() + 7) // 8
                        since_restart += 1
                    else:
                        length = (
                            key_size
                            if key_size < len(block_last_key)
                            else len(block_last_key)
                        )
                        difference = from_bytes(
                            block_last_key[:length], "big"
                        ) ^ from_bytes(key[:length], "big")
                        shared = length - (difference.bit_length() + 7) // 8
                        since_restart += 1
                else:
                    restarts.append(len(buffer))
                    block_limit -= 4
                    since_restart = 1
                    shared = 0
                unshared = key_size - shared
                value_size = len(value)
                if (shared | unshared | value_size) < 0x80:
                    # Each of the three varints fits in one byte: one struct
                    # call for the header, key bytes and tag.
                    buffer += entry_structs[unshared].pack(
                        shared,
                        unshared,
                        value_size,
                        key[shared:] if shared else key,
                        tag,
                    )
                else:
                    buffer += encode_varint(shared)
                    buffer += encode_varint(unshared)
                    buffer += encode_varint(value_size)
                    buffer += key[shared:] if shared else key
                    buffer += _TAG.pack(tag)
                buffer += value
                block_last_key = key
                block_entries += 1
                last_key = key
                last_sequence = sequence
                count += 1
                raw_key_bytes += key_size
                if sequence < smallest_sequence:
                    smallest_sequence = sequence
                if sequence > largest_sequence:
                    largest_sequence = sequence

                if len(buffer) >= block_limit:
                    block._since_restart = since_restart
                    block._last_key = block_last_key
                    block.entries = block_entries
                    self._last_key = last_key
                    self._flush_data_block()
                    buffer = block._buffer
                    restarts = block._restarts
                    block_limit = block_size - 4 * len(restarts) - 4
                    since_restart = block._since_restart
                    block_last_key = block._last_key
                    block_entries = block.entries
                    index_pending = self._pending_handle is not None
            return None
        finally:
            if new_keys:
                self._bloom.add_hashes(map(_xxh64, new_keys))  # type: ignore[union-attr]
            block._since_restart = since_restart
            block._last_key = block_last_key
            block.entries = block_entries
            self._last_key = last_key
            self._last_sequence = last_sequence
            self._entries = count
            self._tombstones = tombstones
            self._raw_key_bytes = raw_key_bytes
            self._raw_value_bytes = raw_value_bytes
            self._smallest_sequence = smallest_sequence
            self._largest_sequence = largest_sequence

    def _write_block(self, contents: bytes, compression: int) -> tuple[int, int]:
        """Append one sealed block and return its handle ``(offset, size)``."""
        sealed = seal_block(contents, compression)
        offset = self._offset
        try:
            self._file.append(sealed)
        except BaseException:
            self._state = "failed"
            raise
        self._offset += len(sealed)
        return offset, len(sealed) - BLOCK_TRAILER_SIZE

    def _flush_data_block(self) -> None:
        contents = self._data_block.finish()
        self._data_block.reset()
        self._max_data_block_size = max(self._max_data_block_size, len(contents))
        self._pending_handle = self._write_block(contents, self._compression)
        self._pending_last_key = self._last_key or b""
        self._data_blocks += 1

    def _properties_block(self) -> bytes:
        assert self._last_key is not None
        values: dict[str, int | bytes] = {
            "block_size": self._block_size,
            "bloom_bits_per_key": self._bloom_bits_per_key,
            "compression": self._compression_name.encode(),
            "data_blocks": self._data_blocks,
            "entries": self._entries,
            "filter_keys": len(self._bloom) if self._bloom is not None else 0,
            "largest_key": self._last_key,
            "largest_sequence": self._largest_sequence,
            "max_data_block_size": self._max_data_block_size,
            "raw_key_bytes": self._raw_key_bytes,
            "raw_value_bytes": self._raw_value_bytes,
            "restart_interval": self._restart_interval,
            "smallest_key": self._smallest_key,
            "smallest_sequence": self._smallest_sequence,
            "tombstones": self._tombstones,
        }
        return encode_properties(values, self._restart_interval)

    def finish(self) -> TableInfo:
        """Write the last data block, the filter, properties and index blocks and the footer.

        Raises ValueError for a table with no entries: call ``abandon`` and
        remove the file instead. The file is not synced.
        """
        self._check_open()
        if self._last_key is None:
            raise ValueError(
                f"table {self._file.path} has no entries; call abandon() and "
                "remove the file instead of finishing it"
            )
        if self._data_block.entries:
            self._flush_data_block()
        if self._pending_handle is not None:
            self._index_block.add(self._last_key, encode_handle(*self._pending_handle))
            self._pending_handle = None

        filter_handle = (0, 0)
        if self._bloom is not None:
            # The bit array is close to random, so compressing it is wasted work.
            filter_handle = self._write_block(self._bloom.finish(), COMPRESSION_NONE)
        properties_handle = self._write_block(
            self._properties_block(), self._compression
        )
        index_handle = self._write_block(self._index_block.finish(), self._compression)

        footer = Footer(
            *filter_handle, *properties_handle, *index_handle, self._entries
        ).encode()
        try:
            self._file.append(footer)
        except BaseException:
            self._state = "failed"
            raise
        self._offset += len(footer)
        self._state = "finished"
        return TableInfo(
            smallest_key=self._smallest_key,
            largest_key=self._last_key,
            smallest_sequence=self._smallest_sequence,
            largest_sequence=self._largest_sequence,
            entries=self._entries,
            tombstones=self._tombstones,
            file_size=self._offset,
            data_blocks=self._data_blocks,
            index_size=index_handle[1],
            filter_size=filter_handle[1],
            raw_key_bytes=self._raw_key_bytes,
            raw_value_bytes=self._raw_value_bytes,
        )

    def abandon(self) -> None:
        """Stop building; nothing more is written. The caller removes the file."""
        if self._state == "open":
            self._state = "abandoned"


def _check_int(name: str, value: object, minimum: int, maximum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{upper}, not {value}")
