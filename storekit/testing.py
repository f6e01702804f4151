"""An in-memory file system that simulates power loss, for crash tests.

``CrashFS`` implements :class:`storekit.fs.FileSystem`, so every durable
storekit component accepts it as ``fs=``, and so can a program of your own
that writes through the same interface. It keeps two states side by side:

- the *visible* state, which is what the operating system would show:
  every byte appended and every directory change made so far;
- the *durable* state, which is what would be on the disk after power
  loss: file contents as of their last ``File.sync`` and directory entries
  as of the last fsync of their directory.

``crash()`` throws the visible state away and rebuilds it from the durable
state, keeping some unsynced bytes when the crash mode allows it. ``fail()``
makes a chosen write, fsync, rename or open raise ``OSError``. Randomness
comes from ``random.Random(seed)``, so one seed and one sequence of calls
always give the same outcome.

>>> from storekit.testing import CrashFS
>>> fs = CrashFS(seed=7)
>>> fs.mkdir("/db")
>>> log = fs.open("/db/log", "a")
>>> log.append(b"synced.")
>>> log.sync()
>>> log.append(b"not synced")
>>> report = fs.crash(mode="drop")
>>> fs.read_file("/db/log")
b'synced.'
>>> report.files["/db/log"].lost_bytes
10
"""

from __future__ import annotations

import errno as errno_codes
import io
import logging
import os
import posixpath
import random
import threading
from dataclasses import dataclass, field

from .errors import ClosedError, DurabilityError, LockedError
from .fs import File, FileLock, FileSystem

__all__ = ["CRASH_MODES", "CrashFS", "CrashReport", "FileOutcome"]

logger = logging.getLogger("storekit")

#: The crash modes that ``CrashFS.crash`` accepts; ``None`` picks among them.
CRASH_MODES = ("drop", "prefix", "torn", "lose_dir_entries")

#: The operations that ``CrashFS.fail`` can make fail.
FAIL_OPERATIONS = ("write", "fsync", "rename", "open")

# The largest run of bytes that a "torn" crash overwrites at the end of the
# unsynced part of a file: one 512-byte disk sector.
_TORN_CHUNK_MAX = 512


# -- the report ----------------------------------------------------------------


@dataclass(frozen=True)
class FileOutcome:
    """The outcome of a crash for one file.

    Sizes are in bytes. ``torn`` is the ``(offset, length)`` of the bytes
    that a "torn" crash replaced with zeros or random bytes, or None.
    """

    path: str
    mode: str
    visible_size: int
    durable_size: int
    kept_size: int
    torn: tuple[int, int] | None = None

    @property
    def lost_bytes(self) -> int:
        """Visible bytes that the crash removed; negative if a truncation was undone."""
        return self.visible_size - self.kept_size


@dataclass
class CrashReport:
    """A summary of one crash, to help debug a failing crash test.

    ``files`` has an entry for each file that had unsynced data or an
    unsynced truncation, keyed by its path after the crash.
    ``reverted_entries`` lists the paths whose directory entry went back to
    its last durable state: a creation that vanished, a removal that came
    back, or a rename that was undone.
    """

    epoch: int
    mode: str | None
    files: dict[str, FileOutcome] = field(default_factory=dict)
    reverted_entries: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"crash {self.epoch} (mode={self.mode})"]
        for path, outcome in sorted(self.files.items()):
            line = (
                f"  {path}: {outcome.mode}, visible {outcome.visible_size}, "
                f"durable {outcome.durable_size}, kept {outcome.kept_size}"
            )
            if outcome.torn is not None:
                offset, length = outcome.torn
                line += f", torn {length} bytes at {offset}"
            lines.append(line)
        lines.extend(f"  reverted entry: {path}" for path in self.reverted_entries)
        return "\n".join(lines)


# -- the in-memory tree ----------------------------------------------------------


class _FileNode:
    """A file's contents, shared by every name and handle that refers to it.

    ``data`` is the visible content and ``durable`` the content at the last
    sync. ``data[:low]`` equals ``durable[:low]``: appends only add bytes
    after ``low``, and a truncation below it lowers it until the next sync.
    """

    __slots__ = ("data", "durable", "low")

    def __init__(self, content: bytes = b"") -> None:
        self.data = bytearray(content)
        self.durable = bytes(content)
        self.low = len(content)

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
            self.low = min(self.low, size)
        else:
            self.data.extend(bytes(size - len(self.data)))

    def sync(self) -> None:
        self.durable = bytes(self.data)
        self.low = len(self.durable)

    def has_unsynced_state(self) -> bool:
        return self.low < len(self.durable) or len(self.data) > self.low


