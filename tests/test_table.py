"""Tests of the sorted table format: builder, reader, block cache and commands."""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import tempfile
import threading

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from storekit import MAX_KEY_SIZE
from storekit.cli import lsm_commands
from storekit.errors import ClosedError, CorruptionError, DurabilityError
from storekit.fs import OSFileSystem
from storekit.lsm.block import (
    ABSENT,
    BLOCK_TRAILER_SIZE,
    CONTINUES,
    FOOTER_SIZE,
    FORMAT_VERSION,
    KIND_DELETE,
    KIND_PUT,
    MAGIC,
    NOT_VISIBLE,
    BlockBuilder,
    BlockFormatError,
    DataBlock,
    decode_data_entries,
    seal_block,
    shortest_separator,
    unseal_block,
)
from storekit.lsm.block_cache import BlockCache
from storekit.lsm.bloom import BloomFilter, BloomFilterBuilder, key_hash
from storekit.lsm.table import TableBuilder, TableInfo, TableReader, describe_table
from storekit.testing import CrashFS

OS_FS = OSFileSystem()
LATEST = (1 << 56) - 1


# -- helpers ---------------------------------------------------------------------


def write_table(fs, path, entries, **options) -> TableInfo:
    """Write ``entries`` (key, sequence, value) in the given order and sync."""
    with fs.open(path, "w") as file:
        builder = TableBuilder(file, **options)
        for key, sequence, value in entries:
            builder.add(key, sequence, value)
        info = builder.finish()
        file.sync()
    return info


def sort_entries(entries):
    return sorted(entries, key=lambda entry: (entry[0], -entry[1]))


def model_get(entries, key, sequence):
    """Newest (sequence, value) of key at or below sequence, from sorted entries."""
    for entry_key, entry_sequence, value in entries:
        if entry_key == key and entry_sequence <= sequence:
            return entry_sequence, value
    return None


def model_range(entries, low, high, reverse=False):
    selected = [
        entry
        for entry in entries
        if (low is None or entry[0] >= low) and (high is None or entry[0] < high)
    ]
    if not reverse:
        return selected
    # Key descending, sequences still descending within a key.
    return sorted(selected, key=lambda entry: (entry[0], entry[1]), reverse=True)


def numbered_entries(count, value_size=20):
    return [
        (b"key%06d" % number, count - number + 1, b"v%d-" % number * (value_size // 4))
        for number in range(count)
    ]


def flip_byte(path, offset):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x5A]))


def overwrite(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def truncate_file(path, size):
    with open(path, "r+b") as handle:
        handle.truncate(size)


def read_footer(path):
    """Parse the footer by the documented layout, independently of the reader."""
    with open(path, "rb") as handle:
        data = handle.read()
    footer = data[-FOOTER_SIZE:]
    fields = struct.unpack("<QIQIQIQI", footer[:48])
    checksum, magic = struct.unpack("<I8s", footer[48:])
    return data, fields, checksum, magic


# -- round trips -------------------------------------------------------------------


def table_entries(max_keys=60):
    """Sorted entries: unique keys, each with 1-4 versions of distinct sequences."""
    versions = st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1 << 40),
            st.one_of(st.none(), st.binary(max_size=300)),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda version: version[0],
    )
    keys = st.one_of(
        st.binary(max_size=24),
        # A small alphabet gives long shared prefixes.
        st.text(alphabet="ab\x00\xff", max_size=12).map(
            lambda text: text.encode("latin-1")
        ),
        st.sampled_from([b"", b"\x00", b"\x00\x00", b"a,", b"a,\x00", b"\xff" * 3]),
    )
    return st.dictionaries(keys, versions, min_size=1, max_size=max_keys).map(
        lambda table: sort_entries(
            [
                (key, sequence, value)
                for key, key_versions in table.items()
                for sequence, value in key_versions
            ]
        )
    )


TABLE_OPTIONS = {
    "block_size": st.sampled_from([1, 48, 256, 4096]),
    "restart_interval": st.integers(min_value=1, max_value=16),
    "compression": st.sampled_from(["lz4", None]),
    "bloom_bits_per_key": st.sampled_from([0, 10]),
}


