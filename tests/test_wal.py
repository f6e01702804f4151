"""WAL tests on real files: framing on disk, recovery modes, group commit, tailing."""

from __future__ import annotations

import logging
import os
import random
import threading

import pytest

import storekit
from storekit.batch import KIND_PUT, encode_batch
from storekit.testing import CRASH_MODES, CrashFS
from storekit.wal import SEGMENT_HEADER_SIZE, WAL, Position, WALReader, segment_name


def _segment_files(path):
    return sorted(name for name in os.listdir(path) if name.endswith(".wal"))


def _payloads(count, seed=0, max_size=300):
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(max_size)) for _ in range(count)]


def test_append_replay_round_trip(tmp_path):
    payloads = _payloads(500) + [b"", os.urandom(100_000), os.urandom(32 * 1024 - 7)]
    with WAL(str(tmp_path), sync="none") as wal:
        positions = [wal.append(p) for p in payloads]
    assert positions == sorted(positions)
    with WAL(str(tmp_path)) as wal:
        replayed = list(wal.replay())
    assert [payload for _, payload in replayed] == payloads
    assert [position for position, _ in replayed] == positions


def test_replay_from_position(tmp_path):
    payloads = _payloads(50)
    with WAL(str(tmp_path)) as wal:
        positions = [wal.append(p) for p in payloads]
        got = [payload for _, payload in wal.replay(positions[20])]
    assert got == payloads[20:]


def test_segments_rotate_at_size_limit(tmp_path):
    with WAL(str(tmp_path), segment_bytes=8192) as wal:
        for payload in _payloads(200, max_size=400):
            wal.append(payload)
        segments = wal.segments()
    assert len(segments) > 3
    assert _segment_files(tmp_path) == [segment_name(n) for n in segments]
    with WAL(str(tmp_path)) as wal:
        assert len(list(wal.replay())) == 200


def test_invalid_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="sometimes"):
        WAL(str(tmp_path), sync="sometimes")
    with pytest.raises(ValueError, match="lenient"):
        WAL(str(tmp_path), recovery="lenient")
    with WAL(str(tmp_path)) as wal:
        with pytest.raises(TypeError, match="str"):
            wal.append("text")  # type: ignore[arg-type]


def test_closed_wal_raises_closed_error(tmp_path):
    wal = WAL(str(tmp_path))
    wal.close()
    with pytest.raises(storekit.ClosedError):
        wal.append(b"x")
    with pytest.raises(storekit.ClosedError):
        wal.sync()


# -- recovery ------------------------------------------------------------------


def _write_log(path, count=20, seed=1):
    payloads = _payloads(count, seed=seed)
    with WAL(str(path), sync="none") as wal:
        positions = [wal.append(p) for p in payloads]
    return payloads, positions


def _last_segment(path):
    return os.path.join(path, _segment_files(path)[-1])


@pytest.mark.parametrize("damage", ["zeros", "garbage", "cut"])
def test_torn_tail_is_cut_and_truncated_before_appends(tmp_path, damage, caplog):
    payloads, positions = _write_log(tmp_path)
    segment = _last_segment(tmp_path)
    size = os.path.getsize(segment)
    last = positions[-1].offset
    with open(segment, "r+b") as handle:
        if damage == "cut":
            handle.truncate(last + 5)
        else:
            handle.seek(last + 3)
            filler = (
                bytes(size - last - 3)
                if damage == "zeros"
                else os.urandom(size - last - 3)
            )
            handle.write(filler)
    with caplog.at_level(logging.WARNING, logger="storekit"):
        wal = WAL(str(tmp_path))
    assert os.path.getsize(segment) == last
    assert segment in caplog.text
    assert str(last) in caplog.text
    event = wal.stats()["recovery"]["events"][0]
    assert event["file"] == segment
    assert event["offset"] == last
    wal.append(b"after the cut")
    wal.close()
    with WAL(str(tmp_path), recovery="strict") as wal:
        got = [payload for _, payload in wal.replay()]
    assert got == payloads[:-1] + [b"after the cut"]


def test_strict_recovery_raises_on_torn_tail(tmp_path):
    _, positions = _write_log(tmp_path)
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.truncate(positions[-1].offset + 9)
    with pytest.raises(storekit.CorruptionError) as info:
        WAL(str(tmp_path), recovery="strict")
    assert info.value.path == segment
    assert info.value.offset == positions[-1].offset


