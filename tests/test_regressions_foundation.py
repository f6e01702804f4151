"""Regression tests for defects in the durable stores, their options and the CLI.

Each test checks the behaviour the documentation promises, at a spot where
an earlier version of storekit broke it.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import storekit
from storekit import (
    ClosedError,
    CorruptionError,
    ReadOnlyError,
    StorekitError,
    WriteBatch,
)
from storekit.testing import CrashFS

# -- DurableStore checkpoints --------------------------------------------------


def test_concurrent_checkpoints_keep_store_valid(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    db = storekit.DurableStore(path, checkpoint_bytes=1 << 30)
    expected = {b"key%05d" % i: b"value%05d" % i * 4 for i in range(3000)}
    for key, value in expected.items():
        db.put(key, value)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def checkpoint_repeatedly() -> None:
        barrier.wait()
        for _ in range(10):
            try:
                db.checkpoint()
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)

    threads = [threading.Thread(target=checkpoint_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.close()

    assert errors == []
    with storekit.DurableStore(path) as reopened:
        assert dict(reopened.scan()) == expected


# -- LSMStore writes racing close() ---------------------------------------------


def _writes_failed_by_close(path: str) -> list[tuple[bytes, bytes]]:
    """Run 8 writers under sync="always", close the store under them, return failed writes."""
    db = storekit.open(path, sync="always")
    failed: list[tuple[bytes, bytes]] = []
    started = threading.Barrier(9)

    def write(thread: int) -> None:
        started.wait()
        for i in range(100_000):
            key = b"t%d-%03d" % (thread, i % 50)
            value = b"t%d-i%d" % (thread, i)
            try:
                db.put(key, value)
            except ClosedError:
                failed.append((key, value))
                return

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    started.wait()
    threading.Event().wait(0.05)
    db.close()
    for thread in threads:
        thread.join()
    return failed


def test_put_failed_by_close_is_not_persisted(tmp_path: Path) -> None:
    # The defect needs a writer that waits behind an earlier writer when
    # close() runs, so the test retries until one such write shows up.
    persisted: list[tuple[bytes, bytes]] = []
    for attempt in range(40):
        path = str(tmp_path / f"db{attempt}")
        failed = _writes_failed_by_close(path)
        with storekit.open(path) as reopened:
            persisted = [
                (key, value) for key, value in failed if reopened.get(key) == value
            ]
        if persisted:
            break
    assert persisted == []


# -- missing or misplaced files --------------------------------------------------


def _open_durable(path: str) -> storekit.Store:
    return storekit.DurableStore(path, checkpoint_bytes=4096)


def _open_lsm(path: str) -> storekit.Store:
    return storekit.open(path)


@pytest.mark.parametrize("engine", ["durable", "lsm"])
def test_deleted_newest_wal_segment_raises(tmp_path: Path, engine: str) -> None:
    # The checkpoint or manifest names the segment that contains every
    # write after it, so deleting that file must not pass as an empty log.
    from storekit.lsm import LSMStore

    open_store = {"durable": storekit.DurableStore, "lsm": LSMStore}[engine]
    path = tmp_path / "db"
    with open_store(str(path), sync="always") as db:
        db.put(b"old", b"1")
        if engine == "durable":
            db.checkpoint()
        else:
            db.flush()
        db.put(b"new", b"2")
    segments = sorted((path / "wal").glob("*.wal"))
    assert len(segments) == 1
    segments[0].unlink()
    with pytest.raises(CorruptionError, match="is missing"):
        open_store(str(path))
    with open_store(str(path), recovery="point_in_time") as db:
        assert db.get(b"old") == b"1"
        assert db.get(b"new") is None


@pytest.mark.parametrize("opener", [_open_lsm, _open_durable], ids=["lsm", "durable"])
def test_missing_wal_directory_raises_corruption(tmp_path: Path, opener) -> None:
    path = str(tmp_path / "db")
    with opener(path) as db:
        db.put(b"flushed", b"1")
        db.flush()
        if isinstance(db, storekit.DurableStore):
            db.checkpoint()
        db.put(b"only-in-wal", b"2")
    shutil.rmtree(tmp_path / "db" / "wal")
    files = sorted(entry.name for entry in (tmp_path / "db").iterdir())

    with pytest.raises(CorruptionError) as caught:
        opener(path).close()
    assert caught.value.path is not None
    assert "wal" in caught.value.path
    # The failed open changed nothing, the manifest included.
    assert sorted(entry.name for entry in (tmp_path / "db").iterdir()) == files


@pytest.mark.parametrize("opener", [_open_lsm, _open_durable], ids=["lsm", "durable"])
def test_wal_file_not_directory_raises_corruption(tmp_path: Path, opener) -> None:
    path = str(tmp_path / "db")
    with opener(path) as db:
        db.put(b"k", b"v")
    shutil.rmtree(tmp_path / "db" / "wal")
    (tmp_path / "db" / "wal").write_bytes(b"not a directory")

    with pytest.raises(CorruptionError) as caught:
        opener(path).close()
    assert caught.value.path is not None


@pytest.mark.parametrize("opener", [_open_lsm, _open_durable], ids=["lsm", "durable"])
def test_lock_directory_raises_storekit_error(tmp_path: Path, opener) -> None:
    path = str(tmp_path / "db")
    with opener(path) as db:
        db.put(b"k", b"v")
    lock = tmp_path / "db" / "LOCK"
    if lock.exists():
        lock.unlink()
    lock.mkdir()

    with pytest.raises(StorekitError):
        opener(path).close()


# -- argument checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "opener",
    [
        storekit.open,
        storekit.DurableStore,
        storekit.EventLog,
        storekit.WAL,
        lambda path: storekit.ShardedStore({"a": storekit.MemoryStore()}, path=path),
    ],
)
def test_empty_path_raises_value_error(opener) -> None:
    with pytest.raises(ValueError, match="path must not be empty"):
        opener("")


@pytest.mark.parametrize("bad_path", [None, 1, 1.5, b"db"], ids=repr)
def test_open_rejects_non_text_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_path: object
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError) as caught:
        storekit.open(bad_path).close()  # type: ignore[arg-type]
    assert type(bad_path).__name__ in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option", [{"block_size": 1 << 40}, {"bloom_bits_per_key": 10**9}], ids=repr
)
def test_open_rejects_unusable_table_options(tmp_path: Path, option: dict) -> None:
    with pytest.raises(ValueError) as caught:
        storekit.open(str(tmp_path / "db"), **option).close()
    assert str(next(iter(option.values()))) in str(caught.value)


@pytest.mark.parametrize("interval", [float("inf"), float("nan")], ids=repr)
@pytest.mark.parametrize(
    "opener", [storekit.open, storekit.DurableStore], ids=["lsm", "durable"]
)
def test_open_rejects_non_finite_sync_interval(
    tmp_path: Path, opener, interval: float
) -> None:
    with pytest.raises(ValueError) as caught:
        opener(str(tmp_path / "db"), sync_interval=interval).close()
    assert "sync_interval" in str(caught.value)


@pytest.mark.parametrize("option", ["sync_bytes", "slowdown_delay"])
def test_open_rejects_bool_for_numeric_option(tmp_path: Path, option: str) -> None:
    with pytest.raises(TypeError) as caught:
        storekit.open(str(tmp_path / "db"), **{option: True}).close()
    assert option in str(caught.value)


# -- closed and read-only stores -------------------------------------------------------


@pytest.mark.parametrize("opener", [_open_lsm, _open_durable], ids=["lsm", "durable"])
def test_empty_batch_on_closed_store_raises(tmp_path: Path, opener) -> None:
    db = opener(str(tmp_path / "db"))
    db.close()
    with pytest.raises(ClosedError):
        db.write(WriteBatch())


@pytest.mark.parametrize("opener", [_open_lsm, _open_durable], ids=["lsm", "durable"])
def test_empty_batch_on_read_only_store_raises(tmp_path: Path, opener) -> None:
    path = str(tmp_path / "db")
    opener(path).close()
    if opener is _open_lsm:
        db = storekit.open(path, read_only=True)
    else:
        db = storekit.DurableStore(path, read_only=True)
    with db:
        with pytest.raises(ReadOnlyError):
            db.write(WriteBatch())


# -- I/O failures ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["lsm", "durable"])
def test_maintenance_open_failure_raises_storekit_error(engine: str) -> None:
    fs = CrashFS(seed=3)
    if engine == "lsm":
        db = storekit.open("/db", fs=fs, background=False)
    else:
        db = storekit.DurableStore("/db", fs=fs)
    for round_number in range(2):
        for i in range(50):
            db.put(b"k%03d" % i, b"round %d" % round_number)
        db.flush()

    if engine == "lsm":
        fs.fail("open", at=1, errno=errno.EIO)
        with pytest.raises(StorekitError):
            db.compact()
    else:
        fs.fail("open", at=1, errno=errno.EIO, path="/db/CHECKPOINT.tmp")
        with pytest.raises(StorekitError):
            db.checkpoint()
    fs.clear_failures()
    db.close()


# -- command line ---------------------------------------------------------------------


def test_dump_wal_on_store_without_wal_fails(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with storekit.open(path) as db:
        db.put(b"k", b"v")
    shutil.rmtree(tmp_path / "db" / "wal")

    result = subprocess.run(
        [sys.executable, "-m", "storekit", "dump-wal", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
