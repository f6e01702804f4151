"""storekit: composable key-value storage engines for Python.

Every engine and wrapper implements one ``Store`` interface, so they
compose: ``CachedStore(ShardedStore({...}))`` is a store, and so is a
projection of an event log into an LSM store.

>>> import storekit
>>> db = storekit.MemoryStore()
>>> db.put(b"apple", b"red")
>>> db.get(b"apple")
b'red'
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._backend import backend
from ._validate import MAX_KEY_SIZE, MAX_VALUE_SIZE
from .batch import WriteBatch
from .errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DurabilityError,
    LockedError,
    OffsetError,
    ReadOnlyError,
    StorekitError,
)
from .memory import MemoryStore
from .store import Snapshot, Store

__version__ = "0.1.0"

# Engines and wrappers load on first use, so ``import storekit`` stays fast
# and a program that only needs a cache never imports the LSM engine.
_LAZY = {
    "open": "storekit._open",
    "WAL": "storekit.wal",
    "WALReader": "storekit.wal",
    "Position": "storekit.wal",
    "DurableStore": "storekit.durable",
    "LSMStore": "storekit.lsm",
    "LRUCache": "storekit.cache",
    "TTLCache": "storekit.cache",
    "memoize": "storekit.cache",
    "S3FIFOCache": "storekit.cache",
    "make_cache": "storekit.cache",
    "CachedStore": "storekit.cache",
    "HashRing": "storekit.sharding",
    "ShardedStore": "storekit.sharding",
    "jump_hash": "storekit.sharding",
    "Move": "storekit.sharding",
    "EventLog": "storekit.eventlog",
    "Event": "storekit.eventlog",
    "Projection": "storekit.eventlog",
    "EventSourcedStore": "storekit.eventlog",
}

__all__ = [
    "MAX_KEY_SIZE",
    "MAX_VALUE_SIZE",
    "ClosedError",
    "ConcurrencyError",
    "CorruptionError",
    "DurabilityError",
    "LockedError",
    "MemoryStore",
    "OffsetError",
    "ReadOnlyError",
    "Snapshot",
    "Store",
    "StorekitError",
    "WriteBatch",
    "backend",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'storekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - names for type checkers and IDEs
    from ._open import open  # noqa: F401
    from .cache import (  # noqa: F401
        CachedStore,
        LRUCache,
        S3FIFOCache,
        TTLCache,
        make_cache,
        memoize,
    )
    from .durable import DurableStore  # noqa: F401
    from .eventlog import Event, EventLog, EventSourcedStore, Projection  # noqa: F401
    from .lsm import LSMStore  # noqa: F401
    from .sharding import HashRing, Move, ShardedStore, jump_hash  # noqa: F401
    from .wal import WAL, Position, WALReader  # noqa: F401

# A library leaves logging output to the application: without a handler of
# its own, Python would print WARNING records to stderr.
logging.getLogger("storekit").addHandler(logging.NullHandler())
