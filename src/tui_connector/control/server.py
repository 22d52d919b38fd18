"""The control endpoint of a run: every front end's view and controls, served to other
processes (`tui-connector attach`, `stop`, `status`) over the protocol of `wire`.

It reads the run through the facade only, so it costs the run nothing while no client is
attached, and per client one comparison of each source's figures per update (at most 10 a
second). A client that breaks the protocol loses its connection; the run never notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

from tui_connector import __version__
from tui_connector.control.address import (
    AddressError,
    ControlAddress,
    is_ip_address,
    is_loopback,
    new_token,
    serve_unix,
    socket_path,
    token_path,
)
from tui_connector.control.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL,
    ConcurrencyControl,
    Control,
    ProtocolError,
    RateControl,
    SourceControl,
    TelemetryDiff,
    decode,
    description_data,
    encode,
    facts_data,
    parse_control,
    parse_hello,
    result_data,
)
from tui_connector.facade import LakeWatch, RunError, RunFacade, RunResult
from tui_connector.telemetry import LakeInfo

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0  # seconds a new connection has to say hello
# A client that reads this far behind loses its connection rather than the run's memory.
MAX_UNSENT_BYTES = 8 << 20


class ControlServer:
    """A `services.RunService`: the run's control endpoint, on a Unix socket beside its state
    database, and on TCP when `tcp` is given (with a token; beyond loopback only when
    `public`)."""

    def __init__(
        self, *, unix: bool = True, tcp: ControlAddress | None = None, public: bool = False
    ) -> None:
        if tcp is not None and tcp.unix is not None:
            raise AddressError(f"{tcp}: --control takes tcp://HOST:PORT")
        if tcp is not None and tcp.host != "localhost" and not is_ip_address(tcp.host):
            raise AddressError(
                f"{tcp}: give --control an IP address: 127.0.0.1 for this machine alone, or "
                "(with --control-public) an address of this machine"
            )
        if tcp is not None and not public and not is_loopback(tcp.host):
            raise AddressError(
                f"{tcp} is reachable beyond this machine: pass --control-public to serve the "
                "run's controls there (a token guards them), or use tcp://127.0.0.1:PORT"
            )
        self.unix = unix
        self.tcp = tcp
        self._servers: list[asyncio.AbstractServer] = []
        self._clients: set[_Client] = set()
        self._run: RunFacade | None = None
        self._token: str | None = None
        self._paths: list[Path] = []

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self, run: RunFacade) -> None:
        self._run = run
        state = run.facts.state_path
        if self.unix:
            path = socket_path(state)
            try:
                self._servers.append(await serve_unix(self._serve, path, limit=MAX_MESSAGE_BYTES))
            except (OSError, AddressError) as exc:
                await self.stop(None)
                raise RunError(
                    f"cannot open the run's control socket at {path}: {exc}; "
                    "pass --no-control to run without one"
                ) from None
            self._paths.append(path)
        if self.tcp is not None:
            try:
                self._token = new_token(token_path(state))
                self._paths.append(token_path(state))
                self._servers.append(
                    await asyncio.start_server(
                        self._serve, self.tcp.host, self.tcp.port, limit=MAX_MESSAGE_BYTES
                    )
                )
            except OSError as exc:
                await self.stop(None)
                raise RunError(
                    f"cannot serve the run's controls at {self.tcp}: {exc.strerror or exc}; "
                    "choose another port, or leave out --control"
                ) from None

    async def stop(self, result: RunResult | None) -> None:
        for server in self._servers:
            server.close()
        for client in list(self._clients):
            await client.finish(result)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        for path in self._paths:
            with contextlib.suppress(OSError):
                path.unlink()
        self._paths.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        run = self._run
        if run is None:
            writer.close()
            return
        client = _Client(self, run, reader, writer)
        self._clients.add(client)
        try:
            await client.serve()
        except (ProtocolError, ValueError, asyncio.IncompleteReadError) as exc:
            log.info("control: a client broke the protocol and was disconnected: %s", exc)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:  # never let a client disturb the run
            log.exception("control: a client's connection failed")
        finally:
            self._clients.discard(client)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def admits(self, token: str | None, writer: asyncio.StreamWriter) -> bool:
        """A Unix socket admits whoever its mode lets connect; TCP wants the run's token."""
        if not isinstance(writer.get_extra_info("peername"), tuple):
            return True
        return (
            token is not None
            and self._token is not None
            and hmac.compare_digest(token.encode(), self._token.encode())
        )

    def control(self, control: Control) -> Any:
        run = self._run
        assert run is not None
        source = getattr(control, "source", None)
        if source is not None and source not in run.facts.selected:
            raise LookupError(f"no source {source!r} in this run")
        if isinstance(control, SourceControl):
            if control.action in ("retry", "set_auto"):
                return getattr(run, control.action)(control.source)
            getattr(run, control.action)(control.source)
            return None
        if isinstance(control, ConcurrencyControl):
            run.set_concurrency(control.source, control.value)
            return None
        if isinstance(control, RateControl):
            run.set_rate_limit(control.source, control.value)
            return None
        if control.action == "request_stop":
            # A stop asked for while the run is stopping already (from here, a signal, or
            # its own dashboard) stops it at once, as a second Ctrl-C does.
            if run.stop_requested_at is None:
                run.request_stop()
            else:
                run.quit_now()
            return None
        getattr(run, control.action)()
        return None


