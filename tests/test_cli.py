"""The ``storekit`` command line, run as ``python -m storekit`` in subprocesses.

Each command runs in a fresh interpreter whose working directory is the
test's temporary directory, so no source tree in the current directory is
imported by accident. ``stores.child_env`` makes the child import the same
storekit package as the tests.
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from stores import child_env

import storekit
from storekit.batch import KIND_PUT, encode_batch


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storekit", *(str(arg) for arg in args)],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )


def run_ok(*args: object, cwd: Path) -> str:
    """Run a command that must succeed with nothing on stderr, and return its stdout."""
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def run_error(*args: object, cwd: Path) -> str:
    """Run a command that must fail with one ``storekit: `` line, and return it."""
    result = run_cli(*args, cwd=cwd)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("storekit: ")
    return lines[0]


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A store holding keys a, b, ba, bb, c, d written through the Python API."""
    path = tmp_path / "filled"
    with storekit.open(str(path)) as db:
        for key in [b"a", b"b", b"ba", b"bb", b"c", b"d"]:
            db.put(key, key.upper() * 2)
    return path


# -- put, get, delete ---------------------------------------------------------


def test_put_get_delete(tmp_path: Path) -> None:
    assert run_ok("put", "db", "fruit", "apple", cwd=tmp_path) == "ok\n"
    assert run_ok("get", "db", "fruit", cwd=tmp_path) == "apple\n"
    found = json.loads(run_ok("get", "db", "fruit", "--json", cwd=tmp_path))
    assert found == {"key": "fruit", "value": "apple", "found": True}

    assert (
        run_ok("put", "db", "fruit", "pear", "--sync", "none", cwd=tmp_path) == "ok\n"
    )
    assert run_ok("get", "db", "fruit", cwd=tmp_path) == "pear\n"
    assert json.loads(run_ok("delete", "db", "fruit", "--json", cwd=tmp_path)) == {
        "ok": True
    }
    line = run_error("get", "db", "fruit", cwd=tmp_path)
    assert "fruit" in line
    assert "not found" in line

    with storekit.open(str(tmp_path / "db")) as db:
        assert db.get(b"fruit") is None


def test_hex_keys_and_values(tmp_path: Path) -> None:
    run_ok("put", "db", "hex:00ff", "hex:0001", cwd=tmp_path)
    run_ok("put", "db", "text", "hex:", cwd=tmp_path)

    assert run_ok("get", "db", "hex:00ff", cwd=tmp_path) == "hex:0001\n"
    assert run_ok("scan", "db", cwd=tmp_path) == "hex:00ff\thex:0001\ntext\t\n"
    with storekit.open(str(tmp_path / "db")) as db:
        assert db.get(b"\x00\xff") == b"\x00\x01"
        assert db.get(b"text") == b""


# -- scan ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["a", "b", "ba", "bb", "c", "d"]),
        (["--prefix", "b"], ["b", "ba", "bb"]),
        (["--start", "ba"], ["ba", "bb", "c", "d"]),
        (["--end", "ba"], ["a", "b"]),
        (["--prefix", "b", "--start", "ba", "--end", "bz"], ["ba", "bb"]),
        (["--reverse", "--start", "b", "--end", "c"], ["bb", "ba", "b"]),
        (["--limit", "2"], ["a", "b"]),
        (["--limit", "2", "--reverse", "--prefix", "b"], ["bb", "ba"]),
        (["--limit", "0"], []),
        (["--prefix", "x"], []),
    ],
)
def test_scan_options(filled: Path, options: list[str], expected: list[str]) -> None:
    records = json_lines(run_ok("scan", filled, *options, "--json", cwd=filled.parent))
    assert records == [{"key": key, "value": key.upper() * 2} for key in expected]


def test_scan_text_output(filled: Path) -> None:
    text = run_ok("scan", filled, "--prefix", "b", "--reverse", cwd=filled.parent)
    assert text == "bb\tBBBB\nba\tBABA\nb\tBB\n"


def test_scan_keys_only(filled: Path) -> None:
    text = run_ok("scan", filled, "--keys-only", "--end", "bb", cwd=filled.parent)
    assert text == "a\nb\nba\n"

    stdout = run_ok(
        "scan", filled, "--json", "--keys-only", "--prefix", "b", cwd=filled.parent
    )
    assert json_lines(stdout) == [{"key": "b"}, {"key": "ba"}, {"key": "bb"}]


