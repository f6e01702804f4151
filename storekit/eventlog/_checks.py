"""Argument checks shared by the event log's modules."""

from __future__ import annotations

from collections.abc import Sequence

from .record import MAX_NAME_BYTES

__all__ = ["check_event_ids", "check_name", "check_offset", "check_positive_int"]


def check_name(value: object, label: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{label} must not be empty")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{label} {value!r} is not valid UTF-8: {exc}") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise ValueError(
            f"{label} of {len(encoded)} UTF-8 bytes exceeds the maximum of "
            f"{MAX_NAME_BYTES} bytes"
        )
    return encoded


def check_offset(value: object, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{label} must be >= 0, not {value}")
    return value


def check_positive_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


def check_event_ids(
    event_ids: object, count: int
) -> tuple[list[str] | None, list[bytes] | None]:
    if event_ids is None:
        return None, None
    if isinstance(event_ids, (str, bytes)) or not isinstance(event_ids, Sequence):
        raise TypeError(
            f"event_ids must be a list of str or None, not {type(event_ids).__name__}"
        )
    ids = list(event_ids)
    if len(ids) != count:
        raise ValueError(f"event_ids has {len(ids)} ids for {count} events")
    encoded = [check_name(event_id, "event id") for event_id in ids]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(
            f"event ids must be unique within an append: {duplicates[:3]!r}"
        )
    return ids, encoded
