"""Write-ahead log: segment files of checksummed records, with group commit.

A WAL is a directory of segment files named ``<number>.wal`` (12 decimal
digits). Each segment starts with a 16-byte header. Records follow in the
block framing of ``storekit._framing_py``: 32 KiB blocks of fragments with
xxh32 checksums. docs/formats.md gives every byte.

Durability: ``append`` hands the record to the operating system before it
returns. Under ``sync="always"`` it also waits until an fsync covers the
record; concurrent appenders share one fsync (group commit), because the
first waiter to find no fsync running syncs everything written so far.
Under ``sync="batch"`` a background thread fsyncs at least every
``sync_interval`` seconds, and an append fsyncs once ``sync_bytes`` bytes
are unsynced. Under ``sync="none"`` only ``sync()`` and ``close()`` fsync.
A failed write or fsync is sticky: every later append raises
DurabilityError until the WAL is reopened.

Recovery at open decides what to do with damage (see ``RECOVERY_MODES``).
A segment is fsynced before the next one starts, so only the newest
segment can end in a torn write.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import struct
import threading
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import xxhash

from ._backend import framing
from .errors import ClosedError, CorruptionError, DurabilityError, OffsetError
from .fs import File, FileSystem, default_fs

__all__ = ["WAL", "WALReader", "Position", "SYNC_POLICIES", "RECOVERY_MODES"]

logger = logging.getLogger("storekit.wal")

SYNC_POLICIES = ("always", "batch", "none")

#: ``tolerate_tail`` cuts a torn or zeroed tail of the log and raises
#: CorruptionError for damage anywhere else. ``strict`` raises for any
#: damage. ``point_in_time`` keeps every record before the first damage.
RECOVERY_MODES = ("tolerate_tail", "strict", "point_in_time")

SEGMENT_MAGIC = b"SKWAL\x00"
SEGMENT_VERSION = 1
# magic (6 bytes), format version (u16), segment number (u64)
_SEGMENT_HEADER = struct.Struct("<6sHQ")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size
SEGMENT_SUFFIX = ".wal"

_BLOCK = framing.BLOCK_SIZE
_HEADER = framing.HEADER_SIZE
# A fragment header is checksum u32, then length u16 and type u8. The
# checksum is the xxh32 (seed 0) of the length, type and payload bytes.
_CHECKSUM = struct.Struct("<I")
_FULL_LENGTH_TYPE = struct.Struct("<HB")
_FULL = framing.FULL
_xxh32 = xxhash.xxh32_intdigest


class Position(NamedTuple):
    """The start of a record: its segment number and byte offset in that file."""

    segment: int
    offset: int


def _check_positive_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


def check_path(path: object) -> str:
    """Return a directory argument as a str.

    Raises TypeError for other types and ValueError for an empty path.
    """
    text = path
    if isinstance(path, os.PathLike):
        text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(
            f"path must be a str or os.PathLike of str, not {type(path).__name__}"
        )
    if not text:
        raise ValueError("path must not be empty; pass the store's directory")
    return text


def segment_name(number: int) -> str:
    """Return the file name of segment ``number``."""
    return f"{number:012d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """Return the segment number of a file name, or None for other files."""
    stem, dot, suffix = name.partition(".")
    if dot and "." + suffix == SEGMENT_SUFFIX and len(stem) == 12 and stem.isdigit():
        return int(stem)
    return None


def _not_a_directory(path: str) -> CorruptionError:
    return CorruptionError(f"WAL path {path} is a file, not a directory", path, None)


def list_segments(fs: FileSystem, path: str) -> list[int]:
    """Return the segment numbers in directory ``path``, ascending."""
    numbers = []
    try:
        names = fs.listdir(path)
    except NotADirectoryError:
        raise _not_a_directory(path) from None
    for name in names:
        number = parse_segment_name(name)
        if number is not None:
            numbers.append(number)
    numbers.sort()
    return numbers


def find_valid_record_after(buffer: bytes, base_offset: int, position: int) -> int:
    """Return the buffer index of a complete valid record after ``position``, or -1.

    Damage followed by a valid record is not a torn tail. Block starts are
    checked first (framing.first_valid_header), then every byte offset in
    the rest of the damaged block, where a record may start anywhere. A
    candidate counts only when a whole record (FULL, or FIRST to LAST)
    parses there with matching checksums.

    When the record at ``position`` starts with fragments that pass their
    checksums and the buffer ends inside a later one, the write of a large
    record was cut off. Its own verified fragments are no evidence, so the
    search starts at the fragment that the end of the buffer cuts. Bytes
    inside that fragment's payload that form a whole record still count,
    so a cut-off value that contains a framed record raises.
    """
    cut = _cut_fragment_of_torn_record(buffer, base_offset, position)
    if cut is not None:
        position = cut
    found = framing.first_valid_header(buffer, base_offset, position + 1)
    if found >= 0:
        return found
    block_end = min(
        len(buffer), (base_offset + position) // _BLOCK * _BLOCK + _BLOCK - base_offset
    )
    first, last = framing.FULL, framing.FIRST
    for candidate in range(position + 1, block_end - _HEADER + 1):
        kind = buffer[candidate + 6]
        # Cheap filters first: a record starts with FULL or FIRST, and its
        # length must fit in the block.
        if kind != first and kind != last:
            continue
        length = buffer[candidate + 4] | (buffer[candidate + 5] << 8)
        if candidate + _HEADER + length > block_end:
            continue
        if framing.scan(buffer, candidate, base_offset)[0]:
            return candidate
    return -1


def _cut_fragment_of_torn_record(
    buffer: bytes, base_offset: int, position: int
) -> int | None:
    """Return where the end of ``buffer`` cuts the record at ``position``, or None.

    The record qualifies when it starts with a FIRST fragment, every
    fragment up to the cut one passes its checksum and follows the type
    order, and the cut fragment's header claims more bytes than the buffer
    has left. A damaged length field in a single fragment does not
    qualify, because no fragment before it was verified.
    """
    end = len(buffer)
    verified = 0
    while True:
        block_left = _BLOCK - (base_offset + position) % _BLOCK
        if block_left < _HEADER:
            position += block_left  # zero padding at the end of a block
            continue
        if position + _HEADER > end:
            return position if verified else None
        stored, length, kind = _FRAGMENT_HEADER.unpack_from(buffer, position)
        payload_end = position + _HEADER + length
        if length > block_left - _HEADER:
            return None
        if payload_end > end:
            return position if verified else None
        expected = framing.FIRST if verified == 0 else framing.MIDDLE
        if (
            kind != expected
            or framing.checksum(buffer[position + 4 : payload_end]) != stored
        ):
            return None
        verified += 1
        position = payload_end


_FRAGMENT_HEADER = struct.Struct("<IHB")


def _record_start(block_offset: int) -> int:
    """Return how many padding bytes precede a record written at ``block_offset``."""
    left = _BLOCK - block_offset
    return left if left < _HEADER else 0


def iter_records(buffer: bytes, start: int, base_offset: int = 0):
    """Parse ``buffer`` from ``start`` and return ``(records, scan_result)``.

    ``records`` lists ``(record_offset, payload)`` for complete records; the
    offset is the buffer index of the record's first fragment header.
    ``scan_result`` is framing.scan's tuple, for its status fields.
    """
    result = framing.scan(buffer, start, base_offset)
    fragments = result[0]
    records: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    first = 0
    for payload_start, length, kind in fragments:
        if kind == framing.FULL:
            records.append(
                (
                    payload_start - _HEADER,
                    buffer[payload_start : payload_start + length],
                )
            )
            continue
        if kind == framing.FIRST:
            first = payload_start - _HEADER
            parts = []
        parts.append(buffer[payload_start : payload_start + length])
        if kind == framing.LAST:
            records.append((first, b"".join(parts)))
    return records, result


class _SegmentState:
    """Recovery result of one segment: the offset where valid data ends."""

    __slots__ = ("number", "valid_end")

    def __init__(self, number: int, valid_end: int) -> None:
        self.number = number
        self.valid_end = valid_end


class WAL:
    """A write-ahead log in directory ``path``.

    ``sync`` is one of SYNC_POLICIES and ``recovery`` one of RECOVERY_MODES.
    ``read_only=True`` recovers without changing any file and takes no
    lock. A writer holds ``LOCK`` in the directory until ``close``, so a
    second writer raises LockedError. ``expected_segment`` is the first
    segment that the owner's checkpoint or manifest names (0 for none).
    When it is missing, recovery raises CorruptionError, or logs a warning
    under ``point_in_time``. All methods are thread-safe.
    """

    def __init__(
        self,
        path: str,
        sync: str = "batch",
        fs: FileSystem | None = None,
        *,
        recovery: str = "tolerate_tail",
        segment_bytes: int = 64 << 20,
        sync_interval: float = 1.0,
        sync_bytes: int = 1 << 20,
        read_only: bool = False,
        first_segment: int = 1,
        must_exist: bool = False,
        expected_segment: int = 0,
    ) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, not {sync!r}")
        if recovery not in RECOVERY_MODES:
            raise ValueError(
                f"recovery must be one of {RECOVERY_MODES}, not {recovery!r}"
            )
        _check_positive_int("segment_bytes", segment_bytes, 4096)
        _check_positive_int("sync_bytes", sync_bytes, 1)
        if (
            isinstance(sync_interval, bool)
            or not isinstance(sync_interval, (int, float))
            or not math.isfinite(sync_interval)
            or sync_interval <= 0
        ):
            raise ValueError(
                "sync_interval must be a finite positive number of seconds, "
                f"not {sync_interval!r}"
            )
        _check_positive_int("first_segment", first_segment, 0)
        _check_positive_int("expected_segment", expected_segment, 0)
        self.path = check_path(path)
        self.sync_policy = sync
        self._batch_policy = sync == "batch"
        self.recovery_mode = recovery
        self.read_only = read_only
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self._segment_bytes = segment_bytes
        self._sync_interval = float(sync_interval)
        self._sync_bytes = sync_bytes

        self._lock = threading.Lock()
        self._synced_cond = threading.Condition(self._lock)
        self._closed = False
        self._failure: BaseException | None = None
        self._file: File | None = None
        self._segment = 0
        self._size = 0
        # Byte counters across all segments since open: written reached the
        # OS, synced is covered by an fsync. A record is durable once synced
        # reaches the written count taken right after its append.
        self._written = 0
        self._synced = 0
        self._syncing = False
        self._appends = 0
        self._fsyncs = 0
        self._syncer: threading.Thread | None = None
        self._stop_syncer = threading.Event()
        self._segments: dict[int, _SegmentState] = {}
        self.recovery: dict[str, Any] = {"dropped_bytes": 0, "events": []}
        # Segment numbers never go down, also when recovery removed the newest
        # segments: an owner that records "segments below N are obsolete"
        # (a checkpoint, a manifest) passes N as first_segment.
        self._next_number = max(int(first_segment), 1)

        if not self._fs.exists(self.path):
            if must_exist:
                raise CorruptionError(
                    f"WAL directory {self.path} is missing, but the store's other "
                    "files show it existed: writes kept only there would be lost",
                    self.path,
                    None,
                )
            if read_only:
                raise FileNotFoundError(f"WAL directory {self.path} does not exist")
            self._fs.mkdir(self.path)
        # Two writers would each append to their own newest segment, so an
        # older segment could end in a torn write. Readers take no lock.
        self._file_lock = None
        if not read_only:
            try:
                self._file_lock = self._fs.lock(posixpath.join(self.path, "LOCK"))
            except NotADirectoryError:
                raise _not_a_directory(self.path) from None
        try:
            self._recover(expected_segment)
            if not read_only:
                self._open_for_append()
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._file_lock is not None:
            if self._fs.epoch == self._epoch:
                self._file_lock.release()
            self._file_lock = None

    # -- recovery -------------------------------------------------------------

    def _segment_path(self, number: int) -> str:
        return posixpath.join(self.path, segment_name(number))

    def _recover(self, expected_segment: int) -> None:
        numbers = list_segments(self._fs, self.path)
        if expected_segment and expected_segment not in numbers:
            self._handle_missing_segment(expected_segment)
        if numbers:
            self._next_number = max(self._next_number, numbers[-1] + 1)
        for index, number in enumerate(numbers):
            path = self._segment_path(number)
            data = self._fs.read_file(path)
            newest = index == len(numbers) - 1
            valid_end, damage = self._check_segment(number, path, data, newest)
            if damage is None:
                self._segments[number] = _SegmentState(number, valid_end)
                continue
            offset, reason = damage
            later = numbers[index + 1 :]
            self._handle_damage(number, path, data, valid_end, offset, reason, later)
            return

    def _handle_missing_segment(self, number: int) -> None:
        """Report that the segment the owner's checkpoint or manifest names is missing.

        Every segment's header is fsynced when the segment starts, before
        its owner can record it in a checkpoint or manifest, so a crash
        cannot remove it. Its absence means that someone deleted it, with
        every record it contained.
        """
        path = self._segment_path(number)
        if self.recovery_mode != "point_in_time":
            raise CorruptionError(
                f"WAL segment {path} is missing, but the store's checkpoint or "
                "manifest names it: the writes it contained are lost. Open with "
                "recovery='point_in_time' to keep the data recorded elsewhere.",
                path,
                0,
            )
        logger.warning(
            "WAL recovery (point_in_time): segment %s named by the store is "
            "missing, so the writes it contained are lost",
            path,
        )
        self.recovery["events"].append(
            {
                "file": path,
                "offset": 0,
                "damage_offset": 0,
                "reason": "missing segment",
                "dropped_bytes": 0,
            }
        )

    def _check_segment(self, number: int, path: str, data: bytes, newest: bool):
        """Return ``(valid_end, damage)`` where damage is None or (offset, reason)."""
        if len(data) < SEGMENT_HEADER_SIZE:
            # A segment whose header never became durable: created right
            # before a crash. Nothing in it was ever acknowledged.
            return 0, (0, "incomplete segment header")
        magic, version, stored_number = _SEGMENT_HEADER.unpack_from(data, 0)
        if magic != SEGMENT_MAGIC:
            return 0, (0, "bad segment magic")
        if version != SEGMENT_VERSION:
            if newest and not framing.scan(data, SEGMENT_HEADER_SIZE, 0)[0]:
                # Nothing valid follows: a header torn by a crash, not a
                # segment written by another version of storekit.
                return 0, (0, f"torn segment header (version field {version})")
            raise CorruptionError(
                f"{path}: WAL format version {version} is not supported "
                f"(this storekit reads version {SEGMENT_VERSION})",
                path,
                0,
            )
        if stored_number != number:
            return 0, (0, f"header names segment {stored_number}")
        _, next_position, status, bad_position, reason = framing.scan(
            data, SEGMENT_HEADER_SIZE, 0
        )
        if status == framing.STATUS_OK:
            return len(data), None
        if status == framing.STATUS_TRUNCATED:
            return next_position, (next_position, "record cut off at end of file")
        return next_position, (bad_position, framing.REASON_TEXT[reason])

    def _find_valid_after(
        self, number: int, data: bytes, offset: int, later: list[int]
    ):
        if offset == 0 and len(data) > SEGMENT_HEADER_SIZE:
            # The header itself is damaged: any valid record behind it shows
            # the segment was complete once.
            if framing.scan(data, SEGMENT_HEADER_SIZE, 0)[0]:
                return self._segment_path(number), SEGMENT_HEADER_SIZE
        found = find_valid_record_after(data, 0, offset)
        if found >= 0:
            return self._segment_path(number), found
        for other in later:
            path = self._segment_path(other)
            other_data = self._fs.read_file(path)
            if len(other_data) <= SEGMENT_HEADER_SIZE:
                continue
            records, _ = iter_records(other_data, SEGMENT_HEADER_SIZE)
            if records:
                return path, records[0][0]
            found = framing.first_valid_header(other_data, 0, SEGMENT_HEADER_SIZE)
            if found >= 0:
                return path, found
        return None

    def _handle_damage(
        self, number, path, data, valid_end, offset, reason, later
    ) -> None:
        mode = self.recovery_mode
        where = f"{path} at offset {offset}: {reason}"
        if mode == "strict":
            raise CorruptionError(
                f"WAL damaged in {where} (recovery='strict')", path, offset
            )
        if mode == "tolerate_tail":
            evidence = self._find_valid_after(number, data, offset, later)
            if evidence is not None:
                raise CorruptionError(
                    f"WAL damaged in {where}, and valid records follow at "
                    f"{evidence[0]} offset {evidence[1]}, so this is not a torn tail. "
                    "Open with recovery='point_in_time' to keep only the records "
                    "before the damage.",
                    path,
                    offset,
                )
        dropped = len(data) - valid_end
        for other in later:
            dropped += self._fs.file_size(self._segment_path(other))
        logger.warning(
            "WAL recovery (%s) cut %s at offset %d (%s); %d bytes dropped%s",
            mode,
            path,
            valid_end,
            reason,
            dropped,
            f", {len(later)} later segment(s) removed" if later else "",
        )
        self.recovery["dropped_bytes"] += dropped
        self.recovery["events"].append(
            {
                "file": path,
                "offset": valid_end,
                "damage_offset": offset,
                "reason": reason,
                "dropped_bytes": dropped,
            }
        )
        if valid_end >= SEGMENT_HEADER_SIZE:
            self._segments[number] = _SegmentState(number, valid_end)
        if self.read_only:
            return
        # Cut before any new append, so new records never land behind garbage.
        if valid_end >= SEGMENT_HEADER_SIZE:
            with self._fs.open(path, "a") as handle:
                handle.truncate(valid_end)
                handle.sync()
        else:
            self._fs.remove(path)
        for other in later:
            self._fs.remove(self._segment_path(other))
        self._fs.sync_dir(self.path)

    # -- appending ------------------------------------------------------------

    def _open_for_append(self) -> None:
        # Appends always go to a new segment, as LevelDB does on open. An
        # older segment may lie below the first segment its owner still
        # needs, because a checkpoint can cover it. Appending there would put
        # new records where the owner deletes them.
        self._start_segment(self._next_number)

    def _start_segment(self, number: int) -> None:
        path = self._segment_path(number)
        handle = self._fs.open(path, "w")
        try:
            handle.append(_SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, number))
            # Durable before any checkpoint or manifest can name the
            # segment, so recovery can treat a missing one as lost data.
            handle.sync()
        except BaseException:
            handle.close()
            raise
        self._file = handle
        self._segment = number
        self._next_number = number + 1
        self._size = SEGMENT_HEADER_SIZE
        self._written += SEGMENT_HEADER_SIZE
        self._segments[number] = _SegmentState(number, -1)

    def _check_writable(self) -> None:
        if self._closed or self._fs.epoch != self._epoch:
            raise ClosedError(f"WAL {self.path} is closed")
        if self.read_only:
            raise ClosedError(f"WAL {self.path} was opened read-only")
        if self._failure is not None:
            raise DurabilityError(
                f"WAL {self.path} failed earlier ({self._failure}); reopen it to continue"
            ) from self._failure

    def append(self, payload: bytes) -> Position:
        """Append one record and return its position.

        The record reaches the operating system before this returns; under
        ``sync="always"`` it is also fsynced. Raises DurabilityError when the
        write or fsync fails, and on every append after such a failure.
        """
        position, end = self.append_nowait(payload)
        if self.sync_policy == "always":
            self.wait_durable(end)
        return position

    def append_nowait(self, payload: bytes) -> tuple[Position, int]:
        """Append one record without waiting for an fsync.

        Returns the record's position and a durability mark to pass to
        ``wait_durable``. A store that must keep its WAL order equal to its
        sequence order appends under its own lock with this method and then
        waits outside that lock, so concurrent writers share one fsync.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        need_sync = False
        with self._lock:
            self._check_writable()
            block_offset = self._size % _BLOCK
            data = framing.frame(bytes(payload), block_offset)
            position = Position(self._segment, self._size + _record_start(block_offset))
            try:
                self._file.append(data)  # type: ignore[union-attr]
            except BaseException as exc:
                self._fail(exc)
                raise
            self._size += len(data)
            self._written += len(data)
            self._appends += 1
            end = self._written
            if self._size >= self._segment_bytes:
                self._rotate_or_fail()
            elif self.sync_policy == "batch":
                need_sync = self._written - self._synced >= self._sync_bytes
                if self._syncer is None:
                    self._start_syncer()
        if need_sync:
            self.wait_durable(end)
        return position, end

    def append_record(self, payload: bytes) -> int:
        """Append one record as ``append_nowait`` does; return only the durability mark.

        The fast path of a store that appends one record per write and
        needs no position: ``payload`` must be ``bytes``, which is not
        checked. Under ``sync="always"`` the caller must pass the mark to
        ``wait_durable``.
        """
        need_sync = False
        with self._lock:
            if (
                self._closed
                or self._failure is not None
                or self.read_only
                or self._fs.epoch != self._epoch
            ):
                self._check_writable()
            block_offset = self._size % _BLOCK
            length = len(payload)
            if length + _HEADER <= _BLOCK - block_offset:
                # The record fits in the current block as one FULL fragment,
                # so the bytes framing.frame would return are built here,
                # without its argument checks and foreign call.
                body = _FULL_LENGTH_TYPE.pack(length, _FULL) + payload
                data = _CHECKSUM.pack(_xxh32(body)) + body
            else:
                data = framing.frame(payload, block_offset)
            try:
                self._file.append(data)  # type: ignore[union-attr]
            except BaseException as exc:
                self._fail(exc)
                raise
            self._size += len(data)
            self._written += len(data)
            self._appends += 1
            end = self._written
            if self._size >= self._segment_bytes:
                self._rotate_or_fail()
            elif self._batch_policy:
                need_sync = end - self._synced >= self._sync_bytes
                if self._syncer is None:
                    self._start_syncer()
        if need_sync:
            self.wait_durable(end)
        return end

    def wait_durable(self, mark: int) -> None:
        """Block until an fsync covers every byte up to ``mark``.

        Group commit: if an fsync is running, wait for it and check again;
        otherwise become the leader and fsync everything written so far.
        """
        with self._lock:
            while self._synced < mark:
                if self._failure is not None:
                    raise DurabilityError(
                        f"WAL {self.path}: fsync failed ({self._failure}); "
                        "the write is not durable, reopen to continue"
                    ) from self._failure
                if self._closed or self._fs.epoch != self._epoch:
                    raise ClosedError(f"WAL {self.path} is closed")
                if self._syncing:
                    self._synced_cond.wait()
                    continue
                self._sync_locked()

    def _sync_locked(self) -> None:
        """Fsync the current segment; the caller holds the lock, released during fsync."""
        self._syncing = True
        goal = self._written
        handle = self._file
        self._lock.release()
        error: BaseException | None = None
        try:
            handle.sync()  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised below
            error = exc
        finally:
            self._lock.acquire()
            self._syncing = False
            self._synced_cond.notify_all()
        if error is not None:
            self._fail(error)
            raise error
        self._fsyncs += 1
        if goal > self._synced:
            self._synced = goal

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            logger.error(
                "WAL %s failed; no more writes are accepted until reopen: %s",
                self.path,
                exc,
            )
        self._synced_cond.notify_all()

    def sync(self) -> None:
        """Fsync everything appended so far."""
        with self._lock:
            self._check_writable()
            mark = self._written
        self.wait_durable(mark)

    def rotate(self) -> int:
        """Fsync and close the current segment, start the next; return its number."""
        with self._lock:
            self._check_writable()
            self._rotate_or_fail()
            return self._segment

    def _rotate_or_fail(self) -> None:
        # A failed rotation leaves it unknown which segment contains what, so
        # it is a sticky failure like a failed write.
        try:
            self._rotate_locked()
        except BaseException as exc:
            self._fail(exc)
            raise DurabilityError(
                f"WAL {self.path}: starting a new segment failed: {exc}"
            ) from exc

    def _rotate_locked(self) -> None:
        while self._syncing:
            self._synced_cond.wait()
        if self._synced < self._written:
            self._sync_locked()
        old = self._file
        self._segments[self._segment].valid_end = self._size
        self._start_segment(self._next_number)
        old.close()  # type: ignore[union-attr]

    @property
    def current_segment(self) -> int:
        """Number of the segment that receives appends."""
        return self._segment

    def segments(self) -> list[int]:
        """Return the numbers of the live segments, ascending."""
        with self._lock:
            return sorted(self._segments)

    def remove_segments_before(self, number: int) -> list[int]:
        """Delete every segment numbered below ``number``; return their numbers.

        The current segment is never removed. The directory is fsynced so the
        removal survives a crash.
        """
        with self._lock:
            self._check_writable()
            doomed = [n for n in self._segments if n < number and n != self._segment]
            for n in doomed:
                del self._segments[n]
        for n in doomed:
            self._fs.remove(self._segment_path(n))
        if doomed:
            self._fs.sync_dir(self.path)
        return doomed

    # -- reading ---------------------------------------------------------------

    def replay(self, start: Position | None = None) -> Iterator[tuple[Position, bytes]]:
        """Yield ``(position, payload)`` of every live record from ``start``.

        Records that recovery dropped are never yielded; records appended
        after open are included up to the moment each segment is read.
        """
        with self._lock:
            numbers = sorted(self._segments)
        for number in numbers:
            if start is not None and number < start.segment:
                continue
            path = self._segment_path(number)
            with self._lock:
                state = self._segments.get(number)
                if state is None:
                    continue
                limit = (
                    self._size
                    if number == self._segment and not self.read_only
                    else state.valid_end
                )
            data = (
                self._fs.read_file(path)[:limit]
                if limit >= 0
                else self._fs.read_file(path)
            )
            begin = SEGMENT_HEADER_SIZE
            if start is not None and number == start.segment:
                begin = max(begin, start.offset)
            records, result = iter_records(data, begin)
            status = result[2]
            if status == framing.STATUS_CORRUPT:
                raise CorruptionError(
                    f"WAL record in {path} at offset {result[3]} failed its check "
                    f"({framing.REASON_TEXT[result[4]]})",
                    path,
                    result[3],
                )
            for offset, payload in records:
                yield Position(number, offset), payload

    # -- background sync for sync="batch" ----------------------------------------

    def _start_syncer(self) -> None:
        reference = weakref.ref(self)
        stop = self._stop_syncer
        interval = self._sync_interval

        def run() -> None:
            while not stop.wait(interval):
                wal = reference()
                if wal is None or not wal._sync_due():
                    if wal is None:
                        return
                    del wal
                    continue
                try:
                    with wal._lock:
                        mark = wal._written
                    wal.wait_durable(mark)
                except (DurabilityError, ClosedError):
                    return
                except OSError as exc:  # recorded as the WAL's sticky failure
                    logger.error("background fsync of WAL %s failed: %s", wal.path, exc)
                    return
                del wal

        self._syncer = threading.Thread(
            target=run, name=f"storekit-wal-sync {self.path}", daemon=True
        )
        self._syncer.start()

    def _sync_due(self) -> bool:
        if self._closed or self._fs.epoch != self._epoch or self._failure is not None:
            self._stop_syncer.set()
            return False
        return self._written > self._synced

    # -- lifecycle --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return counters: appends, fsyncs, bytes, segments and recovery."""
        with self._lock:
            return {
                "appends": self._appends,
                "fsyncs": self._fsyncs,
                "bytes_written": self._written,
                "bytes_unsynced": self._written - self._synced,
                "segments": len(self._segments),
                "current_segment": self._segment,
                "current_segment_bytes": self._size,
                "sync": self.sync_policy,
                "failed": self._failure is not None,
                "recovery": dict(self.recovery),
            }

    def close(self) -> None:
        """Fsync and close. Raises DurabilityError if the final fsync fails."""
        with self._lock:
            if self._closed:
                return
            alive = self._fs.epoch == self._epoch
            error: BaseException | None = None
            if (
                alive
                and self._file is not None
                and self._failure is None
                and not self.read_only
            ):
                while self._syncing:
                    self._synced_cond.wait()
                if self._synced < self._written:
                    try:
                        self._sync_locked()
                    except BaseException as exc:  # noqa: BLE001 - re-raised after cleanup
                        error = exc
            self._closed = True
            self._stop_syncer.set()
            if self._file is not None and alive:
                self._file.close()
            self._file = None
            self._release_lock()
            self._synced_cond.notify_all()
        if error is not None:
            raise DurabilityError(
                f"WAL {self.path}: final fsync failed: {error}"
            ) from error

    @property
    def closed(self) -> bool:
        """True once closed, or once the file system crashed under it."""
        return self._closed or self._fs.epoch != self._epoch

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WAL {self.path!r} segment={self._segment} sync={self.sync_policy}>"