# -- load ---------------------------------------------------------------------


def scan_store(path: Path) -> list[tuple[bytes, bytes]]:
    with storekit.open(str(path), read_only=True) as db:
        return list(db.scan())


def test_load_text(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("alpha\nbeta\tsecond\n\ngamma\tthird\tpart\n")

    assert (
        run_ok("load", "db", "input.txt", cwd=tmp_path) == "loaded 3 records into db\n"
    )
    assert scan_store(tmp_path / "db") == [
        (b"alpha", b""),
        (b"beta", b"second"),
        (b"gamma", b"third\tpart"),
    ]


def test_load_csv_named_columns(tmp_path: Path) -> None:
    with open(tmp_path / "fruit.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "color"])
        writer.writerow(["1", "apple", "red"])
        writer.writerow(["2", "banana", "yellow, when ripe"])
        writer.writerow(["3", "kiwi", "green"])

    stdout = run_ok(
        "load",
        "db",
        "fruit.csv",
        "--key-column",
        "name",
        "--value-column",
        "color",
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(stdout) == {"loaded": 3}
    assert scan_store(tmp_path / "db") == [
        (b"apple", b"red"),
        (b"banana", b"yellow, when ripe"),
        (b"kiwi", b"green"),
    ]


def test_load_csv_column_indexes(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("k1,v1,x\nk2,v2,y\n")
    run_ok("load", "db", "pairs.csv", "--value-column", "2", cwd=tmp_path)
    assert scan_store(tmp_path / "db") == [(b"k1", b"x"), (b"k2", b"y")]


def test_load_json_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "b", "body": "plain text"}),
        "",
        json.dumps({"id": "a", "body": {"z": 1, "n": [1, 2]}}),
        json.dumps({"id": 7}),
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")

    run_ok(
        "load",
        "db",
        "events.jsonl",
        "--key-field",
        "id",
        "--value-field",
        "body",
        cwd=tmp_path,
    )
    # Values that are not strings are stored as JSON with sorted keys.
    assert scan_store(tmp_path / "db") == [
        (b"7", b""),
        (b"a", b'{"n": [1, 2], "z": 1}'),
        (b"b", b"plain text"),
    ]


def test_load_gzip_file(tmp_path: Path) -> None:
    rows = "".join(f"key{i:04d},value{i}\n" for i in range(2500))
    with gzip.open(tmp_path / "rows.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(rows)

    stdout = run_ok(
        "load", "db", "rows.csv.gz", "--batch-size", "100", "--json", cwd=tmp_path
    )
    assert json.loads(stdout) == {"loaded": 2500}
    items = scan_store(tmp_path / "db")
    assert len(items) == 2500
    assert items[0] == (b"key0000", b"value0")
    assert items[-1] == (b"key2499", b"value2499")


def test_load_shipped_word_list(tmp_path: Path) -> None:
    words_path = Path(run_ok("sample-data", "words", cwd=tmp_path).strip())
    assert words_path.is_file()
    with gzip.open(words_path, "rt", encoding="utf-8") as handle:
        words = [line.rstrip("\n") for line in handle if line.strip()]

    stdout = run_ok("load", "db", words_path, "--json", cwd=tmp_path)
    assert json.loads(stdout) == {"loaded": len(words)}

    for prefix in ["zo", "Å"]:
        encoded = prefix.encode("utf-8")
        expected = sorted({word for word in words if word.startswith(prefix)})
        expected.sort(key=lambda word: word.encode("utf-8"))
        assert expected, prefix
        stdout = run_ok("scan", "db", "--prefix", prefix, "--keys-only", cwd=tmp_path)
        assert stdout.splitlines() == expected
        assert all(word.encode("utf-8").startswith(encoded) for word in expected)

    # Each record of the load is one put with its own sequence number.
    stats = json.loads(run_ok("stats", "db", "--json", cwd=tmp_path))
    assert stats["last_sequence"] == len(words)


# -- stats, verify, dump-wal --------------------------------------------------


def test_stats_output(filled: Path) -> None:
    stats = json.loads(run_ok("stats", filled, "--json", cwd=filled.parent))
    assert stats["last_sequence"] == 6
    assert stats["recovery"]["dropped_bytes"] == 0

    text = run_ok("stats", filled, cwd=filled.parent)
    assert "last_sequence: 6" in text.splitlines()


def test_verify_output(filled: Path) -> None:
    report = json.loads(run_ok("verify", filled, "--json", cwd=filled.parent))
    assert report["ok"] is True
    text = run_ok("verify", filled, cwd=filled.parent)
    assert text.startswith("ok: ")


# The writer exits without closing the store, as a killed process would, so
# its records are still in the WAL whatever the engine does on close.
WAL_WRITER = textwrap.dedent(
    """
    import os
    import sys
    import storekit
    db = storekit.open(sys.argv[1], sync="always")
    db.put(b"first", b"1")
    with db.batch() as batch:
        batch.put(b"second", b"2")
        batch.delete(b"first")
    db.put(b"\\x00bin", b"\\xff")
    os._exit(0)
    """
)


def test_dump_wal_of_store(tmp_path: Path) -> None:
    writer = subprocess.run(
        [sys.executable, "-c", WAL_WRITER, "db"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert writer.returncode == 0, writer.stderr

    records = json_lines(run_ok("dump-wal", "db", "--json", cwd=tmp_path))
    ops = [op for record in records for op in record["ops"]]
    assert ops == [
        {"op": "put", "key": "first", "value": "1"},
        {"op": "put", "key": "second", "value": "2"},
        {"op": "delete", "key": "first"},
        {"op": "put", "key": "hex:0062696e", "value": "hex:ff"},
    ]
    sequences = [record["sequence"] for record in records]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)

    text = run_ok("dump-wal", "db", cwd=tmp_path).splitlines()
    assert "  put first = 1" in text
    assert "  delete first" in text
    limited = json_lines(
        run_ok("dump-wal", "db", "--json", "--limit", "1", cwd=tmp_path)
    )
    assert limited == records[:1]


def test_dump_wal_of_wal_directory(tmp_path: Path) -> None:
    with storekit.WAL(str(tmp_path / "log")) as wal:
        wal.append(encode_batch([(KIND_PUT, b"k", b"v")], 41))
        wal.append(b"not a batch")

    records = json_lines(run_ok("dump-wal", "log", "--json", cwd=tmp_path))
    assert len(records) == 2
    assert records[0]["sequence"] == 41
    assert records[0]["ops"] == [{"op": "put", "key": "k", "value": "v"}]
    assert records[1]["payload"] == "hex:" + b"not a batch".hex()
    assert records[1]["bytes"] == len(b"not a batch")


# -- errors -------------------------------------------------------------------


def test_error_missing_key(filled: Path) -> None:
    line = run_error("get", filled, "nothing-here", cwd=filled.parent)
    assert "nothing-here" in line
    assert "not found" in line


@pytest.mark.parametrize(
    "command",
    [
        ["get", "missing", "k"],
        ["scan", "missing"],
        ["stats", "missing"],
        ["verify", "missing"],
    ],
)
def test_error_missing_dir(tmp_path: Path, command: list[str]) -> None:
    line = run_error(*command, cwd=tmp_path)
    assert "missing" in line
    assert not (tmp_path / "missing").exists()


def test_error_missing_input_file(tmp_path: Path) -> None:
    line = run_error("load", "db", "absent.txt", cwd=tmp_path)
    assert "absent.txt" in line


def test_error_bad_csv_column(tmp_path: Path) -> None:
    (tmp_path / "fruit.csv").write_text("name,color\napple,red\n")
    line = run_error("load", "db", "fruit.csv", "--key-column", "title", cwd=tmp_path)
    assert "'title'" in line


def test_error_invalid_json_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"key": "a", "value": "1"}\n{"key": \n')
    line = run_error("load", "db", "bad.jsonl", cwd=tmp_path)
    assert "line 2" in line
    assert "JSON" in line


def test_error_store_locked(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("k\tv\n")
    with storekit.open(str(tmp_path / "db")) as db:
        db.put(b"held", b"by the test process")
        for command in (
            ["put", "db", "k", "v"],
            ["delete", "db", "held"],
            ["load", "db", "input.txt"],
        ):
            line = run_error(*command, cwd=tmp_path)
            assert "lock" in line.lower()
        assert db.get(b"k") is None
        assert db.get(b"held") == b"by the test process"
