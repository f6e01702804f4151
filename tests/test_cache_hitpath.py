"""Parity of the C and the Python hit path of LRUCache.get and TTLCache.get.

Each test builds two caches with the same options and the same clock. One
gets the C ``get`` of ``storekit._chitpath`` and the other the Python
closure. The same operations on both must give the same results,
exceptions, stats and recency order, and make the same calls into user code
(``__hash__``, ``__eq__``, the clock).
"""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storekit
from storekit.cache import LRUCache, TTLCache, lru

PARITY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def c_hitpath_or_none():
    try:
        return importlib.import_module("storekit._chitpath")
    except ImportError:
        return None


@pytest.fixture
def hitpath(monkeypatch):
    """Return the C module and let ``_make_c_get`` use it in this test.

    With STOREKIT_PUREPYTHON=1 the caches default to the Python closures, but
    a test can still build the C get from the module.
    """
    module = c_hitpath_or_none()
    if module is None:
        pytest.skip(
            "the C extension storekit._chitpath is not built; "
            "reinstall storekit where a C compiler is available, or run "
            "`python setup.py build_ext --inplace` in a source checkout"
        )
    monkeypatch.setattr(lru, "_HitPath", module.HitPath)
    return module


class StepClock:
    """A fake clock that returns ``now`` converted by ``kind`` and logs each call."""

    def __init__(self, kind: type = float) -> None:
        self.now = 0
        self.kind = kind
        self.calls = 0
        self.error: BaseException | None = None

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.kind(self.now)


def python_get(cache):
    return cache._make_paired_get() if cache._paired else cache._make_plain_get()


def make_pair(cache_class=LRUCache, clock=None, **options):
    """Return (Python cache, C cache, clock of the Python one, clock of the C one)."""
    clocks = []
    caches = []
    for make_get in (python_get, lambda cache: cache._make_c_get()):
        cache_clock = StepClock() if clock is None else clock()
        cache = cache_class(clock=cache_clock, **options)
        cache.get = make_get(cache)
        clocks.append(cache_clock)
        caches.append(cache)
    return caches[0], caches[1], clocks[0], clocks[1]


def outcome(function, *args, **kwargs):
    """Return ``("ok", result)`` or ``("raised", type, message)`` of a call."""
    try:
        return ("ok", function(*args, **kwargs))
    except Exception as error:  # the exception is the result to compare
        return ("raised", type(error), str(error))


def state(cache):
    """Return what a get can change: recency order, values, counters, expirations.

    It reads the fields directly, because ``stats()`` and ``len()`` would
    first remove expired entries and hide them from the next get.
    """
    return (
        [(getattr(key, "name", key), stored) for key, stored in cache._data.items()],
        cache._counters(),
        cache._expirations,
    )


def test_hitpath_constant_matches_build():
    purepython = os.environ.get("STOREKIT_PUREPYTHON", "") not in ("", "0")
    built = c_hitpath_or_none() is not None
    expected = "c" if built and not purepython else "python"
    assert lru.HITPATH == expected


def hitpath_in_subprocess(tmp_path: Path, purepython: str | None) -> str:
    """Return HITPATH and the type name of a cache's get in a fresh interpreter."""
    env = dict(os.environ)
    env.pop("STOREKIT_PUREPYTHON", None)
    if purepython is not None:
        env["STOREKIT_PUREPYTHON"] = purepython
    env["PYTHONPATH"] = str(Path(storekit.__file__).resolve().parents[1])
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from storekit.cache import lru; "
            "print(lru.HITPATH, type(lru.TTLCache(ttl=1).get).__name__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


def test_hitpath_selection_in_subprocess(tmp_path):
    built = c_hitpath_or_none() is not None
    expected = "c HitPath" if built else "python function"
    assert hitpath_in_subprocess(tmp_path, None) == expected
    assert hitpath_in_subprocess(tmp_path, "0") == expected
    assert hitpath_in_subprocess(tmp_path, "1") == "python function"


# Operation sequences.

