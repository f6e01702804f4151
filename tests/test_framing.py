"""Record framing: round trips, truncation, bit flips, zeroed and invalid headers.

Every test runs against both implementations: the pure-Python reference
``storekit._framing_py`` and the cffi module ``storekit._framing_c``.
"""

from __future__ import annotations

import array
import importlib
import mmap
import random
import struct

import pytest
import xxhash

from storekit import _framing_py

BLOCK_SIZE = _framing_py.BLOCK_SIZE
HEADER_SIZE = _framing_py.HEADER_SIZE
FULL, FIRST, MIDDLE, LAST = (
    _framing_py.FULL,
    _framing_py.FIRST,
    _framing_py.MIDDLE,
    _framing_py.LAST,
)
STATUS_OK = _framing_py.STATUS_OK
STATUS_TRUNCATED = _framing_py.STATUS_TRUNCATED
STATUS_CORRUPT = _framing_py.STATUS_CORRUPT

# Offsets inside a block where padding and splitting change behaviour.
EDGE_OFFSETS = [
    0,
    1,
    BLOCK_SIZE - HEADER_SIZE - 1,
    BLOCK_SIZE - HEADER_SIZE,
    BLOCK_SIZE - HEADER_SIZE + 1,
    BLOCK_SIZE - 1,
]
EDGE_SIZES = [
    0,
    1,
    BLOCK_SIZE - HEADER_SIZE - 1,
    BLOCK_SIZE - HEADER_SIZE,
    BLOCK_SIZE - HEADER_SIZE + 1,
    BLOCK_SIZE,
    3 * BLOCK_SIZE + 5,
]


def load_c_framing():
    """Return storekit._framing_c, or skip the test when it is not built."""
    try:
        return importlib.import_module("storekit._framing_c")
    except ImportError as error:
        pytest.skip(
            f"the C extension storekit._cframing is not built ({error}); "
            "reinstall storekit where a C compiler is available, or run "
            "`python setup.py build_ext --inplace` in a source checkout"
        )


@pytest.fixture(params=["python", "cffi"])
def framing(request):
    if request.param == "python":
        return _framing_py
    return load_c_framing()


def padding_before(block_offset: int) -> int:
    """Return how many zero bytes frame() writes before the first header."""
    left = BLOCK_SIZE - block_offset
    return left if left < HEADER_SIZE else 0


def build_log(framing, payloads: list[bytes], base_offset: int):
    """Frame ``payloads`` one after another, starting at file offset ``base_offset``.

    Returns the log and, per record, ``(begin, end)``: the buffer index of
    its first header and the index just after its last payload byte.
    """
    log = bytearray()
    spans = []
    for payload in payloads:
        block_offset = (base_offset + len(log)) % BLOCK_SIZE
        begin = len(log) + padding_before(block_offset)
        log += framing.frame(payload, block_offset)
        spans.append((begin, len(log)))
    return bytes(log), spans


def assemble(buffer, fragments) -> list[bytes]:
    """Join scan() fragments into the payloads of whole records."""
    records = []
    parts: list[bytes] = []
    for payload_start, length, kind in fragments:
        parts.append(bytes(buffer[payload_start : payload_start + length]))
        if kind in (FULL, LAST):
            records.append(b"".join(parts))
            parts = []
    assert parts == [], "scan returned fragments of an incomplete record"
    return records


def make_fragment(payload: bytes, kind: int) -> bytes:
    """Return one fragment with a correct checksum, built without storekit."""
    length_type = struct.pack("<HB", len(payload), kind)
    digest = xxhash.xxh32_intdigest(length_type + payload)
    return struct.pack("<I", digest) + length_type + payload


def fragment_headers(buffer: bytes, spans) -> list[int]:
    """Return the buffer index of every fragment header in a clean log."""
    headers = []
    for begin, end in spans:
        position = begin
        while position < end:
            headers.append(position)
            (length,) = struct.unpack_from("<H", buffer, position + 4)
            position += HEADER_SIZE + length
    return headers


