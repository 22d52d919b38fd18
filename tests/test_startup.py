"""`tui-connector --help` and `validate` start fast because they import only what they need:
these tests check what is imported, never how long it takes (bench/startup.py times it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What a run needs and these commands do not: each costs tens of milliseconds to import.
RUN_ONLY = ("asyncio", "httpx", "aiohttp", "aiosqlite", "textual", "tui_connector.engine")


def imported_by(*args: str) -> set[str]:
    """The modules a `tui-connector` process has imported when it exits."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(*sys.modules, sep='\\n', file=sys.stderr))\n"
        "from tui_connector.cli import main\n"
        f"sys.argv = ['tui-connector', *{args!r}]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stderr.split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.parametrize("args", [("--help",), ("validate", "--help"), ("--version",)])
def test_help_imports_no_model_or_io_library(args: tuple[str, ...]) -> None:
    modules = imported_by(*args)
    assert "tui_connector.cli" in modules
    assert loaded(modules, ("pydantic", "yaml", "tui_connector.config", *RUN_ONLY)) == []


def test_validate_imports_nothing_a_run_needs() -> None:
    modules = imported_by("validate", "sources.yaml")
    assert "tui_connector.config.schema" in modules
    assert loaded(modules, RUN_ONLY) == []
