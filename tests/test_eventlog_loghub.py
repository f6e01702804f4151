"""Real system logs appended as events and projected into per-level counts.

The loghub samples (2,000 lines each of HDFS, Spark, OpenStack, ZooKeeper,
Apache and Linux logs) live in the shared data folder beside the checkout;
the test skips when it is absent.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

import storekit
from storekit.eventlog import (
    OFFSET_KEY_PREFIX,
    Event,
    EventLog,
    Projection,
    ProjectionBatch,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"

# One pattern per file: the level and, where the format has one, the
# component (logger, class or program name). Linux syslog lines carry no
# level, so they count under "-".
PATTERNS = {
    "HDFS_2k.log": rb"^\d{6} \d{6} \d+ (?P<level>[A-Z]+) (?P<component>[^:\s]+):",
    "Spark_2k.log": rb"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<component>[^:\s]+):",
    "OpenStack_2k.log": rb"^\S+ \S+ \S+ \d+ (?P<level>[A-Z]+) (?P<component>\S+) ",
    "Zookeeper_2k.log": (
        rb"^\S+ \S+ - (?P<level>[A-Z]+)\s+\[.*:(?P<component>[^:@\]]+)@\d+\] - "
    ),
    "Apache_2k.log": rb"^\[[^\]]+\] \[(?P<level>\w+)\] ",
    "Linux_2k.log": rb"^[A-Z][a-z]{2}\s+\d+ \d\d:\d\d:\d\d \S+\s+(?P<component>[^\[:\s]+)",
}
COMPILED = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}


def parse(source: str, line: bytes) -> tuple[bytes, bytes | None]:
    """Return ``(level, component)`` of a log line; unmatched lines are b"unparsed"."""
    match = COMPILED[source].match(line)
    if match is None:
        return b"unparsed", None
    fields = match.groupdict()
    return fields.get("level") or b"-", fields.get("component")


def read_lines(path: Path) -> list[bytes]:
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # a final newline ends the last line
    return lines


def count_lines(event: Event, batch: ProjectionBatch) -> None:
    level, component = parse(event.stream, event.data)
    source = event.stream.encode()
    keys = [b"level/" + source + b"/" + level]
    if component is not None:
        keys.append(b"component/" + source + b"/" + component)
    for key in keys:
        batch.put(key, b"%d" % (int(batch.get(key, b"0")) + 1))


@pytest.fixture(scope="module")
def loghub_files() -> dict[str, list[bytes]]:
    if not DATA.is_dir():
        pytest.skip(f"loghub samples not found in {DATA}")
    files = {
        name: read_lines(DATA / name) for name in PATTERNS if (DATA / name).exists()
    }
    if not files:
        pytest.skip(f"no loghub sample log in {DATA}")
    return files


def test_loghub_counts_by_level_and_component(tmp_path: Path, loghub_files) -> None:
    expected: dict[bytes, int] = Counter()
    for source, lines in loghub_files.items():
        for line in lines:
            level, component = parse(source, line)
            expected[b"level/" + source.encode() + b"/" + level] += 1
            if component is not None:
                expected[b"component/" + source.encode() + b"/" + component] += 1

    log = EventLog(str(tmp_path / "log"), segment_bytes=256 * 1024)
    counts = storekit.open(str(tmp_path / "counts"))
    projection = Projection(log, counts, count_lines, "line-counts")
    projection.start()
    appended = 0
    for source, lines in loghub_files.items():
        for start in range(0, len(lines), 100):
            log.append(source, lines[start : start + 100])
            appended += len(lines[start : start + 100])
        if source == "OpenStack_2k.log":
            # Restart the read model halfway: it resumes from its stored offset.
            projection.stop(timeout=10)
            counts.close()
            counts = storekit.open(str(tmp_path / "counts"))
            projection = Projection(log, counts, count_lines, "line-counts")
            projection.start()
    assert projection.wait(timeout=60)
    projection.stop(timeout=10)
    assert projection.error is None

    assert (
        log.next_offset
        == appended
        == sum(len(lines) for lines in loghub_files.values())
    )
    stored = {key: int(value) for key, value in counts.scan(end=OFFSET_KEY_PREFIX)}
    assert stored == expected
    for source, lines in loghub_files.items():
        per_level = sum(
            n
            for key, n in stored.items()
            if key.startswith(b"level/" + source.encode() + b"/")
        )
        assert per_level == len(lines)
        assert stored.get(b"level/" + source.encode() + b"/unparsed", 0) == 0
    # The stored events are the file's lines, byte for byte and in order.
    for source, lines in loghub_files.items():
        assert [event.data for event in log.read_stream(source)] == lines
    counts.close()
    log.close()


def test_hdfs_counts_match_structured_csv(tmp_path: Path, loghub_files) -> None:
    structured = DATA / "HDFS_2k.log_structured.csv"
    if "HDFS_2k.log" not in loghub_files or not structured.exists():
        pytest.skip(f"HDFS sample or {structured.name} not found in {DATA}")
    with structured.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    levels = Counter(row["Level"] for row in rows)
    components = Counter(row["Component"] for row in rows)

    with EventLog(str(tmp_path / "log")) as log:
        log.append("HDFS_2k.log", loghub_files["HDFS_2k.log"])
        counts = storekit.MemoryStore()
        Projection(log, counts, count_lines, "hdfs").catch_up()
    for level, n in levels.items():
        assert counts.get(b"level/HDFS_2k.log/" + level.encode()) == b"%d" % n
    for component, n in components.items():
        assert counts.get(b"component/HDFS_2k.log/" + component.encode()) == b"%d" % n
