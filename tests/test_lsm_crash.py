"""Crash and I/O-failure tests of LSMStore on CrashFS.

Crash points are enumerated with ``CrashFS.fail``: the k-th write, fsync,
rename or open of a flush, compaction or manifest switch fails, and then
the file system crashes. The reopened store must contain every
acknowledged write (``sync="always"``), reference only tables that exist,
and keep no orphan.
"""

from __future__ import annotations

import errno
import posixpath
import random

import pytest

from storekit import (
    CorruptionError,
    DurabilityError,
    MemoryStore,
    StorekitError,
    WriteBatch,
)
from storekit.lsm import LSMStore
from storekit.testing import CrashFS

PATH = "/db"
TINY = {
    "memtable_bytes": 2048,
    "table_bytes": 2048,
    "block_size": 512,
    "level0_compaction_trigger": 3,
    "level1_bytes": 8192,
    "level_size_ratio": 2,
    "max_levels": 4,
}


def open_store(fs: CrashFS, **options) -> LSMStore:
    settings = {"sync": "always", "background": False, **TINY, **options}
    return LSMStore(PATH, fs=fs, **settings)


def write_round(
    db: LSMStore, model: MemoryStore, rnd: random.Random, count: int
) -> None:
    for _ in range(count):
        key = b"k%02d" % rnd.randrange(60)
        if rnd.random() < 0.25:
            db.delete(key)
            model.delete(key)
        else:
            value = rnd.randbytes(rnd.randrange(1, 30))
            db.put(key, value)
            model.put(key, value)


def check_recovered(fs: CrashFS, model: MemoryStore) -> None:
    """Reopen and check contents, structure and the absence of orphan tables."""
    db = open_store(fs)
    try:
        assert list(db.scan()) == list(model.scan())
        db._check_invariants()
        live = {f"{meta.number:06d}.sst" for _, meta in db._version.files()}
        on_disk = {name for name in fs.listdir(PATH) if name.endswith(".sst")}
        assert on_disk == live
        assert db.verify()["tables"] == len(live)
    finally:
        db.close()


def prepare(seed: int, flushed_rounds: int) -> tuple[CrashFS, LSMStore, MemoryStore]:
    fs = CrashFS(seed=seed)
    model = MemoryStore()
    rnd = random.Random(seed)
    db = open_store(fs)
    for _ in range(flushed_rounds):
        write_round(db, model, rnd, 40)
        db.flush()
    write_round(db, model, rnd, 30)
    return fs, db, model


def run_crash_points(action, flushed_rounds: int) -> int:
    """Fail the k-th call of each operation during ``action``, crash, and recover.

    Returns how many crash points were hit.
    """
    hit = 0
    for op in ("fsync", "write", "rename", "open"):
        for k in range(1, 200):
            fs, db, model = prepare(seed=k, flushed_rounds=flushed_rounds)
            fs.fail(op, at=k, errno=errno.EIO)
            try:
                action(db)
            except (StorekitError, OSError):
                hit += 1
            else:
                fs.clear_failures()
                fs.crash()
                check_recovered(fs, model)
                break  # k is past the last call of op in the action
            fs.clear_failures()
            fs.crash()
            check_recovered(fs, model)
    return hit


def test_crash_points_during_flush():
    assert run_crash_points(lambda db: db.flush(), flushed_rounds=1) >= 5


def test_crash_points_during_compaction():
    # Three rounds leave three level-0 tables, so compact() rewrites them.
    assert run_crash_points(lambda db: db.compact(), flushed_rounds=3) >= 5


def test_crash_points_during_manifest_switch():
    """Reopening writes a new manifest and switches CURRENT; crash at each step."""

    def reopen(db: LSMStore) -> None:
        fs = db._fs
        db.close()
        open_store(fs).close()

    assert run_crash_points(reopen, flushed_rounds=2) >= 3


@pytest.mark.parametrize("mode", ["drop", "prefix", "torn", "lose_dir_entries"])
def test_crash_without_close_keeps_acknowledged_writes(mode):
    for seed in range(8):
        fs, db, model = prepare(seed=seed, flushed_rounds=4)
        write_round(db, model, random.Random(seed + 100), 20)
        fs.crash(mode=mode)
        check_recovered(fs, model)


def test_background_jobs_crash_keeps_acknowledged_writes():
    for seed in range(5):
        fs = CrashFS(seed=seed)
        model = MemoryStore()
        db = open_store(fs, background=True)
        write_round(db, model, random.Random(seed), 400)
        fs.crash()
        check_recovered(fs, model)
        db.close()


# -- failed flushes ------------------------------------------------------------------


class TableFailingFS(CrashFS):
    """A CrashFS whose next ``failures`` table creations raise EIO."""

    failures = 0

    def open(self, path: str, mode: str = "r"):
        if mode == "w" and path.endswith(".sst") and self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "injected table creation failure", path)
        return super().open(path, mode)


