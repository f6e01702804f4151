"""Merging iterators: one sorted stream of entries from memtables and tables.

Every source yields entries ``(key, sequence, value)`` where a value of
None is a tombstone. Forward sources are sorted by key ascending and, for
one key, by sequence descending; reverse sources by key descending and,
for one key, by sequence descending as well. So in both directions the
newest version of a key comes first, and ``visible_items`` keeps the first
version at or below the read's sequence number and drops tombstones.
"""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from ..memtable import ITERATION_CHUNK, Memtable
from .version import FileMetadata

__all__ = [
    "Entry",
    "ScanIterator",
    "level_entries",
    "memtable_entries",
    "merge_entries",
    "merge_visible",
    "visible_items",
]

#: ``(key, sequence, value or None)``
Entry = tuple[bytes, int, "bytes | None"]


#: Keys in the first chunk a scan reads from a memtable.
_FIRST_MEMTABLE_CHUNK = 16


def memtable_entries(
    memtable: Memtable,
    low: bytes | None,
    high: bytes | None,
    reverse: bool,
    sequence: int,
    lock: threading.Lock | None,
    check_open: Callable[[], None] | None = None,
) -> Iterator[Entry]:
    """Yield the version of each key in ``[low, high)`` visible at ``sequence``.

    Keys are read in chunks. With ``lock`` (the active memtable, which
    writers change) each chunk is read under the lock and the scan resumes
    after the last key seen, so it never holds the lock while the caller
    works. ``check_open`` runs under the lock before each chunk.
    """
    return chain.from_iterable(
        _memtable_chunks(memtable, low, high, reverse, sequence, lock, check_open)
    )


def _memtable_chunks(
    memtable: Memtable,
    low: bytes | None,
    high: bytes | None,
    reverse: bool,
    sequence: int,
    lock: threading.Lock | None,
    check_open: Callable[[], None] | None,
) -> Iterator[list[Entry]]:
    after: bytes | None = None
    # The first chunk is short, because many scans read only a few keys;
    # each later chunk doubles, up to the memtable's ITERATION_CHUNK.
    limit = _FIRST_MEMTABLE_CHUNK
    while True:
        if lock is not None:
            with lock:
                if check_open is not None:
                    check_open()
                chunk, last = _memtable_chunk(
                    memtable, low, high, reverse, after, sequence, limit
                )
        else:
            chunk, last = _memtable_chunk(
                memtable, low, high, reverse, after, sequence, limit
            )
        if last is None:
            return
        yield chunk
        after = last
        limit = min(limit * 2, ITERATION_CHUNK)


def _memtable_chunk(memtable, low, high, reverse, after, sequence, limit):
    keys = memtable.keys_from(low, high, reverse, after, limit)
    if not keys:
        return [], None
    lookup = memtable.get
    chunk = []
    for key in keys:
        found = lookup(key, sequence)
        if found is not None:
            chunk.append((key, found[0], found[1]))
    return chunk, keys[-1]


def level_entries(
    files: Sequence[FileMetadata],
    open_reader: Callable[[FileMetadata], Any],
    low: bytes | None,
    high: bytes | None,
    reverse: bool,
    fill_cache: bool = True,
) -> Iterator[Entry]:
    """Yield the entries of one deeper level: its files in key order, concatenated.

    The files of a deeper level have disjoint key ranges, so chaining them
    keeps the order. A file is opened only when the scan reaches it.
    ``fill_cache=False`` keeps the blocks read out of the block cache.
    """
    first = 0
    if low is not None:
        # Files are sorted and disjoint: skip those that end below low.
        first = bisect_left([meta.largest_key for meta in files], low)
    selected = [meta for meta in files[first:] if meta.overlaps(low, high)]
    if reverse:
        selected.reverse()
    return chain.from_iterable(
        open_reader(meta).iterate(low, high, reverse, fill_cache=fill_cache)
        for meta in selected
    )


def merge_entries(sources: list[Iterable[Entry]], reverse: bool) -> Iterator[Entry]:
    """Merge sorted sources into one stream with the order of the module docstring.

    No two sources may hold the same ``(key, sequence)``: the engine never
    has one write in two places of one view.
    """
    if reverse:
        # For one key, sequence descending is also tuple-descending order.
        return heapq.merge(*sources, reverse=True)
    if len(sources) == 2:
        return _merge_two_forward(sources[0], sources[1])
    return _merge_forward(sources)


def _merge_two_forward(
    first_source: Iterable[Entry], second_source: Iterable[Entry]
) -> Iterator[Entry]:
    # Two sources need one comparison per entry instead of a heap update.
    first = iter(first_source)
    second = iter(second_source)
    a = next(first, None)
    b = next(second, None)
    while a is not None and b is not None:
        # Forward order: key ascending, then sequence descending.
        if a[0] < b[0] or (a[0] == b[0] and a[1] > b[1]):
            yield a
            a = next(first, None)
        else:
            yield b
            b = next(second, None)
    if a is not None:
        yield a
        yield from first
    elif b is not None:
        yield b
        yield from second


