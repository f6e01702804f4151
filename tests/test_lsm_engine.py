"""LSMStore behaviour on real files: writes, reads, levels, snapshots, options."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time

import pytest

import storekit
from storekit import (
    ClosedError,
    LockedError,
    MemoryStore,
    ReadOnlyError,
    WriteBatch,
)
from storekit.lsm import LSMStore

SMALL = {
    "memtable_bytes": 16 * 1024,
    "table_bytes": 8 * 1024,
    "level1_bytes": 32 * 1024,
    "level0_compaction_trigger": 2,
}


def table_files(path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".sst"))


def level_tables(db: LSMStore) -> list[int]:
    return [level["tables"] for level in db.stats()["levels"]]


# -- basic operations ------------------------------------------------------------


def test_put_get_delete(tmp_path):
    with LSMStore(str(tmp_path / "db")) as db:
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
        assert db[b"k"] == b"v"
        db.delete(b"k")
        assert db.get(b"k") is None
        assert db.get(b"k", b"default") == b"default"
        db.delete(b"never-written")
        with pytest.raises(KeyError):
            db[b"k"]


def test_bad_arguments_raise(tmp_path):
    with LSMStore(str(tmp_path / "db")) as db:
        with pytest.raises(TypeError, match="key must be bytes"):
            db.put("text", b"v")
        with pytest.raises(TypeError, match="value must be bytes"):
            db.put(b"k", 5)
        with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
            db.get(b"x" * (storekit.MAX_KEY_SIZE + 1))
        with pytest.raises(TypeError, match="WriteBatch"):
            db.write([(1, b"k", b"v")])
        with pytest.raises(TypeError, match="start"):
            db.compact(start="a")


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("memtable_bytes", 10, ValueError),
        ("memtable_bytes", "big", TypeError),
        ("compression", "zstd", ValueError),
        ("sync", "sometimes", ValueError),
        ("recovery", "best_effort", ValueError),
        ("read_only", "yes", TypeError),
        ("level_size_ratio", 1, ValueError),
        ("slowdown_delay", -1, ValueError),
        ("max_open_tables", 0, ValueError),
        ("max_levels", 65, ValueError),
        ("level0_compaction_trigger", 20, ValueError),
        ("level0_slowdown_trigger", 13, ValueError),
        ("max_open_tables", 2.5, TypeError),
    ],
)
def test_invalid_option_raises(tmp_path, option, value, error):
    with pytest.raises(error, match=option):
        LSMStore(str(tmp_path / "db"), **{option: value})


def test_reopen_keeps_data_in_memtable_and_tables(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path) as db:
        db.put(b"flushed", b"1")
        db.flush()
        db.put(b"in-wal", b"2")
        db.delete(b"flushed-then-deleted")
    with LSMStore(path) as db:
        assert db.get(b"flushed") == b"1"
        assert db.get(b"in-wal") == b"2"
        assert len(table_files(path)) == 1


def test_flush_writes_table_and_removes_wal_segments(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path) as db:
        for i in range(100):
            db.put(b"key%03d" % i, b"value")
        db.flush()
        assert level_tables(db)[0] == 1
        assert db.stats()["memtable_bytes"] == 0
        segments = [
            name
            for name in os.listdir(os.path.join(path, "wal"))
            if name.endswith(".wal")
        ]
        # Only the segment started by the flush is left.
        assert len(segments) == 1


def test_batch_is_written_atomically(tmp_path):
    with LSMStore(str(tmp_path / "db")) as db:
        db.put(b"gone", b"x")
        batch = WriteBatch()
        batch.put(b"a", b"1")
        batch.delete(b"gone")
        batch.put(b"a", b"2")
        db.write(batch)
        assert db.get(b"a") == b"2"
        assert db.get(b"gone") is None
        with pytest.raises(RuntimeError):
            with db.batch() as b:
                b.put(b"never", b"1")
                raise RuntimeError("abort the batch")
        assert db.get(b"never") is None


def test_empty_value_is_not_missing(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path) as db:
        db.put(b"k1", b"")
        with db.batch() as b:
            b.put(b"k2", b"")
        for store in (db,):
            assert store.get(b"k1") == b""
            assert store.get(b"k2") == b""
            assert b"k1" in store
            assert list(store.scan()) == [(b"k1", b""), (b"k2", b"")]
        db.flush()
    with LSMStore(path) as db:
        assert db.get(b"k1") == b""
        assert db.get(b"k2") == b""
        assert b"k2" in db
        assert list(db.scan()) == [(b"k1", b""), (b"k2", b"")]
        db.delete(b"k1")
        assert db.get(b"k1") is None
        assert db.get(b"k2") == b""


def test_keys_with_nul_bytes_stay_distinct(tmp_path):
    path = str(tmp_path / "db")
    pairs = {b"a,\x00": b"1", b"a,": b"2", b"\x00": b"3", b"\x00\x00": b"4"}
    expected = [(b"\x00", b"3"), (b"\x00\x00", b"4"), (b"a,", b"2"), (b"a,\x00", b"1")]
    with LSMStore(path) as db:
        for key, value in pairs.items():
            db.put(key, value)
        for key, value in pairs.items():
            assert db.get(key) == value
        assert list(db.scan()) == expected
        assert len(db) == 4
        db.flush()
    with LSMStore(path) as db:
        for key, value in pairs.items():
            assert db.get(key) == value
        assert list(db.scan()) == expected


# -- scans -------------------------------------------------------------------------


def test_scan_bounds_prefix_reverse_across_sources(tmp_path):
    """Entries spread over tables of several levels and the memtable merge in order."""
    model = MemoryStore()
    rnd = random.Random(5)
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for round_number in range(6):
            for _ in range(400):
                key = b"%03d" % rnd.randrange(300)
                if rnd.random() < 0.2:
                    db.delete(key)
                    model.delete(key)
                else:
                    value = rnd.randbytes(rnd.randrange(40))
                    db.put(key, value)
                    model.put(key, value)
            if round_number % 2:
                db.flush()
        assert sum(level_tables(db)) > 1
        cases = [
            {},
            {"start": b"050", "end": b"120"},
            {"start": b"200"},
            {"end": b"010"},
            {"prefix": b"1"},
            {"prefix": b"2", "start": b"25"},
            {"start": b"120", "end": b"050"},
        ]
        for case in cases:
            for reverse in (False, True):
                expected = list(model.scan(**case, reverse=reverse))
                assert list(db.scan(**case, reverse=reverse)) == expected, case
                keys = list(db.scan(**case, reverse=reverse, keys_only=True))
                assert keys == [key for key, _ in expected], case


def test_scan_view_ignores_later_writes_and_compactions(tmp_path):
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for i in range(500):
            db.put(b"%04d" % i, b"old")
        iterator = db.scan()
        first = next(iterator)
        for i in range(500):
            db.put(b"%04d" % i, b"new")
        db.delete(b"0499")
        db.compact()
        rest = list(iterator)
        assert [first, *rest] == [(b"%04d" % i, b"old") for i in range(500)]
        assert db.get(b"0001") == b"new"


def test_scan_never_returns_deleted_or_stale_values(tmp_path):
    """After overwrites and deletes in every layer, a scan shows only the newest values."""
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for i in range(300):
            db.put(b"k%03d" % i, b"v1")
        db.compact()
        for i in range(0, 300, 2):
            db.put(b"k%03d" % i, b"v2")
        db.flush()
        for i in range(0, 300, 3):
            db.delete(b"k%03d" % i)
        db.flush()
        for i in range(0, 300, 5):
            db.put(b"k%03d" % i, b"v3")
        expected = {}
        for i in range(300):
            if i % 5 == 0:
                expected[b"k%03d" % i] = b"v3"
            elif i % 3 == 0:
                continue
            elif i % 2 == 0:
                expected[b"k%03d" % i] = b"v2"
            else:
                expected[b"k%03d" % i] = b"v1"
        assert dict(db.scan()) == expected
        assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)
        db.compact()
        assert dict(db.scan()) == expected
        assert list(db.scan(reverse=True)) == sorted(expected.items(), reverse=True)


# -- regression tests for failure kinds of other engines -----------------------------


def test_put_delete_put_survives_flush_and_compaction(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path, **SMALL) as db:
        db.put(b"key", b"first")
        db.flush()
        db.delete(b"key")
        db.flush()
        db.put(b"key", b"last")
        db.flush()
        db.compact()
        assert db.get(b"key") == b"last"
        assert list(db.scan()) == [(b"key", b"last")]
    with LSMStore(path) as db:
        assert db.get(b"key") == b"last"


def test_tombstone_kept_when_compaction_skips_older_table(tmp_path):
    """A compaction of newer tables keeps tombstones that hide an older table's values."""
    path = str(tmp_path / "db")
    old = [b"k%02d" % i for i in range(10, 20)]
    young = [b"k%02d" % i for i in range(10)]
    with LSMStore(path, background=False) as db:
        for key in old:
            db.put(key, b"y")
        db.flush()
        # Move the old table below level 1, so a level-0 compaction skips it.
        db._compact_level(0, None, None)
        db._compact_level(1, None, None)
        assert level_tables(db)[:3] == [0, 0, 1]
        for key in young:
            db.put(key, b"x")
        db.flush()
        for key in old:
            db.delete(key)
        db.flush()
        assert level_tables(db)[:3] == [2, 0, 1]
        expected = [(key, b"x") for key in young]
        assert list(db.scan()) == expected

        db._compact_level(0, None, None)
        assert level_tables(db)[:3] == [0, 1, 1]
        assert list(db.scan()) == expected
        assert db.get(b"k15") is None

        db.compact()
        assert list(db.scan()) == expected
        assert db.get(b"k15") is None
    with LSMStore(path) as db:
        assert list(db.scan()) == expected
        assert db.get(b"k15") is None


