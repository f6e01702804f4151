"""EventLog: appends, streams, reads, subscriptions, retention and side files."""

from __future__ import annotations

import errno
import os
import posixpath
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from stores import child_env

import storekit
from storekit._backend import framing
from storekit.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DurabilityError,
    LockedError,
    OffsetError,
    ReadOnlyError,
)
from storekit.eventlog import Event, EventLog
from storekit.fs import File, FileLock, FileSystem, OSFileSystem
from storekit.testing import CrashFS

# -- a file system wrapper that counts reads and fsyncs ------------------------


class _CountingFile(File):
    def __init__(self, owner: CountingFS, inner: File) -> None:
        self._owner = owner
        self._inner = inner
        self.path = inner.path

    def append(self, data: bytes) -> None:
        self._inner.append(data)

    def read(self, offset: int, size: int) -> bytes:
        data = self._inner.read(offset, size)
        with self._owner.counter_lock:
            self._owner.bytes_read[posixpath.basename(self.path)] += len(data)
        return data

    def size(self) -> int:
        return self._inner.size()

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def sync(self) -> None:
        if self._owner.sync_delay:
            time.sleep(self._owner.sync_delay)
        self._inner.sync()
        with self._owner.counter_lock:
            self._owner.file_syncs += 1

    def close(self) -> None:
        self._inner.close()


class CountingFS(FileSystem):
    """Delegates to another FileSystem and counts bytes read per file name."""

    def __init__(self, inner: FileSystem, sync_delay: float = 0.0) -> None:
        self.inner = inner
        self.sync_delay = sync_delay
        self.counter_lock = threading.Lock()
        self.bytes_read: Counter[str] = Counter()
        self.file_syncs = 0

    @property
    def epoch(self) -> int:  # type: ignore[override]
        return self.inner.epoch

    def open(self, path: str, mode: str = "r") -> File:
        return _CountingFile(self, self.inner.open(path, mode))

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def mkdir(self, path: str) -> None:
        self.inner.mkdir(path)

    def rename(self, source: str, target: str) -> None:
        self.inner.rename(source, target)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def sync_dir(self, path: str) -> None:
        self.inner.sync_dir(path)

    def lock(self, path: str) -> FileLock:
        return self.inner.lock(path)

    def file_size(self, path: str) -> int:
        return self.inner.file_size(path)


@pytest.fixture
def log_dir(tmp_path: Path) -> str:
    return str(tmp_path / "log")


# -- appends, offsets and versions ---------------------------------------------


