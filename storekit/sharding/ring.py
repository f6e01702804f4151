"""HashRing: consistent hashing with virtual nodes and integer weights.

Each node owns ``vnodes * weight`` virtual nodes: points on a ring of
unsigned integers. A key hashes to a point too, and belongs to the node of
the first virtual node at or after it, wrapping past the largest point to
the smallest. Adding a node therefore takes keys only from the arcs its
new points split, and removing one hands its arcs to the next points.

Two hash modes are built in. ``"xxh3"`` (the default) places virtual node
``i`` of node ``name`` at ``xxh3_64(f"{name}-{i}")`` and hashes keys with
xxh3_64, both with seed 0, so the mapping is the same in every process.
``"ketama"`` reproduces libketama (RJ/ketama, ``libketama/ketama.c``): a
node gets ``floorf(weight / total_weight * (vnodes / 4) * node_count)``
md5 digests of ``f"{name}-{k}"``, each split into four little-endian
uint32 points, and a key hashes to the first four bytes of its md5. With
ketama the point count of every node depends on the total weight, so with
unequal weights a change moves some keys between surviving nodes too, as
it does in libketama.

The mapping depends only on the node names, weights and settings. Points
are kept sorted by ``(point, node name)``, so when two virtual nodes land
on the same point, the node whose name sorts first owns it, whatever order
the nodes were added in. Removing the other node leaves that point in place.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping

import xxhash

__all__ = ["HashRing", "HashFunction"]

#: A custom hash: takes bytes, returns an unsigned int.
HashFunction = Callable[[bytes], int]

_xxh3_64 = xxhash.xxh3_64_intdigest
_FLOAT32 = struct.Struct("<f")

# Bounds of the bucket table that node_for reads before it bisects: about
# 16 buckets per virtual node, so that most buckets hold no point.
_MIN_BUCKET_BITS = 8
_MAX_BUCKET_BITS = 18
_BUCKETS_PER_POINT = 16


def _bucket_table(
    points: list[int], owners: list[str], hash_bits: int
) -> tuple[list[str | None], int]:
    """Return ``(buckets, shift)``: the owner of every key whose point is in a bucket.

    Bucket ``b`` covers the points ``p`` with ``p >> shift == b``. When no
    virtual node falls inside a bucket, every key in it has the same owner
    (the node of the first virtual node after the bucket), stored directly.
    A bucket that contains a virtual node stores None, and the lookup bisects.
    """
    wanted = max(1, len(points) * _BUCKETS_PER_POINT - 1).bit_length()
    bits = min(max(wanted, _MIN_BUCKET_BITS), _MAX_BUCKET_BITS, hash_bits)
    shift = hash_bits - bits
    size = 1 << bits
    # Iterating downwards leaves the first (lowest) virtual node of each bucket.
    first_owner: dict[int, str] = {}
    for index in range(len(points) - 1, -1, -1):
        first_owner[points[index] >> shift] = owners[index]
    buckets: list[str | None] = [None] * size
    # A run of empty buckets belongs to the first point of the bucket after
    # it. The run after the last bucket with points wraps to the first point.
    run_start = 0
    for bucket in sorted(first_owner):
        if bucket > run_start:
            buckets[run_start:bucket] = [first_owner[bucket]] * (bucket - run_start)
        run_start = bucket + 1
    if run_start < size:
        buckets[run_start:] = [owners[0]] * (size - run_start)
    return buckets, shift


def _float32(value: float) -> float:
    """Round a double to the nearest C float, as a cast to ``float`` does."""
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def _ketama_key_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.md5(data).digest()[:4], "little")


def _key_bytes(key: object) -> bytes:
    """Return a ring key as bytes: bytes-like as is, str as UTF-8."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(
        f"ring key must be bytes, bytearray, memoryview or str, not {type(key).__name__}"
    )


#: Upper bound on ``vnodes * weight`` for one node. Each virtual node is a
#: Python tuple on the ring, so a million of them cost about 100 MB.
MAX_POINTS_PER_NODE = 1 << 20


def _check_node(node: object) -> str:
    if not isinstance(node, str):
        raise TypeError(f"node name must be a str, not {type(node).__name__}")
    if not node:
        raise ValueError("node name must not be empty")
    return node


