"""TableReader: point lookups, range iteration and verification of one table file.

storekit.lsm.table describes the file layout; docs/formats.md gives every
byte.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

from ..errors import ClosedError, CorruptionError
from ..fs import FileSystem, default_fs
from .block import (
    ABSENT,
    BLOCK_TRAILER_SIZE,
    CONTINUES,
    FOOTER_SIZE,
    MAX_SEQUENCE,
    BlockFormatError,
    DataBlock,
    Entry,
    Footer,
    decode_data_block,
    decode_data_entries,
    decode_handle,
    decode_plain_block,
    decode_properties,
    unseal_block,
    walk_block,
)
from .block_cache import BlockCache
from .bloom import _BIT_MASKS, BloomFilter, key_hash
from .table_builder import short_repr

__all__ = ["TableReader", "describe_table"]

# Entries an iteration yields between two checks that the table is open.
_CHECK_INTERVAL = 16
# Entries in the first chunk of a forward iteration.
_FIRST_CHUNK = 8


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

        #: Lookups the bloom filter passed; ``bloom_checks`` adds the negatives.
        self.bloom_passes = 0
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
        self._bloom_probe: Callable[[int], bool] | None = None
        self._bloom_bits: bytes | None = None
        self._bloom_bit_count = 0
        if footer.has_filter:
            offset = footer.filter_offset
            contents = self._read_contents(
                "filter block", offset, footer.filter_size, True, None
            )
            try:
                self._filter = BloomFilter(contents)
            except ValueError as exc:
                raise self._corruption("filter block", offset, exc) from None
            self._bloom_probe = self._filter.may_contain_hash
            if self._filter.probes == 7:
                self._bloom_bits = self._filter.bits
                self._bloom_bit_count = self._filter.bit_count

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
        # Block cache keys, built once so that a point lookup makes no tuple.
        self._cache_keys = [
            (self.file_number, offset) for offset in self._block_offsets
        ]

    # -- properties ---------------------------------------------------------

    @property
    def bloom_checks(self) -> int:
        """Lookups that consulted the bloom filter."""
        return self.bloom_negatives + self.bloom_passes

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
            cache.insert(self.file_number, offset, block, block.memory_size)
        return block

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
        return self.get_hashed(key, key_hash(key), sequence)

    def get_hashed(
        self, key: bytes, hashed: int, sequence: int
    ) -> tuple[int, bytes | None] | None:
        """Return what ``get`` returns, for a key in ``[smallest_key, largest_key]``.

        ``hashed`` is ``key_hash(key)``, so that a lookup that reads several
        tables hashes the key once. The caller checks the key range, and
        that the reader is open: the engine checks that the store is open
        and reads only tables of a live version, which stay open. Reading a
        block that is not cached still raises ClosedError on a closed
        reader.
        """
        bits = self._bloom_bits
        if bits is not None:
            # BloomFilter.may_contain_hash for 7 probes, inlined because
            # this runs for every table a lookup reads: keep the two in step.
            bit_count = self._bloom_bit_count
            bit = (hashed & 0xFFFFFFFF) % bit_count
            step = (hashed >> 32) % bit_count
            if (
                not bits[bit >> 3] & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
                or not bits[(bit := (bit + step) % bit_count) >> 3]
                & _BIT_MASKS[bit & 7]
            ):
                self.bloom_negatives += 1
                return None
            self.bloom_passes += 1
        elif self._bloom_probe is not None:
            if not self._bloom_probe(hashed):
                self.bloom_negatives += 1
                return None
            self.bloom_passes += 1
        # The last separator is the largest key, so index is a valid block.
        index = bisect_left(self._separators, key)
        cache = self._cache
        block = None
        if cache is not None:
            block = cache.lookup_key(self._cache_keys[index])
        if block is None:
            self._check_open()
            offset = self._block_offsets[index]
            block = self._read_data_block(offset, self._block_sizes[index])
            if cache is not None:
                cache.insert(self.file_number, offset, block, block.memory_size)
        while True:
            result = block.find(key, sequence)
            if result.__class__ is tuple:
                return result  # type: ignore[return-value]
            if result is ABSENT:
                # Versions of a key span blocks only when a block ends in
                # them, so an absent key is absent from the whole table.
                if self._filter is not None:
                    self.bloom_false_positives += 1
                return None
            if result is not CONTINUES:
                return None
            # Every version in this block is newer than ``sequence``, and the
            # key's older versions continue in the next block.
            index += 1
            if index == len(self._block_offsets):
                return None
            block = self._data_block(index, True)

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
        # The chunks are lists, so chain hands out their entries in C.
        return chain.from_iterable(self._forward_chunks(low, high, fill_cache))

    def _forward_chunks(
        self, low: bytes | None, high: bytes | None, fill_cache: bool
    ) -> Iterator[list[Entry]]:
        block_count = len(self._separators)
        index = 0 if low is None else bisect_left(self._separators, low)
        if low is None and high is None and not fill_cache:
            # A whole-table read that keeps blocks out of the cache
            # (compaction) decodes each block straight into entries.
            yield from self._uncached_chunks()
            return
        # A short first chunk: a merge of several sources often takes only
        # a few entries from each, so fewer are decoded and thrown away.
        chunk_size = _FIRST_CHUNK
        while index < block_count:
            block = self._data_block(index, fill_cache)
            start = 0
            if low is not None:
                start = block.bisect(low)
                # Every key of a later block is >= low.
                low = None
            stop = len(block)
            if high is not None and block.key_at(-1) >= high:
                stop = block.bisect(high)
                index = block_count  # the last block of the range
            while start < stop:
                # Checked every few entries, so a scan stops soon after close().
                self._check_open()
                end = min(start + chunk_size, stop)
                yield block.entries(start, end)
                start = end
                chunk_size = _CHECK_INTERVAL
            index += 1

    def _uncached_chunks(self) -> Iterator[list[Entry]]:
        """Yield every entry, in chunks, decoding blocks that are not cached."""
        cache = self._cache
        for index, offset in enumerate(self._block_offsets):
            self._check_open()
            block = None
            if cache is not None:
                block = cache.lookup(self.file_number, offset)
            if block is not None:
                entries = block.all_entries()
            else:
                self.block_reads += 1
                contents = self._read_contents(
                    "data block",
                    offset,
                    self._block_sizes[index],
                    self._verify_checksums,
                    self._max_data_block_size,
                )
                try:
                    entries = decode_data_entries(contents)
                except BlockFormatError as exc:
                    raise self._corruption("data block", offset, exc) from None
            for start in range(0, len(entries), _CHECK_INTERVAL):
                if start:
                    # Checked every few entries, so a scan stops soon after close().
                    self._check_open()
                yield entries[start : start + _CHECK_INTERVAL]

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
        # versions of one key may span blocks.
        group: list[Entry] = []
        group_key: bytes | None = None
        while index >= 0:
            block = self._data_block(index, fill_cache)
            end = len(block) if high is None else block.bisect(high)
            high = None
            reached_low = low is not None and block.key_at(0) < low
            start = block.bisect(low) if reached_low else 0
            for position, entry in enumerate(reversed(block.entries(start, end))):
                if position % _CHECK_INTERVAL == 0:
                    self._check_open()
                if entry[0] != group_key:
                    if group:
                        yield from reversed(group)
                    group = [entry]
                    group_key = entry[0]
                else:
                    group.append(entry)
            if reached_low:
                break
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
                        f"entry {short_repr(key)} at sequence {sequence} is out of order",
                    )
                if bloom is not None and (previous is None or key != previous[0]):
                    if not bloom.may_contain(key):
                        raise self._corruption(
                            "filter block",
                            self._footer.filter_offset,
                            f"key {short_repr(key)} is missing from the bloom filter",
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

    @property
    def closed(self) -> bool:
        """True once ``close`` ran."""
        return self._closed

    def __del__(self) -> None:
        # LSMStore drops readers past max_open_tables without closing them,
        # because a scan in another thread may still use one. The file
        # closes here, once nothing references the reader.
        if not getattr(self, "_closed", True) and hasattr(self, "_file"):
            self.close()

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
