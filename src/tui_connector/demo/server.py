"""The demo API's server: the aiohttp application (every dataset route of ``routes`` under
``/v1`` without auth, under ``/secure`` with the token and under ``/oauth`` with OAuth2, and
the token endpoint ``/oauth/token``, each through ``pipeline``; and the control endpoints),
and running it: :class:`DemoServer` on its own thread (tests, the screenshots script),
:func:`serve_forever` in the foreground (``tui-connector serve-demo``, which
``tui-connector demo`` starts).

The control endpoints are never faulted, never wait for capacity and are not logged:

- ``GET|POST /_demo/knobs``  the knobs (secrets masked); POST a JSON object to change some
- ``GET /_demo/log``         the request log (dataset routes only), oldest first
- ``POST /_demo/reset``      forget the log, the occurrence counters and ``max_serving``
- ``GET /secure/echo``       the request's method, path, headers and query (auth)

``DemoKnobs``, ``DemoState`` and ``RequestLogEntry`` (from ``knobs`` and ``state``) are part of
this module's interface too: the server is built from knobs and state and answers with log
entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import threading
from typing import Any

from aiohttp import web

from tui_connector.demo.auth import token_guard
from tui_connector.demo.hostile import echo_request
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.oauth import OAuthServer
from tui_connector.demo.pipeline import dataset_endpoint, track_held_connections
from tui_connector.demo.replies import JSON_TYPE, json_bytes
from tui_connector.demo.routes import DATASET_ROUTES
from tui_connector.demo.state import DemoState, RequestLogEntry

__all__ = [
    "DemoKnobs",
    "DemoServer",
    "DemoState",
    "RequestLogEntry",
    "build_app",
    "serve_forever",
]


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(payload), status=status, content_type=JSON_TYPE)


def _control_routes(state: DemoState) -> list[web.RouteDef]:
    async def get_knobs(_request: web.Request) -> web.Response:
        return _json_response(state.knobs.to_json())

    async def post_knobs(request: web.Request) -> web.Response:
        try:
            fields = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _json_response({"error": "the body must be a JSON object"}, 400)
        if not isinstance(fields, dict):
            return _json_response({"error": "the body must be a JSON object"}, 400)
        known = {f.name for f in dataclasses.fields(DemoKnobs)}
        unknown = sorted(set(fields) - known)
        if unknown:
            return _json_response({"error": f"unknown knob(s): {', '.join(unknown)}"}, 400)
        try:
            knobs = state.update_knobs(**fields)
        except (TypeError, ValueError) as exc:
            return _json_response({"error": str(exc)}, 400)
        return _json_response(knobs.to_json())

    async def get_log(_request: web.Request) -> web.Response:
        return _json_response([entry.to_json() for entry in state.log()])

    async def post_reset(_request: web.Request) -> web.Response:
        state.reset()
        return _json_response({"reset": True})

    async def echo(request: web.Request) -> web.Response:
        return await token_guard(request, state.knobs) or _json_response(echo_request(request))

    return [
        web.get("/_demo/knobs", get_knobs),
        web.post("/_demo/knobs", post_knobs),
        web.get("/_demo/log", get_log),
        web.post("/_demo/reset", post_reset),
        web.get("/secure/echo", echo),
    ]


def build_app(state: DemoState) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application()
    track_held_connections(app)
    oauth = OAuthServer(state.oauth_tokens)
    app.on_cleanup.append(oauth.close)
    routes = _control_routes(state)
    routes.append(web.post("/oauth/token", dataset_endpoint(state, oauth.token_endpoint)))
    for prefix, guard in (("/v1", None), ("/secure", token_guard), ("/oauth", oauth.guard)):
        for method, path, handler in DATASET_ROUTES:
            endpoint = dataset_endpoint(state, handler, guard)
            routes.append(web.route(method, prefix + path, endpoint))
    app.add_routes(routes)
    return app


async def _start(
    state: DemoState, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


class DemoServer:
    """The demo API on its own event loop in a daemon thread.

    ``with DemoServer(DemoKnobs(records=237)) as server: httpx.get(server.url + "/v1/all/x")``
    """

    def __init__(
        self,
        knobs: DemoKnobs | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shutdown_grace: float = 0.5,
    ):
        self.host = host
        self.shutdown_grace = shutdown_grace
        self._requested_port = port
        self.state = DemoState(knobs or DemoKnobs())
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # lifecycle

    def start(self) -> DemoServer:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("the demo server was already started")
        self._thread = threading.Thread(target=self._run, name="demo-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving (requests in flight get a short grace period) and join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        thread.join()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        # asyncio.run, not a bare loop: it cancels and awaits the handlers still pending when
        # serving stops (a dropped or slowed reply), which a closed loop would leave for the
        # garbage collector to destroy later, logging "Task was destroyed but it is pending"
        # into whatever runs then.
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # pragma: no cover - reported through start()
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            runner, self._port = await _start(
                self.state, self.host, self._requested_port, shutdown_timeout=self.shutdown_grace
            )
        except BaseException as exc:
            self._error = exc
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # what tests and the CLI use

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def knobs(self) -> DemoKnobs:
        return self.state.knobs

    def update_knobs(self, **fields: Any) -> DemoKnobs:
        """Change knobs live; TypeError / ValueError on unknown names or bad values."""
        return self.state.update_knobs(**fields)

    @property
    def in_flight(self) -> int:
        """Dataset requests being handled right now (waiting for a turn or served)."""
        return self.state.in_flight

    @property
    def serving(self) -> int:
        """Dataset requests being served right now (at most the ``capacity`` knob)."""
        return self.state.serving

    @property
    def waiting(self) -> int:
        """Dataset requests waiting for a turn to be served (``capacity`` reached)."""
        return self.state.waiting

    @property
    def max_serving(self) -> int:
        """The most dataset requests served at once since the start or the last reset."""
        return self.state.max_serving

    def log(self) -> list[RequestLogEntry]:
        """A copy of the request log (dataset routes only), oldest first."""
        return self.state.log()

    def reset(self) -> None:
        """Clear the request log, the per-request occurrence counters and ``max_serving``."""
        self.state.reset()

    def issued_tokens(self) -> list[str]:
        """Every token the OAuth2 token endpoint issued (access and refresh), oldest first."""
        return self.state.oauth_tokens.issued()

    def revoke_access_tokens(self) -> None:
        """Revoke every OAuth2 access token issued so far: their next use gets a 401."""
        self.state.oauth_tokens.revoke_access()


def serve_forever(knobs: DemoKnobs, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGINT or SIGTERM; print ``listening on <url>`` once bound. Blocking."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(knobs, host, port))


async def _serve_forever(knobs: DemoKnobs, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stopping.set)
    runner, bound = await _start(DemoState(knobs), host, port, shutdown_timeout=1.0)
    try:
        sys.stdout.write(f"listening on http://{host}:{bound}\n")
        sys.stdout.flush()
        await stopping.wait()
    finally:
        await runner.cleanup()
