"""EventLog crash recovery on CrashFS: torn tails, sync policies, damage policies."""

from __future__ import annotations

import errno
import random
import threading

import pytest

from storekit.errors import CorruptionError, DurabilityError
from storekit.eventlog import EventLog
from storekit.testing import CRASH_MODES, CrashFS

PATH = "/log"


def _payload(rng: random.Random, n: int) -> bytes:
    return b"%d:" % n + rng.randbytes(rng.randint(0, 300))


def _append_some(
    log: EventLog, rng: random.Random, count: int, acked: list[tuple[str, list[bytes]]]
) -> None:
    for _ in range(count):
        stream = f"s{rng.randint(0, 3)}"
        events = [_payload(rng, len(acked)) for _ in range(rng.randint(1, 4))]
        log.append(stream, events)
        acked.append((stream, events))


def _flatten(appends: list[tuple[str, list[bytes]]]) -> list[tuple[str, bytes]]:
    return [(stream, data) for stream, events in appends for data in events]


@pytest.mark.parametrize("mode", CRASH_MODES)
@pytest.mark.parametrize("seed", range(6))
def test_always_keeps_every_acknowledged_event(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    fs = CrashFS(seed=seed)
    acked: list[tuple[str, list[bytes]]] = []
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=2048)
    for _ in range(3):
        _append_some(log, rng, rng.randint(5, 40), acked)
        if rng.random() < 0.3:
            log.truncate_before(log.first_offset)  # exercises TRUNCATION writes
        fs.crash(mode=mode)
        log = EventLog(PATH, sync="always", fs=fs, segment_bytes=2048)
        stored = [(event.stream, event.data) for event in log.read()]
        assert stored == _flatten(acked)
        assert log.next_offset == len(stored)
    log.close()


@pytest.mark.parametrize("sync", ["batch", "none"])
@pytest.mark.parametrize("seed", range(8))
def test_unsynced_appends_lost_whole_or_kept_whole(sync: str, seed: int) -> None:
    rng = random.Random(seed)
    fs = CrashFS(seed=seed)
    log = EventLog(PATH, sync=sync, fs=fs, segment_bytes=4096, sync_bytes=1500)
    acked: list[tuple[str, list[bytes]]] = []
    _append_some(log, rng, 60, acked)
    fs.crash()
    log = EventLog(PATH, sync=sync, fs=fs, segment_bytes=4096)
    stored = [(event.stream, event.data) for event in log.read()]
    expected = _flatten(acked)
    # Recovery keeps a prefix of the appends: no torn event, no gap.
    assert stored == expected[: len(stored)]
    boundaries = {0}
    total = 0
    for _, events in acked:
        total += len(events)
        boundaries.add(total)
    assert len(stored) in boundaries
    versions: dict[str, int] = {}
    for event in log.read():
        versions[event.stream] = versions.get(event.stream, 0) + 1
        assert event.version == versions[event.stream]
    # Appends continue gap-free after the cut.
    offset = log.append("after", [b"x"])
    assert offset == len(stored)
    log.close()


def test_torn_tail_cut_and_reported() -> None:
    fs = CrashFS(seed=1)
    log = EventLog(PATH, sync="none", fs=fs)
    log.append("s", [b"durable"])
    log.sync()
    log.append("s", [b"t" * 3000])
    report = fs.crash(mode="torn")
    log = EventLog(PATH, sync="none", fs=fs)
    assert [event.data for event in log.read()] == [b"durable"]
    recovery = log.stats()["recovery"]
    if report.files:
        kept = next(iter(report.files.values())).kept_size
        assert recovery["dropped_bytes"] == kept - log.stats()["bytes"]
    segment = f"{PATH}/{0:020d}.log"
    assert fs.file_size(segment) == log.stats()["bytes"]
    log.close()


@pytest.mark.parametrize("filler", ["zeros", "random"])
def test_damaged_last_payload_never_returned(filler: str) -> None:
    fs = CrashFS(seed=4)
    log = EventLog(PATH, sync="always", fs=fs)
    log.append("s", [b"alpha"])
    log.append("s", [b"bravo"])
    log.close()
    segment = f"{PATH}/{0:020d}.log"
    data = bytearray(fs.read_file(segment))
    start = data.rindex(b"bravo")
    data[start : start + 5] = bytes(5) if filler == "zeros" else b"\x13\x37\xbe\xef\x00"
    with fs.open(segment, "w") as handle:
        handle.append(bytes(data))
        handle.sync()
    log = EventLog(PATH, fs=fs)
    assert [event.data for event in log.read()] == [b"alpha"]
    log.close()


def _damage_middle(fs: CrashFS) -> None:
    segment = f"{PATH}/{0:020d}.log"
    data = bytearray(fs.read_file(segment))
    data[100] ^= 0xFF
    with fs.open(segment, "w") as handle:
        handle.append(bytes(data))
        handle.sync()


def _log_with_two_blocks(fs: CrashFS) -> int:
    log = EventLog(PATH, sync="always", fs=fs)
    for i in range(200):
        log.append("s", [b"%03d" % i + b"." * 300])
    count = log.next_offset
    log.close()
    return count


