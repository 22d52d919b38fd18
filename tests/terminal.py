"""The command line in a real terminal: a pseudo-terminal whose closing hangs up on the
process, as closing an SSH session or a terminal window does."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
import threading
import time

ROWS, COLUMNS = 40, 140


class Terminal:
    """`tui-connector ARGS` running in its own pseudo-terminal (its controlling terminal,
    140x40), with what it shows kept as bytes."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, behind_a_shell: bool = False
    ) -> None:
        """`behind_a_shell`: the command runs under a shell that ignores SIGHUP and stays the
        terminal's controlling process, so closing the terminal sends the command no SIGHUP
        (as under some wrappers): it learns only from its writes failing."""
        environment = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        command = [sys.executable, "-m", "tui_connector", *args]
        if behind_a_shell:
            command = ["/bin/sh", "-c", 'trap "" HUP; "$@"', "sh", *command]
        pid, master = pty.fork()
        if pid == 0:  # the child: a session leader whose controlling terminal is the pty
            try:
                size = struct.pack("HHHH", ROWS, COLUMNS, 0, 0)
                fcntl.ioctl(1, termios.TIOCSWINSZ, size)  # sys.stdout may be a capture
                os.execve(command[0], command, environment)
            finally:
                os._exit(127)
        self.pid = pid
        self._master: int | None = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.exit_code: int | None = None

    def _read(self) -> None:
        master = self._master
        assert master is not None
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def press(self, keys: str) -> None:
        assert self._master is not None
        os.write(self._master, keys.encode())

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                shown = self.output[-2000:]
                raise AssertionError(f"{text!r} not shown within {timeout} s:\n{shown}")
            time.sleep(0.05)

    def close(self) -> None:
        """Close the terminal: the kernel hangs up on the process (SIGHUP)."""
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def wait(self, timeout: float = 60.0) -> int:
        """The process's exit code (a signal's death as 128 + its number)."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.exit_code = os.waitstatus_to_exitcode(status)
                if self.exit_code < 0:
                    self.exit_code = 128 - self.exit_code
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.output[-2000:]}")
            time.sleep(0.05)
        return self.exit_code

    def kill(self) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        self.close()
