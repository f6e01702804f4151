"""Stateful property tests: every store kind against a plain dict model.

A hypothesis state machine applies random puts, deletes, batches, scans,
snapshots, flushes and (for durable kinds) reopens to a store and to a
dict, and checks that every read agrees. Keys come from a small alphabet
with 0x00 and 0xFF bytes, so overwrites, deletes of live keys and prefixes
ending in 0xFF are common.

``build_state_machine_test(kind_name)`` returns the unittest TestCase for
one kind, so that other test modules can run the same machine with their
own settings.
"""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from stores import KINDS, StoreKind

from storekit import WriteBatch
from storekit.store import Snapshot, Store

# -- strategies ---------------------------------------------------------------

#: Keys of up to three bytes over 0x00, 0x01 and 0xFF, plus a few fixed keys.
keys = st.one_of(
    st.lists(st.sampled_from([0x00, 0x01, 0xFF]), max_size=3).map(bytes),
    st.sampled_from([b"a", b"a,\x00", b"\xff\xff\xff\xff", b"\x01\xff\x00\x00"]),
)

#: Bounds and prefixes: keys, or None for no bound.
bounds = st.none() | keys

#: Mostly short values, sometimes empty, sometimes 3000 bytes so that the
#: durable kind checkpoints and a small LSM memtable is flushed to a table.
values = st.one_of(
    st.binary(max_size=6),
    st.sampled_from([b"", b"\x00", b"x" * 3000]),
)

operations = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), keys, values), max_size=8
)

MAX_OPEN_SNAPSHOTS = 3


def model_scan(
    model: dict[bytes, bytes],
    start: bytes | None,
    end: bytes | None,
    prefix: bytes | None,
    reverse: bool,
    keys_only: bool,
) -> list[object]:
    """Scan the dict model: start inclusive, end exclusive, prefix by startswith."""
    selected = []
    for key in sorted(model):
        if start is not None and key < start:
            continue
        if end is not None and key >= end:
            continue
        if prefix is not None and not key.startswith(prefix):
            continue
        selected.append(key if keys_only else (key, model[key]))
    if reverse:
        selected.reverse()
    return selected


# -- the state machine --------------------------------------------------------


class StoreModelMachine(RuleBasedStateMachine):
    """Compare one store of ``KIND`` with a dict after every rule."""

    KIND: StoreKind

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="storekit-model-"))
        self.path = self.directory / "db"
        self.store: Store = self.KIND.make(self.path)
        self.model: dict[bytes, bytes] = {}
        # Open snapshots, each with a copy of the model when it was taken.
        self.snapshots: list[tuple[Snapshot, dict[bytes, bytes]]] = []

    def teardown(self) -> None:
        try:
            for snap, _ in self.snapshots:
                snap.close()
            self.store.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- writes

    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        self.store.put(key, value)
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(ops=operations, use_context=st.booleans())
    def write_batch(
        self, ops: list[tuple[str, bytes, bytes]], use_context: bool
    ) -> None:
        if use_context:
            with self.store.batch() as batch:
                self._fill_batch(batch, ops)
        else:
            batch = WriteBatch()
            self._fill_batch(batch, ops)
            self.store.write(batch)
        for op, key, value in ops:
            if op == "put":
                self.model[key] = value
            else:
                self.model.pop(key, None)

    @staticmethod
    def _fill_batch(batch: WriteBatch, ops: list[tuple[str, bytes, bytes]]) -> None:
        for op, key, value in ops:
            if op == "put":
                batch.put(key, value)
            else:
                batch.delete(key)

    # -- reads

    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.store.get(key) == self.model.get(key)
        assert self.store.get(key, b"default") == self.model.get(key, b"default")

    @rule(key=keys)
    def contains(self, key: bytes) -> None:
        assert (key in self.store) == (key in self.model)

    @rule(
        start=bounds,
        end=bounds,
        prefix=bounds,
        reverse=st.booleans(),
        keys_only=st.booleans(),
    )
    def scan(
        self,
        start: bytes | None,
        end: bytes | None,
        prefix: bytes | None,
        reverse: bool,
        keys_only: bool,
    ) -> None:
        found = list(
            self.store.scan(
                start, end, prefix=prefix, reverse=reverse, keys_only=keys_only
            )
        )
        expected = model_scan(self.model, start, end, prefix, reverse, keys_only)
        assert found == expected

    # -- snapshots

    @precondition(lambda self: len(self.snapshots) < MAX_OPEN_SNAPSHOTS)
    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.store.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(
        data=st.data(),
        key=keys,
        start=bounds,
        end=bounds,
        prefix=bounds,
        reverse=st.booleans(),
        keys_only=st.booleans(),
    )
    def check_snapshot(
        self,
        data: st.DataObject,
        key: bytes,
        start: bytes | None,
        end: bytes | None,
        prefix: bytes | None,
        reverse: bool,
        keys_only: bool,
    ) -> None:
        index = data.draw(st.integers(0, len(self.snapshots) - 1), label="snapshot")
        snap, frozen = self.snapshots[index]
        assert snap.get(key) == frozen.get(key)
        assert (key in snap) == (key in frozen)
        # Keys written since the snapshot are where a stale view would show.
        for known in sorted(frozen.keys() | self.model.keys()):
            assert snap.get(known) == frozen.get(known), known
        found = list(
            snap.scan(start, end, prefix=prefix, reverse=reverse, keys_only=keys_only)
        )
        assert found == model_scan(frozen, start, end, prefix, reverse, keys_only)

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def close_snapshot(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.snapshots) - 1), label="snapshot")
        snap, _ = self.snapshots.pop(index)
        snap.close()

    # -- durability

    @rule()
    def flush(self) -> None:
        self.store.flush()

    @precondition(lambda self: self.KIND.durable)
    @rule()
    def reopen(self) -> None:
        for snap, _ in self.snapshots:
            snap.close()
        self.snapshots.clear()
        self.store = self.KIND.reopen(self.store, self.path)

    @invariant()
    def same_contents(self) -> None:
        assert len(self.store) == len(self.model)
        assert list(self.store.scan()) == sorted(self.model.items())
        for key, value in self.model.items():
            assert self.store.get(key) == value, key


def build_state_machine_test(
    kind_name: str,
    *,
    max_examples: int = 30,
    stateful_step_count: int = 30,
) -> type[unittest.TestCase]:
    """Return a TestCase that runs the model machine on the store kind ``kind_name``."""
    machine = type(
        f"{kind_name.title()}StoreModelMachine",
        (StoreModelMachine,),
        {"KIND": KINDS[kind_name]},
    )
    test_case = machine.TestCase
    test_case.settings = settings(
        max_examples=max_examples,
        stateful_step_count=stateful_step_count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return test_case


for _name in KINDS:
    _test_case = build_state_machine_test(_name)
    _test_case.__name__ = f"Test{_name.title()}StoreModel"
    _test_case.__qualname__ = _test_case.__name__
    globals()[_test_case.__name__] = _test_case
del _name, _test_case