class _DirNode:
    """A directory: visible entries and the entries as of its last fsync."""

    __slots__ = ("durable_entries", "entries")

    def __init__(self) -> None:
        self.entries: dict[str, _FileNode | _DirNode] = {}
        self.durable_entries: dict[str, _FileNode | _DirNode] = {}

    def sync(self) -> None:
        self.durable_entries = dict(self.entries)

    def has_unsynced_entries(self) -> bool:
        if self.entries.keys() != self.durable_entries.keys():
            return True
        return any(
            self.entries[name] is not node
            for name, node in self.durable_entries.items()
        )


def _os_error(code: int, path: str) -> OSError:
    # OSError picks the subclass from the code: ENOENT gives FileNotFoundError.
    return OSError(code, os.strerror(code), path)


def _normalise(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as an absolute POSIX path; relative paths start at "/"."""
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    return posixpath.normpath(posixpath.join("/", path))


@dataclass
class _PendingFailure:
    op: str
    remaining: int
    errno: int
    path: str | None


# -- handles -------------------------------------------------------------------


class _CrashFile(File):
    """A handle on a ``CrashFS`` file with the same contract as the OS file.

    A failed append or sync marks the handle failed, and every later
    ``append``, ``truncate`` or ``sync`` on it raises ``DurabilityError``.
    """

    def __init__(self, fs: CrashFS, path: str, node: _FileNode, writable: bool) -> None:
        self.path = path
        self._key = _normalise(path)
        self._fs = fs
        self._node = node
        self._writable = writable
        self._epoch = fs.epoch
        self._closed = False
        self._failure: OSError | None = None

    def _check_open(self) -> None:
        # Called with the file system lock held.
        if self._epoch != self._fs.epoch:
            raise ClosedError(
                f"{self.path}: the file system crashed after this file was opened"
            )
        if self._closed:
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
        payload = memoryview(data).tobytes()
        with self._fs._lock:
            self._check_open()
            self._check_writable()
            failure = self._fs._take_failure("write", self._key)
            if failure is not None:
                # A torn write: the operating system got part of the data.
                kept = self._fs._random.randint(0, max(len(payload) - 1, 0))
                self._node.data.extend(payload[:kept])
                self._failure = failure
                raise DurabilityError(
                    f"{self.path}: write failed: {failure}"
                ) from failure
            self._node.data.extend(payload)

    def read(self, offset: int, size: int) -> bytes:
        _check_count("offset", offset)
        _check_count("size", size)
        with self._fs._lock:
            self._check_open()
            return bytes(self._node.data[offset : offset + size])

    def size(self) -> int:
        with self._fs._lock:
            self._check_open()
            return len(self._node.data)

    def truncate(self, size: int) -> None:
        _check_count("size", size)
        with self._fs._lock:
            self._check_open()
            self._check_writable()
            self._node.truncate(size)

    def sync(self) -> None:
        with self._fs._lock:
            self._check_open()
            self._check_usable()
            failure = self._fs._take_failure("fsync", self._key)
            if failure is not None:
                self._failure = failure
                raise DurabilityError(
                    f"{self.path}: fsync failed: {failure}"
                ) from failure
            self._node.sync()

    def close(self) -> None:
        # Closing is allowed after a crash, so cleanup code in ``finally``
        # blocks does not hide the error that is being handled.
        with self._fs._lock:
            self._closed = True

    def __repr__(self) -> str:
        return f"<CrashFS file {self.path!r}>"


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")


class _CrashLock(FileLock):
    def __init__(self, fs: CrashFS, key: str) -> None:
        self._fs = fs
        self._key = key
        self._epoch = fs.epoch
        self._released = False

    def release(self) -> None:
        with self._fs._lock:
            if self._released:
                return
            self._released = True
            # A crash already released every lock, and a new holder may have
            # taken this path since, so only the current holder removes it.
            if self._epoch == self._fs.epoch and self._fs._locks.get(self._key) is self:
                del self._fs._locks[self._key]


# -- the file system -------------------------------------------------------------


class CrashFS(FileSystem):
    """An in-memory ``FileSystem`` that simulates power loss and I/O errors.

    Paths are POSIX strings: they are normalised with ``posixpath.normpath``
    and a relative path starts at the root, so ``"db/log"`` and
    ``"/db/log"`` name the same file. As on a real file system, a directory
    must be created with ``mkdir`` before files go in it.

    Durability follows the contract in :mod:`storekit.fs`:

    - ``File.append`` changes only the visible content. ``File.sync`` makes
      the whole visible content durable, including a truncation.
    - Creating a file, ``rename`` and ``mkdir`` fsync the parent directory,
      so the entry is durable when they return. ``remove`` is durable only
      after ``sync_dir`` of the parent. Each of these directory fsyncs
      counts as an ``"fsync"`` for ``fail()``, so
      ``fail("fsync", path=parent)`` produces a crash between the change
      and its directory fsync.

    ``crash(mode)`` simulates power loss. Handles and locks from before it
    stop working, ``epoch`` increments, and the durable state becomes the
    visible state. Unsynced data is treated per mode:

    - ``"drop"`` loses every unsynced byte;
    - ``"prefix"`` keeps a random prefix of each file's unsynced bytes;
    - ``"torn"`` keeps a random prefix, then replaces its last 1 to 512
      unsynced bytes with zeros or random bytes;
    - ``"lose_dir_entries"`` drops unsynced data and also undoes every
      directory change not made durable (creations, renames, removals).

    The first three modes keep the visible directory entries. With
    ``mode=None`` each file with unsynced data, and each directory with
    unsynced entries, gets a mode chosen at random.

    A file truncated since its last sync comes back after a "prefix" or
    "torn" crash either as it was at that sync or cut at the truncation
    point plus a prefix of what was appended after it.

    ``CrashFS`` is thread-safe: one lock serialises every call.

    Example: crash a program many times from one point.

    >>> fs = CrashFS(seed=1)
    >>> fs.mkdir("data")
    >>> with fs.open("data/counter", "w") as handle:
    ...     handle.append(b"1")
    ...     handle.sync()
    ...     handle.append(b"2")
    >>> outcomes = set()
    >>> for _ in range(20):
    ...     trial = fs.clone(mode="prefix")
    ...     outcomes.add(trial.read_file("data/counter"))
    >>> sorted(outcomes)
    [b'1', b'12']
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        #: The seed of this file system's random choices; print it to rerun a
        #: failing test with ``CrashFS(seed=...)``.
        self.seed = seed
        self.epoch = 0
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._root = _DirNode()
        self._locks: dict[str, _CrashLock] = {}
        self._failures: list[_PendingFailure] = []

    def __repr__(self) -> str:
        return f"CrashFS(seed={self.seed}, epoch={self.epoch})"

    # -- path resolution -----------------------------------------------------

    def _lookup(self, key: str) -> _FileNode | _DirNode | None:
        node: _FileNode | _DirNode = self._root
        for name in key.split("/"):
            if not name:
                continue
            if not isinstance(node, _DirNode):
                return None
            child = node.entries.get(name)
            if child is None:
                return None
            node = child
        return node

    def _parent_dir(self, path: str, key: str) -> tuple[_DirNode, str]:
        """Return the directory that contains ``key`` and the last name in it."""
        parent_key, name = posixpath.split(key)
        if not name:
            raise _os_error(errno_codes.EISDIR, path)
        parent = self._lookup(parent_key)
        if parent is None:
            raise _os_error(errno_codes.ENOENT, path)
        if not isinstance(parent, _DirNode):
            raise _os_error(errno_codes.ENOTDIR, path)
        return parent, name

    def _directory(self, path: str) -> _DirNode:
        node = self._lookup(_normalise(path))
        if node is None:
            raise _os_error(errno_codes.ENOENT, path)
        if not isinstance(node, _DirNode):
            raise _os_error(errno_codes.ENOTDIR, path)
        return node

    def _file_node(self, path: str) -> _FileNode:
        node = self._lookup(_normalise(path))
        if node is None:
            raise _os_error(errno_codes.ENOENT, path)
        if isinstance(node, _DirNode):
            raise _os_error(errno_codes.EISDIR, path)
        return node

    # -- failure injection -------------------------------------------------------

    def fail(
        self,
        op: str,
        at: int = 1,
        errno: int = errno_codes.EIO,
        *,
        path: str | None = None,
    ) -> None:
        """Make the ``at``-th call of ``op`` from now raise ``OSError(errno)``.

        ``op`` is ``"write"`` (``File.append``), ``"fsync"`` (``File.sync``,
        ``sync_dir`` and the directory fsync inside creating a file,
        ``rename`` and ``mkdir``), ``"rename"`` or ``"open"``. With ``path``,
        only calls on that path count; for a directory fsync that is the
        directory's path. Calls rejected earlier, such as an append on a
        handle that already failed, do not count.

        A failed append first writes a random prefix of its data, and a
        failed fsync makes nothing durable. ``File.append`` and
        ``File.sync`` then raise ``DurabilityError`` from the ``OSError``
        and the handle stays failed, as on the operating system. Other
        operations raise the ``OSError`` itself. Several failures may be
        pending at once, and they survive ``crash()``.
        """
        if op not in FAIL_OPERATIONS:
            raise ValueError(
                f"op must be one of {', '.join(FAIL_OPERATIONS)}, not {op!r}"
            )
        if isinstance(at, bool) or not isinstance(at, int):
            raise TypeError(f"at must be an int, not {type(at).__name__}")
        if at < 1:
            raise ValueError(f"at must be >= 1, not {at}")
        if isinstance(errno, bool) or not isinstance(errno, int):
            raise TypeError(f"errno must be an int, not {type(errno).__name__}")
        key = None if path is None else _normalise(path)
        with self._lock:
            self._failures.append(_PendingFailure(op, at, errno, key))

    def clear_failures(self) -> None:
        """Cancel every failure registered with ``fail`` that has not happened."""
        with self._lock:
            self._failures.clear()

    def _take_failure(self, op: str, key: str) -> OSError | None:
        """Count one call of ``op`` on ``key`` and return the error it must raise."""
        fired: list[_PendingFailure] = []
        for failure in self._failures:
            if failure.op != op or (failure.path is not None and failure.path != key):
                continue
            failure.remaining -= 1
            if failure.remaining == 0:
                fired.append(failure)
        if not fired:
            return None
        self._failures = [failure for failure in self._failures if failure not in fired]
        code = fired[0].errno
        logger.debug("CrashFS: injected %s failure on %s (errno %d)", op, key, code)
        return OSError(code, f"{os.strerror(code)} (injected {op} failure)", key)

    def _raise_if_failing(self, op: str, key: str) -> None:
        failure = self._take_failure(op, key)
        if failure is not None:
            raise failure

    def _fsync_dir(self, directory: _DirNode, key: str) -> None:
        self._raise_if_failing("fsync", key)
        directory.sync()

    # -- the FileSystem interface ----------------------------------------------

    def open(self, path: str, mode: str = "r") -> File:
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', not {mode!r}")
        key = _normalise(path)
        with self._lock:
            self._raise_if_failing("open", key)
            parent, name = self._parent_dir(path, key)
            node = parent.entries.get(name)
            if isinstance(node, _DirNode):
                raise _os_error(errno_codes.EISDIR, path)
            if node is None:
                if mode == "r":
                    raise _os_error(errno_codes.ENOENT, path)
                node = _FileNode()
                parent.entries[name] = node
                self._fsync_dir(parent, posixpath.dirname(key))
            elif mode == "w":
                node.truncate(0)
            return _CrashFile(self, path, node, writable=mode != "r")

    def exists(self, path: str) -> bool:
        key = _normalise(path)
        with self._lock:
            return self._lookup(key) is not None

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self._directory(path).entries)

    def mkdir(self, path: str) -> None:
        key = _normalise(path)
        with self._lock:
            directory = self._root
            walked = "/"
            for name in key.split("/"):
                if not name:
                    continue
                child = directory.entries.get(name)
                if child is None:
                    child = _DirNode()
                    directory.entries[name] = child
                    self._fsync_dir(directory, walked)
                elif not isinstance(child, _DirNode):
                    if posixpath.join(walked, name) == key:
                        raise _os_error(errno_codes.EEXIST, path)
                    raise _os_error(errno_codes.ENOTDIR, path)
                directory = child
                walked = posixpath.join(walked, name)

    def rename(self, source: str, target: str) -> None:
        source_key = _normalise(source)
        target_key = _normalise(target)
        with self._lock:
            self._raise_if_failing("rename", source_key)
            source_parent, source_name = self._parent_dir(source, source_key)
            target_parent, target_name = self._parent_dir(target, target_key)
            node = source_parent.entries.get(source_name)
            if node is None:
                raise _os_error(errno_codes.ENOENT, source)
            self._check_rename_target(
                node, target_parent.entries.get(target_name), source, target
            )
            if isinstance(node, _DirNode) and (target_key + "/").startswith(
                source_key + "/"
            ):
                if target_key != source_key:
                    raise OSError(
                        errno_codes.EINVAL,
                        "cannot move a directory into itself",
                        source,
                    )
            del source_parent.entries[source_name]
            target_parent.entries[target_name] = node

            target_dir_key = posixpath.dirname(target_key)
            source_dir_key = posixpath.dirname(source_key)
            self._fsync_dir(target_parent, target_dir_key)
            if source_dir_key != target_dir_key:
                self._fsync_dir(source_parent, source_dir_key)

    @staticmethod
    def _check_rename_target(
        node: _FileNode | _DirNode,
        replaced: _FileNode | _DirNode | None,
        source: str,
        target: str,
    ) -> None:
        if replaced is None or replaced is node:
            return
        if isinstance(node, _FileNode) and isinstance(replaced, _DirNode):
            raise _os_error(errno_codes.EISDIR, target)
        if isinstance(node, _DirNode) and isinstance(replaced, _FileNode):
            raise _os_error(errno_codes.ENOTDIR, target)
        if isinstance(replaced, _DirNode) and replaced.entries:
            raise _os_error(errno_codes.ENOTEMPTY, target)

    def remove(self, path: str) -> None:
        key = _normalise(path)
        with self._lock:
            try:
                parent, name = self._parent_dir(path, key)
            except FileNotFoundError:
                return
            node = parent.entries.get(name)
            if node is None:
                return
            if isinstance(node, _DirNode):
                raise _os_error(errno_codes.EISDIR, path)
            del parent.entries[name]

    def sync_dir(self, path: str) -> None:
        key = _normalise(path)
        with self._lock:
            directory = self._directory(path)
            self._fsync_dir(directory, key)

    def lock(self, path: str) -> FileLock:
        key = _normalise(path)
        with self._lock:
            parent, name = self._parent_dir(path, key)
            node = parent.entries.get(name)
            if isinstance(node, _DirNode):
                raise _os_error(errno_codes.EISDIR, path)
            if key in self._locks:
                raise LockedError(f"{path} is locked by another holder")
            if node is None:
                # Like the OS implementation, the lock file is created without
                # a directory fsync.
                parent.entries[name] = _FileNode()
            holder = _CrashLock(self, key)
            self._locks[key] = holder
            return holder

    def file_size(self, path: str) -> int:
        # The OS implementation reads the size without opening the file, so
        # this does not count as an "open" for fail() either.
        with self._lock:
            return len(self._file_node(path).data)

    # -- inspection ------------------------------------------------------------

    def durable_bytes(self, path: str) -> bytes:
        """Return the content of the file at ``path`` as of its last sync.

        These are the bytes that a "drop" crash keeps, provided the file's
        directory entry is durable too. Unlike ``read_file`` this opens no
        handle, so it never counts as an ``"open"`` for ``fail()``.
        """
        with self._lock:
            return self._file_node(path).durable

    # -- crashes ---------------------------------------------------------------

    def crash(self, mode: str | None = None) -> CrashReport:
        """Simulate power loss and return what each file lost.

        Every handle and lock taken before the crash stops working: handle
        calls other than ``close`` raise ``ClosedError``. ``epoch``
        increments. See the class docstring for the modes.
        """
        _check_mode(mode)
        with self._lock:
            self.epoch += 1
            self._locks.clear()
            report = CrashReport(epoch=self.epoch, mode=mode)
            self._root = _CrashBuilder(self._random, mode, report).build(self._root)
            logger.debug("CrashFS: %s", report)
            return report

    def clone(self, mode: str | None = "drop") -> CrashFS:
        """Return a new ``CrashFS`` holding what a crash now would leave.

        This file system is not changed, so a test can crash many times from
        one point. The default ``"drop"`` gives the durable contents with the
        visible directory entries. The clone starts at epoch 0 with no
        handles, locks or pending failures, and its seed comes from this file
        system's random generator.
        """
        _check_mode(mode)
        with self._lock:
            clone = CrashFS(seed=self._random.getrandbits(64))
            report = CrashReport(epoch=0, mode=mode)
            clone._root = _CrashBuilder(self._random, mode, report).build(self._root)
            return clone


