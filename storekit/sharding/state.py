"""The shard map: which rings a ShardedStore routes by, kept durable under ``path``.

While no move runs the map contains one ring. ``add_shard`` and
``remove_shard`` put a new ring in front; the older rings stay until the
background copy has taken every key off the shards they name, so a reopen
after a crash knows where keys may still be and finishes the move.

File ``SHARDS`` (replaced whole through ``FileSystem.write_file_atomic``,
so a crash leaves the old or the new map)::

    magic     8 bytes  b"SKSHARDS"
    version   u32      format version, 2
    record             one record in the WAL block framing (xxh32
                       checksums), whose payload is UTF-8 JSON:
                       {"vnodes": int, "hash": "xxh3" | "ketama" | "custom",
                        "slots": int | null,
                        "rings": [{"version": int, "nodes": {name: weight},
                                   "change": null | {"kind": "add" | "remove",
                                                     "node": name}}, ...],
                        "released": [name, ...]}

``slots`` is the ring's slot count, null for the classic ring. Version 1
maps have no ``slots`` key: their rings were classic, and they are read
with ``slots`` null.

``rings`` lists the newest ring first. ``change`` says how a ring differs
from the next older one; the oldest ring's is null. ``released`` names the
shards whose removal finished, so that a reopen that still passes them in
(not knowing whether the removal finished before a crash) can ignore them.
"""

from __future__ import annotations

import json
import posixpath
import struct
from dataclasses import dataclass, field

from .._backend import framing
from ..errors import CorruptionError
from ..fs import FileSystem

__all__ = [
    "SHARD_MAP_FILE",
    "RingEntry",
    "ShardMap",
    "read_shard_map",
    "write_shard_map",
]

SHARD_MAP_FILE = "SHARDS"
_MAGIC = b"SKSHARDS"
_FORMAT_VERSION = 2
# Version 1 differs only in having no "slots" key.
_READABLE_VERSIONS = (1, 2)
_HEADER = struct.Struct("<8sI")


@dataclass(frozen=True)
class RingEntry:
    """One ring of the map: its version, its nodes and the change that made it."""

    version: int
    nodes: dict[str, int]
    change_kind: str | None = None
    change_node: str | None = None


@dataclass(frozen=True)
class ShardMap:
    """Ring settings and the rings in effect, newest first."""

    vnodes: int
    hash_name: str
    slots: int | None
    rings: list[RingEntry] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def _encode(shard_map: ShardMap) -> bytes:
    rings = []
    for entry in shard_map.rings:
        change = None
        if entry.change_kind is not None:
            change = {"kind": entry.change_kind, "node": entry.change_node}
        rings.append({"version": entry.version, "nodes": entry.nodes, "change": change})
    document = {
        "vnodes": shard_map.vnodes,
        "hash": shard_map.hash_name,
        "slots": shard_map.slots,
        "rings": rings,
        "released": sorted(shard_map.released),
    }
    payload = json.dumps(document, sort_keys=True).encode("utf-8")
    header = _HEADER.pack(_MAGIC, _FORMAT_VERSION)
    return header + framing.frame(payload, len(header) % framing.BLOCK_SIZE)


def _decode(data: bytes, path: str) -> ShardMap:
    if len(data) < _HEADER.size:
        raise CorruptionError(
            f"shard map {path} is {len(data)} bytes, shorter than its header",
            path=path,
            offset=0,
        )
    magic, version = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC:
        raise CorruptionError(
            f"shard map {path} has a bad magic number", path=path, offset=0
        )
    if version not in _READABLE_VERSIONS:
        raise CorruptionError(
            f"shard map {path} has format version {version}; "
            f"this storekit reads versions {', '.join(map(str, _READABLE_VERSIONS))}",
            path=path,
            offset=8,
        )
    fragments, _, status, bad, reason = framing.scan(data, _HEADER.size, 0)
    if status != framing.STATUS_OK or not fragments:
        offset = bad if bad >= 0 else _HEADER.size
        raise CorruptionError(
            f"shard map {path} is damaged at offset {offset}: "
            + (
                "record cut off at end of file"
                if status == framing.STATUS_TRUNCATED or not fragments
                else framing.REASON_TEXT.get(reason, "invalid record")
            ),
            path=path,
            offset=offset,
        )
    payload = b"".join(data[start : start + length] for start, length, _ in fragments)
    try:
        document = json.loads(payload.decode("utf-8"))
        rings = [
            RingEntry(
                version=int(item["version"]),
                nodes={
                    str(name): int(weight) for name, weight in item["nodes"].items()
                },
                change_kind=item["change"]["kind"] if item["change"] else None,
                change_node=item["change"]["node"] if item["change"] else None,
            )
            for item in document["rings"]
        ]
        released = [str(name) for name in document.get("released", [])]
        if version == 1 and "slots" in document:
            # Version 2 writes "slots"; a version 1 header on such a payload
            # is a damaged header, and reading it would misroute keys.
            raise ValueError("a version 1 map has no slots key")
        slots = None if version == 1 else document["slots"]
        if slots is not None and (
            isinstance(slots, bool) or not isinstance(slots, int)
        ):
            raise ValueError(f"slots is {slots!r}, not an int or null")
        shard_map = ShardMap(
            int(document["vnodes"]), str(document["hash"]), slots, rings, released
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptionError(
            f"shard map {path} passed its checksum but is malformed: {exc}",
            path=path,
            offset=_HEADER.size,
        ) from None
    if not shard_map.rings:
        raise CorruptionError(
            f"shard map {path} lists no ring", path=path, offset=_HEADER.size
        )
    return shard_map


def read_shard_map(fs: FileSystem, directory: str) -> ShardMap | None:
    """Return the map stored in ``directory``, or None when there is none yet."""
    path = posixpath.join(directory, SHARD_MAP_FILE)
    if not fs.exists(path):
        return None
    return _decode(fs.read_file(path), path)


def write_shard_map(fs: FileSystem, directory: str, shard_map: ShardMap) -> None:
    """Replace the map in ``directory``; durable when this returns."""
    fs.write_file_atomic(posixpath.join(directory, SHARD_MAP_FILE), _encode(shard_map))