def _damage_middle(path, positions, index):
    segment = _last_segment(path)
    with open(segment, "r+b") as handle:
        handle.seek(positions[index].offset + 7)
        byte = handle.read(1)
        handle.seek(positions[index].offset + 7)
        handle.write(bytes([byte[0] ^ 0xFF]) if byte else b"\x01")
    return segment


def test_damage_before_tail_raises_in_default_mode(tmp_path):
    # 300 records of ~150 bytes fill more than one 32 KiB block, so valid
    # block starts follow the damage and prove it is not a torn tail.
    payloads, positions = _write_log(tmp_path, count=300)
    segment = _damage_middle(tmp_path, positions, 10)
    with pytest.raises(storekit.CorruptionError) as info:
        WAL(str(tmp_path))
    assert info.value.path == segment
    assert info.value.offset == positions[10].offset
    assert "point_in_time" in str(info.value)


def test_point_in_time_keeps_records_before_damage(tmp_path):
    payloads, positions = _write_log(tmp_path, count=300)
    _damage_middle(tmp_path, positions, 10)
    with WAL(str(tmp_path), recovery="point_in_time") as wal:
        got = [payload for _, payload in wal.replay()]
        assert wal.stats()["recovery"]["dropped_bytes"] > 0
        wal.append(b"new")
    assert got == payloads[:10]
    with WAL(str(tmp_path), recovery="strict") as wal:
        assert [payload for _, payload in wal.replay()] == payloads[:10] + [b"new"]


def test_damage_in_older_segment_is_not_a_tail(tmp_path):
    with WAL(str(tmp_path), segment_bytes=4096) as wal:
        positions = [wal.append(p) for p in _payloads(100)]
    first = os.path.join(tmp_path, _segment_files(tmp_path)[0])
    with open(first, "r+b") as handle:
        handle.seek(SEGMENT_HEADER_SIZE + 9)
        handle.write(b"\xaa\xbb")
    assert positions[-1].segment > 1
    with pytest.raises(storekit.CorruptionError) as info:
        WAL(str(tmp_path))
    assert info.value.path == first


@pytest.mark.parametrize("filler", ["zeros", "random"])
def test_payload_overwritten_with_header_intact_is_never_returned(tmp_path, filler):
    # Two records; the second one's payload is overwritten but its header
    # (length and checksum) is left alone.
    with WAL(str(tmp_path), sync="always") as wal:
        wal.append(b"alpha")
        second = wal.append(b"bravo")
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.seek(second.offset + 7)
        handle.write(bytes(5) if filler == "zeros" else os.urandom(5))
    with WAL(str(tmp_path)) as wal:
        got = [payload for _, payload in wal.replay()]
    assert got == [b"alpha"]


def test_incomplete_fragmented_batch_is_dropped_whole(tmp_path):
    big = encode_batch([(KIND_PUT, b"a", b"1" * 40_000), (KIND_PUT, b"b", b"1")], 1)
    with WAL(str(tmp_path), sync="always") as wal:
        wal.append(b"before")
        position = wal.append(big)
    segment = _last_segment(tmp_path)
    size = os.path.getsize(segment)
    with open(segment, "r+b") as handle:
        handle.truncate(size - 10)  # the LAST fragment loses its end
    with WAL(str(tmp_path), sync="always") as wal:
        assert [p for _, p in wal.replay()] == [b"before"]
        assert os.path.getsize(segment) == position.offset
        wal.append(b"after")
    with WAL(str(tmp_path)) as wal:
        assert [p for _, p in wal.replay()] == [b"before", b"after"]


def test_empty_newest_segment_is_recovered(tmp_path):
    payloads, _ = _write_log(tmp_path)
    # A segment file created right before a crash, with no header yet.
    empty = os.path.join(tmp_path, segment_name(2))
    open(empty, "wb").close()
    with WAL(str(tmp_path)) as wal:
        assert [p for _, p in wal.replay()] == payloads
        wal.append(b"z")
    with WAL(str(tmp_path)) as wal:
        assert [p for _, p in wal.replay()] == payloads + [b"z"]


def test_read_only_recovery_changes_no_file(tmp_path):
    payloads, positions = _write_log(tmp_path)
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.truncate(positions[-1].offset + 4)
    size = os.path.getsize(segment)
    with WAL(str(tmp_path), read_only=True) as wal:
        assert [p for _, p in wal.replay()] == payloads[:-1]
        with pytest.raises(storekit.ClosedError):
            wal.append(b"x")
    assert os.path.getsize(segment) == size


def test_unsupported_format_version_raises(tmp_path):
    _write_log(tmp_path)
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.seek(6)
        handle.write(b"\x09\x00")
    with pytest.raises(storekit.CorruptionError, match="version 9"):
        WAL(str(tmp_path))


