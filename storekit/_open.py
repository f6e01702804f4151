"""storekit.open: open the durable engine for a directory."""

from __future__ import annotations

import posixpath
from typing import Any

from .fs import default_fs
from .store import Store
from .wal import check_path

__all__ = ["open"]


def open(path: str, **options: Any) -> Store:  # noqa: A001 - the public name
    """Open (creating if missing) the durable store in directory ``path``.

    Returns an LSMStore, and takes its options (see storekit.lsm.LSMStore).
    A directory written by DurableStore, the in-memory engine with
    checkpoints, is recognised by its ``CHECKPOINT`` file and opened as a
    DurableStore. The options that only LSMStore has are then checked and
    ignored.

    >>> import storekit, tempfile
    >>> with storekit.open(tempfile.mkdtemp()) as db:
    ...     db.put(b"k", b"v")
    ...     db.get(b"k")
    b'v'
    """
    fs = default_fs(options.get("fs"))
    path = check_path(path)
    has_checkpoint = fs.exists(posixpath.join(path, "CHECKPOINT"))
    if has_checkpoint and not fs.exists(posixpath.join(path, "CURRENT")):
        return _open_durable(path, options)

    from .lsm import LSMStore

    return LSMStore(path, **options)


def _open_durable(path: str, options: dict[str, Any]) -> Store:
    from .durable import DurableStore

    # Validate the LSM-only options the same way LSMStore would, then drop
    # them, so a program written for either engine runs on both.
    for name in ("memtable_bytes", "block_cache_bytes", "bloom_bits_per_key"):
        if name in options:
            value = options.pop(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    if "compression" in options:
        compression = options.pop("compression")
        if compression not in ("lz4", None):
            raise ValueError(f"compression must be 'lz4' or None, not {compression!r}")
    return DurableStore(path, **options)
