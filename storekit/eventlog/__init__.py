"""The append-only event log, projections and event sourcing.

- ``EventLog``: streams of events with global offsets, stored in segment
  files with sparse offset indexes (``log.py``).
- ``Projection``: applies events in order to any Store, keeping its offset
  in the same atomic write (``projection.py``).
- ``EventSourcedStore``: a Store whose writes are events and whose reads
  come from a projection (``es_store.py``).
- ``AggregateSnapshots`` and ``load_aggregate``: rebuild one stream's
  state from a snapshot (``aggregate.py``).

docs/eventlog.md explains the guarantees and gives a worked example.
"""

from __future__ import annotations

from .aggregate import AggregateSnapshots, AggregateState, load_aggregate
from .es_store import EventSourcedStore
from .log import EventLog
from .projection import OFFSET_KEY_PREFIX, Projection, ProjectionBatch
from .record import Event
from .subscription import Subscription

__all__ = [
    "OFFSET_KEY_PREFIX",
    "AggregateSnapshots",
    "AggregateState",
    "Event",
    "EventLog",
    "EventSourcedStore",
    "Projection",
    "ProjectionBatch",
    "Subscription",
    "load_aggregate",
]
