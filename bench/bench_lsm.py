"""Benchmark LSMStore against LevelDB (through plyvel) on the same workloads.

Usage::

    python bench/bench_lsm.py [--n 200000] [--workloads fillseq,readrandom]
                              [--cache-mib 32] [--profile WORKLOAD] [--json FILE]

Keys are 16 bytes, values 100 random bytes. Every workload runs on
storekit and, when plyvel is installed, on LevelDB in the same run, and
the table gives ops/s and the ratio storekit / LevelDB. Read workloads run
after ``flush()``, a reopen and a wait until background compactions stop
(see ``settle``), so reads come from tables and no compaction competes
with them. Both stores
write their log to the operating system on every write and never fsync
(storekit ``sync="none"``, plyvel's default ``sync=False``). Both get the
same block cache (``--cache-mib``, default 32: storekit
``block_cache_bytes``, plyvel ``lru_cache_size``). Both use 4 KiB blocks,
10-bit bloom filters and a 4 MiB write buffer (storekit
``memtable_bytes``, plyvel ``write_buffer_size``), and both run the same
keys in the same order.

Further peers run in the same process when they are installed, each with
the same block size, cache and write buffer where it has such a setting
and no fsync per write: RocksDB (rocksdict, raw mode, 10-bit bloom
filters), LMDB (``sync=False``, one transaction per operation), SQLite
(stdlib ``sqlite3``, a ``WITHOUT ROWID`` table, WAL journal,
``synchronous=OFF``, autocommit) and diskcache (SQLite underneath,
``sqlite_synchronous=0``, no eviction). Their columns give ops/s. LMDB
and SQLite are B-trees and diskcache is a cache, so they show the
trade-off of another design, not a like-for-like LSM comparison.
diskcache has no ordered scan, so its scan column stays empty.
``--peers`` picks the peers.

``--profile WORKLOAD`` runs that workload on storekit under cProfile and
prints the top entries by own time.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import importlib.metadata
import itertools
import json
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import storekit  # noqa: E402
from storekit.lsm import LSMStore  # noqa: E402

try:
    import plyvel
except ImportError:  # the comparison columns stay empty
    plyvel = None
try:
    import rocksdict
except ImportError:
    rocksdict = None
try:
    import lmdb
except ImportError:
    lmdb = None
try:
    import diskcache
except ImportError:
    diskcache = None

KEY_BYTES = 16
VALUE_BYTES = 100
SCAN_LENGTH = 100
BATCH_SIZE = 1000
BLOCK_SIZE = 4096
BLOOM_BITS_PER_KEY = 10
WRITE_BUFFER_BYTES = 4 << 20
#: Block cache of both stores in bytes; ``--cache-mib`` changes it.
cache_bytes = 32 << 20
WORKLOADS = (
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "readmissing",
    "readhot",
    "scan",
    "deleterandom",
    "fillbatch",
)


def make_key(i: int) -> bytes:
    return b"%016d" % i


def zipfian_ranks(n: int, count: int, theta: float, rnd: random.Random) -> list[int]:
    """Return ``count`` ranks in ``[0, n)`` drawn with P(rank r) ~ 1 / (r + 1) ** theta."""
    cumulative = list(
        itertools.accumulate(1.0 / (rank + 1) ** theta for rank in range(n))
    )
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rnd.random() * total) for _ in range(count)]


class Data:
    """Keys, values and access orders shared by both engines."""

    def __init__(self, n: int, seed: int) -> None:
        rnd = random.Random(seed)
        self.n = n
        self.keys = [make_key(i) for i in range(n)]
        self.values = [rnd.randbytes(VALUE_BYTES) for _ in range(n)]
        self.random_order = rnd.sample(range(n), n)
        self.overwrite_order = [rnd.randrange(n) for _ in range(n)]
        self.read_order = [rnd.randrange(n) for _ in range(n)]
        # Absent keys sort among the present ones, so only bloom filters help.
        self.missing = [make_key(rnd.randrange(n))[:-1] + b"x" for _ in range(n)]
        # Scrambled zipfian: hot ranks map to keys spread over the key space.
        scramble = rnd.sample(range(n), n)
        self.hot = [scramble[r] for r in zipfian_ranks(n, n, 0.99, rnd)]
        self.scan_starts = [rnd.randrange(n) for _ in range(max(n // 100, 1))]
        self.delete_order = rnd.sample(range(n), n)


# -- engines -------------------------------------------------------------------


class StorekitEngine:
    name = "storekit"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = None

    def open(self) -> None:
        self.db = LSMStore(
            self.path,
            sync="none",
            block_cache_bytes=cache_bytes,
            block_size=BLOCK_SIZE,
            bloom_bits_per_key=BLOOM_BITS_PER_KEY,
            memtable_bytes=WRITE_BUFFER_BYTES,
        )

    def close(self) -> None:
        self.db.close()

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def get(self, key: bytes):
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def write_batch(self, pairs) -> None:
        with self.db.batch() as batch:
            for key, value in pairs:
                batch.put(key, value)

    def scan(self, start: bytes, count: int) -> int:
        iterator = self.db.scan(start)
        read = 0
        for _ in itertools.islice(iterator, count):
            read += 1
        iterator.close()
        return read

    def flush_and_reopen(self) -> None:
        self.db.flush()
        self.db.close()
        self.open()

    def compact(self) -> None:
        self.db.compact()

    def background_state(self) -> object:
        stats = self.db.stats()
        return stats["levels"], stats["background_work"]

    def stats(self) -> dict:
        return self.db.stats()


class LevelDBEngine:
    name = "leveldb"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = None

    def open(self) -> None:
        self.db = plyvel.DB(
            self.path,
            create_if_missing=True,
            bloom_filter_bits=BLOOM_BITS_PER_KEY,
            lru_cache_size=cache_bytes,
            block_size=BLOCK_SIZE,
            write_buffer_size=WRITE_BUFFER_BYTES,
        )

    def close(self) -> None:
        self.db.close()

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def get(self, key: bytes):
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def write_batch(self, pairs) -> None:
        with self.db.write_batch() as batch:
            for key, value in pairs:
                batch.put(key, value)

    def scan(self, start: bytes, count: int) -> int:
        iterator = self.db.iterator(start=start)
        read = 0
        for _ in itertools.islice(iterator, count):
            read += 1
        iterator.close()
        return read

    def flush_and_reopen(self) -> None:
        # LevelDB writes its log to a level-0 table when it reopens.
        self.db.close()
        self.open()

    def compact(self) -> None:
        self.db.compact_range()

    def background_state(self) -> object:
        return self.db.get_property(b"leveldb.stats")

    def stats(self) -> dict:
        return {}


class RocksDBEngine:
    name = "rocksdb"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = None

    def open(self) -> None:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(cache_bytes))
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
        table.set_block_size(BLOCK_SIZE)
        options.set_block_based_table_factory(table)
        self.db = rocksdict.Rdict(self.path, options)

    def close(self) -> None:
        self.db.close()

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def get(self, key: bytes):
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def write_batch(self, pairs) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in pairs:
            batch.put(key, value)
        self.db.write(batch)

    def scan(self, start: bytes, count: int) -> int:
        iterator = self.db.iter()
        iterator.seek(start)
        read = 0
        while read < count and iterator.valid():
            iterator.key()
            iterator.value()
            iterator.next()
            read += 1
        del iterator
        return read

    def flush_and_reopen(self) -> None:
        self.db.flush()
        self.db.close()
        self.open()

    def compact(self) -> None:
        self.db.compact_range(None, None)

    def background_state(self) -> object:
        return self.db.property_value("rocksdb.levelstats")

    def stats(self) -> dict:
        return {}


class LMDBEngine:
    name = "lmdb"

    def __init__(self, path: str) -> None:
        self.path = path
        self.env = None

    def open(self) -> None:
        # sync=False and metasync=False: commits reach the operating system
        # but are not fsynced, like the other stores here.
        self.env = lmdb.open(
            self.path, map_size=1 << 34, sync=False, metasync=False, readahead=False
        )

    def close(self) -> None:
        self.env.close()

    def put(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def get(self, key: bytes):
        with self.env.begin() as txn:
            return txn.get(key)

    def delete(self, key: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(key)

    def write_batch(self, pairs) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in pairs:
                txn.put(key, value)

    def scan(self, start: bytes, count: int) -> int:
        read = 0
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(start):
                for _ in itertools.islice(cursor, count):
                    read += 1
        return read

    def flush_and_reopen(self) -> None:
        self.env.close()
        self.open()

    def compact(self) -> None:
        pass

    def background_state(self) -> object:
        return None

    def stats(self) -> dict:
        return {}


class SQLiteEngine:
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = None

    def open(self) -> None:
        os.makedirs(self.path, exist_ok=True)
        self.db = sqlite3.connect(
            os.path.join(self.path, "kv.sqlite"), isolation_level=None
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute(f"PRAGMA cache_size=-{cache_bytes >> 10}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID"
        )

    def close(self) -> None:
        self.db.close()

    def put(self, key: bytes, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def get(self, key: bytes):
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def delete(self, key: bytes) -> None:
        self.db.execute("DELETE FROM kv WHERE k = ?", (key,))

    def write_batch(self, pairs) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", pairs)
        self.db.execute("COMMIT")

    def scan(self, start: bytes, count: int) -> int:
        rows = self.db.execute(
            "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?", (start, count)
        )
        return sum(1 for _ in rows)

    def flush_and_reopen(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.open()

    def compact(self) -> None:
        pass

    def background_state(self) -> object:
        return None

    def stats(self) -> dict:
        return {}


class DiskcacheEngine:
    name = "diskcache"

    def __init__(self, path: str) -> None:
        self.path = path
        self.cache = None

    def open(self) -> None:
        self.cache = diskcache.Cache(
            self.path,
            size_limit=1 << 40,
            eviction_policy="none",
            sqlite_synchronous=0,
            sqlite_cache_size=cache_bytes >> 12,
        )

    def close(self) -> None:
        self.cache.close()

    def put(self, key: bytes, value: bytes) -> None:
        self.cache.set(key, value)

    def get(self, key: bytes):
        return self.cache.get(key)

    def delete(self, key: bytes) -> None:
        self.cache.delete(key)

    def write_batch(self, pairs) -> None:
        with self.cache.transact():
            for key, value in pairs:
                self.cache.set(key, value)

    def scan(self, start: bytes, count: int) -> int:
        raise NotImplementedError("diskcache has no ordered scan")

    def flush_and_reopen(self) -> None:
        self.cache.close()
        self.open()

    def compact(self) -> None:
        pass

    def background_state(self) -> object:
        return None

    def stats(self) -> dict:
        return {}


#: Peers besides LevelDB: name -> (engine class, module or None if missing).
OTHER_PEERS = {
    "rocksdb": (RocksDBEngine, rocksdict),
    "lmdb": (LMDBEngine, lmdb),
    "sqlite": (SQLiteEngine, sqlite3),
    "diskcache": (DiskcacheEngine, diskcache),
}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# -- workloads -----------------------------------------------------------------


def run_fill(engine, data: Data, order) -> int:
    keys, values, put = data.keys, data.values, engine.put
    for i in order:
        put(keys[i], values[i])
    return len(order)


def run_reads(engine, keys: list[bytes]) -> int:
    get = engine.get
    for key in keys:
        get(key)
    return len(keys)


def workload_plan(data: Data):
    """Return ``{name: (setup, run, needs_reopen)}``; setup fills a fresh store."""

    def fill_random(engine) -> None:
        run_fill(engine, data, data.random_order)

    def fill_batches(engine) -> int:
        pairs = list(zip(data.keys, data.values, strict=True))
        for start in range(0, data.n, BATCH_SIZE):
            engine.write_batch(pairs[start : start + BATCH_SIZE])
        return data.n

    def scans(engine) -> int:
        for start in data.scan_starts:
            engine.scan(data.keys[start], SCAN_LENGTH)
        return len(data.scan_starts)

    def deletes(engine) -> int:
        delete, keys = engine.delete, data.keys
        for i in data.delete_order:
            delete(keys[i])
        return data.n

    return {
        "fillseq": (None, lambda e: run_fill(e, data, range(data.n)), False),
        "fillrandom": (None, lambda e: run_fill(e, data, data.random_order), False),
        "overwrite": (
            fill_random,
            lambda e: run_fill(e, data, data.overwrite_order),
            False,
        ),
        "readrandom": (
            fill_random,
            lambda e: run_reads(e, [data.keys[i] for i in data.read_order]),
            True,
        ),
        "readmissing": (fill_random, lambda e: run_reads(e, data.missing), True),
        "readhot": (
            fill_random,
            lambda e: run_reads(e, [data.keys[i] for i in data.hot]),
            True,
        ),
        "scan": (fill_random, scans, True),
        "deleterandom": (fill_random, deletes, False),
        "fillbatch": (None, fill_batches, False),
    }


def settle(engine, interval: float = 0.25, quiet_polls: int = 4) -> float:
    """Wait until the store's background compactions stop; return the seconds waited.

    The level layout must stay unchanged for ``quiet_polls`` polls
    ``interval`` seconds apart, and storekit must report no background
    work, so that the reads measure the read path and not a compaction
    running beside it. LevelDB 1.22 does not report a running compaction,
    so for it only the layout (its ``leveldb.stats`` property) is compared.
    """
    started = time.perf_counter()
    previous = engine.background_state()
    unchanged = 0
    while unchanged < quiet_polls:
        time.sleep(interval)
        state = engine.background_state()
        busy = isinstance(state, tuple) and state[-1]
        unchanged = unchanged + 1 if state == previous and not busy else 0
        previous = state
    return time.perf_counter() - started


def measure(engine_class, workload: str, data: Data, profile: bool) -> dict:
    setup, run, reopen = workload_plan(data)[workload]
    directory = tempfile.mkdtemp(prefix=f"bench-{engine_class.name}-")
    engine = engine_class(os.path.join(directory, "db"))
    try:
        engine.open()
        if setup is not None:
            setup(engine)
        if reopen:
            engine.flush_and_reopen()
            settle(engine)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        cpu_started = time.process_time()
        if profiler is not None:
            ops = profiler.runcall(run, engine)
        else:
            ops = run(engine)
        elapsed = time.perf_counter() - started
        # Process CPU time of all threads, background compaction included;
        # steadier than wall time on a shared machine.
        cpu = time.process_time() - cpu_started
        result = {
            "ops": ops,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "ops_per_second": ops / elapsed,
            "ops_per_cpu_second": ops / cpu if cpu else 0.0,
        }
        if profiler is not None:
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(25)
        engine.close()
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def space_amplification(data: Data) -> dict:
    """Fill randomly, overwrite, fully compact; return table bytes / logical bytes."""
    directory = tempfile.mkdtemp(prefix="bench-space-")
    engine = StorekitEngine(os.path.join(directory, "db"))
    try:
        engine.open()
        run_fill(engine, data, data.random_order)
        run_fill(engine, data, data.overwrite_order)
        engine.compact()
        stats = engine.stats()
        engine.close()
        logical = data.n * (KEY_BYTES + VALUE_BYTES)
        return {
            "table_bytes": stats["table_bytes"],
            "logical_bytes": logical,
            "space_amplification": stats["table_bytes"] / logical,
            "write_amplification": stats["write_amplification"],
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="keys per workload")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated workloads to run (default: all)",
    )
    parser.add_argument(
        "--profile", metavar="WORKLOAD", help="profile this workload on storekit only"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the data (default 1)"
    )
    parser.add_argument(
        "--peers",
        default=",".join(OTHER_PEERS),
        help="comma-separated peers besides LevelDB to run when installed "
        f"(default: {','.join(OTHER_PEERS)}; empty for none)",
    )
    parser.add_argument(
        "--cache-mib",
        type=int,
        default=32,
        help="block cache of each store in MiB (default 32)",
    )
    args = parser.parse_args(argv)
    global cache_bytes
    cache_bytes = args.cache_mib << 20

    data = Data(args.n, args.seed)
    if args.profile:
        result = measure(StorekitEngine, args.profile, data, profile=True)
        print(f"{args.profile}: {result['ops_per_second']:,.0f} ops/s")
        return 0

    engines: list[Callable] = [StorekitEngine]
    if plyvel is not None:
        engines.append(LevelDBEngine)
    peers = []
    for name in filter(None, args.peers.split(",")):
        if name not in OTHER_PEERS:
            parser.error(f"unknown peer {name!r}; choose from {', '.join(OTHER_PEERS)}")
        engine_class, module = OTHER_PEERS[name]
        if module is None:
            print(f"{name} is not installed; its column is skipped", file=sys.stderr)
            continue
        engines.append(engine_class)
        peers.append(name)
    print(
        f"N={args.n}, {KEY_BYTES}-byte keys, {VALUE_BYTES}-byte values, "
        f"storekit backend {storekit.backend}, "
        f"plyvel {getattr(plyvel, '__version__', 'not installed')} "
        f"(LevelDB {getattr(plyvel, '__leveldb_version__', '-')}), Python {sys.version.split()[0]}"
    )
    print(
        f"rocksdict {_version('rocksdict')}, lmdb {_version('lmdb')}, "
        f"SQLite {sqlite3.sqlite_version}, diskcache {_version('diskcache')}"
    )
    print(
        f"both stores: block cache {args.cache_mib} MiB, {BLOCK_SIZE}-byte blocks, "
        f"{BLOOM_BITS_PER_KEY}-bit bloom filters, {WRITE_BUFFER_BYTES >> 20} MiB "
        "write buffer, no fsync per write, reopened and settled (compactions "
        "done) before read workloads; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{'workload':<14}{'storekit ops/s':>16}{'leveldb ops/s':>16}{'ratio':>8}"
        f"{'ratio by CPU time':>19}"
        + "".join(f"{name + ' ops/s':>18}" for name in peers)
    )
    results = {}
    for workload in args.workloads.split(","):
        row = {}
        for engine in engines:
            try:
                row[engine.name] = measure(engine, workload, data, False)
            except NotImplementedError:
                continue
        results[workload] = row
        ours = row["storekit"]
        theirs = row.get("leveldb")
        peer_text = "".join(
            f"{row[name]['ops_per_second']:18,.0f}" if name in row else f"{'-':>18}"
            for name in peers
        )
        if theirs is None:
            print(
                f"{workload:<14}{ours['ops_per_second']:16,.0f}{'-':>16}{'-':>8}{'-':>19}"
                + peer_text
            )
            continue
        ratio = ours["ops_per_second"] / theirs["ops_per_second"]
        cpu_ratio = ours["ops_per_cpu_second"] / theirs["ops_per_cpu_second"]
        print(
            f"{workload:<14}{ours['ops_per_second']:16,.0f}"
            f"{theirs['ops_per_second']:16,.0f}{ratio:8.2f}{cpu_ratio:19.2f}"
            + peer_text,
            flush=True,
        )
    space = space_amplification(data)
    results["space"] = space
    print(
        f"after fillrandom + overwrite + compact(): tables {space['table_bytes']:,} bytes "
        f"for {space['logical_bytes']:,} bytes of keys and values, space amplification "
        f"{space['space_amplification']:.3f}, write amplification "
        f"{space['write_amplification']:.2f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