class _Client:
    def __init__(
        self,
        server: ControlServer,
        run: RunFacade,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.run = run
        self.reader = reader
        self.writer = writer
        self.read_only = False
        self._finished = False
        self._diff = TelemetryDiff()
        self._lakes = LakeWatch(run)
        self._shown: dict[str, LakeInfo] = {}
        self._welcomed = False

    async def _send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode(message))
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            raise ConnectionError("the client reads too slowly")
        await self.writer.drain()

    async def _read(self) -> dict[str, Any] | None:
        line = await self.reader.readline()
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ProtocolError("a truncated message")
        return decode(line)

    async def serve(self) -> None:
        first = await asyncio.wait_for(self._read(), HELLO_TIMEOUT)
        if first is None:
            return
        hello = parse_hello(first)
        if not self.server.admits(hello.token, self.writer):
            await self._send({"type": "error", "error": "refused"})
            return
        if hello.protocol != PROTOCOL:
            await self._send(
                {
                    "type": "error",
                    "error": f"this run speaks protocol {PROTOCOL}, not {hello.protocol}: "
                    "attach with the tui-connector that runs it",
                }
            )
            return
        self.read_only = hello.read_only
        run = self.run
        await self._send(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "version": __version__,
                "pid": os.getpid(),
                "now": time.monotonic(),
                "facts": facts_data(run.facts),
                "descriptions": {
                    name: description_data(run.describe(name)) for name in run.facts.selected
                },
            }
        )
        self._welcomed = True
        updates = asyncio.create_task(self._send_updates(hello.interval))
        try:
            await self._take_controls(updates)
        finally:
            updates.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await updates

    async def _take_controls(self, updates: asyncio.Task[None]) -> None:
        while True:
            reading = asyncio.ensure_future(self._read())
            done, _ = await asyncio.wait({reading, updates}, return_when=asyncio.FIRST_COMPLETED)
            if updates in done:
                reading.cancel()
                updates.result()  # a failed send ends the connection
                return
            message = reading.result()
            if message is None:
                return
            control = parse_control(message)
            if self.read_only:
                await self._send(
                    {"type": "reply", "id": control.id, "ok": False, "error": "read-only"}
                )
                continue
            try:
                value = self.server.control(control)
            except (LookupError, ValueError) as exc:
                reply = {"type": "reply", "id": control.id, "ok": False, "error": str(exc)}
            else:
                reply = {"type": "reply", "id": control.id, "ok": True, "value": value}
            await self._send(reply)

    def _update(self) -> dict[str, Any] | None:
        run = self.run
        telemetry = run.snapshot()
        changed_lakes = {}
        for name, stats in telemetry.sources.items():
            lake = self._lakes.of(name, stats)
            if self._shown.get(name) is not lake:
                self._shown[name] = changed_lakes[name] = lake
        paused = sorted(name for name in run.facts.selected if run.is_paused(name))
        state = {"paused": paused, "stop_requested_at": run.stop_requested_at}
        return self._diff.update(telemetry, state, changed_lakes, time.monotonic())

    async def _send_updates(self, interval: float) -> None:
        while not self._finished:
            update = self._update()
            if update is not None:
                await self._send(update)
            await asyncio.sleep(interval)

    async def finish(self, result: RunResult | None) -> None:
        """The run is closing: say how it ended, and hang up."""
        self._finished = True
        ending = {"type": "finished", "result": None if result is None else result_data(result)}
        with contextlib.suppress(Exception):
            last = self._update() if self._welcomed else None
            if last is not None:
                self.writer.write(encode(last))
            await asyncio.wait_for(self._send(ending), 1.0)
        self.writer.close()
