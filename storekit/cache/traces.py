"""Readers for cache access traces in the common published formats.

Every reader yields one key per request, in request order. Numeric keys are
returned as ``int`` so that replays hash them quickly; other keys are ``str``.
Files may be gzip or xz compressed: the compression is detected from the
first bytes of the file, not from its name.

Formats (the ``format`` argument of :func:`iter_trace` and ``cache-sim``):

``lines``
    One key per line. Empty lines and lines that are a single ``*`` (the
    checkpoint markers of the LIRS traces) are skipped. A line that is a
    decimal integer becomes an ``int``, so ``012`` and ``12`` are one key.
``csv``
    One column of a CSV file, chosen by header name or 0-based index.
``arc``
    The ARC paper's ``.lis`` traces: each line ``start count _ _`` stands for
    ``count`` page requests ``start, start + 1, ..., start + count - 1``.
``int32be``
    A flat sequence of big-endian signed 32-bit integers with no header, one
    key per request (the cache2k traces).
``oracle``
    libCacheSim's oracleGeneral binary: packed little-endian 24-byte records
    ``<uint32 timestamp, uint64 obj_id, uint32 obj_size, int64 next_access>``.
    The key is ``obj_id``; :func:`iter_oracle_general` also yields the size.
"""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Hashable, Iterator, Sequence
from typing import BinaryIO

__all__ = [
    "FORMATS",
    "detect_format",
    "iter_oracle_general",
    "iter_trace",
    "load_trace",
    "open_trace_file",
]

#: Trace formats that :func:`iter_trace` reads.
FORMATS = ("lines", "csv", "arc", "int32be", "oracle")

_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ORACLE_RECORD = struct.Struct("<IQIq")

# Header names that ``csv`` traces commonly give the key column, tried in order
# when no column is named.
_CSV_KEY_COLUMNS = ("key", "obj_id", "object_id", "id", "lbn", "block")

_READ_CHUNK = 1 << 20


