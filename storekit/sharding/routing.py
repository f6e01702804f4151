"""Routing: the rings a ShardedStore reads and writes by, newest first.

With one ring every key lives on its owner. While moves run there are
several: the newest ring names the shard where a key belongs, and the older
rings name the shards where it may still be. A key's *owners* are its owner in each ring, newest
first, without repeats. The copy of a key on the first owner that has it is
the current one. Writes go to the newest owner and delete the key from the
others, and the background copy only fills a newest owner that lacks the
key.

``plan_ops`` splits a batch into per-shard batches in the order that keeps
this true at every step, and ``apply_plan`` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..batch import KIND_DELETE, KIND_PUT, WriteBatch
from ..store import Store
from .coordinator import Plan
from .ring import HashRing

__all__ = ["Change", "Routing", "apply_plan", "plan_ops"]

Op = tuple[int, bytes, bytes | None]

#: The change from the next older ring: ("add" | "remove", node).
Change = tuple[str, str]


class Routing:
    """An immutable list of rings with their versions, newest first."""

    __slots__ = ("rings", "versions", "changes", "newest", "single")

    def __init__(
        self,
        rings: Sequence[HashRing],
        versions: Sequence[int],
        changes: Sequence[Change | None],
    ) -> None:
        if not rings or not len(rings) == len(versions) == len(changes):
            raise ValueError("routing needs one version and one change per ring")
        self.rings = tuple(rings)
        self.versions = tuple(versions)
        self.changes = tuple(changes)
        self.newest = self.rings[0]
        self.single = len(self.rings) == 1

    def owner(self, key: bytes) -> str:
        """Return the shard where ``key`` belongs."""
        return self.newest.node_for(key)

    def owners(self, key: bytes) -> list[str]:
        """Return the shards that may hold ``key``, the newest owner first."""
        found = [self.newest.node_for(key)]
        for ring in self.rings[1:]:
            node = ring.node_for(key)
            if node not in found:
                found.append(node)
        return found

    def nodes(self) -> set[str]:
        """Return every shard named by any ring."""
        names: set[str] = set()
        for ring in self.rings:
            names.update(ring.nodes)
        return names

    def push(self, ring: HashRing, change: Change) -> Routing:
        """Return routing with ``ring`` in front as the next version."""
        return Routing(
            (ring, *self.rings),
            (self.versions[0] + 1, *self.versions),
            (change, *self.changes),
        )

    def drop_older_than(self, version: int) -> Routing:
        """Return routing without the rings older than ``version``."""
        keep = [i for i, v in enumerate(self.versions) if v >= version]
        changes = [self.changes[i] for i in keep]
        changes[-1] = None  # the oldest ring left has nothing to compare with
        return Routing(
            [self.rings[i] for i in keep], [self.versions[i] for i in keep], changes
        )

    def sources(self) -> set[str]:
        """Return the shards that may hold keys whose newest owner is elsewhere."""
        found: set[str] = set()
        for ring in self.rings[1:]:
            found |= ring.losing_nodes(self.newest)
        return found


def plan_ops(ops: list[Op], routing: Routing) -> Plan:
    """Split ``ops`` into per-shard batches, in phases that must run in order.

    With one ring there is one phase. While a move runs there are three:
    deletes of deleted keys from their older owners, then every operation
    on the newest owners, then deletes of put keys from their older owners.
    A key's last operation in ``ops`` decides its phase, as it decides its
    final value.
    """
    if routing.single:
        ring = routing.newest
        per_shard: dict[str, list[Op]] = {}
        for op in ops:
            per_shard.setdefault(ring.node_for(op[1]), []).append(op)
        return [per_shard]
    owners_of: dict[bytes, list[str]] = {}
    last_kind: dict[bytes, int] = {}
    main: dict[str, list[Op]] = {}
    for op in ops:
        key = op[1]
        owners = owners_of.get(key)
        if owners is None:
            owners = owners_of[key] = routing.owners(key)
        main.setdefault(owners[0], []).append(op)
        last_kind[key] = op[0]
    before: dict[str, list[Op]] = {}
    after: dict[str, list[Op]] = {}
    for key, kind in last_kind.items():
        phase = before if kind == KIND_DELETE else after
        for holder in owners_of[key][1:]:
            phase.setdefault(holder, []).append((KIND_DELETE, key, None))
    return [before, main, after]


def apply_plan(plan: Plan, shards: Mapping[str, Store]) -> None:
    """Write each phase's per-shard batches, phase by phase."""
    for phase in plan:
        for name, ops in phase.items():
            shard = shards[name]
            if len(ops) == 1:
                kind, key, value = ops[0]
                if kind == KIND_PUT:
                    shard.put(key, value)  # type: ignore[arg-type]
                else:
                    shard.delete(key)
                continue
            batch = WriteBatch()
            for kind, key, value in ops:
                if kind == KIND_PUT:
                    batch.put(key, value)  # type: ignore[arg-type]
                else:
                    batch.delete(key)
            shard.write(batch)
