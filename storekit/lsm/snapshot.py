"""LSMSnapshot: a read-only view of an LSMStore at one sequence number."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._validate import resolve_bounds
from ..errors import ClosedError
from ..store import ScanItem, Snapshot

if TYPE_CHECKING:
    from .engine import LSMStore

__all__ = ["LSMSnapshot"]


class LSMSnapshot(Snapshot):
    """A read-only view of an LSMStore at one sequence number."""

    def __init__(self, store: LSMStore, sequence: int) -> None:
        self._store = store
        self._sequence = sequence
        self._closed = False

    @property
    def sequence(self) -> int:
        """The sequence number this snapshot reads at."""
        return self._sequence

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("snapshot is closed")

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._check_open()
        return self._store._get_at(key, self._sequence, default)

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[ScanItem]:
        self._check_open()
        low, high = resolve_bounds(start, end, prefix)
        return self._store._scan_at(low, high, reverse, keys_only, self._sequence)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store._release_snapshot(self._sequence)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