class WALReader:
    """Read a WAL while another object or process appends to it (tailing).

    ``poll()`` returns the complete records that appeared since the last
    call and never waits; call it in a loop to follow the log. A record is
    returned only once its checksum matches, and a partly written record
    at the end is left for the next poll.
    """

    def __init__(
        self, path: str, fs: FileSystem | None = None, start: Position | None = None
    ) -> None:
        self.path = str(path)
        self._fs = default_fs(fs)
        if start is None:
            numbers = list_segments(self._fs, self.path)
            start = Position(numbers[0] if numbers else 1, SEGMENT_HEADER_SIZE)
        if not isinstance(start, tuple) or len(start) != 2:
            raise TypeError(f"start must be a Position or None, not {start!r}")
        self._segment = int(start[0])
        self._offset = max(int(start[1]), SEGMENT_HEADER_SIZE)
        self._handle: File | None = None
        self._at_clean_end = False

    @property
    def position(self) -> Position:
        """Where the next record will be read from."""
        return Position(self._segment, self._offset)

    def _path(self, number: int) -> str:
        return posixpath.join(self.path, segment_name(number))

    def poll(self) -> list[tuple[Position, bytes]]:
        """Return every complete record appended since the last poll."""
        out: list[tuple[Position, bytes]] = []
        while True:
            numbers = list_segments(self._fs, self.path)
            if self._segment not in numbers:
                later = [n for n in numbers if n > self._segment]
                if later and numbers[0] > self._segment:
                    raise OffsetError(
                        f"WAL segment {self._segment} of {self.path} was removed before "
                        f"it was read; the oldest segment is {numbers[0]}",
                        Position(numbers[0], SEGMENT_HEADER_SIZE),  # type: ignore[arg-type]
                    )
                return out
            # List newer segments before reading: once one exists, the writer
            # has fsynced and closed this one, so what we read now is all of it.
            newer = [n for n in numbers if n > self._segment]
            self._read_available(out)
            if newer and self._at_clean_end:
                self._close_handle()
                self._segment, self._offset = newer[0], SEGMENT_HEADER_SIZE
                continue
            return out

    def _read_available(self, out: list[tuple[Position, bytes]]) -> None:
        if self._handle is None:
            self._handle = self._fs.open(self._path(self._segment), "r")
        size = self._handle.size()
        self._at_clean_end = size <= self._offset
        if size <= self._offset:
            return
        data = self._handle.read(self._offset, size - self._offset)
        base = self._offset
        records, result = iter_records(data, 0, base)
        for index, payload in records:
            out.append((Position(self._segment, base + index), payload))
        self._offset = base + result[1]
        status = result[2]
        if status == framing.STATUS_CORRUPT:
            bad = base + result[3]
            raise CorruptionError(
                f"WAL record in {self._handle.path} at offset {bad} failed its check "
                f"({framing.REASON_TEXT[result[4]]})",
                self._handle.path,
                bad,
            )
        self._at_clean_end = status == framing.STATUS_OK

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        """Close the open segment file."""
        self._close_handle()
