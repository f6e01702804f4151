"""LSMStore: the log-structured merge engine that storekit.open returns.

Directory layout::

    LOCK              held while a writer has the store open
    CURRENT           names the live manifest (storekit.lsm.manifest)
    MANIFEST-NNNNNN   log of version edits: the tables of each level
    NNNNNN.sst        sorted tables (storekit.lsm.table)
    wal/              WAL segments (storekit.wal)

Write path: each write is one WAL record (an encoded WriteBatch, so a batch
is atomic across a crash), then goes into the active memtable. A full
memtable becomes immutable, and the WAL is rotated so that its records end
in older segments. A background thread writes the immutable memtable to a
level-0 table, fsyncs it and records it in the manifest. Only then does it
delete the WAL segments the memtable covers. The same thread runs leveled compaction
(storekit.lsm.compaction). Writers slow down, then wait, when flushes or
level-0 compactions fall behind.

Read path: ``get`` checks the active memtable, the immutable memtables
newest first, then the tables through the current version. ``scan`` merges
all of them (storekit.lsm.merge) at one sequence number.
"""

from __future__ import annotations

import logging
import math
import posixpath
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

from .._exit import close_at_exit, forget_at_exit
from .._validate import (
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    check_key,
    check_optional_key,
    check_value,
    resolve_bounds,
)
from ..batch import (
    KIND_DELETE,
    KIND_PUT,
    WriteBatch,
    encode_batch,
    encode_delete,
    encode_put,
)
from ..durable import wait_for_synced_writes
from ..errors import (
    ClosedError,
    DurabilityError,
    ReadOnlyError,
    StorekitError,
)
from ..fs import FileSystem, default_fs
from ..memory import SequenceSnapshot
from ..memtable import Memtable
from ..store import ScanItem, Snapshot, Store
from ..wal import RECOVERY_MODES, SYNC_POLICIES, WAL, check_path
from .block import MAX_SEQUENCE
from .bloom import key_hash
from .compaction import CompactionOptions
from .jobs import BackgroundJobs, _Stopped, default_max_open_tables
from .manifest import VersionSet
from .merge import (
    ScanIterator,
    level_entries,
    memtable_entries,
    merge_entries,
    merge_visible,
    visible_items,
)
from .options import (
    MAX_BLOCK_SIZE,
    MAX_BLOOM_BITS_PER_KEY,
    MAX_LEVELS,
    check_at_most,
    check_int,
)
from .recovery import Frozen, RecoveryMixin
from .version import DEFAULT_MAX_LEVELS, Version

__all__ = ["LSMStore"]

logger = logging.getLogger("storekit.lsm")


