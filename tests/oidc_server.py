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
from typing import Any

import httpx

from node_server import NODE_SERVERS, NodeServer

LAUNCHER = NODE_SERVERS / "oidc_server.mjs"


class OidcProvider(NodeServer):
    """oidc-provider on an ephemeral 127.0.0.1 port; its tokens live `ttl` seconds."""

    name = "OAuth2 (oidc-provider)"
    package = "oidc-provider"

    def __init__(self, ttl: int) -> None:
        super().__init__()
        self.ttl = ttl
        self.client_secret = secrets.token_urlsafe(24)
        self.resource_server_secret = secrets.token_urlsafe(24)
        self.endpoints: dict[str, str] = {}  # what the launcher printed once listening

    def arguments(self) -> list[str]:
        return [str(LAUNCHER), "--ttl", str(self.ttl)]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "CLIENT_SECRET": self.client_secret,
            "RESOURCE_SERVER_SECRET": self.resource_server_secret,
        }

    def listening(self, line: str) -> bool:
        """The launcher's one JSON line, its endpoints, says it listens."""
        if line.startswith("{"):
            self.endpoints = json.loads(line)
        return bool(self.endpoints)

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
