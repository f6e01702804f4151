"""Real-process kill tests: SIGKILL a ShardedStore while it moves keys.

A child process opens durable shards (``storekit.open``) under a
ShardedStore, starts ``add_shard`` or ``remove_shard``, and keeps updating
keys while the move runs. Before each ``put`` it prints ``begin`` and after
it returns ``ack`` with the move's progress. The parent kills it with
SIGKILL once a random number of writes is acknowledged and the move has
reached a random fraction, so most kills land inside the move. It sometimes
kills a second child that reopens the store to resume the move, and then
reopens the store itself and waits for the move to finish. Every key must
then have its last acknowledged value (or the value that was in flight at
the kill) and sit on its ring owner alone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from stores import child_env

import storekit
from storekit.sharding import ShardedStore

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="SIGKILL is not available on this platform"
)

KEY_COUNT = 4000

CHILD = r"""
import random
import sys

import storekit
from storekit.sharding import ShardedStore

root, action, seed, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
key_count = int(sys.argv[5])
shards = {name: storekit.open(f"{root}/{name}", sync="batch") for name in names.split(",")}
db = ShardedStore(
    shards, path=f"{root}/map", move_chunk_keys=16, move_flush_bytes=8192
)
out = sys.stdout
if action == "load":
    for i in range(key_count):
        db.put(b"key-%05d" % i, b"load")
    db.close()
    out.write("loaded\n")
    out.flush()
    sys.exit(0)
if action == "resume":
    out.write("started\n")
    out.flush()
    for move in db.pending_moves:
        move.wait()
    out.write("done\n")
    out.flush()
    sys.exit(0)
kind, name = action.split(":")
if kind == "add":
    move = db.add_shard(name, storekit.open(f"{root}/{name}", sync="batch"))
else:
    move = db.remove_shard(name)
out.write("started\n")
out.flush()
generator = random.Random(seed)
number = 0
reported = False
while True:
    i = generator.randrange(key_count)
    value = b"%d-%d" % (seed, number)
    out.write(f"begin {i} {value.decode()}\n")
    out.flush()
    db.put(b"key-%05d" % i, value)
    out.write(f"ack {i} {value.decode()} {move.progress:.3f}\n")
    out.flush()
    number += 1
    if move.done and not reported:
        out.write("done\n")
        out.flush()
        reported = True
"""


#: Seconds a child may run before the test kills it and fails: a move of
#: KEY_COUNT keys takes about a second on a 2-core VM.
CHILD_DEADLINE = 120


def _run_child(root, action, seed, names, kill_at=None, kill_after_seconds=None):
    """Run the child; kill it at the chosen point. Return its output lines."""
    # stderr goes to a file, because an unread pipe could fill up and
    # block the child's log calls, and with them its mover thread.
    error_path = os.path.join(root, f"child-{action.replace(':', '-')}.stderr")
    with open(error_path, "w") as error_file:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                root,
                action,
                str(seed),
                ",".join(names),
                str(KEY_COUNT),
            ],
            stdout=subprocess.PIPE,
            stderr=error_file,
            env=child_env(),
            text=True,
        )

    watchdog = threading.Timer(CHILD_DEADLINE, child.kill)
    watchdog.start()
    lines = []
    try:
        started = child.stdout.readline()
        lines.append(started.rstrip("\n"))
        if kill_after_seconds is not None:
            time.sleep(kill_after_seconds)
        elif kill_at is not None:
            # Kill after ``min_acks`` acknowledged writes once the move's
            # progress reached ``fraction``, or when the move is done.
            min_acks, fraction = kill_at
            acks = 0
            progress = 0.0
            while acks < min_acks or progress < fraction:
                line = child.stdout.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
                if line.startswith("ack"):
                    acks += 1
                    progress = float(line.split(" ")[3])
                elif line.startswith("done"):
                    break
        else:
            child.wait(timeout=120)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        # Read through the same buffered reader as readline above:
        # communicate() would skip what that reader already buffered.
        rest = child.stdout.read()
        child.wait(timeout=60)
    finally:
        timed_out = not watchdog.is_alive()
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()

    with open(error_path) as error_file:
        errors = error_file.read()
    assert not timed_out, f"{action} child ran past {CHILD_DEADLINE} s:\n{errors}"
    assert started, f"{action} child exited before starting:\n{errors}"
    assert child.returncode in (0, -signal.SIGKILL), errors
    # A last line without its newline was cut by the kill.
    complete = rest.split("\n")[:-1]
    return lines + complete


def _apply_output(lines, acknowledged, maybe):
    """Update the acknowledged values from a child's output lines."""
    in_flight = None
    for line in lines:
        parts = line.split(" ")
        if parts[0] == "begin":
            in_flight = (int(parts[1]), parts[2].encode())
        elif parts[0] == "ack":
            i, value = int(parts[1]), parts[2].encode()
            assert in_flight == (i, value)
            acknowledged[i] = value
            maybe.pop(i, None)
            in_flight = None
    if in_flight is not None:
        maybe[in_flight[0]] = in_flight[1]
    return "done" in lines


