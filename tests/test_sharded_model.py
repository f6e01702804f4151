"""ShardedStore against a dict model, with shards added and removed mid-run.

A hypothesis state machine mixes puts, deletes, per-shard and cross-shard
batches, snapshots and scans with ``add_shard`` and ``remove_shard``
calls whose moves run in the background while the other steps go on. After
every step the store must read exactly like the model; at the end every
key must sit on its ring owner alone.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from storekit import MemoryStore, WriteBatch
from storekit.sharding import ShardedStore
from storekit.testing import CrashFS

KEYS = st.binary(min_size=0, max_size=3)
VALUES = st.binary(max_size=8)
NAMES = [f"s{i}" for i in range(6)]


class ShardedMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        shards = {name: MemoryStore() for name in NAMES[:2]}
        fs = CrashFS(seed=0)
        self.db = ShardedStore(shards, path="/map", fs=fs, move_chunk_keys=2)
        self.model: dict[bytes, bytes] = {}
        self.moves = []
        self.snapshots: list[tuple[object, dict[bytes, bytes]]] = []

    def apply_to_model(self, batch: WriteBatch) -> None:
        for _kind, key, value in batch:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value

    @rule(key=KEYS, value=VALUES)
    def put(self, key, value):
        self.db.put(key, value)
        self.model[key] = value

    @rule(key=KEYS)
    def delete(self, key):
        self.db.delete(key)
        self.model.pop(key, None)

    @rule(
        ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), max_size=6),
        atomic=st.booleans(),
    )
    def write_batch(self, ops, atomic):
        batch = WriteBatch()
        for key, value in ops:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch, atomic=atomic)
        self.apply_to_model(batch)

    @rule(key=KEYS)
    def get(self, key):
        assert self.db.get(key) == self.model.get(key)

    @rule(
        start=st.one_of(st.none(), KEYS),
        end=st.one_of(st.none(), KEYS),
        reverse=st.booleans(),
    )
    def scan_range(self, start, end, reverse):
        expected = sorted(
            (key, value)
            for key, value in self.model.items()
            if (start is None or key >= start) and (end is None or key < end)
        )
        if reverse:
            expected.reverse()
        assert list(self.db.scan(start, end, reverse=reverse)) == expected

    @precondition(lambda self: len(self.db.ring) < len(NAMES))
    @rule(data=st.data(), weight=st.integers(min_value=1, max_value=3))
    def add_shard(self, data, weight):
        # Draw from the ring, which changes only in these rules, so that the
        # draws do not depend on how far the background moves got.
        free = [name for name in NAMES if name not in self.db.ring]
        name = data.draw(st.sampled_from(free))
        if name in self.db.shards:
            self.wait_for_moves()  # its removal has not finished yet
        self.moves.append(self.db.add_shard(name, MemoryStore(), weight))

    @precondition(lambda self: len(self.db.ring) > 1)
    @rule(data=st.data())
    def remove_shard(self, data):
        name = data.draw(st.sampled_from(sorted(self.db.ring.nodes)))
        self.moves.append(self.db.remove_shard(name))

    @rule()
    def wait_for_moves(self):
        for move in self.moves:
            assert move.wait(30)
        self.moves = []
        assert self.db.pending_moves == []

    @precondition(lambda self: len(self.snapshots) < 2)
    @rule()
    def take_snapshot(self):
        self.snapshots.append((self.db.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(key=KEYS)
    def check_snapshot(self, key):
        snapshot, expected = self.snapshots.pop(0)
        assert snapshot.get(key) == expected.get(key)
        assert dict(snapshot.scan()) == expected
        snapshot.close()

    @invariant()
    def reads_match_model(self):
        assert dict(self.db.scan()) == self.model

    def teardown(self):
        for move in self.moves:
            assert move.wait(30)
        for snapshot, _ in self.snapshots:
            snapshot.close()
        ring = self.db.ring
        for name, store in self.db.shards.items():
            for key in store.scan(keys_only=True):
                assert ring.node_for(key) == name
        assert dict(self.db.scan()) == self.model
        self.db.close()


ShardedMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
test_sharded_store_matches_model = ShardedMachine.TestCase
