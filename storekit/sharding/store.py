"""ShardedStore: one Store spread over many stores by a consistent-hash ring.

Reads and writes route by key. While a move runs (see storekit.sharding.move)
a key's *owners* are its owner in each ring still in effect, newest first.
The first owner that has the key has its current value, and writes keep
that true at every step:

- a put goes to the newest owner first, then the key is deleted from the
  older owners, so a crash in between leaves the new value readable;
- a delete removes the key from the older owners first, then from the
  newest owner, so a crash in between leaves the last value readable,
  never an older copy from a shard the key left earlier.

Everything that touches one key across shards takes that key's stripe of
``KeyLocks``, and every write takes the ``WriteGate`` shared. Snapshots,
scans and ring changes take the gate exclusively, so they never see a
write that reached one shard but not the next.

With ``path`` the store keeps its shard map (storekit.sharding.state) and
the coordinator log of cross-shard batches (storekit.sharding.coordinator)
there, through the ``fs`` file-system seam.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from .._exit import run_before_closing
from .._validate import check_key, check_value, resolve_bounds
from ..batch import KIND_DELETE, KIND_PUT, WriteBatch
from ..errors import ClosedError, CorruptionError, DurabilityError
from ..fs import FileSystem, default_fs
from ..store import ScanItem, Snapshot, Store
from ..wal import check_path
from ._locks import KeyLocks, WriteGate
from ._scan import MergedScan, ShardedSnapshot
from .coordinator import CoordinatorLog, Plan
from .move import Move, Mover, _close
from .ring import HashRing
from .routing import Routing, apply_plan, plan_ops
from .state import (
    SHARD_MAP_FILE,
    RingEntry,
    ShardMap,
    read_shard_map,
    write_shard_map,
)

__all__ = ["ShardedStore"]

logger = logging.getLogger("storekit.sharding")

_MISSING: Any = object()
_open_stores: weakref.WeakSet = weakref.WeakSet()


def _stop_movers() -> None:
    """Stop mover threads at interpreter exit, before shard stores are closed."""
    for store in list(_open_stores):
        store._stop_mover()


run_before_closing(_stop_movers)


def _is_empty(store: Store) -> bool:
    iterator = store.scan(keys_only=True)
    try:
        return next(iter(iterator), _MISSING) is _MISSING
    finally:
        _close(iterator)


class _InvalidMap(Exception):
    """Ring settings or weights in a shard map that HashRing rejects."""


class ShardedStore(Store):
    """A Store whose keys are spread over named stores by a HashRing.

    ``shards`` maps shard names to stores (any storekit Store). ``ring``
    decides placement; the default is ``HashRing(list(shards))``. Every key
    must be written through this object: a key written to a shard directly
    is invisible here unless that shard owns it.

    ``path`` (optional) is a directory for the shard map, the coordinator
    log of ``write(batch, atomic=True)`` and the state of moves in
    progress. All I/O there goes through ``fs``. Reopening with the same
    path requires the same shard names (including a shard that a move was
    adding or removing) and finishes any interrupted batch and move.
    ``move_chunk_keys`` is the number of keys copied per step of a move and
    ``move_flush_bytes`` the bytes copied between flushes of the targets.

    Thread-safety: all methods may be called from any thread.

    Snapshots and scans: ``snapshot()`` and ``scan()`` wait until no write
    is in flight, then take a snapshot or iterator of every shard, so they
    see each write (also a cross-shard ``atomic=True`` batch) entirely or
    not at all. This relies on each shard's ``scan`` and ``snapshot``
    taking their view when called, as the Store interface requires.

    >>> from storekit import MemoryStore
    >>> db = ShardedStore({"a": MemoryStore(), "b": MemoryStore()})
    >>> db.put(b"k", b"v")
    >>> db.get(b"k")
    b'v'
    """

    def __init__(
        self,
        shards: Mapping[str, Store],
        ring: HashRing | None = None,
        path: str | None = None,
        *,
        fs: FileSystem | None = None,
        move_chunk_keys: int = 256,
        move_flush_bytes: int = 4 << 20,
    ) -> None:
        self._check_arguments(shards, ring, path, move_chunk_keys)
        if fs is not None and path is None:
            raise ValueError("fs is only used for files under path; pass path= too")
        if isinstance(move_flush_bytes, bool) or not isinstance(move_flush_bytes, int):
            raise TypeError(
                f"move_flush_bytes must be an int, not {type(move_flush_bytes).__name__}"
            )
        if move_flush_bytes < 0:
            raise ValueError(
                f"move_flush_bytes must not be negative, not {move_flush_bytes}"
            )
        self._move_chunk_keys = move_chunk_keys
        self._move_flush_bytes = move_flush_bytes
        self.path = None if path is None else check_path(path)
        self._fs = default_fs(fs)
        self._epoch = self._fs.epoch
        self._gate = WriteGate()
        self._key_locks = KeyLocks()
        self._state_lock = threading.Lock()
        self._atomic_lock = threading.Lock()
        self._closed = False
        self._failure: BaseException | None = None
        self._stopping = False
        self._mover: Mover | None = None
        self._moves: list[Move] = []
        self._moved_in: dict[str, int] = {}
        self._moved_out: dict[str, int] = {}
        self._atomic_batches = 0
        self._recovered_batches = 0
        self._file_lock = None
        self._coordinator: CoordinatorLog | None = None
        # Shards whose removal finished; see storekit.sharding.state.
        self._released: set[str] = set()
        base_ring = ring.copy() if ring is not None else HashRing(list(shards))
        self._view: tuple[Routing, dict[str, Store]]

        if self.path is None:
            routing = Routing([base_ring], [1], [None])
            self._view = (routing, dict(shards))
        else:
            try:
                self._open_path(shards, ring, base_ring)
            except BaseException:
                self._release_files()
                raise
        _open_stores.add(self)
        if not self._view[0].single:
            self._ensure_mover()

    # -- opening ----------------------------------------------------------------

    @staticmethod
    def _check_arguments(
        shards: object, ring: object, path: object, move_chunk_keys: object
    ) -> None:
        if not isinstance(shards, Mapping):
            raise TypeError(
                f"shards must be a mapping of name to Store, not {type(shards).__name__}"
            )
        names_by_store: dict[int, str] = {}
        for name, store in shards.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"shard names must be non-empty str, not {name!r}")
            if not isinstance(store, Store):
                raise TypeError(
                    f"shard {name!r} must be a storekit Store, not {type(store).__name__}"
                )
            # One store under two names would make a move between them
            # delete the only copy of the keys it moves.
            other = names_by_store.setdefault(id(store), name)
            if other != name:
                raise ValueError(
                    f"shards {other!r} and {name!r} are the same store object; "
                    "each shard needs its own store"
                )
        if ring is not None and not isinstance(ring, HashRing):
            raise TypeError(
                f"ring must be a HashRing or None, not {type(ring).__name__}"
            )
        if path is None and not shards:
            raise ValueError("shards is empty; a ShardedStore needs at least one shard")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be a str, a path or None, not {type(path).__name__}"
            )
        if ring is not None and path is None and set(ring.nodes) != set(shards):
            raise ValueError(
                f"ring nodes {sorted(ring.nodes)} differ from shard names {sorted(shards)}"
            )
        if isinstance(move_chunk_keys, bool) or not isinstance(move_chunk_keys, int):
            raise TypeError(
                f"move_chunk_keys must be an int, not {type(move_chunk_keys).__name__}"
            )
        if move_chunk_keys < 1:
            raise ValueError(
                f"move_chunk_keys must be at least 1, not {move_chunk_keys}"
            )

    def _open_path(
        self, shards: Mapping[str, Store], ring: HashRing | None, base_ring: HashRing
    ) -> None:
        fs = self._fs
        directory = self.path
        assert directory is not None
        fs.mkdir(directory)
        self._file_lock = fs.lock(posixpath.join(directory, "LOCK"))

        shard_map = read_shard_map(fs, directory)
        if shard_map is None:
            leftovers = [name for name in fs.listdir(directory) if name != "LOCK"]
            if leftovers:
                # The map is written first, so other files without it mean
                # it was lost; starting with equal weights would hide keys.
                raise CorruptionError(
                    f"shard map {posixpath.join(directory, 'SHARDS')} is missing "
                    f"but {directory} contains {', '.join(sorted(leftovers))}; "
                    "restore the map file or use a new directory",
                    path=posixpath.join(directory, "SHARDS"),
                    offset=None,
                )
            if not shards:
                raise ValueError(
                    "shards is empty; a ShardedStore needs at least one shard"
                )
            if set(base_ring.nodes) != set(shards):
                raise ValueError(
                    f"ring nodes {sorted(base_ring.nodes)} differ from shard names "
                    f"{sorted(shards)}"
                )
            routing = Routing([base_ring], [1], [None])
            self._write_map(routing, base_ring)
        else:
            routing = self._routing_from_map(shard_map, ring, directory)
            self._released = set(shard_map.released)

        expected = routing.nodes()
        missing = sorted(expected - set(shards))
        ignored = sorted((set(shards) - expected) & self._released)
        extra = sorted(set(shards) - expected - self._released)
        if missing or extra:
            raise ValueError(
                f"the shard map in {directory} names shards {sorted(expected)}; "
                f"missing: {missing}, not in the map: {extra}. Pass the same shards "
                "as before and add new ones with add_shard"
            )
        if ignored:
            logger.info(
                "ignoring shards %s: their removal finished before this open", ignored
            )
        self._view = (routing, {n: s for n, s in shards.items() if n in expected})

        self._coordinator = CoordinatorLog(directory, fs)
        self._recover_batches()

        for index, change in enumerate(routing.changes):
            if change is not None:
                kind, node = change
                move = Move(kind, node, routing.versions[index], shards.get(node))
                self._moves.append(move)
        self._moves.sort(key=lambda move: move.version)
        if self._moves:
            logger.info(
                "resuming %d shard moves from the shard map in %s",
                len(self._moves),
                directory,
            )

    @staticmethod
    def _routing_from_map(
        shard_map: ShardMap, ring: HashRing | None, directory: str
    ) -> Routing:
        try:
            return ShardedStore._build_routing(shard_map, ring, directory)
        except _InvalidMap as exc:
            path = posixpath.join(directory, SHARD_MAP_FILE)
            raise CorruptionError(
                f"shard map {path} passed its checksum but contains invalid ring "
                f"settings: {exc.__cause__}",
                path=path,
                offset=12,
            ) from None

    @staticmethod
    def _build_routing(
        shard_map: ShardMap, ring: HashRing | None, directory: str
    ) -> Routing:
        if ring is None:
            if shard_map.hash_name == "custom":
                raise ValueError(
                    f"the shard map in {directory} uses a custom hash function; "
                    "pass ring=HashRing(..., hash=that function)"
                )
            try:
                base = HashRing(
                    vnodes=shard_map.vnodes,
                    hash=shard_map.hash_name,
                    slots=shard_map.slots,
                )
            except (TypeError, ValueError) as exc:
                raise _InvalidMap from exc
        else:
            ring_settings = (ring.vnodes, ring.hash_name, ring.slots)
            map_settings = (shard_map.vnodes, shard_map.hash_name, shard_map.slots)
            if ring_settings != map_settings:
                raise ValueError(
                    f"ring has vnodes={ring.vnodes}, hash={ring.hash_name!r}, "
                    f"slots={ring.slots} but the shard map in {directory} has "
                    f"vnodes={shard_map.vnodes}, hash={shard_map.hash_name!r}, "
                    f"slots={shard_map.slots}"
                )
            if ring.nodes != shard_map.rings[0].nodes:
                raise ValueError(
                    f"ring nodes {ring.nodes} differ from the shard map in {directory} "
                    f"({shard_map.rings[0].nodes}); pass ring=None to use the map"
                )
            base = ring
        try:
            rings = [base.copy(entry.nodes) for entry in shard_map.rings]
        except (TypeError, ValueError) as exc:
            raise _InvalidMap from exc
        versions = [entry.version for entry in shard_map.rings]
        changes = [
            None
            if entry.change_kind is None
            else (entry.change_kind, entry.change_node)
            for entry in shard_map.rings
        ]
        return Routing(rings, versions, changes)  # type: ignore[arg-type]

    def _write_map(self, routing: Routing, ring: HashRing | None = None) -> None:
        """Make ``routing`` the durable shard map; nothing without a path."""
        if self.path is None:
            return
        template = ring if ring is not None else routing.newest
        entries = [
            RingEntry(
                version=version,
                nodes=each.nodes,
                change_kind=None if change is None else change[0],
                change_node=None if change is None else change[1],
            )
            for each, version, change in zip(
                routing.rings, routing.versions, routing.changes, strict=True
            )
        ]
        shard_map = ShardMap(
            template.vnodes,
            template.hash_name,
            template.slots,
            entries,
            sorted(self._released),
        )
        write_shard_map(self._fs, self.path, shard_map)

    def _recover_batches(self) -> None:
        """Apply every logged cross-shard batch that has no commit, then empty the log."""
        assert self._coordinator is not None
        pending = self._coordinator.pending()
        _, shards = self._view
        for batch_id, plan in pending:
            unknown = sorted({name for phase in plan for name in phase} - set(shards))
            if unknown:
                raise ValueError(
                    f"coordinator log {self._coordinator.path} has batch {batch_id} "
                    f"for shards {unknown} that were not passed in"
                )
            logger.warning(
                "finishing cross-shard batch %d from coordinator log %s",
                batch_id,
                self._coordinator.path,
            )
            apply_plan(plan, shards)
            self._recovered_batches += 1
        if pending:
            touched = {name for _, plan in pending for phase in plan for name in phase}
            for name in sorted(touched):
                shards[name].flush()
        self._coordinator.reset()

    # -- state checks -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._fs.epoch != self._epoch:
            raise ClosedError("ShardedStore is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failure is not None:
            raise DurabilityError(
                f"ShardedStore failed earlier ({self._failure!r}); reopen it to continue"
            ) from self._failure

    # -- reads --------------------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        key = check_key(key)
        self._check_open()
        # The routing is read under the key's stripe: every change of where
        # this key lives happens under the same stripe, so the routing read
        # here matches the key's placement for the whole lookup.
        with self._key_locks.lock_for(key):
            routing, shards = self._view
            if routing.single:
                return shards[routing.newest.node_for(key)].get(key, default)
            for owner in routing.owners(key):
                value = shards[owner].get(key, _MISSING)
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
        """Iterate every shard in key order; see ``Store.scan`` for the bounds.

        Merging costs O(log S) per key for S shards, plus one ring lookup
        per key to hide copies that are not current.
        """
        resolve_bounds(start, end, prefix, reverse, keys_only)
        self._check_open()
        sources: list[tuple[str, Iterator[Any]]] = []
        with self._gate.exclusive():
            routing, shards = self._view
            try:
                for name in sorted(shards):
                    iterator = shards[name].scan(
                        start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
                    )
                    sources.append((name, iterator))
            except BaseException:
                for _, iterator in sources:
                    _close(iterator)
                raise
        return MergedScan(sources, routing, bool(reverse), bool(keys_only))

    def snapshot(self) -> Snapshot:
        """Return a snapshot of every shard, consistent across shards."""
        self._check_open()
        snapshots: dict[str, Snapshot] = {}
        with self._gate.exclusive():
            routing, shards = self._view
            try:
                for name in sorted(shards):
                    snapshots[name] = shards[name].snapshot()
            except BaseException:
                for snapshot in snapshots.values():
                    snapshot.close()
                raise
        return ShardedSnapshot(snapshots, routing, check_key)

    # -- writes -------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        key = check_key(key)
        value = check_value(value)
        self._check_writable()
        with self._gate.shared(), self._key_locks.lock_for(key):
            self._check_writable()
            routing, shards = self._view
            if routing.single:
                shards[routing.newest.node_for(key)].put(key, value)
                return
            apply_plan(plan_ops([(KIND_PUT, key, value)], routing), shards)

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        self._check_writable()
        with self._gate.shared(), self._key_locks.lock_for(key):
            self._check_writable()
            routing, shards = self._view
            if routing.single:
                shards[routing.newest.node_for(key)].delete(key)
                return
            apply_plan(plan_ops([(KIND_DELETE, key, None)], routing), shards)

    def write(self, batch: WriteBatch, *, atomic: bool = False) -> None:
        """Apply ``batch``: atomic per shard, or across shards with ``atomic=True``.

        Without ``atomic`` each shard applies its part as one batch, so a
        crash can leave some shards' parts applied and others not. With
        ``atomic=True`` the batch goes through the coordinator log under
        ``path`` first (two fsyncs), and a reopen after a crash finishes it.
        Cross-shard power-loss atomicity also needs shards that fsync each
        write (``sync="always"``); a killed process loses nothing either way.
        """
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        if atomic and self._coordinator is None:
            raise ValueError(
                "write(batch, atomic=True) needs the coordinator log; "
                "open the ShardedStore with path="
            )
        self._check_writable()
        ops = list(batch)
        if not ops:
            return
        keys = {op[1] for op in ops}
        if not atomic:
            with self._gate.shared(), self._key_locks.holding(keys):
                self._check_writable()
                routing, shards = self._view
                apply_plan(plan_ops(ops, routing), shards)
            return
        with self._atomic_lock:
            with self._gate.shared(), self._key_locks.holding(keys):
                self._check_writable()
                routing, shards = self._view
                plan = plan_ops(ops, routing)
                self._write_atomic(plan, shards)

    def _write_atomic(self, plan: Plan, shards: dict[str, Store]) -> None:
        phases = [phase for phase in plan if phase]
        if len(phases) == 1 and len(phases[0]) == 1:
            apply_plan(phases, shards)  # one shard: its own batch is atomic
            return
        coordinator = self._coordinator
        assert coordinator is not None
        try:
            batch_id = coordinator.begin(phases)
        except BaseException as exc:
            self._failure = exc
            raise
        try:
            apply_plan(phases, shards)
            coordinator.commit(batch_id)
        except BaseException as exc:
            self._failure = exc
            logger.error(
                "cross-shard batch %d is logged but not finished: %r; "
                "no more writes until the store is reopened, which finishes it",
                batch_id,
                exc,
            )
            raise DurabilityError(
                f"cross-shard batch {batch_id} was logged but could not be finished "
                f"({exc!r}); reopen the ShardedStore with the same path to finish it"
            ) from exc
        self._atomic_batches += 1

    # -- moves --------------------------------------------------------------------

    def add_shard(self, name: str, store: Store, weight: int = 1) -> Move:
        """Add shard ``name`` and start moving its keys to it; return the Move.

        ``store`` must be empty. Returns at once; keys move in the background
        while reads and writes go on. Raises ValueError if ``name`` is still
        a shard, or still being removed.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"shard name must be a non-empty str, not {name!r}")
        if not isinstance(store, Store):
            raise TypeError(
                f"store must be a storekit Store, not {type(store).__name__}"
            )
        self._check_writable()
        if not _is_empty(store):
            raise ValueError(
                f"store for new shard {name!r} is not empty; a new shard must start empty"
            )
        with self._gate.exclusive():
            self._check_writable()
            routing, shards = self._view
            if name in shards:
                raise ValueError(
                    f"shard {name!r} is already in the store or still being removed; "
                    "wait for its move to finish"
                )
            for other, existing in shards.items():
                if existing is store:
                    raise ValueError(
                        f"the store for new shard {name!r} is already shard "
                        f"{other!r}; each shard needs its own store"
                    )
            ring = routing.newest.copy()
            ring.add(name, weight)
            new_routing = routing.push(ring, ("add", name))
            new_shards = dict(shards)
            new_shards[name] = store
            self._released.discard(name)
            return self._install(
                new_routing,
                new_shards,
                Move("add", name, new_routing.versions[0], store),
            )

    def remove_shard(self, name: str) -> Move:
        """Start moving every key off shard ``name``; return the Move.

        Returns at once. The shard's store stays in use until the move is
        done; then ``move.store`` is released to the caller, who closes it.
        """
        self._check_writable()
        with self._gate.exclusive():
            self._check_writable()
            routing, shards = self._view
            if name not in routing.newest:
                raise KeyError(f"shard {name!r} is not in the ring")
            if len(routing.newest) == 1:
                raise ValueError(f"cannot remove {name!r}: it is the last shard")
            ring = routing.newest.copy()
            ring.remove(name)
            new_routing = routing.push(ring, ("remove", name))
            move = Move("remove", name, new_routing.versions[0], shards[name])
            return self._install(new_routing, dict(shards), move)

    def _install(self, routing: Routing, shards: dict[str, Store], move: Move) -> Move:
        """Persist and switch to ``routing``; call with the gate taken exclusively."""
        self._write_map(routing)
        with self._state_lock:
            self._view = (routing, shards)
            self._moves.append(move)
        logger.info(
            "shard move started: %s %r (ring version %d)",
            move.kind,
            move.node,
            move.version,
        )
        self._ensure_mover()
        return move

    def _ensure_mover(self) -> None:
        with self._state_lock:
            if self._mover is None and not self._stopping:
                self._mover = Mover(self)
                self._mover.start()

    def _finish_pass(self, version: int) -> None:
        """Drop the rings older than ``version`` once a pass to it has ended."""
        _, shards = self._view
        for shard in shards.values():
            shard.flush()
        with self._gate.exclusive():
            self._check_writable()
            routing, shards = self._view
            new_routing = routing.drop_older_than(version)
            keep = new_routing.nodes()
            self._released |= set(shards) - keep
            self._write_map(new_routing)
            with self._state_lock:
                self._view = (
                    new_routing,
                    {n: s for n, s in shards.items() if n in keep},
                )
                finished = [move for move in self._moves if move.version <= version]
                self._moves = [move for move in self._moves if move.version > version]
        for move in finished:
            move._finish()
            logger.info("shard move finished: %s %r", move.kind, move.node)

    def _count_move(self, source: str, target: str) -> None:
        self._moved_out[source] = self._moved_out.get(source, 0) + 1
        self._moved_in[target] = self._moved_in.get(target, 0) + 1

    @property
    def pending_moves(self) -> list[Move]:
        """Moves that have not finished, oldest first."""
        with self._state_lock:
            return list(self._moves)

    @property
    def ring(self) -> HashRing:
        """A copy of the ring that keys are moving to (or live by, with no move)."""
        return self._view[0].newest.copy()

    @property
    def shards(self) -> dict[str, Store]:
        """The stores in use, by name, as a new dict."""
        return dict(self._view[1])

    # -- lifecycle ----------------------------------------------------------------

    def flush(self) -> None:
        """Flush every shard."""
        self._check_writable()
        for shard in self._view[1].values():
            shard.flush()

    def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Compact the key range on every shard."""
        self._check_open()
        for shard in self._view[1].values():
            shard.compact(start, end)

    def stats(self) -> dict[str, Any]:
        """Return per-shard statistics and the state of moves and batches."""
        self._check_open()
        routing, shards = self._view
        per_shard = {}
        for name, shard in sorted(shards.items()):
            per_shard[name] = {
                "in_ring": name in routing.newest,
                "weight": routing.newest.nodes.get(name),
                "keys_moved_in": self._moved_in.get(name, 0),
                "keys_moved_out": self._moved_out.get(name, 0),
                "store": shard.stats(),
            }
        result: dict[str, Any] = {
            "shards": per_shard,
            "ring": {
                "nodes": routing.newest.nodes,
                "vnodes": routing.newest.vnodes,
                "hash": routing.newest.hash_name,
                "slots": routing.newest.slots,
                "version": routing.versions[0],
                "rings_in_effect": len(routing.rings),
            },
            "moves_pending": len(self._moves),
            "keys_moved": sum(self._moved_in.values()),
            "atomic_batches": self._atomic_batches,
            "recovered_batches": self._recovered_batches,
        }
        if self._coordinator is not None:
            result["coordinator"] = self._coordinator.stats()
        return result

    def _stop_mover(self) -> None:
        """Ask the mover to stop after its current step and wait for it."""
        with self._state_lock:
            self._stopping = True
            mover = self._mover
        if mover is not None and mover.thread is not threading.current_thread():
            mover.thread.join()

    def close(self) -> None:
        """Stop moving keys, close every shard and release ``path``.

        Moves still running are resumed when the store is reopened with the
        same path; without a path they cannot be resumed.
        """
        if self._closed:
            return
        self._stop_mover()
        with self._gate.exclusive():
            if self._closed:
                return
            self._closed = True
        _open_stores.discard(self)
        for move in self.pending_moves:
            move._finished.set()
        error: BaseException | None = None
        for shard in self._view[1].values():
            try:
                shard.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then raise
                error = error or exc
        self._release_files()
        if error is not None:
            raise error

    def _release_files(self) -> None:
        alive = self._fs.epoch == self._epoch
        if self._coordinator is not None:
            try:
                self._coordinator.close()
            finally:
                self._coordinator = None
        if self._file_lock is not None and alive:
            self._file_lock.release()
        self._file_lock = None

    @property
    def closed(self) -> bool:
        """True once closed, or once the file system crashed under it."""
        return self._closed or self._fs.epoch != self._epoch

    def __repr__(self) -> str:
        return f"<ShardedStore {len(self._view[1])} shards, path={self.path!r}>"
