"""Versions: which table files make up each level of an LSM store at one moment.

A ``Version`` is immutable. Flushes and compactions describe their result
as a ``VersionEdit`` (files added and removed per level, plus counters),
which the manifest logs durably before ``Version.apply`` turns it into the
next version. Readers keep a reference to the version they started with,
so a table file stays on disk while any live version names it.

Level invariants:

- Level 0 holds flushed memtables. Its files may overlap, so they are kept
  newest first (by largest sequence number) and a read checks each one
  whose key range contains the key.
- Every deeper level holds files with disjoint key ranges, sorted by
  smallest key, so a read checks at most one file per level.
- For any key, every entry in level ``n`` is newer than every entry in level
  ``n + 1``. Compaction keeps this by always taking all of level 0 and, for
  a deeper level, every overlapping file of the next level.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["FileMetadata", "Version", "VersionEdit", "DEFAULT_MAX_LEVELS"]

#: Levels 0 to 6, as in LevelDB: with a size ratio of 10 and a 10 MiB
#: level 1, level 6 may hold 1 TiB before it is full.
DEFAULT_MAX_LEVELS = 7


@dataclass(frozen=True)
class FileMetadata:
    """One table file as the manifest records it.

    Keys are user keys; ``smallest_key`` and ``largest_key`` are inclusive.
    ``size`` is the file length in bytes, checked against the file at open.
    """

    number: int
    size: int
    smallest_key: bytes
    largest_key: bytes
    smallest_sequence: int
    largest_sequence: int
    entries: int
    tombstones: int

    def overlaps(self, low: bytes | None, high: bytes | None) -> bool:
        """Return True if the file may hold keys in ``[low, high]`` (both inclusive).

        None means unbounded on that side.
        """
        if low is not None and self.largest_key < low:
            return False
        if high is not None and self.smallest_key > high:
            return False
        return True


@dataclass
class VersionEdit:
    """The change one flush or compaction makes, as the manifest logs it.

    ``removed`` holds ``(level, file_number)`` pairs and ``added`` holds
    ``(level, FileMetadata)`` pairs. ``last_sequence`` is the largest
    sequence number whose write is in a table, so recovery replays only WAL
    records above it. ``wal_segment`` is the first WAL segment whose records
    are not all in tables; older segments may be deleted.
    """

    added: list[tuple[int, FileMetadata]] = field(default_factory=list)
    removed: list[tuple[int, int]] = field(default_factory=list)
    last_sequence: int | None = None
    next_file_number: int | None = None
    wal_segment: int | None = None


class Version:
    """The table files of every level at one moment; immutable."""

    __slots__ = (
        "levels",
        "_largest_keys",
        "level0_ranges",
        "deeper_levels",
        "__weakref__",
    )

    def __init__(self, levels: Iterable[Iterable[FileMetadata]]) -> None:
        self.levels: tuple[tuple[FileMetadata, ...], ...] = tuple(
            tuple(files) for files in levels
        )
        # Largest keys of each deeper level, for the bisect in ``find``.
        self._largest_keys = tuple(
            [meta.largest_key for meta in files] for files in self.levels
        )
        #: ``(smallest_key, largest_key, file)`` of each level-0 file, newest
        #: first: what a point lookup compares without attribute lookups.
        self.level0_ranges = tuple(
            (meta.smallest_key, meta.largest_key, meta) for meta in self.levels[0]
        )
        #: ``(largest_keys, smallest_keys, files)`` of each non-empty level
        #: below level 0, shallowest first: what a point lookup bisects.
        self.deeper_levels = tuple(
            (
                self._largest_keys[level],
                [meta.smallest_key for meta in self.levels[level]],
                self.levels[level],
            )
            for level in range(1, len(self.levels))
            if self.levels[level]
        )

    @classmethod
    def empty(cls, max_levels: int = DEFAULT_MAX_LEVELS) -> Version:
        """Return a version with ``max_levels`` empty levels."""
        return cls([()] * max_levels)

    @property
    def max_levels(self) -> int:
        """Number of levels, empty ones included."""
        return len(self.levels)

    def files(self) -> Iterator[tuple[int, FileMetadata]]:
        """Yield ``(level, file)`` for every file, level 0 first."""
        for level, files in enumerate(self.levels):
            for meta in files:
                yield level, meta

    def file_numbers(self) -> set[int]:
        """Return the numbers of every file in this version."""
        return {meta.number for files in self.levels for meta in files}

    def level_bytes(self, level: int) -> int:
        """Return the total file size of ``level`` in bytes."""
        return sum(meta.size for meta in self.levels[level])

    def deepest_nonempty_level(self) -> int:
        """Return the deepest level that contains a file, or -1 when there is none."""
        for level in range(len(self.levels) - 1, -1, -1):
            if self.levels[level]:
                return level
        return -1

    def overlapping(
        self, level: int, low: bytes | None, high: bytes | None
    ) -> list[FileMetadata]:
        """Return the files of ``level`` that may hold keys in ``[low, high]``."""
        return [meta for meta in self.levels[level] if meta.overlaps(low, high)]

    def find(self, key: bytes) -> Iterator[FileMetadata]:
        """Yield the files that may hold ``key``, newest data first.

        Level 0 files come first, newest first, then at most one file per
        deeper level.
        """
        for meta in self.levels[0]:
            if meta.smallest_key <= key <= meta.largest_key:
                yield meta
        for level in range(1, len(self.levels)):
            largest = self._largest_keys[level]
            index = bisect_left(largest, key)
            if index < len(largest):
                meta = self.levels[level][index]
                if meta.smallest_key <= key:
                    yield meta

    def apply(self, edit: VersionEdit) -> Version:
        """Return the version that results from applying ``edit``.

        Raises ValueError when the edit removes a file that is not there,
        adds a file twice, or leaves overlapping files in a deeper level:
        such an edit means the manifest or the engine is wrong.
        """
        levels = [list(files) for files in self.levels]
        for level, number in edit.removed:
            self._check_level(level)
            kept = [meta for meta in levels[level] if meta.number != number]
            if len(kept) == len(levels[level]):
                raise ValueError(f"file {number} is not in level {level}")
            levels[level] = kept
        present = {meta.number for files in levels for meta in files}
        for level, meta in edit.added:
            self._check_level(level)
            if meta.number in present:
                raise ValueError(f"file {meta.number} is added twice")
            present.add(meta.number)
            levels[level].append(meta)
        levels[0].sort(
            key=lambda meta: (meta.largest_sequence, meta.number), reverse=True
        )
        for level in range(1, len(levels)):
            levels[level].sort(key=lambda meta: meta.smallest_key)
            _check_disjoint(level, levels[level])
        return Version(levels)

    def _check_level(self, level: int) -> None:
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level} is outside 0..{len(self.levels) - 1}")

    def check_invariants(self) -> None:
        """Raise AssertionError if a level breaks the ordering rules above."""
        level0 = self.levels[0]
        for newer, older in zip(level0, level0[1:], strict=False):
            assert newer.largest_sequence >= older.largest_sequence, (newer, older)
        for level in range(1, len(self.levels)):
            files = self.levels[level]
            for meta in files:
                assert meta.smallest_key <= meta.largest_key, meta
            for left, right in zip(files, files[1:], strict=False):
                assert left.largest_key < right.smallest_key, (level, left, right)
        numbers = [meta.number for _, meta in self.files()]
        assert len(numbers) == len(set(numbers)), numbers

    def __repr__(self) -> str:
        counts = ", ".join(str(len(files)) for files in self.levels)
        return f"<Version files per level: {counts}>"


def _check_disjoint(level: int, files: list[FileMetadata]) -> None:
    for left, right in zip(files, files[1:], strict=False):
        if left.largest_key >= right.smallest_key:
            raise ValueError(
                f"files {left.number} and {right.number} overlap in level {level}"
            )
