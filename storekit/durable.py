"""DurableStore: a memtable made durable by a WAL and periodic checkpoints.

Directory layout::

    LOCK          held while a writer has the store open
    wal/          WAL segments (storekit.wal)
    CHECKPOINT    every key and value as of one sequence number

Each write is one WAL record holding an encoded WriteBatch (storekit.batch),
so a batch is applied whole or not at all after a crash. When the WAL has
grown by ``checkpoint_bytes`` since the last checkpoint, the store rotates
the WAL, writes the memtable as of that moment to ``CHECKPOINT.tmp``,
fsyncs it, renames it over ``CHECKPOINT`` (which fsyncs the directory) and
then deletes the WAL segments the checkpoint covers. Reopening therefore
reads one checkpoint and at most ``checkpoint_bytes`` of WAL.

The whole data set lives in memory. storekit.LSMStore keeps the same WAL
and write path but moves older data into sorted table files.
"""

from __future__ import annotations

import logging
import posixpath
import struct
import threading
from typing import Any

from ._backend import framing
from ._exit import close_at_exit, forget_at_exit
from .batch import KIND_PUT, decode_batch, encode_batch
from .errors import (
    ClosedError,
    CorruptionError,
    DurabilityError,
    ReadOnlyError,
    StorekitError,
)
from .fs import FileSystem, default_fs
from .memory import MemtableStore
from .wal import RECOVERY_MODES, SYNC_POLICIES, WAL, check_path, iter_records

__all__ = ["DurableStore", "check_common_options", "wait_for_synced_writes"]

logger = logging.getLogger("storekit.durable")

CHECKPOINT_MAGIC = b"SKCKPT\x00\x00"
CHECKPOINT_VERSION = 1
# File header: magic (8 bytes), format version (u32), reserved (u32, zero).
_CHECKPOINT_HEADER = struct.Struct("<8sII")
# Records follow in the WAL's block framing. Each payload starts with a type
# byte: _RECORD_ENTRIES (an encoded batch of puts) or _RECORD_TRAILER (last
# sequence u64, first WAL segment not covered u64, entry count u64).
_RECORD_ENTRIES = 1
_RECORD_TRAILER = 2
_TRAILER = struct.Struct("<QQQ")
# Entries per checkpoint record.
_CHECKPOINT_CHUNK = 1024


def wait_for_synced_writes(store: Any) -> None:
    """Wait, holding ``store._lock``, until every fsynced write is applied.

    Under ``sync="always"`` a write whose WAL record is fsynced waits for its
    turn to reach the memtable. Closing lets those writes finish, so none of
    them reports a failure for a write that reopening would show. The wait
    ends early when the store failed or its file system crashed.
    """
    while (
        store._last_sequence != store._assigned
        and store._failure is None
        and store._fs.epoch == store._epoch
    ):
        store._apply_cond.wait(0.1)


