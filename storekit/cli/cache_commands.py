"""The ``cache-sim`` subcommand: replay a trace through cache policies."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..cache import POLICIES
from ..cache.sim import SimResult, simulate
from ..cache.traces import FORMATS, load_trace
from ._common import Progress, add_json_flag, emit

# Policies a replay can run: every policy except "ttl", which needs a time
# to live that a trace does not have.
_SIM_POLICIES = [name for name in POLICIES if name != "ttl"]


def register(subparsers: Any) -> None:
    """Add ``cache-sim`` to the ``storekit`` parser."""
    parser = subparsers.add_parser(
        "cache-sim",
        help="replay a trace through cache policies and report hit ratios",
        description="Replay every request of TRACE as a get; a miss inserts the key "
        "(demand fill). Every entry has size 1 and SIZE counts entries. Prints the "
        "hit ratio (hits / all requests, cold misses included) for each policy and "
        "size. Trace formats are described in docs/cache.md; gzip and xz "
        "compression are detected from the file's first bytes.",
    )
    parser.add_argument("trace", metavar="TRACE", help="trace file to replay")
    parser.add_argument(
        "--policy",
        type=_policy_list,
        default=["lru", "s3fifo"],
        metavar="NAMES",
        help=f"comma-separated policies out of {', '.join(_SIM_POLICIES)} (default: lru,s3fifo)",
    )
    parser.add_argument(
        "--size",
        type=_size_list,
        required=True,
        metavar="SIZES",
        help="comma-separated cache sizes in entries, e.g. 1000,5000",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="trace format (default: guessed from the file name and first bytes)",
    )
    parser.add_argument(
        "--column",
        default=None,
        metavar="NAME_OR_INDEX",
        help="key column of a csv trace, by header name or 0-based index "
        "(default: a column named key, obj_id, id, lbn or block)",
    )
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="also write a plot of hit ratio against size to this PNG file "
        "(needs matplotlib: pip install 'storekit[plot]')",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_cache_sim)


def _policy_list(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no policy given")
    for name in names:
        if name not in _SIM_POLICIES:
            raise argparse.ArgumentTypeError(
                f"unknown policy {name!r}; choose from {', '.join(_SIM_POLICIES)}"
            )
    return names


def _size_list(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip()
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"cache size {part!r} is not an integer"
            ) from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"cache size must be >= 1, got {size}")
        sizes.append(size)
    return sizes


def run_cache_sim(args: argparse.Namespace) -> int:
    """Replay the trace and print one line per policy and size."""
    if args.plot is not None and not _matplotlib_available():
        print(
            "storekit: error: --plot needs matplotlib, which is not installed; "
            "install it with: pip install 'storekit[plot]'",
            file=sys.stderr,
        )
        return 1
    if not os.path.isfile(args.trace):
        raise FileNotFoundError(f"trace file not found: {args.trace}")

    column: str | int | None = args.column
    if column is not None and column.isdigit():
        column = int(column)
    keys = load_trace(args.trace, args.format, column=column)
    progress = Progress(len(keys) * len(args.policy) * len(args.size), "replaying")
    results = simulate(keys, args.policy, args.size, progress=progress.advance)
    progress.finish()

    rows = [
        {
            "policy": result.policy,
            "size": result.size,
            "requests": result.requests,
            "hits": result.hits,
            "hit_ratio": result.hit_ratio,
        }
        for result in results
    ]
    lines = [f"{'policy':<8} {'size':>10} {'requests':>12} {'hits':>12} {'hit %':>8}"]
    for row in rows:
        lines.append(
            f"{row['policy']:<8} {row['size']:>10} {row['requests']:>12} "
            f"{row['hits']:>12} {100 * row['hit_ratio']:>8.2f}"
        )
    emit(args, {"trace": args.trace, "results": rows}, "\n".join(lines))
    if args.plot is not None:
        write_plot(results, args.plot, title=os.path.basename(args.trace))
    return 0


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(results: list[SimResult], path: str, title: str) -> None:
    """Write a PNG of hit ratio (percent) against cache size, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")  # render to a file; no display is needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for policy in dict.fromkeys(result.policy for result in results):
        points = sorted(
            (r.size, 100 * r.hit_ratio) for r in results if r.policy == policy
        )
        axes.plot(
            [p[0] for p in points], [p[1] for p in points], marker="o", label=policy
        )
    axes.set_xscale("log")
    axes.set_xlabel("cache size (entries)")
    axes.set_ylabel("hit ratio (%)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
