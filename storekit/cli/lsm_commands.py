"""Subcommands for the LSM engine's files: dump-sst and verify-sst."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from ..errors import CorruptionError
from ..lsm.table import TableReader
from ._common import Progress, add_json_flag, emit, show_bytes

# Maximum value bytes shown per entry in text output. JSON output always
# contains whole values.
_TEXT_VALUE_BYTES = 64


def register(subparsers: Any) -> None:
    """Add this module's subcommands to the ``storekit`` parser."""
    _register_table_commands(subparsers)
    # Commands that act on a whole LSM store (such as compact) are added
    # below this line.
    _register_store_commands(subparsers)


def _register_table_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dump-sst",
        help="print a table file's footer, properties, index and entries",
        description="Print the footer, properties and index summary of one table "
        "file, then its entries in internal-key order (key ascending, newest "
        "version of a key first).",
    )
    parser.add_argument("path", metavar="PATH", help="table file to read")
    parser.add_argument(
        "--limit",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="print at most N entries; 0 prints only the summary (default: all)",
    )
    parser.add_argument(
        "--index",
        action="store_true",
        help="also list every data block: offset, size and separator key",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_dump_sst)

    parser = subparsers.add_parser(
        "verify-sst",
        help="check every block checksum and the entry order of a table file",
        description="Read every block of one table file and check checksums, "
        "restart points, key order, the bloom filter and the counts. Exits "
        "with status 1 and names the offset of the first damaged block.",
    )
    parser.add_argument("path", metavar="PATH", help="table file to check")
    add_json_flag(parser)
    parser.set_defaults(func=run_verify_sst)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"count must be >= 0, not {value}")
    return value


def file_number_from_path(path: str) -> int:
    """Return the number in a table file name such as ``000123.sst``, else 0."""
    match = re.match(r"(\d+)", os.path.basename(path))
    return int(match.group(1)) if match else 0


def _json_ready(value: Any) -> Any:
    """Convert bytes inside dicts and lists to display strings for JSON."""
    if isinstance(value, bytes):
        return show_bytes(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def _short_value(value: bytes) -> str:
    if len(value) <= _TEXT_VALUE_BYTES:
        return show_bytes(value)
    return f"{show_bytes(value[:_TEXT_VALUE_BYTES])}... ({len(value)} bytes)"


def _summary_lines(description: dict[str, Any]) -> list[str]:
    properties = description["properties"]
    footer = description["footer"]
    compression = properties.get("compression", b"?").decode("ascii", "replace")
    lines = [
        f"table {description['path']}: {description['file_size']} bytes, "
        f"format version {description['format_version']}",
        f"entries: {properties['entries']} ({properties['tombstones']} tombstones), "
        f"sequences {properties['smallest_sequence']}..{properties['largest_sequence']}",
        f"keys: {show_bytes(properties['smallest_key'])} .. "
        f"{show_bytes(properties['largest_key'])}",
        f"data blocks: {properties['data_blocks']}, compression {compression}, "
        f"block size {properties.get('block_size', '?')}, restart interval "
        f"{properties.get('restart_interval', '?')}",
    ]
    filter_info = description["filter"]
    if filter_info is None:
        lines.append("filter: none")
    else:
        lines.append(
            f"filter: offset {filter_info['offset']}, {filter_info['size']} bytes, "
            f"{filter_info['bits']} bits, {filter_info['probes']} probes"
        )
    lines.append(
        f"properties block: offset {footer['properties_offset']}, "
        f"{footer['properties_size']} bytes"
    )
    lines.append(
        f"index block: offset {footer['index_offset']}, {footer['index_size']} bytes"
    )
    lines.append(f"footer: offset {footer['offset']}")
    return lines


def run_dump_sst(args: argparse.Namespace) -> int:
    """Print one table file for people, or as one JSON document with ``--json``."""
    with TableReader(None, args.path, file_number_from_path(args.path)) as reader:
        description = reader.describe()
        limit = args.limit
        entries = reader.iterate(None, None, fill_cache=False)
        if args.json:
            listed = []
            for key, sequence, value in entries:
                if limit is not None and len(listed) >= limit:
                    break
                listed.append(
                    {
                        "key": show_bytes(key),
                        "sequence": sequence,
                        "kind": "put" if value is not None else "delete",
                        "value": None if value is None else show_bytes(value),
                    }
                )
            document = _json_ready(description)
            document["entries"] = listed
            emit(args, document, "")
            return 0

        for line in _summary_lines(description):
            print(line)
        if args.index:
            print("index:")
            for number, block in enumerate(description["index"]):
                print(
                    f"  block {number}: offset {block['offset']}, size "
                    f"{block['size']}, separator {show_bytes(block['separator'])}"
                )
        if limit == 0:
            return 0
        print("entries:")
        printed = 0
        for key, sequence, value in entries:
            if limit is not None and printed >= limit:
                print(f"  ... (--limit {limit} reached)")
                break
            if value is None:
                print(f"  {show_bytes(key)} @{sequence} delete")
            else:
                print(f"  {show_bytes(key)} @{sequence} put {_short_value(value)}")
            printed += 1
    return 0


def run_verify_sst(args: argparse.Namespace) -> int:
    """Check one table file; exit status 1 when it is corrupt."""
    try:
        with TableReader(None, args.path, file_number_from_path(args.path)) as reader:
            progress = Progress(reader.data_blocks, "verify-sst")
            blocks = reader.verify(progress.advance)
            progress.finish()
            entries = reader.entries
    except CorruptionError as exc:
        if args.json:
            report = {"path": args.path, "ok": False, "offset": exc.offset}
            emit(args, report | {"error": str(exc)}, "")
        else:
            # Like every other failing command: one line on stderr.
            print(f"storekit: error: {args.path}: corrupt: {exc}", file=sys.stderr)
        return 1
    emit(
        args,
        {"path": args.path, "ok": True, "blocks": blocks, "entries": entries},
        f"{args.path}: ok, {blocks} blocks, {entries} entries",
    )
    return 0


# -- commands on a whole LSM store ------------------------------------------------


def _register_store_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compact",
        help="compact an LSM store's tables now",
        description="Flush the memtable, then merge the tables that hold keys in "
        "[START, END) level by level into the deepest level, dropping overwritten "
        "values and deleted keys. Without bounds the whole store is compacted. "
        "Keys are text, or hex:... for raw bytes.",
    )
    parser.add_argument("path", metavar="PATH", help="the store directory")
    parser.add_argument("--start", help="first key to compact (inclusive)")
    parser.add_argument("--end", help="key where compaction stops (exclusive)")
    add_json_flag(parser)
    parser.set_defaults(func=run_compact)


def run_compact(args: argparse.Namespace) -> int:
    """Compact a store and print its tables per level before and after."""
    from ..lsm import LSMStore
    from ._common import parse_bytes

    if not os.path.isdir(args.path):
        raise FileNotFoundError(f"store directory {args.path} does not exist")
    with LSMStore(args.path, create=False) as db:
        before = db.stats()
        db.compact(parse_bytes(args.start), parse_bytes(args.end))
        after = db.stats()
    result = {
        "path": args.path,
        "tables_before": [level["tables"] for level in before["levels"]],
        "tables_after": [level["tables"] for level in after["levels"]],
        "bytes_before": before["table_bytes"],
        "bytes_after": after["table_bytes"],
    }
    emit(
        args,
        result,
        f"{args.path}: compacted; tables per level {result['tables_before']} -> "
        f"{result['tables_after']}, {result['bytes_before']} -> "
        f"{result['bytes_after']} bytes",
    )
    return 0