def check_round_trip(entries, options, probes, data):
    """Write ``entries``, then compare every read path with the model."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "000007.sst")
        info = write_table(OS_FS, path, entries, **options)
        with TableReader(OS_FS, path, 7, block_cache=BlockCache(1 << 20)) as reader:
            # First, while the cache is empty: the path that decodes blocks
            # straight into entries.
            assert list(reader.iterate(None, None, fill_cache=False)) == entries
            assert list(reader.iterate(None, None)) == entries
            # Now from the cached blocks.
            assert list(reader.iterate(None, None, fill_cache=False)) == entries
            assert list(reader.iterate(None, None, reverse=True)) == model_range(
                entries, None, None, reverse=True
            )

            versions: dict[bytes, list[tuple[bytes, int, bytes | None]]] = {}
            for entry in entries:
                versions.setdefault(entry[0], []).append(entry)
            for key, key_entries in versions.items():
                read_points = {0, LATEST}
                for _, sequence, _ in key_entries:
                    read_points.update((sequence - 1, sequence, sequence + 1))
                for sequence in sorted(read_points):
                    expected = model_get(key_entries, key, sequence)
                    assert reader.get(key, sequence) == expected, (key, sequence)
            for key in probes:
                if key not in versions:
                    assert reader.get(key, LATEST) is None, key

            keys = sorted(versions)
            bounds = st.one_of(st.none(), st.sampled_from(keys), st.binary(max_size=24))
            for _ in range(4):
                low = data.draw(bounds)
                high = data.draw(bounds)
                for reverse in (False, True):
                    assert list(reader.iterate(low, high, reverse)) == model_range(
                        entries, low, high, reverse
                    ), (low, high, reverse)

            sequences = {entry[1] for entry in entries}
            assert reader.verify() >= reader.data_blocks + 2
            assert reader.entries == len(entries) == info.entries
            assert reader.tombstones == info.tombstones
            assert info.tombstones == sum(1 for entry in entries if entry[2] is None)
            assert reader.smallest_key == info.smallest_key == entries[0][0]
            assert reader.largest_key == info.largest_key == entries[-1][0]
            assert info.smallest_sequence == min(sequences)
            assert info.largest_sequence == max(sequences)
            assert info.file_size == os.path.getsize(path)


@settings(max_examples=60, deadline=None)
@given(
    entries=table_entries(),
    options=st.fixed_dictionaries(TABLE_OPTIONS),
    probes=st.lists(st.binary(max_size=24), max_size=8),
    data=st.data(),
)
def test_round_trip(entries, options, probes, data):
    check_round_trip(entries, options, probes, data)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(
    entries=table_entries(max_keys=400),
    options=st.fixed_dictionaries(TABLE_OPTIONS),
    probes=st.lists(st.binary(max_size=24), max_size=30),
    data=st.data(),
)
def test_round_trip_large_tables(entries, options, probes, data):
    check_round_trip(entries, options, probes, data)


def test_round_trip_on_crash_fs():
    fs = CrashFS(seed=3)
    fs.mkdir("/db")
    entries = numbered_entries(500)
    info = write_table(fs, "/db/000001.sst", entries, block_size=512)

    with TableReader(fs, "/db/000001.sst", 1) as reader:
        assert list(reader.iterate(None, None)) == entries
        assert reader.get(b"key000123", LATEST) == (entries[123][1], entries[123][2])
        assert reader.file_size == info.file_size
        assert reader.verify() == info.data_blocks + 3


def test_keys_with_nul_bytes_keep_order(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = sort_entries(
        [
            (b"a,\x00", 1, b"1"),
            (b"a,", 2, b"2"),
            (b"\x00", 3, b"3"),
            (b"\x00\x00", 4, b"4"),
        ]
    )
    write_table(OS_FS, path, entries, block_size=1)

    with TableReader(OS_FS, path, 1) as reader:
        assert reader.get(b"a,\x00", LATEST) == (1, b"1")
        assert reader.get(b"a,", LATEST) == (2, b"2")
        assert reader.get(b"\x00", LATEST) == (3, b"3")
        assert reader.get(b"\x00\x00", LATEST) == (4, b"4")
        assert reader.get(b"a", LATEST) is None
        assert [entry[0] for entry in reader.iterate(None, None)] == [
            b"\x00",
            b"\x00\x00",
            b"a,",
            b"a,\x00",
        ]


def test_empty_value_is_not_tombstone(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = [(b"k1", 5, b""), (b"k1", 4, None), (b"k2", 3, None), (b"k2", 2, b"")]
    write_table(OS_FS, path, entries)

    with TableReader(OS_FS, path, 1) as reader:
        assert reader.get(b"k1", LATEST) == (5, b"")
        assert reader.get(b"k1", 4) == (4, None)
        assert reader.get(b"k2", LATEST) == (3, None)
        assert reader.get(b"k2", 2) == (2, b"")
        assert reader.tombstones == 2
        assert list(reader.iterate(None, None)) == entries


def test_get_at_sequences(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = [
        (b"a", 30, b"a30"),
        (b"a", 20, None),
        (b"a", 10, b"a10"),
        (b"b", 15, b"b15"),
    ]
    write_table(OS_FS, path, entries)

    with TableReader(OS_FS, path, 1) as reader:
        assert reader.get(b"a", LATEST) == (30, b"a30")
        assert reader.get(b"a", 30) == (30, b"a30")
        assert reader.get(b"a", 29) == (20, None)
        assert reader.get(b"a", 20) == (20, None)
        assert reader.get(b"a", 19) == (10, b"a10")
        assert reader.get(b"a", 10) == (10, b"a10")
        assert reader.get(b"a", 9) is None
        assert reader.get(b"b", 14) is None
        assert reader.get(b"b", 15) == (15, b"b15")
        assert reader.get(b"c", LATEST) is None
        assert reader.get(b"", LATEST) is None


def test_many_versions_span_blocks(tmp_path):
    path = str(tmp_path / "1.sst")
    versions = [
        (b"hot", sequence, b"value-%d" % sequence) for sequence in range(400, 0, -2)
    ]
    entries = [(b"cold", 1000, b"c")] + versions + [(b"warm", 7, b"w")]
    info = write_table(OS_FS, path, entries, block_size=64, restart_interval=3)

    assert info.data_blocks > 20
    with TableReader(OS_FS, path, 1) as reader:
        for sequence in range(0, 405):
            expected = model_get(entries, b"hot", sequence)
            assert reader.get(b"hot", sequence) == expected, sequence
        reversed_entries = list(reader.iterate(None, None, reverse=True))
        assert reversed_entries == model_range(entries, None, None, reverse=True)
        hot = [entry for entry in reversed_entries if entry[0] == b"hot"]
        assert [entry[1] for entry in hot] == list(range(400, 0, -2))
        assert list(reader.iterate(b"hot", b"hot\x00", reverse=True)) == versions
        assert list(reader.iterate(b"hot", b"hot\x00")) == versions
        # Separators repeat while one key's versions fill whole blocks.
        separators = [handle[0] for handle in reader.data_block_handles()]
        assert separators.count(b"hot") > 10
        assert reader.verify() == info.data_blocks + 3


def test_maximum_key_and_large_values(tmp_path):
    path = str(tmp_path / "1.sst")
    rng = random.Random(5)
    big_key = b"k" * (MAX_KEY_SIZE - 1) + b"\x01"
    random_value = rng.randbytes(3 << 20)
    repetitive_value = b"0123456789abcdef" * (5 << 16)  # 5 MiB
    entries = [
        (b"a", 1, b"small"),
        (big_key, 9, random_value),
        (big_key, 8, None),
        (big_key, 7, repetitive_value),
        (b"z" * MAX_KEY_SIZE, 2, b""),
    ]
    for compression in ("lz4", None):
        info = write_table(OS_FS, path, entries, compression=compression)
        with TableReader(OS_FS, path, 1) as reader:
            assert reader.get(big_key, LATEST) == (9, random_value)
            assert reader.get(big_key, 8) == (8, None)
            assert reader.get(big_key, 7) == (7, repetitive_value)
            assert reader.get(b"z" * MAX_KEY_SIZE, LATEST) == (2, b"")
            assert list(reader.iterate(None, None)) == entries
            assert list(reader.iterate(None, None, reverse=True)) == model_range(
                entries, None, None, reverse=True
            )
            assert reader.verify() == info.data_blocks + 3
        if compression == "lz4":
            # The repetitive value compresses; the random one cannot.
            assert info.file_size < len(random_value) + len(repetitive_value) // 4
        else:
            assert info.file_size > len(random_value) + len(repetitive_value)


def test_compression_on_and_off(tmp_path):
    entries = numbered_entries(2000, value_size=64)
    compressed_path = str(tmp_path / "lz4.sst")
    plain_path = str(tmp_path / "plain.sst")
    compressed = write_table(OS_FS, compressed_path, entries, compression="lz4")
    plain = write_table(OS_FS, plain_path, entries, compression=None)

    assert compressed.file_size < plain.file_size * 0.7
    for path, name in ((compressed_path, b"lz4"), (plain_path, b"none")):
        with TableReader(OS_FS, path, 1) as reader:
            assert reader.properties["compression"] == name
            assert list(reader.iterate(None, None)) == entries
            _, offset, size = reader.data_block_handles()[0]
        with open(path, "rb") as handle:
            handle.seek(offset + size)
            block_type = handle.read(1)[0]
        assert block_type == (1 if name == b"lz4" else 0)


def test_incompressible_blocks_stored_raw(tmp_path):
    rng = random.Random(11)
    # One 10 KiB random value per block: LZ4 output would be larger.
    entries = [(b"k%05d" % number, 1, rng.randbytes(10_000)) for number in range(30)]
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, entries, compression="lz4")

    with TableReader(OS_FS, path, 1) as reader:
        handles = reader.data_block_handles()
    with open(path, "rb") as handle:
        data = handle.read()
    block_types = {data[offset + size] for _, offset, size in handles}
    assert block_types == {0}


# -- the documented format ---------------------------------------------------------


def test_footer_matches_documented_layout(tmp_path):
    path = str(tmp_path / "1.sst")
    info = write_table(OS_FS, path, numbered_entries(300), block_size=512)
    data, fields, checksum, magic = read_footer(path)

    (
        filter_offset,
        filter_size,
        properties_offset,
        properties_size,
        index_offset,
        index_size,
        entries,
        version,
    ) = fields
    assert magic == MAGIC == b"storeSST"
    assert version == FORMAT_VERSION == 1
    assert checksum == xxhash.xxh32_intdigest(data[-FOOTER_SIZE:][:48])
    assert entries == 300
    assert index_offset + index_size + BLOCK_TRAILER_SIZE == len(data) - FOOTER_SIZE
    assert properties_offset + properties_size + BLOCK_TRAILER_SIZE == index_offset
    assert filter_offset + filter_size + BLOCK_TRAILER_SIZE == properties_offset
    assert info.index_size == index_size
    assert info.filter_size == filter_size
    # Each block's trailer: type byte, then xxh32 of stored bytes + type.
    for offset, size in (
        (filter_offset, filter_size),
        (properties_offset, properties_size),
        (index_offset, index_size),
    ):
        stored_checksum = struct.unpack_from("<I", data, offset + size + 1)[0]
        assert stored_checksum == xxhash.xxh32_intdigest(
            data[offset : offset + size + 1]
        )


def test_data_entry_matches_documented_layout(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = [(b"apple", 300, b"red"), (b"apricot", 5, None)]
    write_table(OS_FS, path, entries, compression=None, restart_interval=16)
    with open(path, "rb") as handle:
        data = handle.read()

    # shared, unshared, value size, key delta, tag u64, value.
    first = bytes([0, 5, 3]) + b"apple" + struct.pack("<Q", 300 << 8 | 1) + b"red"
    second = bytes([2, 5, 0]) + b"ricot" + struct.pack("<Q", 5 << 8 | 0)
    restarts = struct.pack("<II", 0, 1)  # one restart point at 0, count 1
    contents = first + second + restarts
    assert data.startswith(contents + b"\x00")
    trailer_checksum = struct.unpack_from("<I", data, len(contents) + 1)[0]
    assert trailer_checksum == xxhash.xxh32_intdigest(contents + b"\x00")


def test_restart_points_every_interval(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = [(b"key%03d" % number, 1, b"") for number in range(10)]
    write_table(OS_FS, path, entries, compression=None, restart_interval=4)
    with TableReader(OS_FS, path, 1) as reader:
        _, offset, size = reader.data_block_handles()[0]
    with open(path, "rb") as handle:
        handle.seek(offset)
        contents = handle.read(size)

    (count,) = struct.unpack_from("<I", contents, len(contents) - 4)
    restarts = struct.unpack_from(f"<{count}I", contents, len(contents) - 4 - 4 * count)
    assert count == 3  # entries 0, 4 and 8
    for restart in restarts:
        assert contents[restart] == 0  # a restart entry shares nothing
    entry_size = 3 + 6 + 8  # first entry: header, whole key, tag
    assert restarts[0] == 0
    assert restarts[1] == entry_size + 3 * (3 + 1 + 8)


def test_shortest_separator_cases():
    assert shortest_separator(b"abc", b"abc") == b"abc"
    assert shortest_separator(b"abc", b"abcd") == b"abc"
    assert shortest_separator(b"abcdef", b"abzzz") == b"abd"
    assert shortest_separator(b"abcdef", b"abd") == b"abce"
    assert shortest_separator(b"ab\xff\xff", b"ac") == b"ab\xff\xff"
    assert shortest_separator(b"b", b"a") == b"b"


@settings(max_examples=200, deadline=None)
@given(start=st.binary(max_size=12), limit=st.binary(max_size=12))
def test_shortest_separator_bounds(start, limit):
    separator = shortest_separator(start, limit)
    assert len(separator) <= len(start)
    if start < limit:
        assert start <= separator < limit
    else:
        assert separator == start


# -- builder input checks -------------------------------------------------------------


def test_builder_rejects_out_of_order(tmp_path):
    with OS_FS.open(str(tmp_path / "1.sst"), "w") as file:
        builder = TableBuilder(file)
        builder.add(b"b", 10, b"x")
        with pytest.raises(ValueError, match=r"b'b' at sequence 10 is out of order"):
            builder.add(b"b", 10, b"y")
        with pytest.raises(ValueError, match="out of order"):
            builder.add(b"b", 11, b"y")
        with pytest.raises(ValueError, match=r"b'a' at sequence 1 is out of order"):
            builder.add(b"a", 1, b"y")
        builder.add(b"b", 9, None)
        builder.add(b"c", 100, b"z")
        assert builder.finish().entries == 3


def test_builder_rejects_bad_arguments(tmp_path):
    with OS_FS.open(str(tmp_path / "1.sst"), "w") as file:
        builder = TableBuilder(file)
        with pytest.raises(TypeError, match="key must be bytes"):
            builder.add("text", 1, b"v")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="value must be bytes"):
            builder.add(b"k", 1, 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="sequence must be an int, not str"):
            builder.add(b"k", "1", b"v")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sequence -1 is outside"):
            builder.add(b"k", -1, b"v")
        with pytest.raises(ValueError, match=f"sequence {1 << 56} is outside"):
            builder.add(b"k", 1 << 56, b"v")
        with pytest.raises(ValueError, match="exceeds MAX_KEY_SIZE"):
            builder.add(b"k" * (MAX_KEY_SIZE + 1), 1, b"v")
        builder.add(bytearray(b"k"), LATEST, memoryview(b"v"))
        info = builder.finish()
    assert info.largest_sequence == LATEST
    assert type(info.smallest_key) is bytes


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"block_size": 0}, ValueError, "block_size must be >= 1"),
        ({"block_size": "4096"}, TypeError, "block_size must be an int"),
        ({"block_size": 1 << 30}, ValueError, "block_size must be >= 1 and <="),
        ({"restart_interval": 0}, ValueError, "restart_interval must be >= 1"),
        ({"bloom_bits_per_key": -1}, ValueError, "bloom_bits_per_key must be >= 0"),
        ({"compression": "zstd"}, ValueError, "compression must be 'lz4' or None"),
    ],
)
def test_builder_rejects_bad_options(tmp_path, options, error, message):
    with OS_FS.open(str(tmp_path / "1.sst"), "w") as file:
        with pytest.raises(error, match=message):
            TableBuilder(file, **options)


def test_builder_life_cycle(tmp_path):
    with OS_FS.open(str(tmp_path / "1.sst"), "w") as file:
        builder = TableBuilder(file)
        with pytest.raises(ValueError, match="has no entries; call abandon"):
            builder.finish()
        builder.add(b"a", 1, b"1")
        builder.finish()
        with pytest.raises(ClosedError, match="finished"):
            builder.add(b"b", 1, b"1")
        with pytest.raises(ClosedError):
            builder.finish()

    with OS_FS.open(str(tmp_path / "2.sst"), "w") as file:
        builder = TableBuilder(file)
        builder.add(b"a", 1, b"1")
        builder.abandon()
        with pytest.raises(ClosedError, match="abandoned"):
            builder.add(b"b", 1, b"1")
        assert file.size() == 0


def test_estimated_size_tracks_output(tmp_path):
    with OS_FS.open(str(tmp_path / "1.sst"), "w") as file:
        builder = TableBuilder(file, block_size=1024, compression=None)
        previous = builder.estimated_size
        for key, sequence, value in numbered_entries(1000):
            builder.add(key, sequence, value)
            estimate = builder.estimated_size
            assert estimate >= previous
            assert file.size() <= estimate <= file.size() + 1024 + 64
            previous = estimate
        info = builder.finish()
    assert info.file_size >= previous


def test_finish_does_not_sync():
    fs = CrashFS(seed=1)
    fs.mkdir("/db")
    file = fs.open("/db/000001.sst", "w")
    builder = TableBuilder(file)
    builder.add(b"a", 1, b"1")
    info = builder.finish()
    assert fs.durable_bytes("/db/000001.sst") == b""

    file.sync()
    assert len(fs.durable_bytes("/db/000001.sst")) == info.file_size
    file.close()


def test_failed_write_stops_builder():
    fs = CrashFS(seed=2)
    fs.mkdir("/db")
    file = fs.open("/db/000001.sst", "w")
    builder = TableBuilder(file, block_size=64)
    fs.fail("write", at=1)
    with pytest.raises(DurabilityError, match="write failed"):
        for key, sequence, value in numbered_entries(100):
            builder.add(key, sequence, value)
    with pytest.raises(ClosedError, match="failed"):
        builder.add(b"zzz", 1, b"1")


# -- corruption ------------------------------------------------------------------------


@pytest.fixture
def sample_table(tmp_path):
    """A table with many data blocks, a filter, properties and an index."""
    path = str(tmp_path / "000009.sst")
    entries = numbered_entries(600)
    entries.insert(3, (entries[2][0], 1, None))  # a tombstone under key 2
    entries = sort_entries(entries)
    write_table(OS_FS, path, entries, block_size=512)
    with TableReader(OS_FS, path, 9) as reader:
        handles = reader.data_block_handles()
        footer = reader.describe()["footer"]
    with open(path, "rb") as handle:
        original = handle.read()
    return path, entries, handles, footer, original


def restore(path, original):
    with open(path, "wb") as handle:
        handle.write(original)


def check_reads_never_wrong(path, entries, corrupt_offset):
    """Check that every read returns the right entry or raises CorruptionError for the block."""
    with TableReader(OS_FS, path, 9) as reader:
        for key in sorted({entry[0] for entry in entries}):
            try:
                result = reader.get(key, LATEST)
            except CorruptionError as exc:
                assert exc.path == path
                assert exc.offset == corrupt_offset
            else:
                assert result == model_get(entries, key, LATEST)
        for reverse in (False, True):
            with pytest.raises(CorruptionError) as raised:
                list(reader.iterate(None, None, reverse))
            assert raised.value.offset == corrupt_offset
        with pytest.raises(CorruptionError) as raised:
            list(reader.iterate(None, None, fill_cache=False))
        assert raised.value.path == path
        assert raised.value.offset == corrupt_offset
        with pytest.raises(CorruptionError) as raised:
            reader.verify()
        assert raised.value.path == path
        assert raised.value.offset == corrupt_offset


def test_corrupt_data_block_detected(sample_table):
    path, entries, handles, _, original = sample_table
    for _, offset, size in (handles[0], handles[len(handles) // 2], handles[-1]):
        # The first byte, a middle byte, the restart count, the type byte
        # and the checksum of the trailer.
        for position in (0, size // 2, size - 1, size, size + 1, size + 4):
            flip_byte(path, offset + position)
            check_reads_never_wrong(path, entries, offset)
            restore(path, original)


@pytest.mark.parametrize("block", ["filter", "properties", "index"])
def test_corrupt_metadata_block_detected(sample_table, block):
    path, _, _, footer, original = sample_table
    offset = footer[f"{block}_offset"]
    size = footer[f"{block}_size"]
    for position in (0, size // 3, size - 1, size, size + 2):
        flip_byte(path, offset + position)
        with pytest.raises(
            CorruptionError, match=f"{block} block at offset {offset}"
        ) as raised:
            TableReader(OS_FS, path, 9)
        assert raised.value.path == path
        assert raised.value.offset == offset
        restore(path, original)


def test_corrupt_footer_detected(sample_table):
    path, _, _, footer, original = sample_table
    footer_offset = footer["offset"]
    assert footer_offset == len(original) - FOOTER_SIZE
    # Every field: handles, entry count, version, checksum and magic.
    for position in (0, 9, 13, 25, 37, 44, 48, 52, 59):
        flip_byte(path, footer_offset + position)
        with pytest.raises(CorruptionError, match="footer at offset") as raised:
            TableReader(OS_FS, path, 9)
        assert raised.value.path == path
        assert raised.value.offset == footer_offset
        restore(path, original)


def test_unknown_format_version_rejected(sample_table):
    path, _, _, footer, original = sample_table
    fields = list(struct.unpack_from("<QIQIQIQI", original, footer["offset"]))
    fields[7] = 2
    head = struct.pack("<QIQIQIQI", *fields)
    overwrite(
        path, footer["offset"], head + struct.pack("<I", xxhash.xxh32_intdigest(head))
    )
    with pytest.raises(CorruptionError, match="unsupported format version 2"):
        TableReader(OS_FS, path, 9)


def test_truncated_table_detected(sample_table):
    path, _, handles, footer, original = sample_table
    sizes = [0, 1, FOOTER_SIZE - 1, FOOTER_SIZE, handles[1][1], footer["index_offset"]]
    sizes += [len(original) - 1, len(original) - FOOTER_SIZE, len(original) // 2]
    for size in sizes:
        truncate_file(path, size)
        with pytest.raises(CorruptionError, match="footer at offset") as raised:
            TableReader(OS_FS, path, 9)
        assert raised.value.path == path
        assert raised.value.offset == max(size - FOOTER_SIZE, 0)
        assert path in str(raised.value)
        restore(path, original)


def test_zero_length_table_is_corruption(tmp_path):
    path = str(tmp_path / "000004.sst")
    open(path, "wb").close()
    with pytest.raises(CorruptionError, match="truncated or never finished") as raised:
        TableReader(OS_FS, path, 4)
    assert raised.value.path == path
    assert raised.value.offset == 0


def test_unchecked_corruption_raises_only_corruption(sample_table):
    path, entries, handles, footer, original = sample_table
    rng = random.Random(7)
    data_end = footer["filter_offset"]
    for _ in range(150):
        offset = rng.randrange(data_end)
        flip_byte(path, offset)
        with TableReader(OS_FS, path, 9, verify_checksums=False) as reader:
            for key in (entries[0][0], entries[len(entries) // 2][0], entries[-1][0]):
                try:
                    reader.get(key, LATEST)
                except CorruptionError as exc:
                    assert exc.path == path
            for fill_cache in (True, False):
                try:
                    for _ in reader.iterate(None, None, fill_cache=fill_cache):
                        pass
                except CorruptionError:
                    pass
            with pytest.raises(CorruptionError):
                reader.verify()
        restore(path, original)


def test_lz4_length_header_bounded(tmp_path):
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, numbered_entries(200), block_size=4096, compression="lz4")
    with TableReader(OS_FS, path, 1) as reader:
        _, offset, size = reader.data_block_handles()[0]
    overwrite(path, offset, b"\xff\xff\xff\x7f")  # claims 2 GiB uncompressed

    with TableReader(OS_FS, path, 1, verify_checksums=False) as reader:
        with pytest.raises(CorruptionError, match="LZ4 header claims 2147483647 bytes"):
            reader.get(b"key000001", LATEST)
    with TableReader(OS_FS, path, 1) as reader:
        with pytest.raises(CorruptionError, match="checksum mismatch"):
            reader.get(b"key000001", LATEST)


# -- reads: laziness, closing, crashes ------------------------------------------------


def test_get_reads_one_block(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = numbered_entries(2000)
    info = write_table(OS_FS, path, entries, block_size=1024)
    assert info.data_blocks > 10
    with TableReader(OS_FS, path, 1) as reader:
        assert reader.get(b"key001000", LATEST) is not None
        assert reader.block_reads == 1
        assert reader.get(b"key001000x", LATEST) is None
        assert reader.block_reads <= 2
        assert reader.get(b"zzz", LATEST) is None  # above the largest key
        assert reader.bloom_checks == 2


def test_iterate_reads_blocks_lazily(tmp_path):
    path = str(tmp_path / "1.sst")
    info = write_table(OS_FS, path, numbered_entries(2000), block_size=1024)
    with TableReader(OS_FS, path, 1) as reader:
        iterator = reader.iterate(b"key000500", None)
        assert reader.block_reads == 0
        assert next(iterator)[0] == b"key000500"
        assert reader.block_reads == 1
        backwards = reader.iterate(None, b"key000500", reverse=True)
        assert next(backwards)[0] == b"key000499"
        assert reader.block_reads <= 3
        assert sum(1 for _ in reader.iterate(None, None)) == 2000
        assert reader.block_reads <= 3 + info.data_blocks


def test_empty_and_inverted_ranges(tmp_path):
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, numbered_entries(100))
    with TableReader(OS_FS, path, 1) as reader:
        assert list(reader.iterate(b"key000050", b"key000050")) == []
        assert list(reader.iterate(b"key000060", b"key000050", reverse=True)) == []
        assert list(reader.iterate(b"zzz", None)) == []
        assert list(reader.iterate(None, b"a", reverse=True)) == []
        assert len(list(reader.iterate(b"", None, reverse=True))) == 100


def test_closed_reader_raises(tmp_path):
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, numbered_entries(100))
    reader = TableReader(OS_FS, path, 1, block_cache=BlockCache(1 << 20))
    assert reader.get(b"key000001", LATEST) is not None
    iterator = reader.iterate(None, None)
    next(iterator)
    reader.close()
    reader.close()
    with pytest.raises(ClosedError, match="is closed"):
        reader.get(b"key000001", LATEST)
    with pytest.raises(ClosedError):
        reader.iterate(None, None)
    with pytest.raises(ClosedError):
        reader.verify()
    with pytest.raises(ClosedError):
        list(iterator)


def test_crash_closes_reader():
    fs = CrashFS(seed=4)
    fs.mkdir("/db")
    write_table(fs, "/db/000001.sst", numbered_entries(100))
    fs.sync_dir("/db")
    cache = BlockCache(1 << 20)
    reader = TableReader(fs, "/db/000001.sst", 1, block_cache=cache)
    assert reader.get(b"key000001", LATEST) is not None

    fs.crash()
    # The block is cached, but the reader must not serve it after the crash.
    with pytest.raises(ClosedError, match="crashed"):
        reader.get(b"key000001", LATEST)
    reader.close()
    with TableReader(fs, "/db/000001.sst", 1) as reopened:
        assert reopened.get(b"key000001", LATEST) is not None


def test_concurrent_gets(tmp_path):
    path = str(tmp_path / "1.sst")
    entries = numbered_entries(3000)
    write_table(OS_FS, path, entries, block_size=512)
    cache = BlockCache(64 << 10)
    errors = []
    with TableReader(OS_FS, path, 1, block_cache=cache) as reader:

        def read(seed):
            rng = random.Random(seed)
            try:
                for _ in range(2000):
                    number = rng.randrange(len(entries))
                    key, sequence, value = entries[number]
                    assert reader.get(key, LATEST) == (sequence, value)
            except BaseException as exc:  # report in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=read, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    cache._check_invariants()


# -- block cache ------------------------------------------------------------------------


def test_block_cache_counts_hits_and_misses(tmp_path):
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, numbered_entries(2000), block_size=1024)
    cache = BlockCache(1 << 20)
    with TableReader(OS_FS, path, 3, block_cache=cache) as reader:
        reader.get(b"key000010", LATEST)
        assert (cache.hits, cache.misses) == (0, 1)
        reader.get(b"key000011", LATEST)
        assert (cache.hits, cache.misses) == (1, 1)
        assert reader.block_reads == 1
        reader.get(b"key001900", LATEST)
        assert (cache.hits, cache.misses) == (1, 2)
        assert len(cache) == 2

        assert cache.evict_file(3) == 2
        assert len(cache) == 0
        assert cache.usage == 0
        reader.get(b"key000010", LATEST)
        assert (cache.hits, cache.misses) == (1, 3)
        assert reader.block_reads == 3
        assert cache.stats()["evictions"] == 0
    cache._check_invariants()


def test_block_cache_scan_without_fill(tmp_path):
    path = str(tmp_path / "1.sst")
    write_table(OS_FS, path, numbered_entries(500), block_size=1024)
    cache = BlockCache(1 << 20)
    with TableReader(OS_FS, path, 3, block_cache=cache) as reader:
        assert len(list(reader.iterate(None, None, fill_cache=False))) == 500
        assert len(cache) == 0
        assert len(list(reader.iterate(None, None))) == 500
        assert len(cache) == reader.data_blocks


def test_block_cache_shared_by_tables(tmp_path):
    first = str(tmp_path / "1.sst")
    second = str(tmp_path / "2.sst")
    write_table(OS_FS, first, [(b"a", 1, b"first")])
    write_table(OS_FS, second, [(b"a", 1, b"second")])
    cache = BlockCache(1 << 20)
    with (
        TableReader(OS_FS, first, 1, block_cache=cache) as one,
        TableReader(OS_FS, second, 2, block_cache=cache) as two,
    ):
        # Both blocks sit at offset 0; the file number keeps them apart.
        for _ in range(3):
            assert one.get(b"a", LATEST) == (1, b"first")
            assert two.get(b"a", LATEST) == (1, b"second")
        assert cache.misses == 2
        assert cache.hits == 4
        cache.evict_file(1)
        assert len(cache) == 1


def test_block_cache_evicts_least_recently_used():
    cache = BlockCache(300)
    cache.insert(1, 0, "a", 100)
    cache.insert(1, 100, "b", 100)
    cache.insert(1, 200, "c", 100)
    assert cache.lookup(1, 0) == "a"  # now b is the least recently used
    cache.insert(2, 0, "d", 100)

    assert cache.lookup(1, 100) is None
    assert cache.lookup(1, 0) == "a"
    assert cache.lookup(1, 200) == "c"
    assert cache.lookup(2, 0) == "d"
    assert cache.usage == 300
    assert cache.stats()["evictions"] == 1

    cache.insert(1, 0, "a2", 250)  # replacing charges the difference
    assert cache.usage <= 300
    assert cache.lookup(1, 0) == "a2"
    cache._check_invariants()


def test_block_cache_skips_oversized_blocks():
    cache = BlockCache(100)
    cache.insert(1, 0, "big", 101)
    assert len(cache) == 0
    assert cache.lookup(1, 0) is None


def test_block_cache_zero_capacity_disables():
    cache = BlockCache(0)
    cache.insert(1, 0, "block", 1)
    assert cache.lookup(1, 0) is None
    assert len(cache) == 0
    assert cache.stats() == {
        "hits": 0,
        "misses": 1,
        "evictions": 0,
        "blocks": 0,
        "usage_bytes": 0,
        "capacity_bytes": 0,
    }


def test_block_cache_rejects_bad_capacity():
    with pytest.raises(ValueError, match="capacity_bytes must be >= 0, not -1"):
        BlockCache(-1)
    with pytest.raises(TypeError, match="capacity_bytes must be an int, not float"):
        BlockCache(1.5)  # type: ignore[arg-type]


def test_block_cache_thread_stress():
    cache = BlockCache(2000)
    lookups = []
    barrier = threading.Barrier(8)
    errors = []

    def work(seed):
        rng = random.Random(seed)
        count = 0
        barrier.wait()
        try:
            for step in range(5000):
                file_number = rng.randrange(4)
                offset = rng.randrange(30) * 100
                block = cache.lookup(file_number, offset)
                count += 1
                if block is None:
                    cache.insert(file_number, offset, (file_number, offset), 100)
                else:
                    assert block == (file_number, offset)
                if step % 1000 == 0:
                    cache.evict_file(file_number)
        except BaseException as exc:  # report in the main thread
            errors.append(exc)
        lookups.append(count)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert cache.hits + cache.misses == sum(lookups)
    assert cache.usage <= 2000
    cache._check_invariants()


# -- describe and commands --------------------------------------------------------------


def test_describe_table(tmp_path):
    path = str(tmp_path / "000012.sst")
    info = write_table(OS_FS, path, numbered_entries(300), block_size=512)
    description = describe_table(None, path, 12)

    assert description["path"] == path
    assert description["file_number"] == 12
    assert description["file_size"] == info.file_size
    assert description["format_version"] == FORMAT_VERSION
    assert description["properties"]["entries"] == 300
    assert description["properties"]["smallest_key"] == b"key000000"
    assert description["properties"]["data_blocks"] == info.data_blocks
    assert len(description["index"]) == info.data_blocks
    assert description["index"][0]["offset"] == 0
    assert description["filter"]["probes"] == 7
    assert description["footer"]["offset"] == info.file_size - FOOTER_SIZE


def run_command(argv):
    parser = argparse.ArgumentParser(prog="storekit")
    subparsers = parser.add_subparsers(dest="command", required=True)
    lsm_commands.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def test_dump_sst_text(tmp_path, capsys):
    path = str(tmp_path / "000005.sst")
    entries = [(b"a", 3, b"alpha"), (b"a", 2, None), (b"b\xff", 1, b"x" * 100)]
    write_table(OS_FS, path, entries)

    assert run_command(["dump-sst", path, "--index"]) == 0
    output = capsys.readouterr().out
    assert "entries: 3 (1 tombstones), sequences 1..3" in output
    assert "  a @3 put alpha" in output
    assert "  a @2 delete" in output
    assert "  hex:62ff @1 put " + "x" * 64 + "... (100 bytes)" in output
    assert "block 0: offset 0" in output

    assert run_command(["dump-sst", path, "--limit", "1"]) == 0
    output = capsys.readouterr().out
    assert "a @3 put alpha" in output
    assert "a @2 delete" not in output
    assert "--limit 1 reached" in output


def test_dump_sst_json(tmp_path, capsys):
    path = str(tmp_path / "000005.sst")
    entries = [(b"a", 3, b"alpha"), (b"a", 2, None), (b"b", 1, b"")]
    write_table(OS_FS, path, entries)

    assert run_command(["dump-sst", path, "--json", "--limit", "2"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["file_number"] == 5
    assert document["properties"]["entries"] == 3
    assert document["properties"]["largest_key"] == "b"
    assert document["entries"] == [
        {"key": "a", "sequence": 3, "kind": "put", "value": "alpha"},
        {"key": "a", "sequence": 2, "kind": "delete", "value": None},
    ]


def test_dump_sst_rejects_negative_limit(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_command(["dump-sst", str(tmp_path / "x.sst"), "--limit", "-1"])
    assert "count must be >= 0, not -1" in capsys.readouterr().err


def test_verify_sst_command(tmp_path, capsys):
    path = str(tmp_path / "000005.sst")
    info = write_table(OS_FS, path, numbered_entries(300), block_size=512)

    assert run_command(["verify-sst", path]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{path}: ok, {info.data_blocks + 3} blocks, 300 entries"
    )

    flip_byte(path, 10)
    assert run_command(["verify-sst", path, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert document["offset"] == 0
    assert "data block at offset 0: checksum mismatch" in document["error"]

    assert run_command(["verify-sst", path]) == 1
    output = capsys.readouterr()
    assert output.out == ""
    error_lines = output.err.strip().splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith(f"storekit: error: {path}: corrupt:")


def test_file_number_from_path():
    assert lsm_commands.file_number_from_path("/db/000123.sst") == 123
    assert lsm_commands.file_number_from_path("table.sst") == 0


def test_approximate_offset(tmp_path):
    path = str(tmp_path / "1.sst")
    info = write_table(OS_FS, path, numbered_entries(2000), block_size=1024)
    with TableReader(OS_FS, path, 1) as reader:
        handles = reader.data_block_handles()
        assert reader.approximate_offset(b"") == 0
        assert reader.approximate_offset(b"key000000") == 0
        assert reader.approximate_offset(handles[3][0]) == handles[3][1]
        middle = reader.approximate_offset(b"key001000")
        end = reader.approximate_offset(b"zzz")
        data_end = reader.describe()["footer"]["filter_offset"]
    assert 0 < middle < end
    assert end == data_end
    assert info.data_blocks == len(handles)


# -- decoded data blocks ---------------------------------------------------------


def encode_data_block(entries, restart_interval=16):
    """Return the contents of one data block holding ``entries`` (key, sequence, value)."""
    builder = BlockBuilder(restart_interval)
    for key, sequence, value in entries:
        kind = KIND_DELETE if value is None else KIND_PUT
        builder.add(key, b"" if value is None else value, sequence << 8 | kind)
    return builder.finish()


def test_data_block_skips_misaligned_match():
    # The suffixes "ab" and "ba" join to "abba", where "bb" matches at the
    # odd offset 1, across two keys.
    block = DataBlock(encode_data_block([(b"ab", 2, b"x"), (b"ba", 1, b"y")]))
    assert block.find(b"bb", LATEST) == ABSENT
    assert block.find(b"ba", LATEST) == (1, b"y")
    assert block.find(b"ab", LATEST) == (2, b"x")
    assert block.keys == [b"ab", b"ba"]


def test_data_block_shared_prefix_lookups():
    keys = [b"user:%08d" % number for number in range(0, 400, 7)]
    entries = [(key, 5, key[::-1]) for key in keys]
    block = DataBlock(encode_data_block(entries))
    assert block.keys == keys
    for index, key in enumerate(keys):
        assert block.find(key, LATEST) == (5, key[::-1])
        # Versions of the last key may continue in the next block.
        hidden = CONTINUES if index == len(keys) - 1 else NOT_VISIBLE
        assert block.find(key, 4) == hidden
        assert block.key_at(index) == key
        assert block.bisect(key) == index
        assert block.bisect(key + b"\x00") == index + 1
    assert block.key_at(-1) == keys[-1]
    for missing in (b"user:00000001", b"user:9", b"user:", b"a", b"zzz", b""):
        assert block.find(missing, LATEST) == ABSENT
    assert block.bisect(b"a") == 0
    assert block.bisect(b"user:") == 0
    assert block.bisect(b"zzz") == len(keys)
    assert block.entries(0, len(keys)) == entries


def test_data_block_versions_and_continuation():
    entries = [(b"k1", 9, b"new"), (b"k1", 4, None), (b"k2", 7, b"b"), (b"k2", 3, b"a")]
    block = DataBlock(encode_data_block(entries))
    assert block.find(b"k1", LATEST) == (9, b"new")
    assert block.find(b"k1", 8) == (4, None)
    assert block.find(b"k1", 3) == NOT_VISIBLE
    assert block.find(b"k2", 5) == (3, b"a")
    assert block.find(b"k2", 2) == CONTINUES
    assert block.all_entries() == entries


@pytest.mark.parametrize(
    "keys",
    [
        [b"a", b"bb", b"ccc"],  # lengths differ
        [b"same", b"same", b"same"],  # one key, many versions
        [b"", b"\x00"],  # an empty key
    ],
)
def test_data_block_list_form_lookups(keys):
    entries = [(key, 30 - index, b"v%d" % index) for index, key in enumerate(keys)]
    block = DataBlock(encode_data_block(entries))
    assert block.keys == keys
    assert block.all_entries() == entries
    assert block.find(keys[0], LATEST) == (30, b"v0")
    assert block.find(b"zz", LATEST) == ABSENT
    assert block.bisect(keys[-1]) == keys.index(keys[-1])


def test_data_block_charge_includes_keys():
    entries = [(b"%016d" % number, 1, bytes(100)) for number in range(30)]
    contents = encode_data_block(entries)
    block = DataBlock(contents)
    assert block.contents_size == len(contents)
    # One bytes object of suffixes instead of one object per key.
    assert len(contents) < block.memory_size < 1.5 * len(contents)
    varied = DataBlock(
        encode_data_block([(b"%d" % number, 1, bytes(100)) for number in range(30)])
    )
    assert varied.memory_size > varied.contents_size + 30 * 33


@settings(max_examples=100, deadline=None)
@given(entries=table_entries(max_keys=40), restart_interval=st.integers(1, 16))
def test_decode_data_entries_matches_data_block(entries, restart_interval):
    contents = encode_data_block(entries, restart_interval)
    assert decode_data_entries(contents) == DataBlock(contents).all_entries() == entries


@pytest.mark.parametrize(
    "tag, value, message",
    [
        (5 << 8 | 2, b"v", "has kind 2"),
        (5 << 8 | KIND_DELETE, b"v", "tombstone"),
    ],
)
def test_decode_data_entries_rejects_bad_entries(tag, value, message):
    builder = BlockBuilder(16)
    builder.add(b"key", value, tag)
    contents = builder.finish()
    with pytest.raises(BlockFormatError, match=message):
        decode_data_entries(contents)
    with pytest.raises(BlockFormatError, match=message):
        DataBlock(contents)


def test_decode_data_entries_rejects_truncated_entry():
    contents = encode_data_block([(b"key", 5, b"value")])
    # Restart array of one restart at 0, after entry bytes cut short.
    damaged = contents[:6] + struct.pack("<II", 0, 1)
    with pytest.raises(BlockFormatError):
        decode_data_entries(damaged)
    with pytest.raises(BlockFormatError):
        DataBlock(damaged)


# -- bloom filter probes -----------------------------------------------------------


@pytest.mark.parametrize("bits_per_key", [1, 4, 10, 16])
def test_bloom_hash_probe_matches_key_probe(bits_per_key):
    builder = BloomFilterBuilder(bits_per_key)
    added = [b"%016d" % number for number in range(0, 3000, 3)]
    for key in added:
        builder.add_key(key)
    bloom = BloomFilter(builder.finish())
    for key in added:
        assert bloom.may_contain(key)
        assert bloom.may_contain_hash(key_hash(key))
    for number in range(1, 3000, 3):
        key = b"%016d" % number
        assert bloom.may_contain_hash(key_hash(key)) == bloom.may_contain(key)


def test_bloom_filter_sets_documented_bits():
    # Bit (h1 + i * h2) mod m for i in 0..k-1, with h1 and h2 the low and
    # high 32 bits of the key's xxh64: the layout in storekit.lsm.bloom.
    keys = [b"%08d" % number for number in range(500)]
    builder = BloomFilterBuilder(10)
    builder.add_hashes(map(key_hash, keys[:250]))
    for key in keys[250:]:
        builder.add_key(key)
    contents = builder.finish()
    bit_count = (len(contents) - 1) * 8
    expected = bytearray(bit_count // 8)
    for key in keys:
        hashed = xxhash.xxh64_intdigest(key)
        for probe in range(builder.probes):
            bit = ((hashed & 0xFFFFFFFF) + probe * (hashed >> 32)) % bit_count
            expected[bit >> 3] |= 1 << (bit & 7)
    assert contents[:-1] == bytes(expected)
    assert contents[-1] == builder.probes


# -- bulk table building -----------------------------------------------------------


def build_bytes(entries, bulk, **options):
    """Return the bytes of a table built one entry at a time or in one bulk call."""
    fs = CrashFS()
    with fs.open("/t.sst", "w") as file:
        builder = TableBuilder(file, **options)
        if bulk:
            assert builder.add_trusted_entries(iter(entries)) is None
        else:
            for entry in entries:
                builder.add_trusted(*entry)
        builder.finish()
    with fs.open("/t.sst", "r") as file:
        return file.read(0, file.size())


@settings(max_examples=60, deadline=None)
@given(entries=table_entries(), options=st.fixed_dictionaries(TABLE_OPTIONS))
def test_bulk_add_writes_same_table(entries, options):
    assert build_bytes(entries, True, **options) == build_bytes(
        entries, False, **options
    )


@pytest.mark.parametrize("prefix_size", [127, 128, 130, 255, 256, 300, 1000])
def test_bulk_add_long_shared_prefixes(prefix_size):
    # Neighbouring keys share prefix_size bytes, so the shared length needs
    # a two-byte varint from 128 on, whatever the unshared length.
    prefix = b"p" * prefix_size
    entries = [(prefix + b"%03d" % number, 10, b"v%d" % number) for number in range(40)]
    entries.append((prefix + b"999" + b"x" * 200, 9, b"long"))
    bulk = build_bytes(entries, True, block_size=512)
    assert bulk == build_bytes(entries, False, block_size=512)
    fs = CrashFS()
    with fs.open("/t.sst", "w") as file:
        builder = TableBuilder(file, block_size=512)
        assert builder.add_trusted_entries(iter(entries)) is None
        builder.finish()
    with TableReader(fs, "/t.sst", 1) as reader:
        assert list(reader.iterate(None, None)) == entries
        assert reader.get(entries[17][0], LATEST) == (10, b"v17")
        assert reader.verify() > 0


def test_bulk_add_split_and_resume():
    entries = numbered_entries(400, value_size=50)
    fs = CrashFS()
    with fs.open("/t.sst", "w") as file:
        builder = TableBuilder(file, block_size=512)
        iterator = iter(entries)
        first_left = builder.add_trusted_entries(iterator, 4096)
        assert first_left is not None
        added = builder.entries
        assert first_left == entries[added]
        assert builder.estimated_size >= 4096
        # The rest goes on where the first call stopped.
        assert builder.add_trusted_entries(iter([first_left, *iterator])) is None
        assert builder.entries == len(entries)
        builder.finish()
    with TableReader(fs, "/t.sst", 1) as reader:
        assert list(reader.iterate(None, None)) == entries


def test_bulk_add_rejects_out_of_order():
    fs = CrashFS()
    with fs.open("/t.sst", "w") as file:
        builder = TableBuilder(file)
        with pytest.raises(ValueError, match="out of order"):
            builder.add_trusted_entries(iter([(b"b", 5, b"x"), (b"a", 4, b"y")]))
        with pytest.raises(ValueError, match="out of order"):
            builder.add_trusted_entries(iter([(b"b", 5, b"x")]))
        assert builder.entries == 1


def test_get_hashed_matches_get(tmp_path):
    path = str(tmp_path / "000001.sst")
    entries = numbered_entries(300)
    write_table(OS_FS, path, entries, block_size=256)
    with TableReader(OS_FS, path, 1, block_cache=BlockCache(1 << 20)) as reader:
        for key, _, _ in entries[::7]:
            expected = reader.get(key, LATEST)
            assert expected is not None
            assert reader.get_hashed(key, key_hash(key), LATEST) == expected
        assert reader.bloom_checks == reader.bloom_passes + reader.bloom_negatives


@pytest.mark.parametrize("bits_per_key", [10, 4])
def test_get_hashed_bloom_matches_filter(tmp_path, bits_per_key):
    # get_hashed inlines the 7-probe test of BloomFilter.may_contain_hash
    # (10 bits per key) and calls the method for other probe counts: both
    # must answer as the filter does for every absent key.
    path = str(tmp_path / "000001.sst")
    entries = numbered_entries(2000)
    write_table(OS_FS, path, entries, bloom_bits_per_key=bits_per_key)
    with TableReader(OS_FS, path, 1) as reader:
        bloom = reader._filter
        assert bloom is not None
        for number in range(5000):
            key = b"key%06d" % number + b"x"
            if not entries[0][0] <= key <= entries[-1][0]:
                continue
            negatives = reader.bloom_negatives
            assert reader.get_hashed(key, key_hash(key), LATEST) is None
            ruled_out = reader.bloom_negatives == negatives + 1
            assert ruled_out == (not bloom.may_contain(key))


def test_get_hashed_closed_reader_raises(tmp_path):
    path = str(tmp_path / "000001.sst")
    entries = numbered_entries(50)
    write_table(OS_FS, path, entries)
    reader = TableReader(OS_FS, path, 1)
    reader.close()
    key = entries[10][0]
    with pytest.raises(ClosedError):
        reader.get_hashed(key, key_hash(key), LATEST)


@pytest.mark.parametrize("claim", [0xFFFFFFF0, 0x7FFFFFF0, 300 * 1024])
def test_forged_lz4_length_raises_before_allocating(claim):
    # A checksummed block whose LZ4 header claims far more bytes than its
    # compressed data can expand to. Without a bound, lz4 would first
    # allocate the claimed size (up to 4 GiB) and then fail.
    sealed = seal_block(b"abcd" * 256, 1)  # 1 is COMPRESSION_LZ4
    size = len(sealed) - BLOCK_TRAILER_SIZE
    assert sealed[size] == 1, "the block must be stored compressed"
    typed = struct.pack("<I", claim) + sealed[4 : size + 1]
    forged = typed + struct.pack("<I", xxhash.xxh32_intdigest(typed))
    with pytest.raises(BlockFormatError, match=f"claims {claim} bytes"):
        unseal_block(forged, size, True, None)
    assert unseal_block(sealed, size, True, None) == b"abcd" * 256
