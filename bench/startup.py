"""Start-up times of the `tui-connector` command: `--help`, `validate` of the top-level
sources.yaml, and a bare `python -c pass` for scale.

Each figure is the median of fresh processes, run interleaved (pass, help, validate, pass,
...) so that a burst of load on this shared machine slows all three alike. `--before REV`
also times the code of a git revision (its `src/` exported to a temporary directory), in the
same interleaved rounds. Absolute times are reported, never asserted.

    .venv/bin/python bench/startup.py [--runs 21] [--before 99fdaf3]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from run import machine

ROOT = Path(__file__).resolve().parent.parent

# What the `tui-connector` entry point runs; with -c, so that PYTHONPATH picks the code.
ENTRY = "import sys; from tui_connector.cli import main; sys.argv[0] = 'tui-connector'; main()"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "tui-connector --help": ["-c", ENTRY, "--help"],
    "tui-connector validate sources.yaml": ["-c", ENTRY, "validate", "sources.yaml"],
}
# Item 10 of issue 15: --help within 0.2 s of a bare interpreter, validate within 0.5 s.
TARGETS = {
    "tui-connector --help": "≤ pass + 0.2 s",
    "tui-connector validate sources.yaml": "≤ 0.5 s",
}


def timed(args: list[str], src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("DEMO_URL", None)  # validate reads the file's own default
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


@contextlib.contextmanager
def exported_src(revision: str) -> Iterator[Path]:
    """The `src/` of a git revision, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="tui-connector-startup-") as directory:
        archive = subprocess.run(
            ["git", "archive", revision, "src"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        archive_path = Path(directory) / "src.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(directory, filter="data")
        yield Path(directory) / "src"


def measure(sources: dict[str, Path], runs: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {
        label: {name: [] for name in COMMANDS} for label in sources
    }
    for src in sources.values():  # warm the bytecode caches and the page cache
        for args in COMMANDS.values():
            timed(args, src)
    for _ in range(runs):
        for label, src in sources.items():
            for name, args in COMMANDS.items():
                times[label][name].append(timed(args, src))
    return times


def machine_note() -> str:
    facts = machine(None, None, os.getloadavg())
    load = ", ".join(f"{value:.2f}" for value in facts["load_average_at_end"])
    return (
        f"{facts['cpu']}, {facts['cpus']} CPUs, Python {facts['python']}, "
        f"load average {load} at the end"
    )


def table(times: dict[str, dict[str, list[float]]]) -> str:
    labels = list(times)
    header = "| command | " + " | ".join(f"{label}: median (min–max)" for label in labels)
    lines = [header + " | target |", "|---" * (len(labels) + 2) + "|"]
    for name in COMMANDS:
        cells = []
        for label in labels:
            samples = times[label][name]
            median = statistics.median(samples)
            cell = f"{median:.3f} s ({min(samples):.3f}–{max(samples):.3f})"
            if name != "python -c pass":
                over = median - statistics.median(times[label]["python -c pass"])
                cell += f", pass + {over:.3f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {TARGETS.get(name, '')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="rounds of the three commands")
    parser.add_argument("--before", metavar="REV", help="also time this git revision's code")
    args = parser.parse_args()
    commit = machine(None, None, os.getloadavg())["commit"]
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sources = {f"this code ({commit})": ROOT / "src"}
    with maybe_exported_src(args.before) as before:
        if before is not None:
            sources = {f"before ({args.before})": before, **sources}
        times = measure(sources, args.runs)
    print(f"- Date: {started}")
    print(f"- Command: `.venv/bin/python bench/startup.py {' '.join(sys.argv[1:])}`".rstrip())
    print(f"- Machine: {machine_note()}")
    print(f"- Runs: {args.runs} interleaved rounds; each figure a fresh process\n")
    print(table(times))
    return 0


@contextlib.contextmanager
def maybe_exported_src(revision: str | None) -> Iterator[Path | None]:
    """`exported_src(revision)`, or None when no revision is given."""
    if revision is None:
        yield None
        return
    with exported_src(revision) as src:
        yield src


if __name__ == "__main__":
    sys.exit(main())
