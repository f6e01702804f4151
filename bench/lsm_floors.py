"""Measure the best case of LSMStore's pure-Python paths beside LevelDB.

Usage::

    python bench/lsm_floors.py [--n 200000] [--seed 1]

``bench_lsm.py`` measures whole workloads. This script removes the work
that a workload adds on top of one call, to show how fast a call can get
while storekit's engine is written in Python:

- ``put, no flush``: random puts into a memtable so large (1 GiB) that no
  flush or compaction runs, so every CPU cycle is the writer's own.
- ``get, memtable``: random gets of keys that are all in that memtable.
- ``get, warm table``: random gets from a store filled, fully compacted,
  reopened and read once, so that every block sits decoded in a 64 MiB
  block cache and no compaction runs.

LevelDB (plyvel) runs the same three cases with the same keys, values and
order: puts with a 1 GiB write buffer, gets right after them, and gets
after a full compaction, a reopen and one warming pass with a 64 MiB
block cache. Neither store fsyncs. The last column divides storekit's
rate by LevelDB's, which is the highest ratio a full workload of that
kind can reach until the engine's own work per call gets smaller.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storekit.lsm import LSMStore  # noqa: E402

try:
    import plyvel
except ImportError:
    plyvel = None

KEY_BYTES = 16
VALUE_BYTES = 100
HUGE_BUFFER = 1 << 30
WARM_CACHE = 64 << 20


def put_rate(db, keys, values) -> float:
    """Put every key with its value into ``db``; return puts per second."""
    put = db.put
    started = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        put(key, value)
    return len(keys) / (time.perf_counter() - started)


def get_rate(db, reads) -> float:
    """Get every key of ``reads`` from ``db``; return gets per second."""
    get = db.get
    started = time.perf_counter()
    for key in reads:
        get(key)
    return len(reads) / (time.perf_counter() - started)


def storekit_rates(directory: str, keys, values, reads) -> dict[str, float]:
    rates = {}
    path = os.path.join(directory, "storekit")
    db = LSMStore(path, sync="none", memtable_bytes=HUGE_BUFFER)
    rates["put, no flush"] = put_rate(db, keys, values)
    rates["get, memtable"] = get_rate(db, reads)
    db.compact()
    db.close()
    db = LSMStore(path, sync="none", block_cache_bytes=WARM_CACHE)
    get_rate(db, reads)  # decode every block into the cache
    rates["get, warm table"] = get_rate(db, reads)
    levels = [level["tables"] for level in db.stats()["levels"]]
    db.close()
    rates["tables per level"] = levels
    return rates


def leveldb_rates(directory: str, keys, values, reads) -> dict[str, float]:
    rates = {}
    path = os.path.join(directory, "leveldb")
    db = plyvel.DB(
        path,
        create_if_missing=True,
        write_buffer_size=HUGE_BUFFER,
        bloom_filter_bits=10,
    )
    rates["put, no flush"] = put_rate(db, keys, values)
    rates["get, memtable"] = get_rate(db, reads)
    db.compact_range()
    db.close()
    db = plyvel.DB(path, lru_cache_size=WARM_CACHE, bloom_filter_bits=10)
    get_rate(db, reads)  # fill the block cache
    rates["get, warm table"] = get_rate(db, reads)
    db.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="keys (default 200000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()

    rnd = random.Random(args.seed)
    keys = [b"%016d" % i for i in rnd.sample(range(args.n), args.n)]
    values = [rnd.randbytes(VALUE_BYTES) for _ in range(args.n)]
    reads = [keys[rnd.randrange(args.n)] for _ in range(args.n)]

    directory = tempfile.mkdtemp(prefix="bench-floors-")
    try:
        ours = storekit_rates(directory, keys, values, reads)
        theirs = leveldb_rates(directory, keys, values, reads) if plyvel else {}
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(
        f"N={args.n}, {KEY_BYTES}-byte keys, {VALUE_BYTES}-byte values, "
        f"Python {sys.version.split()[0]}, load average "
        f"{', '.join(f'{load:.2f}' for load in os.getloadavg())}"
    )
    print(f"storekit tables per level after compact(): {ours['tables per level']}")
    print(f"{'case':<18}{'storekit ops/s':>16}{'leveldb ops/s':>16}{'ratio':>8}")
    for case in ("put, no flush", "get, memtable", "get, warm table"):
        other = theirs.get(case)
        ratio = f"{ours[case] / other:.2f}" if other else "-"
        other_text = f"{other:,.0f}" if other else "-"
        print(f"{case:<18}{ours[case]:>16,.0f}{other_text:>16}{ratio:>8}")


if __name__ == "__main__":
    main()
