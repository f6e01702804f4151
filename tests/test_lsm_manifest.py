"""Manifest encoding, CURRENT handling and version edits of the LSM engine."""

from __future__ import annotations

import logging
import posixpath

import pytest

from storekit import CorruptionError
from storekit.lsm import LSMStore
from storekit.lsm.manifest import (
    MANIFEST_HEADER_SIZE,
    VersionSet,
    decode_edit,
    encode_edit,
    read_manifest,
)
from storekit.lsm.version import FileMetadata, Version, VersionEdit
from storekit.testing import CrashFS


def meta(
    number: int, smallest: bytes, largest: bytes, sequence: int = 1
) -> FileMetadata:
    return FileMetadata(number, 100, smallest, largest, sequence, sequence + 5, 6, 1)


def test_edit_round_trips():
    edit = VersionEdit(
        added=[(0, meta(7, b"", b"\xff" * 300)), (3, meta(8, b"a\x00", b"b"))],
        removed=[(1, 4), (2, 2**40)],
        last_sequence=2**50,
        next_file_number=9,
        wal_segment=0,
    )
    assert decode_edit(encode_edit(edit)) == edit


def test_edit_with_unknown_tag_is_rejected():
    with pytest.raises(ValueError, match="unknown field tag 9"):
        decode_edit(bytes([9, 1]))


def test_edit_cut_short_is_rejected():
    payload = encode_edit(VersionEdit(added=[(0, meta(7, b"apple", b"pear"))]))
    with pytest.raises(ValueError):
        decode_edit(payload[:-2])


def test_version_apply_rejects_overlap_and_missing_files():
    version = Version.empty(3).apply(VersionEdit(added=[(1, meta(1, b"a", b"c"))]))
    with pytest.raises(ValueError, match="overlap"):
        version.apply(VersionEdit(added=[(1, meta(2, b"b", b"d"))]))
    with pytest.raises(ValueError, match="not in level"):
        version.apply(VersionEdit(removed=[(2, 1)]))
    with pytest.raises(ValueError, match="added twice"):
        version.apply(VersionEdit(added=[(2, meta(1, b"x", b"y"))]))
    with pytest.raises(ValueError, match="outside"):
        version.apply(VersionEdit(added=[(3, meta(5, b"x", b"y"))]))


def test_version_find_checks_newest_first():
    version = Version.empty(3).apply(
        VersionEdit(
            added=[
                (0, meta(1, b"a", b"m", sequence=1)),
                (0, meta(2, b"k", b"z", sequence=10)),
                (1, meta(3, b"a", b"f")),
                (1, meta(4, b"g", b"p")),
                (2, meta(5, b"a", b"z")),
            ]
        )
    )
    version.check_invariants()
    assert [m.number for m in version.find(b"l")] == [2, 1, 4, 5]
    assert [m.number for m in version.find(b"b")] == [1, 3, 5]
    assert [m.number for m in version.find(b"zz")] == []


def store_with_tables(fs: CrashFS) -> None:
    with LSMStore("/db", fs=fs, background=False, memtable_bytes=1024) as db:
        for i in range(200):
            db.put(b"%03d" % i, b"value")
        db.flush()


def current_manifest(fs: CrashFS) -> str:
    return posixpath.join("/db", fs.read_file("/db/CURRENT").decode().strip())


def test_current_names_live_manifest_and_orphans_go():
    fs = CrashFS(seed=1)
    store_with_tables(fs)
    content = fs.read_file("/db/CURRENT")
    assert content.startswith(b"MANIFEST-")
    assert content.endswith(b"\n")
    manifests = [name for name in fs.listdir("/db") if name.startswith("MANIFEST-")]
    assert manifests == [posixpath.basename(current_manifest(fs))]


def test_manifest_torn_tail_is_ignored(caplog):
    fs = CrashFS(seed=2)
    store_with_tables(fs)
    path = current_manifest(fs)
    with fs.open(path, "a") as handle:
        handle.append(
            b"\x12\x34\x56\x78\x05\x00\x01ab"
        )  # a fragment with a bad checksum
        handle.sync()
    caplog.set_level(logging.WARNING, logger="storekit")
    with LSMStore("/db", fs=fs) as db:
        assert db.get(b"007") == b"value"
    assert any("incomplete record" in record.getMessage() for record in caplog.records)


def test_manifest_damage_before_valid_records_raises():
    fs = CrashFS(seed=3)
    store_with_tables(fs)
    path = current_manifest(fs)
    data = bytearray(fs.read_file(path))
    data[MANIFEST_HEADER_SIZE + 8] ^= 0xFF
    # Pad to the next block and add a valid record there, so the damage is
    # followed by valid data.
    block = 32 * 1024
    padding = block - len(data)
    valid = fs.read_file(path)[MANIFEST_HEADER_SIZE:]
    data += bytes(padding) + valid
    with fs.open(path, "w") as handle:
        handle.append(bytes(data))
        handle.sync()
    with pytest.raises(CorruptionError) as caught:
        read_manifest(fs, path)
    assert caught.value.path == path
    assert caught.value.offset == MANIFEST_HEADER_SIZE


def test_manifest_damage_in_block_keeps_tables():
    # A flipped bit in an early edit, with valid edits after it in the same
    # block. Skipping it as a torn tail would drop the later edits, and
    # open would then delete the live tables as orphans.
    fs = CrashFS(seed=5)
    store_with_tables(fs)
    path = current_manifest(fs)
    tables = sorted(name for name in fs.listdir("/db") if name.endswith(".sst"))
    data = bytearray(fs.read_file(path))
    first_length = data[MANIFEST_HEADER_SIZE + 4] | data[MANIFEST_HEADER_SIZE + 5] << 8
    second = MANIFEST_HEADER_SIZE + 7 + first_length
    assert second + 7 < len(data), "the manifest needs a second record"
    data[second + 8] ^= 0x02
    with fs.open(path, "w") as handle:
        handle.append(bytes(data))
        handle.sync()
    with pytest.raises(CorruptionError) as caught:
        LSMStore("/db", fs=fs)
    assert caught.value.path == path
    assert caught.value.offset == second
    assert sorted(n for n in fs.listdir("/db") if n.endswith(".sst")) == tables


def test_current_with_garbage_raises():
    fs = CrashFS(seed=4)
    store_with_tables(fs)
    with fs.open("/db/CURRENT", "w") as handle:
        handle.append(b"not a manifest name\n")
        handle.sync()
    with pytest.raises(CorruptionError, match="CURRENT"):
        LSMStore("/db", fs=fs)


def test_missing_manifest_raises():
    fs = CrashFS(seed=5)
    store_with_tables(fs)
    fs.remove(current_manifest(fs))
    with pytest.raises(CorruptionError, match="missing"):
        LSMStore("/db", fs=fs)


def test_version_set_recovers_counters():
    fs = CrashFS(seed=6)
    store_with_tables(fs)
    versions = VersionSet(fs, "/db")
    assert versions.recover()
    assert versions.last_sequence == 200
    assert versions.wal_segment > 0
    numbers = versions.current.file_numbers()
    assert numbers
    assert versions.new_file_number() > max(numbers)


def test_missing_current_with_tables_raises():
    fs = CrashFS(seed=7)
    store_with_tables(fs)
    fs.remove("/db/CURRENT")
    with pytest.raises(CorruptionError, match="no CURRENT"):
        LSMStore("/db", fs=fs)
    assert [name for name in fs.listdir("/db") if name.endswith(".sst")]
