"""Small sample data sets shipped with storekit; see README.md beside this file."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: Sample data sets by name: the path of each file.
SAMPLES = {
    "words": _HERE / "american-english.txt.gz",
}


def sample_path(name: str) -> Path:
    """Return the path of the sample data set ``name``."""
    try:
        return SAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown sample data set {name!r}; known: {', '.join(sorted(SAMPLES))}"
        ) from None
