"""The ``storekit cache-sim`` command, run in-process through ``storekit.cli.main``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from storekit.cli import cache_commands, main


def write_loop_trace(path: Path) -> None:
    """Write a gzip text trace: keys 0..99 three times, then 0..9 ten times."""
    keys = list(range(100)) * 3 + list(range(10)) * 10
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(str(key) for key in keys))


def test_cache_sim_prints_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "loop.trace.gz"
    write_loop_trace(trace)
    status = main(
        ["cache-sim", str(trace), "--policy", "lru,s3fifo", "--size", "10,200"]
    )
    output = capsys.readouterr().out.splitlines()
    assert status == 0
    assert output[0].split() == ["policy", "size", "requests", "hits", "hit", "%"]
    rows = {
        (line.split()[0], int(line.split()[1])): line.split()[2:] for line in output[1:]
    }
    # 200 entries hold the whole trace: every request after the first 100 hits.
    assert rows[("lru", 200)] == ["400", "300", "75.00"]
    assert rows[("s3fifo", 200)] == ["400", "300", "75.00"]
    # 10 entries: LRU misses the 100-key loop and hits the 10-key loop after
    # its first round.
    assert rows[("lru", 10)][1] == "90"


def test_cache_sim_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "requests.csv"
    trace.write_text("time,obj_id\n1,a\n2,b\n3,a\n")
    status = main(["cache-sim", str(trace), "--size", "5", "--policy", "lru", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["results"] == [
        {"policy": "lru", "size": 5, "requests": 3, "hits": 1, "hit_ratio": 1 / 3}
    ]


def test_cache_sim_csv_column_by_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "plain.csv"
    trace.write_text("x,7\ny,7\n")
    status = main(
        [
            "cache-sim",
            str(trace),
            "--size",
            "5",
            "--policy",
            "lru",
            "--column",
            "1",
            "--json",
        ]
    )
    assert status == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["hits"] == 1


def test_cache_sim_writes_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="the plot option needs matplotlib")
    trace = tmp_path / "loop.trace.gz"
    write_loop_trace(trace)
    plot = tmp_path / "hits.png"
    status = main(["cache-sim", str(trace), "--size", "10,50,200", "--plot", str(plot)])
    assert status == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cache_sim_plot_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_commands, "_matplotlib_available", lambda: False)
    trace = tmp_path / "keys.txt"
    trace.write_text("1\n2\n")
    plot = tmp_path / "hits.png"
    status = main(["cache-sim", str(trace), "--size", "5", "--plot", str(plot)])
    error = capsys.readouterr().err
    assert status == 1
    assert "needs matplotlib" in error
    assert "pip install 'storekit[plot]'" in error
    assert not plot.exists()


def test_cache_sim_missing_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["cache-sim", str(tmp_path / "absent.txt"), "--size", "5"])
    assert status == 1
    assert "trace file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--size", "0", "cache size must be >= 1"),
        ("--size", "ten", "is not an integer"),
        ("--policy", "mru", "unknown policy 'mru'"),
        ("--policy", "ttl", "unknown policy 'ttl'"),
    ],
)
def test_cache_sim_rejects_bad_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    arguments = ["cache-sim", str(tmp_path / "t.txt"), "--size", "5", option, value]
    with pytest.raises(SystemExit) as info:
        main(arguments)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
