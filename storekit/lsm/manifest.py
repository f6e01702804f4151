"""The manifest: a log of version edits, and the CURRENT file that names it.

Files in the store directory (docs/formats.md gives every byte):

- ``MANIFEST-NNNNNN``: a 16-byte header (magic, format version), then
  version edits as records in the WAL's block framing. The first record
  holds the whole state: every live table, the last flushed sequence
  number, the next file number and the first live WAL segment. Each later
  record is one flush or compaction.
- ``CURRENT``: the name of the live manifest and a newline. It is replaced
  atomically: written to ``CURRENT.tmp``, fsynced, renamed over ``CURRENT``,
  and the directory fsynced.

An edit takes effect only after its record is fsynced, so a record torn by
a crash was never acted on and recovery ignores it. After any failure to
write the manifest, the next edit starts a new manifest with the whole
state instead of appending behind a record of unknown state.
"""

from __future__ import annotations

import logging
import posixpath
import struct
import threading
from collections.abc import Callable

from .._backend import framing
from ..errors import ClosedError, CorruptionError
from ..fs import File, FileSystem
from ..wal import find_valid_record_after, iter_records
from .version import DEFAULT_MAX_LEVELS, FileMetadata, Version, VersionEdit

__all__ = [
    "MANIFEST_MAGIC",
    "MANIFEST_VERSION",
    "VersionSet",
    "decode_edit",
    "encode_edit",
    "manifest_name",
    "parse_file_name",
    "read_manifest",
    "table_name",
]

logger = logging.getLogger("storekit.lsm")

MANIFEST_MAGIC = b"SKMANIF\x00"
MANIFEST_VERSION = 1
# magic (8 bytes), format version (u32), reserved (u32, zero)
_MANIFEST_HEADER = struct.Struct("<8sII")
MANIFEST_HEADER_SIZE = _MANIFEST_HEADER.size

CURRENT = "CURRENT"

#: A manifest that grows past this many bytes is replaced by a new one that
#: holds only the current state.
MANIFEST_REWRITE_BYTES = 4 << 20

# Field tags of an edit record.
TAG_LAST_SEQUENCE = 1
TAG_NEXT_FILE_NUMBER = 2
TAG_WAL_SEGMENT = 3
TAG_REMOVED_FILE = 4
TAG_ADDED_FILE = 5


def table_name(number: int) -> str:
    """Return the file name of table ``number``."""
    return f"{number:06d}.sst"


def manifest_name(number: int) -> str:
    """Return the file name of manifest ``number``."""
    return f"MANIFEST-{number:06d}"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """Return ``("table" | "manifest", number)`` for a store file name, else None."""
    if name.endswith(".sst"):
        stem = name[:-4]
        if stem.isdigit():
            return "table", int(stem)
    elif name.startswith("MANIFEST-"):
        stem = name[len("MANIFEST-") :]
        if stem.isdigit():
            return "manifest", int(stem)
    return None


# -- edit encoding ---------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"cannot encode negative number {value} as a varint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_bytes(out: bytearray, data: bytes) -> None:
    _put_varint(out, len(data))
    out += data


class _Reader:
    """Sequential reads from an edit payload; raises ValueError when it runs out."""

    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def at_end(self) -> bool:
        return self.position >= len(self.data)

    def varint(self) -> int:
        result = 0
        shift = 0
        data = self.data
        while True:
            if self.position >= len(data) or shift > 63:
                raise ValueError("truncated or overlong varint")
            byte = data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def bytes(self) -> bytes:
        length = self.varint()
        end = self.position + length
        if end > len(self.data):
            raise ValueError("length runs past the end of the record")
        value = self.data[self.position : end]
        self.position = end
        return value


