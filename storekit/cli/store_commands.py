"""Subcommands that use one durable store: put, get, delete, scan, load,
stats, verify and dump-wal."""

from __future__ import annotations

import csv
import gzip
import io
import json
import lzma
import os
import posixpath
import sys
from typing import Any

from .._validate import MAX_KEY_SIZE
from ..batch import KIND_PUT, WriteBatch, decode_batch
from ..errors import CorruptionError
from ..wal import WAL, list_segments
from ._common import Progress, add_json_flag, emit, parse_bytes, show_bytes


def register(subparsers: Any) -> None:
    """Add this module's subcommands to the ``storekit`` parser."""
    parser = subparsers.add_parser("put", help="store one value")
    _add_path(parser)
    parser.add_argument("key", help="the key (UTF-8 text, or hex:... for raw bytes)")
    parser.add_argument(
        "value", help="the value (UTF-8 text, or hex:... for raw bytes)"
    )
    parser.add_argument(
        "--sync",
        choices=("always", "batch", "none"),
        default="always",
        help="durability policy of this write (default: always)",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_put)

    parser = subparsers.add_parser("get", help="print one value")
    _add_path(parser)
    parser.add_argument("key", help="the key (UTF-8 text, or hex:... for raw bytes)")
    add_json_flag(parser)
    parser.set_defaults(func=run_get)

    parser = subparsers.add_parser("delete", help="remove one key")
    _add_path(parser)
    parser.add_argument("key", help="the key (UTF-8 text, or hex:... for raw bytes)")
    add_json_flag(parser)
    parser.set_defaults(func=run_delete)

    parser = subparsers.add_parser("scan", help="list keys and values in key order")
    _add_path(parser)
    parser.add_argument("--prefix", help="only keys that start with this")
    parser.add_argument("--start", help="first key, inclusive")
    parser.add_argument("--end", help="upper bound, exclusive")
    parser.add_argument("--reverse", action="store_true", help="walk from the top down")
    parser.add_argument(
        "--limit", type=_non_negative_int, help="print at most N entries"
    )
    parser.add_argument(
        "--keys-only", action="store_true", help="print keys without values"
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_scan)

    parser = subparsers.add_parser(
        "load", help="import a text, CSV or JSON-lines file as key/value records"
    )
    _add_path(parser)
    parser.add_argument("file", help="the file to import, or - for standard input")
    parser.add_argument(
        "--format",
        choices=("text", "csv", "jsonl"),
        help="file format (default: from the file name; .csv, .jsonl/.ndjson, else text). "
        "text: one key per line, or KEY<TAB>VALUE; csv: one record per row; "
        "jsonl: one JSON object per line",
    )
    parser.add_argument(
        "--key-column",
        default="0",
        help="csv: column name or 0-based index of the key (default 0)",
    )
    parser.add_argument(
        "--value-column",
        default="1",
        help="csv: column name or 0-based index of the value (default 1)",
    )
    parser.add_argument(
        "--key-field", default="key", help="jsonl: field of the key (default key)"
    )
    parser.add_argument(
        "--value-field",
        default="value",
        help="jsonl: field of the value (default value)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1000,
        help="records per atomic write batch (default 1000)",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_load)

    parser = subparsers.add_parser("stats", help="print the store's counters and sizes")
    _add_path(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run_stats)

    parser = subparsers.add_parser(
        "verify", help="check every checksum of the store's files"
    )
    _add_path(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run_verify)

    parser = subparsers.add_parser(
        "sample-data", help="print the path of a data set shipped with storekit"
    )
    parser.add_argument("name", choices=("words",), help="words: 104,334 English words")
    parser.set_defaults(func=run_sample_data)

    parser = subparsers.add_parser("dump-wal", help="print the records of a WAL")
    parser.add_argument("path", help="a store directory or a WAL directory")
    parser.add_argument(
        "--limit", type=_non_negative_int, help="print at most N records"
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_dump_wal)


def _add_path(parser: Any) -> None:
    parser.add_argument("path", help="the store directory")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {text}")
    return value