def test_frame_bytes_follow_format(framing):
    assert framing.frame(b"abc", 0) == make_fragment(b"abc", FULL)
    assert framing.frame(b"", 100) == make_fragment(b"", FULL)

    # 20 bytes left in the block: a FIRST fragment with 13 payload bytes,
    # then the rest in a LAST fragment at the next block start.
    payload = bytes(range(40))
    expected = make_fragment(payload[:13], FIRST) + make_fragment(payload[13:], LAST)
    assert framing.frame(payload, BLOCK_SIZE - 20) == expected

    # 5 bytes left: zero padding, then the whole record in the next block.
    expected = bytes(5) + make_fragment(payload, FULL)
    assert framing.frame(payload, BLOCK_SIZE - 5) == expected

    # A payload spanning three blocks: FIRST, MIDDLE and LAST.
    per_block = BLOCK_SIZE - HEADER_SIZE
    payload = random.Random(5).randbytes(2 * per_block + 10)
    expected = (
        make_fragment(payload[:per_block], FIRST)
        + make_fragment(payload[per_block : 2 * per_block], MIDDLE)
        + make_fragment(payload[2 * per_block :], LAST)
    )
    assert framing.frame(payload, 0) == expected


def test_round_trip_at_block_edges(framing):
    payload_source = random.Random(7).randbytes(max(EDGE_SIZES))
    for block_offset in EDGE_OFFSETS:
        for size in EDGE_SIZES:
            payload = payload_source[:size]
            data = framing.frame(payload, block_offset)
            assert len(data) == framing.framed_size(size, block_offset)
            assert data[: padding_before(block_offset)] == bytes(
                padding_before(block_offset)
            )

            fragments, next_position, status, bad, reason = framing.scan(
                data, 0, block_offset
            )
            assert status == STATUS_OK
            assert next_position == len(data)
            assert bad == -1
            assert reason == _framing_py.REASON_NONE
            assert assemble(data, fragments) == [payload]

            kinds = [kind for _, _, kind in fragments]
            if len(kinds) == 1:
                assert kinds == [FULL]
            else:
                assert kinds == [FIRST] + [MIDDLE] * (len(kinds) - 2) + [LAST]
            for payload_start, length, _ in fragments:
                header_block = (
                    block_offset + payload_start - HEADER_SIZE
                ) // BLOCK_SIZE
                end_block = (block_offset + payload_start + length - 1) // BLOCK_SIZE
                assert length == 0 or header_block == end_block


def test_scan_long_log(framing):
    rng = random.Random(11)
    sizes = [rng.choice([0, 1, 20, 300, 5000, 40000, 70000]) for _ in range(60)]
    payloads = [rng.randbytes(size) for size in sizes]
    base_offset = 3 * BLOCK_SIZE - 3
    log, spans = build_log(framing, payloads, base_offset)

    fragments, next_position, status, _, _ = framing.scan(log, 0, base_offset)
    assert status == STATUS_OK
    assert next_position == len(log)
    assert assemble(log, fragments) == payloads

    # Scanning from any record's first header returns that record onwards.
    for index in (1, 17, 59):
        begin = spans[index][0]
        fragments, next_position, status, _, _ = framing.scan(log, begin, base_offset)
        assert status == STATUS_OK
        assert assemble(log, fragments) == payloads[index:]


def test_scan_of_empty_range_is_ok(framing):
    assert framing.scan(b"", 0, 0) == ([], 0, STATUS_OK, -1, 0)
    log = framing.frame(b"abc", 0)
    assert framing.scan(log, len(log), 0) == ([], len(log), STATUS_OK, -1, 0)


def test_scan_accepts_bytes_like_types(framing, tmp_path):
    payloads = [b"alpha", b"", b"x" * 40000]
    log, _ = build_log(framing, payloads, 100)
    expected = framing.scan(log, 0, 100)
    assert assemble(log, expected[0]) == payloads

    assert framing.scan(bytearray(log), 0, 100) == expected
    assert framing.scan(memoryview(log), 0, 100) == expected
    assert framing.scan(array.array("b", log), 0, 100) == expected

    path = tmp_path / "log"
    path.write_bytes(log)
    with open(path, "rb") as handle:
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert framing.scan(mapped, 0, 100) == expected
            assert framing.first_valid_header(mapped, 100, 0) == BLOCK_SIZE - 100

    payload = b"payload"
    assert framing.frame(bytearray(payload), 5) == framing.frame(payload, 5)
    assert framing.frame(memoryview(payload), 5) == framing.frame(payload, 5)
    assert framing.checksum(bytearray(payload)) == xxhash.xxh32_intdigest(payload)


