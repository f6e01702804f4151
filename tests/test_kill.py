"""Real-process kill tests: SIGKILL a writer and check every acknowledged write.

A child process writes two-key batches under sync="always", to the LSM
engine (small memtables, so flushes and compactions run during the kills)
or to DurableStore (small checkpoints), and prints the number of each
batch once ``write`` has returned. The parent kills it with
SIGKILL at a random moment, reopens the store and checks that every
acknowledged batch is present and that the recovered batches are exactly
0..n-1 for some n: no hole and no half batch.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import storekit

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="SIGKILL is not available on this platform"
)

CHILD = r"""
import sys
import storekit

if sys.argv[3] == "durable":
    db = storekit.DurableStore(sys.argv[1], sync="always", checkpoint_bytes=16384)
else:
    db = storekit.open(sys.argv[1], sync="always", memtable_bytes=16384)
start = int(sys.argv[2])
number = start
out = sys.stdout
while True:
    batch = storekit.WriteBatch()
    batch.put(b"%08d-a" % number, b"A" * (number % 97))
    batch.put(b"%08d-b" % number, b"B" * (number % 89))
    db.write(batch)
    out.write(f"{number}\n")
    out.flush()
    number += 1
"""


def _child_env():
    env = dict(os.environ)
    # The child imports the same storekit as this test process.
    package_parent = os.path.dirname(os.path.dirname(storekit.__file__))
    env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_and_kill(path, start, delay, cwd, engine):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, str(start), engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
        cwd=cwd,
    )
    # Wait until the child acknowledged something, then let it run on.
    first = child.stdout.readline()
    assert first, child.stderr.read().decode()
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    # Read through the same buffered pipe object as readline() above:
    # communicate() would read the descriptor directly and lose what that
    # buffer already holds.
    rest = child.stdout.read()
    errors = child.stderr.read()
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, errors.decode()
    lines = (first + rest).decode().split("\n")
    # A line without its newline was cut by the kill: not an acknowledgement.
    complete = lines[:-1]
    return [int(line) for line in complete]


def _recovered_batches(path, engine):
    opener = storekit.DurableStore if engine == "durable" else storekit.open
    with opener(path) as db:
        items = dict(db.scan())
    numbers = sorted({int(key[:8]) for key in items})
    for number in numbers:
        a = items.get(b"%08d-a" % number)
        b = items.get(b"%08d-b" % number)
        assert a == b"A" * (number % 97), f"batch {number}: key a is {a!r}"
        assert b == b"B" * (number % 89), f"batch {number}: key b is {b!r}"
    assert len(items) == 2 * len(numbers)
    return numbers


@pytest.mark.parametrize("engine", ["lsm", "durable"])
def test_sigkill_loses_no_acknowledged_write(tmp_path, engine):
    rng = random.Random(20261204)
    path = str(tmp_path / "db")
    kills = 20
    expected_next = 0
    acknowledged_total = 0
    for round_number in range(kills):
        delay = rng.uniform(0.02, 0.3)
        acknowledged = _run_and_kill(path, expected_next, delay, str(tmp_path), engine)
        assert acknowledged, f"round {round_number}: the child acknowledged nothing"
        assert acknowledged[0] == expected_next
        assert acknowledged == list(range(expected_next, acknowledged[-1] + 1))
        acknowledged_total += len(acknowledged)
        numbers = _recovered_batches(path, engine)
        assert numbers == list(range(len(numbers))), f"round {round_number}: a hole"
        assert len(numbers) >= acknowledged[-1] + 1, (
            f"round {round_number}: batch {acknowledged[-1]} was acknowledged, "
            f"but only {len(numbers)} batches survived"
        )
        expected_next = len(numbers)
    assert acknowledged_total >= kills