def test_full_compaction_drops_tombstones_and_old_versions(tmp_path):
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for version in range(3):
            for i in range(200):
                db.put(b"%03d" % i, b"v%d" % version * 20)
            db.flush()
        for i in range(100):
            db.delete(b"%03d" % i)
        db.compact()
        stats = db.stats()
        entries = sum(db._reader(meta).entries for _, meta in db._version.files())
        assert entries == 100
        assert stats["levels"][0]["tables"] == 0
        assert stats["compaction_entries_dropped"] > 0


# -- levels, stats and backpressure ------------------------------------------------------


def test_full_compaction_leaves_one_level(tmp_path):
    # 2.2 MiB of keys and values in one memtable, so compact() starts with
    # one level-0 table. Level 1 has a target of 256 KiB and level 2 of
    # 2 MiB, so the data must end in level 3: in level 1 or 2 the
    # background thread would at once move part of it one level down.
    rnd = random.Random(2)
    with LSMStore(
        str(tmp_path / "db"),
        memtable_bytes=8 << 20,
        table_bytes=256 * 1024,
        level1_bytes=256 * 1024,
        level_size_ratio=8,
    ) as db:
        expected = {}
        for i in rnd.sample(range(20_000), 20_000):
            expected[b"%08d" % i] = rnd.randbytes(100)
            db.put(b"%08d" % i, expected[b"%08d" % i])
        db.compact()
        tables = [level["tables"] for level in db.stats()["levels"]]
        assert tables[3] > 0, tables
        assert sum(tables) == tables[3], tables
        time.sleep(0.3)  # time for a background compaction to start
        assert [level["tables"] for level in db.stats()["levels"]] == tables
        assert dict(db.scan()) == expected


