"""Moving keys between shards in the background after the ring changes.

``add_shard`` and ``remove_shard`` put a new ring in front of the routing
and return a ``Move`` at once. One mover thread per ShardedStore then runs
*passes*. A pass reads the routing, takes the newest ring's version as its
target, and walks every shard that may hold keys whose newest owner is
elsewhere (``Routing.sources``), in chunks of keys:

1. copy: with the chunk's key stripes held, read each key's current value
   (from its first owner that has it) and write it to the newest owner when
   that shard lacks it, one batch per target shard;
2. flush the target shards, so the copies are durable before any source
   copy goes away;
3. clean up: with the stripes held again, delete the key from the older
   owners, but only if the newest owner has it now. If a ring change since
   step 1 gave the key a newer owner, the key stays where it is and the
   pass counts as unfinished, so no ring is dropped and the next pass moves
   the key on.

A write during a move goes to the newest owner and deletes the key from
the older owners, in an order that keeps the current value readable at
every step (see ``plan_ops`` in storekit.sharding.routing). So at every
moment the first owner that has a key has its current value.

When a pass ends with no key left behind, every shard is flushed. Then the
rings older than the pass's target are dropped from the shard map, durably
and before routing changes in memory, which finishes every move up to that
version. A move installed during a pass is finished by the next pass.
After a crash the shard map still lists the older rings, so the reopened
store runs a pass again. Copies and clean-ups are idempotent.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..batch import WriteBatch
from ..errors import ClosedError

if TYPE_CHECKING:  # pragma: no cover
    from ..store import Store
    from .store import ShardedStore

__all__ = ["Move"]

logger = logging.getLogger("storekit.sharding")

_MISSING: Any = object()


class _Stopped(Exception):
    """The store is closing; the mover leaves the pass unfinished."""


class Move:
    """The handle of one ``add_shard`` or ``remove_shard``.

    ``kind`` is ``"add"`` or ``"remove"``, ``node`` the shard name and
    ``store`` that shard's store. After a remove finishes, the ShardedStore
    no longer uses ``store``; closing it is up to the caller.
    """

    def __init__(self, kind: str, node: str, version: int, store: Store | None) -> None:
        self.kind = kind
        self.node = node
        self.version = version
        self.store = store
        self._finished = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        self._progress = 0.0

    @property
    def done(self) -> bool:
        """True once every key that had to move has moved."""
        return self._done

    @property
    def progress(self) -> float:
        """Fraction of the keys examined so far by the pass that finishes this move.

        An estimate from 0.0 to 1.0: the count of keys on the source shards
        is taken when the pass starts. 0.0 while an earlier pass still runs.
        """
        return 1.0 if self._done else self._progress

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the mover, or None."""
        return self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the move finishes or ``timeout`` seconds pass.

        Returns True when the move is done and False on timeout. Raises the
        mover's error if it stopped on one, and ClosedError if the store was
        closed first. Reopening the store with the same path resumes the move.
        """
        if not self._finished.wait(timeout):
            return False
        if self._done:
            return True
        if self._error is not None:
            raise self._error
        raise ClosedError(
            f"the store closed before the move of shard {self.node!r} finished; "
            "reopen it with the same path to finish the move"
        )

    def _finish(self) -> None:
        self._done = True
        self._progress = 1.0
        self._error = None
        self._finished.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._finished.set()

    def __repr__(self) -> str:
        state = "done" if self._done else f"{self._progress:.0%}"
        return f"<Move {self.kind} {self.node!r} v{self.version} {state}>"


class Mover:
    """The background thread that runs passes until one ring is left."""

    def __init__(self, store: ShardedStore) -> None:
        self._store = store
        self.thread = threading.Thread(
            target=self._run, name="storekit-shard-mover", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        store = self._store
        try:
            while True:
                with store._state_lock:
                    routing, _ = store._view
                    if routing.single or store._stopping:
                        store._mover = None
                        return
                self._run_pass()
        except _Stopped:
            with store._state_lock:
                store._mover = None
        except BaseException as exc:  # noqa: BLE001 - recorded on the handles
            if isinstance(exc, ClosedError):
                logger.warning("shard move stopped: %s", exc)
            else:
                logger.error(
                    "shard move failed; reopen the store to resume it: %r", exc
                )
            with store._state_lock:
                store._mover = None
                for move in store._moves:
                    move._fail(exc)

    def _check_stop(self) -> None:
        if self._store._stopping:
            raise _Stopped

    def _run_pass(self) -> None:
        store = self._store
        routing, shards = store._view
        target = routing.versions[0]
        moves = [move for move in store._moves if move.version <= target]
        sources = sorted(routing.sources())
        logger.info(
            "shard move pass to ring version %d: scanning shards %s", target, sources
        )

        total = sum(_count_keys(shards[name]) for name in sources)
        examined = 0
        pending_cleanup: list[bytes] = []
        pending_targets: set[str] = set()
        pending_bytes = 0
        left_behind = 0
        chunk_keys = store._move_chunk_keys
        for source in sources:
            after: bytes | None = None
            while True:
                self._check_stop()
                keys = _next_keys(shards[source], after, chunk_keys)
                if not keys:
                    break
                after = keys[-1]
                copied, copied_bytes = self._copy(source, keys, pending_targets)
                pending_cleanup.extend(copied)
                pending_bytes += copied_bytes
                if pending_bytes >= store._move_flush_bytes:
                    left_behind += self._clean_up(pending_cleanup, pending_targets)
                    pending_cleanup = []
                    pending_targets = set()
                    pending_bytes = 0
                examined += len(keys)
                fraction = min(examined / total, 1.0) if total else 1.0
                for move in moves:
                    move._progress = fraction

        left_behind += self._clean_up(pending_cleanup, pending_targets)
        if left_behind:
            logger.info(
                "shard move pass to ring version %d left %d keys for a newer ring",
                target,
                left_behind,
            )
            if store._view[0].versions[0] == target:
                # Keys are left behind only after a newer ring arrived; if
                # none did, pause before the next pass rather than spin.
                time.sleep(0.01)
            return
        store._finish_pass(target)

    def _copy(
        self, source: str, keys: list[bytes], targets: set[str]
    ) -> tuple[list[bytes], int]:
        """Copy the chunk's moving keys to their newest owners (step 1).

        Adds the names of the shards written to ``targets``.
        """
        store = self._store
        copied: list[bytes] = []
        copied_bytes = 0
        with store._gate.shared(), store._key_locks.holding(keys):
            store._check_writable()
            routing, shards = store._view
            batches: dict[str, WriteBatch] = {}
            for key in keys:
                owners = routing.owners(key)
                target = owners[0]
                if target == source or source not in owners:
                    continue
                value = _MISSING
                holder = None
                for holder in owners:
                    value = shards[holder].get(key, _MISSING)
                    if value is not _MISSING:
                        break
                if value is _MISSING:
                    continue  # deleted after the chunk was listed
                if holder != target:
                    batches.setdefault(target, WriteBatch()).put(key, value)
                    copied_bytes += len(key) + len(value)
                    store._count_move(holder, target)  # type: ignore[arg-type]
                # The target is flushed before old copies go, also when it
                # had the key already: that copy may not be durable yet.
                targets.add(target)
                copied.append(key)
            for target, batch in batches.items():
                shards[target].write(batch)
        return copied, copied_bytes

    def _clean_up(self, keys: list[bytes], targets: set[str]) -> int:
        """Flush ``targets``, then delete superseded copies (steps 2 and 3).

        Returns the number of keys left on older owners because their newest
        owner changed after they were copied.
        """
        left_behind = 0
        if not keys:
            return left_behind
        store = self._store
        _, shards = store._view
        for name in sorted(targets):
            self._check_stop()
            # NOTE: on an LSMStore flush() also writes a level-0 table, which
            # is more than the fsync this step needs. A small move_flush_bytes
            # therefore makes many small tables.
            shards[name].flush()
        for start in range(0, len(keys), store._move_chunk_keys):
            chunk = keys[start : start + store._move_chunk_keys]
            with store._gate.shared(), store._key_locks.holding(chunk):
                store._check_writable()
                routing, shards = store._view
                deletes: dict[str, WriteBatch] = {}
                for key in chunk:
                    owners = routing.owners(key)
                    newest_has_key = (
                        shards[owners[0]].get(key, _MISSING) is not _MISSING
                    )
                    for holder in owners[1:]:
                        if shards[holder].get(key, _MISSING) is _MISSING:
                            continue
                        if newest_has_key:
                            deletes.setdefault(holder, WriteBatch()).delete(key)
                        else:
                            # The copy went to an owner that a newer ring
                            # replaced; this copy may be the only one left.
                            left_behind += 1
                            break
                for holder, batch in deletes.items():
                    shards[holder].write(batch)
        return left_behind


def _count_keys(shard: Store) -> int:
    iterator = shard.scan(keys_only=True)
    try:
        return sum(1 for _ in iterator)
    finally:
        _close(iterator)


def _next_keys(shard: Store, after: bytes | None, limit: int) -> list[bytes]:
    """Return up to ``limit`` keys of ``shard`` greater than ``after``."""
    # b"\x00" appended gives the smallest key greater than ``after``.
    start = None if after is None else after + b"\x00"
    iterator = shard.scan(start, keys_only=True)
    try:
        return list(itertools.islice(iterator, limit))
    finally:
        _close(iterator)


def _close(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
