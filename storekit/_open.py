"""storekit.open: open the durable engine for a directory."""

from __future__ import annotations

from typing import Any

from .durable import DurableStore
from .store import Store

__all__ = ["open"]


def open(path: str, **options: Any) -> Store:  # noqa: A001 - the public name
    """Open (creating if missing) the durable store in directory ``path``.

    >>> import storekit, tempfile
    >>> with storekit.open(tempfile.mkdtemp()) as db:
    ...     db.put(b"k", b"v")
    ...     db.get(b"k")
    b'v'
    """
    return DurableStore(path, **options)
