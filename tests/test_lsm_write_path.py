"""Tests of the LSM write path pieces: WAL record framing, batch encoding, memtable order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sortedcontainers import SortedDict

from storekit.batch import (
    KIND_DELETE,
    KIND_PUT,
    decode_batch,
    encode_batch,
    encode_put,
)
from storekit.lsm import LSMStore
from storekit.memtable import ITERATION_CHUNK, Memtable
from storekit.wal import WAL

BLOCK = 32 * 1024


def segment_bytes(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(directory.iterdir())]


def test_wal_append_record_frames_as_append(tmp_path):
    # Sizes that end a record exactly at, just before and just past the end
    # of a 32 KiB block, so both the one-fragment fast path and the general
    # framing (padding, split records) run.
    rng = random.Random(3)
    sizes = [BLOCK - 7 - 20, 0, 13, 200, 5, 1, BLOCK, 40_000, 3, BLOCK - 30]
    sizes += [rng.randrange(300) for _ in range(600)]
    payloads = [rng.randbytes(size) for size in sizes]
    with WAL(str(tmp_path / "general"), sync="none") as wal:
        for payload in payloads:
            wal.append(payload)
    with WAL(str(tmp_path / "fast"), sync="none") as wal:
        marks = [wal.append_record(payload) for payload in payloads]
    assert marks == sorted(marks)
    assert segment_bytes(tmp_path / "fast") == segment_bytes(tmp_path / "general")
    with WAL(str(tmp_path / "fast")) as wal:
        assert [payload for _, payload in wal.replay()] == payloads


def test_encode_put_matches_encode_batch():
    rng = random.Random(5)
    for key_size in (0, 1, 16, 127, 128, 300):
        for value_size in (0, 1, 100, 127, 128, 5000):
            key = rng.randbytes(key_size)
            value = rng.randbytes(value_size)
            sequence = rng.randrange(1 << 56)
            encoded = encode_put(key, value, sequence)
            assert encoded == encode_batch([(KIND_PUT, key, value)], sequence)
            assert decode_batch(encoded) == (sequence, [(KIND_PUT, key, value)])


def test_encode_batch_round_trips_mixed_operations():
    rng = random.Random(6)
    ops = []
    for _ in range(300):
        key = rng.randbytes(rng.choice([0, 5, 127, 128, 400]))
        if rng.random() < 0.3:
            ops.append((KIND_DELETE, key, None))
        else:
            ops.append((KIND_PUT, key, rng.randbytes(rng.choice([0, 9, 127, 128]))))
    assert decode_batch(encode_batch(ops, 77)) == (77, ops)


def filled_memtables(keys):
    """Return an LSM memtable (keeps tombstones) and a SortedDict of the same keys."""
    memtable = Memtable(keep_tombstones=True)
    model = SortedDict()
    for sequence, key in enumerate(keys, 1):
        memtable.add(key, sequence, b"v", [])
        model[key] = sequence
    return memtable, model


def test_memtable_key_order_after_unsorted_writes():
    rng = random.Random(8)
    keys = [rng.randbytes(rng.randrange(4)) for _ in range(2000)]
    memtable, model = filled_memtables(keys)
    assert [key for key, _ in memtable.versions()] == list(model)
    assert [key for key, _, _ in memtable.items()] == list(model)
    # More writes after the keys were sorted once: the order covers them too.
    for sequence, key in enumerate(keys[:50] + [b"\xff" * 5, b""], 3000):
        memtable.add(key, sequence, None, [])
        model[key] = sequence
    assert [key for key, _ in memtable.versions()] == list(model)


@pytest.mark.parametrize("reverse", [False, True])
def test_memtable_keys_from_matches_sorted_map(reverse):
    rng = random.Random(9)
    keys = [rng.randbytes(rng.randrange(3)) for _ in range(1500)]
    memtable, model = filled_memtables(keys)
    reference = Memtable(keep_tombstones=False)
    for sequence, key in enumerate(keys, 1):
        reference.add(key, sequence, b"v", [])
    bounds = [None, b"", b"\x00", b"\x80", b"\x80\x10", b"\xff\xff\xff"]
    for low in bounds:
        for high in bounds:
            for after in bounds:
                expected = reference.keys_from(low, high, reverse, after)
                assert memtable.keys_from(low, high, reverse, after) == expected
    # Chunks resume after the last key and cover every key once.
    seen = []
    after = None
    while chunk := memtable.keys_from(None, None, reverse, after):
        assert len(chunk) <= ITERATION_CHUNK
        seen += chunk
        after = chunk[-1]
    assert seen == (list(model)[::-1] if reverse else list(model))
    for limit in (1, 16, 5000):
        expected = reference.keys_from(b"\x10", b"\xf0", reverse, None, limit)
        assert len(expected) <= limit
        assert memtable.keys_from(b"\x10", b"\xf0", reverse, None, limit) == expected


def test_memtable_sort_after_few_and_many_keys():
    memtable = Memtable(keep_tombstones=True)
    model = set()
    rng = random.Random(4)
    sequence = 0
    # Alternate small batches (inserted one by one into the sorted keys)
    # and large ones (sorted in whole), reading the order after each.
    for batch in (1, 3, 64, 65, 2, 500, 10):
        for _ in range(batch):
            key = rng.randbytes(4)
            sequence += 1
            memtable.add(key, sequence, b"v", [])
            model.add(key)
        assert memtable.keys_from(None, None, False, None, 10_000) == sorted(model)


def test_scan_reads_past_first_memtable_chunk(tmp_path):
    with LSMStore(str(tmp_path / "db"), sync="none") as db:
        for number in range(1000):
            db.put(b"%06d" % number, b"v%d" % number)
        # Chunks of 16, 32, 64 ... keys; every key comes once, in order.
        assert [key for key, _ in db.scan()] == [b"%06d" % n for n in range(1000)]
        backward = [key for key, _ in db.scan(reverse=True)]
        assert backward == [b"%06d" % n for n in range(999, -1, -1)]
        assert len(list(db.scan(start=b"000500", end=b"000537"))) == 37


@pytest.mark.parametrize("prefix_size", [130, 300])
def test_long_shared_prefixes_survive_flush_and_compaction(tmp_path, prefix_size):
    path = str(tmp_path / "db")
    prefix = b"k" * prefix_size
    model = {prefix + b"%04d" % number: b"v%d" % number for number in range(300)}
    with LSMStore(path, sync="none", memtable_bytes=16 * 1024) as db:
        for key, value in model.items():
            db.put(key, value)
        db.flush()
        db.compact()
        assert dict(db.scan()) == model
    with LSMStore(path) as db:
        assert all(db.get(key) == value for key, value in model.items())
        assert dict(db.scan()) == model


def test_scan_ignores_keys_written_meanwhile(tmp_path):
    with LSMStore(str(tmp_path / "db"), sync="none") as db:
        for number in range(0, 2000, 2):
            db.put(b"%06d" % number, b"even")
        scan = db.scan()
        first = [next(scan) for _ in range(10)]
        # New keys land in the active memtable while the scan is open; the
        # scan reads at its snapshot, so it must not return them.
        for number in range(1, 2000, 2):
            db.put(b"%06d" % number, b"odd")
        rest = list(scan)
        assert [key for key, _ in first + rest] == [
            b"%06d" % number for number in range(0, 2000, 2)
        ]
        assert len(list(db.scan())) == 2000


def test_compaction_keeps_snapshot_values(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(
        path, sync="none", memtable_bytes=16 * 1024, table_bytes=8 * 1024
    ) as db:
        expected = {}
        rng = random.Random(11)
        snapshot = None
        for step in range(6000):
            key = b"%05d" % rng.randrange(1500)
            if rng.random() < 0.1:
                db.delete(key)
                expected.pop(key, None)
            else:
                value = b"%d" % step
                db.put(key, value)
                expected[key] = value
            if step == 3000:
                snapshot = db.snapshot()
                at_snapshot = dict(expected)
        db.compact()
        assert dict(db.scan()) == expected
        assert dict(snapshot.scan()) == at_snapshot
        for key, value in at_snapshot.items():
            assert snapshot.get(key) == value
        snapshot.close()
