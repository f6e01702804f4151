"""memoize: cache a function's results in a storekit cache, one call per key at a time."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ._base import MISSING

__all__ = ["memoize"]

F = TypeVar("F", bound=Callable[..., Any])

# Separates positional from keyword arguments in a generated cache key.
_KEYWORD_MARK = object()


class _CachedError:
    """A cached exception, stored when ``cache_exceptions`` selects its class."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Flight:
    """One call in progress for a key; threads that miss the same key wait on it."""

    __slots__ = ("done", "value", "error", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def _make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    if not kwargs:
        if len(args) == 1 and type(args[0]) in (int, str, bytes):
            return args[0]
        return args
    return (*args, _KEYWORD_MARK, *kwargs.items())


def memoize(
    cache: Any,
    *,
    key: Callable[..., Hashable] | None = None,
    cache_exceptions: bool | tuple[type[BaseException], ...] = False,
    ttl: float | None = None,
) -> Callable[[F], F]:
    """Return a decorator that caches the decorated function's results in ``cache``.

    ``cache`` is a storekit cache (``LRUCache``, ``TTLCache``,
    ``S3FIFOCache``). The cache key is ``key(*args, **kwargs)``, or by
    default the positional arguments with the keyword arguments in call
    order, so ``f(1, b=2)`` and ``f(b=2, a=1)`` are different keys.

    Single flight: while a call for a key runs, other threads that miss the
    same key wait for it and share its result or exception instead of
    calling the function again. Misses on different keys run in parallel.

    Exceptions are not cached unless ``cache_exceptions`` is True (any
    ``Exception``) or a tuple of exception classes. A cached exception is
    raised again by later calls until it leaves the cache. ``ttl`` is the
    time to live of each stored result, overriding the cache's default.

    The wrapper has ``cache`` and ``cache_key(*args, **kwargs)`` attributes.

    >>> from storekit import LRUCache
    >>> calls = []
    >>> @memoize(LRUCache(max_items=100))
    ... def square(n):
    ...     calls.append(n)
    ...     return n * n
    >>> square(4), square(4), calls
    (16, 16, [4])
    """
    if not all(callable(getattr(cache, name, None)) for name in ("get", "put", "peek")):
        raise TypeError(
            f"memoize needs a cache with get, put and peek methods, not {type(cache).__name__}"
        )
    if key is not None and not callable(key):
        raise TypeError(f"key must be callable or None, not {type(key).__name__}")
    if cache_exceptions is True:
        cached_types: tuple[type[BaseException], ...] = (Exception,)
    elif cache_exceptions is False:
        cached_types = ()
    elif isinstance(cache_exceptions, tuple) and all(
        isinstance(kind, type) and issubclass(kind, BaseException)
        for kind in cache_exceptions
    ):
        cached_types = cache_exceptions
    else:
        raise TypeError(
            "cache_exceptions must be a bool or a tuple of exception classes, "
            f"not {cache_exceptions!r}"
        )
    if key is not None:
        compute_key = key
    else:

        def compute_key(*args: Any, **kwargs: Any) -> Hashable:
            return _make_key(args, kwargs)

    def decorator(function: F) -> F:
        flights: dict[Hashable, _Flight] = {}
        flights_lock = threading.Lock()

        def unwrap(value: Any) -> Any:
            if type(value) is _CachedError:
                raise value.error
            return value

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cache_key = compute_key(*args, **kwargs)
            value = cache.get(cache_key, MISSING)
            if value is not MISSING:
                return unwrap(value)

            with flights_lock:
                flight = flights.get(cache_key)
                leader = flight is None
                if leader:
                    flight = flights[cache_key] = _Flight()
            assert flight is not None
            if not leader:
                if flight.thread == threading.get_ident():
                    # The leader itself asked for the key it is computing:
                    # waiting would block forever.
                    raise RuntimeError(
                        f"{function.__qualname__} called itself with the key "
                        f"{cache_key!r} it is computing"
                    )
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error
                return flight.value

            try:
                # A previous leader may have stored the result between our
                # cache miss and the creation of this flight.
                value = cache.peek(cache_key, MISSING)
                if value is not MISSING:
                    if type(value) is _CachedError:
                        flight.error = value.error
                    else:
                        flight.value = value
                else:
                    try:
                        flight.value = function(*args, **kwargs)
                    except BaseException as exc:
                        flight.error = exc
                        if cached_types and isinstance(exc, cached_types):
                            cache.put(cache_key, _CachedError(exc), ttl)
                    else:
                        cache.put(cache_key, flight.value, ttl)
            finally:
                with flights_lock:
                    del flights[cache_key]
                flight.done.set()
            if flight.error is not None:
                raise flight.error
            return flight.value

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_key = compute_key  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
