"""The backend switch and the parity of the C and pure-Python framing modules.

``storekit._framing_c`` must return the same bytes, the same scan results
and the same exceptions as the reference ``storekit._framing_py`` for every
input, and its XXH32 must equal the xxhash package's.
"""

from __future__ import annotations

import array
import importlib
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storekit
from storekit import _framing_py

BLOCK_SIZE = _framing_py.BLOCK_SIZE
HEADER_SIZE = _framing_py.HEADER_SIZE
MAX_OFFSET = 2**63 - 1

PARITY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def c_framing_or_none():
    try:
        return importlib.import_module("storekit._framing_c")
    except ImportError:
        return None


@pytest.fixture(scope="module")
def c_framing():
    module = c_framing_or_none()
    if module is None:
        pytest.skip(
            "the C extension storekit._cframing is not built; "
            "reinstall storekit where a C compiler is available, or run "
            "`python setup.py build_ext --inplace` in a source checkout"
        )
    return module


def outcome(function, *arguments):
    """Return ``("ok", result)`` or ``("raised", type, message)`` of a call."""
    try:
        return ("ok", function(*arguments))
    except Exception as error:  # the exception is the result to compare
        return ("raised", type(error), str(error))


def backend_in_subprocess(tmp_path: Path, purepython: str | None) -> str:
    """Return storekit.backend as seen by a fresh interpreter."""
    env = dict(os.environ)
    env.pop("STOREKIT_PUREPYTHON", None)
    if purepython is not None:
        env["STOREKIT_PUREPYTHON"] = purepython
    # Import the same storekit as this test process, installed or not.
    env["PYTHONPATH"] = str(Path(storekit.__file__).resolve().parents[1])
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import storekit, storekit._backend as b; "
            "print(storekit.backend, b.framing.__name__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


# Backend selection.


def test_backend_selection_in_subprocess(tmp_path):
    built = c_framing_or_none() is not None
    expected = "cffi storekit._framing_c" if built else "python storekit._framing_py"
    assert backend_in_subprocess(tmp_path, None) == expected
    assert backend_in_subprocess(tmp_path, "0") == expected
    assert backend_in_subprocess(tmp_path, "") == expected
    assert backend_in_subprocess(tmp_path, "1") == "python storekit._framing_py"


def test_backend_in_this_process():
    purepython = os.environ.get("STOREKIT_PUREPYTHON", "") not in ("", "0")
    built = c_framing_or_none() is not None
    expected = "cffi" if built and not purepython else "python"
    assert storekit.backend == expected


def test_c_module_reference_names(c_framing):
    def public(module):
        """Return the module's public constants and functions."""
        names = {}
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            if name.isupper() or isinstance(value, types.FunctionType):
                names[name] = value
        return names

    reference = public(_framing_py)
    compiled = public(c_framing)
    assert sorted(compiled) == sorted(reference)
    for name, value in reference.items():
        if not callable(value):
            assert compiled[name] == value, name


def test_c_constants_match(c_framing):
    from storekit._cframing import lib

    assert lib.SK_BLOCK_SIZE == _framing_py.BLOCK_SIZE
    assert lib.SK_HEADER_SIZE == _framing_py.HEADER_SIZE
    assert lib.SK_STATUS_OK == _framing_py.STATUS_OK
    assert lib.SK_STATUS_TRUNCATED == _framing_py.STATUS_TRUNCATED
    assert lib.SK_STATUS_CORRUPT == _framing_py.STATUS_CORRUPT
    # SK_STATUS_FULL never leaves _framing_c, so it must not collide with a
    # status that scan() returns.
    public_statuses = {
        _framing_py.STATUS_OK,
        _framing_py.STATUS_TRUNCATED,
        _framing_py.STATUS_CORRUPT,
    }
    assert lib.SK_STATUS_FULL not in public_statuses


# XXH32.


def c_xxh32(data: bytes, seed: int) -> int:
    from storekit._cframing import ffi, lib

    with ffi.from_buffer(data) as pointer:
        return lib.sk_xxh32(pointer, len(data), seed)


@PARITY_SETTINGS
@given(data=st.binary(max_size=300), seed=st.integers(0, 2**32 - 1))
def test_xxh32_matches_xxhash(c_framing, data, seed):
    assert c_xxh32(data, seed) == xxhash.xxh32_intdigest(data, seed)
    assert c_framing.checksum(data) == xxhash.xxh32_intdigest(data)


