"""Locks that keep a ShardedStore consistent while keys move between shards.

``WriteGate`` lets many writers in at once (shared), or lets one thread
wait for all of them to leave and keep new ones out (exclusive). Routing
changes and cross-shard snapshots take it exclusively, so they never see a
write that has reached one shard and not yet another.

``KeyLocks`` is a fixed set of striped mutexes. A key's stripe serializes
everything that touches that key across shards: reads that fall back from
the new owner to the old one, writes that put to one shard and delete from
another, and the background copy of the key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["KeyLocks", "WriteGate"]


class WriteGate:
    """A shared/exclusive lock that prefers the exclusive side.

    Once a thread waits for exclusive access, new shared entries wait too,
    so a steady stream of writers cannot starve a snapshot. Not reentrant.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    def acquire_shared(self) -> None:
        with self._condition:
            while self._exclusive or self._exclusive_waiting:
                self._condition.wait()
            self._shared += 1

    def release_shared(self) -> None:
        with self._condition:
            self._shared -= 1
            if self._shared == 0 and self._exclusive_waiting:
                self._condition.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the gate with other writers for the ``with`` block."""
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Wait until no writer is inside, and keep writers out for the block."""
        with self._condition:
            self._exclusive_waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._condition.wait()
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class KeyLocks:
    """Striped mutexes indexed by key.

    The stripe comes from Python's ``hash()``, which differs between
    processes. That is fine here because stripes never leave the process.
    """

    def __init__(self, stripes: int = 64) -> None:
        if stripes < 1 or stripes & (stripes - 1):
            raise ValueError(f"stripes must be a power of two, not {stripes}")
        self._mask = stripes - 1
        self._locks = [threading.Lock() for _ in range(stripes)]

    def lock_for(self, key: bytes) -> threading.Lock:
        """Return the mutex of ``key``'s stripe."""
        return self._locks[hash(key) & self._mask]

    @contextmanager
    def holding(self, keys: Iterable[bytes]) -> Iterator[None]:
        """Hold the stripes of every key in ``keys`` for the ``with`` block.

        Stripes are taken in index order, so two threads locking overlapping
        key sets cannot deadlock.
        """
        mask = self._mask
        indexes = sorted({hash(key) & mask for key in keys})
        taken: list[threading.Lock] = []
        try:
            for index in indexes:
                lock = self._locks[index]
                lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