def open_trace_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing gzip or xz by its magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if magic.startswith(_XZ_MAGIC):
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    return raw


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the format of a trace from its name and its first decompressed bytes.

    ``.lis`` names are ``arc``, names containing ``oracleGeneral`` are
    ``oracle`` and ``.csv`` names are ``csv``. Anything else is ``lines`` when
    its first 4 KiB are digits, letters and whitespace, and ``int32be`` when
    they are binary.
    """
    name = os.path.basename(os.fspath(path))
    stem = name
    for suffix in (".gz", ".xz"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem.endswith(".lis"):
        return "arc"
    if "oraclegeneral" in stem.lower():
        return "oracle"
    if stem.endswith(".csv"):
        return "csv"
    with open_trace_file(path) as handle:
        head = handle.read(4096)
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return "int32be"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "lines"
    return "int32be"


# Exceptions a damaged gzip or xz stream raises while it is read.
_DECOMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


def _corrupt_trace(path: str | os.PathLike[str], exc: BaseException) -> ValueError:
    return ValueError(
        f"{os.fspath(path)}: corrupt or truncated compressed trace: {exc}"
    )


def iter_trace(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    column: str | int | None = None,
) -> Iterator[Hashable]:
    """Yield the key of every request in the trace at ``path``.

    ``format`` is one of :data:`FORMATS`, or None to call :func:`detect_format`.
    ``column`` selects the key column of a ``csv`` trace. A damaged gzip or
    xz file raises ValueError naming the path.
    """
    keys = _iter_trace(path, format, column)
    return _translating(path, keys)


def _translating(
    path: str | os.PathLike[str], keys: Iterator[Hashable]
) -> Iterator[Hashable]:
    try:
        yield from keys
    except _DECOMPRESSION_ERRORS as exc:
        raise _corrupt_trace(path, exc) from None


def _iter_trace(
    path: str | os.PathLike[str], format: str | None, column: str | int | None
) -> Iterator[Hashable]:
    if format is None:
        format = detect_format(path)
    if format == "lines":
        return _iter_lines(path)
    if format == "csv":
        return _iter_csv(path, column)
    if format == "arc":
        return _iter_arc(path)
    if format == "int32be":
        return _iter_int32be(path)
    if format == "oracle":
        return (key for key, _size in iter_oracle_general(path))
    raise ValueError(
        f"unknown trace format {format!r}; expected one of {', '.join(FORMATS)}"
    )


def load_trace(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    column: str | int | None = None,
) -> Sequence[Hashable]:
    """Read a whole trace into memory, as compactly as its keys allow.

    Integer keys that fit in 64 bits are stored in an ``array('q')`` of 8
    bytes per request, so the 13.2 million requests of the ARC P12 trace
    take about 106 MB. Any other key makes the result a list. A damaged
    gzip or xz file raises ValueError naming the path.
    """
    try:
        return _load_trace(path, format, column)
    except _DECOMPRESSION_ERRORS as exc:
        raise _corrupt_trace(path, exc) from None


def _load_trace(
    path: str | os.PathLike[str], format: str | None, column: str | int | None
) -> Sequence[Hashable]:
    if format is None:
        format = detect_format(path)
    if format == "arc":
        return _load_arc(path)
    if format == "int32be":
        return array("q", _read_int32be_array(path))
    keys = iter_trace(path, format, column=column)
    packed = array("q")
    append = packed.append
    for key in keys:
        if type(key) is not int or not -(1 << 63) <= key < (1 << 63):
            rest = list(packed)
            rest.append(key)
            rest.extend(keys)
            return rest
        append(key)
    return packed


def iter_oracle_general(path: str | os.PathLike[str]) -> Iterator[tuple[int, int]]:
    """Yield ``(obj_id, obj_size)`` for every record of an oracleGeneral trace."""
    record_size = _ORACLE_RECORD.size
    with open_trace_file(path) as handle:
        offset = 0
        pending = b""
        while True:
            chunk = handle.read(_READ_CHUNK)
            if not chunk:
                break
            data = pending + chunk
            usable = len(data) - len(data) % record_size
            for _time, obj_id, obj_size, _next in _ORACLE_RECORD.iter_unpack(
                memoryview(data)[:usable]
            ):
                yield obj_id, obj_size
            offset += usable
            pending = data[usable:]
        if pending:
            raise ValueError(
                f"{os.fspath(path)}: truncated oracleGeneral record at byte {offset}: "
                f"{len(pending)} of {record_size} bytes"
            )


def _text_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    with open_trace_file(path) as handle:
        yield from io.TextIOWrapper(handle, encoding="utf-8", errors="replace")


def _parse_key(text: str) -> Hashable:
    try:
        return int(text)
    except ValueError:
        return text


def _iter_lines(path: str | os.PathLike[str]) -> Iterator[Hashable]:
    for line in _text_lines(path):
        text = line.strip()
        if not text or text == "*":
            continue
        yield _parse_key(text)


def _iter_csv(
    path: str | os.PathLike[str], column: str | int | None
) -> Iterator[Hashable]:
    rows = csv.reader(_text_lines(path))
    first = next(rows, None)
    if first is None:
        return
    index, has_header = _csv_key_index(path, first, column)
    if not has_header:
        yield _parse_key(first[index].strip())
    for line_number, row in enumerate(rows, start=2):
        if not row:
            continue
        if index >= len(row):
            raise ValueError(
                f"{os.fspath(path)}: line {line_number} has {len(row)} columns, "
                f"but the key column is number {index} (0-based)"
            )
        yield _parse_key(row[index].strip())


def _csv_key_index(
    path: str | os.PathLike[str], first: list[str], column: str | int | None
) -> tuple[int, bool]:
    """Return the key column's index and whether ``first`` is a header row."""
    header = [name.strip() for name in first]
    if isinstance(column, int):
        if not 0 <= column < len(header):
            raise ValueError(
                f"CSV column {column} is out of range: the first row has {len(header)} columns"
            )
        value = header[column]
        return column, not value.lstrip("-").isdigit()
    if isinstance(column, str):
        if column.isdigit():
            return _csv_key_index(path, first, int(column))
        if column not in header:
            raise ValueError(f"CSV column {column!r} not found in header {header}")
        return header.index(column), True
    lowered = [name.lower() for name in header]
    for name in _CSV_KEY_COLUMNS:
        if name in lowered:
            return lowered.index(name), True
    raise ValueError(
        f"{os.fspath(path)}: no key column found in header {header}; "
        "name one with column= (or --column on the command line)"
    )


def _iter_arc(path: str | os.PathLike[str]) -> Iterator[int]:
    for line_number, line in enumerate(_text_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        start, count = _arc_fields(path, line_number, fields)
        yield from range(start, start + count)


def _load_arc(path: str | os.PathLike[str]) -> array:
    pages = array("q")
    extend = pages.extend
    for line_number, line in enumerate(_text_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        start, count = _arc_fields(path, line_number, fields)
        if count == 1:
            pages.append(start)
        else:
            extend(range(start, start + count))
    return pages


def _arc_fields(
    path: str | os.PathLike[str], line_number: int, fields: list[str]
) -> tuple[int, int]:
    try:
        start = int(fields[0])
        count = int(fields[1])
    except (IndexError, ValueError):
        raise ValueError(
            f"{os.fspath(path)}: line {line_number} is not an ARC trace line "
            f"'start count ...': {' '.join(fields)!r}"
        ) from None
    if count < 0:
        raise ValueError(
            f"{os.fspath(path)}: line {line_number} has a negative count {count}"
        )
    return start, count


def _read_int32be_array(path: str | os.PathLike[str]) -> array:
    with open_trace_file(path) as handle:
        data = handle.read()
    if len(data) % 4:
        raise ValueError(
            f"{os.fspath(path)}: {len(data)} bytes is not a whole number of "
            "32-bit keys; the trace is truncated or not in int32be format"
        )
    keys = array("i")
    if keys.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte int
        return array("i", struct.unpack(f">{len(data) // 4}i", data))
    keys.frombytes(data)
    if sys.byteorder == "little":
        keys.byteswap()
    return keys


def _iter_int32be(path: str | os.PathLike[str]) -> Iterator[int]:
    yield from _read_int32be_array(path)
