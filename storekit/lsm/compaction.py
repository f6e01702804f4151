"""Leveled compaction: choosing what to compact, and writing the new tables.

Picking (``pick_compaction``): level 0 is scored by file count against
``level0_compaction_trigger``; level ``n >= 1`` by its bytes against
``level1_bytes * level_size_ratio ** (n - 1)``. The level with the highest
score of at least 1 is compacted into the next level:

- from level 0, the oldest level-0 file plus every level-0 file whose
  range overlaps the chosen files' combined range, repeated until the set
  stops growing. A level-0 file left behind then shares no key with the
  files moved down, so no older version of a key is read before a newer
  one. Files written in key order (sequential inserts) overlap nothing,
  so each moves down alone, as LevelDB does;
- from a deeper level, one file, taken round-robin through the key space;
- plus every file of the next level that overlaps the chosen key range,
  and nothing else: the rest of that level is not rewritten.

A single input file with no overlap below is moved by editing the
manifest, without rewriting it.

Dropping (``drop_obsolete``): live snapshots split each key's versions into
stripes, one per snapshot. A version is kept if it is the newest of its
stripe, because some reader can still see it. A tombstone is dropped only
when no snapshot is older than it (stripe 0) and no deeper level contains
the key, since otherwise the older value would come back.
"""

from __future__ import annotations

import logging
import posixpath
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from ..fs import File, FileSystem
from ..memtable import Memtable
from .manifest import table_name
from .merge import Entry, level_entries, merge_entries
from .table import TableBuilder
from .version import FileMetadata, Version

__all__ = [
    "BaseLevelChecker",
    "Compaction",
    "CompactionOptions",
    "TableOutputs",
    "drop_obsolete",
    "level_max_bytes",
    "pick_compaction",
    "run_compaction",
]

logger = logging.getLogger("storekit.lsm")


@dataclass(frozen=True)
class CompactionOptions:
    """The settings that shape tables and levels; see LSMStore for each one."""

    table_bytes: int = 2 << 20
    block_size: int = 4096
    compression: str | None = "lz4"
    bloom_bits_per_key: int = 10
    restart_interval: int = 16
    level0_compaction_trigger: int = 4
    level1_bytes: int = 10 << 20
    level_size_ratio: int = 10


def level_max_bytes(options: CompactionOptions, level: int) -> int:
    """Return the size above which level ``level`` (>= 1) is compacted."""
    return options.level1_bytes * options.level_size_ratio ** (level - 1)