def _check_weight(node: str, weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise TypeError(
            f"weight of node {node!r} must be an int, not {type(weight).__name__}"
        )
    if weight <= 0:
        raise ValueError(f"weight of node {node!r} must be positive, not {weight}")
    return int(weight)


class HashRing:
    """A consistent-hash ring of named nodes with integer weights.

    ``nodes`` is a list of names (weight 1 each) or a mapping of name to
    weight. ``vnodes`` is the number of virtual nodes per unit of weight.
    ``hash`` is ``"xxh3"``, ``"ketama"`` or a callable that maps bytes to
    an unsigned int. A callable hashes both keys and the labels
    ``f"{name}-{i}"`` of virtual nodes. Keys are bytes, or str as UTF-8.

    Thread-safety: lookups may run in any thread while another thread
    changes the ring; each lookup sees the ring before or after a change.
    Changes themselves must not run concurrently.

    >>> ring = HashRing(["a", "b", "c"])
    >>> ring.node_for(b"user:42") in ("a", "b", "c")
    True
    >>> len(ring.nodes_for(b"user:42", 2))
    2
    """

    def __init__(
        self,
        nodes: Mapping[str, int] | Iterable[str] | None = None,
        vnodes: int = 160,
        hash: str | HashFunction = "xxh3",  # noqa: A002 - the public name
    ) -> None:
        if isinstance(vnodes, bool) or not isinstance(vnodes, int):
            raise TypeError(f"vnodes must be an int, not {type(vnodes).__name__}")
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, not {vnodes}")
        if hash == "ketama":
            if vnodes % 4:
                raise ValueError(
                    f"vnodes must be a multiple of 4 with hash='ketama' "
                    f"(each md5 digest gives 4 points), not {vnodes}"
                )
            self._key_hash: HashFunction = _ketama_key_hash
        elif hash == "xxh3":
            self._key_hash = _xxh3_64
        elif callable(hash):
            self._key_hash = hash
        elif isinstance(hash, str):
            raise ValueError(
                f"hash must be 'xxh3', 'ketama' or a callable, not {hash!r}"
            )
        else:
            raise TypeError(
                f"hash must be a str or a callable, not {type(hash).__name__}"
            )
        self._hash_name = hash if isinstance(hash, str) else "custom"
        self._hash_setting = hash
        self._vnodes = vnodes
        self._weights: dict[str, int] = {}
        # Sorted (point, node) pairs, and the lookup table derived from them:
        # a (points, owners) tuple replaced whole, so that a lookup in another
        # thread reads one consistent pair.
        self._points: list[tuple[int, str]] = []
        self._table: tuple[list[int], list[str]] = ([], [])
        # What node_for reads: (buckets or None, shift, points, owners).
        self._lookup: tuple[list[str | None] | None, int, list[int], list[str]] = (
            None,
            0,
            [],
            [],
        )

        initial = self._parse_nodes(nodes)
        for name, weight in initial.items():
            self._check_point_count(name, weight)
        self._weights = initial
        self._rebuild_all()

    # -- construction -------------------------------------------------------

    @staticmethod
    def _parse_nodes(nodes: object) -> dict[str, int]:
        if nodes is None:
            return {}
        if isinstance(nodes, (str, bytes)):
            raise TypeError(
                "nodes must be a list of names or a mapping of name to weight, "
                f"not a single {type(nodes).__name__}"
            )
        weights: dict[str, int] = {}
        if isinstance(nodes, Mapping):
            for node, weight in nodes.items():
                name = _check_node(node)
                weights[name] = _check_weight(name, weight)
            return weights
        for node in nodes:  # type: ignore[attr-defined]
            name = _check_node(node)
            if name in weights:
                raise ValueError(f"duplicate node {name!r} in the node list")
            weights[name] = 1
        return weights

    def _node_points(self, node: str, weight: int) -> list[tuple[int, str]]:
        """Return the virtual nodes of ``node`` in xxh3 or custom mode."""
        hash_label = self._key_hash
        prefix = node + "-"
        points = [
            (hash_label((prefix + str(index)).encode()), node)
            for index in range(self._vnodes * weight)
        ]
        if self._hash_name == "custom":
            for point, _ in points:
                if isinstance(point, bool) or not isinstance(point, int) or point < 0:
                    raise ValueError(
                        f"hash function returned {point!r} for a virtual node of "
                        f"{node!r}; it must return an unsigned int"
                    )
        points.sort()
        return points

    def _ketama_points(self) -> list[tuple[int, str]]:
        """Return every virtual node the way libketama builds its continuum."""
        count = len(self._weights)
        total = _float32(float(sum(self._weights.values())))
        digests_per_node = self._vnodes // 4
        points = []
        for node, weight in self._weights.items():
            # libketama: float pct = (float)w / (float)total;
            # ks = floorf(pct * 40.0 * (float)count); the product is a double
            # that floorf receives as a float.
            share = _float32(_float32(float(weight)) / total)
            digests = math.floor(
                _float32(share * float(digests_per_node) * _float32(float(count)))
            )
            for k in range(digests):
                digest = hashlib.md5(f"{node}-{k}".encode()).digest()
                for h in range(4):
                    point = int.from_bytes(digest[4 * h : 4 * h + 4], "little")
                    points.append((point, node))
        points.sort()
        return points

    def _rebuild_all(self) -> None:
        if self._hash_name == "ketama":
            points = self._ketama_points()
        else:
            points = []
            for node, weight in self._weights.items():
                points.extend(self._node_points(node, weight))
            points.sort()
        self._install(points)

    def _install(self, points: list[tuple[int, str]]) -> None:
        self._points = points
        hashes = [p for p, _ in points]
        owners = [n for _, n in points]
        self._table = (hashes, owners)
        # A custom hash has no known range, so it always bisects.
        hash_bits = {"xxh3": 64, "ketama": 32}.get(self._hash_name)
        if hash_bits is None or not points:
            self._lookup = (None, 0, hashes, owners)
        else:
            buckets, shift = _bucket_table(hashes, owners, hash_bits)
            self._lookup = (buckets, shift, hashes, owners)

    # -- changes ------------------------------------------------------------

    def add(self, node: str, weight: int = 1) -> None:
        """Add ``node`` with ``weight``; raise ValueError if it is already present.

        Runtime complexity: O(P) for P virtual nodes in xxh3 or custom mode;
        ketama mode rebuilds every point.
        """
        node = _check_node(node)
        weight = _check_weight(node, weight)
        if node in self._weights:
            raise ValueError(f"node {node!r} is already in the ring")
        self._check_point_count(node, weight)
        if self._hash_name == "ketama":
            self._weights[node] = weight
            self._rebuild_all()
            return
        new_points = self._node_points(node, weight)
        self._weights[node] = weight
        self._install(list(heapq.merge(self._points, new_points)))

    def remove(self, node: str) -> None:
        """Remove ``node`` and only its virtual nodes; KeyError if it is absent."""
        if node not in self._weights:
            raise KeyError(f"node {node!r} is not in the ring")
        del self._weights[node]
        if self._hash_name == "ketama":
            self._rebuild_all()
            return
        self._install([point for point in self._points if point[1] != node])

    def set_weight(self, node: str, weight: int) -> None:
        """Change the weight of ``node``; KeyError if it is absent."""
        if node not in self._weights:
            raise KeyError(f"node {node!r} is not in the ring")
        weight = _check_weight(node, weight)
        if weight == self._weights[node]:
            return
        self._check_point_count(node, weight)
        if self._hash_name == "ketama":
            old = self._weights[node]
            self._weights[node] = weight
            try:
                self._rebuild_all()
            except BaseException:
                self._weights[node] = old
                raise
            return
        # Build the new points before changing anything, so a hash function
        # that rejects one leaves the ring as it was.
        points = self._node_points(node, weight)
        kept = [point for point in self._points if point[1] != node]
        self._install(list(heapq.merge(kept, points)))
        self._weights[node] = weight

    def _check_point_count(self, node: str, weight: int) -> None:
        if self._vnodes * weight > MAX_POINTS_PER_NODE:
            raise ValueError(
                f"node {node!r} with weight {weight} would get "
                f"{self._vnodes * weight} virtual nodes; at most "
                f"{MAX_POINTS_PER_NODE} are allowed (vnodes * weight)"
            )

    # -- lookups ------------------------------------------------------------

    def key_hash(self, key: bytes | str) -> int:
        """Return the ring position of ``key``."""
        return self._key_hash(_key_bytes(key))

    def node_for(self, key: bytes | str) -> str:
        """Return the node that owns ``key``; LookupError on an empty ring.

        Runtime complexity: O(1) for most keys, O(log P) for P virtual
        nodes when the key's bucket contains a virtual node.
        """
        buckets, shift, points, owners = self._lookup
        if type(key) is not bytes:
            key = key.encode() if type(key) is str else _key_bytes(key)
        position = self._key_hash(key)
        if buckets is not None:
            owner = buckets[position >> shift]
            if owner is not None:
                return owner
        if not points:
            raise LookupError("the ring is empty; add a node before looking up keys")
        index = bisect_left(points, position)
        if index == len(points):
            index = 0
        return owners[index]

    def vnode_for(self, key: bytes | str) -> tuple[int, str]:
        """Return the virtual node that owns ``key`` as ``(point, node)``.

        In ketama mode the point is libketama's continuum value for the key.
        """
        points, owners = self._table
        if not points:
            raise LookupError("the ring is empty; add a node before looking up keys")
        index = bisect_left(points, self._key_hash(_key_bytes(key)))
        if index == len(points):
            index = 0
        return points[index], owners[index]

    def nodes_for(self, key: bytes | str, n: int) -> list[str]:
        """Return ``n`` distinct nodes for ``key``, the owner first.

        The others follow clockwise from the key's point, which is where
        replicas go: removing the owner promotes the second node. Raises
        ValueError when ``n`` exceeds the number of nodes.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must not be negative, not {n}")
        if n > len(self._weights):
            raise ValueError(
                f"cannot pick {n} distinct nodes from a ring of {len(self._weights)}"
            )
        if n == 0:
            return []
        points, owners = self._table
        if not points:
            raise LookupError("the ring is empty; add a node before looking up keys")
        start = bisect_left(points, self._key_hash(_key_bytes(key)))
        found: list[str] = []
        size = len(points)
        for step in range(size):
            owner = owners[(start + step) % size]
            if owner not in found:
                found.append(owner)
                if len(found) == n:
                    break
        if len(found) < n:
            # A node whose weight gives it no ketama point cannot be picked.
            raise ValueError(
                f"only {len(found)} nodes own virtual nodes; cannot pick {n}"
            )
        return found

    # -- inspection ---------------------------------------------------------

    @property
    def nodes(self) -> dict[str, int]:
        """Node names and weights, as a new dict."""
        return dict(self._weights)

    @property
    def vnodes(self) -> int:
        """Virtual nodes per unit of weight."""
        return self._vnodes

    @property
    def hash_name(self) -> str:
        """``"xxh3"``, ``"ketama"`` or ``"custom"`` for a callable."""
        return self._hash_name

    @property
    def points(self) -> list[tuple[int, str]]:
        """Every virtual node as ``(point, node)``, sorted; a new list."""
        return list(self._points)

    def __len__(self) -> int:
        """Number of nodes."""
        return len(self._weights)

    def __contains__(self, node: object) -> bool:
        return node in self._weights

    def copy(self, nodes: Mapping[str, int] | None = None) -> HashRing:
        """Return a ring with the same settings and ``nodes`` (default: these)."""
        if nodes is not None:
            return HashRing(nodes, vnodes=self._vnodes, hash=self._hash_setting)
        clone = HashRing(vnodes=self._vnodes, hash=self._hash_setting)
        # The point lists are never changed in place, only replaced, so the
        # copy can share them.
        clone._weights = dict(self._weights)
        clone._points = self._points
        clone._table = self._table
        clone._lookup = self._lookup
        return clone

    def same_settings(self, other: HashRing) -> bool:
        """True if ``other`` uses the same vnodes and hash as this ring."""
        return (
            self._vnodes == other._vnodes
            and self._hash_name == other._hash_name
            and (
                self._hash_name != "custom" or self._hash_setting is other._hash_setting
            )
        )

    def load_shares(self) -> dict[str, float]:
        """Return the fraction of the hash space each node owns.

        The space runs from 0 to 2**64 in xxh3 mode and 2**32 in ketama
        mode; a custom hash is assumed to cover 2**64.
        """
        space = 1 << 32 if self._hash_name == "ketama" else 1 << 64
        shares = dict.fromkeys(self._weights, 0.0)
        points, owners = self._table
        if not points:
            return shares
        previous = points[-1] - space
        for point, owner in zip(points, owners, strict=True):
            shares[owner] += (point - previous) / space
            previous = point
        return shares

    def losing_nodes(self, newer: HashRing) -> set[str]:
        """Return the nodes of this ring that own some key ``newer`` maps elsewhere.

        Only these nodes can hold keys that must move when the ring changes
        from this one to ``newer``. Runtime complexity: O(P log P).
        """
        old_points, old_owners = self._table
        new_points, new_owners = newer._table
        if not old_points:
            return set()
        if not new_points:
            return set(old_owners)
        losing: set[str] = set()
        # Every arc between consecutive points of the union has one owner in
        # each ring: the node of the first point at or after the arc's end.
        for point in sorted(set(old_points) | set(new_points)):
            old_index = bisect_left(old_points, point) % len(old_points)
            new_index = bisect_left(new_points, point) % len(new_points)
            if old_owners[old_index] != new_owners[new_index]:
                losing.add(old_owners[old_index])
        return losing

    def _check_invariants(self) -> None:
        """Raise AssertionError if the point table is inconsistent."""
        points, owners = self._table
        assert len(points) == len(owners) == len(self._points)
        assert self._points == sorted(self._points)
        assert all(owner in self._weights for owner in owners)
        if self._hash_name != "ketama":
            expected = sum(self._vnodes * w for w in self._weights.values())
            assert len(points) == expected
        buckets, shift, _, _ = self._lookup
        if buckets is not None:
            for point in points:
                assert buckets[point >> shift] is None
            for bucket, owner in enumerate(buckets):
                if owner is None:
                    continue
                # Every key of a direct bucket has the owner of its last key.
                last = ((bucket + 1) << shift) - 1
                index = bisect_left(points, last) % len(points)
                assert owners[index] == owner

    def __repr__(self) -> str:
        return (
            f"<HashRing {len(self._weights)} nodes, {len(self._points)} points, "
            f"hash={self._hash_name}>"
        )
