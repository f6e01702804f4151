"""Projections, EventSourcedStore and aggregate snapshots."""

from __future__ import annotations

import doctest
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import storekit
from storekit import MemoryStore, WriteBatch
from storekit.errors import ClosedError, CorruptionError, OffsetError
from storekit.eventlog import (
    OFFSET_KEY_PREFIX,
    AggregateSnapshots,
    Event,
    EventLog,
    EventSourcedStore,
    Projection,
    ProjectionBatch,
    load_aggregate,
)
from storekit.testing import CrashFS


def count_by_stream(event: Event, batch: ProjectionBatch) -> None:
    """Count events per stream under b"count/<stream>" (ASCII decimal)."""
    key = b"count/" + event.stream.encode()
    batch.put(key, b"%d" % (int(batch.get(key, b"0")) + 1))


def expected_counts(log: EventLog) -> dict[bytes, bytes]:
    counts = Counter(event.stream for event in log.read(0))
    return {b"count/" + name.encode(): b"%d" % n for name, n in counts.items()}


def projected(store: storekit.Store) -> dict[bytes, bytes]:
    return dict(store.scan(end=OFFSET_KEY_PREFIX))


@pytest.fixture
def log(tmp_path: Path):
    with EventLog(str(tmp_path / "log"), segment_bytes=2048) as opened:
        yield opened


# -- projections ---------------------------------------------------------------


def test_catch_up_applies_each_event_once(log: EventLog) -> None:
    target = MemoryStore()
    projection = Projection(log, target, count_by_stream, "counts", batch_events=7)
    for i in range(50):
        log.append(f"s{i % 3}", [b"e"] * (1 + i % 2))
    assert projection.lag == 75
    assert projection.catch_up() == 75
    assert projection.catch_up() == 0
    assert projection.offset == 75
    assert projection.lag == 0
    assert projected(target) == expected_counts(log)
    stored = target.get(OFFSET_KEY_PREFIX + b"counts")
    assert stored == (75).to_bytes(8, "big")