def encode_edit(edit: VersionEdit) -> bytes:
    """Encode ``edit`` as a manifest record payload."""
    out = bytearray()
    if edit.last_sequence is not None:
        _put_varint(out, TAG_LAST_SEQUENCE)
        _put_varint(out, edit.last_sequence)
    if edit.next_file_number is not None:
        _put_varint(out, TAG_NEXT_FILE_NUMBER)
        _put_varint(out, edit.next_file_number)
    if edit.wal_segment is not None:
        _put_varint(out, TAG_WAL_SEGMENT)
        _put_varint(out, edit.wal_segment)
    for level, number in edit.removed:
        _put_varint(out, TAG_REMOVED_FILE)
        _put_varint(out, level)
        _put_varint(out, number)
    for level, meta in edit.added:
        _put_varint(out, TAG_ADDED_FILE)
        for value in (
            level,
            meta.number,
            meta.size,
            meta.smallest_sequence,
            meta.largest_sequence,
            meta.entries,
            meta.tombstones,
        ):
            _put_varint(out, value)
        _put_bytes(out, meta.smallest_key)
        _put_bytes(out, meta.largest_key)
    return bytes(out)


def decode_edit(payload: bytes) -> VersionEdit:
    """Decode a manifest record payload; raises ValueError when it is malformed."""
    reader = _Reader(payload)
    edit = VersionEdit()
    while not reader.at_end():
        tag = reader.varint()
        if tag == TAG_LAST_SEQUENCE:
            edit.last_sequence = reader.varint()
        elif tag == TAG_NEXT_FILE_NUMBER:
            edit.next_file_number = reader.varint()
        elif tag == TAG_WAL_SEGMENT:
            edit.wal_segment = reader.varint()
        elif tag == TAG_REMOVED_FILE:
            level = reader.varint()
            edit.removed.append((level, reader.varint()))
        elif tag == TAG_ADDED_FILE:
            level = reader.varint()
            number, size, smallest_seq, largest_seq, entries, tombstones = (
                reader.varint() for _ in range(6)
            )
            smallest = reader.bytes()
            largest = reader.bytes()
            meta = FileMetadata(
                number,
                size,
                smallest,
                largest,
                smallest_seq,
                largest_seq,
                entries,
                tombstones,
            )
            edit.added.append((level, meta))
        else:
            raise ValueError(f"unknown field tag {tag}")
    return edit


# -- manifest files ----------------------------------------------------------------


def read_manifest(fs: FileSystem, path: str) -> list[VersionEdit]:
    """Read every complete edit of the manifest at ``path``.

    A record cut off or damaged at the very end is a write that a crash
    interrupted before its fsync, so it is skipped with a warning. Damage
    followed by valid records raises CorruptionError naming file and offset.
    """
    data = fs.read_file(path)
    if len(data) < MANIFEST_HEADER_SIZE:
        raise CorruptionError(
            f"manifest {path} is {len(data)} bytes, shorter than its header", path, 0
        )
    magic, version, _ = _MANIFEST_HEADER.unpack_from(data, 0)
    if magic != MANIFEST_MAGIC:
        raise CorruptionError(f"{path} is not a storekit manifest (bad magic)", path, 0)
    if version != MANIFEST_VERSION:
        raise CorruptionError(
            f"manifest {path} has format version {version}; this storekit reads "
            f"version {MANIFEST_VERSION}",
            path,
            0,
        )
    records, result = iter_records(data, MANIFEST_HEADER_SIZE)
    status, next_position, bad_position, reason = (
        result[2],
        result[1],
        result[3],
        result[4],
    )
    if status != framing.STATUS_OK:
        damage = bad_position if bad_position >= 0 else next_position
        damage_reason = (
            "record cut off at end of file"
            if status == framing.STATUS_TRUNCATED
            else framing.REASON_TEXT[reason]
        )
        # The same test as the WAL's: a valid record anywhere after the
        # damage, in this block or a later one, proves it is not a torn
        # tail. Skipping it would drop edits, and then open would delete
        # the live tables they added as orphans.
        if find_valid_record_after(data, 0, damage) >= 0:
            raise CorruptionError(
                f"manifest {path} is damaged at offset {damage} "
                f"({damage_reason}) and valid records follow",
                path,
                damage,
            )
        logger.warning(
            "manifest %s: ignoring an incomplete record at offset %d (%s); "
            "it was never fsynced",
            path,
            damage,
            damage_reason,
        )
    edits = []
    for offset, payload in records:
        try:
            edits.append(decode_edit(payload))
        except ValueError as exc:
            raise CorruptionError(
                f"manifest {path}: malformed edit at offset {offset}: {exc}",
                path,
                offset,
            ) from None
    if not edits:
        raise CorruptionError(
            f"manifest {path} contains no complete edit", path, len(data)
        )
    return edits