def _merge_forward(sources: list[Iterable[Entry]]) -> Iterator[Entry]:
    # Heap items are (key, -sequence, source index, value, iterator): the
    # index is unique, so values and iterators are never compared.
    heap = []
    for index, source in enumerate(sources):
        iterator = iter(source)
        for key, sequence, value in iterator:
            heap.append((key, -sequence, index, value, iterator))
            break
    heapq.heapify(heap)
    heapreplace = heapq.heapreplace
    heappop = heapq.heappop
    while len(heap) > 1:
        key, negative_sequence, index, value, iterator = heap[0]
        yield key, -negative_sequence, value
        for key, sequence, value in iterator:
            heapreplace(heap, (key, -sequence, index, value, iterator))
            break
        else:
            heappop(heap)
    if heap:
        key, negative_sequence, _, value, iterator = heap[0]
        yield key, -negative_sequence, value
        yield from iterator


def merge_visible(
    sources: list[Iterable[Entry]], sequence: int, keys_only: bool
) -> Iterator[Any]:
    """Merge forward sources and yield what ``visible_items`` would yield.

    One generator in place of ``visible_items(merge_entries(...))``, and no
    heap when there is a single source.
    """
    if len(sources) == 1:
        return visible_items(iter(sources[0]), sequence, keys_only)
    if len(sources) == 2:
        return _merge_two_visible(sources[0], sources[1], sequence, keys_only)
    return _merge_visible_forward(sources, sequence, keys_only)


def _merge_two_visible(
    first_source: Iterable[Entry],
    second_source: Iterable[Entry],
    sequence: int,
    keys_only: bool,
) -> Iterator[Any]:
    # Two sources need one comparison per entry instead of a heap update.
    first = iter(first_source)
    second = iter(second_source)
    a = next(first, None)
    b = next(second, None)
    previous: bytes | None = None
    while a is not None and b is not None:
        # Forward order: key ascending, then sequence descending.
        if a[0] < b[0] or (a[0] == b[0] and a[1] > b[1]):
            key, entry_sequence, value = a
            a = next(first, None)
        else:
            key, entry_sequence, value = b
            b = next(second, None)
        if entry_sequence <= sequence and key != previous:
            previous = key
            if value is not None:
                yield key if keys_only else (key, value)
    if a is not None:
        rest = chain((a,), first)
    elif b is not None:
        rest = chain((b,), second)
    else:
        return
    for key, entry_sequence, value in rest:
        if entry_sequence > sequence or key == previous:
            continue
        previous = key
        if value is None:
            continue
        yield key if keys_only else (key, value)


def _merge_visible_forward(
    sources: list[Iterable[Entry]], sequence: int, keys_only: bool
) -> Iterator[Any]:
    # Heap items as in _merge_forward. previous is the last key whose
    # visible version was decided, as in visible_items.
    heap = []
    for index, source in enumerate(sources):
        iterator = iter(source)
        for key, entry_sequence, value in iterator:
            heap.append((key, -entry_sequence, index, value, iterator))
            break
    heapq.heapify(heap)
    heapreplace = heapq.heapreplace
    heappop = heapq.heappop
    previous: bytes | None = None
    while len(heap) > 1:
        key, negative_sequence, index, value, iterator = heap[0]
        if -negative_sequence <= sequence and key != previous:
            previous = key
            if value is not None:
                yield key if keys_only else (key, value)
        for next_key, entry_sequence, next_value in iterator:
            heapreplace(heap, (next_key, -entry_sequence, index, next_value, iterator))
            break
        else:
            heappop(heap)
    if heap:
        key, negative_sequence, _, value, iterator = heap[0]
        if -negative_sequence <= sequence and key != previous:
            previous = key
            if value is not None:
                yield key if keys_only else (key, value)
        for key, entry_sequence, value in iterator:
            if entry_sequence > sequence or key == previous:
                continue
            previous = key
            if value is None:
                continue
            yield key if keys_only else (key, value)


def visible_items(
    entries: Iterator[Entry], sequence: int, keys_only: bool
) -> Iterator[Any]:
    """Yield ``(key, value)`` (or keys) of the newest version at ``sequence``.

    Versions newer than ``sequence`` are skipped; a key whose visible
    version is a tombstone is left out.
    """
    previous: bytes | None = None
    for key, entry_sequence, value in entries:
        if entry_sequence > sequence or key == previous:
            continue
        previous = key
        if value is None:
            continue
        yield key if keys_only else (key, value)


class ScanIterator:
    """The iterator ``scan`` returns: a merged view plus the release of its snapshot.

    ``release`` runs once, when the iterator is exhausted, closed or
    garbage collected, so the versions it reads stay until then. ``keep``
    is held until the same moment.
    """

    __slots__ = ("_items", "_release", "_keep", "__weakref__")

    def __init__(
        self,
        items: Iterator[Any],
        release: Callable[[], None] | None,
        keep: object = None,
    ) -> None:
        self._items = items
        self._release = release
        # The version being read: while it is referenced, its tables are
        # neither closed nor deleted.
        self._keep = keep

    def __iter__(self) -> ScanIterator:
        return self

    def __next__(self) -> Any:
        items = self._items
        if items is None:
            raise StopIteration
        try:
            return next(items)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Stop the scan and release its view; closing twice is allowed."""
        self._items = None  # type: ignore[assignment]
        self._keep = None
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> ScanIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
