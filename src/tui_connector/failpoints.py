"""Crash points for the crash soak: kill this process at an exact instant of its work.

A SIGKILL sent from outside lands wherever the process happens to be, which is rarely inside
the few microseconds between writing a page file and renaming it, or inside a checkpoint
transaction. Those are the instants where a bug would lose or duplicate data, so the soak test
also asks the process to kill itself there::

    TUI_CONNECTOR_CRASH_AT=lake.before_rename:7   # SIGKILL at the 7th page file, before rename

Unset (always, outside tests), `reached` is one falsy-check. The points are named where they
are reached; `POINTS` lists those every run reaches, `REPLACE_POINTS` and `COMPACT_POINTS`
the others.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "TUI_CONNECTOR_CRASH_AT"

POINTS = (
    # A page's temporary file is written, not yet renamed into place (object store: encoded,
    # not yet PUT; Delta: a batch's rows are converted, not yet committed).
    "lake.before_rename",
    # The page file is in place (object store: its PUT returned; Delta: the batch's commit is
    # in the table's log), its checkpoint not yet queued.
    "lake.after_rename",
    "state.before_commit",  # a checkpoint batch is written in its transaction, not committed
)
# Reached only by a Delta source's `replace` (or `--full-refresh`).
REPLACE_POINTS = (
    "lake.before_swap",  # a replace's staged table is complete, not yet swapped in
)
# Points inside `tui-connector compact` (a run never reaches them; see sinks.compaction).
COMPACT_POINTS = (
    # A stream's merged files are written aside and its checkpoint's file count lowered; the
    # journal that says to swap them in is not written yet.
    "compact.before_journal",
    # A merged file is in place under its lowest name, the files it holds not yet removed.
    "compact.after_replace",
)


def _parse(text: str) -> tuple[str, int] | None:
    if not text:
        return None
    name, _, count = text.partition(":")
    if name not in POINTS + REPLACE_POINTS + COMPACT_POINTS:
        known = ", ".join(POINTS + REPLACE_POINTS + COMPACT_POINTS)
        raise SystemExit(f"{ENV}={text!r}: unknown crash point; known: {known}")
    try:
        return name, max(1, int(count or "1"))
    except ValueError:
        raise SystemExit(f"{ENV}={text!r}: the count after ':' must be a whole number") from None


_plan = _parse(os.environ.get(ENV, ""))
_hits = 0
_lock = threading.Lock()  # page files are written from worker threads


def reached(point: str) -> None:
    """Kill the process with SIGKILL if this is the planned crash point's planned hit."""
    global _hits
    if _plan is None or _plan[0] != point:
        return
    with _lock:
        _hits += 1
        if _hits == _plan[1]:
            os.kill(os.getpid(), signal.SIGKILL)
