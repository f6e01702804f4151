"""Consistent hashing with bounded loads, an opt-in on top of HashRing.

Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded
Loads" (SODA 2018, arXiv:1608.01350): every node gets a capacity of
``ceil((1 + epsilon) * m * weight / total_weight)`` keys, where ``m`` is the
number of keys placed, and a key goes to the first node below capacity in
its replica order (``HashRing.nodes_for``): on the classic ring, the
nodes clockwise from its point. With skewed key sets, where plain consistent
hashing can pile far more than the mean onto one node, no node exceeds its
capacity, while a key still moves only when a node it passed is full.

The placement depends on the set of keys, not only on the key. A
ShardedStore must find a key's shard from the key alone, so it routes by
the plain ring. Bounded loads suit caches and schedulers that keep the
assignment table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .ring import HashRing, _key_bytes

__all__ = ["BoundedLoads", "assign_bounded"]


def _check_epsilon(epsilon: object) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise TypeError(f"epsilon must be a number, not {type(epsilon).__name__}")
    if not epsilon > 0 or math.isinf(epsilon):
        raise ValueError(f"epsilon must be a positive finite number, not {epsilon!r}")
    return float(epsilon)


class BoundedLoads:
    """An online assignment of keys to the nodes of a ring, with capped loads.

    ``place(key)`` assigns a key (once) and returns its node, and
    ``release(key)`` removes it. At each placement every node's load is at most
    ``capacity(node)`` computed for the keys placed so far.

    NOTE: releasing keys lowers the capacities but moves no placed key, so
    after releases a node can stay above its new capacity until keys are
    placed again; call ``rebalance()`` to re-place every key.

    The ring must not change while this object is in use.

    >>> loads = BoundedLoads(HashRing(["a", "b"]), epsilon=0.25)
    >>> loads.place(b"k1") in ("a", "b")
    True
    """

    def __init__(self, ring: HashRing, epsilon: float = 0.25) -> None:
        if not isinstance(ring, HashRing):
            raise TypeError(f"ring must be a HashRing, not {type(ring).__name__}")
        if len(ring) == 0:
            raise LookupError("the ring is empty; add a node before placing keys")
        self._ring = ring
        self._epsilon = _check_epsilon(epsilon)
        # Only nodes that own a virtual node can take keys: with ketama a
        # node of tiny weight can get no point at all.
        owning = set(ring._table[1])
        self._weights = {n: w for n, w in ring.nodes.items() if n in owning}
        self._total_weight = sum(self._weights.values())
        self._loads = dict.fromkeys(self._weights, 0)
        self._owner: dict[bytes, str] = {}

    @property
    def epsilon(self) -> float:
        """Allowed excess over the mean load, as a fraction."""
        return self._epsilon

    def capacity(self, node: str, keys: int | None = None) -> int:
        """Return the maximum number of keys on ``node`` when ``keys`` are placed.

        ``keys`` defaults to the number placed now.
        """
        if keys is None:
            keys = len(self._owner)
        share = keys * self._weights[node] / self._total_weight
        return math.ceil((1.0 + self._epsilon) * share)

    def place(self, key: bytes | str) -> str:
        """Assign ``key`` to a node below capacity and return it.

        A key placed before keeps its node. Runtime complexity: O(log P)
        plus the steps of the replica order up to the first node with room.
        """
        data = _key_bytes(key)
        node = self._owner.get(data)
        if node is not None:
            return node
        placed = len(self._owner) + 1
        for candidate in self._ring._preference(data):
            if self._loads[candidate] < self.capacity(candidate, placed):
                self._loads[candidate] += 1
                self._owner[data] = candidate
                return candidate
        # Unreachable: the capacities sum to at least (1 + epsilon) * placed.
        raise AssertionError("no node below capacity")

    def release(self, key: bytes | str) -> None:
        """Remove ``key``; releasing a key that was never placed is not an error."""
        node = self._owner.pop(_key_bytes(key), None)
        if node is not None:
            self._loads[node] -= 1

    def node_of(self, key: bytes | str) -> str | None:
        """Return the node ``key`` was placed on, or None."""
        return self._owner.get(_key_bytes(key))

    def rebalance(self) -> dict[bytes, str]:
        """Re-place every key in ring order; return the keys whose node changed."""
        before = dict(self._owner)
        self._place_all(list(before))
        return {key: node for key, node in self._owner.items() if before[key] != node}

    def _place_all(self, keys: list[bytes]) -> None:
        """Replace the assignment with ``keys`` placed in ring-point order."""
        keys.sort(key=lambda data: (self._ring.key_hash(data), data))
        self._owner.clear()
        self._loads = dict.fromkeys(self._weights, 0)
        total = len(keys)
        capacities = {node: self.capacity(node, total) for node in self._weights}
        for data in keys:
            for candidate in self._ring._preference(data):
                if self._loads[candidate] < capacities[candidate]:
                    self._loads[candidate] += 1
                    self._owner[data] = candidate
                    break

    def loads(self) -> dict[str, int]:
        """Return the number of keys on each node, as a new dict."""
        return dict(self._loads)

    def __len__(self) -> int:
        """Number of keys placed."""
        return len(self._owner)


def assign_bounded(
    ring: HashRing, keys: Iterable[bytes | str], epsilon: float = 0.25
) -> dict[bytes, str]:
    """Assign ``keys`` to the nodes of ``ring`` with no node above its capacity.

    Every node gets at most ``ceil((1 + epsilon) * m * weight / total_weight)``
    of the ``m`` distinct keys. Keys are placed in order of their ring point
    (then their bytes), so the result depends on the key set and the ring,
    not on the order of ``keys``.

    >>> ring = HashRing(["a", "b", "c"])
    >>> placement = assign_bounded(ring, [b"x", b"y", b"z"])
    >>> sorted(placement)
    [b'x', b'y', b'z']
    >>> set(placement.values()) <= {"a", "b", "c"}
    True
    """
    tracker = BoundedLoads(ring, epsilon)
    tracker._place_all(list({_key_bytes(key) for key in keys}))
    return dict(tracker._owner)
