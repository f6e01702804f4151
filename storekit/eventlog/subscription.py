"""Subscription: a blocking iterator over the events of an EventLog."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .record import Event

if TYPE_CHECKING:  # pragma: no cover - import cycle at run time
    from .log import EventLog

__all__ = ["Subscription"]

# Events fetched from the log per read; a larger batch amortises the read
# setup, a smaller one keeps memory low for slow consumers.
_FETCH_LIMIT = 1024


class Subscription:
    """Events of a log from a start offset, waiting for new ones as they arrive.

    Iterating yields each event once, in offset order, and stops when
    ``timeout`` seconds pass without a new event (None waits forever), when
    ``close()`` is called from any thread, or when the log is closed. After
    a stop on timeout, iterating again continues where it stopped. ``get``
    waits for one event with its own timeout. Raises OffsetError if a
    truncation removes events before they are delivered, and ClosedError
    once the log's file system has crashed.

    >>> import tempfile, storekit
    >>> log = storekit.EventLog(tempfile.mkdtemp())
    >>> subscription = log.subscribe(0, timeout=0.1)
    >>> _ = log.append("orders", [b"created"])
    >>> [event.data for event in subscription]
    [b'created']
    >>> log.close()
    """

    def __init__(
        self,
        log: EventLog,
        from_offset: int,
        stream: str | None,
        timeout: float | None,
        poll_interval: float,
    ) -> None:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or timeout < 0
        ):
            raise ValueError(f"timeout must be a number >= 0 or None, not {timeout!r}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or poll_interval <= 0
        ):
            raise ValueError(
                f"poll_interval must be a number > 0, not {poll_interval!r}"
            )
        self._log = log
        self._stream = stream
        self.timeout = timeout
        self._poll_interval = float(poll_interval)
        self._buffer: deque[Event] = deque()
        # Offset after the last event fetched into the buffer (or skipped
        # because it belongs to another stream).
        self._fetched_to = from_offset
        self._stop = threading.Event()

    @property
    def position(self) -> int:
        """Offset of the next event this subscription will consider."""
        if self._buffer:
            return self._buffer[0].offset
        return self._fetched_to

    @property
    def closed(self) -> bool:
        """True once ``close`` was called or the log was closed."""
        return self._stop.is_set() or self._log.closed

    def get(self, timeout: float | None = None) -> Event | None:
        """Return the next event, waiting up to ``timeout`` seconds (None: forever).

        Returns None on timeout and once the subscription or log is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._stop.is_set() or self._log._closed:
                return None
            events, self._fetched_to = self._log._fetch(
                self._fetched_to, _FETCH_LIMIT, self._stream
            )
            if events:
                self._buffer.extend(events)
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            # On a timeout or stop the loop comes back here and returns None
            # after one last fetch.
            self._log._wait_beyond(
                self._fetched_to, remaining, self._stop, self._poll_interval
            )

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        event = self.get(self.timeout)
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Stop the subscription; a waiting ``get`` returns None promptly."""
        self._stop.set()
        self._log._wake_waiters()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Subscription of {self._log.path!r} at {self.position} {state}>"
