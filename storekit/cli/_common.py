"""Helpers shared by the command modules: output, key parsing, progress."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


def add_json_flag(parser: Any) -> None:
    """Add ``--json``, which switches output to one JSON document per result."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print machine-readable JSON instead of text",
    )


def emit(args: Any, data: Any, text: str) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, sort_keys=True))
    else:
        print(text)


def parse_bytes(text: str | None) -> bytes | None:
    """Turn a command-line key or value into bytes.

    Text is UTF-8 encoded; a ``hex:`` prefix gives raw bytes, so
    ``hex:00ff`` is ``b"\\x00\\xff"``.
    """
    if text is None:
        return None
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise ValueError(
                f"{text!r} is not valid hex after 'hex:'; use pairs of hex digits"
            ) from None
    return text.encode("utf-8")


def show_bytes(data: bytes) -> str:
    """Render bytes for people: UTF-8 text when printable, else ``hex:...``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + data.hex()
    if text.isprintable() and not text.startswith("hex:"):
        return text
    return "hex:" + data.hex()


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal.

    ``total`` may be None when the amount of work is unknown; then the bar
    shows a running count.
    """

    def __init__(
        self, total: int | None, label: str, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._last_draw = 0.0

    def advance(self, amount: int = 1) -> None:
        """Record ``amount`` more units of work and redraw at most 10 times a second."""
        self.done += amount
        now = time.monotonic()
        if self._enabled and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r{self.label} [{bar}] {fraction:6.1%} {self.done}/{self.total}"
        else:
            line = f"\r{self.label} {self.done}"
        self._stream.write(line)
        self._stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self._enabled:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
