"""ShardedStore: routing, scans, snapshots, batches and moves over real stores.

Shards are MemoryStore objects, or DurableStore objects on a CrashFS when
a test crashes the file system. Placement is checked by reading every shard
directly: after a move each key must sit on exactly the shard its ring
owner names.
"""

from __future__ import annotations

import doctest
import json
import random
import threading
import time
from pathlib import Path

import pytest

from storekit import (
    ClosedError,
    CorruptionError,
    DurabilityError,
    LockedError,
    MemoryStore,
    WriteBatch,
    sharding,
)
from storekit.durable import DurableStore
from storekit.sharding import HashRing, ShardedStore
from storekit.testing import CrashFS

try:
    from storekit.lsm import LSMStore
except ImportError:  # a checkout without the LSM engine tests DurableStore only
    LSMStore = None

#: Durable engines used as shards in the crash tests.
ENGINES = ["durable"] if LSMStore is None else ["durable", "lsm"]


class FailingStore(MemoryStore):
    """A MemoryStore whose next ``fail_writes`` writes raise DurabilityError."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_writes = 0

    def _log_write(self, ops, first_sequence):
        if self.fail_writes:
            self.fail_writes -= 1
            raise DurabilityError("injected write failure")


class PausingStore(FailingStore):
    """A FailingStore whose first flush blocks until ``resume`` is set.

    The mover flushes every shard between copying keys and deleting the old
    copies, so pausing a flush stops a move between those two steps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paused = threading.Event()
        self.resume = threading.Event()
        self._pause_next = True

    def flush(self) -> None:
        if self._pause_next:
            self._pause_next = False
            self.paused.set()
            assert self.resume.wait(30)
        super().flush()


def memory_shards(names="abc") -> dict[str, MemoryStore]:
    return {name: MemoryStore() for name in names}


def shard_contents(db: ShardedStore) -> dict[str, dict[bytes, bytes]]:
    return {name: dict(store.scan()) for name, store in db.shards.items()}


def assert_placed_by_ring(db: ShardedStore) -> None:
    """Every key sits on its ring owner and on no other shard."""
    ring = db.ring
    seen: dict[bytes, str] = {}
    for name, contents in shard_contents(db).items():
        for key in contents:
            assert ring.node_for(key) == name, (key, name)
            assert key not in seen, (key, seen.get(key), name)
            seen[key] = name


def keys_on(ring: HashRing, node: str, count: int, prefix: bytes = b"k") -> list[bytes]:
    found = []
    i = 0
    while len(found) < count:
        key = prefix + b"%d" % i
        if ring.node_for(key) == node:
            found.append(key)
        i += 1
    return found


# -- the Store interface ----------------------------------------------------------


def test_sharded_routes_keys_to_ring_owner():
    db = ShardedStore(memory_shards("abcd"))
    for i in range(2000):
        db.put(b"key-%d" % i, b"value-%d" % i)
    assert_placed_by_ring(db)
    sizes = [len(contents) for contents in shard_contents(db).values()]
    assert sum(sizes) == 2000
    assert min(sizes) > 300
    assert db.get(b"key-7") == b"value-7"
    assert db[b"key-8"] == b"value-8"
    assert b"key-9" in db
    assert db.get(b"missing") is None
    assert db.get(b"missing", b"dflt") == b"dflt"
    with pytest.raises(KeyError):
        db[b"missing"]
    db.delete(b"key-7")
    db.delete(b"never-there")
    assert db.get(b"key-7") is None
    del db[b"key-8"]
    with pytest.raises(KeyError):
        del db[b"key-8"]
    assert len(db) == 1998


