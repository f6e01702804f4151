"""HashRing, jump_hash and bounded loads.

The ketama mode is checked against libketama's published continuum and
lookups, and jump_hash against go-jump's and Guava's published vectors.
The default xxh3 mode is checked against the properties of consistent
hashing: adding a node moves keys only to it, removing one moves only its
keys, and the mapping does not depend on the order nodes were added.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
import threading

import pytest
import xxhash
from conftest import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from storekit.sharding import BoundedLoads, HashRing, assign_bounded, jump_hash

KEYS = [b"key-%d" % i for i in range(10_000)]


def owners(ring: HashRing, keys=KEYS) -> list[str]:
    return [ring.node_for(key) for key in keys]


# -- vectors --------------------------------------------------------------------


def _ketama_cases():
    with shared_data("ketama_vectors.json").open() as handle:
        return json.load(handle)


def test_ketama_vectors_points_and_lookups():
    data = _ketama_cases()
    for case in data["cases"]:
        weights = {server["addr"]: server["weight"] for server in case["servers"]}
        ring = HashRing(weights, hash="ketama")
        points = ring.points
        assert len(points) == case["total_points"], case["name"]
        per_node = {node: 0 for node in weights}
        for _, node in points:
            per_node[node] += 1
        assert per_node == case["points_per_server"], case["name"]
        assert [list(p) for p in points[:10]] == case["first_10_points"], case["name"]
        assert [list(p) for p in points[-10:]] == case["last_10_points"], case["name"]
        mismatches = []
        for key, key_hash, point, server in case["lookups"]:
            if ring.key_hash(key) != key_hash:
                mismatches.append((key, "hash"))
            elif ring.vnode_for(key) != (point, server):
                mismatches.append((key, "lookup"))
            elif ring.node_for(key.encode("utf-8")) != server:
                mismatches.append((key, "bytes key"))
        assert mismatches == [], case["name"]


def test_ketama_removal_keeps_surviving_servers():
    data = _ketama_cases()
    case = next(
        c for c in data["cases"] if c["name"].startswith("equal_weight_5_minus")
    )
    full = HashRing(
        {f"10.0.0.{i}:11211": 1 for i in range(1, 6)},
        hash="ketama",
    )
    reduced = full.copy()
    reduced.remove("10.0.0.3:11211")
    moved = 0
    for key, _, _, server in case["lookups"]:
        assert reduced.node_for(key) == server
        before = full.node_for(key)
        if before != server:
            moved += 1
            assert before == "10.0.0.3:11211"
    assert moved > 0


@pytest.mark.slow
def test_ketama_golden_md5_million_keys():
    data = _ketama_cases()
    golden = data["golden_full_run"]
    case = next(c for c in data["cases"] if c["name"] == golden["server_list_case"])
    ring = HashRing({s["addr"]: s["weight"] for s in case["servers"]}, hash="ketama")
    digest = hashlib.md5(b"\n")
    lines = []
    for i in range(1_000_000):
        key = str(i)
        point, node = ring.vnode_for(key)
        lines.append(b"%d %d %s\n" % (ring.key_hash(key), point, node.encode()))
    digest.update(b"".join(lines))
    assert digest.hexdigest() == golden["expected_md5"]


def test_jump_hash_published_and_computed_vectors():
    with shared_data("jump_vectors.json").open() as handle:
        data = json.load(handle)
    mismatches = []
    for vector in data["published_vectors"]:
        got = jump_hash(vector["key"], vector["buckets"])
        if got != vector["expected"]:
            mismatches.append((vector["key"], vector["buckets"], got))
    counts = data["computed_vectors"]["bucket_counts"]
    for row in data["computed_vectors"]["rows"]:
        for buckets, expected in zip(counts, row["expected"], strict=True):
            got = jump_hash(row["key"], buckets)
            if got != expected:
                mismatches.append((row["key"], buckets, got))
    assert mismatches == []


def test_jump_hash_growth_moves_keys_to_new_bucket():
    with shared_data("jump_vectors.json").open() as handle:
        expected_moved = json.load(handle)["property_checks"][
            "keys_0_to_99999_moved_when_buckets_10_to_11"
        ]
    moved = 0
    for key in range(100_000):
        before = jump_hash(key, 10)
        after = jump_hash(key, 11)
        if before != after:
            moved += 1
            assert after == 10
    assert moved == expected_moved


def test_jump_hash_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unsigned 64-bit"):
        jump_hash(-1, 10)
    with pytest.raises(ValueError, match="unsigned 64-bit"):
        jump_hash(1 << 64, 10)
    with pytest.raises(ValueError, match="at least 1"):
        jump_hash(5, 0)
    with pytest.raises(TypeError, match="key must be an int"):
        jump_hash("5", 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buckets must be an int"):
        jump_hash(5, 2.0)  # type: ignore[arg-type]
    assert jump_hash((1 << 64) - 1, 1) == 0


# -- placement properties ---------------------------------------------------------


def test_ring_add_remove_changes_incrementally():
    ring = HashRing(["n1", "n2", "n3", "n4"])
    original = owners(ring)

    ring.add("n5")
    after_add = owners(ring)
    changed = [i for i in range(len(KEYS)) if original[i] != after_add[i]]
    assert all(after_add[i] == "n5" for i in changed)
    assert 0.10 <= len(changed) / len(KEYS) <= 0.30

    ring.remove("n5")
    assert owners(ring) == original

    ring.remove("n2")
    after_remove = owners(ring)
    for before, after in zip(original, after_remove, strict=True):
        assert after != "n2"
        if before != "n2":
            assert after == before
    assert {after_remove[i] for i in range(len(KEYS)) if original[i] == "n2"} == {
        "n1",
        "n3",
        "n4",
    }


@settings(max_examples=15, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_ring_adding_node_moves_only_to_it(count, seed):
    generator = random.Random(seed)
    names = [f"node-{generator.getrandbits(40):x}" for _ in range(count)]
    names = list(dict.fromkeys(names))
    keys = [generator.randbytes(12) for _ in range(4000)]
    ring = HashRing(names)
    before = owners(ring, keys)
    new = "new-" + names[0]
    ring.add(new)
    after = owners(ring, keys)
    moved = [i for i in range(len(keys)) if before[i] != after[i]]
    assert all(after[i] == new for i in moved)
    expected = 1 / (len(names) + 1)
    # 160 virtual nodes per node leave a standard deviation of roughly
    # expected / sqrt(160) in the new node's share; 4,000 keys add sampling
    # noise. Five such deviations bound the fraction from both sides.
    spread = 5 * (expected / math.sqrt(160) + math.sqrt(expected / len(keys)))
    assert abs(len(moved) / len(keys) - expected) <= spread


def test_ring_mapping_ignores_insertion_order():
    weights = {"alpha": 1, "beta": 3, "gamma": 2, "delta": 1}
    forward = HashRing(weights)
    backward = HashRing(dict(reversed(list(weights.items()))))
    built = HashRing()
    for node in ["gamma", "alpha", "delta", "beta"]:
        built.add(node, weights[node])
    assert forward.points == backward.points == built.points
    assert owners(forward) == owners(backward) == owners(built)


def test_ring_mapping_same_in_new_process():
    ring = HashRing(["a", "b", "c"])
    script = (
        "from storekit.sharding import HashRing\n"
        "ring = HashRing(['a', 'b', 'c'])\n"
        "print(''.join(ring.node_for(b'key-%d' % i) for i in range(200)))\n"
    )
    from stores import child_env

    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**child_env(), "PYTHONHASHSEED": "12345"},
        timeout=60,
        check=True,
    )
    assert child.stdout.strip() == "".join(
        ring.node_for(b"key-%d" % i) for i in range(200)
    )


def test_ring_collision_resolved_by_name():
    # Virtual node 0 of n1 and of n2 hash to the same point; every other
    # label hashes to a distinct point.
    def colliding_hash(data: bytes) -> int:
        if data in (b"n1-0", b"n2-0"):
            return 1 << 40
        return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")

    ring = HashRing(["n2", "n3", "n1"], vnodes=8, hash=colliding_hash)
    assert (1 << 40, "n1") in ring.points
    assert (1 << 40, "n2") in ring.points
    # The shared point belongs to the name that sorts first, in any order.
    for order in (["n1", "n2", "n3"], ["n3", "n2", "n1"], ["n2", "n3", "n1"]):
        probe = HashRing(order, vnodes=8, hash=colliding_hash)
        assert probe.vnode_for(b"n1-0") == (1 << 40, "n1")
    keys = [b"key-%d" % i for i in range(1000)]

    before = owners(ring, keys)
    ring.remove("n2")
    ring._check_invariants()
    after = owners(ring, keys)
    for old, new in zip(before, after, strict=True):
        if old != "n2":
            assert new == old
    assert (1 << 40, "n1") in ring.points

    ring.remove("n3")
    ring.remove("n1")
    assert len(ring) == 0
    with pytest.raises(LookupError, match="empty"):
        ring.node_for(b"k")


def test_ring_weights_scale_points_and_share():
    ring = HashRing({"small": 1, "big": 3})
    counts = {"small": 0, "big": 0}
    for _, node in ring.points:
        counts[node] += 1
    assert counts == {"small": 160, "big": 480}
    shares = ring.load_shares()
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    assert 0.65 <= shares["big"] <= 0.85

    ring.set_weight("small", 3)
    assert sum(1 for _, node in ring.points if node == "small") == 480
    ring._check_invariants()


def test_ring_string_and_bytes_keys_agree():
    ring = HashRing(["a", "b", "c"])
    for text in ["plain", "ünïcödé", "", "x" * 300]:
        data = text.encode("utf-8")
        assert ring.node_for(text) == ring.node_for(data)
        assert ring.node_for(bytearray(data)) == ring.node_for(memoryview(data))


def test_ring_nodes_for_gives_distinct_replicas():
    ring = HashRing(["a", "b", "c", "d", "e"])
    for key in KEYS[:500]:
        replicas = ring.nodes_for(key, 3)
        assert len(set(replicas)) == 3
        assert replicas[0] == ring.node_for(key)
    everyone = ring.nodes_for(b"k", 5)
    assert sorted(everyone) == ["a", "b", "c", "d", "e"]
    assert ring.nodes_for(b"k", 0) == []
    with pytest.raises(ValueError, match="cannot pick 6"):
        ring.nodes_for(b"k", 6)
    with pytest.raises(ValueError, match="negative"):
        ring.nodes_for(b"k", -1)


def test_ring_rejects_invalid_input():
    with pytest.raises(LookupError, match="empty"):
        HashRing().node_for(b"k")
    with pytest.raises(ValueError, match="duplicate node 'a'"):
        HashRing(["a", "b", "a"])

    ring = HashRing(["a"])
    with pytest.raises(ValueError, match="already in the ring"):
        ring.add("a")
    with pytest.raises(ValueError, match="must be positive, not 0"):
        HashRing({"a": 0})
    with pytest.raises(ValueError, match="must be positive, not -2"):
        ring.add("b", -2)
    with pytest.raises(TypeError, match="weight of node 'b' must be an int"):
        ring.add("b", 1.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="'zzz' is not in the ring"):
        ring.remove("zzz")
    with pytest.raises(TypeError, match="node name must be a str"):
        ring.add(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        ring.add("")
    with pytest.raises(TypeError, match="ring key must be"):
        ring.node_for(42)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="vnodes must be at least 1"):
        HashRing(["a"], vnodes=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        HashRing(["a"], vnodes=10, hash="ketama")
    with pytest.raises(ValueError, match="hash must be"):
        HashRing(["a"], hash="md5")
    with pytest.raises(ValueError, match="unsigned int"):
        HashRing(["a"], hash=lambda data: -1)
    with pytest.raises(TypeError, match="not a single str"):
        HashRing("abc")  # type: ignore[arg-type]
    assert ring.nodes == {"a": 1}


def test_ring_rejects_invalid_slots():
    with pytest.raises(ValueError, match="power of two from 256 to 1048576, not 1000"):
        HashRing(["a"], slots=1000)
    with pytest.raises(ValueError, match="not 128"):
        HashRing(["a"], slots=128)
    with pytest.raises(ValueError, match="not 2097152"):
        HashRing(["a"], slots=1 << 21)
    with pytest.raises(TypeError, match="slots must be an int or None, not float"):
        HashRing(["a"], slots=65536.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bool"):
        HashRing(["a"], slots=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs hash='xxh3'.*ketama"):
        HashRing(["a"], hash="ketama", slots=1024)
    with pytest.raises(ValueError, match="needs hash='xxh3'.*custom"):
        HashRing(["a"], hash=lambda data: 5, slots=1024)
    assert HashRing(["a"], hash="ketama").slots is None
    assert HashRing(["a"]).slots == 65536
    with pytest.raises(ValueError, match="no slots"):
        HashRing(["a"], slots=None).slot_for(b"k")


# -- slot placement -------------------------------------------------------------------


def _owner_by_rule(ring: HashRing, key: bytes) -> tuple[int, str]:
    """Owner of ``key`` computed from the documented rule, point by point."""
    bits = ring.slots.bit_length() - 1
    slot = xxhash.xxh3_64_intdigest(key) >> (64 - bits)
    label = slot.to_bytes(4, "little")
    best = None
    for seed in (0, 1, 2):
        probe = xxhash.xxh3_64_intdigest(label, seed=seed)
        # The nearest virtual node clockwise; equal points go to the name
        # that sorts first, and equal distances to the lower probe number.
        nearest = min(
            ring.points, key=lambda item: ((item[0] - probe) % 2**64, item[1])
        )
        distance = (nearest[0] - probe) % 2**64
        if best is None or distance < best[0]:
            best = (distance, nearest)
    return best[1]


def test_slot_placement_follows_documented_rule():
    ring = HashRing({"alpha": 1, "beta": 2, "gamma": 1}, vnodes=20, slots=1024)
    for key in KEYS[:300]:
        point, node = _owner_by_rule(ring, key)
        assert ring.vnode_for(key) == (point, node)
        assert ring.node_for(key) == node


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_slot_placement_balances_ten_nodes(seed):
    # With one point per key (the classic ring), the busiest of 10 nodes
    # with 160 virtual nodes often carries 1.15 to 1.25 times the mean.
    # The three probes per slot keep it near 1.07.
    generator = random.Random(seed)
    names = [f"cache-{generator.getrandbits(48):012x}:11211" for _ in range(10)]
    shares = HashRing(names).load_shares()
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    assert max(shares.values()) * len(names) <= 1.15


def test_classic_ring_places_keys_at_next_point():
    ring = HashRing(["a", "b", "c"], slots=None)
    points = ring.points
    for key in KEYS[:500]:
        position = xxhash.xxh3_64_intdigest(key)
        following = [item for item in points if item[0] >= position]
        expected = following[0] if following else points[0]
        assert ring.vnode_for(key) == expected
        assert ring.node_for(key) == expected[1]
        assert ring.nodes_for(key, 3)[0] == expected[1]


@pytest.mark.parametrize("slots", [1024, None])
def test_ring_nodes_for_promotes_next_replicas(slots):
    ring = HashRing(["a", "b", "c", "d", "e"], slots=slots)
    # One ring per set of remaining nodes, built once.
    smaller_rings: dict[frozenset[str], HashRing] = {}
    for key in KEYS[:300]:
        order = ring.nodes_for(key, 5)
        for position in range(4):
            remaining = frozenset(order[position + 1 :])
            if remaining not in smaller_rings:
                smaller_rings[remaining] = ring.copy({name: 1 for name in remaining})
            smaller = smaller_rings[remaining]
            assert smaller.node_for(key) == order[position + 1]
            assert smaller.nodes_for(key, 4 - position) == order[position + 1 :]


def test_slot_losing_nodes_matches_key_moves():
    old = HashRing(["a", "b", "c", "d"])
    changed = old.copy()
    changed.remove("c")
    changed.add("e", 2)
    losing = old.losing_nodes(changed)
    moved_from = {
        old.node_for(key) for key in KEYS if old.node_for(key) != changed.node_for(key)
    }
    assert moved_from <= losing
    assert "c" in losing
    with pytest.raises(ValueError, match="same settings"):
        old.losing_nodes(HashRing(["a"], slots=None))


def test_load_shares_during_ring_changes():
    ring = HashRing(["a", "b", "c"], slots=1024)
    stop = threading.Event()
    errors = []

    def change():
        try:
            while not stop.is_set():
                ring.add("extra")
                ring.remove("extra")
        except Exception as exc:  # reported by the assert below
            errors.append(exc)

    changer = threading.Thread(target=change)
    changer.start()
    try:
        for _ in range(300):
            shares = ring.load_shares()
            assert abs(sum(shares.values()) - 1.0) < 1e-9
    finally:
        stop.set()
        changer.join(timeout=30)
    assert errors == []


def test_ring_losing_nodes_names_only_sources():
    old = HashRing(["a", "b", "c"])
    grown = old.copy()
    grown.add("d")
    assert old.losing_nodes(grown) == {"a", "b", "c"}
    shrunk = old.copy()
    shrunk.remove("b")
    assert old.losing_nodes(shrunk) == {"b"}
    assert old.losing_nodes(old.copy()) == set()


# -- bounded loads ------------------------------------------------------------------


def test_bounded_loads_cap_skewed_keys():
    ring = HashRing(["a", "b", "c", "d"])
    # Skewed: keep only keys that plain hashing puts on node "a".
    keys = [b"skew-%d" % i for i in range(4000)]
    keys = [key for key in keys if ring.node_for(key) == "a"][:400]
    assert len(keys) == 400
    plain = {node: 0 for node in ring.nodes}
    for key in keys:
        plain[ring.node_for(key)] += 1
    assert max(plain.values()) == len(keys)  # plain hashing piles all on one node

    epsilon = 0.25
    assignment = assign_bounded(ring, keys, epsilon=epsilon)
    loads = {node: 0 for node in ring.nodes}
    for node in assignment.values():
        loads[node] += 1
    cap = math.ceil((1 + epsilon) * len(keys) / len(ring))
    assert len(assignment) == len(keys)
    assert max(loads.values()) <= cap
    assert assign_bounded(ring, list(reversed(keys)), epsilon=epsilon) == assignment


def test_bounded_loads_online_place_and_release():
    ring = HashRing({"a": 1, "b": 2, "c": 1})
    tracker = BoundedLoads(ring, epsilon=0.1)
    for i in range(2000):
        node = tracker.place(b"item-%d" % i)
        placed = i + 1
        assert tracker.loads()[node] <= tracker.capacity(node, placed)
    assert tracker.place(b"item-5") == tracker.node_of(b"item-5")
    assert len(tracker) == 2000
    for node, load in tracker.loads().items():
        assert load <= tracker.capacity(node)
    for i in range(0, 2000, 2):
        tracker.release(b"item-%d" % i)
    tracker.release(b"never-placed")
    assert len(tracker) == 1000
    tracker.rebalance()
    for node, load in tracker.loads().items():
        assert load <= tracker.capacity(node)
    with pytest.raises(ValueError, match="epsilon"):
        BoundedLoads(ring, epsilon=0)
    with pytest.raises(LookupError, match="empty"):
        BoundedLoads(HashRing())