KEYS = st.sampled_from([0, 1, 2, 3, "a", (1, 2)])
TTLS = st.one_of(
    st.none(), st.sampled_from([1, 2.5, 4, float("inf")]), st.floats(0.5, 6)
)
# A put first removes every expired entry, so a get reaches an expired entry
# (and the slow path) only after an advance with no put in between. The
# "advance+get" operation makes that case common.
STYLES = st.sampled_from(["none", "positional", "keyword"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.integers(), TTLS),
        st.tuples(st.just("get"), KEYS, STYLES),
        st.tuples(st.just("advance"), st.integers(0, 4)),
        st.tuples(st.just("advance+get"), st.integers(0, 4), KEYS, STYLES),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("clear")),
    ),
    min_size=20,
    max_size=80,
)
MISSING = object()


def apply(cache, clock, operation):
    kind = operation[0]
    if kind == "put":
        _, key, value, ttl = operation
        return outcome(cache.put, key, value, ttl=ttl)
    if kind == "get":
        _, key, style = operation
        if style == "none":
            return outcome(cache.get, key)
        if style == "positional":
            return outcome(cache.get, key, MISSING)
        return outcome(cache.get, key, default=MISSING)
    if kind == "advance":
        clock.now += operation[1]
        return None
    if kind == "advance+get":
        _, seconds, key, style = operation
        clock.now += seconds
        return apply(cache, clock, ("get", key, style))
    if kind == "delete":
        return outcome(cache.delete, operation[1])
    cache.clear()
    return None


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
@pytest.mark.parametrize("clock_kind", [float, int, Fraction])
@PARITY_SETTINGS
@given(operations=OPERATIONS)
def test_operation_sequences_match(hitpath, default_ttl, clock_kind, operations):
    py_cache, c_cache, py_clock, c_clock = make_pair(
        max_items=5, ttl=default_ttl, clock=lambda: StepClock(clock_kind)
    )
    assert isinstance(c_cache.get, hitpath.HitPath)
    assert c_cache.get.paired == (default_ttl is not None)
    for operation in operations:
        expected = apply(py_cache, py_clock, operation)
        assert apply(c_cache, c_clock, operation) == expected, operation
        assert py_clock.calls == c_clock.calls, operation
        assert state(c_cache) == state(py_cache), operation
    py_cache._check_invariants()
    c_cache._check_invariants()


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_expired_entry_goes_to_slow_path(hitpath, default_ttl):
    expired = {"python": [], "c": []}
    caches = []
    for name, make_get in (("python", python_get), ("c", lambda c: c._make_c_get())):
        clock = StepClock()
        cache = LRUCache(
            ttl=default_ttl,
            clock=clock,
            on_expire=lambda key, value, name=name: expired[name].append((key, value)),
        )
        cache.get = make_get(cache)
        cache.put("short", 1, ttl=1)
        cache.put("long", 2, ttl=10)
        cache.put("forever", 3, ttl=float("inf"))
        clock.now = 1  # "short" expires exactly now: deadline <= clock()
        results = [cache.get(key, "gone") for key in ("short", "long", "forever")]
        caches.append((cache, results))
    (py_cache, py_results), (c_cache, c_results) = caches
    assert py_results == ["gone", 2, 3]
    assert c_results == py_results
    assert expired["c"] == expired["python"] == [("short", 1)]
    assert c_cache.stats() == py_cache.stats()
    assert c_cache.stats()["expirations"] == 1


def test_monotonic_clock_read_in_c(hitpath):
    cache = TTLCache(ttl=3600)
    cache.get = cache._make_c_get()
    assert cache.get.c_clock == bool(hitpath.C_MONOTONIC)
    cache.put("k", "v")
    cache.put("brief", "v", ttl=1e-6)
    deadline = time.monotonic() + 1e-6
    while time.monotonic() <= deadline:
        time.sleep(1e-4)
    assert cache.get("k") == "v"
    assert cache.get("brief") is None
    stats = cache.stats()
    assert stats["hits"] == 1
    assert stats["misses"] == 1
    assert stats["expirations"] == 1


def test_monotonic_clock_matches_time_monotonic(hitpath):
    if not hitpath.C_MONOTONIC:
        pytest.skip("this platform reads the clock through time.monotonic()")
    for _ in range(1000):
        before = time.monotonic()
        now = hitpath.monotonic()
        after = time.monotonic()
        assert before <= now <= after


def test_other_clock_is_called(hitpath):
    clock = StepClock()
    cache = TTLCache(ttl=5, clock=clock)
    cache.get = cache._make_c_get()
    assert cache.get.c_clock is False
    cache.put("k", "v")
    calls = clock.calls
    assert cache.get("k") == "v"
    assert clock.calls == calls + 1


