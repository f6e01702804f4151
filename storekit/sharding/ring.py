"""HashRing: consistent hashing with virtual nodes and integer weights.

Each node owns ``vnodes * weight`` virtual nodes: points on a ring of
unsigned integers. Adding a node only adds its points and removing one only
removes them, so a change moves only keys whose owner is the added or the
removed node.

Three placements are built in.

``"xxh3"`` (the default) places virtual node ``i`` of node ``name`` at
``xxh3_64(f"{name}-{i}")`` and divides the key space into ``slots`` equal
slots (65,536 by default): a key's slot is the top bits of its
``xxh3_64``. Each slot belongs to a node by multi-probe consistent hashing
(Appleton and O'Reilly, arXiv:1505.00062): the slot has three probe
points, ``xxh3_64(slot as 4-byte little-endian, seed=p)`` for ``p`` in 0,
1 and 2, and its owner is the node of the virtual node nearest after any
probe, measured clockwise. A probe deep inside a long arc between two
virtual nodes is far from the arc's end, so another probe of its slot
often wins, and the loads even out. With 160 virtual nodes on 10 nodes
the busiest node carried 1.07 times the mean on average over 40 random
sets of names in bench/bench_sharding.py, against 1.12 with one point per
key. node_for reads one entry of the slot table.

With ``slots=None``, and always with a callable hash, a key hashes to a
point and belongs to the node of the first virtual node at or after it,
wrapping past the largest point to the smallest: the classic ring.

``"ketama"`` reproduces libketama (RJ/ketama, ``libketama/ketama.c``): a
node gets ``floorf(weight / total_weight * (vnodes / 4) * node_count)``
md5 digests of ``f"{name}-{k}"``, each split into four little-endian
uint32 points, and a key hashes to the first four bytes of its md5 on the
classic ring. With ketama the point count of every node depends on the
total weight, so with unequal weights a change moves some keys between
surviving nodes too, as it does in libketama.

The mapping depends only on the node names, weights and settings. Points
are kept sorted by ``(point, node name)``, so when two virtual nodes land
on the same point, the node whose name sorts first owns it, whatever order
the nodes were added in. Removing the other node leaves that point in place.
Two probes at the same distance go to the lower probe number.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

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


#: Slot count of the default placement, and its bounds. Each ring change
#: rebuilds the whole slot table: 2**20 slots took 1.5 s and 348 MiB of
#: peak memory on a 2-vCPU AMD EPYC with CPython 3.11, so larger tables
#: are not allowed.
DEFAULT_SLOTS = 1 << 16
MIN_SLOTS = 1 << 8
MAX_SLOTS = 1 << 20
#: Probe points per slot. Over 40 random sets of 10 node names with 160
#: virtual nodes, the busiest node carried at most 1.144 times the mean with
#: two probes and 1.116 with three. Each probe adds one binary search per
#: slot to every ring change.
SLOT_PROBES = 3
_RING_SIZE = 1 << 64
_SLOT_LABEL = struct.Struct("<I")


@functools.lru_cache(maxsize=4)
def _slot_probes(slots: int) -> tuple[list[int], ...]:
    """Return the probe points of every slot, one list per probe."""
    return tuple(
        [_xxh3_64(_SLOT_LABEL.pack(slot), seed=probe) for slot in range(slots)]
        for probe in range(SLOT_PROBES)
    )


def _slot_table(points: list[int], slots: int) -> list[int]:
    """Return, for every slot, the index into ``points`` of the virtual node that owns it.

    ``points`` is sorted and not empty. A probe's nearest virtual node is the
    first at or after it, wrapping to ``points[0]``.
    """
    wrapped = [*points, points[0] + _RING_SIZE]
    successor = functools.partial(bisect_left, wrapped)
    probes = _slot_probes(slots)
    table = list(map(successor, probes[0]))
    nearest = [
        wrapped[index] - probe for index, probe in zip(table, probes[0], strict=True)
    ]
    for column in probes[1:]:
        indexes = list(map(successor, column))
        distances = [
            wrapped[index] - probe for index, probe in zip(indexes, column, strict=True)
        ]
        # A tie keeps the earlier probe.
        table = [
            old if old_distance <= distance else index
            for old, old_distance, index, distance in zip(
                table, nearest, indexes, distances, strict=True
            )
        ]
        nearest = list(map(min, nearest, distances))
    # The sentinel after the last point stands for the first point.
    size = len(points)
    return [index if index < size else 0 for index in table]


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


def _check_slots(slots: object, hash_name: str) -> int | None:
    if slots is None:
        return None
    if isinstance(slots, bool) or not isinstance(slots, int):
        raise TypeError(f"slots must be an int or None, not {type(slots).__name__}")
    if hash_name != "xxh3":
        raise ValueError(
            f"slots={slots} needs hash='xxh3'; the {hash_name} hash places keys "
            "on the classic ring, so pass slots=None"
        )
    if not MIN_SLOTS <= slots <= MAX_SLOTS or slots & (slots - 1):
        raise ValueError(
            f"slots must be a power of two from {MIN_SLOTS} to {MAX_SLOTS}, not {slots}"
        )
    return slots


# The default of HashRing's slots argument: DEFAULT_SLOTS with hash="xxh3",
# None with the other hashes.
_DEFAULT: Any = object()


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
    ``slots`` is the slot count of the xxh3 placement (a power of two,
    65,536 by default); ``None`` selects the classic ring, which ketama and
    a callable always use. Keep ``slots`` at least 1,000 times the node
    count: a node's load varies by about ``1 / sqrt(slots / nodes)`` around
    its share, on top of the variation that virtual nodes leave.

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
        slots: int | None = _DEFAULT,
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
        if slots is _DEFAULT:
            slots = DEFAULT_SLOTS if self._hash_name == "xxh3" else None
        self._slots = _check_slots(slots, self._hash_name)
        # For the slot placement: (index of each slot's virtual node, points,
        # owners), replaced whole like _table.
        self._slot_view: tuple[list[int], list[int], list[str]] = ([], [], [])
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
        if self._slots is not None:
            # node_for reads the slot table as a bucket table without gaps.
            slot_index = _slot_table(hashes, self._slots) if points else []
            self._slot_view = (slot_index, hashes, owners)
            shift = 64 - (self._slots.bit_length() - 1)
            slot_owners = [owners[index] for index in slot_index] or None
            self._lookup = (slot_owners, shift, hashes, owners)
        elif hash_bits is None or not points:
            self._lookup = (None, 0, hashes, owners)
        else:
            buckets, shift = _bucket_table(hashes, owners, hash_bits)
            self._lookup = (buckets, shift, hashes, owners)

    # -- changes ------------------------------------------------------------

    def add(self, node: str, weight: int = 1) -> None:
        """Add ``node`` with ``weight``; raise ValueError if it is already present.

        Runtime complexity: O(P) for P virtual nodes on the classic ring
        with xxh3 or a custom hash, plus O(S log P) for S slots with slots;
        ketama rebuilds every point.
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

        Runtime complexity: O(1) with slots. On the classic ring O(1) for
        most keys, O(log P) for P virtual nodes when the key's bucket
        contains a virtual node.
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
        position = self._key_hash(_key_bytes(key))
        if self._slots is not None:
            slot_index, points, owners = self._slot_view
            if not points:
                raise LookupError(
                    "the ring is empty; add a node before looking up keys"
                )
            index = slot_index[position >> (64 - (self._slots.bit_length() - 1))]
            return points[index], owners[index]
        points, owners = self._table
        if not points:
            raise LookupError("the ring is empty; add a node before looking up keys")
        index = bisect_left(points, position)
        if index == len(points):
            index = 0
        return points[index], owners[index]

    def slot_for(self, key: bytes | str) -> int:
        """Return the slot of ``key``; ValueError on a ring without slots."""
        if self._slots is None:
            raise ValueError("this ring has no slots (slots=None)")
        position = self._key_hash(_key_bytes(key))
        return position >> (64 - (self._slots.bit_length() - 1))

    def _preference(self, key: bytes | str) -> Iterator[str]:
        """Yield every node that owns a virtual node, in ``key``'s replica order.

        The classic ring yields the distinct owners clockwise from the key's
        point. The slot placement repeats its own rule with the nodes already
        yielded left out: the next node is the one whose virtual node is
        nearest after any probe of the key's slot, skipping points of
        yielded nodes. So on a ring without the first node, the second one
        owns the key.
        """
        points, owners = self._table
        if not points:
            raise LookupError("the ring is empty; add a node before looking up keys")
        size = len(points)
        distinct = len(set(owners))
        found: set[str] = set()
        if self._slots is None:
            start = bisect_left(points, self._key_hash(_key_bytes(key)))
            for step in range(size):
                owner = owners[(start + step) % size]
                if owner not in found:
                    found.add(owner)
                    yield owner
                    if len(found) == distinct:
                        return
            return
        slot = self.slot_for(key)
        probes = [column[slot] for column in _slot_probes(self._slots)]
        # Per probe: how many points past its first one it has skipped.
        starts = [bisect_left(points, probe) for probe in probes]
        steps = [0] * len(probes)
        while len(found) < distinct:
            best: tuple[int, int] | None = None
            for number, probe in enumerate(probes):
                while owners[(starts[number] + steps[number]) % size] in found:
                    steps[number] += 1
                position = starts[number] + steps[number]
                # Positions past the end wrap around once per lap of the ring.
                distance = (
                    points[position % size] + (position // size) * _RING_SIZE - probe
                )
                if best is None or distance < best[0]:
                    best = (distance, number)
            assert best is not None
            number = best[1]
            owner = owners[(starts[number] + steps[number]) % size]
            found.add(owner)
            yield owner

    def nodes_for(self, key: bytes | str, n: int) -> list[str]:
        """Return ``n`` distinct nodes for ``key``, the owner first.

        The others are the owners the key would have with the nodes before
        them removed, which is where replicas go: removing the owner
        promotes the second node. On the classic ring they follow clockwise
        from the key's point. Raises ValueError when ``n`` exceeds the
        number of nodes.
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
        found: list[str] = []
        for owner in self._preference(key):
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
    def slots(self) -> int | None:
        """Slot count of the xxh3 placement, or None for the classic ring."""
        return self._slots

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
        settings = {
            "vnodes": self._vnodes,
            "hash": self._hash_setting,
            "slots": self._slots,
        }
        if nodes is not None:
            return HashRing(nodes, **settings)
        clone = HashRing(**settings)
        # The point lists are never changed in place, only replaced, so the
        # copy can share them.
        clone._weights = dict(self._weights)
        clone._points = self._points
        clone._table = self._table
        clone._lookup = self._lookup
        clone._slot_view = self._slot_view
        return clone

    def same_settings(self, other: HashRing) -> bool:
        """True if ``other`` uses the same vnodes and hash as this ring."""
        return (
            self._vnodes == other._vnodes
            and self._hash_name == other._hash_name
            and self._slots == other._slots
            and (
                self._hash_name != "custom" or self._hash_setting is other._hash_setting
            )
        )

    def load_shares(self) -> dict[str, float]:
        """Return the fraction of the hash space each node owns.

        With slots, that is the fraction of the slots. On the classic ring
        the space runs from 0 to 2**64 with xxh3 and 2**32 with ketama; a
        custom hash is assumed to cover 2**64.
        """
        # Shares are counted over the tables read here. A change in another
        # thread updates self._weights before the tables, so its nodes only
        # add zero entries, and a node missing from them raises no KeyError.
        if self._slots is not None:
            slot_owners = self._lookup[0] or []
            counts = dict.fromkeys(list(self._weights), 0)
            for owner in slot_owners:
                counts[owner] = counts.get(owner, 0) + 1
            return {node: count / self._slots for node, count in counts.items()}
        space = 1 << 32 if self._hash_name == "ketama" else 1 << 64
        points, owners = self._table
        shares = dict.fromkeys(list(self._weights), 0.0)
        shares.update(dict.fromkeys(owners, 0.0))
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
        if not self.same_settings(newer):
            raise ValueError("losing_nodes needs two rings with the same settings")
        old_points, old_owners = self._table
        new_points, new_owners = newer._table
        if not old_points:
            return set()
        if not new_points:
            return set(old_owners)
        if self._slots is not None:
            old_slots, new_slots = self._lookup[0], newer._lookup[0]
            assert old_slots is not None and new_slots is not None
            return {
                old
                for old, new in zip(old_slots, new_slots, strict=True)
                if old is not new and old != new
            }
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
        if self._slots is not None:
            if not points:
                assert buckets is None
                return
            slot_index, view_points, view_owners = self._slot_view
            assert view_points is points
            assert view_owners is owners
            assert slot_index == _slot_table(points, self._slots)
            assert buckets == [owners[index] for index in slot_index]
            assert shift == 64 - (self._slots.bit_length() - 1)
            return
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
            f"hash={self._hash_name}, slots={self._slots}>"
        )