# Small logs that start shortly before a block boundary. In "padding", the
# third record leaves 3 bytes in the block, so zero padding follows it. In
# "split", the second record is split into FIRST and LAST fragments.
SMALL_LOGS = {
    "padding": (BLOCK_SIZE - 150, [b"", b"a" * 10, b"b" * 116, b"c" * 30, b"d" * 5]),
    "split": (BLOCK_SIZE - 100, [b"a" * 10, b"b" * 200, b"", b"c" * 20]),
}


@pytest.fixture(params=sorted(SMALL_LOGS))
def small_log(request, framing):
    """Return ``(base_offset, payloads, log, spans)`` for one of SMALL_LOGS."""
    base_offset, payloads = SMALL_LOGS[request.param]
    log, spans = build_log(framing, payloads, base_offset)
    fragments = framing.scan(log, 0, base_offset)[0]
    if request.param == "padding":
        assert spans[3][0] == spans[2][1] + 3
    else:
        assert len(fragments) == len(payloads) + 1
    return base_offset, payloads, log, spans


def test_truncated_log_returns_record_prefix(framing, small_log):
    base_offset, payloads, log, spans = small_log
    for cut in range(len(log) + 1):
        fragments, next_position, status, bad, reason = framing.scan(
            log[:cut], 0, base_offset
        )
        complete = [i for i, (_, end) in enumerate(spans) if end <= cut]
        assert assemble(log, fragments) == payloads[: len(complete)], cut
        assert bad == -1
        assert reason == _framing_py.REASON_NONE

        following = len(complete)
        if following == len(spans) or cut <= spans[following][0]:
            # The cut falls on a record boundary or inside block padding.
            assert status == STATUS_OK, cut
            assert next_position == cut
        else:
            assert status == STATUS_TRUNCATED, cut
            assert next_position == spans[following][0]


def expected_flip_result(log: bytes, base_offset: int, spans, headers, index: int):
    """Return ``(status, bad_position, reason, damaged_record)`` for a flip at ``index``.

    ``damaged_record`` is the index of the record that the flip damages, or
    None when the flipped byte is block padding, which scan() skips.
    """
    flipped_header = None
    for header in headers:
        (length,) = struct.unpack_from("<H", log, header + 4)
        if header <= index < header + HEADER_SIZE + length:
            flipped_header = header
            break
    if flipped_header is None:
        return STATUS_OK, -1, _framing_py.REASON_NONE, None

    record = next(i for i, (begin, end) in enumerate(spans) if begin <= index < end)
    checksum_mismatch = (
        STATUS_CORRUPT,
        flipped_header,
        _framing_py.REASON_CHECKSUM,
        record,
    )
    field = index - flipped_header
    if field == 6:
        kind = log[index]
        if not FULL <= kind <= LAST:
            return STATUS_CORRUPT, flipped_header, _framing_py.REASON_BAD_TYPE, record
    elif field in (4, 5):
        (length,) = struct.unpack_from("<H", log, flipped_header + 4)
        block_left = BLOCK_SIZE - (base_offset + flipped_header) % BLOCK_SIZE
        if HEADER_SIZE + length > block_left:
            return STATUS_CORRUPT, flipped_header, _framing_py.REASON_BAD_LENGTH, record
        if flipped_header + HEADER_SIZE + length > len(log):
            return STATUS_TRUNCATED, -1, _framing_py.REASON_NONE, record
    return checksum_mismatch


def test_bit_flip_reports_reason(framing, small_log):
    base_offset, payloads, clean, spans = small_log
    headers = fragment_headers(clean, spans)

    for index in range(len(clean)):
        for bit in range(8):
            damaged = bytearray(clean)
            damaged[index] ^= 1 << bit
            damaged = bytes(damaged)
            status, bad, reason, record = expected_flip_result(
                damaged, base_offset, spans, headers, index
            )
            fragments, next_position, got_status, got_bad, got_reason = framing.scan(
                damaged, 0, base_offset
            )
            where = f"bit {bit} of byte {index}"
            assert got_status == status, where
            assert got_bad == bad, where
            assert got_reason == reason, where
            if record is None:
                assert assemble(damaged, fragments) == payloads, where
                assert next_position == len(damaged), where
            else:
                assert assemble(damaged, fragments) == payloads[:record], where
                assert next_position == spans[record][0], where


