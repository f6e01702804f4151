"""Merged scans over shards, and the cross-shard snapshot.

A merged scan walks one iterator per shard with ``heapq.merge`` and
groups equal keys. While a key moves it can sit on two shards for a
moment, and a key written around the ShardedStore can sit on a shard that
does not own it. A key is shown only from its first owner (see
storekit.sharding.routing) that has it, which is where ``get`` reads it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

from ..errors import ClosedError
from ..store import ScanItem, Snapshot
from .routing import Routing

__all__ = ["MergedScan", "ShardedSnapshot"]

_MISSING: Any = object()
_first = itemgetter(0)


def _tagged(name: str, iterator: Iterator[Any], keys_only: bool):
    if keys_only:
        for key in iterator:
            yield key, name, None
    else:
        for key, value in iterator:
            yield key, name, value


def _close_iterator(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class MergedScan:
    """An iterator over several shard iterators in key order.

    ``sources`` pairs each shard name with an iterator from that shard's
    ``scan`` (same bounds, direction and ``keys_only``). Closing the merged
    scan closes every shard iterator.
    """

    def __init__(
        self,
        sources: list[tuple[str, Iterator[Any]]],
        routing: Routing,
        reverse: bool,
        keys_only: bool,
    ) -> None:
        self._iterators = [iterator for _, iterator in sources]
        streams = [_tagged(name, iterator, keys_only) for name, iterator in sources]
        self._merged = heapq.merge(*streams, key=_first, reverse=reverse)
        self._routing = routing
        self._keys_only = keys_only
        self._pending: tuple[bytes, str, Any] | None = None
        self._done = False

    def __iter__(self) -> MergedScan:
        return self

    def __next__(self) -> ScanItem:
        merged = self._merged
        while True:
            if self._done:
                raise StopIteration
            item = self._pending
            if item is None:
                item = next(merged, None)
                if item is None:
                    self.close()
                    raise StopIteration
            self._pending = None
            key, name, value = item
            group = [(name, value)]
            for item in merged:
                if item[0] != key:
                    self._pending = item
                    break
                group.append((item[1], item[2]))
            chosen = self._choose(key, group)
            if chosen is not _MISSING:
                return key if self._keys_only else (key, chosen)

    def _choose(self, key: bytes, group: list[tuple[str, Any]]) -> Any:
        routing = self._routing
        if routing.single and len(group) == 1:
            name, value = group[0]
            return value if routing.newest.node_for(key) == name else _MISSING
        found = dict(group)
        for owner in routing.owners(key):
            if owner in found:
                return found[owner]
        return _MISSING

    def close(self) -> None:
        """Stop the scan and release every shard iterator."""
        if self._done:
            return
        self._done = True
        self._pending = None
        for iterator in self._iterators:
            _close_iterator(iterator)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class ShardedSnapshot(Snapshot):
    """A snapshot of every shard, taken while no write was half applied.

    Reads route by the rings in effect when the snapshot was taken, so a
    key in the middle of a move is found where it was at that moment.
    """

    def __init__(
        self,
        snapshots: dict[str, Snapshot],
        routing: Routing,
        check_key: Callable[[object], bytes],
    ) -> None:
        self._snapshots = snapshots
        self._routing = routing
        self._check_key = check_key
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("snapshot is closed")

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._check_open()
        key = self._check_key(key)
        for owner in self._routing.owners(key):
            value = self._snapshots[owner].get(key, _MISSING)
            if value is not _MISSING:
                return value
        return default

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        self._check_open()
        sources = [
            (
                name,
                snapshot.scan(
                    start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
                ),
            )
            for name, snapshot in sorted(self._snapshots.items())
        ]
        return MergedScan(sources, self._routing, reverse, keys_only)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for snapshot in self._snapshots.values():
            snapshot.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