def test_append_returns_last_offset(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        assert log.next_offset == 0
        assert log.append("a", [b"1", b"2", b"3"]) == 2
        assert log.append("b", [b"x"]) == 3
        assert log.next_offset == 4
        assert log.stream_version("a") == 3
        assert log.stream_version("b") == 1
        assert log.stream_version("missing") == 0
        assert log.streams() == ["a", "b"]


def test_event_fields(log_dir: str) -> None:
    before = time.time()
    with EventLog(log_dir) as log:
        log.append("orders", [b"created", b""], event_ids=["id-1", "id-2"])
        first, second = list(log.read())
    after = time.time()
    assert first == Event(0, "orders", 1, b"created", first.timestamp, "id-1")
    assert second.data == b""
    assert second.version == 2
    assert second.event_id == "id-2"
    assert before - 1 <= first.timestamp <= after + 1
    assert first.timestamp == second.timestamp


def test_offsets_continue_after_reopen(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as log:
        for i in range(40):
            log.append(f"s{i % 3}", [b"event %d" % i] * 2)
    with EventLog(log_dir, segment_bytes=1024) as log:
        assert log.next_offset == 80
        assert log.stream_version("s0") == 28
        assert log.append("s0", [b"more"]) == 80
        events = list(log.read())
    assert [event.offset for event in events] == list(range(81))
    assert [event.version for event in events if event.stream == "s0"] == list(
        range(1, 30)
    )


def test_large_event_spans_blocks(log_dir: str) -> None:
    big = os.urandom(100_000)
    with EventLog(log_dir, segment_bytes=4096) as log:
        log.append("s", [b"small"])
        log.append("s", [big, b"after"])
    with EventLog(log_dir) as log:
        assert [event.data for event in log.read()] == [b"small", big, b"after"]


def test_expected_version_conflict_appends_nothing(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"1", b"2"])
        with pytest.raises(ConcurrencyError, match="version 2"):
            log.append("s", [b"3"], expected_version=1)
        assert log.next_offset == 2
        assert log.append("s", [b"3"], expected_version=2) == 2
        assert log.stream_version("s") == 3


def test_expected_version_zero_means_new_stream(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        assert log.append("new", [b"1"], expected_version=0) == 0
        with pytest.raises(ConcurrencyError):
            log.append("new", [b"2"], expected_version=0)


def test_optimistic_concurrency_one_winner_per_round(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"a", b"b"])
        barrier = threading.Barrier(2)
        for _ in range(100):
            expected = log.stream_version("s")
            outcomes: list[object] = [None, None]

            def writer(
                slot: int, expected: int = expected, outcomes: list[object] = outcomes
            ) -> None:
                barrier.wait()
                try:
                    outcomes[slot] = log.append(
                        "s", [b"w%d" % slot], expected_version=expected
                    )
                except ConcurrencyError as exc:
                    outcomes[slot] = exc

            threads = [threading.Thread(target=writer, args=(slot,)) for slot in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            winners = [o for o in outcomes if isinstance(o, int)]
            losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
            assert len(winners) == 1
            assert len(losers) == 1
            assert log.stream_version("s") == expected + 1
        assert log.stream_version("s") == 102
        offsets = [event.offset for event in log.read()]
    assert offsets == list(range(102))


# -- idempotent appends --------------------------------------------------------


def test_retried_append_with_ids_writes_nothing(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        ids = [f"id{i}" for i in range(1, 6)]
        assert log.append("s", [b"e%d" % i for i in range(1, 6)], event_ids=ids) == 4
        assert log.append("s", [b"e%d" % i for i in range(1, 6)], event_ids=ids) == 4
        assert log.append("s", [b"e5"], event_ids=["id5"]) == 4
        assert log.append("s", [b"e3"], event_ids=["id3"]) == 2
        assert log.next_offset == 5
    with EventLog(log_dir) as log:
        assert log.append("s", [b"e5"], event_ids=["id5"]) == 4
        assert log.next_offset == 5


def test_partly_known_ids_rejected(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"1"], event_ids=["known"])
        with pytest.raises(ValueError, match="known"):
            log.append("s", [b"1", b"2"], event_ids=["known", "new"])
        with pytest.raises(ValueError, match="unique"):
            log.append("s", [b"1", b"2"], event_ids=["dup", "dup"])
        assert log.next_offset == 1


def test_idempotent_replay_after_crash(tmp_path: Path) -> None:
    fs = CrashFS(seed=5)
    log = EventLog("/log", sync="always", fs=fs)
    ids = [f"id{i}" for i in range(1, 6)]
    log.append("s", [b"e%d" % i for i in range(1, 6)], event_ids=ids)
    log.rotate()  # the segment is sealed: synced, side file written
    fs.crash(mode="lose_dir_entries")
    log = EventLog("/log", sync="always", fs=fs)
    events = list(log.read_stream("s"))
    assert [event.offset for event in events] == [0, 1, 2, 3, 4]
    assert [event.event_id for event in events] == ids
    assert log.next_offset == 5
    assert log.append("s", [b"e5"], event_ids=["id5"]) == 4
    assert log.next_offset == 5
    log.close()


def test_ids_forgotten_after_truncation(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"old"], event_ids=["x"])
        log.truncate_before(1)
        assert log.first_offset == 1
        assert log.append("s", [b"again"], event_ids=["x"]) == 1


# -- reads ---------------------------------------------------------------------


def test_read_from_offset_and_stream(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as log:
        for i in range(60):
            log.append("even" if i % 2 == 0 else "odd", [b"%d" % i])
        assert [event.offset for event in log.read(55)] == [55, 56, 57, 58, 59]
        odd = [event.offset for event in log.read(10, stream="odd")]
        assert odd == list(range(11, 60, 2))
        assert list(log.read(60)) == []
        assert list(log.read(1000)) == []


def test_read_stream_from_version(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as log:
        for i in range(30):
            log.append("a" if i % 3 else "b", [b"%d" % i])
        versions = [event.version for event in log.read_stream("b", 4)]
        assert versions == list(range(4, 11))
        assert [event.data for event in log.read_stream("b", 10)] == [b"27"]
        assert list(log.read_stream("b", 11)) == []
        assert list(log.read_stream("missing")) == []


def test_read_sees_events_up_to_its_start(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"1"])
        events = log.read()
        log.append("s", [b"2"])
        assert [event.data for event in events] == [b"1"]


def test_read_below_first_offset_raises(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as log:
        for _ in range(50):
            log.append("s", [b"x" * 40])
        first = log.truncate_before(30)
        assert 0 < first <= 30
        with pytest.raises(OffsetError) as info:
            log.read(first - 1)
        assert info.value.first_offset == first
        assert str(first) in str(info.value)
        assert next(log.read(first)).offset == first
        with pytest.raises(OffsetError):
            log.read_stream("s", 1)


def test_read_from_middle_uses_sparse_index(tmp_path: Path) -> None:
    fs = CountingFS(OSFileSystem())
    path = str(tmp_path / "log")
    with EventLog(path, fs=fs, index_interval_bytes=4096) as log:
        for i in range(5000):
            log.append("s", [b"%06d" % i + b"." * 200])
        segment_bytes = log.stats()["bytes"]
        fs.bytes_read.clear()
        event = next(log.read(4000))
        assert event.data.startswith(b"004000")
        read = sum(fs.bytes_read.values())
    assert segment_bytes > 1_000_000
    assert read <= 64 * 1024


# -- validation and lifecycle --------------------------------------------------


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda log: log.append(b"s", [b"x"]), TypeError),
        (lambda log: log.append("", [b"x"]), ValueError),
        (lambda log: log.append("s", b"x"), TypeError),
        (lambda log: log.append("s", []), ValueError),
        (lambda log: log.append("s", ["text"]), TypeError),
        (lambda log: log.append("s", [b"x"], expected_version=-1), ValueError),
        (lambda log: log.append("s", [b"x"], expected_version="1"), TypeError),
        (lambda log: log.append("s", [b"x"], event_ids=["a", "b"]), ValueError),
        (lambda log: log.append("s", [b"x"], event_ids=[1]), TypeError),
        (lambda log: log.append("s", [b"x"], event_ids=[""]), ValueError),
        (lambda log: log.append("s" * 70000, [b"x"]), ValueError),
        (lambda log: log.read(-1), ValueError),
        (lambda log: log.read(1.5), TypeError),
        (lambda log: log.read_stream("s", 0), ValueError),
        (lambda log: log.truncate_before(5), ValueError),
    ],
)
def test_invalid_arguments_rejected(log_dir: str, call, error) -> None:
    with EventLog(log_dir) as log:
        with pytest.raises(error):
            call(log)
        assert log.next_offset == 0