def check_common_options(
    sync: object, recovery: object, read_only: object, create: object
) -> None:
    """Raise TypeError/ValueError for invalid options shared by durable stores."""
    if sync not in SYNC_POLICIES:
        raise ValueError(
            f"sync must be one of {', '.join(SYNC_POLICIES)}, not {sync!r}"
        )
    if recovery not in RECOVERY_MODES:
        raise ValueError(
            f"recovery must be one of {', '.join(RECOVERY_MODES)}, not {recovery!r}"
        )
    for name, value in (("read_only", read_only), ("create", create)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")


class DurableStore(MemtableStore):
    """A durable store whose data set lives in memory: memtable, WAL, checkpoint.

    Options: ``sync`` (``"always"``, ``"batch"`` or ``"none"``; see
    storekit.wal), ``recovery`` (``"tolerate_tail"``, ``"strict"`` or
    ``"point_in_time"``), ``read_only``, ``create``, ``fs``,
    ``checkpoint_bytes`` (WAL growth that triggers a checkpoint, default
    64 MiB), ``sync_interval`` and ``sync_bytes`` (the ``batch`` window) and
    ``segment_bytes`` (WAL segment size).

    Thread-safety: all methods may be called from any thread. Under
    ``sync="always"`` a write becomes visible to readers only after its WAL
    record is fsynced, and concurrent writers share fsyncs.
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
        checkpoint_bytes: int = 64 << 20,
        sync_interval: float = 1.0,
        sync_bytes: int = 1 << 20,
        segment_bytes: int = 64 << 20,
    ) -> None:
        check_common_options(sync, recovery, read_only, create)
        if not isinstance(checkpoint_bytes, int) or checkpoint_bytes < 4096:
            raise ValueError(
                f"checkpoint_bytes must be an int of at least 4096, not {checkpoint_bytes!r}"
            )
        super().__init__()
        self.path = check_path(path)
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self._sync = sync
        self._read_only = read_only
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpoint_lock = threading.Lock()
        self._checkpoints = 0
        self._failure: BaseException | None = None
        # Under sync="always" writes are applied in sequence order after their
        # fsync; _applied is the last sequence applied to the memtable.
        self._apply_cond = threading.Condition(self._lock)
        self._assigned = 0
        self._closing = False
        self._file_lock = None
        self._wal: WAL | None = None

        if not self._fs.exists(self.path):
            if read_only or not create:
                raise FileNotFoundError(f"store directory {self.path} does not exist")
            self._fs.mkdir(self.path)
        if not read_only:
            self._file_lock = self._fs.lock(posixpath.join(self.path, "LOCK"))
        try:
            checkpoint_sequence, first_segment = self._load_checkpoint()
            self._wal = WAL(
                posixpath.join(self.path, "wal"),
                sync=sync,
                fs=self._fs,
                recovery=recovery,
                segment_bytes=segment_bytes,
                sync_interval=sync_interval,
                sync_bytes=sync_bytes,
                read_only=read_only,
                first_segment=first_segment,
                must_exist=self._fs.exists(self._checkpoint_path),
                # A read-only open takes no lock, so a writer may have
                # checkpointed and removed this segment since.
                expected_segment=0 if read_only else first_segment,
            )
            self._replay(checkpoint_sequence, first_segment)
        except BaseException:
            self._release_resources()
            raise
        self._assigned = self._last_sequence
        self._wal_bytes_at_checkpoint = self._wal.stats()["bytes_written"]
        close_at_exit(self)

    # -- recovery ---------------------------------------------------------------

    @property
    def _checkpoint_path(self) -> str:
        return posixpath.join(self.path, "CHECKPOINT")

    def _load_checkpoint(self) -> tuple[int, int]:
        """Load CHECKPOINT into the memtable; return (sequence, first WAL segment)."""
        path = self._checkpoint_path
        if not self._fs.exists(path):
            return 0, 0
        sequence, first_segment, batches = read_checkpoint(self._fs, path)
        for ops in batches:
            self._memtable.apply(ops, 1, [])
        self._memtable.first_sequence = 0
        self._last_sequence = sequence
        return sequence, first_segment

    def _replay(self, checkpoint_sequence: int, first_segment: int) -> None:
        wal = self._wal
        assert wal is not None
        if not self._read_only and first_segment:
            # A crash after the checkpoint rename but before the old
            # segments were deleted leaves them behind; they are covered.
            wal.remove_segments_before(first_segment)
        expected = checkpoint_sequence + 1
        for position, payload in wal.replay():
            try:
                sequence, ops = decode_batch(payload)
            except CorruptionError as exc:
                raise CorruptionError(
                    f"WAL record at {position} in {wal.path}: {exc}",
                    wal.path,
                    position.offset,
                ) from None
            if sequence + len(ops) <= expected:
                continue  # already in the checkpoint
            if sequence != expected:
                raise CorruptionError(
                    f"WAL record at segment {position.segment} offset {position.offset} "
                    f"starts at sequence {sequence}, expected {expected}: records are missing",
                    wal.path,
                    position.offset,
                )
            self._last_sequence = self._memtable.apply(ops, sequence, [])
            expected = self._last_sequence + 1

    # -- writes -----------------------------------------------------------------

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
                f"store {self.path} failed earlier ({self._failure}); reopen it to continue"
            ) from self._failure

    def _write_ops(self, ops: list[tuple[int, bytes, bytes | None]]) -> None:
        wal = self._wal
        assert wal is not None
        if self._sync != "always":
            with self._lock:
                self._check_writable()
                first = self._last_sequence + 1
                try:
                    wal.append(encode_batch(ops, first))
                except (DurabilityError, OSError) as exc:
                    # The record may or may not be in the WAL, so no later
                    # write can be given a sequence number safely.
                    self._failure = exc
                    raise
                self._last_sequence = self._memtable.apply(
                    ops, first, list(self._snapshots)
                )
                self._assigned = self._last_sequence
        else:
            self._write_synced(ops, wal)
        self._after_write()

    def _write_synced(self, ops, wal: WAL) -> None:
        """Append, wait for the shared fsync, then apply in sequence order."""
        with self._lock:
            self._check_writable()
            first = self._assigned + 1
            try:
                _, mark = wal.append_nowait(encode_batch(ops, first))
            except (DurabilityError, OSError) as exc:
                self._failure = exc
                raise
            self._assigned = first + len(ops) - 1
        try:
            wal.wait_durable(mark)
        except (DurabilityError, ClosedError) as exc:
            with self._lock:
                if self._failure is None and isinstance(exc, DurabilityError):
                    self._failure = exc
                self._apply_cond.notify_all()
            raise
        with self._lock:
            while self._last_sequence != first - 1:
                if self._failure is not None:
                    raise DurabilityError(
                        f"store {self.path} failed before this write was applied "
                        f"({self._failure}); reopen it to continue"
                    ) from self._failure
                self._check_open()
                self._apply_cond.wait()
            self._last_sequence = self._memtable.apply(
                ops, first, list(self._snapshots)
            )
            self._apply_cond.notify_all()

    def _after_write(self) -> None:
        wal = self._wal
        if wal is None:
            return
        grown = wal.stats()["bytes_written"] - self._wal_bytes_at_checkpoint
        if grown < self._checkpoint_bytes:
            return
        if not self._checkpoint_lock.acquire(blocking=False):
            return
        try:
            self._checkpoint_locked()
        except (OSError, StorekitError) as exc:
            # The write that triggered the checkpoint is durable already, so
            # it must not look failed. The WAL still contains everything; the
            # next attempt comes after another checkpoint_bytes of writes.
            self._wal_bytes_at_checkpoint = wal.stats()["bytes_written"]
            logger.error("checkpoint of %s failed: %s", self.path, exc)
        finally:
            self._checkpoint_lock.release()

    # -- checkpoints ------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write the data set to CHECKPOINT and delete the WAL segments it covers.

        Writers go on while the checkpoint is written: it reads a snapshot.
        """
        with self._checkpoint_lock:
            self._checkpoint_locked()

    def _checkpoint_locked(self) -> None:
        wal = self._wal
        assert wal is not None
        with self._lock:
            self._check_writable()
            while self._last_sequence != self._assigned:
                self._apply_cond.wait()
            first_segment = wal.rotate()
            sequence = self._last_sequence
            self._snapshots.add(sequence)
            self._wal_bytes_at_checkpoint = wal.stats()["bytes_written"]
        try:
            self._write_checkpoint(sequence, first_segment)
        except OSError as exc:
            # The WAL still has every write, so the store stays usable.
            raise StorekitError(f"checkpoint of {self.path} failed: {exc}") from exc
        finally:
            self._release_snapshot(sequence)
        wal.remove_segments_before(first_segment)
        self._checkpoints += 1
        logger.info(
            "checkpoint of %s at sequence %d written; WAL segments before %d removed",
            self.path,
            sequence,
            first_segment,
        )

    def _write_checkpoint(self, sequence: int, first_segment: int) -> None:
        temporary = self._checkpoint_path + ".tmp"
        handle = self._fs.open(temporary, "w")
        try:
            size = _CHECKPOINT_HEADER.size
            handle.append(
                _CHECKPOINT_HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, 0)
            )
            count = 0
            after = None
            while True:
                items, last = self._read_chunk(None, None, False, after, sequence)
                if last is None:
                    break
                after = last
                if not items:
                    continue
                ops = [(KIND_PUT, key, value) for key, value in items]
                payload = bytes([_RECORD_ENTRIES]) + encode_batch(ops, 0)
                data = framing.frame(payload, size % framing.BLOCK_SIZE)
                handle.append(data)
                size += len(data)
                count += len(ops)
            trailer = bytes([_RECORD_TRAILER]) + _TRAILER.pack(
                sequence, first_segment, count
            )
            handle.append(framing.frame(trailer, size % framing.BLOCK_SIZE))
            handle.sync()
        finally:
            handle.close()
        self._fs.rename(temporary, self._checkpoint_path)

    # -- lifecycle -----------------------------------------------------------------

    def flush(self) -> None:
        """Fsync the WAL, so every write so far survives power loss."""
        with self._lock:
            if self._read_only:
                self._check_open()
                return  # nothing was written, so nothing needs an fsync
            self._check_writable()
        assert self._wal is not None
        try:
            self._wal.sync()
        except DurabilityError as exc:
            self._failure = exc
            raise

    def verify(self) -> dict[str, Any]:
        """Check every checksum of the checkpoint and the WAL; return counts.

        Raises CorruptionError naming the file and offset of the first damage.
        """
        self._check_open()
        assert self._wal is not None
        records = 0
        for _ in self._wal.replay():
            records += 1
        checkpoint_entries = 0
        if self._fs.exists(self._checkpoint_path):
            _, _, batches = read_checkpoint(self._fs, self._checkpoint_path)
            checkpoint_entries = sum(len(ops) for ops in batches)
        return {
            "wal_records": records,
            "wal_segments": len(self._wal.segments()),
            "checkpoint_entries": checkpoint_entries,
        }

    def stats(self) -> dict[str, Any]:
        result = super().stats()
        result["engine"] = "durable-memtable"
        result["checkpoints"] = self._checkpoints
        if self._wal is not None:
            wal_stats = self._wal.stats()
            result["wal"] = wal_stats
            result["recovery"] = wal_stats["recovery"]
        return result

    def _release_resources(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def close(self) -> None:
        """Fsync the WAL, release the lock, and mark the store closed."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            wait_for_synced_writes(self)
            self._closed = True
            self._apply_cond.notify_all()
        forget_at_exit(self)
        error: BaseException | None = None
        try:
            if self._wal is not None:
                self._wal.close()
        except DurabilityError as exc:
            error = exc
        finally:
            if self._fs.epoch == self._epoch:
                self._release_resources()
        if error is not None and self._failure is None:
            raise error

    def __repr__(self) -> str:
        return f"<DurableStore {self.path!r}>"


def read_checkpoint(fs: FileSystem, path: str):
    """Read a checkpoint file; return ``(sequence, first_segment, batches)``.

    ``batches`` is a list of operation lists. Raises CorruptionError naming
    the file and offset when any check fails: a checkpoint is written to a
    temporary file, fsynced and renamed, so damage means the file changed
    after it was written.
    """
    data = fs.read_file(path)
    if len(data) < _CHECKPOINT_HEADER.size:
        raise CorruptionError(
            f"checkpoint {path} is {len(data)} bytes, too short", path, 0
        )
    magic, version, _ = _CHECKPOINT_HEADER.unpack_from(data, 0)
    if magic != CHECKPOINT_MAGIC:
        raise CorruptionError(
            f"{path} is not a storekit checkpoint (bad magic)", path, 0
        )
    if version != CHECKPOINT_VERSION:
        raise CorruptionError(
            f"checkpoint {path} has format version {version}; this storekit reads "
            f"version {CHECKPOINT_VERSION}",
            path,
            0,
        )
    records, result = iter_records(data, _CHECKPOINT_HEADER.size)
    if result[2] != framing.STATUS_OK:
        offset = result[3] if result[3] >= 0 else result[1]
        raise CorruptionError(
            f"checkpoint {path} is damaged at offset {offset}", path, offset
        )
    if not records or records[-1][1][:1] != bytes([_RECORD_TRAILER]):
        raise CorruptionError(
            f"checkpoint {path} has no trailer record", path, len(data)
        )
    batches = []
    for offset, payload in records[:-1]:
        if payload[:1] != bytes([_RECORD_ENTRIES]):
            raise CorruptionError(
                f"checkpoint {path}: unknown record type", path, offset
            )
        try:
            batches.append(decode_batch(payload[1:])[1])
        except CorruptionError as exc:
            raise CorruptionError(f"checkpoint {path}: {exc}", path, offset) from None
    trailer_offset, trailer = records[-1]
    if len(trailer) != 1 + _TRAILER.size:
        raise CorruptionError(
            f"checkpoint {path}: malformed trailer", path, trailer_offset
        )
    sequence, first_segment, count = _TRAILER.unpack_from(trailer, 1)
    loaded = sum(len(ops) for ops in batches)
    if loaded != count:
        raise CorruptionError(
            f"checkpoint {path} contains {loaded} entries but its trailer records {count}",
            path,
            trailer_offset,
        )
    return sequence, first_segment, batches