def test_xxh32_tails_and_alignments(c_framing):
    data = random.Random(3).randbytes(1 << 20)
    for length in range(70):
        for start in range(4):
            piece = data[start : start + length]
            assert c_xxh32(piece, 0) == xxhash.xxh32_intdigest(piece), length
            assert c_framing.checksum(memoryview(data)[start : start + length]) == (
                xxhash.xxh32_intdigest(piece)
            )
    for seed in (0, 1, 0x9E3779B1, 2**32 - 1):
        assert c_xxh32(data, seed) == xxhash.xxh32_intdigest(data, seed)


# frame and framed_size.


block_offsets = st.one_of(
    st.sampled_from(
        [0, 1, BLOCK_SIZE - HEADER_SIZE - 1, BLOCK_SIZE - HEADER_SIZE, BLOCK_SIZE - 1]
    ),
    st.integers(0, BLOCK_SIZE - 1),
)


@st.composite
def payloads(draw) -> bytes:
    """Short arbitrary payloads, and long ones made by repeating a pattern."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    size = draw(st.integers(0, 3 * BLOCK_SIZE + 100))
    pattern = draw(st.binary(min_size=1, max_size=16))
    return (pattern * (size // len(pattern) + 1))[:size]


@PARITY_SETTINGS
@given(payload=payloads(), block_offset=block_offsets)
def test_frame_parity(c_framing, payload, block_offset):
    expected = _framing_py.frame(payload, block_offset)
    assert c_framing.frame(payload, block_offset) == expected
    assert c_framing.framed_size(len(payload), block_offset) == len(expected)


@PARITY_SETTINGS
@given(length=st.integers(0, 40 * BLOCK_SIZE), block_offset=block_offsets)
def test_framed_size_parity(c_framing, length, block_offset):
    assert c_framing.framed_size(length, block_offset) == _framing_py.framed_size(
        length, block_offset
    )


def test_framed_size_whole_blocks(c_framing):
    # m payloads of BLOCK_SIZE - HEADER_SIZE bytes fill exactly m blocks; the
    # reference loops once per block, so it is only asked for small m.
    per_block = BLOCK_SIZE - HEADER_SIZE
    for blocks in (1, 2, 7, 1000):
        assert _framing_py.framed_size(blocks * per_block, 0) == blocks * BLOCK_SIZE
    for blocks in (1, 2, 7, 1000, 2**40, MAX_OFFSET // per_block):
        assert c_framing.framed_size(blocks * per_block, 0) == blocks * BLOCK_SIZE
    assert c_framing.framed_size(MAX_OFFSET, BLOCK_SIZE - 1) > MAX_OFFSET


# scan and first_valid_header.


@st.composite
def damaged_logs(draw):
    """Return ``(buffer, base_offset)``: a framed log with arbitrary damage."""
    base_offset = draw(
        st.one_of(
            st.integers(0, 3 * BLOCK_SIZE),
            st.sampled_from([BLOCK_SIZE - 1, BLOCK_SIZE - 7, BLOCK_SIZE - 8]),
            st.integers(0, MAX_OFFSET),
        )
    )
    sizes = draw(
        st.lists(
            st.one_of(
                st.integers(0, 64),
                st.sampled_from([BLOCK_SIZE - HEADER_SIZE, BLOCK_SIZE]),
                st.integers(0, 2 * BLOCK_SIZE),
            ),
            max_size=6,
        )
    )
    rng = random.Random(draw(st.integers(0, 2**32)))
    log = bytearray()
    for size in sizes:
        log += _framing_py.frame(
            rng.randbytes(size), (base_offset + len(log)) % BLOCK_SIZE
        )

    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "set", "zero", "cut", "insert", "copy"]))
        position = draw(st.integers(0, len(log)))
        if kind == "flip" and position < len(log):
            log[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and position < len(log):
            log[position] = draw(st.integers(0, 255))
        elif kind == "zero":
            span = draw(st.integers(1, 64))
            log[position : position + span] = bytes(
                len(log[position : position + span])
            )
        elif kind == "cut":
            del log[position:]
        elif kind == "insert":
            log[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "copy" and log:
            source = draw(st.integers(0, len(log) - 1))
            log[position:position] = log[source : source + draw(st.integers(1, 64))]
    return bytes(log), base_offset


@PARITY_SETTINGS
@given(log=damaged_logs(), start_choice=st.integers(0, 2**32))
def test_scan_parity(c_framing, log, start_choice):
    buffer, base_offset = log
    for start in {0, start_choice % (len(buffer) + 1), len(buffer)}:
        expected = _framing_py.scan(buffer, start, base_offset)
        assert c_framing.scan(buffer, start, base_offset) == expected


@PARITY_SETTINGS
@given(
    buffer=st.binary(max_size=200),
    start_choice=st.integers(0, 2**32),
    base_offset=st.integers(0, MAX_OFFSET),
)
def test_scan_random_bytes_parity(c_framing, buffer, start_choice, base_offset):
    start = start_choice % (len(buffer) + 1)
    expected = _framing_py.scan(buffer, start, base_offset)
    assert c_framing.scan(buffer, start, base_offset) == expected


@PARITY_SETTINGS
@given(log=damaged_logs(), from_position=st.integers(0, 5 * BLOCK_SIZE))
def test_first_valid_header_parity(c_framing, log, from_position):
    buffer, base_offset = log
    expected = _framing_py.first_valid_header(buffer, base_offset, from_position)
    got = c_framing.first_valid_header(buffer, base_offset, from_position)
    assert got == expected


@pytest.mark.parametrize("per_call", [1, 2, 3])
def test_scan_resumes_when_array_full(c_framing, monkeypatch, per_call):
    # A small per-call limit makes the C scan stop and resume many times,
    # and grow its array for records with more fragments than the limit.
    monkeypatch.setattr(c_framing, "_MAX_FRAGMENTS_PER_CALL", per_call)
    rng = random.Random(per_call)
    log = bytearray()
    base_offset = BLOCK_SIZE - 50
    for size in [0, 10, 3 * BLOCK_SIZE, 5, BLOCK_SIZE, 0, 7 * BLOCK_SIZE, 1]:
        log += _framing_py.frame(
            rng.randbytes(size), (base_offset + len(log)) % BLOCK_SIZE
        )
    log = bytes(log)
    for buffer in (log, log[:-3], log[: len(log) // 2], log + bytes(20)):
        expected = _framing_py.scan(buffer, 0, base_offset)
        assert c_framing.scan(buffer, 0, base_offset) == expected


def test_scan_many_records_parity(c_framing):
    # More fragments than one C call returns by default (65536): a block
    # holds 4681 empty records and one byte of padding.
    block = _framing_py.frame(b"", 0) * 4681 + bytes(1)
    assert len(block) == BLOCK_SIZE
    log = block * 15
    expected = _framing_py.scan(log, 0, 0)
    assert len(expected[0]) == 15 * 4681
    assert c_framing.scan(log, 0, 0) == expected


# Argument checks.


# Arguments of each kind that a caller might pass by mistake, plus valid ones.
any_int = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, BLOCK_SIZE - 1, BLOCK_SIZE, MAX_OFFSET, MAX_OFFSET + 1]),
)
any_argument = st.one_of(
    any_int,
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.just(array.array("I", [1, 2, 3])),
    st.just(memoryview(b"abcdef")[::2]),
)


@PARITY_SETTINGS
@given(first=any_argument, second=any_argument, third=any_argument)
def test_invalid_arguments_parity(c_framing, first, second, third):
    # The reference framed_size loops once per block, so valid lengths are
    # kept small; invalid ones are passed unchanged.
    length = first
    if type(first) is int and 0 <= first <= MAX_OFFSET:
        length = first % (10 * BLOCK_SIZE)
    calls = [
        ("frame", (first, second)),
        ("framed_size", (length, second)),
        ("scan", (first, second, third)),
        ("first_valid_header", (first, second, third)),
        ("checksum", (first,)),
    ]
    for name, arguments in calls:
        expected = outcome(getattr(_framing_py, name), *arguments)
        got = outcome(getattr(c_framing, name), *arguments)
        assert got == expected, name


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(log=damaged_logs(), start_choice=st.integers(0, 2**32))
def test_scan_parity_long_run(c_framing, log, start_choice):
    buffer, base_offset = log
    start = start_choice % (len(buffer) + 1)
    expected = _framing_py.scan(buffer, start, base_offset)
    assert c_framing.scan(buffer, start, base_offset) == expected
    for position in (0, start, len(buffer) // 2):
        assert c_framing.first_valid_header(
            buffer, base_offset, position
        ) == _framing_py.first_valid_header(buffer, base_offset, position)
