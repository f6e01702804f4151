"""Tests of storekit.testing.CrashFS: file system semantics, crash modes and
injected failures."""

from __future__ import annotations

import doctest
import errno
import io
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storekit.testing
from storekit.errors import ClosedError, DurabilityError, LockedError
from storekit.fs import FileSystem, default_fs
from storekit.testing import CRASH_MODES, CrashFS, CrashReport

DOCS = Path(__file__).resolve().parents[1] / "docs"


def make_file(fs: CrashFS, path: str, synced: bytes, unsynced: bytes) -> None:
    with fs.open(path, "a") as handle:
        handle.append(synced)
        handle.sync()
        handle.append(unsynced)


@pytest.fixture
def fs() -> CrashFS:
    crash_fs = CrashFS(seed=1234)
    crash_fs.mkdir("/db")
    return crash_fs


# -- plain file system behaviour -------------------------------------------------


def test_crashfs_is_a_file_system(fs: CrashFS) -> None:
    assert isinstance(fs, FileSystem)
    assert default_fs(fs) is fs


def test_append_read_size_truncate(fs: CrashFS) -> None:
    with fs.open("/db/f", "a") as handle:
        handle.append(b"hello ")
        handle.append(bytearray(b"world"))
        handle.append(memoryview(b"!"))
        assert handle.size() == 12
        assert handle.read(0, 100) == b"hello world!"
        assert handle.read(6, 5) == b"world"
        assert handle.read(12, 5) == b""
        assert handle.read(50, 5) == b""
        handle.truncate(5)
        assert handle.size() == 5
        assert handle.read(0, 100) == b"hello"
        handle.truncate(8)
        assert handle.read(0, 100) == b"hello\x00\x00\x00"
    assert fs.read_file("/db/f") == b"hello\x00\x00\x00"
    assert fs.file_size("/db/f") == 8


