"""Bloom filter over the user keys of one table.

A table's filter block lets a point lookup skip the table without reading
a data block when the key is certainly absent. Layout of the filter block
contents (before the block trailer):

    bits     m / 8 bytes   bit i is ``byte[i >> 3] & (1 << (i & 7))``
    probes   u8            number of probes k, 1..30

Each user key is hashed once with xxh64 (seed 0). The low 32 bits are h1
and the high 32 bits are h2, and probe i tests bit ``(h1 + i * h2) mod m``
(double hashing). Sequence numbers are not hashed, so every version of a
key maps to the same bits.

With 10 bits per key, k = 7 and the expected false-positive rate is about
0.82 %, from ``(1 - exp(-k / bits_per_key)) ** k``.
"""

from __future__ import annotations

import math

import xxhash

__all__ = [
    "MAX_PROBES",
    "MIN_FILTER_BITS",
    "BloomFilter",
    "BloomFilterBuilder",
    "expected_false_positive_rate",
    "key_hash",
    "probes_for",
]

#: Upper limit of the number of probes: more probes cost time and, beyond
#: about 30, no longer lower the false-positive rate for any sensible size.
MAX_PROBES = 30

#: Smallest bit array written, so that a table with very few keys does not
#: get a filter that is almost always positive.
MIN_FILTER_BITS = 64

_xxh64 = xxhash.xxh64_intdigest

#: The hash of a user key that the filter probes with: xxh64, seed 0.
key_hash = _xxh64

# _BIT_MASKS[i] selects bit i of a byte.
_BIT_MASKS = bytes(1 << i for i in range(8))


def probes_for(bits_per_key: int) -> int:
    """Return the number of probes k = round(bits_per_key * ln 2), clamped to 1..30."""
    return max(1, min(MAX_PROBES, round(bits_per_key * math.log(2))))


def expected_false_positive_rate(bits_per_key: int) -> float:
    """Return the textbook false-positive rate of a filter with ``bits_per_key``."""
    if bits_per_key <= 0:
        return 1.0
    probes = probes_for(bits_per_key)
    return (1.0 - math.exp(-probes / bits_per_key)) ** probes


class BloomFilterBuilder:
    """A collector of user keys that produces the filter block contents.

    The caller adds each distinct user key once. A repeated key costs
    nothing but time because it sets the same bits.
    """

    def __init__(self, bits_per_key: int) -> None:
        if isinstance(bits_per_key, bool) or not isinstance(bits_per_key, int):
            raise TypeError(
                f"bits_per_key must be an int, not {type(bits_per_key).__name__}"
            )
        if bits_per_key < 1:
            raise ValueError(f"bits_per_key must be >= 1, not {bits_per_key}")
        self.bits_per_key = bits_per_key
        self.probes = probes_for(bits_per_key)
        self._hashes: list[int] = []
        #: Add the xxh64 (seed 0) of a user key, as ``add_key`` does: the
        #: table builder hashes each key itself and skips a Python call.
        self.add_hash = self._hashes.append
        #: Add the xxh64 (seed 0) of each key of an iterable of keys.
        self.add_hashes = self._hashes.extend

    def __len__(self) -> int:
        """Number of keys added."""
        return len(self._hashes)

    def add_key(self, key: bytes) -> None:
        """Add one user key."""
        self._hashes.append(_xxh64(key))

    def finish(self) -> bytes:
        """Return the filter block contents for every key added so far."""
        bit_count = max(MIN_FILTER_BITS, len(self._hashes) * self.bits_per_key)
        bit_count = (bit_count + 7) // 8 * 8
        bits = bytearray(bit_count // 8)
        probes = self.probes
        masks = _BIT_MASKS
        # The probe sequence of may_contain_hash: h1 mod m, then adding h2
        # mod m and subtracting m on overflow gives (h1 + i * h2) mod m.
        if probes == 7:
            # The default (10 bits per key) unrolled: this loop sets the
            # bits of every key of every table written.
            for hashed in self._hashes:
                bit = (hashed & 0xFFFFFFFF) % bit_count
                step = (hashed >> 32) % bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
                bit += step
                if bit >= bit_count:
                    bit -= bit_count
                bits[bit >> 3] |= masks[bit & 7]
        else:
            for hashed in self._hashes:
                bit = (hashed & 0xFFFFFFFF) % bit_count
                step = (hashed >> 32) % bit_count
                for _ in range(probes):
                    bits[bit >> 3] |= masks[bit & 7]
                    bit += step
                    if bit >= bit_count:
                        bit -= bit_count
        bits.append(probes)
        return bytes(bits)


class BloomFilter:
    """A decoded filter block that tests whether a user key may be in the table.

    Raises ValueError when ``contents`` cannot be a filter block. The table
    reader turns that into a CorruptionError naming the file and offset.
    """

    __slots__ = ("_bits", "_bit_count", "probes")

    def __init__(self, contents: bytes) -> None:
        if len(contents) < 2:
            raise ValueError(f"filter block of {len(contents)} bytes is too short")
        probes = contents[-1]
        if not 1 <= probes <= MAX_PROBES:
            raise ValueError(
                f"filter block has {probes} probes, expected 1..{MAX_PROBES}"
            )
        self._bits = contents[:-1]
        self._bit_count = len(self._bits) * 8
        self.probes = probes

    @property
    def bits(self) -> bytes:
        """The bit array, without the trailing probe count."""
        return self._bits

    @property
    def bit_count(self) -> int:
        """Size of the bit array in bits."""
        return self._bit_count

    def may_contain(self, key: bytes) -> bool:
        """Return False only if ``key`` was certainly not added to the filter."""
        return self.may_contain_hash(_xxh64(key))

    def may_contain_hash(self, hashed: int) -> bool:
        """Return False only if no key with xxh64 ``hashed`` was added to the filter.

        Point lookups hash the key once with ``key_hash`` and probe every
        table's filter with the result.
        """
        bit_count = self._bit_count
        # (h1 + i * h2) mod m, computed from h1 mod m and h2 mod m by adding
        # and subtracting m: the same bits with smaller, faster integers.
        bit = (hashed & 0xFFFFFFFF) % bit_count
        step = (hashed >> 32) % bit_count
        # Locals: this runs once per point lookup in every table.
        bits = self._bits
        if self.probes == 7:
            # The default (10 bits per key) unrolled, which saves the loop's
            # overhead: about a third of the time of a negative result.
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
            return bits[bit >> 3] & _BIT_MASKS[bit & 7] != 0
        for _ in range(self.probes):
            if not bits[bit >> 3] & _BIT_MASKS[bit & 7]:
                return False
            bit += step
            if bit >= bit_count:
                bit -= bit_count
        return True
