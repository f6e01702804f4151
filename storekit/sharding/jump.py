"""Jump consistent hash: map a 64-bit key to one of ``buckets`` buckets.

Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm"
(2014, arXiv:1406.2294). Growing from ``n`` to ``n + 1`` buckets moves
about ``1/(n + 1)`` of the keys, all of them into the new bucket. Buckets
are numbered, so only the last bucket can be removed; use HashRing when
arbitrary nodes come and go.
"""

from __future__ import annotations

__all__ = ["jump_hash"]

_UINT64_MASK = (1 << 64) - 1
_LCG_MULTIPLIER = 2862933555777941757
_TWO_TO_31 = float(1 << 31)


def jump_hash(key: int, buckets: int) -> int:
    """Return the bucket in ``range(buckets)`` for the unsigned 64-bit ``key``.

    The result matches the paper's C++ reference, which does the division
    in double precision, and go-jump and Guava on their published vectors.
    Runtime complexity: O(log buckets).

    >>> jump_hash(1, 100)
    55
    """
    if type(key) is not int:
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(f"key must be an int, not {type(key).__name__}")
        key = int(key)
    if type(buckets) is not int:
        if isinstance(buckets, bool) or not isinstance(buckets, int):
            raise TypeError(f"buckets must be an int, not {type(buckets).__name__}")
        buckets = int(buckets)
    if not 0 <= key <= _UINT64_MASK:
        raise ValueError(
            f"key {key} is outside the unsigned 64-bit range; "
            "pass key & (2**64 - 1) to wrap a signed value"
        )
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    bucket = -1
    candidate = 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _LCG_MULTIPLIER + 1) & _UINT64_MASK
        candidate = int((bucket + 1) * (_TWO_TO_31 / float((key >> 33) + 1)))
    return bucket