def test_batch_get_reads_own_writes(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e"] * 300)
    Projection(log, target, count_by_stream, "counts", batch_events=1000).catch_up()
    assert target.get(b"count/s") == b"300"


def test_projection_resumes_from_stored_offset(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e"] * 10)
    assert Projection(log, target, count_by_stream, "p").catch_up(max_events=4) == 4
    again = Projection(log, target, count_by_stream, "p")
    assert again.offset == 4
    assert again.catch_up() == 6
    assert target.get(b"count/s") == b"10"


def test_two_projections_share_a_store(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e"] * 5)

    def last_data(event: Event, batch: ProjectionBatch) -> None:
        batch.put(b"last", event.data + b"%d" % event.offset)

    Projection(log, target, count_by_stream, "one").catch_up()
    Projection(log, target, last_data, "two").catch_up(max_events=2)
    assert projected(target) == {b"count/s": b"5", b"last": b"e1"}
    offsets = sorted(target.scan(prefix=OFFSET_KEY_PREFIX, keys_only=True))
    assert offsets == [OFFSET_KEY_PREFIX + b"one", OFFSET_KEY_PREFIX + b"two"]


def test_failing_apply_writes_nothing_of_its_batch(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"ok"] * 5 + [b"bad"] + [b"ok"] * 4)
    failures = [1]

    def apply(event: Event, batch: ProjectionBatch) -> None:
        if event.data == b"bad" and failures[0]:
            failures[0] -= 1
            raise RuntimeError("apply failed")
        count_by_stream(event, batch)

    projection = Projection(log, target, apply, "p", batch_events=3)
    with pytest.raises(RuntimeError):
        projection.catch_up()
    assert projection.offset == 3
    assert target.get(b"count/s") == b"3"
    assert projection.catch_up() == 7
    assert target.get(b"count/s") == b"10"


def test_apply_may_not_write_offset_keys(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e"])

    def apply(event: Event, batch: ProjectionBatch) -> None:
        batch.put(OFFSET_KEY_PREFIX + b"p", b"junk")

    projection = Projection(log, target, apply, "p")
    with pytest.raises(ValueError, match="reserved"):
        projection.catch_up()
    assert list(target.scan()) == []


def test_key_prefix_limits_writes_and_rebuild(log: EventLog) -> None:
    target = MemoryStore()
    target.put(b"other/keep", b"1")
    log.append("s", [b"e"] * 3)

    def apply(event: Event, batch: ProjectionBatch) -> None:
        count_by_stream(event, batch)

    with pytest.raises(ValueError, match="key_prefix"):
        Projection(log, target, apply, "p", key_prefix=b"mine/").catch_up()

    def prefixed(event: Event, batch: ProjectionBatch) -> None:
        key = b"mine/" + event.stream.encode()
        batch.put(key, b"%d" % (int(batch.get(key, b"0")) + 1))

    projection = Projection(log, target, prefixed, "q", key_prefix=b"mine/")
    assert projection.catch_up() == 3
    target.put(b"mine/stale", b"x")
    assert projection.rebuild() == 3
    assert projected(target) == {b"mine/s": b"3", b"other/keep": b"1"}


def test_rebuild_without_prefix_clears_user_keys(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e"] * 4)
    projection = Projection(log, target, count_by_stream, "p")
    projection.catch_up()
    target.put(b"count/s", b"999")
    target.put(b"junk", b"1")
    assert projection.rebuild() == 4
    assert projected(target) == {b"count/s": b"4"}


def test_rebuild_after_truncation_raises(log: EventLog) -> None:
    target = MemoryStore()
    log.append("s", [b"e" * 500] * 10)
    log.truncate_before(log.next_offset)
    projection = Projection(log, target, count_by_stream, "p")
    with pytest.raises(OffsetError):
        projection.rebuild()
    with pytest.raises(OffsetError):
        projection.catch_up()


def test_offset_beyond_log_end_detected(log: EventLog) -> None:
    target = MemoryStore()
    target.put(OFFSET_KEY_PREFIX + b"p", (10).to_bytes(8, "big"))
    projection = Projection(log, target, count_by_stream, "p")
    with pytest.raises(CorruptionError, match="beyond the end"):
        projection.catch_up()


def test_stream_projection_skips_other_streams(log: EventLog) -> None:
    target = MemoryStore()
    for i in range(10):
        log.append("mine" if i % 3 == 0 else "other", [b"e"])
    projection = Projection(log, target, count_by_stream, "p", stream="mine")
    assert projection.catch_up() == 4
    assert projection.offset == 10
    assert projected(target) == {b"count/mine": b"4"}


def test_background_projection_follows_log(log: EventLog) -> None:
    target = MemoryStore()
    projection = Projection(log, target, count_by_stream, "live")
    projection.start()
    try:
        for i in range(100):
            log.append(f"s{i % 4}", [b"e"])
        assert projection.wait(timeout=10)
        assert projected(target) == expected_counts(log)
        assert projection.running
    finally:
        projection.stop(timeout=5)
    assert not projection.running
    assert projection.error is None


def test_background_projection_stops_when_log_closes(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "log"))
    projection = Projection(log, MemoryStore(), count_by_stream, "p")
    projection.start()
    log.append("s", [b"e"])
    assert projection.wait(timeout=5)
    log.close()
    projection.stop(timeout=5)
    assert not projection.running
    assert projection.error is None


def test_background_projection_records_apply_error(log: EventLog) -> None:
    def apply(event: Event, batch: ProjectionBatch) -> None:
        raise ValueError("cannot apply")

    projection = Projection(log, MemoryStore(), apply, "p")
    projection.start()
    log.append("s", [b"e"])
    assert not projection.wait(timeout=5)
    projection.stop(timeout=5)
    assert isinstance(projection.error, ValueError)


# -- crashes between apply and the offset write --------------------------------


def _source_log(fs: CrashFS) -> EventLog:
    log = EventLog("/log", sync="always", fs=fs, segment_bytes=1024)
    if log.next_offset == 0:
        for i in range(120):
            log.append(f"s{i % 5}", [b"e%d" % i] * (1 + i % 3))
    return log


@pytest.mark.parametrize("crash_at", [1, 7, 64, 150, 239])
@pytest.mark.parametrize("mode", ["drop", "prefix", "torn", "lose_dir_entries"])
def test_crash_between_apply_and_offset_write(crash_at: int, mode: str) -> None:
    fs = CrashFS(seed=crash_at)
    log = _source_log(fs)
    total = log.next_offset
    target = storekit.open("/target", fs=fs, sync="always")
    applied = [0]

    def apply(event: Event, batch: ProjectionBatch) -> None:
        count_by_stream(event, batch)
        applied[0] += 1
        if applied[0] == crash_at:
            # Power fails after apply, before the batch holding the effect
            # and the new offset reaches the target store.
            fs.crash(mode=mode)

    projection = Projection(log, target, apply, "counts", batch_events=16)
    with pytest.raises(ClosedError):
        projection.catch_up()

    log = _source_log(fs)
    target = storekit.open("/target", fs=fs, sync="always")
    projection = Projection(log, target, count_by_stream, "counts", batch_events=16)
    assert projection.offset % 16 == 0
    assert projection.offset < crash_at
    projection.catch_up()
    assert projection.offset == total
    assert projected(target) == expected_counts(log)
    target.close()
    log.close()


@pytest.mark.parametrize("seed", range(4))
def test_crash_after_some_commits(seed: int) -> None:
    fs = CrashFS(seed=seed)
    log = _source_log(fs)
    target = storekit.open("/target", fs=fs, sync="batch")
    projection = Projection(log, target, count_by_stream, "counts", batch_events=10)
    projection.catch_up(max_events=95)
    fs.crash()  # the target's unsynced batches may be lost, each whole
    log = _source_log(fs)
    target = storekit.open("/target", fs=fs, sync="batch")
    projection = Projection(log, target, count_by_stream, "counts", batch_events=10)
    assert projection.offset in range(0, 100, 10)
    projection.catch_up()
    assert projected(target) == expected_counts(log)
    target.close()
    log.close()


# -- EventSourcedStore ---------------------------------------------------------


@pytest.fixture(params=["memory", "durable"])
def inner_factory(request, tmp_path: Path):
    if request.param == "memory":
        return lambda: MemoryStore()
    return lambda: storekit.open(str(tmp_path / "inner"))


def test_event_sourced_store_reads_writes(tmp_path: Path, inner_factory) -> None:
    log = EventLog(str(tmp_path / "log"))
    db = EventSourcedStore(log, inner_factory())
    db.put(b"a", b"1")
    db[b"b"] = b"2"
    with db.batch() as batch:
        batch.put(b"c", b"3")
        batch.delete(b"a")
    assert db.get(b"a") is None
    assert db[b"b"] == b"2"
    assert list(db.scan()) == [(b"b", b"2"), (b"c", b"3")]
    assert list(db.scan(reverse=True, keys_only=True)) == [b"c", b"b"]
    assert len(db) == 2
    assert log.next_offset == 3
    events = list(log.read())
    assert {event.stream for event in events} == {"store"}
    with db.snapshot() as snapshot:
        db.put(b"d", b"4")
        assert snapshot.get(b"d") is None
        assert list(snapshot.scan(keys_only=True)) == [b"b", b"c"]
    assert db.get(b"d") == b"4"
    db.compact()
    assert db.stats()["lag"] == 0
    db.close()
    with pytest.raises(ClosedError):
        db.get(b"b")
    with pytest.raises(ClosedError):
        db.stats()
    with pytest.raises(ClosedError):
        db.compact()


def test_event_sourced_store_rebuilds_from_log(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with EventSourcedStore(EventLog(path), MemoryStore()) as db:
        for i in range(50):
            db.put(b"k%02d" % (i % 10), b"v%d" % i)
        db.delete(b"k03")
        expected = dict(db.scan())
    # A fresh in-memory read model replays the whole log.
    with EventSourcedStore(EventLog(path), MemoryStore()) as db:
        assert dict(db.scan()) == expected
        assert db.projection.lag == 0


def test_event_sourced_store_nul_and_empty_values(
    tmp_path: Path, inner_factory
) -> None:
    log = EventLog(str(tmp_path / "log"))
    db = EventSourcedStore(log, inner_factory())
    pairs = {b"a,\x00": b"1", b"a,": b"2", b"\x00": b"3", b"\x00\x00": b"4"}
    for key, value in pairs.items():
        db.put(key, value)
    db.put(b"k1", b"")
    batch = WriteBatch()
    batch.put(b"k2", b"")
    db.write(batch)
    assert db.get(b"k1") == b""
    assert b"k2" in db
    expected = [
        (b"\x00", b"3"),
        (b"\x00\x00", b"4"),
        (b"a,", b"2"),
        (b"a,\x00", b"1"),
        (b"k1", b""),
        (b"k2", b""),
    ]
    assert list(db.scan()) == expected
    db.close()
    # A new inner store rebuilt from the log contains the same keys and values.
    db = EventSourcedStore(EventLog(str(tmp_path / "log")), MemoryStore())
    assert list(db.scan()) == expected
    db.delete(b"k1")
    assert db.get(b"k1") is None
    assert db.get(b"k2") == b""
    db.close()


def test_event_sourced_store_reserved_keys(tmp_path: Path) -> None:
    with EventSourcedStore(EventLog(str(tmp_path / "log")), MemoryStore()) as db:
        db.put(b"x", b"1")
        with pytest.raises(ValueError, match="reserved"):
            db.put(OFFSET_KEY_PREFIX + b"store", b"junk")
        assert db.get(OFFSET_KEY_PREFIX + b"store") is None
        assert list(db.scan()) == [(b"x", b"1")]
        assert list(db.scan(start=b"\xff")) == []


def test_event_sourced_store_follow_mode(tmp_path: Path) -> None:
    with EventSourcedStore(
        EventLog(str(tmp_path / "log")), MemoryStore(), follow=True
    ) as db:
        for i in range(20):
            db.put(b"k%d" % i, b"v")
        assert db.projection.wait(timeout=10)
        assert len(db) == 20


def test_event_sourced_store_concurrent_writers(tmp_path: Path) -> None:
    with EventSourcedStore(EventLog(str(tmp_path / "log")), MemoryStore()) as db:

        def writer(n: int) -> None:
            for i in range(50):
                db.put(b"t%d-%d" % (n, i), b"v")
                assert db.get(b"t%d-%d" % (n, i)) == b"v"

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(db) == 200


def test_event_sourced_store_survives_crash() -> None:
    fs = CrashFS(seed=21)
    db = EventSourcedStore(
        EventLog("/log", sync="always", fs=fs),
        storekit.open("/inner", fs=fs, sync="none"),
    )
    for i in range(30):
        db.put(b"k%d" % i, b"v%d" % i)
    fs.crash(mode="drop")  # the inner store loses its unsynced writes
    db = EventSourcedStore(
        EventLog("/log", sync="always", fs=fs),
        storekit.open("/inner", fs=fs, sync="none"),
    )
    assert dict(db.scan()) == {b"k%d" % i: b"v%d" % i for i in range(30)}
    db.close()


# -- aggregate snapshots -------------------------------------------------------


def _balance(state: int, event: Event) -> int:
    return state + int(event.data)


def test_aggregate_snapshot_limits_replay(log: EventLog) -> None:
    log.append("acct", [b"%d" % i for i in range(1, 101)])
    snapshots = AggregateSnapshots(MemoryStore())
    full = load_aggregate(log, "acct", _balance, 0)
    assert full == (5050, 100, 100)
    snapshots.save("acct", 90, b"%d" % sum(range(1, 91)))
    loaded = load_aggregate(log, "acct", _balance, 0, snapshots=snapshots, decode=int)
    assert loaded.state == 5050
    assert loaded.version == 100
    assert loaded.replayed == 10
    assert snapshots.load("acct") == (90, b"4095")


def test_aggregate_snapshot_ahead_of_log_ignored(log: EventLog) -> None:
    log.append("acct", [b"5"])
    snapshots = AggregateSnapshots(MemoryStore())
    snapshots.save("acct", 7, b"999")
    loaded = load_aggregate(log, "acct", _balance, 0, snapshots=snapshots, decode=int)
    assert loaded == (5, 1, 1)


def test_aggregate_loads_after_truncation(log: EventLog) -> None:
    log.append("acct", [b"1"] * 200)
    snapshots = AggregateSnapshots(MemoryStore())
    state = load_aggregate(log, "acct", _balance, 0)
    snapshots.save("acct", state.version, b"%d" % state.state)
    log.rotate()
    log.append("acct", [b"2"] * 3)
    assert log.truncate_before(200) == 200
    with pytest.raises(OffsetError):
        load_aggregate(log, "acct", _balance, 0)
    loaded = load_aggregate(log, "acct", _balance, 0, snapshots=snapshots, decode=int)
    assert loaded == (206, 203, 3)


def test_aggregate_snapshot_validation() -> None:
    snapshots = AggregateSnapshots(MemoryStore())
    with pytest.raises(ValueError):
        snapshots.save("acct", 0, b"x")
    with pytest.raises(TypeError):
        snapshots.save("acct", 1, "text")
    with pytest.raises(ValueError):
        snapshots.load("")
    assert snapshots.load("missing") is None


def test_projection_argument_checks(log: EventLog) -> None:
    with pytest.raises(TypeError):
        Projection(log, {}, count_by_stream, "p")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Projection(log, MemoryStore(), None, "p")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Projection(log, MemoryStore(), count_by_stream, "")
    with pytest.raises(ValueError):
        Projection(log, MemoryStore(), count_by_stream, "p", batch_events=0)
    with pytest.raises(ValueError, match="overlaps"):
        Projection(log, MemoryStore(), count_by_stream, "p", key_prefix=b"\xff")


def test_wait_times_out_without_thread(log: EventLog) -> None:
    projection = Projection(log, MemoryStore(), count_by_stream, "p")
    log.append("s", [b"e"])
    started = time.monotonic()
    assert not projection.wait(timeout=0.05)
    assert time.monotonic() - started < 2


# -- documentation examples ----------------------------------------------------


def test_eventlog_doc_examples_run() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "eventlog.md"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    result = doctest.testfile(str(path), module_relative=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("module_name", ["subscription", "es_store", "aggregate"])
def test_eventlog_docstring_examples_run(module_name: str) -> None:
    import importlib

    module = importlib.import_module(f"storekit.eventlog.{module_name}")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
