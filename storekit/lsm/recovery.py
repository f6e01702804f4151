"""Recovery of an LSMStore at open: manifest, orphan removal and WAL replay."""

from __future__ import annotations

import logging

from ..batch import decode_batch
from ..errors import CorruptionError
from ..memtable import Memtable
from ..wal import WAL, Position
from .manifest import CURRENT

__all__ = ["Frozen", "RecoveryMixin"]

logger = logging.getLogger("storekit.lsm")


class Frozen:
    """An immutable memtable waiting for its flush.

    ``wal_segment`` is the WAL segment that was started when this memtable
    was frozen: once it is flushed, the segments before it hold no record
    that is not in a table. It is None for a memtable filled during WAL
    replay, which does not end at a segment boundary.
    """

    __slots__ = ("memtable", "wal_segment", "id")

    def __init__(
        self, memtable: Memtable, wal_segment: int | None, frozen_id: int
    ) -> None:
        self.memtable = memtable
        self.wal_segment = wal_segment
        self.id = frozen_id


class RecoveryMixin:
    """The recovery steps of LSMStore, which mixes this class in."""

    def _recover(
        self, recovery, sync, sync_interval, sync_bytes, segment_bytes
    ) -> None:
        versions = self._versions
        existed = versions.recover()
        if not existed and self._fs.exists(self._join("CHECKPOINT")):
            raise ValueError(
                f"{self.path} contains a DurableStore (it has a CHECKPOINT file and no "
                "CURRENT); open it with storekit.DurableStore"
            )
        if not existed:
            tables = [
                name for name in self._fs.listdir(self.path) if name.endswith(".sst")
            ]
            if tables:
                # Starting empty would delete these tables as orphans.
                raise CorruptionError(
                    f"{self.path} has {len(tables)} table files but no CURRENT file "
                    "naming a manifest; restore CURRENT or move the tables away",
                    self._join(CURRENT),
                    None,
                )
        versions.check_tables()
        # The WAL opens before anything in the directory changes, so a WAL
        # that fails to open leaves the manifest and tables as they were.
        self._wal = WAL(
            self._join("wal"),
            sync=sync,
            fs=self._fs,
            recovery=recovery,
            segment_bytes=segment_bytes,
            sync_interval=sync_interval,
            sync_bytes=sync_bytes,
            read_only=self._read_only,
            # With a manifest in place the WAL directory existed; recreating
            # it empty would silently drop the writes that were only there.
            must_exist=existed,
            # A read-only open takes no lock, so a writer may have flushed
            # and removed this segment since the manifest was read.
            expected_segment=0 if self._read_only else versions.wal_segment,
        )
        if not self._read_only:
            versions.remove_orphans()
            versions.write_new_manifest()
        self._install(versions.current)
        if not self._read_only and versions.wal_segment:
            # A crash after a flush's manifest edit but before the removal
            # leaves covered segments behind.
            self._wal.remove_segments_before(versions.wal_segment)
        self._replay(versions.last_sequence, versions.wal_segment)

    def _replay(self, flushed_sequence: int, first_segment: int) -> None:
        """Apply the WAL records not yet in tables to memtables."""
        wal = self._wal
        assert wal is not None
        start = Position(first_segment, 0) if first_segment else None
        last = flushed_sequence
        for position, payload in wal.replay(start):
            try:
                sequence, ops = decode_batch(payload)
            except CorruptionError as exc:
                raise CorruptionError(
                    f"WAL record at segment {position.segment} offset {position.offset} "
                    f"in {wal.path}: {exc}",
                    wal.path,
                    position.offset,
                ) from None
            if sequence + len(ops) - 1 <= flushed_sequence:
                continue  # already in a table
            if sequence != last + 1:
                raise CorruptionError(
                    f"WAL record at segment {position.segment} offset {position.offset} "
                    f"starts at sequence {sequence}, expected {last + 1}: records are "
                    "missing",
                    wal.path,
                    position.offset,
                )
            last = self._memtable.apply(ops, sequence, [])
            if self._memtable.approximate_bytes >= self._memtable_bytes:
                self._freeze_replayed_memtable()
        self._last_sequence = self._assigned = last

    def _freeze_replayed_memtable(self) -> None:
        self._frozen_ids += 1
        self._immutables.append(Frozen(self._memtable, None, self._frozen_ids))
        self._memtable = Memtable(keep_tombstones=True)
        if not self._read_only:
            # Flush now so replaying a long WAL needs one memtable of memory.
            self._flush_one()