@dataclass
class Compaction:
    """One compaction: input files of ``level`` and overlapping files of the next."""

    level: int
    inputs: list[FileMetadata]
    next_inputs: list[FileMetadata]
    reason: str
    key_range: tuple[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        files = self.inputs + self.next_inputs
        self.key_range = (
            min(meta.smallest_key for meta in files),
            max(meta.largest_key for meta in files),
        )

    @property
    def output_level(self) -> int:
        """The level the output tables go to."""
        return self.level + 1

    @property
    def is_trivial_move(self) -> bool:
        """True when one file can move down without being rewritten."""
        return len(self.inputs) == 1 and not self.next_inputs

    def input_bytes(self) -> int:
        """Return the total size of every input file."""
        return sum(meta.size for meta in self.inputs + self.next_inputs)


def level_scores(version: Version, options: CompactionOptions) -> list[float]:
    """Return the compaction score of every level but the last; >= 1 needs work."""
    scores = [len(version.levels[0]) / options.level0_compaction_trigger]
    for level in range(1, version.max_levels - 1):
        scores.append(version.level_bytes(level) / level_max_bytes(options, level))
    return scores


def pick_compaction(
    version: Version, options: CompactionOptions, pointers: dict[int, bytes]
) -> Compaction | None:
    """Return the most urgent compaction, or None when every level is within limits.

    ``pointers`` maps a level to the largest key of the last file compacted
    from it; the next file after that key is chosen, so compaction walks
    the whole key space over time. The caller updates it.
    """
    scores = level_scores(version, options)
    level = max(range(len(scores)), key=scores.__getitem__)
    if scores[level] < 1:
        return None
    if level == 0:
        inputs = _level0_inputs(version.levels[0])
        reason = f"level 0 has {len(version.levels[0])} files"
    else:
        files = version.levels[level]
        pointer = pointers.get(level)
        chosen = files[0]
        if pointer is not None:
            for meta in files:
                if meta.smallest_key > pointer:
                    chosen = meta
                    break
        inputs = [chosen]
        reason = (
            f"level {level} holds {version.level_bytes(level)} bytes, "
            f"limit {level_max_bytes(options, level)}"
        )
    low = min(meta.smallest_key for meta in inputs)
    high = max(meta.largest_key for meta in inputs)
    return Compaction(level, inputs, version.overlapping(level + 1, low, high), reason)


def _level0_inputs(files: Sequence[FileMetadata]) -> list[FileMetadata]:
    """Return the oldest level-0 file and every file overlapping the chosen range.

    ``files`` is level 0, newest first. The chosen range grows with each
    file added, so the loop repeats until no other file overlaps it.
    """
    oldest = files[-1]
    inputs = [oldest]
    low, high = oldest.smallest_key, oldest.largest_key
    rest = list(files[:-1])
    grew = True
    while grew:
        grew = False
        for meta in rest:
            if meta.overlaps(low, high):
                inputs.append(meta)
                low = min(low, meta.smallest_key)
                high = max(high, meta.largest_key)
                grew = True
        rest = [meta for meta in rest if meta not in inputs]
    return inputs


def manual_compaction(
    version: Version, level: int, low: bytes | None, high: bytes | None
) -> Compaction | None:
    """Return the compaction of ``level`` into the next level for keys in ``[low, high]``.

    From level 0 every file is taken when any overlaps the range, for the
    reason given in the module docstring. Returns None when nothing overlaps.
    """
    if level == 0:
        if not version.overlapping(0, low, high):
            return None
        inputs = list(version.levels[0])
    else:
        inputs = version.overlapping(level, low, high)
        if not inputs:
            return None
    smallest = min(meta.smallest_key for meta in inputs)
    largest = max(meta.largest_key for meta in inputs)
    next_inputs = version.overlapping(level + 1, smallest, largest)
    return Compaction(level, inputs, next_inputs, "manual compaction")


class BaseLevelChecker:
    """Check whether a level below the output may contain a key, for ascending keys.

    Keys must be passed in ascending order: each level keeps a cursor that
    only moves forward, so a whole compaction costs one pass per level.
    """

    def __init__(self, version: Version, output_level: int) -> None:
        self._levels = [
            version.levels[level]
            for level in range(output_level + 1, version.max_levels)
            if version.levels[level]
        ]
        self._cursors = [0] * len(self._levels)

    def __call__(self, key: bytes) -> bool:
        """Return True when no deeper level may hold ``key``."""
        for index, files in enumerate(self._levels):
            cursor = self._cursors[index]
            while cursor < len(files) and files[cursor].largest_key < key:
                cursor += 1
            self._cursors[index] = cursor
            if cursor < len(files) and files[cursor].smallest_key <= key:
                return False
        return True


def drop_obsolete(
    entries: Iterable[Entry],
    snapshots: list[int],
    is_base_level: Callable[[bytes], bool],
    counters: dict[str, int],
) -> Iterator[Entry]:
    """Yield the entries some reader can still see; see the module docstring.

    ``entries`` come in forward merge order (key ascending, sequence
    descending). ``snapshots`` is the sorted list of live snapshot
    sequences. ``counters["dropped"]`` counts what was left out.
    """
    previous_key: bytes | None = None
    previous_stripe = -1
    dropped = 0
    try:
        for key, sequence, value in entries:
            stripe = bisect_left(snapshots, sequence) if snapshots else 0
            if key == previous_key:
                if stripe == previous_stripe:
                    dropped += 1
                    continue
            else:
                previous_key = key
            previous_stripe = stripe
            if value is None and stripe == 0 and is_base_level(key):
                # Older versions of the key share stripe 0 and are dropped
                # by the check above.
                dropped += 1
                continue
            yield key, sequence, value
    finally:
        counters["dropped"] = counters.get("dropped", 0) + dropped


class TableOutputs:
    """Writes entries into new table files, starting a new file past ``table_bytes``.

    A new file starts only between two keys, never between two versions of
    one key, so each key's versions stay in one file and a deeper level's
    files keep disjoint key ranges. Each finished file is fsynced and
    closed before ``finish`` returns; the caller then records the files in
    the manifest. ``abandon`` deletes every file written so far.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        new_file_number: Callable[[], int],
        options: CompactionOptions,
        table_bytes: int | None,
    ) -> None:
        self._fs = fs
        self._epoch = fs.epoch
        self._directory = directory
        self._new_file_number = new_file_number
        self._options = options
        self._table_bytes = table_bytes
        self._file: File | None = None
        self._builder: Any = None
        self._number = 0
        self._last_key: bytes | None = None
        self._keys_since_check = 0
        self._created: list[str] = []
        self.finished: list[FileMetadata] = []

    def _path(self, number: int) -> str:
        return posixpath.join(self._directory, table_name(number))

    def _start(self) -> None:
        number = self._new_file_number()
        path = self._path(number)
        self._created.append(path)
        self._file = self._fs.open(path, "w")
        self._number = number
        options = self._options
        self._builder = TableBuilder(
            self._file,
            block_size=options.block_size,
            compression=options.compression,
            bloom_bits_per_key=options.bloom_bits_per_key,
            restart_interval=options.restart_interval,
        )

    def add(self, key: bytes, sequence: int, value: bytes | None) -> None:
        """Add one entry; entries must come in forward merge order."""
        builder = self._builder
        if builder is None:
            self._start()
            builder = self._builder
        elif key != self._last_key and self._table_bytes is not None:
            # Reading the size costs more than adding a small entry, so it is
            # checked every 16 keys; a table overshoots by at most 15 entries.
            self._keys_since_check += 1
            if self._keys_since_check >= 16:
                self._keys_since_check = 0
                if builder.estimated_size >= self._table_bytes:
                    self._finish_file()
                    self._start()
                    builder = self._builder
        builder.add_trusted(key, sequence, value)
        self._last_key = key

    def add_all(self, entries: Iterable[Entry]) -> None:
        """Add every entry of ``entries``, in forward merge order, like ``add``.

        Files split at the same size limit and only between keys, but the
        size check counts a file's first key, so a file can end one key
        earlier than ``add`` would end it.
        """
        remaining = iter(entries)
        # A file starts only for an entry, so that no file stays empty.
        first = next(remaining, None)
        while first is not None:
            if self._builder is None:
                self._start()
            first = self._builder.add_trusted_entries(
                chain((first,), remaining), self._table_bytes
            )
            if first is not None:
                self._finish_file()
            else:
                self._last_key = self._builder._last_key

    def write_memtable(self, memtable: Memtable) -> None:
        """Write every version of every key of a frozen memtable into one table."""
        self._start()
        # Versions are stored oldest first and written newest first.
        entries = [
            (key, sequence, value)
            for key, versions in memtable.versions()
            for sequence, value in (versions if len(versions) == 1 else versions[::-1])
        ]
        self._builder.add_trusted_entries(iter(entries))

    def _finish_file(self) -> None:
        builder, handle = self._builder, self._file
        info = builder.finish()
        handle.sync()  # type: ignore[union-attr]
        handle.close()  # type: ignore[union-attr]
        self._builder = None
        self._file = None
        self.finished.append(
            FileMetadata(
                number=self._number,
                size=info.file_size,
                smallest_key=info.smallest_key,
                largest_key=info.largest_key,
                smallest_sequence=info.smallest_sequence,
                largest_sequence=info.largest_sequence,
                entries=info.entries,
                tombstones=info.tombstones,
            )
        )

    def finish(self) -> list[FileMetadata]:
        """Finish, fsync and close the open file; return every file written."""
        if self._builder is not None:
            self._finish_file()
        return self.finished

    def abandon(self) -> None:
        """Stop writing and delete every file this object created."""
        if self._builder is not None:
            try:
                self._builder.abandon()
            finally:
                self._builder = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fs.epoch != self._epoch:
            # After a crash the files belong to the store reopened after it;
            # the next open removes them as orphans.
            return
        for path in self._created:
            self._fs.remove(path)
        self._created.clear()
        self.finished.clear()

    @property
    def bytes_written(self) -> int:
        """Total size of the finished files."""
        return sum(meta.size for meta in self.finished)


def run_compaction(
    compaction: Compaction,
    version: Version,
    open_reader: Callable[[FileMetadata], Any],
    outputs: TableOutputs,
    snapshots: list[int],
    counters: dict[str, int],
    between_chunks: Callable[[], None],
) -> list[FileMetadata]:
    """Merge the inputs of ``compaction`` into ``outputs``; return the new files.

    ``between_chunks`` runs every 1024 output entries; the engine uses it
    to flush a waiting memtable first and to stop when the store closes.
    """
    sources: list[Iterable[Entry]] = []
    # Compaction reads every block once, so it keeps them out of the cache.
    if compaction.level == 0:
        # Level-0 files may overlap, so each one is a separate source.
        for meta in compaction.inputs:
            sources.append(
                open_reader(meta).iterate(None, None, False, fill_cache=False)
            )
    else:
        sources.append(
            level_entries(compaction.inputs, open_reader, None, None, False, False)
        )
    if compaction.next_inputs:
        sources.append(
            level_entries(compaction.next_inputs, open_reader, None, None, False, False)
        )
    merged = merge_entries(sources, reverse=False)
    is_base_level = BaseLevelChecker(version, compaction.output_level)
    surviving = drop_obsolete(merged, snapshots, is_base_level, counters)
    outputs.add_all(chain.from_iterable(_chunks(surviving, 1024, between_chunks)))
    return outputs.finish()


def _chunks(
    entries: Iterable[Entry], size: int, after_full_chunk: Callable[[], None]
) -> Iterator[list[Entry]]:
    """Yield ``entries`` in lists of ``size``; call ``after_full_chunk`` after each full one.

    The call runs when the consumer requests the next list, so after it has
    taken every entry of the previous one.
    """
    iterator = iter(entries)
    while True:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield chunk
        if len(chunk) == size:
            after_full_chunk()
