"""Consistent-hash sharding: the ring, jump hash and the sharded store.

``HashRing`` maps keys to named nodes, ``jump_hash`` maps integer keys to
numbered buckets, and ``ShardedStore`` spreads a Store over many stores by
a ring, moving keys in the background when shards are added or removed.
docs/sharding.md describes the move protocol and its guarantees.
"""

from .bounded import BoundedLoads, assign_bounded
from .jump import jump_hash
from .move import Move
from .ring import HashRing
from .store import ShardedStore

__all__ = [
    "BoundedLoads",
    "HashRing",
    "Move",
    "ShardedStore",
    "assign_bounded",
    "jump_hash",
]
