"""Sorted tables (SSTables): the immutable files of the LSM tree.

A table contains entries in internal-key order (user key ascending, then
sequence number descending), each a put or a tombstone. ``TableBuilder``
writes one through a ``storekit.fs.File``. ``TableReader`` opens one for
point lookups and range iteration. File layout, in order:

    data blocks        entries with prefix compression (storekit.lsm.block)
    filter block       bloom filter over the user keys; absent with 0 bits/key
    properties block   named counters and key/sequence bounds
    index block        one entry per data block: separator key -> handle
    footer             60 bytes: block handles, entry count, version, magic

Every block ends with a trailer carrying its compression type and an xxh32
checksum. docs/formats-sstable.md gives every byte.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._validate import check_key, check_value
from ..errors import ClosedError, CorruptionError
from ..fs import File, FileSystem, default_fs
from .block import (
    ABSENT,
    BLOCK_TRAILER_SIZE,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    CONTINUES,
    FOOTER_SIZE,
    KIND_DELETE,
    KIND_PUT,
    MAX_SEQUENCE,
    BlockBuilder,
    BlockFormatError,
    DataBlock,
    Entry,
    Footer,
    decode_data_block,
    decode_handle,
    decode_plain_block,
    decode_properties,
    encode_handle,
    encode_properties,
    seal_block,
    shortest_separator,
    unseal_block,
    walk_block,
)
from .block_cache import BlockCache
from .bloom import BloomFilter, BloomFilterBuilder

__all__ = ["BlockCache", "TableBuilder", "TableInfo", "TableReader", "describe_table"]

_COMPRESSION_CODES = {None: COMPRESSION_NONE, "lz4": COMPRESSION_LZ4}

# Bytes of Python objects per decoded entry (tuple, list slots, bytes and
# int headers), an estimate used to charge decoded blocks to the cache.
_DECODED_ENTRY_OVERHEAD = 160

# Largest block_size accepted, so that a block with one maximum-size value
# still fits the u32 size field of a block handle.
_MAX_BLOCK_SIZE = 64 << 20


def _short_repr(key: bytes) -> str:
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

        last_key = self._last_key
        if last_key is None:
            self._smallest_key = key
        elif key < last_key or (key == last_key and sequence >= self._last_sequence):
            raise ValueError(
                f"entry {_short_repr(key)} at sequence {sequence} is out of order: "
                f"it must sort after {_short_repr(last_key)} at sequence "
                f"{self._last_sequence} (keys ascending, sequences descending)"
            )
        if key != last_key and self._bloom is not None:
            self._bloom.add_key(key)

        if self._pending_handle is not None:
            separator = shortest_separator(self._pending_last_key, key)
            self._index_block.add(separator, encode_handle(*self._pending_handle))
            self._pending_handle = None

        if value is None:
            self._data_block.add(key, b"", (sequence << 8) | KIND_DELETE)
            self._tombstones += 1
        else:
            self._data_block.add(key, value, (sequence << 8) | KIND_PUT)
            self._raw_value_bytes += len(value)
        self._last_key = key
        self._last_sequence = sequence
        self._entries += 1
        self._raw_key_bytes += len(key)
        if sequence < self._smallest_sequence:
            self._smallest_sequence = sequence
        if sequence > self._largest_sequence:
            self._largest_sequence = sequence

        if self._data_block.size_estimate >= self._block_size:
            self._flush_data_block()

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


# -- reading -------------------------------------------------------------------


def _check_index(
    separators: list[bytes],
    handles: list[tuple[int, int]],
    properties: dict[str, int | bytes],
    data_end: int,
) -> str | None:
    """Return what is wrong with a decoded index block, or None.

    Data blocks lie back to back from offset 0 up to ``data_end``, there is
    one per ``data_blocks`` property, separators never decrease, and the
    last separator is the largest key.
    """
    if not handles or len(handles) != properties["data_blocks"]:
        return (
            f"{len(handles)} index entries for {properties['data_blocks']} data blocks"
        )
    expected = 0
    for number, (block_offset, block_size) in enumerate(handles):
        if block_offset != expected:
            return f"data block {number} at {block_offset}, expected {expected}"
        if number and separators[number] < separators[number - 1]:
            return f"separator of data block {number} is out of order"
        expected = block_offset + block_size + BLOCK_TRAILER_SIZE
    if expected != data_end:
        return f"data blocks end at {expected}, expected {data_end}"
    if separators[-1] != properties["largest_key"]:
        return "last separator is not the largest key"
    return None


class TableReader:
    """An open table: point lookups, range iteration and verification.

    Opening reads and checks the footer, the index, the properties and the
    filter blocks. Data blocks are read on demand through ``block_cache``
    when one is given. With ``verify_checksums=False`` data block checksums
    are skipped (metadata blocks are always checked), so a damaged block
    may return wrong entries instead of raising.

    Thread-safety: ``get`` and ``iterate`` may run in many threads at once.
    ``close`` must not run while another thread still reads. The counters
    (``bloom_checks`` and the others) are not locked, so they may miss
    increments under concurrent reads.
    """

    def __init__(
        self,
        fs: FileSystem | None,
        path: str,
        file_number: int,
        *,
        block_cache: BlockCache | None = None,
        verify_checksums: bool = True,
    ) -> None:
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self.path = path
        self.file_number = file_number
        self._cache = block_cache
        self._verify_checksums = verify_checksums
        self._closed = False

        #: Lookups that consulted the bloom filter.
        self.bloom_checks = 0
        #: Lookups the filter ruled out, each a data block read saved.
        self.bloom_negatives = 0
        #: Lookups the filter passed although the table has no entry for the key.
        self.bloom_false_positives = 0
        #: Data blocks read from the file (cache misses and uncached reads).
        self.block_reads = 0

        self._file = self._fs.open(path, "r")
        try:
            self._load_metadata()
        except BaseException:
            self._file.close()
            raise

    # -- opening ------------------------------------------------------------

    def _corruption(self, what: str, offset: int, reason: object) -> CorruptionError:
        return CorruptionError(
            f"{self.path}: {what} at offset {offset}: {reason}",
            path=self.path,
            offset=offset,
        )

    def _read_contents(
        self,
        what: str,
        offset: int,
        size: int,
        verify_checksum: bool,
        max_contents: int | None,
    ) -> bytes:
        raw = self._file.read(offset, size + BLOCK_TRAILER_SIZE)
        try:
            return unseal_block(raw, size, verify_checksum, max_contents)
        except BlockFormatError as exc:
            raise self._corruption(what, offset, exc) from None

    def _load_metadata(self) -> None:
        file_size = self._file.size()
        self.file_size = file_size
        footer_offset = max(file_size - FOOTER_SIZE, 0)
        if file_size < FOOTER_SIZE:
            raise self._corruption(
                "footer",
                footer_offset,
                f"file of {file_size} bytes is shorter than the {FOOTER_SIZE}-byte "
                "footer; the table was truncated or never finished",
            )
        try:
            footer = Footer.decode(self._file.read(footer_offset, FOOTER_SIZE))
        except BlockFormatError as exc:
            raise self._corruption("footer", footer_offset, exc) from None
        self._footer = footer
        self._footer_offset = footer_offset
        self.format_version = footer.format_version

        # The metadata blocks lie back to back before the footer.
        trailer = BLOCK_TRAILER_SIZE
        layout_ok = (
            footer.index_offset + footer.index_size + trailer == footer_offset
            and footer.properties_offset + footer.properties_size + trailer
            == footer.index_offset
            and (
                not footer.has_filter
                or footer.filter_offset + footer.filter_size + trailer
                == footer.properties_offset
            )
        )
        if not layout_ok:
            raise self._corruption(
                "footer", footer_offset, "block handles do not match the file layout"
            )
        if footer.has_filter:
            self._data_end = footer.filter_offset
        else:
            self._data_end = footer.properties_offset

        self._load_properties()
        self._load_index()
        self._filter: BloomFilter | None = None
        if footer.has_filter:
            offset = footer.filter_offset
            contents = self._read_contents(
                "filter block", offset, footer.filter_size, True, None
            )
            try:
                self._filter = BloomFilter(contents)
            except ValueError as exc:
                raise self._corruption("filter block", offset, exc) from None

    def _load_properties(self) -> None:
        offset = self._footer.properties_offset
        contents = self._read_contents(
            "properties block", offset, self._footer.properties_size, True, None
        )
        try:
            properties = decode_properties(contents)
        except BlockFormatError as exc:
            raise self._corruption("properties block", offset, exc) from None
        if properties["entries"] != self._footer.entries:
            raise self._corruption(
                "properties block",
                offset,
                f"{properties['entries']} entries, but the footer says "
                f"{self._footer.entries}",
            )
        self._properties = properties
        self._smallest_key: bytes = properties["smallest_key"]  # type: ignore[assignment]
        self._largest_key: bytes = properties["largest_key"]  # type: ignore[assignment]
        self._max_data_block_size: int = properties["max_data_block_size"]  # type: ignore[assignment]

    def _load_index(self) -> None:
        offset = self._footer.index_offset
        contents = self._read_contents(
            "index block", offset, self._footer.index_size, True, None
        )
        try:
            entries = decode_plain_block(contents)
            handles = [decode_handle(value) for _, value in entries]
        except BlockFormatError as exc:
            raise self._corruption("index block", offset, exc) from None
        separators = [separator for separator, _ in entries]
        problem = _check_index(separators, handles, self._properties, self._data_end)
        if problem is not None:
            raise self._corruption("index block", offset, problem)
        self._separators = separators
        self._block_offsets = [handle[0] for handle in handles]
        self._block_sizes = [handle[1] for handle in handles]

    # -- properties ---------------------------------------------------------

    @property
    def smallest_key(self) -> bytes:
        """Smallest user key in the table."""
        return self._smallest_key

    @property
    def largest_key(self) -> bytes:
        """Largest user key in the table."""
        return self._largest_key

    @property
    def smallest_sequence(self) -> int:
        """Smallest sequence number of any entry."""
        return self._properties["smallest_sequence"]  # type: ignore[return-value]

    @property
    def largest_sequence(self) -> int:
        """Largest sequence number of any entry."""
        return self._properties["largest_sequence"]  # type: ignore[return-value]

    @property
    def entries(self) -> int:
        """Number of entries, tombstones included."""
        return self._properties["entries"]  # type: ignore[return-value]

    @property
    def tombstones(self) -> int:
        """Number of tombstone entries."""
        return self._properties["tombstones"]  # type: ignore[return-value]

    @property
    def data_blocks(self) -> int:
        """Number of data blocks."""
        return len(self._block_offsets)

    @property
    def has_filter(self) -> bool:
        """Whether the table has a bloom filter block."""
        return self._filter is not None

    @property
    def properties(self) -> dict[str, int | bytes]:
        """Copy of the properties block: integers and raw bytes by name."""
        return dict(self._properties)

    def approximate_offset(self, key: bytes) -> int:
        """Return the file offset of the data block where ``key`` would be.

        Keys above the largest key map to the end of the data blocks, so
        the difference of two results estimates the bytes of a key range.
        """
        index = bisect_left(self._separators, key)
        if index == len(self._block_offsets):
            return self._data_end
        return self._block_offsets[index]

    def data_block_handles(self) -> list[tuple[bytes, int, int]]:
        """Return ``(separator, offset, size)`` for each data block, in file order."""
        return list(
            zip(self._separators, self._block_offsets, self._block_sizes, strict=True)
        )

    # -- reads --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"table {self.path} is closed")
        if self._fs.epoch != self._epoch:
            raise ClosedError(
                f"table {self.path}: the file system crashed after the table was opened"
            )

    def _read_data_block(self, offset: int, size: int) -> DataBlock:
        self.block_reads += 1
        contents = self._read_contents(
            "data block",
            offset,
            size,
            self._verify_checksums,
            self._max_data_block_size,
        )
        try:
            return decode_data_block(contents)
        except BlockFormatError as exc:
            raise self._corruption("data block", offset, exc) from None

    def _data_block(self, index: int, fill_cache: bool) -> DataBlock:
        self._check_open()
        offset = self._block_offsets[index]
        cache = self._cache
        if cache is not None:
            block = cache.lookup(self.file_number, offset)
            if block is not None:
                return block
        block = self._read_data_block(offset, self._block_sizes[index])
        if cache is not None and fill_cache:
            cache.insert(self.file_number, offset, block, self._block_charge(block))
        return block

    def _block_charge(self, block: DataBlock) -> int:
        # An estimate of the block's memory once every run is decoded: the
        # contents, a copy of its keys and values, and per-entry objects for
        # the table's average entries per block.
        average_entries = self.entries // len(self._block_offsets) + 1
        return 2 * block.contents_size + _DECODED_ENTRY_OVERHEAD * average_entries

    def _decode_run(self, index: int, block: DataBlock, number: int) -> list[Entry]:
        """Return the entries of one run, raising CorruptionError for bad bytes."""
        run = block.runs[number]
        if run is None:
            try:
                run = block.decode_run(number)
            except BlockFormatError as exc:
                raise self._corruption(
                    "data block", self._block_offsets[index], exc
                ) from None
        return run[1]

    def get(self, key: bytes, sequence: int) -> tuple[int, bytes | None] | None:
        """Return the newest entry of ``key`` with a sequence <= ``sequence``.

        Returns ``(entry_sequence, value)`` with None as the value of a
        tombstone, or None when the table has no such entry. ``key`` must be
        bytes. Reads only the blocks that hold versions of ``key``, usually
        one, and none when the bloom filter rules the key out.
        """
        if self._closed or self._fs.epoch != self._epoch:
            self._check_open()
        if key < self._smallest_key or key > self._largest_key:
            return None
        bloom = self._filter
        if bloom is not None:
            self.bloom_checks += 1
            if not bloom.may_contain(key):
                self.bloom_negatives += 1
                return None

        separators = self._separators
        block_count = len(separators)
        index = bisect_left(separators, key)
        while index < block_count:
            block = self._data_block(index, True)
            try:
                result = block.find(key, sequence)
            except BlockFormatError as exc:
                raise self._corruption(
                    "data block", self._block_offsets[index], exc
                ) from None
            if result.__class__ is tuple:
                return result[1], result[2]  # type: ignore[index]
            if result is ABSENT:
                # Versions of a key span blocks only when a block ends in
                # them, so an absent key is absent from the whole table.
                if bloom is not None:
                    self.bloom_false_positives += 1
                return None
            if result is not CONTINUES:
                return None
            # Every version in this block is newer than ``sequence``, and the
            # key's older versions continue in the next block.
            index += 1
        return None

    def iterate(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool = False,
        *,
        fill_cache: bool = True,
    ) -> Iterator[Entry]:
        """Iterate entries with ``low <= key < high`` as ``(key, sequence, value)``.

        None leaves a bound open. Forward order is key ascending with
        sequences descending within a key. Reverse order is key descending,
        and within one key sequences still descend (newest first). Blocks
        are read as the iteration reaches them. ``fill_cache=False`` keeps
        blocks read by this scan out of the block cache.
        """
        self._check_open()
        if low is not None and high is not None and low >= high:
            return iter(())
        if reverse:
            return self._iterate_reverse(low, high, fill_cache)
        return self._iterate_forward(low, high, fill_cache)

    def _iterate_forward(
        self, low: bytes | None, high: bytes | None, fill_cache: bool
    ) -> Iterator[Entry]:
        block_count = len(self._separators)
        index = 0 if low is None else bisect_left(self._separators, low)
        while index < block_count:
            block = self._data_block(index, fill_cache)
            first = 0 if low is None else block.first_run(low)
            for number in range(first, len(block.runs)):
                # Checked per run, so a long scan stops soon after close().
                self._check_open()
                entries = self._decode_run(index, block, number)
                start = 0
                if low is not None:
                    keys = block.runs[number][0]  # type: ignore[index]
                    start = bisect_left(keys, low)
                    if start < len(keys):
                        # Every later key is >= low.
                        low = None
                if high is not None and entries[-1][0] >= high:
                    keys = block.runs[number][0]  # type: ignore[index]
                    yield from entries[start : bisect_left(keys, high)]
                    return
                yield from entries[start:] if start else entries
            index += 1

    def _iterate_reverse(
        self, low: bytes | None, high: bytes | None, fill_cache: bool
    ) -> Iterator[Entry]:
        block_count = len(self._separators)
        if high is None:
            index = block_count - 1
        else:
            # Blocks after the first one whose separator is >= high hold
            # only keys >= high.
            index = min(bisect_left(self._separators, high), block_count - 1)
        # Walking backwards meets one key's versions oldest first, so they
        # are collected and yielded reversed when the key changes. The
        # versions of one key may span runs and blocks.
        group: list[Entry] = []
        group_key: bytes | None = None
        while index >= 0:
            block = self._data_block(index, fill_cache)
            last = len(block.runs) - 1
            if high is not None:
                # Runs that start at or above high hold only keys >= high.
                last = bisect_left(block.restart_keys, high) - 1
            for number in range(last, -1, -1):
                self._check_open()
                entries = self._decode_run(index, block, number)
                keys = block.runs[number][0]  # type: ignore[index]
                end = len(keys) if high is None else bisect_left(keys, high)
                high = None
                reached_low = low is not None and keys[0] < low
                start = bisect_left(keys, low) if reached_low else 0
                for position in range(end - 1, start - 1, -1):
                    entry = entries[position]
                    if entry[0] != group_key:
                        if group:
                            yield from reversed(group)
                        group = [entry]
                        group_key = entry[0]
                    else:
                        group.append(entry)
                if reached_low:
                    if group:
                        yield from reversed(group)
                    return
            index -= 1
        if group:
            yield from reversed(group)

    # -- checks and life cycle ------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> int:
        """Read every block, check every checksum and the entry order.

        Also checks restart points, separators, the bloom filter (no key may
        test absent) and the counts in the properties and footer. Returns
        the number of blocks read: data blocks plus the index, properties
        and filter blocks. Raises CorruptionError naming the first bad block.
        The block cache is neither used nor filled. ``progress``, when
        given, is called with 1 after each data block.
        """
        self._check_open()
        footer = self._footer
        metadata = [
            ("properties block", footer.properties_offset, footer.properties_size),
            ("index block", footer.index_offset, footer.index_size),
        ]
        if footer.has_filter:
            metadata.append(("filter block", footer.filter_offset, footer.filter_size))
        for what, offset, size in metadata:
            contents = self._read_contents(what, offset, size, True, None)
            if what != "filter block":
                try:
                    walk_block(contents, tagged=False)
                except BlockFormatError as exc:
                    raise self._corruption(what, offset, exc) from None
        return len(metadata) + self._verify_data_blocks(progress)

    def _verify_data_blocks(self, progress: Callable[[int], None] | None) -> int:
        previous: tuple[bytes, int] | None = None
        entries = 0
        tombstones = 0
        smallest_sequence = MAX_SEQUENCE
        largest_sequence = 0
        bloom = self._filter
        for index, (separator, offset, size) in enumerate(self.data_block_handles()):
            contents = self._read_contents(
                "data block", offset, size, True, self._max_data_block_size
            )
            try:
                walk_block(contents, tagged=True)
                block_entries = decode_data_block(contents).all_entries()
            except BlockFormatError as exc:
                raise self._corruption("data block", offset, exc) from None
            if index and block_entries[0][0] < self._separators[index - 1]:
                raise self._corruption(
                    "data block", offset, "first key sorts below the previous separator"
                )
            if block_entries[-1][0] > separator:
                raise self._corruption(
                    "data block", offset, "last key sorts above the block's separator"
                )
            for key, sequence, value in block_entries:
                if previous is not None and (
                    key < previous[0]
                    or (key == previous[0] and sequence >= previous[1])
                ):
                    raise self._corruption(
                        "data block",
                        offset,
                        f"entry {_short_repr(key)} at sequence {sequence} is out of order",
                    )
                if bloom is not None and (previous is None or key != previous[0]):
                    if not bloom.may_contain(key):
                        raise self._corruption(
                            "filter block",
                            self._footer.filter_offset,
                            f"key {_short_repr(key)} is missing from the bloom filter",
                        )
                previous = (key, sequence)
                entries += 1
                tombstones += value is None
                smallest_sequence = min(smallest_sequence, sequence)
                largest_sequence = max(largest_sequence, sequence)
            if progress is not None:
                progress(1)

        expected = {
            "entries": entries,
            "tombstones": tombstones,
            "smallest_sequence": smallest_sequence,
            "largest_sequence": largest_sequence,
        }
        for name, counted in expected.items():
            if self._properties[name] != counted:
                raise self._corruption(
                    "properties block",
                    self._footer.properties_offset,
                    f"property {name} is {self._properties[name]}, the data blocks "
                    f"give {counted}",
                )
        if previous is not None and self._smallest_key > previous[0]:
            raise self._corruption(
                "properties block",
                self._footer.properties_offset,
                "smallest_key is above a key in the data blocks",
            )
        return len(self._block_offsets)

    def describe(self) -> dict[str, Any]:
        """Return the footer, properties, filter and index as plain Python values."""
        self._check_open()
        filter_info = None
        if self._filter is not None:
            filter_info = {
                "offset": self._footer.filter_offset,
                "size": self._footer.filter_size,
                "bits": self._filter.bit_count,
                "probes": self._filter.probes,
            }
        return {
            "path": self.path,
            "file_number": self.file_number,
            "file_size": self.file_size,
            "format_version": self.format_version,
            "footer": {"offset": self._footer_offset, **self._footer._asdict()},
            "properties": dict(self._properties),
            "filter": filter_info,
            "index": [
                {"separator": separator, "offset": offset, "size": size}
                for separator, offset, size in self.data_block_handles()
            ],
        }

    def close(self) -> None:
        """Close the file; later reads raise ClosedError. Closing twice is allowed."""
        if not self._closed:
            self._closed = True
            self._file.close()

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.entries} entries"
        return f"<TableReader {self.path!r} #{self.file_number} {state}>"


def describe_table(
    fs: FileSystem | None, path: str, file_number: int = 0
) -> dict[str, Any]:
    """Open the table at ``path`` and return ``TableReader.describe()`` for it.

    Read the entries with ``TableReader(fs, path, n).iterate(None, None)``.
    """
    with TableReader(fs, path, file_number) as reader:
        return reader.describe()
