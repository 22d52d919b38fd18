#!/usr/bin/env python3
"""Set up a local virtualenv (.venv) with tui-connector and its dev tools, then run a command.

    python3 scripts/dev.py demo     # the dashboard on the built-in demo API
    python3 scripts/dev.py test     # the test suite
    python3 scripts/dev.py bench    # the benchmark (bench/README.md); --quick for a smoke run
    python3 scripts/dev.py lint     # ruff, mypy and the import contracts, as CI runs them

Needs only Python 3.11+. The virtualenv is (re)installed when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"
# Servers some tests start (an Azure Blob emulator, an OAuth2 authorization server) come from npm.
NODE_SERVERS = ROOT / "tests" / "node"
NODE_STAMP = NODE_SERVERS / "node_modules" / ".installed-from"


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - runs under any python3 the user has
        sys.exit(f"tui-connector needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != _fingerprint():
        print("installing tui-connector and its dev tools into .venv ...", file=sys.stderr)
        subprocess.run(
            [
                str(BIN / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                f"{ROOT}[dev]",
            ],
            check=True,
        )
        STAMP.write_text(_fingerprint())


def ensure_node_servers() -> None:
    """Install the npm servers the tests start, when their package.json changed. Without
    node, the tests that need them fail and say what to install."""
    manifest = NODE_SERVERS / "package.json"
    fingerprint = hashlib.sha256(manifest.read_bytes()).hexdigest()
    if NODE_STAMP.exists() and NODE_STAMP.read_text() == fingerprint:
        return
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: tests that need node's test servers will fail", file=sys.stderr)
        return
    print("installing the tests' node servers into tests/node ...", file=sys.stderr)
    # From scratch: npm updating a tree installed from another package.json ran for over half
    # an hour at full CPU, where a clean install takes seconds.
    shutil.rmtree(NODE_SERVERS / "node_modules", ignore_errors=True)
    subprocess.run(
        [npm, "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_SERVERS,
        check=True,
    )
    NODE_STAMP.write_text(fingerprint)


def main() -> int:
    commands = {
        "demo": [[str(BIN / "tui-connector"), "demo", *sys.argv[2:]]],
        "test": [[str(BIN / "python"), "-m", "pytest", *sys.argv[2:]]],
        "bench": [[str(BIN / "python"), "bench/run.py", *sys.argv[2:]]],
        "lint": [
            [str(BIN / "ruff"), "check", "src", "tests", "scripts", "bench"],
            [str(BIN / "ruff"), "format", "--check", "src", "tests", "scripts", "bench"],
            [str(BIN / "mypy")],
            [str(BIN / "lint-imports")],
        ],
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    if sys.argv[1] == "test":
        ensure_node_servers()
    for command in commands[sys.argv[1]]:
        code = subprocess.run(command, cwd=ROOT).returncode
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
