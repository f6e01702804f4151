"""Benchmark storekit's EventLog against the eventsourcing SQLite recorder.

Usage::

    python bench/bench_eventlog.py [--events 100000] [--event-bytes 200]
                                   [--batch 100] [--sync batch]
                                   [--one-by-one-events N] [--dir DIR] [--json FILE]

Both sides run the same four workloads in one process, each on a fresh
log or database under ``--dir`` (by default a temporary folder, removed at the end):

- batched appends: ``--events`` events of ``--event-bytes`` random bytes,
  ``--batch`` per call, each call to one of 1,000 streams (aggregates),
  with consecutive versions;
- one-by-one appends: ``--one-by-one-events`` events (default
  ``--events``), one per call;
- read all: every event back in log order (storekit ``EventLog.read``,
  eventsourcing ``select_notifications`` in pages of 1,000);
- projection replay: the same ``apply`` (count events per stream through a
  storekit ``WriteBatch``) fed from each log into a ``MemoryStore``, by
  ``storekit.Projection`` and by a loop over notification pages.

``--sync`` sets storekit's sync policy and the SQLite ``synchronous``
pragma that matches it: ``always`` = FULL (fsync at every commit, the
SQLite default), ``batch`` = NORMAL (in WAL mode, fsync only at
checkpoints, so a commit reaches the OS but not the disk), ``none`` = OFF.
eventsourcing puts file databases in WAL journal mode itself. storekit's
append timings include a final ``sync()``.

eventsourcing is optional (``pip install eventsourcing``); without it the
comparison columns are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import storekit  # noqa: E402
from storekit import MemoryStore, WriteBatch  # noqa: E402
from storekit.eventlog import EventLog, Projection  # noqa: E402

try:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnectionPool,
        SQLiteDatastore,
    )
except ImportError:  # the comparison columns stay empty
    SQLiteDatastore = None

STREAMS = 1000
SQLITE_SYNCHRONOUS = {"always": "FULL", "batch": "NORMAL", "none": "OFF"}
PAGE = 1000


def make_payloads(count: int, size: int, seed: int = 1) -> list[bytes]:
    generator = random.Random(seed)
    return [generator.randbytes(size) for _ in range(count)]


def count_per_stream(stream: str, batch: WriteBatch, counts: dict[str, int]) -> None:
    """Count events per stream: the projection that both sides run."""
    counts[stream] = counts.get(stream, 0) + 1
    batch.put(stream.encode(), b"%d" % counts[stream])


# -- storekit ------------------------------------------------------------------


def storekit_append(path: str, payloads: list[bytes], batch: int, sync: str) -> float:
    with EventLog(path, sync=sync) as log:
        started = time.perf_counter()
        for index, start in enumerate(range(0, len(payloads), batch)):
            log.append(f"stream-{index % STREAMS}", payloads[start : start + batch])
        log.sync()
        return time.perf_counter() - started


def storekit_read(path: str) -> tuple[float, int]:
    with EventLog(path) as log:
        started = time.perf_counter()
        count = 0
        for _ in log.read(0):
            count += 1
        return time.perf_counter() - started, count


def storekit_projection(path: str) -> tuple[float, int]:
    counts: dict[str, int] = {}

    def apply(event, batch) -> None:
        count_per_stream(event.stream, batch, counts)

    with EventLog(path) as log:
        target = MemoryStore()
        started = time.perf_counter()
        applied = Projection(log, target, apply, "bench", batch_events=PAGE).catch_up()
        return time.perf_counter() - started, applied


# -- eventsourcing's SQLite recorder -------------------------------------------


def sqlite_recorder(path: str, sync: str):
    synchronous = SQLITE_SYNCHRONOUS[sync]

    class Pool(SQLiteConnectionPool):
        def _create_connection(self):
            connection = super()._create_connection()
            connection._sqlite_conn.execute(f"PRAGMA synchronous={synchronous}")
            return connection

    datastore = SQLiteDatastore(path)
    datastore.pool.close()
    datastore.pool = Pool(db_name=path)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return datastore, recorder


def sqlite_append(path: str, payloads: list[bytes], batch: int, sync: str) -> float:
    datastore, recorder = sqlite_recorder(path, sync)
    ids = [uuid.UUID(int=n + 1) for n in range(STREAMS)]
    versions = [0] * STREAMS
    started = time.perf_counter()
    for index, start in enumerate(range(0, len(payloads), batch)):
        stream = index % STREAMS
        events = []
        for data in payloads[start : start + batch]:
            versions[stream] += 1
            events.append(
                StoredEvent(ids[stream], versions[stream], "bench.Event", data)
            )
        recorder.insert_events(events)
    elapsed = time.perf_counter() - started
    datastore.close()
    return elapsed


def sqlite_pages(recorder):
    start = 1
    while True:
        page = recorder.select_notifications(start, PAGE)
        if not page:
            return
        yield page
        start = page[-1].id + 1


def sqlite_read(path: str, sync: str) -> tuple[float, int]:
    datastore, recorder = sqlite_recorder(path, sync)
    started = time.perf_counter()
    count = 0
    for page in sqlite_pages(recorder):
        count += len(page)
    elapsed = time.perf_counter() - started
    datastore.close()
    return elapsed, count


def sqlite_projection(path: str, sync: str) -> tuple[float, int]:
    datastore, recorder = sqlite_recorder(path, sync)
    counts: dict[str, int] = {}
    target = MemoryStore()
    started = time.perf_counter()
    applied = 0
    for page in sqlite_pages(recorder):
        batch = WriteBatch()
        for notification in page:
            count_per_stream(str(notification.originator_id), batch, counts)
        batch.put(b"\xff\xffoffset", b"%d" % page[-1].id)
        target.write(batch)
        applied += len(page)
    elapsed = time.perf_counter() - started
    datastore.close()
    return elapsed, applied


# -- driver --------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    payloads = make_payloads(args.events, args.event_bytes)
    single = payloads[: args.one_by_one_events]
    results: dict[str, dict[str, float]] = {}

    def record(workload: str, engine: str, events: int, seconds: float) -> None:
        results.setdefault(workload, {})[engine] = events / seconds
        print(
            f"  {engine:>13} {workload:<22} {events / seconds:>12,.0f} events/s",
            flush=True,
        )

    print(f"storekit backend {storekit.backend}, sync={args.sync}, data in {root}")
    batched = str(root / "storekit-batched")
    record(
        "append, batches",
        "storekit",
        args.events,
        storekit_append(batched, payloads, args.batch, args.sync),
    )
    record(
        "append, one by one",
        "storekit",
        len(single),
        storekit_append(str(root / "storekit-single"), single, 1, args.sync),
    )
    seconds, count = storekit_read(batched)
    record("read all", "storekit", count, seconds)
    seconds, count = storekit_projection(batched)
    record("projection replay", "storekit", count, seconds)

    if SQLiteDatastore is not None:
        database = str(root / "sqlite-batched.db")
        record(
            "append, batches",
            "eventsourcing",
            args.events,
            sqlite_append(database, payloads, args.batch, args.sync),
        )
        record(
            "append, one by one",
            "eventsourcing",
            len(single),
            sqlite_append(str(root / "sqlite-single.db"), single, 1, args.sync),
        )
        seconds, count = sqlite_read(database, args.sync)
        record("read all", "eventsourcing", count, seconds)
        seconds, count = sqlite_projection(database, args.sync)
        record("projection replay", "eventsourcing", count, seconds)
    else:
        print("eventsourcing is not installed: comparison columns left out")

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "backend": storekit.backend,
        "sync": args.sync,
        "events": args.events,
        "event_bytes": args.event_bytes,
        "batch": args.batch,
        "one_by_one_events": len(single),
        "events_per_second": results,
    }


def print_table(report: dict) -> None:
    print()
    print("| workload | storekit events/s | eventsourcing SQLite events/s | ratio |")
    print("|---|---:|---:|---:|")
    for workload, engines in report["events_per_second"].items():
        mine = engines["storekit"]
        theirs = engines.get("eventsourcing")
        if theirs is None:
            print(f"| {workload} | {mine:,.0f} | - | - |")
        else:
            print(
                f"| {workload} | {mine:,.0f} | {theirs:,.0f} | {mine / theirs:.1f}x |"
            )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=100_000, help="events per workload"
    )
    parser.add_argument(
        "--event-bytes", type=int, default=200, help="bytes of data per event"
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="events per batched append"
    )
    parser.add_argument(
        "--sync",
        choices=sorted(SQLITE_SYNCHRONOUS),
        default="batch",
        help="storekit sync policy; SQLite gets the matching synchronous pragma",
    )
    parser.add_argument(
        "--one-by-one-events",
        type=int,
        default=None,
        help="events in the one-by-one workload (default: --events)",
    )
    parser.add_argument(
        "--dir",
        help="folder for the logs and databases, kept afterwards "
        "(default: a temporary folder that is removed)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.one_by_one_events is None:
        args.one_by_one_events = args.events
    return args


def main() -> None:
    args = parse_arguments()
    if args.dir:
        report = run(args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-eventlog-") as folder:
            args.dir = folder
            report = run(args)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