def test_damage_before_valid_records_is_not_tolerated() -> None:
    fs = CrashFS(seed=6)
    _log_with_two_blocks(fs)
    _damage_middle(fs)
    with pytest.raises(CorruptionError, match="not a torn tail") as info:
        EventLog(PATH, fs=fs)
    assert info.value.path.endswith(".log")
    with pytest.raises(CorruptionError, match="strict"):
        EventLog(PATH, fs=fs, recovery="strict")
    log = EventLog(PATH, fs=fs, recovery="point_in_time")
    assert log.next_offset == 0
    assert log.append("s", [b"fresh"]) == 0
    log.close()


def test_strict_rejects_torn_tail() -> None:
    fs = CrashFS(seed=7)
    log = EventLog(PATH, sync="always", fs=fs)
    log.append("s", [b"a"])
    log.append("s", [b"b" * 500])
    log.close()
    segment = f"{PATH}/{0:020d}.log"
    data = fs.read_file(segment)
    with fs.open(segment, "w") as handle:
        handle.append(data[:-100])  # the last record is cut short
        handle.sync()
    with pytest.raises(CorruptionError, match="strict"):
        EventLog(PATH, fs=fs, recovery="strict")
    log = EventLog(PATH, fs=fs)
    assert [event.data for event in log.read()] == [b"a"]
    assert log.stats()["recovery"]["dropped_bytes"] > 0
    log.close()


def test_crash_while_sealing_segment() -> None:
    fs = CrashFS(seed=8)
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    log.append("s", [b"x" * 100] * 5)
    # The next segment's creation fails after the side file is written.
    fs.fail(op="open", at=1, errno=errno.EIO)
    with pytest.raises(DurabilityError):
        log.append("s", [b"y" * 600])
    fs.crash(mode="lose_dir_entries")
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    data = [event.data for event in log.read()]
    assert data[:5] == [b"x" * 100] * 5
    assert len(data) in (5, 6)
    assert log.append("s", [b"z"]) == len(data)
    log.close()


@pytest.mark.parametrize("failing_dir_fsync", [1, 2, 3])
def test_crash_during_truncation(failing_dir_fsync: int) -> None:
    fs = CrashFS(seed=9)
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    for i in range(40):
        log.append(f"s{i % 2}", [b"w" * 100])
    # Truncation fsyncs the directory when it creates TRUNCATION.tmp, when it
    # renames it and after the removals; one of them fails, then power is lost.
    fs.fail(op="fsync", at=failing_dir_fsync, errno=errno.EIO, path=PATH)
    with pytest.raises(DurabilityError):
        log.truncate_before(30)
    fs.crash(mode="lose_dir_entries")
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    first = log.first_offset
    if failing_dir_fsync == 3:
        assert 0 < first <= 30
    assert first <= 30
    assert log.stream_version("s0") == 20
    assert log.stream_version("s1") == 20
    assert [event.offset for event in log.read(first)] == list(range(first, 40))
    names = fs.listdir(PATH)
    assert all(int(name[:20]) >= first for name in names if name.endswith(".log"))
    assert log.append("s0", [b"next"], expected_version=20) == 40
    log.close()


def test_empty_newest_segment_after_crash() -> None:
    fs = CrashFS(seed=10)
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    log.append("s", [b"v" * 1100])  # fills the segment, a new one is started
    assert len(log.segments()) == 2
    fs.crash(mode="drop")  # the new segment's header was never synced
    newest = f"{PATH}/{1:020d}.log"
    assert fs.file_size(newest) == 0
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=1024)
    assert log.append("s", [b"next"]) == 1
    assert [event.offset for event in log.read()] == [0, 1]
    log.close()


def _crash_while_appends_race(seed: int) -> None:
    fs = CrashFS(seed=seed)
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=2048)
    acked: dict[str, list[bytes]] = {f"t{n}": [] for n in range(4)}
    stop = threading.Event()

    def writer(stream: str) -> None:
        i = 0
        while not stop.is_set():
            data = b"%s-%d" % (stream.encode(), i)
            try:
                log.append(stream, [data])
            except Exception:  # noqa: BLE001 - the crash ends the writer
                return
            acked[stream].append(data)
            i += 1

    threads = [threading.Thread(target=writer, args=(s,)) for s in acked]
    for thread in threads:
        thread.start()
    while sum(len(v) for v in acked.values()) < 200:
        pass
    fs.crash()
    stop.set()
    for thread in threads:
        thread.join()
    log = EventLog(PATH, sync="always", fs=fs, segment_bytes=2048)
    for stream, values in acked.items():
        stored = [event.data for event in log.read_stream(stream)]
        assert stored[: len(values)] == values
        assert len(stored) <= len(values) + 1
    log.close()


@pytest.mark.parametrize("seed", range(4))
def test_crash_while_appends_race(seed: int) -> None:
    _crash_while_appends_race(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 204))
def test_crash_while_appends_race_many_seeds(seed: int) -> None:
    _crash_while_appends_race(seed)
