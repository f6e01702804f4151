"""The file-system seam: every durable byte storekit writes goes through here.

Durable components (WAL, checkpoints, tables, manifest, event log) take an
``fs`` argument and call only the methods below, so a test can swap the
operating system for ``storekit.testing.CrashFS``, which drops unsynced
data, tears writes and fails chosen operations.

Contract of every implementation:

- ``File.append`` hands the bytes to the operating system before it
  returns, so a killed process loses none of them; only ``File.sync``
  makes them survive power loss.
- Creating a file (``open`` with a creating mode), ``rename`` and ``mkdir``
  fsync the parent directory before they return, so the new name is
  durable. ``remove`` does not; call ``sync_dir`` where a removal must
  survive a crash.
- A failed fsync is never treated as success. The file is marked failed
  and every later ``append`` or ``sync`` on it raises ``DurabilityError``,
  because Linux may drop the dirty pages after reporting the error once.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
from abc import ABC, abstractmethod

from .errors import ClosedError, CorruptionError, DurabilityError, LockedError

__all__ = ["File", "FileLock", "FileSystem", "OSFileSystem", "default_fs"]


class File(ABC):
    """An open file: appends at the end, reads at any offset."""

    path: str

    @abstractmethod
    def append(self, data: bytes) -> None:
        """Write all of ``data`` at the end of the file."""

    @abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes from ``offset``; fewer at end of file."""

    @abstractmethod
    def size(self) -> int:
        """Return the current length in bytes."""

    @abstractmethod
    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes. Call ``sync`` to make it durable."""

    @abstractmethod
    def sync(self) -> None:
        """Make every byte appended so far durable (fsync)."""

    @abstractmethod
    def close(self) -> None:
        """Close the handle; unsynced data stays with the operating system."""

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FileLock(ABC):
    """An exclusive lock on a directory, held until ``release``."""

    @abstractmethod
    def release(self) -> None:
        """Release the lock; releasing twice is allowed."""


class FileSystem(ABC):
    """The operations durable components use; see the module docstring."""

    #: Increments each time a simulated crash happens. Stores remember it at
    #: open and treat a change as "closed", so objects from before a crash
    #: stop working. The operating system's value never changes.
    epoch: int = 0

    @abstractmethod
    def open(self, path: str, mode: str = "r") -> File:
        """Open ``path``.

        Modes: ``"r"`` reads an existing file; ``"a"`` reads and appends,
        creating the file if missing; ``"w"`` creates or empties the file,
        then reads and appends.
        """

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Return True if ``path`` names a file or directory."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Return the names in directory ``path``, sorted."""

    @abstractmethod
    def mkdir(self, path: str) -> None:
        """Create ``path`` and missing parents; an existing directory is fine."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` atomically, replacing ``target``."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Delete the file ``path``; a missing file is not an error."""

    @abstractmethod
    def sync_dir(self, path: str) -> None:
        """Make the entries of directory ``path`` durable (fsync the directory)."""

    @abstractmethod
    def lock(self, path: str) -> FileLock:
        """Take an exclusive lock on the file ``path``, creating it if missing.

        Raises LockedError when another holder, in this process or another,
        has it. A lock held by a process that died is released with it.
        """

    def file_size(self, path: str) -> int:
        """Return the size of the file ``path`` in bytes."""
        with self.open(path, "r") as handle:
            return handle.size()

    def read_file(self, path: str) -> bytes:
        """Return the whole content of ``path``."""
        with self.open(path, "r") as handle:
            return handle.read(0, handle.size())

    def write_file_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` so a crash leaves the old or the new file.

        Writes a temporary file, fsyncs it, renames it over ``path`` and
        fsyncs the directory (``rename`` does the last step).
        """
        temporary = path + ".tmp"
        with self.open(temporary, "w") as handle:
            handle.append(data)
            handle.sync()
        self.rename(temporary, path)


# -- the operating system ----------------------------------------------------


def _fsync_directory(path: str) -> None:
    if os.name == "nt":  # Windows cannot open or fsync a directory.
        return
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OSFile(File):
    def __init__(self, path: str, fd: int, writable: bool) -> None:
        self.path = path
        self._fd = fd
        self._writable = writable
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._syncs_running = 0
        self._size = os.fstat(fd).st_size

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ClosedError(f"{self.path}: the file is closed")

    def _check_writable(self) -> None:
        if not self._writable:
            raise io.UnsupportedOperation(f"{self.path}: the file was opened read-only")
        self._check_usable()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise DurabilityError(
                f"{self.path}: an earlier write or fsync failed ({self._failure}); "
                "reopen the store to continue"
            ) from self._failure

    def append(self, data: bytes) -> None:
        with self._lock:
            self._check_open()
            self._check_writable()
            view = memoryview(data)
            try:
                while view:
                    written = os.pwrite(self._fd, view, self._size)
                    self._size += written
                    view = view[written:]
            except OSError as exc:
                self._failure = exc
                raise DurabilityError(f"{self.path}: write failed: {exc}") from exc

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError(f"offset and size must be >= 0, not {offset} and {size}")
        # The lock keeps close() from releasing the descriptor number while
        # pread uses it: a later open() could reuse the number for another file.
        with self._lock:
            self._check_open()
            return os.pread(self._fd, size, offset)

    def size(self) -> int:
        with self._lock:
            self._check_open()
            if not self._writable:
                # Another handle or process may be appending; ask the OS.
                return os.fstat(self._fd).st_size
            return self._size

    def truncate(self, size: int) -> None:
        with self._lock:
            self._check_open()
            self._check_writable()
            os.ftruncate(self._fd, size)
            self._size = size

    def sync(self) -> None:
        # The fsync runs without the handle lock, so appends from other
        # threads go on meanwhile, which group commit needs. close() waits
        # for running fsyncs, so the descriptor number is not reused under one.
        with self._lock:
            self._check_open()
            self._check_usable()
            fd = self._fd
            self._syncs_running += 1
        try:
            # fdatasync also flushes the size, which is all the metadata an
            # appended file needs; macOS and Windows lack it.
            if hasattr(os, "fdatasync"):
                os.fdatasync(fd)
            else:
                os.fsync(fd)
        except OSError as exc:
            with self._lock:
                self._failure = exc
            raise DurabilityError(f"{self.path}: fsync failed: {exc}") from exc
        finally:
            with self._lock:
                self._syncs_running -= 1
                self._idle.notify_all()

    def close(self) -> None:
        with self._lock:
            while self._syncs_running:
                self._idle.wait()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class _OSFileLock(FileLock):
    # Locks held through this process's OSFileSystem objects. flock() already
    # conflicts between two descriptors of one process on Linux, but not on
    # every platform, so the registry makes the in-process case certain.
    _held: set[str] = set()
    _held_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self._path = os.path.realpath(path)
        self._fd = -1
        with self._held_lock:
            if self._path in self._held:
                raise LockedError(f"{path} is locked by another store in this process")
            self._held.add(self._path)
        try:
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except IsADirectoryError:
                raise CorruptionError(
                    f"lock file {path} is a directory; remove it to open the store",
                    path,
                    None,
                ) from None
            _lock_descriptor(self._fd, path)
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
            with self._held_lock:
                self._held.discard(self._path)
            raise

    def release(self) -> None:
        if self._fd < 0:
            return
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = -1
        with self._held_lock:
            self._held.discard(self._path)


def _lock_descriptor(fd: int, path: str) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise LockedError(f"{path} is locked by another process") from None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockedError(f"{path} is locked by another process") from None
        raise


class OSFileSystem(FileSystem):
    """The operating system's file system, with the fsync rules above."""

    def open(self, path: str, mode: str = "r") -> File:
        if mode == "r":
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            return _OSFile(path, fd, writable=False)
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', not {mode!r}")
        created = not os.path.exists(path)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        if mode == "w":
            flags |= os.O_TRUNC
        fd = os.open(path, flags, 0o644)
        if created:
            try:
                _fsync_directory(os.path.dirname(path))
            except OSError:
                # Remove the file again: a retried open would find it and
                # skip the directory fsync, leaving its entry not durable.
                os.close(fd)
                try:
                    os.remove(path)
                except OSError:
                    pass
                raise
        return _OSFile(path, fd, writable=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def mkdir(self, path: str) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            self.mkdir(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            if os.path.isdir(path):  # another thread or process created it
                return
            raise
        _fsync_directory(parent)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)
        target_dir = os.path.dirname(target)
        _fsync_directory(target_dir)
        source_dir = os.path.dirname(source)
        if os.path.abspath(source_dir) != os.path.abspath(target_dir):
            _fsync_directory(source_dir)

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def sync_dir(self, path: str) -> None:
        _fsync_directory(path)

    def lock(self, path: str) -> FileLock:
        return _OSFileLock(path)

    def file_size(self, path: str) -> int:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        return status.st_size


_DEFAULT = OSFileSystem()


def default_fs(fs: FileSystem | None) -> FileSystem:
    """Return ``fs``, or the operating system's file system when it is None."""
    if fs is None:
        return _DEFAULT
    if not isinstance(fs, FileSystem):
        raise TypeError(f"fs must be a storekit.fs.FileSystem, not {type(fs).__name__}")
    return fs
