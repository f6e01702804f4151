"""Background jobs of LSMStore: flushes, compactions and table-file upkeep.

``BackgroundJobs`` is a mixin of LSMStore holding the job side of the
engine: one background thread runs every job, flushes first, and a long
compaction flushes a waiting memtable between chunks so writers do not
wait for the whole compaction. With ``background=False`` the writer that
froze a memtable runs the jobs after its write.

A failed job leaves the data where it was (memtables and WAL, or the
input tables), deletes the files it wrote, logs the error and is retried
after a pause that doubles up to two seconds.
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
import weakref
from typing import Any

from ..errors import ClosedError, CorruptionError, DurabilityError
from .block_cache import BlockCache
from .compaction import (
    Compaction,
    TableOutputs,
    level_max_bytes,
    level_scores,
    manual_compaction,
    pick_compaction,
    run_compaction,
)
from .manifest import table_name
from .table import TableReader
from .version import FileMetadata, Version, VersionEdit

__all__ = ["BackgroundJobs"]

logger = logging.getLogger("storekit.lsm")


class _Stopped(Exception):
    """Raised inside a job when the store closes or its file system crashed."""


class BackgroundJobs:
    """Flush and compaction jobs of LSMStore, and the thread that runs them.

    A mixin of LSMStore: it works on the engine's lock, memtables, version
    set, WAL and file system; the module docstring gives the scheduling.
    """

    # -- state -------------------------------------------------------------------

    def _init_jobs(self, block_cache_bytes: int, max_open_tables: int) -> None:
        self._block_cache = BlockCache(block_cache_bytes)
        # Open table readers in the order they were opened. Past
        # max_open_tables the oldest is dropped (see _reader).
        self._readers: dict[int, TableReader] = {}
        self._max_open_tables = max_open_tables
        # Readers dropped from _readers that a get or scan still uses. A
        # request for the same table takes one back instead of opening the
        # file a second time.
        self._dropped_readers: weakref.WeakValueDictionary[int, TableReader] = (
            weakref.WeakValueDictionary()
        )
        self._readers_lock = threading.Lock()

        self._flush_lock = threading.Lock()
        self._compaction_lock = threading.Lock()
        # Tables removed from the current version, deleted from disk once no
        # live version (held by a running scan or get) names them.
        self._obsolete: set[int] = set()
        self._live_versions: weakref.WeakSet = weakref.WeakSet()
        self._pointers: dict[int, bytes] = {}

        self._slow_writes = False
        self._compaction_needed = False
        self._inline_work = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._background_error: BaseException | None = None
        self._flush_failures = 0

        self._stalling = False
        self._stall_seconds = 0.0
        self._slowdowns = 0
        self._counters = dict.fromkeys(
            (
                "flushes",
                "flush_bytes_written",
                "compactions",
                "trivial_moves",
                "compaction_bytes_read",
                "compaction_bytes_written",
                "compaction_entries_dropped",
                "background_errors",
                "stalls",
                "table_cache_evictions",
            ),
            0,
        )
        self._retired_reader_counters = dict.fromkeys(_READER_COUNTERS, 0)

    def _set_version_locked(self, version: Version) -> None:
        """Publish ``version`` as the current one; the caller holds the engine lock."""
        self._version = version
        self._live_versions.add(version)
        self._compaction_needed = max(level_scores(version, self._options)) >= 1
        level0 = len(version.levels[0])
        slow = level0 >= self._l0_slowdown
        if slow != self._slow_writes:
            self._slow_writes = slow
            if slow:
                logger.warning(
                    "%s: level 0 has %d tables; each write sleeps %.3f s until "
                    "compaction catches up",
                    self.path,
                    level0,
                    self._slowdown_delay,
                )
            else:
                logger.warning(
                    "%s: level 0 is down to %d tables; writes run at full speed",
                    self.path,
                    level0,
                )
        self._cond.notify_all()

    def _install(self, version: Version) -> None:
        with self._lock:
            self._set_version_locked(version)

    def _request_work_locked(self) -> None:
        if self._background:
            self._cond.notify_all()
        else:
            self._inline_work = True

    def _begin_stall_locked(self, reason: str) -> None:
        self._counters["stalls"] += 1
        if not self._stalling:
            self._stalling = True
            logger.warning("%s: writes stalled: %s", self.path, reason)

    def _end_stall_locked(self, seconds: float) -> None:
        self._stall_seconds += seconds
        if self._stalling:
            self._stalling = False
            logger.warning(
                "%s: writes resumed after a %.3f s stall", self.path, seconds
            )

    # -- the background thread ------------------------------------------------------

    def _start_background(self) -> None:
        if self._read_only:
            return
        if not self._background:
            self._inline_work = bool(self._immutables) or self._compaction_needed
            return
        self._thread = threading.Thread(
            target=self._background_main, name=f"storekit-lsm {self.path}", daemon=True
        )
        self._thread.start()

    def _stop_requested(self) -> bool:
        return self._stopping or self._closed or self._fs.epoch != self._epoch

    def _stop_background(self) -> None:
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _background_main(self) -> None:
        pause = _FIRST_RETRY_PAUSE
        while True:
            with self._lock:
                while not self._stop_requested() and not (
                    self._immutables or self._compaction_needed
                ):
                    # The timeout bounds how late a crash is noticed and
                    # how long obsolete tables wait for deletion.
                    if not self._cond.wait(timeout=1.0) and self._obsolete:
                        break
                if self._stop_requested():
                    return
            try:
                if not self._flush_one():
                    self._compact_one()
                self._delete_obsolete_files()
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - logged, then retried
                if self._stop_requested():
                    return
                self._note_background_error(exc)
                with self._lock:
                    self._cond.wait(timeout=pause)
                pause = min(pause * 2, _MAX_RETRY_PAUSE)
            else:
                pause = _FIRST_RETRY_PAUSE
                self._background_error = None

    def _run_inline_work(self) -> None:
        """Run pending flushes and compactions in the writer's thread."""
        self._inline_work = False
        try:
            while self._flush_one():
                pass
            while self._compact_one():
                pass
            self._delete_obsolete_files()
        except _Stopped:
            return
        except Exception as exc:  # noqa: BLE001 - the write itself succeeded
            if self._stop_requested():
                return
            self._note_background_error(exc)
            self._inline_work = True  # retried after the next write
        else:
            self._background_error = None

    def _note_background_error(self, exc: BaseException) -> None:
        self._background_error = exc
        self._counters["background_errors"] += 1
        logger.error(
            "%s: background flush or compaction failed, retrying later: %s",
            self.path,
            exc,
        )

    # -- flush ------------------------------------------------------------------------

    def _flush_one(self) -> bool:
        """Write the oldest immutable memtable to a level-0 table.

        Returns False when no immutable memtable waits.

        Immutable memtables are flushed strictly oldest first, so the WAL
        segments before a flushed memtable never hold unflushed records.
        """
        with self._flush_lock:
            with self._lock:
                if not self._immutables:
                    return False
                frozen = self._immutables[0]
            if self._stop_requested():
                raise _Stopped
            started = time.monotonic()
            outputs = TableOutputs(
                self._fs, self.path, self._versions.new_file_number, self._options, None
            )
            try:
                if len(frozen.memtable):
                    outputs.write_memtable(frozen.memtable)
                files = outputs.finish()
            except BaseException as exc:
                self._abandon_quietly(outputs)
                self._flush_failed(exc)
                raise
            edit = VersionEdit(
                added=[(0, meta) for meta in files],
                last_sequence=frozen.memtable.last_sequence,
                wal_segment=frozen.wal_segment,
            )

            def install(version: Version) -> None:
                with self._lock:
                    assert self._immutables[0] is frozen
                    self._immutables.pop(0)
                    self._set_version_locked(version)

            try:
                # A failed edit leaves its table on disk, because the record
                # may have reached the manifest. The next open removes the
                # table if it did not.
                self._versions.log_and_apply(edit, install)
            except BaseException as exc:
                self._flush_failed(exc)
                raise
            written = sum(meta.size for meta in files)
            self._counters["flushes"] += 1
            self._counters["flush_bytes_written"] += written
            logger.info(
                "%s: flushed %d keys to %s (%d bytes) in %.3f s",
                self.path,
                len(frozen.memtable),
                ", ".join(table_name(meta.number) for meta in files) or "no table",
                written,
                time.monotonic() - started,
            )
        try:
            if frozen.wal_segment is not None:
                self._wal.remove_segments_before(frozen.wal_segment)
        finally:
            # flush() returns once this is set, so its WAL segments are gone.
            with self._lock:
                self._flushed_id = frozen.id
                self._cond.notify_all()
        return True

    def _flush_failed(self, exc: BaseException) -> None:
        with self._lock:
            self._flush_failures += 1
            self._background_error = exc
            self._cond.notify_all()

    def _abandon_quietly(self, outputs: TableOutputs) -> None:
        try:
            outputs.abandon()
        except Exception as exc:  # noqa: BLE001 - the first error is the one raised
            logger.warning(
                "%s: removing a failed job's tables failed: %s", self.path, exc
            )

    def _wait_flushed(self, target: int, failures: int) -> None:
        """Return once the immutable memtable ``target`` is flushed.

        Raises DurabilityError when a flush attempt fails meanwhile.
        """
        if not self._background:
            while True:
                with self._lock:
                    if self._flushed_id >= target:
                        return
                try:
                    self._flush_one()
                except (_Stopped, ClosedError):
                    raise ClosedError(f"store {self.path} is closed") from None
                except Exception as exc:
                    raise DurabilityError(
                        f"store {self.path}: flush failed ({exc}); the writes stay "
                        "in the WAL and the flush is retried"
                    ) from exc
        with self._lock:
            while self._flushed_id < target:
                self._check_open()
                if self._flush_failures != failures:
                    error = self._background_error
                    raise DurabilityError(
                        f"store {self.path}: flush failed ({error}); the writes stay "
                        "in the WAL and the flush is retried"
                    ) from error
                self._cond.notify_all()
                self._cond.wait(timeout=0.5)

    # -- compaction -----------------------------------------------------------------------

    def _compact_one(self) -> bool:
        """Run the most urgent compaction; return False when none is needed."""
        with self._compaction_lock:
            with self._lock:
                version = self._version
            compaction = pick_compaction(version, self._options, self._pointers)
            if compaction is None:
                return False
            self._run_compaction_job(compaction, version, allow_move=True)
            return True

    def _compact_range(self, low: bytes | None, high: bytes | None) -> None:
        """Compact ``[low, high]`` level by level into one level that fits it.

        That is the deepest non-empty level, or a deeper one when the data
        is larger than the level's target size, because otherwise
        background compaction would at once move part of it down again.
        Background compactions wait until the whole range is done.
        """
        with self._compaction_lock:
            with self._lock:
                deepest = max(self._version.deepest_nonempty_level(), 1)
            first = 0
            while True:
                for level in range(first, deepest):
                    self._compact_level(level, low, high)
                with self._lock:
                    version = self._version
                fits = version.level_bytes(deepest) <= level_max_bytes(
                    self._options, deepest
                )
                if fits or deepest + 1 >= version.max_levels:
                    break
                first = deepest
                deepest += 1
            del version
        self._delete_obsolete_files()

    def _compact_level(self, level: int, low: bytes | None, high: bytes | None) -> None:
        # A separate frame, so the old version is released before the
        # obsolete tables are deleted. The caller holds the compaction lock.
        with self._lock:
            self._check_open()
            version = self._version
        compaction = manual_compaction(version, level, low, high)
        if compaction is not None:
            self._run_compaction_job(compaction, version, allow_move=False)

    def _run_compaction_job(
        self, compaction: Compaction, version: Version, allow_move: bool
    ) -> None:
        level = compaction.level
        removed = [(level, meta.number) for meta in compaction.inputs]
        removed += [(level + 1, meta.number) for meta in compaction.next_inputs]
        started = time.monotonic()
        if allow_move and compaction.is_trivial_move:
            meta = compaction.inputs[0]
            edit = VersionEdit(removed=removed, added=[(level + 1, meta)])
            self._versions.log_and_apply(edit, self._install)
            self._counters["trivial_moves"] += 1
            logger.info(
                "%s: moved %s from level %d to level %d",
                self.path,
                table_name(meta.number),
                level,
                level + 1,
            )
        else:
            with self._lock:
                snapshots = list(self._snapshot_list)
            outputs = TableOutputs(
                self._fs,
                self.path,
                self._versions.new_file_number,
                self._options,
                self._options.table_bytes,
            )
            counters: dict[str, int] = {}
            try:
                files = run_compaction(
                    compaction,
                    version,
                    self._reader,
                    outputs,
                    snapshots,
                    counters,
                    self._between_compaction_chunks,
                )
            except BaseException:
                self._abandon_quietly(outputs)
                raise
            edit = VersionEdit(
                removed=removed, added=[(level + 1, meta) for meta in files]
            )
            self._versions.log_and_apply(edit, self._install)
            with self._lock:
                self._obsolete.update(number for _, number in removed)
            read = compaction.input_bytes()
            written = sum(meta.size for meta in files)
            self._counters["compactions"] += 1
            self._counters["compaction_bytes_read"] += read
            self._counters["compaction_bytes_written"] += written
            self._counters["compaction_entries_dropped"] += counters.get("dropped", 0)
            logger.info(
                "%s: compacted %d tables of level %d and %d of level %d (%s) into "
                "%d tables, %d bytes read, %d written, %d entries dropped, %.3f s",
                self.path,
                len(compaction.inputs),
                level,
                len(compaction.next_inputs),
                level + 1,
                compaction.reason,
                len(files),
                read,
                written,
                counters.get("dropped", 0),
                time.monotonic() - started,
            )
        self._pointers[level] = max(meta.largest_key for meta in compaction.inputs)

    def _between_compaction_chunks(self) -> None:
        if self._stop_requested():
            raise _Stopped
        if self._immutables:
            self._flush_one()

    # -- table files ------------------------------------------------------------------------

    def _reader(self, meta: FileMetadata) -> TableReader:
        """Return the open reader of table ``meta``, opening it on first use."""
        reader = self._readers.get(meta.number)
        if reader is not None:
            return reader
        with self._readers_lock:
            if self._closed:
                # A scan that outlives the store must not open files that
                # close() can no longer release.
                raise ClosedError(f"store {self.path} is closed")
            reader = self._readers.get(meta.number)
            if reader is None:
                reader = self._dropped_readers.pop(meta.number, None)
                if reader is not None and not reader.closed:
                    for name in _READER_COUNTERS:
                        self._retired_reader_counters[name] -= getattr(reader, name)
                    self._readers[meta.number] = reader
                    if len(self._readers) > self._max_open_tables:
                        self._drop_oldest_reader_locked()
                    return reader
                path = posixpath.join(self.path, table_name(meta.number))
                try:
                    reader = TableReader(
                        self._fs,
                        path,
                        meta.number,
                        block_cache=self._block_cache,
                        verify_checksums=self._verify_checksums,
                    )
                except FileNotFoundError:
                    raise CorruptionError(
                        f"table {path} named by the manifest is missing", path, 0
                    ) from None
                self._readers[meta.number] = reader
                if len(self._readers) > self._max_open_tables:
                    self._drop_oldest_reader_locked()
        return reader

    def _drop_oldest_reader_locked(self) -> None:
        """Forget the reader opened first, to stay within ``max_open_tables``.

        The reader is not closed here, because a get or scan in another
        thread may still use it. ``TableReader.__del__`` closes its file
        once the last such reference is gone. Dropping by open order and
        not by last use keeps the lookup path free of bookkeeping.
        """
        oldest = next(iter(self._readers))
        reader = self._readers.pop(oldest)
        for name in _READER_COUNTERS:
            self._retired_reader_counters[name] += getattr(reader, name)
        self._dropped_readers[oldest] = reader
        self._counters["table_cache_evictions"] += 1

    def _retire_reader(self, reader: TableReader) -> None:
        for name in _READER_COUNTERS:
            self._retired_reader_counters[name] += getattr(reader, name)
        reader.close()

    def _delete_obsolete_files(self) -> None:
        """Delete tables that compaction replaced and no live version names."""
        with self._lock:
            if not self._obsolete:
                return
            live: set[int] = set()
            for version in list(self._live_versions):
                live |= version.file_numbers()
            doomed = [number for number in self._obsolete if number not in live]
            self._obsolete.difference_update(doomed)
        for number in doomed:
            with self._readers_lock:
                reader = self._readers.pop(number, None)
                dropped = self._dropped_readers.pop(number, None)
            if reader is not None:
                self._retire_reader(reader)
            if dropped is not None:
                dropped.close()
            self._block_cache.evict_file(number)
            if self._fs.epoch != self._epoch:
                return  # the files now belong to the store reopened after the crash
            # NOTE: a crash between this check and the removal can still
            # remove a file of the store reopened after the crash.
            self._fs.remove(posixpath.join(self.path, table_name(number)))

    def _close_readers(self) -> None:
        with self._readers_lock:
            readers = list(self._readers.values())
            self._readers.clear()
            dropped = list(self._dropped_readers.values())
            self._dropped_readers.clear()
        for reader in readers:
            self._retire_reader(reader)
        # Scans that outlive the store raise ClosedError on their next
        # block read, as they do with the readers above.
        for reader in dropped:
            reader.close()

    # -- stats ----------------------------------------------------------------------------

    def _job_stats(self, version: Version) -> dict[str, Any]:
        levels = [
            {
                "level": level,
                "tables": len(files),
                "bytes": sum(meta.size for meta in files),
            }
            for level, files in enumerate(version.levels)
        ]
        reader_counters = dict(self._retired_reader_counters)
        for reader in list(self._readers.values()):
            for name in _READER_COUNTERS:
                reader_counters[name] += getattr(reader, name)
        counters = dict(self._counters)
        error = self._background_error
        return {
            "levels": levels,
            "tables": sum(entry["tables"] for entry in levels),
            "table_bytes": sum(entry["bytes"] for entry in levels),
            **counters,
            "table_bytes_written": counters["flush_bytes_written"]
            + counters["compaction_bytes_written"],
            "stall_seconds": self._stall_seconds,
            "slowdowns": self._slowdowns,
            "open_tables": len(self._readers),
            "block_cache_hits": self._block_cache.hits,
            "block_cache_misses": self._block_cache.misses,
            "block_cache_bytes": self._block_cache.usage,
            "bloom_checks": reader_counters["bloom_checks"],
            "bloom_saved_reads": reader_counters["bloom_negatives"],
            "bloom_false_positives": reader_counters["bloom_false_positives"],
            "block_reads": reader_counters["block_reads"],
            "last_background_error": None if error is None else str(error),
            # True while a flush or compaction is waiting or running.
            "background_work": bool(self._immutables)
            or self._compaction_needed
            or self._compaction_lock.locked(),
        }


def default_max_open_tables() -> int:
    """Return 1,000, or a quarter of the soft open-file limit when that is lower."""
    limit = _DEFAULT_MAX_OPEN_TABLES
    try:
        import resource
    except ImportError:  # not on POSIX
        return limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limit = min(limit, max(_MIN_OPEN_TABLES, soft // 4))
    return limit


#: LevelDB's default for its max_open_files option.
_DEFAULT_MAX_OPEN_TABLES = 1000
#: Floor of the limit derived from RLIMIT_NOFILE.
_MIN_OPEN_TABLES = 16

_READER_COUNTERS = (
    "bloom_checks",
    "bloom_negatives",
    "bloom_false_positives",
    "block_reads",
)
_FIRST_RETRY_PAUSE = 0.05
_MAX_RETRY_PAUSE = 2.0
