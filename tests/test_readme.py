"""The README's commands are the ones CI runs and they work as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip(
            "README.md is not beside the tests (installed without the source tree)"
        )
    blocks = re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S)
    return [block.strip() for block in blocks]


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci_script.splitlines()


def test_readme_install_command_uses_shipped_words():
    commands = _readme_commands()
    install = commands[0]
    assert install.startswith("python -m pip install . &&")
    assert "sample-data words" in install
