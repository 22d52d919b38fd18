"""A real OAuth 2.0 authorization server for the tests: oidc-provider (certified OAuth 2.0 /
OpenID Connect, from npm: tests/node, installed by scripts/dev.py) in a node process on
127.0.0.1, launched by tests/node/oidc_server.mjs.

It issues client credentials tokens for one resource that expire every `ttl` seconds, and
answers token introspection (RFC 7662) for the resource server's client: the demo API checks
every bearer token there (`DemoKnobs.oauth_introspection_url`), so only a token this server
issued and still holds valid opens a page."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any

import httpx

NODE_SERVERS = Path(__file__).resolve().parent / "node"
LAUNCHER = NODE_SERVERS / "oidc_server.mjs"
INSTALL = (
    "install Node.js 20 or newer (e.g. apt-get install nodejs npm), then run "
    "python3 scripts/dev.py test (or: cd tests/node && npm install)"
)
# A start takes under a second; a loaded machine may need many more.
START_WITHIN = 60.0


class OidcProviderMissing(RuntimeError):
    """node, or oidc-provider, is not installed: the message says how to install it."""


class OidcProvider:
    """oidc-provider on an ephemeral 127.0.0.1 port; its tokens live `ttl` seconds."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.client_secret = secrets.token_urlsafe(24)
        self.resource_server_secret = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=40)
        self._ready = threading.Event()
        self.endpoints: dict[str, str] = {}  # what the launcher printed once listening

    def start(self) -> OidcProvider:
        node = shutil.which("node")
        if node is None:
            raise OidcProviderMissing(f"the OAuth2 tests need node and oidc-provider: {INSTALL}")
        if not (NODE_SERVERS / "node_modules" / "oidc-provider").is_dir():
            raise OidcProviderMissing(f"oidc-provider is not installed in tests/node: {INSTALL}")
        self._process = subprocess.Popen(
            [node, str(LAUNCHER), "--ttl", str(self.ttl)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=NODE_SERVERS,
            env={
                **os.environ,
                "CLIENT_SECRET": self.client_secret,
                "RESOURCE_SERVER_SECRET": self.resource_server_secret,
            },
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._ready.wait(START_WITHIN) or not self.endpoints:
            self.stop()
            said = "".join(self._output).strip() or "nothing"
            raise RuntimeError(
                f"oidc-provider did not start in {START_WITHIN:.0f} s; it said: {said}"
            )
        return self

    def _read_output(self) -> None:
        """Keep reading what node prints (a full pipe would stall it); the JSON line is the
        sign it listens. The end of its output ends the wait too."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)
            if line.startswith("{") and not self.endpoints:
                self.endpoints = json.loads(line)
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

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def token_url(self) -> str:
        return self.endpoints["token_endpoint"]

    @property
    def introspection_url(self) -> str:
        """The introspection endpoint with the resource server's credentials in it, as the
        demo API's `oauth_introspection_url` knob takes it."""
        endpoint = httpx.URL(self.endpoints["introspection_endpoint"])
        who = self.endpoints["resource_server_id"]
        return str(endpoint.copy_with(username=who, password=self.resource_server_secret))

    def stats(self) -> dict[str, Any]:
        """How many tokens it issued, token requests it refused, introspections it answered."""
        reply = httpx.get(f"{self.endpoints['issuer']}/_stats", timeout=10)
        reply.raise_for_status()
        return dict(reply.json())