# Keys and arguments that raise.


class LoggedKey:
    """A key whose hash and equality calls are logged, and may raise on request.

    Equal keys with different identities make the dict and the OrderedDict
    call ``__eq__``, because the same object would match by identity alone.
    The stored key and the probe share ``eq_errors``, because a lookup calls
    the stored key's ``__eq__``. Each call takes the next entry of
    ``eq_errors`` and raises it unless it is None.
    """

    def __init__(self, name, log, eq_errors, hash_error=None):
        self.name = name
        self.log = log
        self.eq_errors = eq_errors
        self.hash_error = hash_error

    def __hash__(self):
        self.log.append(("hash", self.name))
        if self.hash_error is not None:
            raise self.hash_error
        return 7

    def __eq__(self, other):
        self.log.append(("eq", self.name))
        if self.eq_errors:
            error = self.eq_errors.pop(0)
            if error is not None:
                raise error
        return isinstance(other, LoggedKey) and other.name == self.name


def run_logged(caches, probe, default_ttl=None):
    """Return (outcome, call log, state) of ``get(probe key)`` on each cache."""
    hash_error, eq_errors = PROBES[probe]
    results = []
    for cache in caches:
        log = []
        shared_eq_errors = list(eq_errors)
        stored = LoggedKey("k", log, shared_eq_errors)
        # A per-entry ttl in plain mode makes get also call deadlines.get(key).
        cache.put(stored, "value", ttl=10 if default_ttl is None else None)
        log.clear()
        probe_key = LoggedKey("k", log, shared_eq_errors, hash_error)
        result = outcome(cache.get, probe_key, "default")
        # Copied before state(), whose OrderedDict iteration hashes the keys.
        calls = list(log)
        results.append((result, calls, state(cache)))
    return results


# (error raised by the probe's __hash__, errors raised by successive __eq__)
PROBES = {
    "equal": (None, []),
    "hash raises ValueError": (ValueError("bad hash"), []),
    "hash raises KeyError": (KeyError("bad hash"), []),
    "eq raises in lookup": (None, [RuntimeError("eq")]),
    "eq raises KeyError in lookup": (None, [KeyError("eq")]),
    "eq raises KeyError in move_to_end": (None, [None, KeyError("gone")]),
    "eq raises in move_to_end": (None, [None, RuntimeError("eq")]),
    "eq raises in deadlines.get": (None, [None, None, RuntimeError("eq")]),
    "eq raises KeyError in deadlines.get": (None, [None, None, KeyError("eq")]),
}


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
@pytest.mark.parametrize("probe", list(PROBES))
def test_raising_key_matches(hitpath, default_ttl, probe):
    py_cache, c_cache, _, _ = make_pair(ttl=default_ttl)
    py_result, c_result = run_logged((py_cache, c_cache), probe, default_ttl)
    assert c_result[0] == py_result[0]
    assert c_result[1] == py_result[1]
    assert c_result[2] == py_result[2]


@pytest.mark.parametrize(
    "probe, expected_result, expected_counters",
    [
        ("equal", ("ok", "value"), (1, 0)),
        # Keys of a Python class take the locked get, where no concurrent
        # change can remove the entry, so a KeyError from the key's own
        # __eq__ or __hash__ propagates instead of counting as a miss.
        ("eq raises KeyError in move_to_end", ("raised", KeyError, "'gone'"), (0, 0)),
        ("eq raises KeyError in lookup", ("raised", KeyError, "'eq'"), (0, 0)),
        ("hash raises KeyError", ("raised", KeyError, "'bad hash'"), (0, 0)),
        ("eq raises in lookup", ("raised", RuntimeError, "eq"), (0, 0)),
        ("eq raises KeyError in deadlines.get", ("raised", KeyError, "'eq'"), (0, 0)),
    ],
)
@pytest.mark.parametrize("path", ["python", "c"])
def test_raising_key_outcomes(hitpath, path, probe, expected_result, expected_counters):
    # The parity test above compares the two paths; this pins what they do.
    py_cache, c_cache, _, _ = make_pair()
    cache = c_cache if path == "c" else py_cache
    [(result, _, _)] = run_logged([cache], probe)
    assert result == expected_result
    assert cache._counters() == expected_counters


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_unhashable_key_matches(hitpath, default_ttl):
    py_cache, c_cache, _, _ = make_pair(ttl=default_ttl)
    expected = outcome(py_cache.get, ["a", "list"])
    assert expected == ("raised", TypeError, "unhashable type: 'list'")
    assert outcome(c_cache.get, ["a", "list"]) == expected
    assert state(c_cache) == state(py_cache)


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_clock_error_matches(hitpath, default_ttl):
    py_cache, c_cache, py_clock, c_clock = make_pair(ttl=default_ttl)
    for cache, clock in ((py_cache, py_clock), (c_cache, c_clock)):
        cache.put("k", "v", ttl=5)
        clock.error = KeyError("clock")
    expected = outcome(py_cache.get, "k")
    assert expected[:2] == ("raised", KeyError)
    assert outcome(c_cache.get, "k") == expected
    assert state(c_cache) == state(py_cache)


