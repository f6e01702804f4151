"""Tests of the table bloom filter: format, no false negatives, measured rate."""

from __future__ import annotations

import math

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from storekit.fs import OSFileSystem
from storekit.lsm.bloom import (
    MAX_PROBES,
    MIN_FILTER_BITS,
    BloomFilter,
    BloomFilterBuilder,
    expected_false_positive_rate,
    probes_for,
)
from storekit.lsm.table import TableBuilder, TableReader


def build_filter(keys: list[bytes], bits_per_key: int = 10) -> BloomFilter:
    builder = BloomFilterBuilder(bits_per_key)
    for key in keys:
        builder.add_key(key)
    return BloomFilter(builder.finish())


def measured_false_positive_rate(bloom: BloomFilter, absent: list[bytes]) -> float:
    positives = sum(1 for key in absent if bloom.may_contain(key))
    return positives / len(absent)


def test_probes_follow_bits_per_key():
    assert probes_for(10) == 7  # round(10 * ln 2) = round(6.93)
    assert probes_for(1) == 1
    assert probes_for(4) == 3
    assert probes_for(20) == 14


def test_probes_clamped_to_range():
    assert probes_for(0) == 1
    assert probes_for(100) == MAX_PROBES
    assert MAX_PROBES == 30


def test_builder_rejects_bad_bits_per_key():
    with pytest.raises(TypeError, match="bits_per_key must be an int"):
        BloomFilterBuilder("10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bits_per_key"):
        BloomFilterBuilder(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits_per_key must be >= 1, not 0"):
        BloomFilterBuilder(0)
    with pytest.raises(ValueError, match="not -3"):
        BloomFilterBuilder(-3)


def test_filter_layout_matches_documented_hashing():
    # Recompute the bits from the documented rule, independently of the code:
    # h = xxh64(key, seed 0), h1 = low 32 bits, h2 = high 32 bits,
    # probe i sets bit (h1 + i * h2) mod m, bit b lives in byte b >> 3 at
    # position b & 7, and the last byte is the probe count.
    keys = [b"", b"\x00", b"apple", b"banana", bytes(range(256))]
    builder = BloomFilterBuilder(10)
    for key in keys:
        builder.add_key(key)
    contents = builder.finish()

    bit_count = max(MIN_FILTER_BITS, len(keys) * 10)
    bit_count = (bit_count + 7) // 8 * 8
    expected = bytearray(bit_count // 8)
    for key in keys:
        hashed = xxhash.xxh64_intdigest(key)
        low, high = hashed & 0xFFFFFFFF, hashed >> 32
        for probe in range(7):
            bit = (low + probe * high) % bit_count
            expected[bit >> 3] |= 1 << (bit & 7)
    assert contents[:-1] == bytes(expected)
    assert contents[-1] == 7


def test_small_filter_uses_minimum_bits():
    bloom = build_filter([b"only"])
    assert bloom.bit_count == MIN_FILTER_BITS
    assert bloom.may_contain(b"only")


def test_empty_filter_rejects_every_key():
    bloom = build_filter([])
    assert bloom.bit_count == MIN_FILTER_BITS
    assert not bloom.may_contain(b"")
    assert not bloom.may_contain(b"anything")


def test_added_keys_always_match():
    keys = [b"key-%d" % number for number in range(10_000)] + [
        b"",
        b"\x00",
        b"\x00\x00",
    ]
    bloom = build_filter(keys)
    missing = [key for key in keys if not bloom.may_contain(key)]
    assert missing == []


@settings(max_examples=50, deadline=None)
@given(
    keys=st.lists(st.binary(max_size=40), max_size=300, unique=True),
    bits_per_key=st.integers(min_value=1, max_value=40),
)
def test_no_false_negatives(keys, bits_per_key):
    bloom = build_filter(keys, bits_per_key)
    for key in keys:
        assert bloom.may_contain(key), key


def test_false_positive_rate_at_10_bits_per_key():
    present = [b"user:%08d" % number for number in range(100_000)]
    absent = [b"user:%08d:absent" % number for number in range(100_000)]
    bloom = build_filter(present, 10)

    rate = measured_false_positive_rate(bloom, absent)

    # The textbook rate for 10 bits per key and 7 probes is about 0.82 %.
    assert expected_false_positive_rate(10) == pytest.approx(0.0082, abs=0.0002)
    assert rate <= 0.012, f"measured false-positive rate {rate:.4%}"
    assert rate > 0.002, f"measured rate {rate:.4%} is implausibly low"


def test_more_bits_lower_false_positive_rate():
    present = [b"k%d" % number for number in range(20_000)]
    absent = [b"a%d" % number for number in range(20_000)]

    rate_5 = measured_false_positive_rate(build_filter(present, 5), absent)
    rate_10 = measured_false_positive_rate(build_filter(present, 10), absent)
    rate_20 = measured_false_positive_rate(build_filter(present, 20), absent)

    assert rate_5 > rate_10 > rate_20
    assert rate_5 == pytest.approx(expected_false_positive_rate(5), rel=0.25)


def test_corrupt_filter_contents_rejected():
    with pytest.raises(ValueError, match="too short"):
        BloomFilter(b"")
    with pytest.raises(ValueError, match="too short"):
        BloomFilter(b"\x07")
    with pytest.raises(ValueError, match="0 probes"):
        BloomFilter(bytes(8) + b"\x00")
    with pytest.raises(ValueError, match="31 probes"):
        BloomFilter(bytes(8) + bytes([31]))


def test_table_counts_bloom_negatives(tmp_path):
    fs = OSFileSystem()
    path = str(tmp_path / "000001.sst")
    present = [b"key%06d" % number for number in range(0, 40_000, 2)]
    with fs.open(path, "w") as file:
        builder = TableBuilder(file, bloom_bits_per_key=10)
        for sequence, key in enumerate(present, start=1):
            builder.add(key, sequence, b"v")
        builder.finish()
        file.sync()
    # Odd numbers lie between present keys, so the key-range check cannot
    # rule them out and every lookup reaches the filter.
    absent = [b"key%06d" % number for number in range(1, 39_998, 2)]

    with TableReader(fs, path, 1) as reader:
        results = [reader.get(key, 1 << 40) for key in absent]
        checks = reader.bloom_checks
        negatives = reader.bloom_negatives
        false_positives = reader.bloom_false_positives
        reads = reader.block_reads

    assert results == [None] * len(absent)
    assert checks == len(absent)
    assert negatives + false_positives == len(absent)
    assert false_positives / len(absent) <= 0.012
    # Only false positives read a data block.
    assert reads == false_positives


def test_table_without_filter(tmp_path):
    fs = OSFileSystem()
    path = str(tmp_path / "000002.sst")
    with fs.open(path, "w") as file:
        builder = TableBuilder(file, bloom_bits_per_key=0)
        builder.add(b"a", 1, b"1")
        builder.add(b"c", 2, b"3")
        info = builder.finish()
        file.sync()

    with TableReader(fs, path, 2) as reader:
        assert info.filter_size == 0
        assert not reader.has_filter
        assert reader.get(b"b", 10) is None
        assert reader.get(b"c", 10) == (2, b"3")
        assert reader.bloom_checks == 0
        assert reader.describe()["filter"] is None
        assert reader.verify() == 1 + 2  # one data block, index and properties


def test_expected_rate_formula():
    assert expected_false_positive_rate(0) == 1.0
    probes = probes_for(10)
    assert expected_false_positive_rate(10) == pytest.approx(
        (1 - math.exp(-probes / 10)) ** probes
    )
