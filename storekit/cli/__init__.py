"""The ``storekit`` command line.

Each module in COMMAND_MODULES adds its subcommands through a
``register(subparsers)`` function; a subcommand sets ``func`` to a function
that takes the parsed arguments and returns an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import StorekitError

COMMAND_MODULES = [
    "storekit.cli.store_commands",
    "storekit.cli.lsm_commands",
    "storekit.cli.cache_commands",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="storekit", description="Inspect and use storekit stores."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only a missing command module itself is tolerated (a partial
            # install); a missing dependency inside it is a real error.
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status; errors print one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("storekit: interrupted", file=sys.stderr)
        return 130
    except (StorekitError, OSError, ValueError, TypeError, KeyError) as exc:
        message = str(exc) or type(exc).__name__
        print(f"storekit: error: {message}", file=sys.stderr)
        return 1
