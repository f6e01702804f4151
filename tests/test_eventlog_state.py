"""A hypothesis state machine of EventLog against a list model, with crashes."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from storekit.errors import ConcurrencyError, OffsetError
from storekit.eventlog import EventLog
from storekit.testing import CRASH_MODES, CrashFS

STREAMS = st.sampled_from(["a", "b", "c"])
PAYLOADS = st.lists(st.binary(max_size=300), min_size=1, max_size=4)


class EventLogMachine(RuleBasedStateMachine):
    """Model: ``events[offset]`` is ``(stream, version, data, event_id)``.

    The log runs with ``sync="always"`` on CrashFS, so a crash of any mode
    must lose nothing that an append acknowledged.
    """

    @initialize(seed=st.integers(0, 2**16), segment_bytes=st.sampled_from([1024, 4096]))
    def open_log(self, seed: int, segment_bytes: int) -> None:
        self.fs = CrashFS(seed=seed)
        self.segment_bytes = segment_bytes
        self.log = self._open()
        self.events: list[tuple[str, int, bytes, str | None]] = []
        self.first = 0
        self.versions: dict[str, int] = {}
        self.appends_with_ids: list[tuple[str, list[bytes], list[str], int]] = []

    def _open(self) -> EventLog:
        return EventLog(
            "/log", sync="always", fs=self.fs, segment_bytes=self.segment_bytes
        )

    def teardown(self) -> None:
        log = getattr(self, "log", None)
        if log is not None:
            log.close()

    # -- writes ----------------------------------------------------------------

    @rule(
        stream=STREAMS, payloads=PAYLOADS, check=st.booleans(), with_ids=st.booleans()
    )
    def append(
        self, stream: str, payloads: list[bytes], check: bool, with_ids: bool
    ) -> None:
        version = self.versions.get(stream, 0)
        ids = (
            [f"id-{len(self.events) + n}" for n in range(len(payloads))]
            if with_ids
            else None
        )
        last = self.log.append(
            stream, payloads, expected_version=version if check else None, event_ids=ids
        )
        for n, data in enumerate(payloads):
            self.events.append(
                (stream, version + n + 1, data, None if ids is None else ids[n])
            )
        self.versions[stream] = version + len(payloads)
        assert last == len(self.events) - 1
        if ids is not None:
            self.appends_with_ids.append((stream, payloads, ids, last))

    @rule(stream=STREAMS, payloads=PAYLOADS, delta=st.sampled_from([-2, -1, 1, 5]))
    def conflicting_append(
        self, stream: str, payloads: list[bytes], delta: int
    ) -> None:
        expected = self.versions.get(stream, 0) + delta
        if expected < 0:
            expected = self.versions.get(stream, 0) + 1
        with pytest.raises(ConcurrencyError):
            self.log.append(stream, payloads, expected_version=expected)

    @precondition(
        lambda self: any(last >= self.first for *_, last in self.appends_with_ids)
    )
    @rule(data=st.data())
    def retried_append(self, data: st.DataObject) -> None:
        candidates = [
            entry for entry in self.appends_with_ids if entry[3] >= self.first
        ]
        stream, payloads, ids, last = data.draw(st.sampled_from(candidates))
        assert self.log.append(stream, payloads, event_ids=ids) == last

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.first, len(self.events)))
        first = self.log.truncate_before(offset)
        assert self.first <= first <= offset
        self.first = first
        self.appends_with_ids = [
            e for e in self.appends_with_ids if e[3] - len(e[2]) + 1 >= first
        ]

    # -- reads -----------------------------------------------------------------

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.first, len(self.events) + 2))
        stored = [
            (event.stream, event.version, event.data, event.event_id)
            for event in self.log.read(offset)
        ]
        assert stored == self.events[offset:]
        if self.first > 0:
            with pytest.raises(OffsetError):
                self.log.read(self.first - 1)

    @rule(stream=STREAMS, from_version=st.integers(1, 12))
    def read_stream(self, stream: str, from_version: int) -> None:
        expected = [
            (offset, data)
            for offset, (name, version, data, _) in enumerate(self.events)
            if name == stream and version >= from_version
        ]
        removed = any(offset < self.first for offset, _ in expected)
        if removed:
            with pytest.raises(OffsetError):
                self.log.read_stream(stream, from_version)
            return
        stored = [
            (event.offset, event.data)
            for event in self.log.read_stream(stream, from_version)
        ]
        assert stored == expected

    @rule(data=st.data(), stream=st.one_of(st.none(), STREAMS))
    def subscribe(self, data: st.DataObject, stream: str | None) -> None:
        offset = data.draw(st.integers(self.first, len(self.events)))
        with self.log.subscribe(offset, stream=stream, timeout=0) as subscription:
            got = [event.offset for event in subscription]
        expected = [
            n
            for n in range(offset, len(self.events))
            if stream is None or self.events[n][0] == stream
        ]
        assert got == expected

    # -- restarts --------------------------------------------------------------

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = self._open()

    @rule(mode=st.sampled_from(CRASH_MODES))
    def crash(self, mode: str) -> None:
        self.fs.crash(mode=mode)
        self.log = self._open()

    @invariant()
    def offsets_and_versions_match(self) -> None:
        if not hasattr(self, "log"):
            return
        assert self.log.next_offset == len(self.events)
        assert self.log.first_offset == self.first
        for stream in ("a", "b", "c"):
            assert self.log.stream_version(stream) == self.versions.get(stream, 0)


EventLogMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_eventlog_state_machine = EventLogMachine.TestCase