def test_invalid_options_rejected(log_dir: str) -> None:
    with pytest.raises(ValueError, match="sync"):
        EventLog(log_dir, sync="sometimes")
    with pytest.raises(ValueError, match="recovery"):
        EventLog(log_dir, recovery="hope")
    with pytest.raises(ValueError, match="segment_bytes"):
        EventLog(log_dir, segment_bytes=10)
    with pytest.raises(FileNotFoundError):
        EventLog(log_dir, create=False)


def test_closed_log_raises(log_dir: str) -> None:
    log = EventLog(log_dir)
    log.append("s", [b"1"])
    log.close()
    log.close()
    with pytest.raises(ClosedError):
        log.append("s", [b"2"])
    with pytest.raises(ClosedError):
        log.read()
    with pytest.raises(ClosedError):
        _ = log.next_offset


def test_second_writer_locked(log_dir: str) -> None:
    with EventLog(log_dir):
        with pytest.raises(LockedError):
            EventLog(log_dir)


def test_read_only_rejects_writes(log_dir: str) -> None:
    with EventLog(log_dir) as writer:
        writer.append("s", [b"1"])
        with EventLog(log_dir, read_only=True) as reader:
            assert [event.data for event in reader.read()] == [b"1"]
            with pytest.raises(ReadOnlyError):
                reader.append("s", [b"2"])
            with pytest.raises(ReadOnlyError):
                reader.truncate_before(0)