@pytest.mark.parametrize("background", [False, True])
def test_failed_flush_keeps_wal_and_is_not_referenced(background):
    fs = TableFailingFS(seed=3)
    db = LSMStore(PATH, fs=fs, sync="always", background=background)
    db.put(b"a", b"1")
    fs.failures = 1
    with pytest.raises(DurabilityError, match="flush failed"):
        db.flush()
    assert db.get(b"a") == b"1"
    # The failed memtable's WAL segment is still there, the table is not.
    wal_files = [
        name
        for name in fs.listdir(posixpath.join(PATH, "wal"))
        if name.endswith(".wal")
    ]
    assert len(wal_files) == 2
    assert not [name for name in fs.listdir(PATH) if name.endswith(".sst")]

    db.put(b"b", b"2")
    db.flush()
    assert db.get(b"a") == b"1"
    assert db.get(b"b") == b"2"
    fs.crash()
    with open_store(fs) as reopened:
        assert reopened.get(b"a") == b"1"
        assert reopened.get(b"b") == b"2"
    db.close()


def test_failed_flush_then_crash_recovers_from_wal():
    fs = TableFailingFS(seed=4)
    db = LSMStore(PATH, fs=fs, sync="always", background=False)
    db.put(b"a", b"1")
    fs.failures = 1
    with pytest.raises(DurabilityError):
        db.flush()
    fs.crash()
    with open_store(fs) as reopened:
        assert reopened.get(b"a") == b"1"
        assert reopened.stats()["tables"] == 0


# -- damaged WAL records and files ----------------------------------------------------------


def wal_segments(fs: CrashFS) -> list[str]:
    directory = posixpath.join(PATH, "wal")
    return [
        posixpath.join(directory, name)
        for name in fs.listdir(directory)
        if name.endswith(".wal")
    ]


def rewrite(fs: CrashFS, path: str, data: bytes) -> None:
    with fs.open(path, "w") as handle:
        handle.append(data)
        handle.sync()


@pytest.mark.parametrize("filler", ["zeros", "random"])
def test_wal_record_with_damaged_payload_is_never_read(filler):
    fs = CrashFS(seed=5)
    db = open_store(fs)
    db.put(b"a", b"alpha")
    db.put(b"b", b"bravo")
    fs.crash()
    (segment,) = wal_segments(fs)
    data = bytearray(fs.read_file(segment))
    start = data.rindex(b"bravo")
    data[start : start + 5] = (
        bytes(5) if filler == "zeros" else random.Random(1).randbytes(5)
    )
    rewrite(fs, segment, bytes(data))
    try:
        with open_store(fs) as reopened:
            assert reopened.get(b"a") == b"alpha"
            assert reopened.get(b"b") is None
    except CorruptionError as exc:
        assert exc.path is not None


def test_incomplete_batch_is_dropped_whole():
    fs = CrashFS(seed=6)
    db = open_store(fs)
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"b", b"1")
    db.write(batch)
    fs.crash()
    (segment,) = wal_segments(fs)
    rewrite(fs, segment, fs.read_file(segment)[:-3])
    db = open_store(fs)
    assert db.get(b"a") is None
    assert db.get(b"b") is None
    batch = WriteBatch()
    batch.put(b"c", b"2")
    batch.put(b"d", b"2")
    db.write(batch)
    fs.crash()
    with open_store(fs) as reopened:
        assert [reopened.get(key) for key in (b"a", b"b", b"c", b"d")] == [
            None,
            None,
            b"2",
            b"2",
        ]


def test_empty_next_wal_segment_is_tolerated():
    fs = CrashFS(seed=7)
    with open_store(fs) as db:
        db.put(b"m", b"1")
        db.flush()
    last = max(wal_segments(fs))
    number = int(posixpath.basename(last).split(".")[0]) + 1
    fs.open(posixpath.join(PATH, "wal", f"{number:012d}.wal"), "w").close()
    with open_store(fs) as db:
        assert db.get(b"m") == b"1"
        db.put(b"z", b"1")
    with open_store(fs) as db:
        assert db.get(b"m") == b"1"
        assert db.get(b"z") == b"1"


def test_empty_orphan_table_is_removed():
    fs = CrashFS(seed=8)
    with open_store(fs) as db:
        db.put(b"m", b"1")
        db.flush()
    fs.open(posixpath.join(PATH, "999999.sst"), "w").close()
    with open_store(fs) as db:
        assert db.get(b"m") == b"1"
    assert "999999.sst" not in fs.listdir(PATH)


def test_truncated_table_raises_corruption_naming_it():
    fs = CrashFS(seed=9)
    with open_store(fs) as db:
        db.put(b"m", b"1")
        db.flush()
    (table,) = [name for name in fs.listdir(PATH) if name.endswith(".sst")]
    path = posixpath.join(PATH, table)
    rewrite(fs, path, b"")
    with pytest.raises(CorruptionError, match=table) as caught:
        open_store(fs)
    assert caught.value.path == path


def test_tables_are_durable_before_the_manifest_names_them():
    fs = CrashFS(seed=10)
    db = open_store(fs)
    for i in range(5):
        db.put(b"key%d" % i, b"v")
        db.flush()
        for _, meta in db._version.files():
            path = posixpath.join(PATH, f"{meta.number:06d}.sst")
            assert fs.durable_bytes(path) == fs.read_file(path)
    db.close()
