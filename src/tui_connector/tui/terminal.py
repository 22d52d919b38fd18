"""The dashboard's terminal, guarded against going away.

Textual writes each frame through a writer thread with a bounded queue. When the terminal
hangs up without a SIGHUP reaching us (a wrapper that ignores it, a closed pipe), a write
fails, that thread dies, and the next frames block the event loop forever: the run can no
longer commit, stop, or even hear SIGTERM. Here a failed write instead makes every later
write go nowhere and tells the app once, on its own loop, so it can stop the run gracefully.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any, TextIO

from textual.driver import Driver


class GuardedOutput:
    """A file for Textual's writer thread: the first failed write or flush calls `lost`
    (from that thread) and turns every later one into nothing."""

    def __init__(self, file: TextIO, lost: Callable[[], None]) -> None:
        self._file = file
        self._lost = lost
        self._gone = threading.Event()

    def _failed(self) -> None:
        if not self._gone.is_set():
            self._gone.set()
            self._lost()

    def write(self, text: str) -> int:
        if self._gone.is_set():
            return len(text)
        try:
            return self._file.write(text)
        except (OSError, ValueError):
            self._failed()
            return len(text)

    def flush(self) -> None:
        if self._gone.is_set():
            return
        try:
            self._file.flush()
        except (OSError, ValueError):
            self._failed()

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()


def guarded_driver(on_lost: str) -> type[Driver] | None:
    """Textual's Linux driver writing through a `GuardedOutput`, which calls the app's method
    named `on_lost` on the app's loop when the terminal is gone; None where Textual uses
    another driver (the default one is then used as it is)."""
    if os.name != "posix":
        return None
    from textual.drivers.linux_driver import LinuxDriver

    class GuardedLinuxDriver(LinuxDriver):
        def start_application_mode(self) -> None:
            loop = asyncio.get_running_loop()
            app: Any = self._app

            def lost() -> None:
                loop.call_soon_threadsafe(getattr(app, on_lost))

            file = self._file
            if file is not None and not isinstance(file, GuardedOutput):  # once, not per SIGCONT
                self._file = GuardedOutput(file, lost)  # type: ignore[assignment]
            super().start_application_mode()

    return GuardedLinuxDriver
