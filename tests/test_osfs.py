"""Tests of storekit.fs.OSFileSystem on real files, and of the file-system
contract that OSFileSystem and CrashFS must share."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import storekit.fs
from storekit.errors import ClosedError, DurabilityError, LockedError
from storekit.fs import FileSystem, OSFileSystem, default_fs
from storekit.testing import CrashFS

PROJECT_ROOT = Path(__file__).resolve().parents[1]

needs_flock = pytest.mark.skipif(
    os.name == "nt", reason="needs POSIX flock and SIGKILL"
)

# The function that _OSFile.sync calls, chosen as storekit.fs chooses it.
SYNC_FUNCTION = "fdatasync" if hasattr(os, "fdatasync") else "fsync"


@pytest.fixture
def fs() -> OSFileSystem:
    return OSFileSystem()


def test_default_fs_returns_os_file_system() -> None:
    assert isinstance(default_fs(None), OSFileSystem)
    crash_fs = CrashFS(seed=1)
    assert default_fs(crash_fs) is crash_fs
    with pytest.raises(TypeError, match="str"):
        default_fs("/tmp")  # type: ignore[arg-type]


# -- files on disk --------------------------------------------------------------------


def test_append_read_size_on_disk(fs: OSFileSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    with fs.open(path, "a") as handle:
        handle.append(b"hello ")
        handle.append(bytearray(b"world"))
        assert handle.size() == 11
        assert handle.read(6, 100) == b"world"
        handle.sync()
    assert (tmp_path / "f").read_bytes() == b"hello world"
    assert fs.file_size(path) == 11
    assert fs.read_file(path) == b"hello world"


def test_append_continues_existing_file(fs: OSFileSystem, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    with fs.open(str(tmp_path / "f"), "a") as handle:
        assert handle.size() == 3
        handle.append(b"def")
    assert (tmp_path / "f").read_bytes() == b"abcdef"


def test_truncate_on_disk(fs: OSFileSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    with fs.open(path, "a") as handle:
        handle.append(b"0123456789")
        handle.truncate(4)
        assert handle.size() == 4
        handle.append(b"xy")
        handle.sync()
    assert (tmp_path / "f").read_bytes() == b"0123xy"


def test_open_w_empties_file(fs: OSFileSystem, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old content")
    with fs.open(str(tmp_path / "f"), "w") as handle:
        assert handle.size() == 0
        handle.append(b"new")
    assert (tmp_path / "f").read_bytes() == b"new"


def test_directory_operations_on_disk(fs: OSFileSystem, tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    fs.mkdir(str(nested))
    fs.mkdir(str(nested))
    assert nested.is_dir()
    (tmp_path / "a" / "z").write_bytes(b"")
    assert fs.listdir(str(tmp_path / "a")) == ["b", "z"]
    fs.rename(str(tmp_path / "a" / "z"), str(nested / "z"))
    assert (nested / "z").exists()
    fs.remove(str(nested / "z"))
    fs.remove(str(nested / "z"))
    assert not fs.exists(str(nested / "z"))
    fs.sync_dir(str(nested))


# -- locks -------------------------------------------------------------------------------


def test_lock_conflicts_in_process(fs: OSFileSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "LOCK")
    first = fs.lock(path)
    try:
        with pytest.raises(LockedError, match="LOCK"):
            fs.lock(path)
        with pytest.raises(LockedError):
            OSFileSystem().lock(path)
        with pytest.raises(LockedError):
            fs.lock(os.path.relpath(path))
    finally:
        first.release()
    first.release()
    second = fs.lock(path)
    second.release()


def test_lock_conflicts_across_threads(fs: OSFileSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "LOCK")
    holder = fs.lock(path)
    errors: list[BaseException] = []

    def try_lock() -> None:
        try:
            fs.lock(path).release()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=try_lock)
    thread.start()
    thread.join()
    holder.release()
    assert len(errors) == 1
    assert isinstance(errors[0], LockedError)


def start_child(script: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Start a child process that keeps tmp_path/LOCK locked until it is killed."""
    child = start_child(
        f"""
        import time
        from storekit.fs import OSFileSystem
        OSFileSystem().lock({str(tmp_path / "LOCK")!r})
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line == "locked\n", child.stderr.read() if child.stderr else ""
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@needs_flock
def test_lock_held_by_child_process(
    fs: OSFileSystem, tmp_path: Path, lock_holder: subprocess.Popen[str]
) -> None:
    path = str(tmp_path / "LOCK")
    with pytest.raises(LockedError, match="another process"):
        fs.lock(path)
    assert (tmp_path / "LOCK").read_text() == f"{lock_holder.pid}\n"

    lock_holder.kill()  # SIGKILL: the child gets no chance to clean up
    lock_holder.wait(timeout=10)
    # The dead child's LOCK file is still there, but its lock went with it.
    assert (tmp_path / "LOCK").read_text() == f"{lock_holder.pid}\n"
    lock = fs.lock(path)
    assert (tmp_path / "LOCK").read_text() == f"{os.getpid()}\n"
    lock.release()


@needs_flock
def test_lock_held_by_parent_blocks_child(fs: OSFileSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "LOCK")
    lock = fs.lock(path)
    try:
        child = start_child(
            f"""
            import sys
            from storekit.errors import LockedError
            from storekit.fs import OSFileSystem
            try:
                OSFileSystem().lock({path!r})
            except LockedError:
                sys.exit(3)
            """
        )
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == 3, stderr
    finally:
        lock.release()


def test_stale_lock_file_does_not_block(fs: OSFileSystem, tmp_path: Path) -> None:
    # A LOCK file naming a process that no longer exists, as a crash leaves it.
    (tmp_path / "LOCK").write_text("999999999\n")
    lock = fs.lock(str(tmp_path / "LOCK"))
    assert (tmp_path / "LOCK").read_text() == f"{os.getpid()}\n"
    lock.release()


# -- failed writes and fsyncs ---------------------------------------------------------------


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str, code: int) -> list[int]:
    """Make os.<name> raise OSError(code) on its first call only; return a call log."""
    real = getattr(os, name)
    calls: list[int] = []

    def patched(*args: object) -> object:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise OSError(code, os.strerror(code))
        return real(*args)

    monkeypatch.setattr(os, name, patched)
    return calls


def test_fsync_failure_is_sticky(
    fs: OSFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "f")
    handle = fs.open(path, "a")
    handle.append(b"data")
    calls = fail_once(monkeypatch, SYNC_FUNCTION, errno.EIO)

    with pytest.raises(DurabilityError, match="fsync failed") as info:
        handle.sync()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO

    # The patched function would succeed now, but the handle stays failed.
    with pytest.raises(DurabilityError):
        handle.append(b"more")
    with pytest.raises(DurabilityError):
        handle.sync()
    with pytest.raises(DurabilityError):
        handle.truncate(0)
    assert calls == [1]
    assert handle.read(0, 100) == b"data"
    handle.close()

    with fs.open(path, "a") as fresh:
        fresh.sync()
    assert calls == [1, 2]


def test_write_failure_is_sticky(
    fs: OSFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = fs.open(str(tmp_path / "f"), "a")
    calls = fail_once(monkeypatch, "pwrite", errno.ENOSPC)
    with pytest.raises(DurabilityError, match="write failed") as info:
        handle.append(b"data")
    assert info.value.__cause__.errno == errno.ENOSPC
    with pytest.raises(DurabilityError):
        handle.append(b"data")
    with pytest.raises(DurabilityError):
        handle.sync()
    assert calls == [1]
    handle.close()


# -- directory fsyncs ------------------------------------------------------------------


@pytest.fixture
def dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the directories that storekit.fs fsyncs, still fsyncing them."""
    real = storekit.fs._fsync_directory
    synced: list[str] = []

    def record(path: str) -> None:
        synced.append(os.path.abspath(path or "."))
        real(path)

    monkeypatch.setattr(storekit.fs, "_fsync_directory", record)
    return synced


def test_create_fsyncs_parent(
    fs: OSFileSystem, tmp_path: Path, dir_syncs: list[str]
) -> None:
    fs.open(str(tmp_path / "a"), "a").close()
    fs.open(str(tmp_path / "w"), "w").close()
    assert dir_syncs == [str(tmp_path), str(tmp_path)]
    fs.open(str(tmp_path / "a"), "a").close()
    fs.open(str(tmp_path / "w"), "w").close()
    fs.open(str(tmp_path / "a"), "r").close()
    assert len(dir_syncs) == 2


def test_relative_create_fsyncs_cwd(
    fs: OSFileSystem,
    tmp_path: Path,
    dir_syncs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    fs.open("f", "a").close()
    assert dir_syncs == [str(tmp_path)]


def test_rename_fsyncs_both_directories(
    fs: OSFileSystem, tmp_path: Path, dir_syncs: list[str]
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "f").write_bytes(b"x")
    fs.rename(str(tmp_path / "one" / "f"), str(tmp_path / "one" / "g"))
    assert dir_syncs == [str(tmp_path / "one")]
    fs.rename(str(tmp_path / "one" / "g"), str(tmp_path / "two" / "g"))
    assert dir_syncs[1:] == [str(tmp_path / "two"), str(tmp_path / "one")]


def test_mkdir_fsyncs_each_parent(
    fs: OSFileSystem, tmp_path: Path, dir_syncs: list[str]
) -> None:
    fs.mkdir(str(tmp_path / "a" / "b"))
    assert dir_syncs == [str(tmp_path), str(tmp_path / "a")]
    fs.mkdir(str(tmp_path / "a" / "b"))
    assert len(dir_syncs) == 2


def test_remove_does_not_fsync(
    fs: OSFileSystem, tmp_path: Path, dir_syncs: list[str]
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fs.remove(str(tmp_path / "f"))
    assert dir_syncs == []
    fs.sync_dir(str(tmp_path))
    assert dir_syncs == [str(tmp_path)]


def test_failed_create_fsync_closes_file(
    fs: OSFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count open descriptors")

    def fail(path: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), path)

    monkeypatch.setattr(storekit.fs, "_fsync_directory", fail)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as info:
        fs.open(str(tmp_path / "f"), "a")
    assert not isinstance(info.value, DurabilityError)
    assert info.value.errno == errno.EIO
    assert len(os.listdir("/proc/self/fd")) == before


# -- the contract that OSFileSystem and CrashFS share ---------------------------------------


@pytest.fixture(params=["os", "crash"])
def seam(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FileSystem, str]:
    """A file system and an existing, empty directory on it."""
    if request.param == "os":
        return OSFileSystem(), str(tmp_path)
    crash_fs = CrashFS(seed=11)
    crash_fs.mkdir("/root")
    return crash_fs, "/root"


def test_contract_file_round_trip(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    path = f"{root}/f"
    with fs.open(path, "a") as handle:
        handle.append(b"abc")
        handle.append(memoryview(b"def"))
        handle.sync()
        assert handle.read(1, 3) == b"bcd"
        assert handle.read(10, 3) == b""
        handle.truncate(2)
        assert handle.size() == 2
    assert fs.read_file(path) == b"ab"
    assert fs.file_size(path) == 2
    with fs.open(path, "r") as reader:
        assert reader.read(0, 10) == b"ab"


def test_contract_namespace(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    fs.mkdir(f"{root}/d/e")
    fs.mkdir(f"{root}/d")
    fs.write_file_atomic(f"{root}/d/CURRENT", b"one")
    fs.write_file_atomic(f"{root}/d/CURRENT", b"two")
    assert fs.read_file(f"{root}/d/CURRENT") == b"two"
    assert fs.listdir(f"{root}/d") == ["CURRENT", "e"]
    fs.rename(f"{root}/d/CURRENT", f"{root}/d/e/moved")
    assert fs.exists(f"{root}/d/e/moved")
    assert not fs.exists(f"{root}/d/CURRENT")
    fs.remove(f"{root}/d/e/moved")
    fs.remove(f"{root}/d/e/moved")
    assert fs.listdir(f"{root}/d/e") == []


def test_contract_missing_paths(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    with pytest.raises(FileNotFoundError):
        fs.open(f"{root}/missing", "r")
    with pytest.raises(FileNotFoundError):
        fs.open(f"{root}/nodir/f", "a")
    with pytest.raises(FileNotFoundError):
        fs.listdir(f"{root}/nodir")
    with pytest.raises(FileNotFoundError):
        fs.rename(f"{root}/missing", f"{root}/other")
    with pytest.raises(FileNotFoundError):
        fs.lock(f"{root}/nodir/LOCK")
    with pytest.raises(ValueError, match="'rw'"):
        fs.open(f"{root}/f", "rw")


def test_contract_lock(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    lock = fs.lock(f"{root}/LOCK")
    with pytest.raises(LockedError):
        fs.lock(f"{root}/LOCK")
    assert fs.exists(f"{root}/LOCK")
    lock.release()
    lock.release()
    fs.lock(f"{root}/LOCK").release()


def test_contract_closed_handle(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    handle = fs.open(f"{root}/f", "a")
    handle.close()
    handle.close()
    with pytest.raises(ClosedError):
        handle.read(0, 1)
    with pytest.raises(ClosedError):
        handle.append(b"x")
    with pytest.raises(ClosedError):
        handle.sync()


def test_contract_read_only_handle(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    fs.open(f"{root}/f", "a").close()
    with fs.open(f"{root}/f", "r") as reader:
        with pytest.raises(io.UnsupportedOperation):
            reader.append(b"x")
        reader.sync()


def test_contract_mkdir_over_file(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    fs.open(f"{root}/f", "a").close()
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/f")


def test_contract_negative_offset(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    with fs.open(f"{root}/f", "a") as handle, pytest.raises(ValueError):
        handle.read(-1, 1)


def test_contract_directory_is_not_a_file(seam: tuple[FileSystem, str]) -> None:
    fs, root = seam
    fs.mkdir(f"{root}/d")
    with pytest.raises(IsADirectoryError):
        fs.file_size(f"{root}/d")
    with pytest.raises(IsADirectoryError):
        fs.open(f"{root}/d", "r")