def test_bad_arguments_raise(fs: CrashFS) -> None:
    with fs.open("/db/f", "a") as handle:
        with pytest.raises(TypeError, match="str"):
            handle.append("text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="-1"):
            handle.read(-1, 4)
        with pytest.raises(TypeError, match="float"):
            handle.read(0, 1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="-3"):
            handle.truncate(-3)
    with pytest.raises(ValueError, match="'x'"):
        fs.open("/db/f", "x")
    with pytest.raises(TypeError, match="bytes"):
        fs.exists(b"/db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        CrashFS(seed="1")  # type: ignore[arg-type]


def test_paths_are_normalised(fs: CrashFS) -> None:
    with fs.open("db/./sub/../f", "a") as handle:
        handle.append(b"x")
    assert fs.exists("/db/f")
    assert fs.exists("db//f")
    assert fs.read_file("/db/f") == b"x"
    assert fs.listdir("db") == ["f"]


def test_missing_paths_raise(fs: CrashFS) -> None:
    with pytest.raises(FileNotFoundError):
        fs.open("/db/missing", "r")
    with pytest.raises(FileNotFoundError):
        fs.open("/nodir/f", "a")
    with pytest.raises(FileNotFoundError):
        fs.listdir("/nodir")
    with pytest.raises(FileNotFoundError):
        fs.sync_dir("/nodir")
    with pytest.raises(FileNotFoundError):
        fs.rename("/db/missing", "/db/other")
    with pytest.raises(FileNotFoundError):
        fs.durable_bytes("/db/missing")
    assert not fs.exists("/db/missing")
    assert not fs.exists("/nodir/f")
    fs.remove("/db/missing")
    fs.remove("/nodir/missing")


def test_files_and_directories_are_not_confused(fs: CrashFS) -> None:
    with fs.open("/db/f", "a"):
        pass
    with pytest.raises(IsADirectoryError):
        fs.open("/db", "a")
    with pytest.raises(NotADirectoryError):
        fs.listdir("/db/f")
    with pytest.raises(NotADirectoryError):
        fs.open("/db/f/inner", "a")
    with pytest.raises(FileExistsError):
        fs.mkdir("/db/f")
    with pytest.raises(NotADirectoryError):
        fs.mkdir("/db/f/inner")
    with pytest.raises(IsADirectoryError):
        fs.remove("/db")


def test_mkdir_creates_parents(fs: CrashFS) -> None:
    fs.mkdir("/a/b/c")
    fs.mkdir("/a/b/c")
    assert fs.listdir("/") == ["a", "db"]
    assert fs.listdir("/a") == ["b"]
    assert fs.listdir("/a/b/c") == []


def test_open_w_empties_existing_file(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"old", b"")
    with fs.open("/db/f", "w") as handle:
        assert handle.size() == 0
        handle.append(b"new")
    assert fs.read_file("/db/f") == b"new"


def test_read_only_handle_rejects_writes(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"data", b"")
    with fs.open("/db/f", "r") as handle:
        with pytest.raises(io.UnsupportedOperation):
            handle.append(b"x")
        with pytest.raises(io.UnsupportedOperation):
            handle.truncate(0)
        assert handle.read(0, 10) == b"data"


def test_rename_replaces_target(fs: CrashFS) -> None:
    make_file(fs, "/db/a", b"new", b"")
    make_file(fs, "/db/b", b"old", b"")
    fs.rename("/db/a", "/db/b")
    assert fs.listdir("/db") == ["b"]
    assert fs.read_file("/db/b") == b"new"


def test_rename_moves_directories(fs: CrashFS) -> None:
    fs.mkdir("/db/sub")
    make_file(fs, "/db/sub/f", b"x", b"")
    fs.rename("/db/sub", "/moved")
    assert fs.read_file("/moved/f") == b"x"
    assert fs.listdir("/db") == []
    with pytest.raises(OSError) as info:
        fs.rename("/moved", "/moved/inner")
    assert info.value.errno == errno.EINVAL


def test_handle_survives_rename_and_remove(fs: CrashFS) -> None:
    handle = fs.open("/db/a", "a")
    handle.append(b"one")
    fs.rename("/db/a", "/db/b")
    handle.append(b"two")
    assert fs.read_file("/db/b") == b"onetwo"
    fs.remove("/db/b")
    handle.append(b"three")
    assert handle.read(0, 100) == b"onetwothree"
    assert not fs.exists("/db/b")


def test_write_file_atomic_survives_crash(fs: CrashFS) -> None:
    fs.write_file_atomic("/db/CURRENT", b"manifest-1")
    fs.write_file_atomic("/db/CURRENT", b"manifest-2")
    fs.crash(mode="lose_dir_entries")
    assert fs.read_file("/db/CURRENT") == b"manifest-2"
    assert fs.listdir("/db") == ["CURRENT"]


def test_concurrent_appends_lose_nothing(fs: CrashFS) -> None:
    def writer(index: int) -> None:
        with fs.open(f"/db/f{index}", "a") as handle:
            for number in range(200):
                handle.append(b"%d," % number)
                if number % 50 == 0:
                    handle.sync()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = b"".join(b"%d," % number for number in range(200))
    for index in range(6):
        assert fs.read_file(f"/db/f{index}") == expected


# -- crash modes -------------------------------------------------------------------


def test_drop_keeps_exactly_synced_bytes(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"synced", b"lost")
    report = fs.crash(mode="drop")
    assert fs.read_file("/db/f") == b"synced"
    outcome = report.files["/db/f"]
    assert outcome.mode == "drop"
    assert outcome.visible_size == 10
    assert outcome.durable_size == 6
    assert outcome.kept_size == 6
    assert outcome.lost_bytes == 4
    assert outcome.torn is None


def test_synced_file_is_not_reported(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"synced", b"")
    report = fs.crash(mode="torn")
    assert report.files == {}
    assert fs.read_file("/db/f") == b"synced"


def test_prefix_keeps_prefix_of_visible_bytes() -> None:
    synced, unsynced = b"S" * 10, bytes(range(200))
    kept_lengths = set()
    for seed in range(40):
        fs = CrashFS(seed=seed)
        make_file(fs, "/f", synced, unsynced)
        report = fs.crash(mode="prefix")
        content = fs.read_file("/f")
        visible = synced + unsynced
        assert visible.startswith(content)
        assert len(content) >= len(synced)
        assert report.files["/f"].kept_size == len(content)
        kept_lengths.add(len(content))
    # 40 seeds over 201 possible kept lengths must give several distinct ones.
    assert len(kept_lengths) > 5


def test_torn_never_touches_synced_bytes() -> None:
    synced, unsynced = b"S" * 100, b"U" * 2000
    torn_seen = 0
    for seed in range(60):
        fs = CrashFS(seed=seed)
        make_file(fs, "/f", synced, unsynced)
        outcome = fs.crash(mode="torn").files["/f"]
        content = fs.read_file("/f")
        assert len(content) <= len(synced) + len(unsynced)
        assert content[:100] == synced
        assert outcome.kept_size == len(content)
        if outcome.torn is None:
            assert content == (synced + unsynced)[: len(content)]
            continue
        torn_seen += 1
        offset, length = outcome.torn
        assert offset >= len(synced)
        assert 1 <= length <= 512
        assert offset + length == len(content)
        assert content[:offset] == (synced + unsynced)[:offset]
    assert torn_seen > 30


def test_torn_writes_zeros_or_random_bytes() -> None:
    kinds = set()
    for seed in range(40):
        fs = CrashFS(seed=seed)
        make_file(fs, "/f", b"", b"U" * 600)
        outcome = fs.crash(mode="torn").files["/f"]
        if outcome.torn is None:
            continue
        offset, length = outcome.torn
        garbage = fs.read_file("/f")[offset : offset + length]
        kinds.add("zeros" if garbage == bytes(length) else "random")
    assert kinds == {"zeros", "random"}


@pytest.mark.parametrize("mode", CRASH_MODES)
def test_unsynced_truncation_is_not_durable(fs: CrashFS, mode: str) -> None:
    make_file(fs, "/db/f", b"0123456789", b"")
    with fs.open("/db/f", "a") as handle:
        handle.truncate(4)
    assert fs.durable_bytes("/db/f") == b"0123456789"
    fs.crash(mode="drop")
    assert fs.read_file("/db/f") == b"0123456789"

    with fs.open("/db/f", "a") as handle:
        handle.truncate(4)
        handle.sync()
    fs.crash(mode=mode)
    assert fs.read_file("/db/f") == b"0123"


def test_truncation_then_append_crash_outcomes() -> None:
    outcomes = set()
    for seed in range(40):
        fs = CrashFS(seed=seed)
        make_file(fs, "/f", b"0123456789", b"")
        with fs.open("/f", "a") as handle:
            handle.truncate(4)
            handle.append(b"abc")
        fs.crash(mode="prefix")
        outcomes.add(fs.read_file("/f"))
    assert outcomes == {b"0123456789", b"0123", b"0123a", b"0123ab", b"0123abc"}


def test_open_w_truncation_is_not_durable(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"old", b"")
    with fs.open("/db/f", "w") as handle:
        handle.append(b"new!")
    fs.crash(mode="drop")
    assert fs.read_file("/db/f") == b"old"


def test_unsynced_removal_returns_under_lose_dir_entries(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"data", b"")
    fs.remove("/db/f")
    assert not fs.exists("/db/f")
    report = fs.crash(mode="lose_dir_entries")
    assert fs.read_file("/db/f") == b"data"
    assert report.reverted_entries == ["/db/f"]


def test_unsynced_removal_stays_under_drop(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"data", b"")
    fs.remove("/db/f")
    report = fs.crash(mode="drop")
    assert not fs.exists("/db/f")
    assert report.reverted_entries == []


def test_synced_removal_is_durable(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"data", b"")
    fs.remove("/db/f")
    fs.sync_dir("/db")
    fs.crash(mode="lose_dir_entries")
    assert not fs.exists("/db/f")


def test_created_file_entry_is_durable(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"", b"unsynced")
    fs.crash(mode="lose_dir_entries")
    assert fs.listdir("/db") == ["f"]
    assert fs.read_file("/db/f") == b""


def test_failed_create_dir_fsync_loses_entry(fs: CrashFS) -> None:
    fs.fail("fsync", path="/db")
    with pytest.raises(OSError) as info:
        fs.open("/db/new", "a")
    assert info.value.errno == errno.EIO
    assert "/db" in str(info.value)
    assert fs.exists("/db/new")
    report = fs.crash(mode="lose_dir_entries")
    assert not fs.exists("/db/new")
    assert report.reverted_entries == ["/db/new"]


def test_rename_is_durable(fs: CrashFS) -> None:
    make_file(fs, "/db/tmp", b"data", b"")
    fs.rename("/db/tmp", "/db/final")
    fs.crash(mode="lose_dir_entries")
    assert fs.listdir("/db") == ["final"]
    assert fs.read_file("/db/final") == b"data"


def test_rename_across_directories_is_durable(fs: CrashFS) -> None:
    fs.mkdir("/other")
    make_file(fs, "/db/f", b"data", b"")
    fs.rename("/db/f", "/other/f")
    fs.crash(mode="lose_dir_entries")
    assert fs.listdir("/db") == []
    assert fs.read_file("/other/f") == b"data"


def test_rename_with_failed_dir_fsync_is_undone(fs: CrashFS) -> None:
    make_file(fs, "/db/tmp", b"new", b"")
    make_file(fs, "/db/final", b"old", b"")
    fs.fail("fsync", path="/db")
    with pytest.raises(OSError) as info:
        fs.rename("/db/tmp", "/db/final")
    assert not isinstance(info.value, DurabilityError)
    assert fs.listdir("/db") == ["final"]
    report = fs.crash(mode="lose_dir_entries")
    assert fs.read_file("/db/final") == b"old"
    assert fs.read_file("/db/tmp") == b"new"
    assert report.reverted_entries == ["/db/final", "/db/tmp"]


def test_mkdir_is_durable(fs: CrashFS) -> None:
    fs.mkdir("/db/a/b")
    fs.crash(mode="lose_dir_entries")
    assert fs.listdir("/db/a") == ["b"]


def test_mkdir_with_failed_dir_fsync_is_undone(fs: CrashFS) -> None:
    fs.fail("fsync", path="/db")
    with pytest.raises(OSError):
        fs.mkdir("/db/sub")
    assert fs.exists("/db/sub")
    fs.crash(mode="lose_dir_entries")
    assert not fs.exists("/db/sub")


def test_random_mode_covers_every_outcome() -> None:
    data_outcomes = set()
    removal_outcomes = set()
    for seed in range(60):
        fs = CrashFS(seed=seed)
        make_file(fs, "/f", b"S", b"UU")
        make_file(fs, "/gone", b"G", b"")
        fs.remove("/gone")
        report = fs.crash()
        assert report.mode is None
        data_outcomes.add(report.files["/f"].mode)
        removal_outcomes.add(fs.exists("/gone"))
        assert fs.read_file("/f")[:1] == b"S"
    assert data_outcomes == set(CRASH_MODES)
    assert removal_outcomes == {True, False}


def test_crash_rejects_unknown_mode(fs: CrashFS) -> None:
    with pytest.raises(ValueError, match="'lose'"):
        fs.crash(mode="lose")


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.binary(min_size=0, max_size=700)),
            st.tuples(st.just("sync"), st.none()),
            st.tuples(st.just("truncate"), st.integers(0, 1500)),
        ),
        max_size=12,
    ),
    mode=st.sampled_from(CRASH_MODES),
    seed=st.integers(0, 2**32),
)
def test_crash_outcome_matches_model(steps: list, mode: str, seed: int) -> None:
    # The model tracks the content at the last sync, the content now, and the
    # length below which the two have been equal since that sync.
    fs = CrashFS(seed=seed)
    synced = b""
    visible = b""
    low = 0
    with fs.open("/f", "a") as handle:
        for action, argument in steps:
            if action == "append":
                handle.append(argument)
                visible += argument
            elif action == "sync":
                handle.sync()
                synced = visible
                low = len(synced)
            else:
                handle.truncate(argument)
                low = min(low, argument)
                visible = visible[:argument].ljust(argument, b"\x00")
    assert fs.durable_bytes("/f") == synced
    assert fs.read_file("/f") == visible

    fs.crash(mode=mode)
    content = fs.read_file("/f")
    if mode in ("drop", "lose_dir_entries"):
        assert content == synced
    elif low < len(synced) and content == synced:
        pass  # the truncation did not reach the disk
    else:
        assert low <= len(content) <= len(visible)
        assert content[:low] == visible[:low]
        if mode == "prefix":
            assert visible.startswith(content)


