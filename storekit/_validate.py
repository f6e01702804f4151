"""Argument checks shared by every store: key and value types and sizes."""

from __future__ import annotations

#: Largest key any store accepts, in bytes (64 KiB). Table index blocks keep
#: whole keys, so very large keys would make every index lookup slow.
MAX_KEY_SIZE = 64 * 1024

#: Largest value any store accepts, in bytes (256 MiB). A write's WAL record
#: contains the whole value, so the limit also bounds one record's size.
MAX_VALUE_SIZE = 256 * 1024 * 1024


def check_key(key: object) -> bytes:
    """Return ``key`` as bytes, or raise TypeError/ValueError naming the problem."""
    if type(key) is bytes:
        data = key
    elif isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
    else:
        raise TypeError(
            f"key must be bytes, bytearray or memoryview, not {type(key).__name__}"
        )
    if len(data) > MAX_KEY_SIZE:
        raise ValueError(
            f"key of {len(data)} bytes exceeds MAX_KEY_SIZE ({MAX_KEY_SIZE} bytes)"
        )
    return data


def check_value(value: object) -> bytes:
    """Return ``value`` as bytes, or raise TypeError/ValueError naming the problem."""
    if type(value) is bytes:
        data = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(
            f"value must be bytes, bytearray or memoryview, not {type(value).__name__}"
        )
    if len(data) > MAX_VALUE_SIZE:
        raise ValueError(
            f"value of {len(data)} bytes exceeds MAX_VALUE_SIZE ({MAX_VALUE_SIZE} bytes)"
        )
    return data


def check_optional_key(key: object, name: str) -> bytes | None:
    """Like check_key, but allow None (an open bound) and name the argument."""
    if key is None:
        return None
    try:
        return check_key(key)
    except TypeError:
        raise TypeError(
            f"{name} must be bytes, bytearray, memoryview or None, "
            f"not {type(key).__name__}"
        ) from None


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key starting with ``prefix``.

    Trailing 0xFF bytes cannot be incremented, so they are dropped first:
    the bound of ``b"\\x01\\xff"`` is ``b"\\x02"``. A prefix made only of
    0xFF bytes (or the empty prefix) has no upper bound, and None is returned.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_flag(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool, or raise TypeError naming it.

    A string such as ``"no"`` is truthy, so accepting any object would
    silently flip a flag that the caller meant to clear.
    """
    if type(value) is not bool:
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def resolve_bounds(
    start: object,
    end: object,
    prefix: object,
    reverse: object = False,
    keys_only: object = False,
) -> tuple[bytes | None, bytes | None]:
    """Check the arguments of ``scan`` and combine its bounds into one range.

    ``start`` is inclusive and ``end`` exclusive. Returns ``(low, high)``
    where None means unbounded on that side. ``reverse`` and ``keys_only``
    must be bools.
    """
    check_flag(reverse, "reverse")
    check_flag(keys_only, "keys_only")
    low = check_optional_key(start, "start")
    high = check_optional_key(end, "end")
    pre = check_optional_key(prefix, "prefix")
    if pre is not None:
        if low is None or pre > low:
            low = pre
        upper = prefix_upper_bound(pre)
        if upper is not None and (high is None or upper < high):
            high = upper
    return low, high
