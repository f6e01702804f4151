"""Stores and logs left open are closed at interpreter exit, after exit hooks."""

from __future__ import annotations

import subprocess
import sys

from stores import child_env

_CHILD = r"""
import sys
from storekit import EventLog, LSMStore
from storekit import _exit
from storekit.durable import DurableStore

directory, marks = sys.argv[1], sys.argv[2]


def mark(text):
    with open(marks, "a") as handle:
        handle.write(text + "\n")


def closing(kind, close):
    def wrapped():
        mark("close " + kind)
        close()
    return wrapped


_exit.run_before_closing(lambda: mark("hook"))
lsm = LSMStore(directory + "/lsm", sync="batch", sync_interval=3600)
durable = DurableStore(directory + "/durable", sync="batch", sync_interval=3600)
log = EventLog(directory + "/log", sync="batch")
lsm.close = closing("lsm", lsm.close)
durable.close = closing("durable", durable.close)
log.close = closing("log", log.close)
lsm.put(b"k", b"lsm")
durable.put(b"k", b"durable")
log.append("s", [b"event"])
"""


def test_open_resources_closed_at_exit(tmp_path):
    marks = tmp_path / "marks.txt"
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(marks)],
        env=child_env(),
        timeout=120,
        check=True,
    )
    lines = marks.read_text().splitlines()
    assert lines[0] == "hook"
    assert sorted(lines[1:]) == ["close durable", "close log", "close lsm"]

    from storekit import EventLog, LSMStore
    from storekit.durable import DurableStore

    with LSMStore(str(tmp_path / "lsm")) as lsm:
        assert lsm.get(b"k") == b"lsm"
    with DurableStore(str(tmp_path / "durable")) as durable:
        assert durable.get(b"k") == b"durable"
    with EventLog(str(tmp_path / "log")) as log:
        assert [event.data for event in log.read()] == [b"event"]