ARGUMENT_CASES = [
    ((), {}),
    (("k",), {}),
    (("k", 1), {}),
    (("k",), {"default": 1}),
    ((), {"key": "k"}),
    ((), {"key": "missing", "default": 2}),
    ((), {"default": 2}),
    (("k", 1, 2), {}),
    (("k",), {"key": "k"}),
    (("k", 1), {"default": 2}),
    (("k",), {"colour": 2}),
]


@pytest.mark.parametrize("cache_class", [LRUCache, TTLCache])
@pytest.mark.parametrize("args, kwargs", ARGUMENT_CASES)
def test_arguments_match(hitpath, cache_class, args, kwargs):
    py_cache, c_cache, _, _ = make_pair(cache_class, ttl=60)
    for cache in (py_cache, c_cache):
        cache.put("k", "v")
    expected = outcome(py_cache.get, *args, **kwargs)
    result = outcome(c_cache.get, *args, **kwargs)
    if expected[0] == "raised" and sys.version_info >= (3, 12):
        # The C messages copy CPython 3.11's; later versions may word the
        # argument errors of Python functions differently.
        assert result[:2] == expected[:2]
    else:
        assert result == expected
    assert state(c_cache) == state(py_cache)


def test_names_and_doc(hitpath):
    cache = TTLCache(ttl=1)
    cache.get = cache._make_c_get()
    assert cache.get.__name__ == "get"
    assert cache.get.__qualname__ == "TTLCache.get"
    assert "TTLCache.get" in repr(cache.get)
    assert "default" in type(cache.get).__doc__


# Construction, references and garbage collection.


def hitpath_arguments(**changes):
    data = OrderedDict()
    arguments = {
        "data": data,
        "move_to_end": data.move_to_end,
        "clock": time.monotonic,
        "miss_counter": iter(range(10)),
        "slow_path": lambda key, default: default,
        "deadlines": {},
        "paired": False,
        "qualname": "LRUCache.get",
    }
    arguments.update(changes)
    return arguments


@pytest.mark.parametrize(
    "changes, error, words",
    [
        ({"data": {}}, TypeError, "data must be a collections.OrderedDict, not dict"),
        ({"clock": 3}, TypeError, "clock must be callable, not int"),
        ({"slow_path": None}, TypeError, "slow_path must be callable, not NoneType"),
        ({"miss_counter": [1]}, TypeError, "miss_counter must be an iterator"),
        ({"deadlines": None}, TypeError, "deadlines must be a dict"),
        ({"paired": True}, ValueError, "deadlines must be None when paired is true"),
        ({"qualname": 1}, TypeError, "must be str"),
    ],
)
def test_invalid_construction_rejected(hitpath, changes, error, words):
    with pytest.raises(error, match=words):
        hitpath.HitPath(**hitpath_arguments(**changes))


def test_cache_with_c_get_is_collected(hitpath):
    cache = TTLCache(ttl=60)
    cache.get = cache._make_c_get()
    cache.put("k", "v")
    assert gc.is_tracked(cache.get)
    assert cache._data in gc.get_referents(cache.get)
    # The get holds the bound _get_locked, which holds the cache: a cycle.
    reference = weakref.ref(cache)
    del cache
    gc.collect()
    assert reference() is None


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_reference_counts_unchanged(hitpath, default_ttl):
    clock = StepClock()
    cache = LRUCache(ttl=default_ttl, clock=clock)
    cache.get = cache._make_c_get()
    key = ("key", object())
    value = ["value"]
    default = ["default"]
    missing_key = ("missing", object())
    cache.put(key, value, ttl=10)

    def calls():
        assert cache.get(key, default) is value
        assert cache.get(missing_key, default) is default
        assert cache.get(missing_key, default=default) is default
        with pytest.raises(TypeError):
            cache.get([key])

    calls()  # warm up: the first calls may cache objects
    counted = (key, value, default, missing_key)
    before = [sys.getrefcount(item) for item in counted]
    for _ in range(1000):
        calls()
    after = [sys.getrefcount(item) for item in counted]
    assert after == before
    clock.now = 20  # expire: the slow path removes the entry and its references
    assert cache.get(key, default) is default
    after_expiry = [sys.getrefcount(item) for item in counted]
    assert after_expiry[1] == before[1] - 1