# -- subscriptions -------------------------------------------------------------


def test_subscribe_yields_events_appended_later(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"old"])
        subscription = log.subscribe(timeout=5)
        received: list[bytes] = []

        def consume() -> None:
            for event in subscription:
                received.append(event.data)
                if len(received) == 3:
                    break

        thread = threading.Thread(target=consume)
        thread.start()
        for data in (b"a", b"b", b"c"):
            time.sleep(0.01)
            log.append("s", [data])
        thread.join(5)
        assert not thread.is_alive()
        assert received == [b"a", b"b", b"c"]


def test_subscribe_from_offset_and_stream(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        for i in range(10):
            log.append("x" if i % 2 else "y", [b"%d" % i])
        subscription = log.subscribe(3, stream="x", timeout=0)
        assert [event.offset for event in subscription] == [3, 5, 7, 9]
        assert subscription.position == 10


def test_subscription_timeout_and_resume(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        subscription = log.subscribe(0, timeout=0.05)
        started = time.monotonic()
        assert list(subscription) == []
        assert time.monotonic() - started < 2
        log.append("s", [b"1"])
        assert [event.data for event in subscription] == [b"1"]
        assert subscription.get(timeout=0) is None


def test_subscription_close_from_other_thread(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        subscription = log.subscribe(0)
        results: list[object] = []
        thread = threading.Thread(target=lambda: results.append(list(subscription)))
        thread.start()
        time.sleep(0.05)
        subscription.close()
        thread.join(2)
        assert not thread.is_alive()
        assert results == [[]]
        assert subscription.closed


def test_subscription_stops_when_log_closes(log_dir: str) -> None:
    log = EventLog(log_dir)
    subscription = log.subscribe(0)
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(list(subscription)))
    thread.start()
    time.sleep(0.05)
    log.close()
    thread.join(2)
    assert not thread.is_alive()
    assert results == [[]]


def test_subscription_behind_truncation_raises(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as log:
        subscription = log.subscribe(0, timeout=0)
        for _ in range(40):
            log.append("s", [b"x" * 100])
        log.truncate_before(log.next_offset)
        with pytest.raises(OffsetError):
            next(subscription)


def test_reader_in_other_process_polls(log_dir: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        from storekit.eventlog import EventLog
        log = EventLog(sys.argv[1], read_only=True)
        print("ready", flush=True)
        seen = []
        for event in log.subscribe(0, timeout=10, poll_interval=0.02):
            seen.append(event.data.decode())
            if len(seen) == 30:
                break
        print(",".join(seen), flush=True)
        """
    )
    with EventLog(log_dir, segment_bytes=1024) as log:
        log.append("s", [b"0"])
        child = subprocess.Popen(
            [sys.executable, "-c", script, log_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        for i in range(1, 30):
            log.append("s", [b"%d" % i + b"." * 60])
            time.sleep(0.005)
        output, errors = child.communicate(timeout=30)
    assert child.returncode == 0, errors
    seen = output.strip().split(",")
    assert [value.rstrip(".") for value in seen] == [str(i) for i in range(30)]


def test_read_only_log_refresh_follows_rotation(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=1024) as writer:
        reader = EventLog(log_dir, read_only=True)
        assert reader.next_offset == 0
        for _ in range(50):
            writer.append("s", [b"x" * 50])
        assert reader.refresh() == 50
        assert reader.next_offset == 50
        assert reader.stream_version("s") == 50
        writer.truncate_before(40)
        reader.refresh()
        assert reader.first_offset == writer.first_offset
        assert [event.offset for event in reader.read(45)] == [45, 46, 47, 48, 49]
        reader.close()


# -- retention -----------------------------------------------------------------


def test_truncate_everything_keeps_offsets_and_versions(log_dir: str) -> None:
    with EventLog(log_dir) as log:
        log.append("s", [b"1", b"2", b"3"])
        assert log.truncate_before(3) == 3
        assert log.first_offset == 3
        assert list(log.read(3)) == []
    with EventLog(log_dir) as log:
        assert log.first_offset == 3
        assert log.next_offset == 3
        assert log.stream_version("s") == 3
        with pytest.raises(ConcurrencyError):
            log.append("s", [b"4"], expected_version=0)
        assert log.append("s", [b"4"], expected_version=3) == 3
        event = next(log.read(3))
    assert event.version == 4


def test_retention_bytes_drops_oldest_segments(log_dir: str) -> None:
    with EventLog(log_dir, segment_bytes=2048, retention_bytes=8192) as log:
        for _ in range(200):
            log.append("s", [b"y" * 100])
        stats = log.stats()
        assert stats["bytes"] <= 8192 + 2048
        assert log.first_offset > 0
        assert log.next_offset == 200
        assert next(log.read(log.first_offset)).offset == log.first_offset


def test_retention_seconds_uses_clock(log_dir: str) -> None:
    now = [time.time()]
    with EventLog(
        log_dir, segment_bytes=1024, retention_seconds=60, clock=lambda: now[0]
    ) as log:
        for _ in range(20):
            log.append("s", [b"z" * 100])
        assert log.enforce_retention() == 0
        now[0] += 120
        first = log.enforce_retention()
        assert first == log.segments()[0]
        assert len(log.segments()) == 1
        assert log.next_offset == 20


# -- durability ----------------------------------------------------------------


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    fs = CountingFS(OSFileSystem(), sync_delay=0.005)
    with EventLog(str(tmp_path / "log"), sync="always", fs=fs) as log:
        barrier = threading.Barrier(8)

        def writer(n: int) -> None:
            barrier.wait()
            for i in range(20):
                log.append(f"s{n}", [b"%d" % i])

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = log.stats()
        assert stats["appends"] == 160
        assert stats["fsyncs"] < 100
        assert stats["bytes_unsynced"] == 0
        assert len(list(log.read())) == 160


def test_always_makes_events_readable_only_after_fsync(tmp_path: Path) -> None:
    fs = CrashFS(seed=11)
    log = EventLog("/log", sync="always", fs=fs)
    log.append("s", [b"1", b"2"])
    fs.crash(mode="drop")
    log = EventLog("/log", sync="always", fs=fs)
    assert [event.data for event in log.read()] == [b"1", b"2"]
    log.close()


def test_batch_sync_runs_in_background(log_dir: str) -> None:
    with EventLog(log_dir, sync="batch", sync_interval=0.05) as log:
        log.append("s", [b"1"])
        deadline = time.monotonic() + 5
        while log.stats()["bytes_unsynced"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.stats()["bytes_unsynced"] == 0


def test_batch_sync_starts_at_half_window(log_dir: str) -> None:
    with EventLog(log_dir, sync="batch", sync_interval=3600, sync_bytes=8192) as log:
        log.append("s", [b"h" * 3000])
        assert log.stats()["bytes_unsynced"] > 0
        log.append("s", [b"h" * 2000])  # now more than half of sync_bytes
        deadline = time.monotonic() + 5
        while log.stats()["bytes_unsynced"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.stats()["bytes_unsynced"] == 0
        assert log.stats()["fsyncs"] >= 1


def test_failed_fsync_is_sticky() -> None:
    fs = CrashFS(seed=2)
    log = EventLog("/log", sync="always", fs=fs)
    log.append("s", [b"ok"])
    fs.fail(op="fsync", at=1, errno=errno.EIO)
    with pytest.raises(DurabilityError):
        log.append("s", [b"lost"])
    with pytest.raises(DurabilityError):
        log.append("s", [b"after"])
    assert log.stats()["failed"]
    fs.crash(mode="drop")
    log = EventLog("/log", sync="always", fs=fs)
    assert [event.data for event in log.read()] == [b"ok"]
    log.close()


def test_failed_write_is_sticky() -> None:
    fs = CrashFS(seed=3)
    log = EventLog("/log", sync="batch", fs=fs)
    log.append("s", [b"ok"])
    fs.fail(op="write", at=1, errno=errno.ENOSPC)
    with pytest.raises(DurabilityError):
        log.append("s", [b"x" * 1000])
    with pytest.raises(DurabilityError):
        log.append("s", [b"y"])
    assert [event.data for event in log.read()] == [b"ok"]
    log.close()
    log = EventLog("/log", fs=fs)
    assert [event.data for event in log.read()] == [b"ok"]
    assert log.append("s", [b"z"]) == 1
    log.close()


# -- side files ----------------------------------------------------------------


def test_open_reads_no_sealed_segment_body(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with EventLog(path, segment_bytes=1024) as log:
        while len(log.segments()) < 100:
            log.append(
                f"s{log.next_offset % 7}",
                [b"p" * 120],
                event_ids=[f"id{log.next_offset}"],
            )
        newest = log.segments()[-1]
        total = log.next_offset
    fs = CountingFS(OSFileSystem())
    with EventLog(path, fs=fs, segment_bytes=1024) as log:
        assert log.next_offset == total
        assert len(log.segments()) == 100
        body_reads = {
            name: count
            for name, count in fs.bytes_read.items()
            if name.endswith(".log")
        }
        assert list(body_reads) == [f"{newest:020d}.log"]
        assert log.append("s0", [b"dup"], event_ids=["id5"]) == 5


def test_missing_side_file_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log"
    with EventLog(str(path), segment_bytes=1024) as log:
        for i in range(30):
            log.append("s", [b"q" * 100], event_ids=[f"e{i}"])
        sealed = log.segments()[0]
    index = path / f"{sealed:020d}.index"
    index.unlink()
    with EventLog(str(path), segment_bytes=1024) as log:
        assert index.exists()
        assert log.next_offset == 30
        assert log.append("s", [b"again"], event_ids=["e0"]) == 0
    assert "rebuilt" in caplog.text


def test_damaged_side_file_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with EventLog(str(path), segment_bytes=1024) as log:
        for _ in range(30):
            log.append("s", [b"q" * 100])
        sealed = log.segments()[0]
    index = path / f"{sealed:020d}.index"
    data = bytearray(index.read_bytes())
    data[20] ^= 0xFF
    index.write_bytes(bytes(data))
    with EventLog(str(path)) as log:
        assert [event.offset for event in log.read()] == list(range(30))


def test_unsupported_segment_version_rejected(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with EventLog(str(path)) as log:
        log.append("s", [b"1"])
    segment = path / f"{0:020d}.log"
    data = bytearray(segment.read_bytes())
    data[8] = 9  # the u16 format version after the 8-byte magic
    data[18:22] = framing.checksum(bytes(data[:18])).to_bytes(4, "little")
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="version 9"):
        EventLog(str(path))


def test_damaged_header_not_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with EventLog(str(path)) as log:
        log.append("s", [b"acknowledged"])
    segment = path / f"{0:020d}.log"
    data = bytearray(segment.read_bytes())
    data[12] ^= 0xFF  # inside the base offset field
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="not a torn tail"):
        EventLog(str(path))
    with EventLog(str(path), recovery="point_in_time") as log:
        assert log.next_offset == 0


def test_damaged_sealed_segment_raises_on_read(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with EventLog(str(path), segment_bytes=1024) as log:
        for _ in range(30):
            log.append("s", [b"r" * 100])
        sealed = log.segments()[0]
    segment = path / f"{sealed:020d}.log"
    data = bytearray(segment.read_bytes())
    data[200] ^= 0xFF
    segment.write_bytes(bytes(data))
    with EventLog(str(path)) as log:
        with pytest.raises(CorruptionError) as info:
            list(log.read())
    assert info.value.path is not None
    assert info.value.path.endswith(segment.name)
    assert info.value.offset is not None


def test_lazy_export_from_package(log_dir: str) -> None:
    assert storekit.EventLog is EventLog
    with storekit.EventLog(log_dir) as log:
        assert log.append("s", [b"1"]) == 0