def _open(root, names):
    shards = {name: storekit.open(os.path.join(root, name)) for name in names}
    return ShardedStore(shards, path=os.path.join(root, "map"))


def _verify(root, names, acknowledged, maybe):
    """Finish any move, check every value and placement; return the ring's nodes."""
    db = _open(root, names)
    try:
        for move in db.pending_moves:
            assert move.wait(120)
        ring = db.ring
        contents = {}
        for name, store in db.shards.items():
            for key, value in store.scan():
                assert ring.node_for(key) == name, (key, name)
                assert key not in contents, key
                contents[key] = value
        assert len(contents) == KEY_COUNT
        for i in range(KEY_COUNT):
            key = b"key-%05d" % i
            allowed = {acknowledged[i]}
            if i in maybe:
                allowed.add(maybe[i])
            assert contents[key] in allowed, (key, contents[key], allowed)
            acknowledged[i] = contents[key]
        maybe.clear()
        return sorted(ring.nodes)
    finally:
        db.close()


def _kill_rounds(tmp_path, seed, rounds):
    generator = random.Random(seed)
    root = str(tmp_path)
    names = ["s0", "s1", "s2"]
    lines = _run_child(root, "load", seed, names)
    assert lines == ["loaded"]
    acknowledged = {i: b"load" for i in range(KEY_COUNT)}
    maybe: dict[int, bytes] = {}
    spare = [f"s{i}" for i in range(3, 3 + rounds)]
    killed_mid_move = 0
    for round_number in range(rounds):
        if round_number % 2 == 0 or len(names) <= 2:
            new = spare.pop(0)
            action, opened = f"add:{new}", names
            after = sorted(names + [new])
        else:
            victim = generator.choice(names)
            action, opened = f"remove:{victim}", names
            after = sorted(set(names) - {victim})
        lines = _run_child(
            root,
            action,
            generator.randrange(1 << 30),
            opened,
            kill_at=(generator.randrange(0, 300), generator.uniform(0.0, 0.9)),
        )
        if not _apply_output(lines, acknowledged, maybe):
            killed_mid_move += 1
        union = sorted(set(opened) | set(after))
        if generator.random() < 0.5:
            # Kill the resumed move too, at a random moment.
            _run_child(
                root,
                "resume",
                0,
                union,
                kill_after_seconds=generator.uniform(0.0, 0.3),
            )
        names = _verify(root, union, acknowledged, maybe)
        assert names == after
    return killed_mid_move


def test_kill_during_rebalance_loses_nothing(tmp_path):
    killed_mid_move = _kill_rounds(tmp_path, seed=20240601, rounds=4)
    assert killed_mid_move >= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_kill_during_rebalance_many_rounds(tmp_path, seed):
    killed_mid_move = _kill_rounds(tmp_path, seed=seed, rounds=8)
    assert killed_mid_move >= 1