class LSMStore(RecoveryMixin, BackgroundJobs, Store):
    """A durable sorted key-value store built as a log-structured merge tree.

    Options (sizes in bytes):

    - ``sync``: ``"always"``, ``"batch"`` (default) or ``"none"``, the WAL's
      durability policy; ``sync_interval`` (seconds) and ``sync_bytes``
      bound the ``batch`` window; ``segment_bytes`` is the WAL segment size.
    - ``recovery``: ``"tolerate_tail"`` (default), ``"strict"`` or
      ``"point_in_time"``: what reopening does with a damaged WAL.
    - ``read_only``: open without the lock and change no file; writes raise
      ReadOnlyError. ``create``: create the directory when it is missing.
    - ``memtable_bytes`` (4 MiB): memtable size that triggers a flush.
    - ``max_immutable_memtables`` (2): full memtables waiting for a flush
      before writers wait.
    - ``table_bytes`` (2 MiB): target size of a compaction output table.
    - ``block_size`` (4096), ``compression`` (``"lz4"`` or None),
      ``bloom_bits_per_key`` (10; 0 disables the filter): table format.
    - ``block_cache_bytes`` (8 MiB): decoded blocks kept in memory.
    - ``max_open_tables``: table files kept open, each with its index and
      bloom filter in memory. The default is 1,000, or a quarter of the
      process's open-file limit (``RLIMIT_NOFILE``) when that is lower.
    - ``level0_compaction_trigger`` (4 files), ``level0_slowdown_trigger``
      (8 files: each write first sleeps ``slowdown_delay`` seconds),
      ``level0_stop_trigger`` (12 files: writes wait).
    - ``level1_bytes`` (10 MiB) and ``level_size_ratio`` (10): level ``n``
      may hold ``level1_bytes * level_size_ratio ** (n - 1)`` bytes.
    - ``max_levels`` (7, at most 64).
    - ``background`` (True): run flushes and compactions in a background
      thread; with False the writer that fills a memtable runs them.
    - ``verify_checksums`` (True): check data block checksums on reads.
    - ``fs``: the file system (storekit.fs), for crash tests.

    Thread-safety: every method may be called from any thread. Under
    ``sync="always"`` a write becomes visible only after its WAL record is
    fsynced, and concurrent writers share one fsync.
    """

    def __init__(
        self,
        path: str,
        *,
        sync: str = "batch",
        recovery: str = "tolerate_tail",
        read_only: bool = False,
        create: bool = True,
        fs: FileSystem | None = None,
        memtable_bytes: int = 4 << 20,
        max_immutable_memtables: int = 2,
        table_bytes: int = 2 << 20,
        block_size: int = 4096,
        compression: str | None = "lz4",
        bloom_bits_per_key: int = 10,
        block_cache_bytes: int = 8 << 20,
        max_open_tables: int | None = None,
        level0_compaction_trigger: int = 4,
        level0_slowdown_trigger: int = 8,
        level0_stop_trigger: int = 12,
        level1_bytes: int = 10 << 20,
        level_size_ratio: int = 10,
        max_levels: int = DEFAULT_MAX_LEVELS,
        slowdown_delay: float = 0.001,
        background: bool = True,
        verify_checksums: bool = True,
        sync_interval: float = 1.0,
        sync_bytes: int = 1 << 20,
        segment_bytes: int = 64 << 20,
    ) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(
                f"sync must be one of {', '.join(SYNC_POLICIES)}, not {sync!r}"
            )
        if recovery not in RECOVERY_MODES:
            raise ValueError(
                f"recovery must be one of {', '.join(RECOVERY_MODES)}, not {recovery!r}"
            )
        for name, flag in (
            ("read_only", read_only),
            ("create", create),
            ("background", background),
            ("verify_checksums", verify_checksums),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, not {flag!r}")
        if compression not in ("lz4", None):
            raise ValueError(f"compression must be 'lz4' or None, not {compression!r}")
        self._memtable_bytes = check_int("memtable_bytes", memtable_bytes, 1024)
        self._max_immutables = check_int(
            "max_immutable_memtables", max_immutable_memtables, 1
        )
        self._l0_slowdown = check_int(
            "level0_slowdown_trigger", level0_slowdown_trigger, 1
        )
        self._l0_stop = check_int("level0_stop_trigger", level0_stop_trigger, 1)
        check_int("level0_compaction_trigger", level0_compaction_trigger, 1)
        # Writes that stop before level 0 is large enough to compact would
        # wait for good.
        if level0_compaction_trigger > self._l0_stop:
            raise ValueError(
                f"level0_compaction_trigger ({level0_compaction_trigger}) must "
                f"not exceed level0_stop_trigger ({self._l0_stop})"
            )
        if self._l0_slowdown > self._l0_stop:
            raise ValueError(
                f"level0_slowdown_trigger ({self._l0_slowdown}) must not exceed "
                f"level0_stop_trigger ({self._l0_stop})"
            )
        if isinstance(slowdown_delay, bool) or not isinstance(
            slowdown_delay, (int, float)
        ):
            raise TypeError(
                f"slowdown_delay must be a number of seconds, not {slowdown_delay!r}"
            )
        if not math.isfinite(slowdown_delay) or slowdown_delay < 0:
            raise ValueError(
                f"slowdown_delay must be a finite number of seconds >= 0, "
                f"not {slowdown_delay!r}"
            )
        self._slowdown_delay = float(slowdown_delay)
        self._options = CompactionOptions(
            table_bytes=check_int("table_bytes", table_bytes, 1024),
            block_size=check_at_most(
                "block_size", check_int("block_size", block_size, 256), MAX_BLOCK_SIZE
            ),
            compression=compression,
            bloom_bits_per_key=check_at_most(
                "bloom_bits_per_key",
                check_int("bloom_bits_per_key", bloom_bits_per_key, 0),
                MAX_BLOOM_BITS_PER_KEY,
            ),
            level0_compaction_trigger=check_int(
                "level0_compaction_trigger", level0_compaction_trigger, 1
            ),
            level1_bytes=check_int("level1_bytes", level1_bytes, 1024),
            level_size_ratio=check_int("level_size_ratio", level_size_ratio, 2),
        )
        check_at_most("max_levels", check_int("max_levels", max_levels, 2), MAX_LEVELS)
        check_int("block_cache_bytes", block_cache_bytes, 0)
        if max_open_tables is None:
            max_open_tables = default_max_open_tables()
        check_int("max_open_tables", max_open_tables, 1)

        self.path = check_path(path)
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self._sync_always = sync == "always"
        self._read_only = read_only
        self._background = background and not read_only
        self._verify_checksums = verify_checksums

        # The engine lock guards the memtables, the version pointer, the
        # sequence counters and the snapshot list. Lock order, outermost
        # first: compaction lock, flush lock, manifest lock, engine lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._apply_cond = threading.Condition(self._lock)
        self._memtable = Memtable(keep_tombstones=True)
        self._immutables: list[Frozen] = []
        self._frozen_ids = 0
        self._flushed_id = 0
        self._last_sequence = 0
        self._assigned = 0
        self._snapshots: SortedList = SortedList()
        self._snapshot_list: list[int] = []
        self._closed = False
        self._closing = False
        self._failure: BaseException | None = None
        self._user_bytes = 0
        self._file_lock = None
        self._wal: WAL | None = None
        self._versions = VersionSet(self._fs, self.path, max_levels=max_levels)
        self._version: Version = self._versions.current
        self._init_jobs(block_cache_bytes, max_open_tables)

        if not self._fs.exists(self.path):
            if read_only or not create:
                raise FileNotFoundError(f"store directory {self.path} does not exist")
            self._fs.mkdir(self.path)
        if not read_only:
            self._file_lock = self._fs.lock(self._join("LOCK"))
        try:
            self._recover(recovery, sync, sync_interval, sync_bytes, segment_bytes)
        except BaseException:
            self._release_resources(failed_open=True)
            raise
        close_at_exit(self)
        self._start_background()

    # -- recovery ----------------------------------------------------------------

    def _join(self, name: str) -> str:
        return posixpath.join(self.path, name)

    # -- checks ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._fs.epoch != self._epoch:
            raise ClosedError(f"store {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._closing:
            raise ClosedError(f"store {self.path} is closing")
        if self._read_only:
            raise ReadOnlyError(f"store {self.path} was opened with read_only=True")
        if self._failure is not None:
            raise DurabilityError(
                f"store {self.path}: a WAL write failed earlier ({self._failure}); "
                "reopen it to continue"
            ) from self._failure

    # -- writes ------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = check_value(value)
        if self._sync_always:
            self._write_ops([(KIND_PUT, key, value)], len(key) + len(value))
        else:
            self._write_one(key, value, encode_put)

    def delete(self, key: bytes) -> None:
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        if self._sync_always:
            self._write_ops([(KIND_DELETE, key, None)], len(key))
        else:
            self._write_one(key, None, encode_delete)

    def _write_one(self, key: bytes, value: bytes | None, encode: Any) -> None:
        """Write one put (or a delete when ``value`` is None) without fsync waits.

        The path of ``put`` and ``delete`` under ``sync="batch"`` and
        ``"none"``: the same steps as ``_write_ops`` for one operation,
        with no batch built.
        """
        with self._lock:
            # The conditions of _check_writable, tested inline so that a
            # healthy store makes no call: keep the two in step.
            if (
                self._closed
                or self._closing
                or self._failure is not None
                or self._read_only
                or self._fs.epoch != self._epoch
            ):
                self._check_writable()
            memtable = self._memtable
            if memtable.approximate_bytes >= self._memtable_bytes or self._slow_writes:
                self._make_room_locked()
                memtable = self._memtable
            sequence = self._last_sequence + 1
            payload = (
                encode(key, sequence) if value is None else encode(key, value, sequence)
            )
            try:
                self._wal.append_record(payload)  # type: ignore[union-attr]
            except DurabilityError as exc:
                self._failure = exc
                raise
            memtable.add(key, sequence, value, self._snapshot_list)
            self._last_sequence = self._assigned = sequence
            self._user_bytes += len(key) if value is None else len(key) + len(value)
        if self._inline_work:
            self._run_inline_work()

    def write(self, batch: WriteBatch) -> None:
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        ops = list(batch)
        if ops:
            self._write_ops(ops, batch.approximate_size)
        else:
            # An empty batch writes nothing but still reports a closed or
            # read-only store, as a non-empty one would.
            with self._lock:
                self._check_writable()

    def _write_ops(self, ops: list[tuple[int, bytes, bytes | None]], size: int) -> None:
        if self._sync_always:
            self._write_synced(ops, size)
        else:
            with self._lock:
                self._check_writable()
                if (
                    self._memtable.approximate_bytes >= self._memtable_bytes
                    or self._slow_writes
                ):
                    self._make_room_locked()
                first = self._last_sequence + 1
                try:
                    self._wal.append_record(encode_batch(ops, first))  # type: ignore[union-attr]
                except DurabilityError as exc:
                    self._failure = exc
                    raise
                self._last_sequence = self._assigned = self._memtable.apply(
                    ops, first, self._snapshot_list
                )
                self._user_bytes += size
        if self._inline_work:
            self._run_inline_work()

    def _write_synced(
        self, ops: list[tuple[int, bytes, bytes | None]], size: int
    ) -> None:
        """Append under the lock, share an fsync outside it, apply in sequence order."""
        wal = self._wal
        assert wal is not None
        with self._lock:
            self._check_writable()
            if (
                self._memtable.approximate_bytes >= self._memtable_bytes
                or self._slow_writes
            ):
                self._make_room_locked()
            first = self._assigned + 1
            try:
                _, mark = wal.append_nowait(encode_batch(ops, first))
            except DurabilityError as exc:
                self._failure = exc
                raise
            self._assigned = first + len(ops) - 1
        try:
            wal.wait_durable(mark)
        except (DurabilityError, ClosedError) as exc:
            with self._lock:
                if isinstance(exc, DurabilityError) and self._failure is None:
                    self._failure = exc
                self._apply_cond.notify_all()
            raise
        with self._lock:
            while self._last_sequence != first - 1:
                self._check_applying()
                self._apply_cond.wait()
            self._last_sequence = self._memtable.apply(ops, first, self._snapshot_list)
            self._user_bytes += size
            self._apply_cond.notify_all()

    def _check_applying(self) -> None:
        if self._failure is not None:
            raise DurabilityError(
                f"store {self.path} failed before this write was applied "
                f"({self._failure}); reopen it to continue"
            ) from self._failure
        self._check_open()

    def _make_room_locked(self, force: bool = False) -> None:
        """Slow down, wait or switch memtables so the next write fits.

        With ``force`` the memtable is switched even when it is not full
        (``flush``). Called and returns with the engine lock held; waiting
        releases it.
        """
        delayed = False
        stall_started: float | None = None
        try:
            while True:
                self._check_writable()
                if self._slow_writes and not delayed and not force and self._background:
                    # One short sleep per write while level 0 is over the
                    # slowdown trigger gives the compaction thread the GIL.
                    delayed = True
                    self._slowdowns += 1
                    self._lock.release()
                    try:
                        time.sleep(self._slowdown_delay)
                    finally:
                        self._lock.acquire()
                    continue
                if (
                    not force
                    and self._memtable.approximate_bytes < self._memtable_bytes
                ):
                    return
                reason = self._stall_reason_locked()
                if reason is None:
                    self._switch_memtable_locked()
                    return
                if stall_started is None:
                    stall_started = time.monotonic()
                    self._begin_stall_locked(reason)
                self._cond.notify_all()
                self._cond.wait(timeout=0.5)
        finally:
            if stall_started is not None:
                self._end_stall_locked(time.monotonic() - stall_started)

    def _stall_reason_locked(self) -> str | None:
        """Return why a memtable switch must wait now, or None."""
        waiting = len(self._immutables)
        if waiting < self._max_immutables and (
            not self._background or len(self._version.levels[0]) < self._l0_stop
        ):
            return None
        if waiting >= self._max_immutables:
            reason = f"{waiting} memtables wait for a flush"
        else:
            reason = f"level 0 has {len(self._version.levels[0])} tables"
        error = self._background_error
        if error is not None or not self._background:
            # Waiting on a job that just failed could block for good.
            raise DurabilityError(
                f"store {self.path}: the write must wait ({reason}) for a flush or "
                f"compaction that failed ({error}); retry it later or reopen the store"
            ) from error
        return reason

    def _switch_memtable_locked(self) -> None:
        """Freeze the active memtable and start a WAL segment for the next one."""
        while self._last_sequence != self._assigned:
            # Under sync="always" appended writes may still be waiting to be
            # applied; they belong to the memtable of their WAL segment.
            self._check_applying()
            self._apply_cond.wait()
        try:
            segment = self._wal.rotate()  # type: ignore[union-attr]
        except DurabilityError as exc:
            self._failure = exc
            raise
        self._frozen_ids += 1
        self._immutables.append(Frozen(self._memtable, segment, self._frozen_ids))
        self._memtable = Memtable(keep_tombstones=True)
        self._request_work_locked()

    # -- reads -------------------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        with self._lock:
            if self._closed or self._fs.epoch != self._epoch:
                raise ClosedError(f"store {self.path} is closed")
            versions = self._memtable.versions_of(key)
            if versions is None and self._immutables:
                for frozen in reversed(self._immutables):
                    versions = frozen.memtable.versions_of(key)
                    if versions is not None:
                        break
            version = self._version
        if versions is not None:
            # The newest version, as Memtable.get returns it without a snapshot.
            value = versions[-1][1]
            return default if value is None else value
        # The loop of _table_get, repeated here to save a call on every
        # lookup that reaches the tables: keep the two in step.
        readers = self._readers
        hashed = key_hash(key)
        found = None
        for smallest, largest, meta in version.level0_ranges:
            if smallest <= key <= largest:
                reader = readers.get(meta.number) or self._reader(meta)
                found = reader.get_hashed(key, hashed, MAX_SEQUENCE)
                if found is not None:
                    break
        else:
            for largest_keys, smallest_keys, files in version.deeper_levels:
                index = bisect_left(largest_keys, key)
                if index < len(largest_keys) and smallest_keys[index] <= key:
                    meta = files[index]
                    reader = readers.get(meta.number) or self._reader(meta)
                    found = reader.get_hashed(key, hashed, MAX_SEQUENCE)
                    if found is not None:
                        break
        if found is None:
            return default
        value = found[1]
        return default if value is None else value

    def _get_at(self, key: bytes, sequence: int, default: bytes | None) -> bytes | None:
        key = check_key(key)
        with self._lock:
            self._check_open()
            found = self._memtable.get(key, sequence)
            if found is None:
                for frozen in reversed(self._immutables):
                    found = frozen.memtable.get(key, sequence)
                    if found is not None:
                        break
            version = self._version
        if found is None:
            found = self._table_get(version, key, sequence)
            if found is None:
                return default
        value = found[1]
        return default if value is None else value

    def _table_get(
        self, version: Version, key: bytes, sequence: int
    ) -> tuple[int, bytes | None] | None:
        """Return the newest entry of ``key`` at ``sequence`` in the tables, or None.

        Checks the level-0 tables that contain the key, newest first, then
        at most one table per deeper level, as ``Version.find`` orders them.
        """
        readers = self._readers
        hashed = key_hash(key)
        for smallest, largest, meta in version.level0_ranges:
            if smallest <= key <= largest:
                reader = readers.get(meta.number) or self._reader(meta)
                found = reader.get_hashed(key, hashed, sequence)
                if found is not None:
                    return found
        for largest_keys, smallest_keys, files in version.deeper_levels:
            index = bisect_left(largest_keys, key)
            if index < len(largest_keys) and smallest_keys[index] <= key:
                meta = files[index]
                reader = readers.get(meta.number) or self._reader(meta)
                found = reader.get_hashed(key, hashed, sequence)
                if found is not None:
                    return found
        return None

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        low, high = resolve_bounds(start, end, prefix, reverse, keys_only)
        with self._lock:
            self._check_open()
            sequence = self._last_sequence
            self._add_snapshot_locked(sequence)
            view = (self._memtable, list(self._immutables), self._version)
        return self._iterator(low, high, reverse, keys_only, sequence, view, owns=True)

    def _scan_at(
        self,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        keys_only: bool,
        sequence: int,
    ) -> Iterator[ScanItem]:
        with self._lock:
            self._check_open()
            view = (self._memtable, list(self._immutables), self._version)
        return self._iterator(low, high, reverse, keys_only, sequence, view, owns=False)

    def _iterator(
        self, low, high, reverse, keys_only, sequence, view, owns
    ) -> ScanIterator:
        release = (lambda: self._release_snapshot(sequence)) if owns else None
        if low is not None and high is not None and low >= high:
            return ScanIterator(iter(()), release)
        memtable, immutables, version = view
        sources: list[Any] = []
        if len(memtable):
            # An empty active memtable can only gain writes numbered above
            # ``sequence``, which this scan does not see.
            sources.append(
                memtable_entries(
                    memtable, low, high, reverse, sequence, self._lock, self._check_open
                )
            )
        for frozen in reversed(immutables):
            sources.append(
                memtable_entries(frozen.memtable, low, high, reverse, sequence, None)
            )
        for meta in version.levels[0]:
            if meta.overlaps(low, high):
                sources.append(self._reader(meta).iterate(low, high, reverse))
        for files in version.levels[1:]:
            if files:
                sources.append(level_entries(files, self._reader, low, high, reverse))
        if reverse:
            items = visible_items(merge_entries(sources, True), sequence, keys_only)
        else:
            items = merge_visible(sources, sequence, keys_only)
        return ScanIterator(items, release, version)

    # -- snapshots ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._check_open()
            sequence = self._last_sequence
            self._add_snapshot_locked(sequence)
        return SequenceSnapshot(self, sequence)

    def _add_snapshot_locked(self, sequence: int) -> None:
        self._snapshots.add(sequence)
        self._snapshot_list = list(self._snapshots)

    def _release_snapshot(self, sequence: int) -> None:
        with self._lock:
            self._snapshots.discard(sequence)
            self._snapshot_list = list(self._snapshots)

    # -- flush and compaction requests ---------------------------------------------

    def flush(self) -> None:
        """Fsync the WAL and write the memtable to a level-0 table.

        Returns once every write made before the call is in a table. Raises
        DurabilityError when that flush failed; the data stays in the WAL
        and the memtable, and the flush is retried.
        """
        with self._lock:
            self._check_writable()
            if len(self._memtable):
                self._make_room_locked(force=True)  # rotates, which fsyncs the WAL
                synced = True
            else:
                synced = False
            target = self._immutables[-1].id if self._immutables else None
            failures = self._flush_failures
        if not synced:
            try:
                self._wal.sync()  # type: ignore[union-attr]
            except DurabilityError as exc:
                self._failure = exc
                raise
        if target is not None:
            self._wait_flushed(target, failures)

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Flush, then compact every level's tables in ``[start, end)`` down to one level.

        The range's data ends in one level: the deepest that contains data,
        or a deeper one when the data exceeds that level's target size.
        Overwritten values and deleted keys are dropped where no snapshot
        needs them. Runs in the calling thread, and background compactions
        wait until it returns.
        """
        low = check_optional_key(start, "start")
        high = check_optional_key(end, "end")
        self.flush()
        try:
            self._compact_range(low, high)
        except _Stopped:
            # close() from another thread, or a crash of the file system,
            # stopped the compaction between two chunks.
            raise ClosedError(
                f"store {self.path} was closed during compact()"
            ) from None
        except OSError as exc:
            # Every table the compaction read is still in place and named by
            # the manifest, so the store stays usable.
            raise StorekitError(f"compaction of {self.path} failed: {exc}") from exc

    # -- stats and verification ----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return levels, memtables, flushes, compactions, stalls, caches and WAL counters.

        ``write_amplification`` is the bytes written to the WAL and to
        tables divided by the key and value bytes written since open.
        """
        with self._lock:
            self._check_open()
            version = self._version
            result: dict[str, Any] = {
                "engine": "lsm",
                "memtable_bytes": self._memtable.approximate_bytes,
                "memtable_keys": len(self._memtable),
                "immutable_memtables": len(self._immutables),
                "immutable_bytes": sum(
                    f.memtable.approximate_bytes for f in self._immutables
                ),
                "last_sequence": self._last_sequence,
                "snapshots": len(self._snapshots),
                "user_bytes_written": self._user_bytes,
            }
        result.update(self._job_stats(version))
        if self._wal is not None:
            wal_stats = self._wal.stats()
            result["wal"] = wal_stats
            result["recovery"] = wal_stats["recovery"]
            written = wal_stats["bytes_written"] + result["table_bytes_written"]
            result["write_amplification"] = (
                written / result["user_bytes_written"]
                if result["user_bytes_written"]
                else 0.0
            )
        return result

    def verify(self) -> dict[str, Any]:
        """Check every block checksum of every table and every WAL record.

        Returns counts; raises CorruptionError naming the file and offset of
        the first damage.
        """
        with self._lock:
            self._check_open()
            version = self._version
        blocks = 0
        tables = 0
        for _, meta in version.files():
            blocks += self._reader(meta).verify()
            tables += 1
        records = 0
        if self._wal is not None:
            for _ in self._wal.replay():
                records += 1
        return {"tables": tables, "blocks": blocks, "wal_records": records}

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Stop background work, fsync the WAL, close files and release the lock."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            wait_for_synced_writes(self)
            self._closed = True
            self._cond.notify_all()
            self._apply_cond.notify_all()
        forget_at_exit(self)
        self._stop_background()
        if not self._read_only and self._fs.epoch == self._epoch:
            self._delete_obsolete_files()
        self._release_resources(failed_open=False)

    def _release_resources(self, failed_open: bool) -> None:
        alive = self._fs.epoch == self._epoch
        error: BaseException | None = None
        if self._wal is not None:
            try:
                self._wal.close()
            except DurabilityError as exc:
                error = exc
        self._versions.close()
        self._close_readers()
        if self._file_lock is not None and alive:
            self._file_lock.release()
        self._file_lock = None
        if error is not None and self._failure is None and not failed_open:
            raise error

    def _check_invariants(self) -> None:
        """Raise AssertionError if levels, memtables or snapshots are inconsistent."""
        with self._lock:
            version = self._version
            immutables = list(self._immutables)
            assert list(self._snapshots) == self._snapshot_list
            if not self._sync_always:
                assert self._assigned == self._last_sequence
        version.check_invariants()
        ids = [frozen.id for frozen in immutables]
        assert ids == sorted(ids), ids
        for frozen in immutables:
            assert frozen.memtable.last_sequence <= self._last_sequence
        tables_sequence = max(
            (meta.largest_sequence for _, meta in version.files()), default=0
        )
        assert tables_sequence <= self._last_sequence, (
            tables_sequence,
            self._last_sequence,
        )

    @property
    def closed(self) -> bool:
        """True once closed, or once the file system crashed under the store."""
        return self._closed or self._fs.epoch != self._epoch

    def __repr__(self) -> str:
        return f"<LSMStore {self.path!r}>"
