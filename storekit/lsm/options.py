"""Checks of LSMStore's numeric options, and the limits they enforce."""

from __future__ import annotations

__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_BLOOM_BITS_PER_KEY",
    "MAX_LEVELS",
    "check_at_most",
    "check_int",
]


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


# The table writer's largest data block, and a bloom filter size past which
# more bits buy nothing: at 64 bits per key the false-positive rate is about
# 1e-13 already.
MAX_BLOCK_SIZE = 64 << 20
MAX_BLOOM_BITS_PER_KEY = 64

#: Most levels an LSMStore may have. With the smallest size ratio (2) and
#: 1 KiB on level 1, 64 levels hold 2**63 KiB, so more add nothing but
#: per-level work on every open and lookup.
MAX_LEVELS = 64


def check_at_most(name: str, value: int, maximum: int) -> int:
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value}")
    return value