def test_sharded_rejects_bad_arguments():
    db = ShardedStore(memory_shards())
    with pytest.raises(TypeError, match="key must be bytes"):
        db.put("text", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value must be bytes"):
        db.put(b"k", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
        db.get(b"k" * (64 * 1024 + 1))
    with pytest.raises(TypeError, match="batch must be a WriteBatch"):
        db.write([(1, b"k", b"v")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the coordinator log"):
        db.write(WriteBatch(), atomic=True)
    with pytest.raises(ValueError, match="at least one shard"):
        ShardedStore({})
    with pytest.raises(TypeError, match="must be a storekit Store"):
        ShardedStore({"a": {}})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="shard names"):
        ShardedStore({1: MemoryStore()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="differ from shard names"):
        ShardedStore(memory_shards("ab"), ring=HashRing(["a", "c"]))
    with pytest.raises(ValueError, match="move_chunk_keys"):
        ShardedStore(memory_shards("ab"), move_chunk_keys=0)
    with pytest.raises(ValueError, match="move_flush_bytes"):
        ShardedStore(memory_shards("ab"), move_flush_bytes=-1)
    with pytest.raises(ValueError, match="pass path= too"):
        ShardedStore(memory_shards("ab"), fs=CrashFS(seed=1))


def test_sharded_rejects_one_store_twice():
    # Removing one name would move its keys into the same store and then
    # delete the old copies, which are the only ones.
    shared = MemoryStore()
    with pytest.raises(ValueError, match="'a' and 'b' are the same store"):
        ShardedStore({"a": shared, "b": shared})
    db = ShardedStore({"a": shared})
    with pytest.raises(ValueError, match="already shard 'a'"):
        db.add_shard("b", shared)
    assert set(db.ring.nodes) == {"a"}


def test_sharded_empty_value_and_nul_keys():
    db = ShardedStore(memory_shards())
    db.put(b"a,\x00", b"1")
    db.put(b"a,", b"2")
    db.put(b"\x00", b"3")
    db.put(b"\x00\x00", b"4")
    db.put(b"k1", b"")
    with db.batch() as batch:
        batch.put(b"k2", b"")
    assert db.get(b"a,\x00") == b"1"
    assert db.get(b"a,") == b"2"
    assert db.get(b"\x00") == b"3"
    assert db.get(b"\x00\x00") == b"4"
    assert db.get(b"k1") == b""
    assert db.get(b"k2") == b""
    assert b"k1" in db
    assert list(db.scan()) == [
        (b"\x00", b"3"),
        (b"\x00\x00", b"4"),
        (b"a,", b"2"),
        (b"a,\x00", b"1"),
        (b"k1", b""),
        (b"k2", b""),
    ]
    db.delete(b"k1")
    assert db.get(b"k1") is None
    assert db.get(b"k2") == b""


def test_sharded_scan_matches_model():
    generator = random.Random(7)
    db = ShardedStore(memory_shards("abcde"))
    model = MemoryStore()
    for _ in range(1500):
        key = bytes(generator.randrange(256) for _ in range(generator.randrange(1, 4)))
        value = b"v%d" % generator.randrange(1000)
        db.put(key, value)
        model.put(key, value)
    for _ in range(300):
        key = bytes(generator.randrange(256) for _ in range(generator.randrange(1, 4)))
        db.delete(key)
        model.delete(key)
    cases = [{}]
    for _ in range(20):
        a = bytes([generator.randrange(256)])
        b = bytes([generator.randrange(256)])
        low, high = min(a, b), max(a, b)
        cases.append({"start": low, "end": high})
        cases.append({"start": low})
        cases.append({"end": high})
        cases.append({"prefix": a})
        cases.append({"prefix": a, "start": a + b"\x80"})
    for case in cases:
        for reverse in (False, True):
            expected = list(model.scan(**case, reverse=reverse))
            assert list(db.scan(**case, reverse=reverse)) == expected, case
            keys = list(db.scan(**case, reverse=reverse, keys_only=True))
            assert keys == [key for key, _ in expected], case


def test_sharded_scan_ignores_later_writes():
    db = ShardedStore(memory_shards())
    for i in range(100):
        db.put(b"k%03d" % i, b"old")
    iterator = db.scan()
    first = next(iterator)
    for i in range(100):
        db.put(b"k%03d" % i, b"new")
    db.put(b"k500", b"new")
    rest = list(iterator)
    assert first == (b"k000", b"old")
    assert len(rest) == 99
    assert all(value == b"old" for _, value in rest)


def test_sharded_scan_hides_keys_on_wrong_shard():
    shards = memory_shards()
    db = ShardedStore(shards)
    ring = db.ring
    key = keys_on(ring, "a", 1)[0]
    db.put(key, b"routed")
    shards["b"].put(key, b"stray")
    stray_only = keys_on(ring, "a", 2, prefix=b"s")[1]
    shards["c"].put(stray_only, b"stray")
    assert db.get(key) == b"routed"
    assert list(db.scan()) == [(key, b"routed")]
    assert db.get(stray_only) is None


def test_sharded_snapshot_is_stable():
    db = ShardedStore(memory_shards())
    for i in range(200):
        db.put(b"k%03d" % i, b"v1")
    snapshot = db.snapshot()
    for i in range(200):
        db.put(b"k%03d" % i, b"v2")
    db.delete(b"k000")
    db.put(b"new", b"v2")
    assert snapshot.get(b"k000") == b"v1"
    assert snapshot.get(b"new") is None
    assert b"k001" in snapshot
    items = list(snapshot.scan())
    assert len(items) == 200
    assert all(value == b"v1" for _, value in items)
    assert list(snapshot.scan(b"k010", b"k013", reverse=True, keys_only=True)) == [
        b"k012",
        b"k011",
        b"k010",
    ]
    snapshot.close()
    snapshot.close()
    with pytest.raises(ClosedError):
        snapshot.get(b"k001")
    assert db.get(b"k001") == b"v2"


def test_sharded_write_splits_batch_per_shard():
    db = ShardedStore(memory_shards())
    ring = db.ring
    batch = WriteBatch()
    keys = [keys_on(ring, name, 3, prefix=name.encode()) for name in "abc"]
    for group in keys:
        for key in group:
            batch.put(key, b"first")
    batch.put(keys[0][0], b"second")
    batch.delete(keys[1][0])
    db.write(batch)
    assert db.get(keys[0][0]) == b"second"
    assert db.get(keys[1][0]) is None
    assert db.get(keys[2][2]) == b"first"
    assert_placed_by_ring(db)
    with db.batch() as context:
        context.put(b"inside", b"1")
    assert db.get(b"inside") == b"1"
    with pytest.raises(RuntimeError):
        with db.batch() as context:
            context.put(b"never", b"1")
            raise RuntimeError("abort the block")
    assert db.get(b"never") is None


def test_sharded_closed_store_raises():
    db = ShardedStore(memory_shards())
    db.put(b"k", b"v")
    db.close()
    db.close()
    assert db.closed
    for call in (
        lambda: db.get(b"k"),
        lambda: db.put(b"k", b"v"),
        lambda: db.delete(b"k"),
        lambda: db.write(WriteBatch()),
        lambda: list(db.scan()),
        lambda: db.snapshot(),
        lambda: db.stats(),
        lambda: db.add_shard("z", MemoryStore()),
        lambda: db.remove_shard("a"),
    ):
        with pytest.raises(ClosedError):
            call()


# -- atomic batches -----------------------------------------------------------------


def test_sharded_atomic_batch_spans_shards(tmp_path):
    db = ShardedStore(memory_shards(), path=str(tmp_path / "map"))
    ring = db.ring
    batch = WriteBatch()
    for name in "abc":
        batch.put(keys_on(ring, name, 1, prefix=name.encode())[0], b"all")
    db.write(batch, atomic=True)
    for _kind, key, _ in batch:
        assert db.get(key) == b"all"
    stats = db.stats()
    assert stats["atomic_batches"] == 1
    assert stats["coordinator"]["committed"] == 1
    # One fsync for the intent and one for the commit.
    assert stats["coordinator"]["wal"]["fsyncs"] >= 2
    db.close()


def test_sharded_atomic_batch_finished_after_crash():
    fs = CrashFS(seed=3)
    shards = {name: FailingStore() for name in "abc"}
    db = ShardedStore(shards, path="/map", fs=fs)
    ring = db.ring
    first = keys_on(ring, "a", 1, prefix=b"a")[0]
    second = keys_on(ring, "b", 1, prefix=b"b")[0]
    third = keys_on(ring, "c", 1, prefix=b"c")[0]
    db.put(second, b"before")
    batch = WriteBatch()
    batch.put(first, b"batch")
    batch.put(second, b"batch")
    batch.delete(third)
    db.put(third, b"before")
    shards["b"].fail_writes = 1
    with pytest.raises(DurabilityError, match="reopen the ShardedStore"):
        db.write(batch, atomic=True)
    # Half applied in this process: shard a took its part, shard b did not.
    assert shards["a"].get(first) == b"batch"
    assert shards["b"].get(second) == b"before"
    with pytest.raises(DurabilityError, match="failed earlier"):
        db.put(b"other", b"x")

    fs.crash(mode="drop")
    with pytest.raises(ClosedError):
        db.get(first)
    reopened = ShardedStore(shards, path="/map", fs=fs)
    assert reopened.get(first) == b"batch"
    assert reopened.get(second) == b"batch"
    assert reopened.get(third) is None
    assert reopened.stats()["recovered_batches"] == 1
    reopened.put(b"other", b"x")


@pytest.mark.parametrize("seed", range(12))
def test_sharded_atomic_batches_survive_fsync_failure(seed):
    generator = random.Random(seed)
    fs = CrashFS(seed=seed)
    names = "abc"

    def open_all():
        shards = {n: DurableStore(f"/shards/{n}", fs=fs, sync="always") for n in names}
        return ShardedStore(shards, path="/map", fs=fs)

    db = open_all()
    model: dict[bytes, bytes] = {}
    failed: WriteBatch | None = None
    fail_at = generator.randrange(5, 25)
    for number in range(30):
        batch = WriteBatch()
        for _ in range(generator.randrange(2, 5)):
            key = b"key-%d" % generator.randrange(40)
            if generator.random() < 0.2:
                batch.delete(key)
            else:
                batch.put(key, b"batch-%d" % number)
        if number == fail_at:
            fs.fail("fsync", at=generator.randrange(1, 6))
        try:
            db.write(batch, atomic=True)
        except DurabilityError:
            failed = batch
            break
        for _kind, key, value in batch:
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    fs.clear_failures()
    fs.crash(mode=generator.choice(["drop", "prefix", "torn", "lose_dir_entries"]))

    db = open_all()
    recovered = dict(db.scan())
    assert failed is not None, "the injected fsync failure never fired"
    applied = dict(model)
    for _kind, key, value in failed:
        if value is None:
            applied.pop(key, None)
        else:
            applied[key] = value
    # All or nothing: the failed batch is either entirely there or not at all.
    assert recovered in (model, applied)
    db.close()


def test_sharded_atomic_batch_reopen_cleans_log():
    fs = CrashFS(seed=9)
    shards = memory_shards()
    db = ShardedStore(shards, path="/map", fs=fs)
    for number in range(20):
        batch = WriteBatch()
        batch.put(b"x-%d" % number, b"1")
        batch.put(b"y-%d" % number, b"2")
        db.write(batch, atomic=True)
    fs.crash(mode="drop")
    reopened = ShardedStore(shards, path="/map", fs=fs)
    assert reopened.stats()["recovered_batches"] == 0
    assert len(reopened) == 40
    segments = [
        name for name in fs.listdir("/map/coordinator") if name.endswith(".wal")
    ]
    assert len(segments) == 1
    assert reopened.stats()["coordinator"]["wal"]["segments"] == 1


# -- path handling --------------------------------------------------------------------


def test_sharded_path_lock_and_shard_checks(tmp_path):
    path = str(tmp_path / "map")
    db = ShardedStore(memory_shards(), path=path)
    with pytest.raises(LockedError):
        ShardedStore(memory_shards(), path=path)
    db.close()
    with pytest.raises(ValueError, match="missing: \\['c'\\]"):
        ShardedStore(memory_shards("ab"), path=path)
    with pytest.raises(ValueError, match="not in the map: \\['d'\\]"):
        ShardedStore(memory_shards("abcd"), path=path)
    with pytest.raises(ValueError, match="vnodes=40"):
        ShardedStore(memory_shards(), ring=HashRing(list("abc"), vnodes=40), path=path)
    reopened = ShardedStore(memory_shards(), path=path)
    assert reopened.ring.nodes == {"a": 1, "b": 1, "c": 1}
    reopened.close()


def test_sharded_path_keeps_ring_settings(tmp_path):
    path = str(tmp_path / "map")
    ring = HashRing({"a": 2, "b": 1}, vnodes=40, hash="ketama")
    db = ShardedStore(memory_shards("ab"), ring=ring, path=path)
    db.close()
    reopened = ShardedStore(memory_shards("ab"), path=path)
    assert reopened.ring.nodes == {"a": 2, "b": 1}
    assert reopened.ring.hash_name == "ketama"
    assert reopened.ring.points == ring.points
    reopened.close()


def test_sharded_path_keeps_slots_and_rejects_other_settings(tmp_path):
    path = str(tmp_path / "map")
    ring = HashRing(["a", "b"], slots=1024)
    db = ShardedStore(memory_shards("ab"), ring=ring, path=path)
    db.close()
    reopened = ShardedStore(memory_shards("ab"), path=path)
    assert reopened.ring.slots == 1024
    assert reopened.stats()["ring"]["slots"] == 1024
    reopened.close()
    with pytest.raises(ValueError, match="slots=65536 but the shard map .* slots=1024"):
        ShardedStore(memory_shards("ab"), ring=HashRing(["a", "b"]), path=path)


def test_sharded_reads_version_1_map_as_classic_ring(tmp_path):
    # A version 1 map has no "slots" key; its rings were classic rings.
    path = tmp_path / "map"
    path.mkdir()
    document = {
        "vnodes": 160,
        "hash": "xxh3",
        "rings": [{"version": 1, "nodes": {"a": 1, "b": 1}, "change": None}],
        "released": [],
    }
    _write_map(path, 1, document)
    db = ShardedStore(memory_shards("ab"), path=str(path))
    assert db.ring.slots is None
    classic = HashRing(["a", "b"], slots=None)
    keys = [b"key-%d" % i for i in range(2000)]
    assert all(db.ring.node_for(key) == classic.node_for(key) for key in keys)
    # A change rewrites the map as version 2, and the ring stays classic.
    shards = memory_shards("abc")
    db.add_shard("c", shards["c"]).wait(timeout=30)
    db.close()
    assert (path / "SHARDS").read_bytes()[8:12] == (2).to_bytes(4, "little")
    reopened = ShardedStore(shards, path=str(path))
    assert reopened.ring.slots is None
    assert reopened.ring.nodes == {"a": 1, "b": 1, "c": 1}
    reopened.close()


def _write_map(path: Path, version: int, document: dict) -> None:
    from storekit._backend import framing

    header = b"SKSHARDS" + version.to_bytes(4, "little")
    payload = json.dumps(document).encode()
    (path / "SHARDS").write_bytes(header + framing.frame(payload, len(header)))


def test_sharded_map_version_flip_raises(tmp_path):
    path = tmp_path / "map"
    ShardedStore(memory_shards("ab"), path=str(path)).close()
    data = bytearray((path / "SHARDS").read_bytes())
    assert data[8] == 2
    data[8] = 1  # the header is outside the checksummed record
    (path / "SHARDS").write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="SHARDS") as caught:
        ShardedStore(memory_shards("ab"), path=str(path))
    assert caught.value.path.endswith("SHARDS")


@pytest.mark.parametrize(
    "change",
    [
        {"slots": 3},
        {"hash": "ketama", "slots": 256},
        {"vnodes": 0},
        {"hash": "bogus", "slots": None},
        {"rings": [{"version": 1, "nodes": {"a": 0, "b": 1}, "change": None}]},
    ],
    ids=["slots", "ketama-slots", "vnodes", "hash", "weight"],
)
def test_sharded_map_invalid_settings_raise(tmp_path, change):
    path = tmp_path / "map"
    path.mkdir()
    document = {
        "vnodes": 160,
        "hash": "xxh3",
        "slots": 1024,
        "rings": [{"version": 1, "nodes": {"a": 1, "b": 1}, "change": None}],
        "released": [],
    }
    _write_map(path, 2, {**document, **change})
    with pytest.raises(CorruptionError, match="invalid ring settings") as caught:
        ShardedStore(memory_shards("ab"), path=str(path))
    assert caught.value.path.endswith("SHARDS")


def test_sharded_custom_hash_needs_ring_on_reopen(tmp_path):
    path = str(tmp_path / "map")

    def custom(data: bytes) -> int:
        return int.from_bytes(data[-8:].rjust(8, b"\0"), "big") * 7919 % (1 << 61)

    ShardedStore(
        memory_shards("ab"), ring=HashRing(["a", "b"], hash=custom), path=path
    ).close()
    with pytest.raises(ValueError, match="custom hash function"):
        ShardedStore(memory_shards("ab"), path=path)
    ShardedStore(
        memory_shards("ab"), ring=HashRing(["a", "b"], hash=custom), path=path
    ).close()


def test_sharded_damaged_shard_map_raises(tmp_path):
    path = tmp_path / "map"
    ShardedStore(memory_shards(), path=str(path)).close()
    data = bytearray((path / "SHARDS").read_bytes())
    data[-3] ^= 0xFF
    (path / "SHARDS").write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="SHARDS") as caught:
        ShardedStore(memory_shards(), path=str(path))
    assert caught.value.path.endswith("SHARDS")


# -- moves ------------------------------------------------------------------------------


def fill(db: ShardedStore, count: int, tag: bytes = b"v") -> dict[bytes, bytes]:
    model = {}
    for i in range(count):
        key = b"key-%05d" % i
        value = tag + b"-%d" % i
        db.put(key, value)
        model[key] = value
    return model


def test_add_shard_moves_exactly_changed_keys():
    db = ShardedStore(memory_shards("abc"))
    model = fill(db, 3000)
    ring = db.ring
    before = {key: ring.node_for(key) for key in model}
    move = db.add_shard("d", MemoryStore())
    assert move.kind == "add"
    assert move.node == "d"
    assert move.wait(30)
    assert move.done
    assert move.progress == 1.0
    after_ring = db.ring
    changed = [key for key in model if after_ring.node_for(key) != before[key]]
    assert all(after_ring.node_for(key) == "d" for key in changed)
    assert 0.15 <= len(changed) / len(model) <= 0.35
    stats = db.stats()
    assert stats["keys_moved"] == len(changed)
    assert stats["shards"]["d"]["keys_moved_in"] == len(changed)
    assert stats["moves_pending"] == 0
    assert stats["ring"]["rings_in_effect"] == 1
    assert sum(s["keys_moved_out"] for s in stats["shards"].values()) == len(changed)
    assert_placed_by_ring(db)
    assert dict(db.scan()) == model


def test_remove_shard_moves_only_its_keys():
    db = ShardedStore(memory_shards("abcd"))
    model = fill(db, 3000)
    ring = db.ring
    on_b = {key for key in model if ring.node_for(key) == "b"}
    removed_store = db.shards["b"]
    move = db.remove_shard("b")
    assert move.wait(30)
    assert move.store is removed_store
    assert sorted(db.shards) == ["a", "c", "d"]
    assert db.stats()["keys_moved"] == len(on_b)
    assert list(removed_store.scan()) == []
    assert_placed_by_ring(db)
    assert dict(db.scan()) == model


def test_move_errors_are_clear():
    db = ShardedStore(memory_shards("ab"))
    full = MemoryStore()
    full.put(b"x", b"1")
    with pytest.raises(ValueError, match="not empty"):
        db.add_shard("c", full)
    with pytest.raises(ValueError, match="already in the store"):
        db.add_shard("a", MemoryStore())
    with pytest.raises(KeyError, match="'zz' is not in the ring"):
        db.remove_shard("zz")
    db.remove_shard("a").wait(10)
    with pytest.raises(ValueError, match="last shard"):
        db.remove_shard("b")
    with pytest.raises(TypeError, match="storekit Store"):
        db.add_shard("c", {})  # type: ignore[arg-type]


def test_overlapping_moves_end_consistent():
    db = ShardedStore(memory_shards("abc"), move_chunk_keys=16)
    model = fill(db, 2000)
    moves = [db.add_shard("d", MemoryStore()), db.add_shard("e", MemoryStore(), 2)]
    for i in range(0, 2000, 7):
        key = b"key-%05d" % i
        db.put(key, b"updated")
        model[key] = b"updated"
    moves.append(db.remove_shard("a"))
    for i in range(0, 2000, 11):
        key = b"key-%05d" % i
        db.delete(key)
        model.pop(key, None)
    assert dict(db.scan()) == model
    for move in moves:
        assert move.wait(30)
    assert db.pending_moves == []
    assert sorted(db.shards) == ["b", "c", "d", "e"]
    assert_placed_by_ring(db)
    assert dict(db.scan()) == model
    assert db.ring.nodes == {"b": 1, "c": 1, "d": 1, "e": 2}


def test_reads_during_move_never_old_or_missing():
    db = ShardedStore(memory_shards("abc"), move_chunk_keys=8)
    count = 6000
    for i in range(count):
        db.put(b"key-%05d" % i, b"0")
    acknowledged = [0] * count
    errors: list[str] = []
    stop = threading.Event()

    def writer():
        generator = random.Random(1)
        while not stop.is_set():
            i = generator.randrange(count)
            version = acknowledged[i] + 1
            db.put(b"key-%05d" % i, b"%d" % version)
            acknowledged[i] = version

    def reader(seed):
        generator = random.Random(seed)
        while not stop.is_set():
            i = generator.randrange(count)
            floor = acknowledged[i]
            value = db.get(b"key-%05d" % i)
            if value is None:
                errors.append(f"key-{i:05d} missing")
            elif int(value) < floor:
                errors.append(f"key-{i:05d} read {value!r} after {floor} was written")

    def scanner():
        while not stop.is_set():
            floors = list(acknowledged)
            items = list(db.scan(b"key-01000", b"key-01500"))
            if len(items) != 500:
                errors.append(f"scan returned {len(items)} of 500 keys")
            for key, value in items:
                i = int(key[4:])
                if int(value) < floors[i]:
                    errors.append(f"scan read {key!r}={value!r} after {floors[i]}")

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    threads.append(threading.Thread(target=scanner))
    for thread in threads:
        thread.start()
    try:
        moves = [db.add_shard("d", MemoryStore())]
        time.sleep(0.05)
        moves.append(db.remove_shard("b"))
        for move in moves:
            assert move.wait(60)
        time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert_placed_by_ring(db)
    for i in range(count):
        assert db.get(b"key-%05d" % i) == b"%d" % acknowledged[i]


def test_move_wait_raises_when_store_closes():
    db = ShardedStore(memory_shards("abc"), move_chunk_keys=1)
    fill(db, 3000)
    move = db.add_shard("d", MemoryStore())
    assert move.wait(0) in (False, True)
    db.close()
    if not move.done:
        with pytest.raises(ClosedError, match="reopen"):
            move.wait(5)


# -- crashes during moves ------------------------------------------------------------


def _open_shard(engine, fs, name, sync):
    if engine == "lsm":
        return LSMStore(f"/shards/{name}", fs=fs, sync=sync, memtable_bytes=4096)
    return DurableStore(f"/shards/{name}", fs=fs, sync=sync)


def _open_durable(fs, names, sync, engine="durable", **options):
    shards = {name: _open_shard(engine, fs, name, sync) for name in names}
    return ShardedStore(shards, path="/map", fs=fs, **options)


def _check_clone(clone, names, expected, engine):
    db = _open_durable(clone, names, "none", engine)
    for move in db.pending_moves:
        assert move.wait(30)
    assert dict(db.scan()) == expected
    assert_placed_by_ring(db)
    db.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["add", "remove"])
@pytest.mark.parametrize("seed", range(3))
def test_move_survives_crash_at_any_point(engine, kind, seed):
    # Shards fsync only on flush, so only the move's own flushes keep
    # copied keys: a crash at any moment must still lose nothing.
    generator = random.Random(seed)
    fs = CrashFS(seed=seed)
    db = _open_durable(
        fs, "abc", "none", engine, move_chunk_keys=8, move_flush_bytes=256
    )
    model = fill(db, 800)
    db.flush()
    if kind == "add":
        move = db.add_shard("d", _open_shard(engine, fs, "d", "none"))
        names_after = "abcd"
    else:
        move = db.remove_shard("b")
        names_after = "abc"
    clones = []
    while not move.done:
        clones.append(fs.clone(mode=generator.choice(["drop", "prefix", "torn"])))
        time.sleep(generator.uniform(0, 0.01))
    assert move.wait(30)
    clones.append(fs.clone(mode="lose_dir_entries"))
    assert len(clones) >= 2
    for clone in clones[:: max(1, len(clones) // 8)]:
        _check_clone(clone, names_after, model, engine)
    db.close()


def test_move_crash_with_writes_keeps_acknowledged():
    generator = random.Random(11)
    fs = CrashFS(seed=11)
    db = _open_durable(fs, "abc", "always", move_chunk_keys=8)
    model = fill(db, 400)
    move = db.add_shard("d", DurableStore("/shards/d", fs=fs, sync="always"))
    checkpoints = []
    number = 0
    while not move.done or number < 50:
        key = b"key-%05d" % generator.randrange(500)
        if generator.random() < 0.25:
            db.delete(key)
            model.pop(key, None)
        else:
            db.put(key, b"w-%d" % number)
            model[key] = b"w-%d" % number
        number += 1
        if number % 10 == 0:
            checkpoints.append((fs.clone(mode="drop"), dict(model)))
    assert move.wait(30)
    for clone, expected in checkpoints[:: max(1, len(checkpoints) // 6)]:
        reopened = {n: DurableStore(f"/shards/{n}", fs=clone) for n in "abcd"}
        sharded = ShardedStore(reopened, path="/map", fs=clone)
        for pending in sharded.pending_moves:
            assert pending.wait(30)
        assert dict(sharded.scan()) == expected
        assert_placed_by_ring(sharded)
        sharded.close()
    db.close()


def test_crash_stops_old_store_and_reopen_resumes():
    fs = CrashFS(seed=5)
    db = _open_durable(fs, "abc", "always", move_chunk_keys=1)
    model = fill(db, 600)
    move = db.add_shard("d", DurableStore("/shards/d", fs=fs, sync="always"))
    fs.crash(mode="drop")
    if not move.done:
        with pytest.raises(ClosedError):
            move.wait(10)
    with pytest.raises(ClosedError):
        db.put(b"k", b"v")
    reopened = _open_durable(fs, "abcd", "always")
    for pending in reopened.pending_moves:
        assert pending.wait(30)
    assert reopened.ring.nodes == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert dict(reopened.scan()) == model
    assert_placed_by_ring(reopened)
    reopened.close()


# -- moves interrupted between copy and clean-up ----------------------------------


def test_move_cleanup_keeps_key_after_ring_change():
    db = ShardedStore(
        memory_shards("abc"), move_chunk_keys=16, move_flush_bytes=1 << 30
    )
    model = fill(db, 2000)
    d_store = PausingStore()
    first = db.add_shard("d", d_store)
    assert d_store.paused.wait(30)
    # Every key for d is copied; none is deleted from its old shard yet.
    ring_with_e = db.ring
    ring_with_e.add("e")
    on_d = [key for key in model if db.ring.node_for(key) == "d"]
    to_e = [key for key in on_d if ring_with_e.node_for(key) == "e"]
    assert to_e
    second = db.add_shard("e", MemoryStore())
    d_store.resume.set()
    assert first.wait(30)
    assert second.wait(30)
    assert dict(db.scan()) == model
    assert_placed_by_ring(db)


def test_delete_during_move_never_exposes_older_copy():
    shards = {name: FailingStore() for name in "abc"}
    db = ShardedStore(shards, move_chunk_keys=16, move_flush_bytes=1 << 30)
    model = fill(db, 500)
    d_store = PausingStore()
    move = db.add_shard("d", d_store)
    assert d_store.paused.wait(30)
    old_ring = HashRing(list("abc"))
    key = next(k for k in model if db.ring.node_for(k) == "d")
    old_owner = shards[old_ring.node_for(key)]
    assert old_owner.get(key) == model[key]
    assert d_store.get(key) == model[key]

    # A put whose clean-up fails leaves an older copy on the old owner.
    old_owner.fail_writes = 1
    with pytest.raises(DurabilityError):
        db.put(key, b"newer")
    assert old_owner.get(key) == model[key]
    assert db.get(key) == b"newer"

    # A delete that fails on the old owner must not leave that copy readable.
    old_owner.fail_writes = 1
    with pytest.raises(DurabilityError):
        db.delete(key)
    assert db.get(key) == b"newer"
    db.delete(key)
    assert db.get(key) is None
    d_store.resume.set()
    assert move.wait(30)
    assert db.get(key) is None
    assert_placed_by_ring(db)


# -- documentation examples ------------------------------------------------------


def test_sharding_docs_examples_run():
    path = Path(__file__).resolve().parents[1] / "docs" / "sharding.md"
    if not path.exists():
        pytest.skip(f"{path} is not part of this installation")
    result = doctest.testfile(str(path), module_relative=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "module",
    [sharding.ring, sharding.jump, sharding.bounded, sharding.store],
    ids=lambda module: module.__name__,
)
def test_sharding_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.failed == 0
