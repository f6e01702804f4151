"""Shared pytest configuration: the --run-slow option and data locations."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Real traces, vectors and logs kept beside the project checkout. Tests that
#: need them skip when the folder is absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow: long crash runs and large traces",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: pass --run-slow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def shared_data(*parts: str) -> Path:
    """Return a path under the shared data folder, skipping the test if it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is not present beside the checkout")
    return path