def _open(path: str, *, write: bool, **options: Any):
    from .._open import open as open_store

    if not write and not os.path.isdir(path):
        if os.path.exists(path):
            raise NotADirectoryError(f"{path} is not a store directory")
        raise FileNotFoundError(f"store directory {path} does not exist")
    if not write and not any(
        os.path.exists(os.path.join(path, name))
        for name in ("CURRENT", "CHECKPOINT", "wal")
    ):
        raise FileNotFoundError(
            f"{path} is not a storekit store: it has no CURRENT, CHECKPOINT or wal/"
        )
    return open_store(path, read_only=not write, **options)


def run_put(args: Any) -> int:
    with _open(args.path, write=True, sync=args.sync) as db:
        db.put(parse_bytes(args.key), parse_bytes(args.value))
    emit(args, {"ok": True}, "ok")
    return 0


def run_get(args: Any) -> int:
    key = parse_bytes(args.key)
    with _open(args.path, write=False) as db:
        value = db.get(key)
    if value is None:
        if args.json:
            emit(args, {"key": show_bytes(key), "found": False}, "")
        print(f"storekit: key {show_bytes(key)} not found", file=sys.stderr)
        return 1
    emit(
        args,
        {"key": show_bytes(key), "value": show_bytes(value), "found": True},
        show_bytes(value),
    )
    return 0


def run_delete(args: Any) -> int:
    with _open(args.path, write=True, sync="always") as db:
        db.delete(parse_bytes(args.key))
    emit(args, {"ok": True}, "ok")
    return 0


def run_scan(args: Any) -> int:
    with _open(args.path, write=False) as db:
        iterator = db.scan(
            parse_bytes(args.start),
            parse_bytes(args.end),
            prefix=parse_bytes(args.prefix),
            reverse=args.reverse,
        )
        count = 0
        for key, value in iterator:
            if args.limit is not None and count >= args.limit:
                break
            count += 1
            if args.json:
                record = {"key": show_bytes(key)}
                if not args.keys_only:
                    record["value"] = show_bytes(value)
                print(json.dumps(record))
            elif args.keys_only:
                print(show_bytes(key))
            else:
                print(f"{show_bytes(key)}\t{show_bytes(value)}")
    return 0


def _guess_format(name: str) -> str:
    lowered = name.lower()
    for suffix in (".gz", ".xz"):
        if lowered.endswith(suffix):
            lowered = lowered[: -len(suffix)]
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "text"


def _column(header: list[str] | None, spec: str) -> int:
    if spec.isdigit():
        return int(spec)
    if header is None or spec not in header:
        raise ValueError(f"CSV column {spec!r} not found; columns are {header}")
    return header.index(spec)


def _records(args: Any, stream: io.TextIOBase, progress: Progress):
    """Yield (key, value) bytes pairs from the input file."""
    fmt = args.format or _guess_format(args.file)
    if fmt == "text":
        for number, line in enumerate(stream, 1):
            progress.advance(len(line))
            line = line.rstrip("\r\n")
            if not line:
                continue
            key, _, value = line.partition("\t")
            yield number, key.encode("utf-8"), value.encode("utf-8")
    elif fmt == "csv":
        reader = csv.reader(stream)
        header = None
        if not (args.key_column.isdigit() and args.value_column.isdigit()):
            header = next(reader, None)
        key_index = _column(header, args.key_column)
        value_index = _column(header, args.value_column)
        for row in reader:
            progress.advance(sum(len(cell) + 1 for cell in row))
            if not row:
                continue
            if max(key_index, value_index) >= len(row):
                raise ValueError(
                    f"CSV line {reader.line_num} has {len(row)} columns; "
                    f"key column {key_index} and value column {value_index} are needed"
                )
            yield (
                reader.line_num,
                row[key_index].encode("utf-8"),
                row[value_index].encode("utf-8"),
            )
    else:
        for number, line in enumerate(stream, 1):
            progress.advance(len(line))
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not valid JSON: {exc}") from None
            if not isinstance(record, dict) or args.key_field not in record:
                raise ValueError(f"line {number} has no field {args.key_field!r}")
            value = record.get(args.value_field, "")
            if not isinstance(value, str):
                value = json.dumps(value, sort_keys=True)
            yield (
                number,
                str(record[args.key_field]).encode("utf-8"),
                value.encode("utf-8"),
            )


