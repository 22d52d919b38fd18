"""A run in another process, seen and steered through its control endpoint: a
`facade.RunFacade`, so the dashboard that shows a run in its own process shows this one the
same way (`tui-connector attach`).

Leaving (`quit_now`, or `close`) detaches: the run goes on. `request_stop` asks the run to
stop (a second time: at once). `run()` returns when the run has finished, or when the
connection is lost or left; `ended` then says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

from tui_connector.collector import CollectorTuning
from tui_connector.control.address import AddressError, ControlAddress, connect
from tui_connector.control.wire import (
    MAX_MESSAGE_BYTES,
    MIN_INTERVAL,
    PROTOCOL,
    ProtocolError,
    TelemetryMirror,
    decode,
    description_from,
    encode,
    facts_from,
    result_from,
)
from tui_connector.facade import (
    RunError,
    RunFacts,
    RunResult,
    SourceDescription,
)
from tui_connector.telemetry import LakeInfo, RunTelemetry, SourceStatus

CONNECT_TIMEOUT = 10.0

RUN_ENDED = "the run has ended"
CONNECTION_LOST = "the connection to the run was lost"
DETACHED = "detached: the run goes on"


def _outcome(result: RunResult | None, *, stopped: bool) -> str:
    if result is None:  # the run did not end by itself
        return " (stopped at once)" if stopped else " (it failed)"
    how = "interrupted: " if result.interrupted else ""
    return (
        f" ({how}{len(result.done)} done, {len(result.failed)} failed, "
        f"{len(result.stopped)} stopped)"
    )


class NoRunThere(RunError):
    """Nothing answers at the control address: no run is in progress there."""


class RemoteRun:
    """A `facade.RunFacade` over a connection to a run's control endpoint."""

    def __init__(
        self,
        address: ControlAddress,
        *,
        token: str | None = None,
        read_only: bool = False,
        interval: float = MIN_INTERVAL,
    ) -> None:
        self.address = address
        self.token = token
        self.read_only = read_only
        self.interval = interval
        self.pid: int | None = None
        self.version = ""
        self._facts: RunFacts | None = None
        self._descriptions: dict[str, SourceDescription] = {}
        self._mirror = TelemetryMirror(0.0)
        self._writer: asyncio.StreamWriter | None = None
        self._collector = CollectorTuning()
        self._reader_task: asyncio.Task[None] | None = None
        self._ids: Iterator[int] = itertools.count(1)
        self._result: RunResult | None = None
        self._ended: str | None = None
        self.replies: dict[int, dict[str, Any]] = {}
        self._updated: asyncio.Event | None = None

    # -- the view ---------------------------------------------------------------------------

    @property
    def facts(self) -> RunFacts:
        if self._facts is None:
            raise RuntimeError("open() the remote run first")
        return self._facts

    @property
    def stop_requested_at(self) -> float | None:
        at = self._mirror.run.get("stop_requested_at")
        return None if at is None else float(at) + self._mirror.offset

    def snapshot(self) -> RunTelemetry:
        return self._mirror.telemetry

    def describe(self, source: str) -> SourceDescription:
        return self._descriptions[source]

    def lake(self, source: str) -> LakeInfo:
        return self._mirror.lakes.get(source) or LakeInfo(format="", destination="")

    def is_paused(self, source: str) -> bool:
        return source in self._mirror.run.get("paused", ())

    def redact(self, text: str) -> str:
        return text  # the run redacted everything before it left its process

    @property
    def ended(self) -> str | None:
        return self._ended

    @property
    def result(self) -> RunResult | None:
        """How the run ended, once it has told us."""
        return self._result

    # -- the lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (again: a closed RemoteRun may be opened anew, on another event loop; its
        facts stay readable between the two)."""
        self._updated = asyncio.Event()
        self._ended = None
        self._result = None
        try:
            reader, writer = await asyncio.wait_for(
                connect(self.address, limit=MAX_MESSAGE_BYTES), CONNECT_TIMEOUT
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoRunThere(f"no run answers at {self.address} ({exc.strerror})") from None
        except (OSError, TimeoutError, AddressError) as exc:
            raise RunError(f"cannot reach the run at {self.address}: {exc}") from None
        self._writer = writer
        hello = {
            "type": "hello",
            "protocol": PROTOCOL,
            "token": self.token,
            "interval": self.interval,
            "read_only": self.read_only,
        }
        try:
            writer.write(encode(hello))
            await writer.drain()
            welcome = await asyncio.wait_for(self._read(reader), CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ProtocolError) as exc:
            writer.close()
            raise RunError(f"the run at {self.address} did not answer: {exc}") from None
        if welcome is None or welcome.get("type") != "welcome":
            writer.close()
            reason = "it hung up" if welcome is None else welcome.get("error", "no welcome")
            if reason == "refused" and self.address.unix is None:
                reason = (
                    "the token is not that run's (every run served over TCP writes a new one "
                    "beside its state database: <state>.token)"
                )
            raise RunError(f"the run at {self.address} refused the connection: {reason}")
        try:
            self._welcome(welcome)
        except (KeyError, TypeError, ValueError) as exc:
            writer.close()
            raise RunError(f"the run at {self.address} sent an unreadable welcome: {exc}") from None
        self._reader_task = asyncio.create_task(self._follow(reader))
        self._collector.settle()  # a dashboard on it lives as long as the connection

    def _welcome(self, welcome: dict[str, Any]) -> None:
        self.pid = int(welcome["pid"])
        self.version = str(welcome["version"])
        self._mirror = TelemetryMirror(time.monotonic() - float(welcome["now"]))
        self._facts = facts_from(welcome["facts"], read_only=self.read_only)
        self._descriptions = {
            str(name): description_from(data) for name, data in welcome["descriptions"].items()
        }

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
        line = await reader.readline()
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ProtocolError("a truncated message")
        return decode(line)

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await self._read(reader)
                if message is None:
                    break
                kind = message.get("type")
                if kind == "update":
                    self._mirror.apply(message)
                    if self._updated is not None:
                        self._updated.set()
                elif kind == "reply":
                    self.replies[int(message["id"])] = message
                elif kind == "finished":
                    result = message.get("result")
                    self._result = None if result is None else result_from(result)
                    stopped = self.stop_requested_at is not None
                    self._ended = RUN_ENDED + _outcome(self._result, stopped=stopped)
                    return
                elif kind == "error":
                    self._ended = f"{CONNECTION_LOST}: {message.get('error')}"
                    return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._ended = f"{CONNECTION_LOST}: {exc}"
            return
        if self._ended is None:
            self._ended = CONNECTION_LOST

    async def pictured(self) -> None:
        """Wait until an update since `open` has drawn the run's picture (at once if one has):
        the first is whole, and a run where nothing changes sends no other."""
        updated = self._updated
        if updated is None:
            raise RuntimeError("open() the remote run first")
        await updated.wait()

    async def run(self, *, until_done: bool = True) -> RunResult:
        """Follow the run until it finishes or the connection ends."""
        task = self._reader_task
        if task is not None:
            await asyncio.wait({task})  # however it ends; a cancel of this call propagates
        if self._ended is None:
            self._ended = DETACHED
        return self._result or self._picture_result()

    def _picture_result(self) -> RunResult:
        """How the run stood when we last saw it (it has not told us how it ended)."""
        sources = self._mirror.telemetry.sources
        return RunResult.of(
            (name, stats.status if (stats := sources.get(name)) else SourceStatus.PENDING)
            for name in self.facts.selected
        )

    async def close(self) -> None:
        self._collector.restore()
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer = self._writer
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- the controls ------------------------------------------------------------------------

    def _send(self, action: str, **fields: Any) -> int:
        request_id = next(self._ids)
        writer = self._writer
        if writer is None or writer.is_closing() or self.read_only or self._ended:
            return request_id
        writer.write(encode({"type": "control", "id": request_id, "action": action, **fields}))
        return request_id

    def make_interactive(self) -> None:
        """Nothing to do: this process's keys do not share the run's event loop."""

    def pause(self, source: str) -> None:
        self._send("pause", source=source)

    def resume(self, source: str) -> None:
        self._send("resume", source=source)

    def pause_all(self) -> None:
        self._send("pause_all")

    def resume_all(self) -> None:
        self._send("resume_all")

    def stop(self, source: str) -> None:
        self._send("stop", source=source)

    def retry(self, source: str) -> bool:
        # The run's answer comes later; what it will be is read from the picture already.
        stats = self._mirror.telemetry.sources.get(source)
        if stats is None or stats.status not in (SourceStatus.FAILED, SourceStatus.STOPPED):
            return False
        self._send("retry", source=source)
        return True

    def set_concurrency(self, source: str, limit: int) -> None:
        self._send("set_concurrency", source=source, value=max(1, int(limit)))

    def set_auto(self, source: str) -> bool:
        if not self._descriptions[source].adaptive:
            return False
        self._send("set_auto", source=source)
        return True

    def set_rate_limit(self, source: str, per_second: float | None) -> None:
        self._send("set_rate_limit", source=source, value=per_second)

    def request_stop(self) -> None:
        """Ask the run to stop gracefully (asked again: at once)."""
        self._send("request_stop")

    def quit_now(self) -> None:
        """Leave at once: detach, the run goes on."""
        if self._ended is None:
            self._ended = DETACHED
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
