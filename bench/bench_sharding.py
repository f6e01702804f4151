"""Benchmark storekit's HashRing against uhashring in one run.

Usage::

    python bench/bench_sharding.py [--keys 100000] [--repeats 5]
                                   [--name-sets 10] [--plot FILE] [--json FILE]

Measures, for ``--keys`` keys on 10 nodes (then 11):

- lookup throughput: ``HashRing.node_for`` against uhashring's
  ``HashRing.get_node``, both with 160 virtual nodes and an xxh3-based hash.
  uhashring passes keys and virtual-node labels (str) straight to its
  ``hash_fn``, so its hash must accept str. Two set-ups are timed: str
  keys with ``xxh3_64_intdigest(key.encode())``, and bytes keys with a
  type check. The ratio compares with the faster one, and the best of
  ``--repeats`` timed runs counts;
- the fraction of keys that move when an 11th node joins, averaged over
  ``--name-sets`` random sets of node names, against the ideal 1/11;
- the busiest node's load over the mean with 160 virtual nodes, and the
  same ratio for 40 to 1,000 virtual nodes (mean and worst over the name
  sets), for the default slot placement and for the classic ring
  (``slots=None``), which places keys the way uhashring does.

uhashring is optional (``pip install uhashring``); without it the
comparison columns are left out.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xxhash  # noqa: E402

from storekit.sharding import HashRing  # noqa: E402

try:
    import uhashring
except ImportError:  # the comparison columns stay empty
    uhashring = None

NODES = 10
VNODE_CURVE = (40, 80, 120, 160, 200, 300, 400, 600, 800, 1000)
_xxh3 = xxhash.xxh3_64_intdigest


def _hash_str(key: str) -> int:
    return _xxh3(key.encode())


def _hash_any(key: str | bytes) -> int:
    if type(key) is bytes:
        return _xxh3(key)
    return _xxh3(key.encode())


def node_names(generator: random.Random, count: int) -> list[str]:
    return [f"cache-{generator.getrandbits(48):012x}:11211" for _ in range(count)]


def time_lookups(lookup, keys, repeats: int) -> float:
    """Return the best lookups per second over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for key in keys:
            lookup(key)
        best = min(best, time.perf_counter() - started)
    return len(keys) / best


def measure_throughput(keys: list[bytes], names: list[str], repeats: int) -> dict:
    text_keys = [key.decode() for key in keys]
    ring = HashRing(names)
    result = {
        "storekit_bytes_keys": time_lookups(ring.node_for, keys, repeats),
        "storekit_str_keys": time_lookups(ring.node_for, text_keys, repeats),
    }
    if uhashring is not None:
        peer_str = uhashring.HashRing(nodes=names, hash_fn=_hash_str)
        peer_any = uhashring.HashRing(nodes=names, hash_fn=_hash_any)
        # Both set-ups must place keys the same way: same labels, same hash.
        assert peer_str.get_node(text_keys[0]) == peer_any.get_node(keys[0])
        result["uhashring_str_keys"] = time_lookups(
            peer_str.get_node, text_keys, repeats
        )
        result["uhashring_bytes_keys"] = time_lookups(peer_any.get_node, keys, repeats)
    return result


def moved_fraction(lookup_before, lookup_after, keys) -> float:
    moved = sum(1 for key in keys if lookup_before(key) != lookup_after(key))
    return moved / len(keys)


def max_over_mean(lookup, keys, names) -> float:
    counts = dict.fromkeys(names, 0)
    for key in keys:
        counts[lookup(key)] += 1
    return max(counts.values()) / (len(keys) / len(names))


def measure_placement(keys: list[bytes], name_sets: list[list[str]]) -> dict:
    text_keys = [key.decode() for key in keys]
    moved, moved_peer, ratio, ratio_peer = [], [], [], []
    for names in name_sets:
        base, extra = names[:NODES], names[NODES]
        before = HashRing(base)
        after = before.copy()
        after.add(extra)
        moved.append(moved_fraction(before.node_for, after.node_for, keys))
        ratio.append(max_over_mean(before.node_for, keys, base))
        if uhashring is not None:
            peer_before = uhashring.HashRing(nodes=base, hash_fn=_hash_str)
            peer_after = uhashring.HashRing(nodes=base + [extra], hash_fn=_hash_str)
            moved_peer.append(
                moved_fraction(peer_before.get_node, peer_after.get_node, text_keys)
            )
            ratio_peer.append(max_over_mean(peer_before.get_node, text_keys, base))
    result = {
        "moved_fraction_mean": statistics.mean(moved),
        "moved_fraction_each": moved,
        "max_over_mean_160_mean": statistics.mean(ratio),
        "max_over_mean_160_each": ratio,
    }
    if moved_peer:
        result["uhashring_moved_fraction_mean"] = statistics.mean(moved_peer)
        result["uhashring_max_over_mean_160_mean"] = statistics.mean(ratio_peer)
        result["uhashring_max_over_mean_160_each"] = ratio_peer
    return result