def run_load(args: Any) -> int:
    if args.file == "-":
        stream, total = sys.stdin, None
    else:
        if not os.path.isfile(args.file):
            raise FileNotFoundError(f"input file {args.file} does not exist")
        total = os.path.getsize(args.file)
        if args.file.endswith((".gz", ".xz")):
            total = None  # the size on disk does not measure decompressed text
        if args.file.endswith(".gz"):
            stream = gzip.open(args.file, "rt", encoding="utf-8", newline="")
        elif args.file.endswith(".xz"):
            stream = lzma.open(args.file, "rt", encoding="utf-8", newline="")
        else:
            stream = open(args.file, encoding="utf-8", newline="")  # noqa: SIM115
    progress = Progress(total, "loading")
    loaded = 0
    try:
        with _open(args.path, write=True) as db:
            batch = WriteBatch()
            for number, key, value in _records(args, stream, progress):
                if len(key) > MAX_KEY_SIZE:
                    raise ValueError(
                        f"record {number}: key of {len(key)} bytes is too long"
                    )
                batch.put(key, value)
                if len(batch) >= args.batch_size:
                    db.write(batch)
                    loaded += len(batch)
                    batch = WriteBatch()
            if len(batch):
                db.write(batch)
                loaded += len(batch)
            db.flush()
    finally:
        if stream is not sys.stdin:
            stream.close()
        progress.finish()
    emit(args, {"loaded": loaded}, f"loaded {loaded} records into {args.path}")
    return 0


def _format_stats(data: Any, indent: str = "") -> str:
    lines = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_format_stats(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(line for line in lines if line)


def run_stats(args: Any) -> int:
    with _open(args.path, write=False) as db:
        data = db.stats()
    emit(args, data, _format_stats(data))
    return 0


def run_verify(args: Any) -> int:
    with _open(args.path, write=False, recovery="strict") as db:
        verify = getattr(db, "verify", None)
        if verify is None:
            raise ValueError(f"{type(db).__name__} has no checksums to verify")
        report = verify()
    emit(
        args,
        {"ok": True, **report},
        "ok: " + ", ".join(f"{k}={v}" for k, v in sorted(report.items())),
    )
    return 0


def run_sample_data(args: Any) -> int:
    from ..data import sample_path

    print(sample_path(args.name))
    return 0


def run_dump_wal(args: Any) -> int:
    fs = _os_fs()
    path = args.path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a directory")
    # A store keeps its WAL in wal/; a bare WAL directory contains segments.
    candidate = posixpath.join(path, "wal")
    if os.path.isdir(candidate):
        path = candidate
    elif not list_segments(fs, path):
        raise FileNotFoundError(f"{path} has no wal/ directory and no WAL segments")
    wal = WAL(path, read_only=True, recovery="point_in_time")
    count = 0
    try:
        for position, payload in wal.replay():
            if args.limit is not None and count >= args.limit:
                break
            count += 1
            _print_wal_record(args, position, payload)
    finally:
        wal.close()
    events = wal.recovery["events"]
    for event in events:
        print(
            f"storekit: damage in {event['file']} at offset {event['damage_offset']}: "
            f"{event['reason']}; {event['dropped_bytes']} bytes after it not shown",
            file=sys.stderr,
        )
    return 1 if events else 0


def _print_wal_record(args: Any, position: Any, payload: bytes) -> None:
    try:
        sequence, ops = decode_batch(payload)
    except CorruptionError:
        sequence, ops = None, None
    if args.json:
        record: dict[str, Any] = {
            "segment": position.segment,
            "offset": position.offset,
            "bytes": len(payload),
        }
        if ops is None:
            record["payload"] = "hex:" + payload.hex()
        else:
            record["sequence"] = sequence
            record["ops"] = [
                {"op": "put" if kind == KIND_PUT else "delete", "key": show_bytes(key)}
                | ({"value": show_bytes(value)} if kind == KIND_PUT else {})
                for kind, key, value in ops
            ]
        print(json.dumps(record))
        return
    head = f"{position.segment}:{position.offset} {len(payload)} bytes"
    if ops is None:
        print(f"{head} (not a write batch)")
        return
    print(f"{head} sequence {sequence}, {len(ops)} ops")
    for kind, key, value in ops:
        if kind == KIND_PUT:
            print(f"  put {show_bytes(key)} = {show_bytes(value)}")
        else:
            print(f"  delete {show_bytes(key)}")


def _os_fs():
    from ..fs import OSFileSystem

    return OSFileSystem()
