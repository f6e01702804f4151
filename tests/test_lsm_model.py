"""LSMStore checked against MemoryStore by hypothesis state machines.

The memtable, tables and levels are tiny, so one example flushes, compacts
and reopens many times, with snapshots open across flushes and compactions.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storekit import MemoryStore, WriteBatch
from storekit.lsm import LSMStore
from storekit.testing import CRASH_MODES, CrashFS

TINY = {
    "memtable_bytes": 1024,
    "table_bytes": 1024,
    "block_size": 256,
    "level0_compaction_trigger": 2,
    "level1_bytes": 4096,
    "level_size_ratio": 2,
    "max_levels": 4,
    "block_cache_bytes": 16 * 1024,
    # Fewer than the tables these examples make, so readers are dropped
    # and reopened while scans and snapshots still use them.
    "max_open_tables": 3,
}

# A few fixed keys make overwrites and deletes of live keys common. The
# random ones cover empty keys, NUL bytes and keys that are prefixes of others.
keys = st.one_of(
    st.sampled_from(
        [b"a", b"ab", b"b", b"b\x00", b"c", b"k1", b"k2", b"\x00", b"\xff"]
    ),
    st.binary(max_size=3),
)
values = st.binary(max_size=48)
bounds = st.one_of(st.none(), keys)


class LSMModelMachine(RuleBasedStateMachine):
    """Every operation on the LSM store must match the reference store."""

    background = False
    sync = "batch"

    def __init__(self) -> None:
        super().__init__()
        self.fs = CrashFS(seed=0)
        self.model = MemoryStore()
        self.db = self.open_store()
        # (LSM snapshot, model snapshot) pairs
        self.snapshots: list[tuple] = []

    def open_store(self) -> LSMStore:
        return LSMStore(
            "/db", fs=self.fs, sync=self.sync, background=self.background, **TINY
        )

    def teardown(self) -> None:
        self.release_all_snapshots()
        self.db.close()

    def release_all_snapshots(self) -> None:
        for snapshot, model_snapshot in self.snapshots:
            snapshot.close()
            model_snapshot.close()
        self.snapshots.clear()

    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)
        self.model.put(key, value)

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.db.delete(key)
        self.model.delete(key)

    @rule(ops=st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=8))
    def write_batch(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        batch = WriteBatch()
        for key, value in ops:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)
        self.model.write(batch)

    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.db.get(key) == self.model.get(key)

    @rule(
        start=bounds,
        end=bounds,
        prefix=st.one_of(st.none(), keys),
        reverse=st.booleans(),
    )
    def scan(self, start, end, prefix, reverse) -> None:
        expected = list(self.model.scan(start, end, prefix=prefix, reverse=reverse))
        assert (
            list(self.db.scan(start, end, prefix=prefix, reverse=reverse)) == expected
        )

    @rule()
    def flush(self) -> None:
        self.db.flush()

    @rule(start=bounds, end=bounds)
    def compact(self, start, end) -> None:
        self.db.compact(start, end)

    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.db.snapshot(), self.model.snapshot()))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def check_snapshot(self, data) -> None:
        snapshot, model_snapshot = data.draw(st.sampled_from(self.snapshots))
        key = data.draw(keys)
        assert snapshot.get(key) == model_snapshot.get(key)
        reverse = data.draw(st.booleans())
        assert list(snapshot.scan(reverse=reverse)) == list(
            model_snapshot.scan(reverse=reverse)
        )

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def release_snapshot(self, data) -> None:
        index = data.draw(st.integers(0, len(self.snapshots) - 1))
        snapshot, model_snapshot = self.snapshots.pop(index)
        snapshot.close()
        model_snapshot.close()

    @rule()
    def reopen(self) -> None:
        self.release_all_snapshots()
        self.db.close()
        self.db = self.open_store()

    @invariant()
    def structure_is_consistent(self) -> None:
        self.db._check_invariants()


class LSMBackgroundMachine(LSMModelMachine):
    """The same model check with flushes and compactions in the background thread."""

    background = True


class LSMCrashMachine(LSMModelMachine):
    """With sync="always" every acknowledged write survives a crash."""

    sync = "always"

    @rule(mode=st.sampled_from(CRASH_MODES))
    def crash_and_reopen(self, mode: str) -> None:
        self.fs.crash(mode=mode)
        self.snapshots.clear()  # their store died with the crash
        self.db = self.open_store()
        assert list(self.db.scan()) == list(self.model.scan())


model_settings = settings(max_examples=25, stateful_step_count=60, deadline=None)

TestLSMModel = LSMModelMachine.TestCase
TestLSMModel.settings = model_settings
TestLSMBackground = LSMBackgroundMachine.TestCase
TestLSMBackground.settings = settings(
    max_examples=15, stateful_step_count=50, deadline=None
)
TestLSMCrash = LSMCrashMachine.TestCase
TestLSMCrash.settings = model_settings