class _ManifestWriter:
    """An open manifest file that edits are appended to, each one fsynced."""

    def __init__(self, fs: FileSystem, path: str, number: int) -> None:
        self.path = path
        self.number = number
        self._file: File = fs.open(path, "w")
        self.size = 0
        try:
            header = _MANIFEST_HEADER.pack(MANIFEST_MAGIC, MANIFEST_VERSION, 0)
            self._file.append(header)
            self.size = len(header)
        except BaseException:
            self._file.close()
            raise

    def append(self, payload: bytes) -> None:
        data = framing.frame(payload, self.size % framing.BLOCK_SIZE)
        self._file.append(data)
        self.size += len(data)
        self._file.sync()

    def close(self) -> None:
        self._file.close()


class VersionSet:
    """The current version of a store and the manifest that makes it durable.

    ``log_and_apply`` is the only way the version changes. It is thread-safe:
    one lock orders every edit, so flushes and compactions can finish in
    any order.
    """

    def __init__(
        self, fs: FileSystem, path: str, *, max_levels: int = DEFAULT_MAX_LEVELS
    ) -> None:
        self._fs = fs
        self._epoch = fs.epoch
        self.path = path
        self.max_levels = max_levels
        self._lock = threading.Lock()
        self.current = Version.empty(max_levels)
        #: Largest sequence number whose write is in a table.
        self.last_sequence = 0
        #: First WAL segment that recovery must replay.
        self.wal_segment = 0
        self._next_file_number = 1
        self._writer: _ManifestWriter | None = None
        self.manifest_number = 0

    # -- opening --------------------------------------------------------------

    def _join(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def read_current(self) -> str | None:
        """Return the manifest name that CURRENT holds, or None without CURRENT."""
        path = self._join(CURRENT)
        if not self._fs.exists(path):
            return None
        content = self._fs.read_file(path)
        name = (
            content[:-1].decode("ascii", "replace") if content.endswith(b"\n") else ""
        )
        parsed = parse_file_name(name)
        if parsed is None or parsed[0] != "manifest":
            raise CorruptionError(
                f"{path} does not name a manifest: {content[:64]!r}", path, 0
            )
        return name

    def recover(self) -> bool:
        """Load the state named by CURRENT; return False when there is none."""
        name = self.read_current()
        if name is None:
            return False
        path = self._join(name)
        if not self._fs.exists(path):
            raise CorruptionError(f"CURRENT names {name}, which is missing", path, 0)
        version = Version.empty(self.max_levels)
        for index, edit in enumerate(read_manifest(self._fs, path)):
            try:
                version = version.apply(edit)
            except ValueError as exc:
                raise CorruptionError(
                    f"manifest {path}: edit {index} does not apply: {exc}", path, None
                ) from None
            if edit.last_sequence is not None:
                self.last_sequence = max(self.last_sequence, edit.last_sequence)
            if edit.next_file_number is not None:
                self._next_file_number = max(
                    self._next_file_number, edit.next_file_number
                )
            if edit.wal_segment is not None:
                self.wal_segment = max(self.wal_segment, edit.wal_segment)
        self.current = version
        self.manifest_number = parse_file_name(name)[1]  # type: ignore[index]
        self.mark_file_number_used(self.manifest_number)
        for _, meta in version.files():
            self.mark_file_number_used(meta.number)
        return True

    def check_tables(self) -> None:
        """Raise CorruptionError when a table the manifest names is missing or resized."""
        for _, meta in self.current.files():
            path = self._join(table_name(meta.number))
            if not self._fs.exists(path):
                raise CorruptionError(
                    f"table {path} named by the manifest is missing", path, 0
                )
            size = self._fs.file_size(path)
            if size != meta.size:
                raise CorruptionError(
                    f"table {path} is {size} bytes but the manifest records "
                    f"{meta.size} bytes",
                    path,
                    min(size, meta.size),
                )

    def remove_orphans(self) -> None:
        """Delete files an interrupted flush, compaction or manifest switch left.

        Those are tables the current version does not name, manifests other
        than the one CURRENT names, and a leftover ``CURRENT.tmp``. Their
        numbers are marked used, so no new file takes a name a crash could
        bring back.
        """
        live = self.current.file_numbers()
        current = self.read_current()
        removed = []
        for name in self._fs.listdir(self.path):
            parsed = parse_file_name(name)
            if parsed is not None:
                self.mark_file_number_used(parsed[1])
                orphan = (parsed[0] == "table" and parsed[1] not in live) or (
                    parsed[0] == "manifest" and name != current
                )
            else:
                orphan = name == CURRENT + ".tmp"
            if orphan:
                self._fs.remove(self._join(name))
                removed.append(name)
        if removed:
            self._fs.sync_dir(self.path)
            logger.info(
                "%s: removed %d orphan files: %s", self.path, len(removed), removed
            )

    def mark_file_number_used(self, number: int) -> None:
        """Make sure ``new_file_number`` never returns ``number`` or less."""
        with self._lock:
            if number >= self._next_file_number:
                self._next_file_number = number + 1

    def new_file_number(self) -> int:
        """Return a file number that no file of this store has used."""
        with self._lock:
            number = self._next_file_number
            self._next_file_number += 1
            return number

    # -- writing ----------------------------------------------------------------

    def _snapshot_edit(self, version: Version) -> VersionEdit:
        return VersionEdit(
            added=list(version.files()),
            last_sequence=self.last_sequence,
            next_file_number=self._next_file_number,
            wal_segment=self.wal_segment,
        )

    def write_new_manifest(self) -> None:
        """Start a new manifest holding the current state and switch CURRENT to it.

        Used at open and after a failed manifest write; the old manifest is
        deleted once CURRENT names the new one.
        """
        with self._lock:
            self._start_manifest(self.current)

    def _start_manifest(self, version: Version) -> None:
        """Write a manifest with ``version`` and the counters, then switch CURRENT."""
        if self._fs.epoch != self._epoch:
            # After a crash, CURRENT belongs to the store reopened after it.
            raise ClosedError(f"manifest of {self.path}: the file system crashed")
        number = self._next_file_number
        self._next_file_number += 1
        path = self._join(manifest_name(number))
        old_writer, old_number = self._writer, self.manifest_number
        self._writer = None
        if old_writer is not None:
            old_writer.close()
        writer = _ManifestWriter(self._fs, path, number)
        try:
            writer.append(encode_edit(self._snapshot_edit(version)))
            self._fs.write_file_atomic(
                self._join(CURRENT), (manifest_name(number) + "\n").encode()
            )
        except BaseException:
            # The new manifest stays on disk: if the rename reached the
            # directory before the failure, CURRENT may already name it.
            writer.close()
            raise
        self._writer = writer
        self.manifest_number = number
        if old_number and old_number != number:
            self._fs.remove(self._join(manifest_name(old_number)))
        logger.info(
            "manifest %s started with %d tables", path, sum(1 for _ in version.files())
        )

    def log_and_apply(
        self, edit: VersionEdit, install: Callable[[Version], None] | None = None
    ) -> Version:
        """Make ``edit`` durable in the manifest, then make it the current version.

        ``install`` runs with the new version while the edit lock is still
        held, so the engine publishes versions in the order they were made.
        Raises ValueError for an edit that does not apply. Raises OSError or
        DurabilityError when the manifest write fails, and then nothing
        changes and the next edit starts a new manifest.
        """
        with self._lock:
            new_version = self.current.apply(edit)
            if edit.last_sequence is not None:
                edit.last_sequence = max(edit.last_sequence, self.last_sequence)
            edit.next_file_number = self._next_file_number
            previous = (self.last_sequence, self.wal_segment)
            if edit.last_sequence is not None:
                self.last_sequence = edit.last_sequence
            if edit.wal_segment is not None:
                self.wal_segment = max(self.wal_segment, edit.wal_segment)
            try:
                writer = self._writer
                if writer is None or writer.size >= MANIFEST_REWRITE_BYTES:
                    self._start_manifest(new_version)
                else:
                    try:
                        writer.append(encode_edit(edit))
                    except BaseException:
                        self._writer = None
                        writer.close()
                        raise
            except BaseException:
                self.last_sequence, self.wal_segment = previous
                raise
            self.current = new_version
            if install is not None:
                install(new_version)
            return new_version

    def close(self) -> None:
        """Close the manifest file."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
