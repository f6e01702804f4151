"""storekit.open: open the durable engine for a directory."""

from __future__ import annotations

from typing import Any

from .durable import DurableStore
from .store import Store

__all__ = ["open"]

# Options of the LSM engine that DurableStore has no use for. They are
# checked here and then dropped, so a program written for either engine
# runs on both.
_TABLE_OPTIONS = (
    "memtable_bytes",
    "block_cache_bytes",
    "compression",
    "bloom_bits_per_key",
)


def _check_table_options(options: dict[str, Any]) -> None:
    for name in ("memtable_bytes", "block_cache_bytes", "bloom_bits_per_key"):
        if name in options:
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    if "compression" in options and options["compression"] not in ("lz4", None):
        raise ValueError(
            f"compression must be 'lz4' or None, not {options['compression']!r}"
        )


def open(path: str, **options: Any) -> Store:  # noqa: A001 - the public name
    """Open (creating if missing) the durable store in directory ``path``.

    Options are those of DurableStore. ``memtable_bytes``,
    ``block_cache_bytes``, ``compression`` and ``bloom_bits_per_key`` are
    validated and have no effect on this engine, which keeps the whole
    data set in memory.

    >>> import storekit, tempfile
    >>> with storekit.open(tempfile.mkdtemp()) as db:
    ...     db.put(b"k", b"v")
    ...     db.get(b"k")
    b'v'
    """
    _check_table_options(options)
    for name in _TABLE_OPTIONS:
        options.pop(name, None)
    return DurableStore(path, **options)
