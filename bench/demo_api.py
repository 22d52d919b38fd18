"""The demo API in its own process, pinned to its own core, with its knobs set over HTTP
between workloads (`/_demo/knobs`, `/_demo/reset`, `/_demo/log`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPUs, the clients' CPUs): the last CPU for the server, the others for
    whatever it serves. (None, None) on a machine with a single CPU: nothing to separate."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[-1]}, set(available[:-1])


class DemoApi:
    """`tui-connector serve-demo` as a child process."""

    def __init__(self, cpus: set[int] | None) -> None:
        self.cpus = cpus
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> DemoApi:
        command = [sys.executable, "-m", "tui_connector", "serve-demo", "--port", "0"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        if self.cpus is not None:
            os.sched_setaffinity(self.process.pid, self.cpus)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.__exit__()
            raise RuntimeError(f"the demo API did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def configure(self, **knobs: Any) -> None:
        """Set knobs (unset ones go back to the benchmark's defaults) and clear the log."""
        settings = {"latency_ms": 0.0, "capacity": None, "fault_rate": 0.0}
        settings.update(knobs)
        self._call("/_demo/knobs", settings)
        self._call("/_demo/reset", {})

    def statuses(self) -> Counter[int]:
        """How many dataset requests got each status since the last `configure`."""
        return Counter(entry["status"] for entry in self._call("/_demo/log"))

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system)."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