def test_zero_header_reports_zeros(framing):
    payloads = [b"one", b"two" * 100]
    log, spans = build_log(framing, payloads, 0)

    # A preallocated tail that was never written.
    fragments, next_position, status, bad, reason = framing.scan(
        log + bytes(4096), 0, 0
    )
    assert status == STATUS_CORRUPT
    assert reason == _framing_py.REASON_ZEROS
    assert bad == len(log)
    assert next_position == len(log)
    assert assemble(log, fragments) == payloads

    # A zeroed record between two good ones.
    middle = log + bytes(HEADER_SIZE + 20) + framing.frame(b"after", len(log) + 27)
    result = framing.scan(middle, 0, 0)
    assert result[2:] == (STATUS_CORRUPT, len(log), _framing_py.REASON_ZEROS)

    assert framing.scan(bytes(BLOCK_SIZE), 0, 0)[1:] == (
        0,
        STATUS_CORRUPT,
        0,
        _framing_py.REASON_ZEROS,
    )


def test_block_padding_skipped(framing):
    base_offset = BLOCK_SIZE - 3
    # Three bytes of padding, then a record at the next block start.
    log = bytes(3) + framing.frame(b"next block", 0)
    assert framing.frame(b"next block", base_offset) == log
    fragments, next_position, status, _, _ = framing.scan(log, 0, base_offset)
    assert status == STATUS_OK
    assert assemble(log, fragments) == [b"next block"]
    # A buffer that ends inside block padding is fully consumed.
    assert framing.scan(bytes(3), 0, base_offset) == ([], 3, STATUS_OK, -1, 0)
    assert framing.scan(bytes(2), 0, base_offset) == ([], 2, STATUS_OK, -1, 0)


def test_padding_inside_record_skipped(framing):
    # frame() never writes this, but the format allows it: a FIRST fragment
    # leaves 3 bytes in its block, and the LAST fragment starts the next.
    base_offset = BLOCK_SIZE - 20
    first = make_fragment(b"x" * 10, FIRST)
    log = first + bytes(3) + make_fragment(b"y" * 4, LAST)
    fragments, next_position, status, _, _ = framing.scan(log, 0, base_offset)
    assert status == STATUS_OK
    assert next_position == len(log)
    assert assemble(log, fragments) == [b"x" * 10 + b"y" * 4]

    # Cut inside the padding or the LAST fragment: the record restarts at 0.
    for cut in (len(first) + 1, len(first) + 3, len(log) - 1):
        result = framing.scan(log[:cut], 0, base_offset)
        assert result == ([], 0, STATUS_TRUNCATED, -1, 0), cut


def test_invalid_fragment_reports_reason(framing):
    good = make_fragment(b"good", FULL)

    bad_type = make_fragment(b"payload", 9)
    assert framing.scan(good + bad_type, 0, 0)[1:] == (
        len(good),
        STATUS_CORRUPT,
        len(good),
        _framing_py.REASON_BAD_TYPE,
    )

    # A length that runs past the block even though the buffer is longer.
    too_long = make_fragment(b"", FULL)[:4] + struct.pack("<HB", BLOCK_SIZE, FULL)
    buffer = good + too_long + bytes(2 * BLOCK_SIZE)
    assert framing.scan(buffer, 0, 0)[1:] == (
        len(good),
        STATUS_CORRUPT,
        len(good),
        _framing_py.REASON_BAD_LENGTH,
    )

    lone_middle = make_fragment(b"orphan", MIDDLE)
    assert framing.scan(good + lone_middle, 0, 0)[1:] == (
        len(good),
        STATUS_CORRUPT,
        len(good),
        _framing_py.REASON_ORDER,
    )
    first_then_full = make_fragment(b"head", FIRST) + make_fragment(b"x", FULL)
    assert framing.scan(good + first_then_full, 0, 0)[1:] == (
        len(good),
        STATUS_CORRUPT,
        len(good) + len(make_fragment(b"head", FIRST)),
        _framing_py.REASON_ORDER,
    )

    # A valid fragment sequence built by hand is accepted.
    split = make_fragment(b"ab", FIRST) + make_fragment(b"cd", MIDDLE)
    split += make_fragment(b"ef", LAST)
    fragments, _, status, _, _ = framing.scan(good + split, 0, 0)
    assert status == STATUS_OK
    assert assemble(good + split, fragments) == [b"good", b"abcdef"]


