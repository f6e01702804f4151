"""The coordinator log that makes a batch atomic across shards.

``ShardedStore.write(batch, atomic=True)`` splits the batch into per-shard
batches, grouped in phases that must run in order, then:

1. appends an *intent* record holding every per-shard batch and fsyncs it;
   from here on the batch is decided and will be applied in full;
2. applies the per-shard batches, each atomic in its own shard;
3. appends a *commit* record and fsyncs it.

Reopening replays the log: an intent without a commit is applied again in
full (roll forward), which is safe because re-applying puts and deletes
gives the same state and no other write touched those keys after the
crash. A torn intent at the tail was never acknowledged and nothing of it
was applied, so dropping it rolls the batch back. After recovery the log
starts empty.

The commit must be durable before ``write`` returns: otherwise a crash
could leave an intent without its commit, and replaying it would overwrite
later writes to the same keys.

Records are WAL records (storekit.wal, ``sync="always"``) in the
directory ``<path>/coordinator``. Payload layout (little-endian)::

    type        u8    1 intent, 2 commit
    batch id    u64
    intent only:
      phases    u32
      per phase:
        shards  u32
        per shard:
          name length u16, name (UTF-8)
          batch length u32, batch (storekit.batch.encode_batch, sequence 0)
"""

from __future__ import annotations

import logging
import posixpath
import struct
from typing import Any

from ..batch import decode_batch, encode_batch
from ..errors import CorruptionError
from ..fs import FileSystem
from ..wal import WAL

__all__ = ["CoordinatorLog", "Plan"]

logger = logging.getLogger("storekit.sharding")

#: Per-shard operations grouped in phases: a list of {shard name: ops}.
Plan = list[dict[str, list[tuple[int, bytes, bytes | None]]]]

_INTENT = 1
_COMMIT = 2
_RECORD_HEAD = struct.Struct("<BQ")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

#: Segment size at which the log starts over once no batch is in flight.
RESET_BYTES = 4 << 20


def encode_intent(batch_id: int, plan: Plan) -> bytes:
    """Return the payload of the intent record for ``plan``."""
    out = bytearray(_RECORD_HEAD.pack(_INTENT, batch_id))
    out += _U32.pack(len(plan))
    for phase in plan:
        out += _U32.pack(len(phase))
        for name, ops in phase.items():
            encoded_name = name.encode("utf-8")
            body = encode_batch(ops, 0)
            out += _U16.pack(len(encoded_name)) + encoded_name
            out += _U32.pack(len(body)) + body
    return bytes(out)


def decode_record(payload: bytes) -> tuple[int, int, Plan | None]:
    """Return ``(type, batch_id, plan)``; plan is None for a commit.

    Raises ValueError when the payload is malformed.
    """
    if len(payload) < _RECORD_HEAD.size:
        raise ValueError(f"record of {len(payload)} bytes is too short")
    kind, batch_id = _RECORD_HEAD.unpack_from(payload, 0)
    if kind == _COMMIT:
        if len(payload) != _RECORD_HEAD.size:
            raise ValueError("commit record has trailing bytes")
        return kind, batch_id, None
    if kind != _INTENT:
        raise ValueError(f"unknown record type {kind}")
    position = _RECORD_HEAD.size
    (phase_count,) = _U32.unpack_from(payload, position)
    position += _U32.size
    plan: Plan = []
    for _ in range(phase_count):
        (shard_count,) = _U32.unpack_from(payload, position)
        position += _U32.size
        phase: dict[str, list[tuple[int, bytes, bytes | None]]] = {}
        for _ in range(shard_count):
            (name_length,) = _U16.unpack_from(payload, position)
            position += _U16.size
            name = payload[position : position + name_length].decode("utf-8")
            position += name_length
            (body_length,) = _U32.unpack_from(payload, position)
            position += _U32.size
            body = payload[position : position + body_length]
            if len(body) != body_length:
                raise ValueError("batch runs past the end of the record")
            position += body_length
            try:
                _, ops = decode_batch(body)
            except CorruptionError as exc:
                raise ValueError(str(exc)) from None
            phase[name] = ops
        plan.append(phase)
    if position != len(payload):
        raise ValueError(f"intent record has {len(payload) - position} trailing bytes")
    return kind, batch_id, plan


class CoordinatorLog:
    """The intent/commit log in ``<directory>/coordinator``.

    Not thread-safe: the caller serializes ``begin`` and ``commit``.
    """

    def __init__(self, directory: str, fs: FileSystem) -> None:
        self.path = posixpath.join(directory, "coordinator")
        self._wal = WAL(self.path, sync="always", fs=fs)
        self._next_id = 1
        self.committed = 0

    def pending(self) -> list[tuple[int, Plan]]:
        """Return the intents that have no commit, oldest first.

        Raises CorruptionError when a record that passed its checksum does
        not parse.
        """
        intents: dict[int, Plan] = {}
        for position, payload in self._wal.replay():
            try:
                kind, batch_id, plan = decode_record(payload)
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                raise CorruptionError(
                    f"coordinator log record at segment {position.segment} "
                    f"offset {position.offset} is malformed: {exc}",
                    path=self.path,
                    offset=position.offset,
                ) from None
            self._next_id = max(self._next_id, batch_id + 1)
            if kind == _INTENT:
                intents[batch_id] = plan  # type: ignore[assignment]
            else:
                intents.pop(batch_id, None)
        return sorted(intents.items())

    def begin(self, plan: Plan) -> int:
        """Append and fsync the intent of ``plan``; return its batch id."""
        batch_id = self._next_id
        self._next_id += 1
        self._wal.append(encode_intent(batch_id, plan))
        return batch_id

    def commit(self, batch_id: int) -> None:
        """Append and fsync the commit of ``batch_id``, then start over if the log is big."""
        self._wal.append(_RECORD_HEAD.pack(_COMMIT, batch_id))
        self.committed += 1
        if self._wal.stats()["current_segment_bytes"] >= RESET_BYTES:
            self.reset()

    def reset(self) -> None:
        """Drop every record; call only when no intent lacks its commit."""
        current = self._wal.rotate()
        self._wal.remove_segments_before(current)

    def stats(self) -> dict[str, Any]:
        """Return the log's WAL counters and the number of commits since open."""
        return {"committed": self.committed, "wal": self._wal.stats()}

    def close(self) -> None:
        """Fsync and close the log."""
        self._wal.close()