def test_engine_builds_levels_and_bounds_memtable(tmp_path):
    # Jobs run in the writer's thread so the level shape does not depend on
    # thread timing: 34 flushes and a level-0 compaction every 4 flushes
    # leave 2 tables in level 0.
    rnd = random.Random(1)
    with LSMStore(
        str(tmp_path / "db"), memtable_bytes=256 * 1024, background=False
    ) as db:
        for _ in range(50_000):
            db.put(rnd.randbytes(16), rnd.randbytes(100))
        stats = db.stats()
        assert stats["levels"][0]["tables"] >= 1
        assert sum(level["tables"] for level in stats["levels"][1:]) >= 1
        assert stats["memtable_bytes"] < 256 * 1024
        assert stats["flushes"] >= 20
        assert stats["compactions"] >= 1
        assert stats["write_amplification"] > 1.0
        for name in ("stall_seconds", "block_cache_hits", "bloom_saved_reads"):
            assert name in stats


def test_stats_count_bloom_and_cache(tmp_path):
    with LSMStore(str(tmp_path / "db")) as db:
        for i in range(2000):
            db.put(b"present%05d" % i, b"v")
        db.flush()
        for i in range(2000):
            # Inside the table's key range, so only the bloom filter rules it out.
            assert db.get(b"present%05d-absent" % i) is None
        for _ in range(3):
            assert db.get(b"present00007") == b"v"
        stats = db.stats()
        assert stats["bloom_checks"] >= 2000
        assert stats["bloom_saved_reads"] >= 1900
        assert stats["block_cache_hits"] >= 2
        assert stats["block_cache_misses"] >= 1


