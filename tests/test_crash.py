"""Crash tests of the durable stores on CrashFS.

Every write in a run stores values tagged with the write's number, so the
state recovered after a crash identifies which prefix of the history
survived. Each round checks three things. Reopening succeeds. The state
equals the state after some prefix of the attempted writes, so there is no
hole and every batch is all or nothing. That prefix contains every
acknowledged write.
"""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storekit
from storekit.testing import CrashFS

KEYS = [b"k%d" % i for i in range(12)] + [b"", b"\x00", b"\xff\xff"]


def _open_durable(fs, sync):
    return storekit.DurableStore(
        "/db",
        fs=fs,
        sync=sync,
        checkpoint_bytes=4096,
        segment_bytes=4096,
        sync_interval=3600,
    )


def _open_lsm(fs, sync):
    from storekit.lsm import LSMStore

    return LSMStore("/db", fs=fs, sync=sync, memtable_bytes=2048, sync_interval=3600)


def _kinds():
    kinds = [pytest.param(_open_durable, id="durable")]
    try:
        from storekit.lsm import LSMStore  # noqa: F401
    except ImportError:
        pass
    else:
        kinds.append(pytest.param(_open_lsm, id="lsm"))
    return kinds


def _random_write(rng, number):
    ops = []
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        key = rng.choice(KEYS)
        if rng.random() < 0.2:
            ops.append(("delete", key, None))
        else:
            size = rng.choice((0, 5, 40, 300, 3000))
            ops.append(("put", key, b"w%d:" % number + bytes(size)))
    return ops


def _apply(state, ops):
    for kind, key, value in ops:
        if kind == "put":
            state[key] = value
        else:
            state.pop(key, None)


def _prefix_states(history):
    state: dict[bytes, bytes] = {}
    states = [dict(state)]
    for ops in history:
        _apply(state, ops)
        states.append(dict(state))
    return states


def _run(open_store, sync, seed, rounds=3):
    """Write, inject failures, crash and reopen ``rounds`` times; check each recovery."""
    rng = random.Random(seed)
    fs = CrashFS(seed=seed)
    fs.mkdir("/db")
    history: list[list] = []  # every write that was attempted and may have survived
    acknowledged = 0  # writes known durable: history[:acknowledged]
    db = open_store(fs, sync)
    for _ in range(rounds):
        if rng.random() < 0.5:
            op = rng.choice(("fsync", "write", "rename", "open"))
            fs.fail(
                op=op,
                at=rng.randrange(1, 8),
                errno=rng.choice((errno.EIO, errno.ENOSPC)),
            )
        failed = False
        for _ in range(rng.randrange(1, 40)):
            ops = _random_write(rng, len(history))
            batch = storekit.WriteBatch()
            for kind, key, value in ops:
                if kind == "put":
                    batch.put(key, value)
                else:
                    batch.delete(key)
            history.append(ops)
            try:
                db.write(batch)
            except (storekit.DurabilityError, OSError):
                # Not acknowledged, so it may or may not survive. A failed
                # WAL write or fsync makes the store reject later writes, as
                # test_failed_fsync_makes_later_writes_fail checks. A failed
                # LSM flush is retried instead, its writes kept in the WAL.
                failed = True
                break
            if sync == "always":
                acknowledged = len(history)
            if rng.random() < 0.1:
                try:
                    db.flush()
                except (storekit.DurabilityError, OSError):
                    failed = True
                    break
                acknowledged = len(history)
        report = fs.crash(
            rng.choice((None, "drop", "prefix", "torn", "lose_dir_entries"))
        )
        with pytest.raises(storekit.ClosedError):
            db.get(b"k1")
        fs.clear_failures()
        db = open_store(fs, sync)
        recovered = dict(db.scan())
        states = _prefix_states(history)
        matches = [k for k, state in enumerate(states) if state == recovered]
        assert matches, (
            f"seed {seed}: recovered state is no prefix of the history "
            f"({len(history)} writes, failed={failed}); crash report:\n{report}"
        )
        survived = max(matches)
        assert survived >= acknowledged, (
            f"seed {seed}: only {survived} writes survived but {acknowledged} were "
            f"acknowledged; crash report:\n{report}"
        )
        # Writes beyond the surviving prefix are gone for good: forget them.
        del history[survived:]
        acknowledged = len(history)
    db.close()


@pytest.mark.parametrize("open_store", _kinds())
@pytest.mark.parametrize("sync", ["always", "batch", "none"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_recovery_is_a_prefix_with_every_acknowledged_write(open_store, sync, seed):
    _run(open_store, sync, seed)


@pytest.mark.slow
@pytest.mark.parametrize("open_store", _kinds())
@pytest.mark.parametrize("sync", ["always", "batch"])
def test_recovery_long_run(open_store, sync):
    for seed in range(2000):
        _run(open_store, sync, seed, rounds=6)


@pytest.mark.parametrize("open_store", _kinds())
def test_failed_fsync_makes_later_writes_fail(open_store):
    fs = CrashFS(seed=7)
    fs.mkdir("/db")
    db = open_store(fs, "always")
    db.put(b"a", b"1")
    fs.fail(op="fsync", at=1, errno=errno.EIO)
    with pytest.raises(storekit.DurabilityError):
        db.put(b"b", b"2")
    # The failure is sticky: no later write is acknowledged, even though
    # the next fsync would succeed.
    for _ in range(3):
        with pytest.raises(storekit.DurabilityError):
            db.put(b"c", b"3")
    with pytest.raises(storekit.DurabilityError):
        db.flush()
    assert db.get(b"a") == b"1"
    fs.crash("drop")
    db = open_store(fs, "always")
    assert db.get(b"a") == b"1"
    assert db.get(b"c") is None
    db.put(b"d", b"4")
    assert db.get(b"d") == b"4"
    db.close()


@pytest.mark.parametrize("open_store", _kinds())
def test_crash_closes_old_store_objects(open_store):
    fs = CrashFS(seed=3)
    fs.mkdir("/db")
    db = open_store(fs, "always")
    db.put(b"a", b"1")
    iterator = db.scan()
    snapshot = db.snapshot()
    fs.crash()
    for call in (
        lambda: db.get(b"a"),
        lambda: db.put(b"b", b"2"),
        lambda: db.delete(b"a"),
        lambda: list(db.scan()),
        lambda: next(iterator),
        lambda: snapshot.get(b"a"),
        db.flush,
    ):
        with pytest.raises(storekit.ClosedError):
            call()
    db.close()
    db = open_store(fs, "always")
    assert db.get(b"a") == b"1"
    db.close()


def test_checkpoint_crash_between_rename_and_segment_removal():
    fs = CrashFS(seed=11)
    fs.mkdir("/db")
    db = _open_durable(fs, "always")
    for i in range(200):
        db.put(b"key%03d" % i, b"v%d" % i)
    # The checkpoint's directory fsync after removing old segments fails, so
    # the crash may bring the removed segments back.
    fs.fail(op="fsync", at=1, errno=errno.EIO)
    try:
        db.checkpoint()
    except (storekit.DurabilityError, OSError):
        pass
    fs.crash("lose_dir_entries")
    db = _open_durable(fs, "always")
    assert dict(db.scan()) == {b"key%03d" % i: b"v%d" % i for i in range(200)}
    db.close()