# -- durability -------------------------------------------------------------------


def test_group_commit_shares_fsyncs(tmp_path):
    wal = WAL(str(tmp_path), sync="always")
    barrier = threading.Barrier(8)
    errors = []

    def writer(number):
        try:
            barrier.wait()
            for i in range(200):
                wal.append(b"%d-%d" % (number, i))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = wal.stats()
    wal.close()
    assert errors == []
    assert stats["appends"] == 1600
    assert stats["fsyncs"] < stats["appends"]
    assert stats["bytes_unsynced"] == 0


def test_sync_always_leaves_nothing_unsynced(tmp_path):
    with WAL(str(tmp_path), sync="always") as wal:
        wal.append(b"x")
        assert wal.stats()["bytes_unsynced"] == 0
        assert wal.stats()["fsyncs"] >= 1


def test_sync_batch_fsyncs_in_background(tmp_path):
    import time

    with WAL(str(tmp_path), sync="batch", sync_interval=0.05) as wal:
        wal.append(b"x")
        deadline = time.monotonic() + 5
        while wal.stats()["bytes_unsynced"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.stats()["bytes_unsynced"] == 0


def test_sync_batch_fsyncs_when_bytes_accumulate(tmp_path):
    with WAL(str(tmp_path), sync="batch", sync_interval=3600, sync_bytes=10_000) as wal:
        for _ in range(100):
            wal.append(bytes(500))
        stats = wal.stats()
    assert stats["fsyncs"] >= 4
    assert stats["bytes_unsynced"] < 10_000 + 600


# -- tailing reader ----------------------------------------------------------------


def test_tailing_reader_follows_writer_across_segments(tmp_path):
    payloads = _payloads(400, seed=5)
    wal = WAL(str(tmp_path), sync="none", segment_bytes=8192)
    reader = WALReader(str(tmp_path))
    seen = []
    for index, payload in enumerate(payloads):
        wal.append(payload)
        if index % 37 == 0:
            seen.extend(p for _, p in reader.poll())
    seen.extend(p for _, p in reader.poll())
    wal.close()
    reader.close()
    assert seen == payloads
    assert reader.poll() == []


def test_tailing_reader_skips_partial_record(tmp_path):
    with WAL(str(tmp_path), sync="none") as wal:
        wal.append(b"one")
        wal.append(b"two" * 100)
    segment = _last_segment(tmp_path)
    full = open(segment, "rb").read()
    reader_dir = tmp_path / "copy"
    reader_dir.mkdir()
    copy = reader_dir / os.path.basename(segment)
    # A writer in the middle of its append: only part of the record is there.
    copy.write_bytes(full[:-50])
    reader = WALReader(str(reader_dir))
    assert [p for _, p in reader.poll()] == [b"one"]
    with open(copy, "ab") as handle:
        handle.write(full[-50:])
    assert [p for _, p in reader.poll()] == [b"two" * 100]
    reader.close()


def test_tailing_reader_starts_at_position(tmp_path):
    with WAL(str(tmp_path)) as wal:
        positions = [wal.append(b"%d" % i) for i in range(10)]
    reader = WALReader(str(tmp_path), start=positions[6])
    assert [p for _, p in reader.poll()] == [b"6", b"7", b"8", b"9"]
    assert reader.position == Position(
        positions[-1].segment, os.path.getsize(_last_segment(tmp_path))
    )
    reader.close()


def test_tailing_reader_reports_removed_segment(tmp_path):
    with WAL(str(tmp_path), segment_bytes=4096) as wal:
        for payload in _payloads(100):
            wal.append(payload)
        reader = WALReader(str(tmp_path))
        wal.remove_segments_before(wal.current_segment)
        with pytest.raises(storekit.OffsetError) as info:
            reader.poll()
    assert info.value.first_offset.segment > 1


def test_missing_expected_segment_raises(tmp_path):
    with WAL(str(tmp_path)) as wal:
        wal.append(b"a")
        second = wal.rotate()
        wal.append(b"b")
    os.remove(os.path.join(tmp_path, segment_name(second)))
    for mode in ("tolerate_tail", "strict"):
        with pytest.raises(storekit.CorruptionError, match=segment_name(second)):
            WAL(str(tmp_path), recovery=mode, expected_segment=second)


def test_missing_expected_segment_point_in_time(tmp_path, caplog):
    with WAL(str(tmp_path)) as wal:
        wal.append(b"a")
        second = wal.rotate()
        wal.append(b"b")
    os.remove(os.path.join(tmp_path, segment_name(second)))
    with caplog.at_level(logging.WARNING, logger="storekit"):
        with WAL(
            str(tmp_path), recovery="point_in_time", expected_segment=second
        ) as wal:
            assert [payload for _, payload in wal.replay()] == [b"a"]
            reasons = [event["reason"] for event in wal.recovery["events"]]
    assert reasons == ["missing segment"]
    assert segment_name(second) in caplog.text


@pytest.mark.parametrize("mode", CRASH_MODES)
def test_segment_header_survives_crash(mode):
    # An owner may name a segment in its checkpoint as soon as the segment
    # starts, so the segment must survive a crash before any record syncs.
    fs = CrashFS(seed=3)
    wal = WAL("/wal", sync="none", fs=fs)
    wal.append(b"unsynced")
    number = wal.rotate()
    fs.crash(mode=mode)
    with WAL("/wal", fs=fs, expected_segment=number) as recovered:
        assert number in recovered.segments()


def test_torn_multi_block_record_is_cut(tmp_path):
    # A crash in the middle of a record that spans four blocks leaves its
    # first fragments intact. They are not valid records after the damage.
    with WAL(str(tmp_path), sync="always") as wal:
        wal.append(b"small")
        wal.append(b"x" * 100_000)
    segment = _last_segment(tmp_path)
    os.truncate(segment, os.path.getsize(segment) - 100)
    with WAL(str(tmp_path)) as wal:
        assert [payload for _, payload in wal.replay()] == [b"small"]
        assert wal.recovery["events"][0]["reason"] == "record cut off at end of file"


def test_damaged_start_of_multi_block_record_raises(tmp_path):
    # The same record complete on disk but with a flipped byte in its first
    # fragment: its valid later fragments show this is not a torn write.
    with WAL(str(tmp_path), sync="always") as wal:
        wal.append(b"small")
        position = wal.append(b"x" * 100_000)
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.seek(position.offset + 20)
        byte = handle.read(1)
        handle.seek(position.offset + 20)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(storekit.CorruptionError, match="valid records follow"):
        WAL(str(tmp_path))


def test_second_writer_raises_locked_error(tmp_path):
    with WAL(str(tmp_path)) as wal:
        wal.append(b"a")
        with pytest.raises(storekit.LockedError, match="LOCK"):
            WAL(str(tmp_path))
        # A reader takes no lock.
        with WAL(str(tmp_path), read_only=True) as reader:
            assert [payload for _, payload in reader.replay()] == [b"a"]
    with WAL(str(tmp_path)) as wal:
        assert [payload for _, payload in wal.replay()] == [b"a"]


def test_wal_of_open_store_is_locked(tmp_path):
    with storekit.open(str(tmp_path / "db")):
        with pytest.raises(storekit.LockedError):
            WAL(str(tmp_path / "db" / "wal"))


def test_flipped_length_before_valid_records_raises(tmp_path):
    # A length field raised past the end of the file looks like a cut-off
    # record, but the records after it prove the damage is not a torn tail.
    with WAL(str(tmp_path), sync="always") as wal:
        positions = [wal.append(b"record %d" % i * 10) for i in range(20)]
    segment = _last_segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.seek(positions[5].offset + 5)  # high byte of the u16 length
        byte = handle.read(1)
        handle.seek(positions[5].offset + 5)
        handle.write(bytes([byte[0] ^ 0x20]))
    with pytest.raises(storekit.CorruptionError, match="valid records follow"):
        WAL(str(tmp_path))


def test_truncation_inside_multi_block_records(tmp_path):
    # Every cut of the file keeps exactly the records that end before it.
    source = tmp_path / "source"
    payloads = [b"a" * 100, b"b" * 70_000, b"c" * 5, b"d" * 40_000]
    with WAL(str(source), sync="always") as wal:
        ends = []
        for payload in payloads:
            wal.append(payload)
            ends.append(wal.stats()["current_segment_bytes"])
    data = (source / _segment_files(source)[0]).read_bytes()
    for cut in range(SEGMENT_HEADER_SIZE, len(data), 997):
        target = tmp_path / f"cut{cut}"
        target.mkdir()
        (target / _segment_files(source)[0]).write_bytes(data[:cut])
        with WAL(str(target), read_only=True) as wal:
            replayed = [payload for _, payload in wal.replay()]
        expected = [p for p, end in zip(payloads, ends, strict=True) if end <= cut]
        assert replayed == expected, cut
