"""Close the stores and logs that are still open when the interpreter exits.

Durable stores and event logs register here when they open and leave when
they close, so a program that forgets ``close()`` still gets its buffered
writes synced. The set holds weak references: registering keeps nothing
alive.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("storekit")


class _Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[_Closable] = weakref.WeakSet()
_before_closing: list[Callable[[], None]] = []


def close_at_exit(resource: _Closable) -> None:
    """Close ``resource`` at interpreter exit unless ``forget_at_exit`` runs first."""
    _open.add(resource)


def forget_at_exit(resource: _Closable) -> None:
    """Remove ``resource`` from the set closed at exit; its own ``close`` calls this."""
    _open.discard(resource)


def run_before_closing(function: Callable[[], None]) -> None:
    """Call ``function`` at interpreter exit before any resource is closed.

    A sharded store stops its background moves here, so that no move
    copies keys into a shard that is already closed.
    """
    _before_closing.append(function)


def _close_open_resources() -> None:
    for function in _before_closing:
        try:
            function()
        except Exception as exc:  # noqa: BLE001 - still close every resource
            logger.error("exit hook %r failed: %s", function, exc)
    for resource in list(_open):
        try:
            resource.close()
        except Exception as exc:  # noqa: BLE001 - log every resource's failure
            logger.error("closing %r at exit failed: %s", resource, exc)


atexit.register(_close_open_resources)
