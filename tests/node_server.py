"""A server the tests take from npm (tests/node, installed by scripts/dev.py), run by node on
127.0.0.1: started, its output read until it says where it listens, stopped. Azurite
(azurite_server.py) and oidc-provider (oidc_server.py) are two."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Self

NODE_SERVERS = Path(__file__).resolve().parent / "node"
INSTALL = (
    "install Node.js 20 or newer with npm (e.g. apt-get install nodejs npm), then run "
    "python3 scripts/dev.py test (or: cd tests/node && npm install)"
)
# A start takes about a second; a loaded machine may need many more.
START_WITHIN = 60.0


class NodeServerMissing(RuntimeError):
    """node, or the server's npm package, is not installed: the message says how to install."""


class NodeServer:
    """One server in a node process. A subclass names its npm `package`, gives the
    `arguments` after node, and reads each line it prints in `listening`."""

    name = ""  # as messages say it
    package = ""  # in tests/node/node_modules

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=40)
        self._ready = threading.Event()
        self._started = False

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def listening(self, line: str) -> bool:
        """Whether the printed `line` says the server listens (keep what it tells)."""
        raise NotImplementedError

    def start(self) -> Self:
        node = shutil.which("node")
        if node is None:
            raise NodeServerMissing(
                f"the tests of {self.name} need node and {self.package}: {INSTALL}"
            )
        if not (NODE_SERVERS / "node_modules" / self.package).is_dir():
            raise NodeServerMissing(f"{self.package} is not installed in tests/node: {INSTALL}")
        self._process = subprocess.Popen(
            [node, *self.arguments()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=NODE_SERVERS,
            env=self.environment(),
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._ready.wait(START_WITHIN) or not self._started:
            self.stop()
            said = "".join(self._output).strip() or "nothing"
            raise RuntimeError(
                f"{self.name} did not start in {START_WITHIN:.0f} s; it said: {said}"
            )
        return self

    def _read_output(self) -> None:
        """Keep reading what the server prints (a full pipe would stall it) until a line says
        it listens. The end of its output ends the wait too."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)
            if not self._started and self.listening(line):
                self._started = True
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
