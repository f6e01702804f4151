"""Regression tests for defects in the caches, sharding and the event log.

Each test checks the behaviour the documentation promises, at a spot where
an earlier version of storekit broke it.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import xxhash

import storekit
from storekit import (
    CorruptionError,
    EventLog,
    HashRing,
    LRUCache,
    MemoryStore,
    Projection,
    ShardedStore,
    memoize,
)
from storekit.cache.traces import load_trace
from storekit.cli import main

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# -- memoize ---------------------------------------------------------------------------


def test_memoize_same_key_recursion_raises() -> None:
    @memoize(LRUCache(max_items=10))
    def recurse(n: int) -> int:
        return recurse(n)

    outcome: list[BaseException] = []

    def call() -> None:
        try:
            recurse(1)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "memoized call for its own key hung"
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)


# -- cache traces ----------------------------------------------------------------------


def _write_truncated_gzip(path: Path) -> None:
    compressed = gzip.compress(b"".join(b"%d\n" % i for i in range(5000)))
    path.write_bytes(compressed[:200])


def _write_corrupt_xz(path: Path) -> None:
    compressed = lzma.compress(b"".join(b"%d\n" % i for i in range(5000)))
    damaged = bytearray(compressed)
    for position in range(40, 80):
        damaged[position] ^= 0xFF
    path.write_bytes(bytes(damaged))


def test_truncated_gzip_trace_raises(tmp_path: Path) -> None:
    trace = tmp_path / "requests.txt.gz"
    _write_truncated_gzip(trace)
    with pytest.raises(ValueError, match="requests.txt.gz"):
        load_trace(trace, "lines")


def test_corrupt_xz_trace_raises(tmp_path: Path) -> None:
    trace = tmp_path / "requests.txt.xz"
    _write_corrupt_xz(trace)
    with pytest.raises(ValueError, match="requests.txt.xz"):
        load_trace(trace, "lines")


def test_cache_sim_truncated_gzip_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "requests.txt"
    _write_truncated_gzip(trace)
    status = main(["cache-sim", str(trace), "--size", "10", "--policy", "lru"])
    captured = capsys.readouterr()
    assert status != 0
    assert "requests.txt" in captured.err


# -- HashRing --------------------------------------------------------------------------


def test_ring_huge_weight_raises() -> None:
    resource = pytest.importorskip("resource")
    assert resource is not None
    # The child process caps its address space at 1 GiB, so the unfixed
    # ring fails with MemoryError instead of exhausting the machine.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from storekit import HashRing\n"
        "try:\n"
        "    HashRing({'a': 10**9})\n"
        "except BaseException as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert result.stdout.strip() == "ValueError"


def test_failed_set_weight_keeps_weight() -> None:
    def hash_rejecting_one_label(data: bytes) -> int:
        if data == b"a-200":
            return -1
        return xxhash.xxh3_64_intdigest(data)

    ring = HashRing(["a", "b"], hash=hash_rejecting_one_label)
    with pytest.raises(ValueError):
        ring.set_weight("a", 2)
    assert ring.nodes == {"a": 1, "b": 1}


# -- ShardedStore ----------------------------------------------------------------------


def test_reopen_without_shard_map_keeps_keys(tmp_path: Path) -> None:
    map_path = str(tmp_path / "map")

    def open_shards(names: str) -> dict[str, storekit.Store]:
        return {name: storekit.open(str(tmp_path / name)) for name in names}

    keys = [b"user:%d" % i for i in range(300)]
    db = ShardedStore(open_shards("ab"), path=map_path)
    for key in keys:
        db.put(key, b"profile")
    move = db.add_shard("c", storekit.open(str(tmp_path / "c")), weight=3)
    assert move.wait(timeout=60)
    db.close()
    (tmp_path / "map" / "SHARDS").unlink()

    shards = open_shards("abc")
    try:
        reopened = ShardedStore(shards, path=map_path)
    except CorruptionError:
        # Raising CorruptionError for a map directory without its map is also correct.
        for store in shards.values():
            store.close()
        return
    try:
        missing = [key for key in keys if reopened.get(key) is None]
        scanned = sum(1 for _ in reopened.scan(keys_only=True))
    finally:
        reopened.close()
    assert missing == []
    assert scanned == len(keys)


def test_truncated_shard_map_message_names_damage(tmp_path: Path) -> None:
    map_path = tmp_path / "map"
    db = ShardedStore({"a": MemoryStore(), "b": MemoryStore()}, path=str(map_path))
    db.close()
    shard_map = map_path / "SHARDS"
    content = shard_map.read_bytes()
    shard_map.write_bytes(content[: len(content) // 2])

    with pytest.raises(CorruptionError) as caught:
        ShardedStore({"a": MemoryStore(), "b": MemoryStore()}, path=str(map_path))
    assert "no error" not in str(caught.value)


# -- EventLog --------------------------------------------------------------------------


def test_damage_before_valid_records_raises(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = EventLog(str(directory), sync="always")
    for i in range(10):
        log.append("orders", [b"event-%d" % i * 5])
    log.close()
    segment = directory / "00000000000000000000.log"
    content = bytearray(segment.read_bytes())
    # Byte 40 lies inside the first record, which starts after the 22-byte
    # segment header. The nine records after it stay intact.
    content[40] ^= 0x55
    segment.write_bytes(bytes(content))

    with pytest.raises(CorruptionError):
        reopened = EventLog(str(directory))
        reopened.close()
    assert segment.stat().st_size == len(content)


def test_catch_up_zero_applies_nothing(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "log"))
    try:
        for i in range(5):
            log.append("counter", [b"%d" % i])
        target = MemoryStore()

        def count(event: storekit.Event, batch: storekit.WriteBatch) -> None:
            batch.put(b"count", b"%d" % (int(batch.get(b"count", b"0")) + 1))

        projection = Projection(log, target, count, "counter")
        applied = projection.catch_up(max_events=0)
        assert applied == 0
        assert projection.lag == 5
        assert target.get(b"count") is None
    finally:
        log.close()


@pytest.mark.parametrize(
    ("max_events", "error"), [(-1, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_catch_up_rejects_bad_max_events(
    tmp_path: Path, max_events: object, error: type[Exception]
) -> None:
    log = EventLog(str(tmp_path / "log"))
    try:
        log.append("counter", [b"0", b"1"])
        target = MemoryStore()

        def copy(event: storekit.Event, batch: storekit.WriteBatch) -> None:
            batch.put(b"event/%d" % event.offset, event.data)

        projection = Projection(log, target, copy, "copy")
        with pytest.raises(error, match="max_events"):
            projection.catch_up(max_events=max_events)  # type: ignore[arg-type]
        assert projection.lag == 2
    finally:
        log.close()


def test_eventlog_rejects_int_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(TypeError, match="path"):
            log = EventLog(5)  # type: ignore[arg-type]
            log.close()
    finally:
        assert not (tmp_path / "5").exists()