def measure_curve(keys: list[bytes], name_sets: list[list[str]]) -> dict[int, dict]:
    curve = {}
    for vnodes in VNODE_CURVE:
        ratios, classic = [], []
        for names in name_sets:
            base = names[:NODES]
            ratios.append(
                max_over_mean(HashRing(base, vnodes=vnodes).node_for, keys, base)
            )
            ring = HashRing(base, vnodes=vnodes, slots=None)
            classic.append(max_over_mean(ring.node_for, keys, base))
        curve[vnodes] = {
            "mean": statistics.mean(ratios),
            "max": max(ratios),
            "classic_mean": statistics.mean(classic),
            "classic_max": max(classic),
        }
    return curve


def plot_curve(curve: dict[int, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    vnodes = list(curve)
    axes.plot(
        vnodes, [curve[v]["mean"] for v in vnodes], marker="o", label="slots, mean"
    )
    axes.plot(
        vnodes, [curve[v]["max"] for v in vnodes], marker="x", label="slots, worst"
    )
    axes.plot(
        vnodes,
        [curve[v]["classic_max"] for v in vnodes],
        marker="+",
        linestyle=":",
        label="classic ring, worst",
    )
    axes.axhline(1.15, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("virtual nodes per node")
    axes.set_ylabel("busiest node load / mean load")
    axes.set_title(f"HashRing balance, {NODES} nodes")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000, help="number of keys")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed runs per lookup set-up; best counts",
    )
    parser.add_argument(
        "--name-sets",
        type=int,
        default=10,
        help="random sets of node names to average over",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for keys and node names"
    )
    parser.add_argument(
        "--plot", help="write the virtual-node curve as a PNG to this file"
    )
    parser.add_argument("--json", help="write every figure as JSON to this file")
    args = parser.parse_args(argv)

    generator = random.Random(args.seed)
    keys = [b"user:%016x" % generator.getrandbits(64) for _ in range(args.keys)]
    name_sets = [node_names(generator, NODES + 1) for _ in range(args.name_sets)]

    throughput = measure_throughput(keys, name_sets[0][:NODES], args.repeats)
    placement = measure_placement(keys, name_sets)
    curve = measure_curve(keys, name_sets)

    print(f"# HashRing benchmark: {args.keys:,} keys, {NODES} -> {NODES + 1} nodes")
    print(
        f"# Python {platform.python_version()} on {platform.machine()}, {platform.system()}"
    )
    if uhashring is not None:
        print(
            f"# uhashring {getattr(uhashring, '__version__', '2.x')}, hash_fn: xxh3_64"
        )
    print()
    print("| measure | storekit | uhashring | target |")
    print("|---|---:|---:|---|")
    peer_best = max(
        throughput.get("uhashring_str_keys", 0.0),
        throughput.get("uhashring_bytes_keys", 0.0),
    )
    ours = throughput["storekit_bytes_keys"]
    ratio_text = f" ({ours / peer_best:.1f}x)" if peer_best else ""
    print(
        f"| lookups/s, bytes keys | {ours:,.0f}{ratio_text} | "
        f"{throughput.get('uhashring_bytes_keys', 0):,.0f} | >= 2x uhashring's best |"
    )
    print(
        f"| lookups/s, str keys | {throughput['storekit_str_keys']:,.0f} | "
        f"{throughput.get('uhashring_str_keys', 0):,.0f} | |"
    )
    ideal = 1 / (NODES + 1)
    moved = placement["moved_fraction_mean"]
    print(
        f"| keys moved 10 -> 11, mean of {args.name_sets} name sets | {moved:.4f} "
        f"({(moved - ideal) / ideal:+.1%} vs 1/11) | "
        f"{placement.get('uhashring_moved_fraction_mean', 0):.4f} | "
        f"within 5% of {ideal:.4f} |"
    )
    peer_ratio = placement.get("uhashring_max_over_mean_160_each")
    peer_text = (
        f"{placement['uhashring_max_over_mean_160_mean']:.3f} "
        f"(worst {max(peer_ratio):.3f})"
        if peer_ratio
        else ""
    )
    print(
        f"| busiest / mean, 160 vnodes, mean of {args.name_sets} | "
        f"{placement['max_over_mean_160_mean']:.3f} "
        f"(worst {max(placement['max_over_mean_160_each']):.3f}) | "
        f"{peer_text} | <= 1.15 |"
    )
    print()
    print("Busiest node over the mean, mean and worst of the name sets:")
    print()
    print("| vnodes | slots: mean | slots: worst | classic: mean | classic: worst |")
    print("|---:|---:|---:|---:|---:|")
    for vnodes, figures in curve.items():
        print(
            f"| {vnodes} | {figures['mean']:.3f} | {figures['max']:.3f} | "
            f"{figures['classic_mean']:.3f} | {figures['classic_max']:.3f} |"
        )

    if args.plot:
        plot_curve(curve, args.plot)
        print(f"\nplot written to {args.plot}")
    if args.json:
        document = {
            "keys": args.keys,
            "throughput": throughput,
            "placement": placement,
            "curve": {str(v): figures for v, figures in curve.items()},
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
