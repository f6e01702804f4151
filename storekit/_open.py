"""storekit.open: open the durable engine for a directory."""

from __future__ import annotations

import inspect
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
    DurableStore. The options that only LSMStore has are then ignored
    after a check of their type and sign.

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
    from .lsm import LSMStore

    # Drop the options that only LSMStore has, so a program written for
    # either engine runs on both. A name that neither engine accepts raises
    # TypeError, as LSMStore would raise it.
    lsm_parameters = inspect.signature(LSMStore).parameters
    durable_names = set(inspect.signature(DurableStore).parameters)
    for name in list(options):
        if name in durable_names:
            continue
        if name not in lsm_parameters or name == "path":
            raise TypeError(
                f"storekit.open() got an unexpected keyword argument {name!r}"
            )
        _check_ignored_option(name, options.pop(name), lsm_parameters[name].default)
    return DurableStore(path, **options)


def _check_ignored_option(name: str, value: object, default: object) -> None:
    """Check the type of an LSMStore option that a DurableStore does not use.

    Only the type and sign are checked: LSMStore's own lower and upper
    bounds apply when the directory is opened as an LSMStore.
    """
    if name == "compression":
        if value not in ("lz4", None):
            raise ValueError(f"compression must be 'lz4' or None, not {value!r}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")
    elif isinstance(default, int) or default is None:
        # Sizes, counts and max_open_tables (None picks a default).
        if value is None and default is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {type(value).__name__}")
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, not {value!r}")