def test_first_valid_header_finds_next_block(framing):
    base_offset = 1000
    payloads = [bytes([i]) * 3000 for i in range(40)]
    log, _ = build_log(framing, payloads, base_offset)
    second_block = BLOCK_SIZE - base_offset
    third_block = second_block + BLOCK_SIZE

    damaged = bytearray(log)
    damaged[10] ^= 0xFF
    damaged = bytes(damaged)
    assert framing.scan(damaged, 0, base_offset)[2] == STATUS_CORRUPT
    assert framing.first_valid_header(damaged, base_offset, 11) == second_block
    assert (
        framing.first_valid_header(damaged, base_offset, second_block) == second_block
    )
    assert (
        framing.first_valid_header(damaged, base_offset, second_block + 1)
        == third_block
    )

    # Damage the header at the second block start: the search moves on.
    damaged = bytearray(damaged)
    damaged[second_block] ^= 0x01
    damaged = bytes(damaged)
    assert framing.first_valid_header(damaged, base_offset, 11) == third_block

    # No block start after the position has a valid header.
    assert framing.first_valid_header(damaged, base_offset, len(damaged) - 5) == -1
    assert framing.first_valid_header(damaged, base_offset, len(damaged) + 10) == -1
    assert framing.first_valid_header(bytes(3 * BLOCK_SIZE), 0, 0) == -1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda f: f.frame("text", 0), TypeError, "payload must be a bytes-like"),
        (lambda f: f.frame(b"x", 1.0), TypeError, "block_offset must be an int"),
        (lambda f: f.frame(b"x", True), TypeError, "block_offset must be an int"),
        (lambda f: f.frame(b"x", -1), ValueError, "block_offset must be between"),
        (lambda f: f.frame(b"x", BLOCK_SIZE), ValueError, "block_offset must be"),
        (lambda f: f.framed_size(-1, 0), ValueError, "length must be between"),
        (lambda f: f.framed_size(2**63, 0), ValueError, "length must be between"),
        (lambda f: f.framed_size(1, BLOCK_SIZE), ValueError, "block_offset"),
        (lambda f: f.framed_size("1", 0), TypeError, "length must be an int"),
        (lambda f: f.scan(None, 0, 0), TypeError, "buffer must be a bytes-like"),
        (lambda f: f.scan(b"abc", 4, 0), ValueError, "start must be between"),
        (lambda f: f.scan(b"abc", -1, 0), ValueError, "start must be between"),
        (lambda f: f.scan(b"abc", 0, -1), ValueError, "base_offset must be"),
        (lambda f: f.scan(b"abc", 0, 2**63), ValueError, "base_offset must be"),
        (lambda f: f.scan(b"abc", 0.0, 0), TypeError, "start must be an int"),
        (
            lambda f: f.scan(array.array("I", [1, 2]), 0, 0),
            TypeError,
            "buffer must be a contiguous one-dimensional buffer of bytes",
        ),
        (
            lambda f: f.scan(memoryview(b"abcdef")[::2], 0, 0),
            TypeError,
            "buffer must be a contiguous",
        ),
        (
            lambda f: f.first_valid_header(b"abc", 0, -1),
            ValueError,
            "from_position must be between",
        ),
        (
            lambda f: f.first_valid_header(b"abc", -5, 0),
            ValueError,
            "base_offset must be",
        ),
        (lambda f: f.checksum("text"), TypeError, "data must be a bytes-like"),
    ],
)
def test_invalid_arguments_raise(framing, call, error, message):
    with pytest.raises(error, match=message):
        call(framing)