# Threads.


def test_ttl_cache_concurrent_get_put_delete(hitpath):
    cache = TTLCache(max_items=4, ttl=60)
    cache.get = cache._make_c_get()
    threads_count = 4
    iterations = 5000
    barrier = threading.Barrier(threads_count + 1)
    errors = []
    wrong_values = []
    stop = threading.Event()

    def worker(seed):
        try:
            barrier.wait()
            for i in range(iterations):
                key = (seed * 7 + i) % 12
                cache.put(key, key)
                value = cache.get((key * 5) % 12)
                if value is not None and value != (key * 5) % 12:
                    wrong_values.append(value)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    def remover():
        barrier.wait()
        i = 0
        while not stop.is_set():
            cache.delete(i % 12)
            i += 1
            if i % 100 == 0:
                cache.clear()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    removing = threading.Thread(target=remover)
    for thread in [*workers, removing]:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    removing.join()

    assert errors == []
    assert wrong_values == []
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == threads_count * iterations
    cache._check_invariants()


@dataclass(frozen=True)
class _FieldKey:
    """A key whose __eq__ and __hash__ are Python code."""

    name: str


@pytest.mark.parametrize("path", ["python", "c"])
@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_python_class_keys_take_lock(hitpath, path, default_ttl):
    py_cache, c_cache, _, _ = make_pair(ttl=default_ttl)
    cache = c_cache if path == "c" else py_cache
    cache.put("plain", 1)
    cache.put(("t", 1, None), 2)
    cache.put(_FieldKey("f"), 3)
    results = {}

    def read(label, key):
        results[label] = cache.get(key)

    with cache._lock:
        # Lock-free keys are served while another thread holds the lock.
        for label, key in (("str", "plain"), ("tuple", ("t", 1, None))):
            reader = threading.Thread(target=read, args=(label, key))
            reader.start()
            reader.join(timeout=10)
            assert not reader.is_alive()
        blocked = threading.Thread(target=read, args=("field", _FieldKey("f")))
        blocked.start()
        blocked.join(timeout=0.2)
        assert blocked.is_alive()
        assert "field" not in results
    blocked.join(timeout=10)
    assert results == {"str": 1, "tuple": 2, "field": 3}
    assert cache._counters() == (3, 0)


_PATCHED_CLOCK_SCRIPT = """
import time
fake_now = [1000.0]
time.monotonic = lambda: fake_now[0]  # as freezegun or mock.patch do
from storekit.cache import TTLCache
cache = TTLCache(ttl=5)
cache.put("k", "v")
fake_now[0] += 10
print(getattr(cache.get, "c_clock", None), cache.get("k"), cache._counters())
"""


def test_patched_monotonic_is_called_not_read(tmp_path):
    # A time.monotonic replaced before storekit is imported is the caches'
    # default clock, so get must call it instead of reading the real clock.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(storekit.__file__).resolve().parents[1])
    completed = subprocess.run(
        [sys.executable, "-c", _PATCHED_CLOCK_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    c_clock, value, counters = completed.stdout.split(" ", 2)
    assert c_clock in ("False", "None")
    assert value == "None"
    assert counters.strip() == "(0, 1)"


@pytest.mark.parametrize("default_ttl", [None, 3.0], ids=["plain", "paired"])
def test_subclass_get_override_is_used(default_ttl):
    calls = []

    class CountingCache(LRUCache):
        def get(self, key, default=None):
            calls.append(key)
            return super().get(key, default)

    cache = CountingCache(max_items=4, ttl=default_ttl)
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.get("b", 0) == 0
    assert calls == ["a", "b"]
    assert cache._counters() == (1, 1)
