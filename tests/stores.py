"""Store kinds shared by the parametrized interface and model tests.

Each kind builds a store in a directory, reopens it, and has a flag for
whether its contents survive a reopen. Tests import ``KINDS`` (every kind available in
this installation) or ``DURABLE_KINDS`` and parametrize over the names.

``make(path, **options)`` passes options through to the store's
constructor, so tests can ask for ``read_only=True``, ``create=False`` or a
``sync`` policy. The in-memory kind ignores ``path`` and takes no options.
``reopen(store, path)`` closes the store and opens the directory again; for
the in-memory kind it returns the same object, because closing would lose
everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storekit
from storekit.durable import DurableStore
from storekit.store import Store

__all__ = [
    "DURABLE_KINDS",
    "KINDS",
    "StoreKind",
    "child_env",
    "register_kind",
]

#: WAL growth that triggers a DurableStore checkpoint in tests. It is small
#: so that a few dozen writes already rotate the WAL and write CHECKPOINT.
DURABLE_CHECKPOINT_BYTES = 8192

#: Memtable size of the LSM kind in tests, small so that tests write tables.
LSM_MEMTABLE_BYTES = 4096


@dataclass(frozen=True)
class StoreKind:
    """One way of building a store for the shared tests."""

    name: str
    make_store: Callable[..., Store]
    durable: bool
    #: Options that ``make`` passes unless the test overrides them.
    defaults: dict[str, Any]

    def make(self, path: str | os.PathLike[str], **options: Any) -> Store:
        """Open (creating if missing) a store of this kind in ``path``."""
        if not self.durable:
            return self.make_store(**options)
        merged = {**self.defaults, **options}
        return self.make_store(str(path), **merged)

    def reopen(self, store: Store, path: str | os.PathLike[str]) -> Store:
        """Close ``store`` and open ``path`` again.

        An in-memory store is returned as it is, because closing it would lose
        its contents.
        """
        if not self.durable:
            return store
        store.close()
        return self.make(path)

    def __str__(self) -> str:
        return self.name


#: Every store kind available in this installation, by name.
KINDS: dict[str, StoreKind] = {}


def register_kind(
    name: str,
    make_store: Callable[..., Store],
    *,
    durable: bool,
    **defaults: Any,
) -> StoreKind:
    """Add a store kind to KINDS and return it."""
    kind = StoreKind(name, make_store, durable, defaults)
    KINDS[name] = kind
    return kind


register_kind("memory", storekit.MemoryStore, durable=False)
register_kind(
    "durable",
    DurableStore,
    durable=True,
    checkpoint_bytes=DURABLE_CHECKPOINT_BYTES,
)
register_kind("open", storekit.open, durable=True)


def _find_lsm_store() -> Callable[..., Store] | None:
    # The LSM engine may be absent from a partial checkout; its tests are
    # then left out instead of failing.
    try:
        from storekit import lsm
    except ImportError:
        return None
    return getattr(lsm, "LSMStore", None)


_lsm_store = _find_lsm_store()
if _lsm_store is not None:
    register_kind("lsm", _lsm_store, durable=True, memtable_bytes=LSM_MEMTABLE_BYTES)


def _event_sourced_store(
    path: str,
    *,
    sync: str = "batch",
    read_only: bool = False,
    create: bool = True,
    fs: Any = None,
    **options: Any,
) -> Store:
    """Open an EventSourcedStore: an event log with a projection into an LSM store."""
    from storekit.eventlog import EventLog, EventSourcedStore

    log = EventLog(
        os.path.join(path, "log"), sync=sync, fs=fs, read_only=read_only, create=create
    )
    try:
        inner = storekit.open(
            os.path.join(path, "inner"),
            sync=sync,
            read_only=read_only,
            create=create,
            fs=fs,
            **options,
        )
    except BaseException:
        log.close()
        raise
    return EventSourcedStore(log, inner)


register_kind("eventsourced", _event_sourced_store, durable=True)

#: Names of the kinds whose contents survive close and reopen.
DURABLE_KINDS = [name for name, kind in KINDS.items() if kind.durable]


def child_env() -> dict[str, str]:
    """Return the environment for a child Python that must import this storekit.

    When the storekit that the tests imported is installed, a child started
    from any directory imports the same package and the environment is
    returned unchanged. When it is a source checkout that is only importable
    from the project root, the directory that contains the package is put on
    PYTHONPATH, so that the child never runs a different copy.
    """
    if _CHILD_ENV:
        return dict(_CHILD_ENV)
    env = dict(os.environ)
    package_file = str(Path(storekit.__file__).resolve())
    with tempfile.TemporaryDirectory() as neutral_cwd:
        probe = subprocess.run(
            [sys.executable, "-c", "import storekit; print(storekit.__file__)"],
            cwd=neutral_cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    found = probe.stdout.strip()
    if probe.returncode != 0 or str(Path(found).resolve()) != package_file:
        root = str(Path(package_file).parents[1])
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = root if not existing else root + os.pathsep + existing
    _CHILD_ENV.update(env)
    return dict(env)


_CHILD_ENV: dict[str, str] = {}