def _open_table_fds(path: str) -> int:
    """Count this process's file descriptors on table files under ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(path) and target.endswith(".sst"):
            count += 1
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_open_tables_stay_within_limit(tmp_path):
    path = str(tmp_path / "db")
    expected = {}
    # 12 tables on level 0 that no compaction merges, each holding 50 keys.
    no_compaction = {
        "level0_compaction_trigger": 100,
        "level0_slowdown_trigger": 100,
        "level0_stop_trigger": 100,
    }
    with LSMStore(path, background=False, **no_compaction) as db:
        for table in range(12):
            for i in range(50):
                key = b"k%04d" % (i * 12 + table)
                expected[key] = b"v%d" % table
                db.put(key, expected[key])
            db.flush()
        assert db.stats()["levels"][0]["tables"] == 12
    with LSMStore(path, max_open_tables=3, **no_compaction) as db:
        scan = db.scan()
        assert next(scan) == (b"k0000", expected[b"k0000"])
        for key, value in expected.items():
            assert db.get(key) == value
            assert db.stats()["open_tables"] <= 3
        # A table in use has one reader, however many scans use it.
        scans = [db.scan() for _ in range(10)]
        for other in scans:
            assert next(other) == (b"k0000", expected[b"k0000"])
        assert _open_table_fds(path) == 12
        del scans, other
        # The scan began before its readers were dropped and still reads them.
        assert [b"k0000", *(key for key, _ in scan)] == sorted(expected)
        del scan
        assert _open_table_fds(path) <= 3
        stats = db.stats()
        assert stats["table_cache_evictions"] >= 9
        assert stats["open_tables"] <= 3
        unfinished = db.scan()
        next(unfinished)
    # Closing the store closes the files of readers that a scan still holds.
    assert _open_table_fds(path) == 0
    with pytest.raises(ClosedError):
        list(unfinished)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_scan_after_close_opens_no_table(tmp_path):
    # A level below 0 opens its tables one by one as a scan reaches them.
    path = str(tmp_path / "db")
    with LSMStore(path, table_bytes=4096) as db:
        for i in range(2000):
            db.put(b"key%05d" % i, b"v" * 20)
        db.compact()
        assert db.stats()["tables"] > 3
    db = LSMStore(path)
    first_table = db._version.deeper_levels[0][2][0]  # first table below level 0
    scan = db.scan()
    # Up to the first table's last key: its last block is decoded, and the
    # next table is not open yet.
    for key, _ in scan:
        if key == first_table.largest_key:
            break
    db.close()
    with pytest.raises(ClosedError):
        list(scan)
    assert _open_table_fds(path) == 0


def test_writes_stall_and_log_when_flushes_fall_behind(tmp_path, caplog):
    """With level 0 at its stop trigger, writers wait and a WARNING marks start and end."""
    caplog.set_level(logging.WARNING, logger="storekit")
    options = {
        "memtable_bytes": 4096,
        "level0_compaction_trigger": 2,
        "level0_slowdown_trigger": 2,
        "level0_stop_trigger": 3,
        "max_immutable_memtables": 1,
    }
    with LSMStore(str(tmp_path / "db"), **options) as db:
        for i in range(3000):
            db.put(b"%06d" % i, b"x" * 64)
        stats = db.stats()
        assert stats["stalls"] >= 1
        assert stats["stall_seconds"] > 0
        assert stats["slowdowns"] >= 1
        assert stats["immutable_memtables"] <= 1
        assert len(db) == 3000
    messages = [record.getMessage() for record in caplog.records]
    assert any("writes stalled" in message for message in messages)
    assert any("writes resumed" in message for message in messages)


def test_concurrent_writers_and_readers(tmp_path):
    errors = []
    with LSMStore(str(tmp_path / "db"), sync="always", **SMALL) as db:

        def writer(number: int) -> None:
            try:
                for i in range(300):
                    db.put(b"w%d-%04d" % (number, i), b"%d" % i)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def reader() -> None:
            try:
                for _ in range(20):
                    keys = list(db.scan(keys_only=True))
                    assert keys == sorted(keys)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=reader))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(db) == 1200
        assert db.get(b"w3-0299") == b"299"


# -- snapshots -----------------------------------------------------------------------


def test_snapshot_survives_flush_and_compaction(tmp_path):
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for i in range(200):
            db.put(b"%03d" % i, b"before")
        snapshot = db.snapshot()
        for i in range(200):
            db.put(b"%03d" % i, b"after")
        for i in range(0, 200, 2):
            db.delete(b"%03d" % i)
        db.flush()
        db.compact()
        assert snapshot.get(b"000") == b"before"
        assert snapshot.get(b"001") == b"before"
        assert list(snapshot.scan()) == [(b"%03d" % i, b"before") for i in range(200)]
        assert db.get(b"000") is None
        assert db.get(b"001") == b"after"
        snapshot.close()
        with pytest.raises(ClosedError):
            snapshot.get(b"000")
        db.compact()
        assert db.stats()["snapshots"] == 0


# -- lifecycle --------------------------------------------------------------------------


def test_second_writer_is_locked_out(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path):
        with pytest.raises(LockedError):
            LSMStore(path)


def test_read_only_store_reads_and_rejects_writes(tmp_path):
    path = str(tmp_path / "db")
    with LSMStore(path) as db:
        db.put(b"table", b"1")
        db.flush()
        db.put(b"wal", b"2")
    before = sorted(os.listdir(path))
    with LSMStore(path, read_only=True) as db:
        assert db.get(b"table") == b"1"
        assert db.get(b"wal") == b"2"
        with pytest.raises(ReadOnlyError):
            db.put(b"x", b"y")
        with pytest.raises(ReadOnlyError):
            db.compact()
    assert sorted(os.listdir(path)) == before


def test_missing_directory_with_create_false(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LSMStore(str(tmp_path / "absent"), create=False)


def test_closed_store_raises(tmp_path):
    db = LSMStore(str(tmp_path / "db"))
    db.put(b"k", b"v")
    db.close()
    db.close()
    for call in (lambda: db.get(b"k"), lambda: db.put(b"k", b"v"), db.scan, db.stats):
        with pytest.raises(ClosedError):
            call()


def test_durable_store_directory_is_rejected(tmp_path):
    path = str(tmp_path / "db")
    with storekit.DurableStore(path) as durable:
        durable.put(b"k", b"v")
        durable.checkpoint()
    with pytest.raises(ValueError, match="DurableStore"):
        LSMStore(path)


def test_open_durable_directory_ignores_lsm_options(tmp_path):
    path = str(tmp_path / "db")
    with storekit.DurableStore(path) as durable:
        durable.put(b"k", b"v")
        durable.checkpoint()
    options = {
        "block_size": 8192,
        "level0_compaction_trigger": 2,
        "verify_checksums": False,
        "slowdown_delay": 0.01,
        "max_open_tables": None,
        "compression": None,
    }
    with storekit.open(path, **options) as db:
        assert isinstance(db, storekit.DurableStore)
        assert db.get(b"k") == b"v"
    with pytest.raises(TypeError, match="verify_checksums"):
        storekit.open(path, verify_checksums="no")
    with pytest.raises(TypeError, match="block_size"):
        storekit.open(path, block_size=4096.0)
    with pytest.raises(ValueError, match="table_bytes"):
        storekit.open(path, table_bytes=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        storekit.open(path, bogus=1)


def test_verify_counts_blocks_and_records(tmp_path):
    with LSMStore(str(tmp_path / "db"), **SMALL) as db:
        for i in range(1000):
            db.put(b"%04d" % i, b"v" * 30)
        db.flush()
        db.put(b"in-wal", b"1")
        report = db.verify()
        assert report["tables"] >= 1
        assert report["blocks"] > report["tables"]
        assert report["wal_records"] >= 1


def test_cli_compact_reports_levels(tmp_path, capsys):
    from storekit.cli import main

    path = str(tmp_path / "db")
    with LSMStore(path, memtable_bytes=4096) as db:
        for i in range(2000):
            db.put(b"%05d" % i, b"v" * 20)
        for i in range(0, 2000, 2):
            db.delete(b"%05d" % i)
    assert main(["compact", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tables_after"][0] == 0
    assert sum(result["tables_after"]) >= 1
    assert result["bytes_after"] < result["bytes_before"]
    with LSMStore(path) as db:
        assert len(db) == 1000


@pytest.mark.parametrize("delay", [0.02, 0.1])
def test_compact_racing_close_raises_closed_error(tmp_path, delay):
    # close() from another thread stops a compaction between two chunks;
    # the caller of compact() gets ClosedError, never an internal exception.
    db = LSMStore(
        str(tmp_path / "db"),
        sync="none",
        memtable_bytes=1 << 16,
        table_bytes=1 << 16,
        background=False,
    )
    for number in range(30000):
        db.put(b"k%07d" % ((number * 7919) % 30000), b"v" * 20)
    outcome = []

    def compact():
        try:
            db.compact()
            outcome.append("ok")
        except Exception as exc:  # the assert below names the type
            outcome.append(type(exc))

    worker = threading.Thread(target=compact)
    worker.start()
    threading.Event().wait(delay)
    db.close()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert outcome[0] in ("ok", ClosedError)
    with LSMStore(str(tmp_path / "db")) as reopened:
        assert reopened.get(b"k0012345") == b"v" * 20