def _check_mode(mode: str | None) -> None:
    if mode is not None and mode not in CRASH_MODES:
        raise ValueError(
            f"mode must be None or one of {', '.join(CRASH_MODES)}, not {mode!r}"
        )


class _CrashBuilder:
    """Build the tree that remains after a crash, without changing the old one.

    Every node of the new tree is new and fully durable. A file reachable
    under two names after the crash gets two independent copies.
    """

    def __init__(
        self, rng: random.Random, mode: str | None, report: CrashReport
    ) -> None:
        self._random = rng
        self._mode = mode
        self._report = report
        self._contents: dict[int, bytes] = {}

    def _pick_mode(self) -> str:
        if self._mode is not None:
            return self._mode
        return self._random.choice(CRASH_MODES)

    def build(self, root: _DirNode) -> _DirNode:
        return self._build_dir(root, "/", set())

    def _build_dir(self, old: _DirNode, path: str, ancestors: set[int]) -> _DirNode:
        entries = old.entries
        if old.has_unsynced_entries() and self._pick_mode() == "lose_dir_entries":
            entries = old.durable_entries
            changed = set(old.entries) ^ set(old.durable_entries)
            changed.update(
                name
                for name, node in old.durable_entries.items()
                if old.entries.get(name, node) is not node
            )
            self._report.reverted_entries.extend(
                posixpath.join(path, name) for name in sorted(changed)
            )

        new = _DirNode()
        ancestors = ancestors | {id(old)}
        for name in sorted(entries):
            child = entries[name]
            child_path = posixpath.join(path, name)
            if isinstance(child, _DirNode):
                # Undone renames can make a directory its own ancestor.
                if id(child) in ancestors:
                    continue
                new.entries[name] = self._build_dir(child, child_path, ancestors)
            else:
                new.entries[name] = _FileNode(self._file_content(child, child_path))
        new.sync()
        return new

    def _file_content(self, node: _FileNode, path: str) -> bytes:
        content = self._contents.get(id(node))
        if content is None:
            content = self._crash_file(node, path)
            self._contents[id(node)] = content
        return content

    def _crash_file(self, node: _FileNode, path: str) -> bytes:
        if not node.has_unsynced_state():
            return node.durable
        mode = self._pick_mode()
        content, torn = self._kept_content(node, mode)
        self._report.files[path] = FileOutcome(
            path=path,
            mode=mode,
            visible_size=len(node.data),
            durable_size=len(node.durable),
            kept_size=len(content),
            torn=torn,
        )
        return content

    def _kept_content(
        self, node: _FileNode, mode: str
    ) -> tuple[bytes, tuple[int, int] | None]:
        if mode in ("drop", "lose_dir_entries"):
            return node.durable, None

        # A truncation since the last sync may not have reached the disk, in
        # which case nothing appended after it did either.
        if node.low < len(node.durable) and self._random.random() < 0.5:
            return node.durable, None

        unsynced = len(node.data) - node.low
        kept_unsynced = self._random.randint(0, unsynced)
        kept = bytearray(node.data[: node.low + kept_unsynced])
        if mode != "torn" or kept_unsynced == 0:
            return bytes(kept), None

        # The synced bytes data[:low] are never touched.
        length = self._random.randint(1, min(_TORN_CHUNK_MAX, kept_unsynced))
        if self._random.random() < 0.5:
            garbage = bytes(length)
        else:
            garbage = self._random.randbytes(length)
        kept[-length:] = garbage
        return bytes(kept), (len(kept) - length, length)