# -- handles and locks after a crash ------------------------------------------------


def test_old_handles_raise_closed_error(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    handle.append(b"x")
    assert fs.epoch == 0
    fs.crash()
    assert fs.epoch == 1
    with pytest.raises(ClosedError):
        handle.append(b"y")
    with pytest.raises(ClosedError):
        handle.read(0, 1)
    with pytest.raises(ClosedError):
        handle.size()
    with pytest.raises(ClosedError):
        handle.truncate(0)
    with pytest.raises(ClosedError):
        handle.sync()
    handle.close()
    handle.close()


def test_closed_handle_raises_closed_error(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    handle.close()
    with pytest.raises(ClosedError):
        handle.append(b"y")
    with pytest.raises(ClosedError):
        handle.read(0, 1)
    with pytest.raises(ClosedError):
        handle.sync()


def test_lock_conflicts_until_release(fs: CrashFS) -> None:
    first = fs.lock("/db/LOCK")
    with pytest.raises(LockedError, match="/db/LOCK"):
        fs.lock("/db/LOCK")
    with pytest.raises(LockedError):
        fs.lock("db/./LOCK")
    assert fs.exists("/db/LOCK")
    first.release()
    first.release()
    second = fs.lock("/db/LOCK")
    second.release()


def test_crash_releases_locks(fs: CrashFS) -> None:
    stale = fs.lock("/db/LOCK")
    fs.crash()
    current = fs.lock("/db/LOCK")
    stale.release()
    with pytest.raises(LockedError):
        fs.lock("/db/LOCK")
    current.release()
    fs.lock("/db/LOCK").release()


def test_lock_needs_existing_directory(fs: CrashFS) -> None:
    with pytest.raises(FileNotFoundError):
        fs.lock("/nodir/LOCK")


# -- injected failures ----------------------------------------------------------------


def test_write_fails_on_kth_call(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    fs.fail("write", at=3)
    handle.append(b"one")
    handle.append(b"two")
    payload = b"x" * 1000
    with pytest.raises(DurabilityError) as info:
        handle.append(payload)
    cause = info.value.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == errno.EIO
    assert "write" in str(cause)
    assert "/db/f" in str(cause)
    # The failed append left a torn prefix of its data.
    content = fs.read_file("/db/f")
    assert content.startswith(b"onetwo")
    assert len(content) < 6 + len(payload)
    assert content[6:] == payload[: len(content) - 6]


def test_failed_write_keeps_random_prefix() -> None:
    payload = bytes(range(256)) * 4
    kept_lengths = set()
    for seed in range(20):
        fs = CrashFS(seed=seed)
        handle = fs.open("/f", "a")
        fs.fail("write")
        with pytest.raises(DurabilityError):
            handle.append(payload)
        content = fs.read_file("/f")
        assert payload.startswith(content)
        assert len(content) < len(payload)
        kept_lengths.add(len(content))
    assert len(kept_lengths) > 10


def test_write_failure_is_sticky(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    fs.fail("write")
    with pytest.raises(DurabilityError):
        handle.append(b"data")
    with pytest.raises(DurabilityError):
        handle.append(b"more")
    with pytest.raises(DurabilityError):
        handle.sync()
    with pytest.raises(DurabilityError):
        handle.truncate(0)


def test_fsync_fails_on_kth_call(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    fs.fail("fsync", at=2, errno=errno.ENOSPC)
    handle.append(b"first")
    handle.sync()
    handle.append(b"second")
    with pytest.raises(DurabilityError) as info:
        handle.sync()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert fs.durable_bytes("/db/f") == b"first"
    assert fs.read_file("/db/f") == b"firstsecond"

    # Sticky: the injected failure is used up, yet the handle stays failed.
    with pytest.raises(DurabilityError):
        handle.append(b"third")
    with pytest.raises(DurabilityError):
        handle.sync()
    assert fs.durable_bytes("/db/f") == b"first"

    # A new handle on the same file works, as a new descriptor does.
    with fs.open("/db/f", "a") as fresh:
        fresh.sync()
    assert fs.durable_bytes("/db/f") == b"firstsecond"


def test_sync_dir_failure_raises_plain_os_error(fs: CrashFS) -> None:
    fs.fail("fsync")
    with pytest.raises(OSError) as info:
        fs.sync_dir("/db")
    assert not isinstance(info.value, DurabilityError)
    assert info.value.errno == errno.EIO
    fs.sync_dir("/db")


def test_open_fails_on_kth_call(fs: CrashFS) -> None:
    fs.fail("open", at=2, errno=errno.EMFILE)
    fs.open("/db/a", "a").close()
    with pytest.raises(OSError) as info:
        fs.open("/db/b", "a")
    assert info.value.errno == errno.EMFILE
    assert not fs.exists("/db/b")
    fs.open("/db/b", "a").close()


def test_rename_failure_changes_nothing(fs: CrashFS) -> None:
    make_file(fs, "/db/a", b"data", b"")
    fs.fail("rename")
    with pytest.raises(OSError) as info:
        fs.rename("/db/a", "/db/b")
    assert info.value.errno == errno.EIO
    assert fs.listdir("/db") == ["a"]
    fs.rename("/db/a", "/db/b")
    assert fs.listdir("/db") == ["b"]


def test_fail_path_filter(fs: CrashFS) -> None:
    other = fs.open("/db/other", "a")
    target = fs.open("/db/target", "a")
    fs.fail("fsync", at=2, path="db/target")
    for _ in range(5):
        other.sync()
    target.sync()
    with pytest.raises(DurabilityError):
        target.sync()
    other.sync()


def test_several_failures_pending(fs: CrashFS) -> None:
    first = fs.open("/db/f", "a")
    second = fs.open("/db/g", "a")
    fs.fail("fsync", at=1)
    fs.fail("fsync", at=3)
    fs.fail("write", at=2)
    with pytest.raises(DurabilityError):
        first.sync()
    second.append(b"1")
    with pytest.raises(DurabilityError):
        second.append(b"2")
    third = fs.open("/db/h", "a")  # its directory fsync is the second fsync
    with pytest.raises(DurabilityError):
        third.sync()
    with fs.open("/db/g", "a") as fresh:
        fresh.sync()


def test_clear_failures(fs: CrashFS) -> None:
    fs.fail("write")
    fs.fail("open", at=2)
    fs.clear_failures()
    with fs.open("/db/f", "a") as handle:
        handle.append(b"x")
    fs.open("/db/f", "a").close()


def test_calls_on_failed_handle_do_not_count(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    fs.fail("write")
    with pytest.raises(DurabilityError):
        handle.append(b"x")
    fs.fail("write", at=2)
    for _ in range(3):
        with pytest.raises(DurabilityError):
            handle.append(b"x")
    with fs.open("/db/g", "a") as fresh:
        fresh.append(b"1")
        with pytest.raises(DurabilityError):
            fresh.append(b"2")


def test_failures_survive_crash(fs: CrashFS) -> None:
    fs.fail("open")
    fs.crash()
    with pytest.raises(OSError):
        fs.open("/db/f", "a")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"op": "read"}, ValueError),
        ({"op": "write", "at": 0}, ValueError),
        ({"op": "write", "at": "1"}, TypeError),
        ({"op": "write", "errno": "EIO"}, TypeError),
    ],
)
def test_fail_rejects_bad_arguments(fs: CrashFS, arguments: dict, error: type) -> None:
    with pytest.raises(error):
        fs.fail(**arguments)


# -- determinism and clones --------------------------------------------------------------


def run_scenario(seed: int) -> tuple[str, dict[str, bytes]]:
    fs = CrashFS(seed=seed)
    fs.mkdir("/d")
    for index in range(5):
        make_file(fs, f"/d/f{index}", b"s" * index, bytes(range(index * 40)))
    fs.remove("/d/f0")
    fs.fail("write", at=2)
    with fs.open("/d/f1", "a") as handle:
        handle.append(b"a" * 100)
        with pytest.raises(DurabilityError):
            handle.append(b"b" * 100)
    report = fs.crash()
    contents = {name: fs.read_file(f"/d/{name}") for name in fs.listdir("/d")}
    return str(report), contents


def test_same_seed_same_outcome() -> None:
    assert run_scenario(99) == run_scenario(99)


def test_different_seeds_differ() -> None:
    outcomes = {repr(run_scenario(seed)) for seed in range(5)}
    assert len(outcomes) > 1


def test_clone_copies_durable_state(fs: CrashFS) -> None:
    handle = fs.open("/db/f", "a")
    handle.append(b"synced")
    handle.sync()
    handle.append(b"+visible")
    lock = fs.lock("/db/LOCK")

    clone = fs.clone()
    assert clone.read_file("/db/f") == b"synced"
    assert clone.epoch == 0
    clone.lock("/db/LOCK").release()

    with clone.open("/db/f", "a") as clone_handle:
        clone_handle.append(b"clone only")
    clone.crash()
    assert fs.epoch == 0
    handle.append(b"+more")
    assert fs.read_file("/db/f") == b"synced+visible+more"
    with pytest.raises(LockedError):
        fs.lock("/db/LOCK")
    lock.release()


def test_clone_with_mode_gives_varied_outcomes(fs: CrashFS) -> None:
    make_file(fs, "/db/f", b"base", b"0123456789")
    outcomes = {fs.clone(mode="prefix").read_file("/db/f") for _ in range(30)}
    assert len(outcomes) > 3
    assert all((b"base0123456789").startswith(outcome) for outcome in outcomes)
    assert fs.read_file("/db/f") == b"base0123456789"


def test_report_lists_losses() -> None:
    fs = CrashFS(seed=3)
    make_file(fs, "/f", b"ab", b"cdef")
    report = fs.crash(mode="drop")
    assert isinstance(report, CrashReport)
    assert report.epoch == 1
    assert report.mode == "drop"
    assert "/f: drop, visible 6, durable 2, kept 2" in str(report)


# -- documentation examples ----------------------------------------------------------


def test_module_examples_run() -> None:
    result = doctest.testmod(storekit.testing)
    assert result.attempted >= 2
    assert result.failed == 0


def test_docs_examples_run() -> None:
    result = doctest.testfile(str(DOCS / "testing.md"), module_relative=False)
    assert result.attempted >= 5
    assert result.failed == 0
