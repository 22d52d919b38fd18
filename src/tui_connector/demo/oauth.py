"""The demo API's OAuth 2.0 authorization server, and who may use the ``/oauth`` routes.

- ``POST /oauth/token`` (RFC 6749): the grants ``client_credentials`` (§4.4) and
  ``refresh_token`` (§6) for one client (``oauth_client_id``, ``oauth_client_secret``),
  authenticated with HTTP Basic or in the form. Access tokens live ``oauth_token_ttl_s`` from
  the request's arrival (its answer comes ``latency_ms`` later, as a far provider's does);
  with ``oauth_rotate``, each refresh revokes the refresh token it used and issues a new one.
  ``oauth_answer_fields`` replace fields of the answers (an odd provider's).
  Errors as §5.2 words them: ``invalid_client`` (401), ``invalid_grant``,
  ``unsupported_grant_type``, ``invalid_request`` (400). The endpoint goes through the request
  pipeline like a dataset route: capacity, latency, faults and the request log.
- ``/oauth/<dataset route>``: every dataset route, for a bearer token the endpoint issued
  that has not expired (nor been revoked); else 401 ``invalid_token``; never one with
  ``oauth_api_accepts`` false. With ``oauth_introspection_url``, for a
  token another authorization server says is active (RFC 7662 introspection): how the tests
  check the tokens of a real one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from urllib.parse import parse_qs, quote_plus, unquote_plus

import aiohttp
from aiohttp import web
from yarl import URL

from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.replies import JSON_TYPE, Reply, json_bytes

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class IssuedTokens:
    """The tokens the token endpoint issued: access tokens until they expire, refresh tokens
    until used (with rotation). Used on the server's loop; `issued` from any thread."""

    def __init__(self) -> None:
        self._access: dict[str, float] = {}  # token -> when it expires (monotonic)
        self._refresh: set[str] = set()  # issued by a rotation, not used yet
        self._used: set[str] = set()  # refresh tokens a rotation revoked
        self._issued: list[str] = []

    def new_access(self, lifetime: float, since: float) -> str:
        """A new access token, living `lifetime` seconds from `since` (monotonic)."""
        now = time.monotonic()
        self._access = {token: end for token, end in self._access.items() if end > now}
        token = _new("at")
        self._access[token] = since + lifetime
        self._issued.append(token)
        return token

    def access_valid(self, token: str) -> bool:
        expires = self._access.get(token)
        return expires is not None and time.monotonic() < expires

    def revoke_access(self) -> None:
        """Revoke every access token issued so far (from any thread)."""
        self._access = {}

    def refresh_valid(self, token: str, first: str) -> bool:
        """Whether `token` may be used: `first` (the knob's) or a rotation's, unused."""
        return token not in self._used and (token in self._refresh or _same(token, first))

    def rotate(self, used: str) -> str:
        self._used.add(used)
        self._refresh.discard(used)
        token = _new("rt")
        self._refresh.add(token)
        self._issued.append(token)
        return token

    def issued(self) -> list[str]:
        """Every token issued so far, oldest first."""
        return list(self._issued)


def _new(kind: str) -> str:
    return f"{kind}-{secrets.token_urlsafe(24)}"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _error(status: int, code: str, description: str, basic: bool = False) -> Reply:
    headers = dict(_NO_STORE)
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="tui-connector demo"'
    return Reply({"error": code, "error_description": description}, status, headers)


class OAuthServer:
    """The token endpoint (a dataset handler) and the guard of the ``/oauth`` routes."""

    def __init__(self, tokens: IssuedTokens) -> None:
        self.tokens = tokens
        self._session: aiohttp.ClientSession | None = None  # for introspection, made when needed

    async def close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # -- POST /oauth/token ------------------------------------------------------------------

    def token_endpoint(self, request: web.Request, knobs: DemoKnobs, body: bytes) -> Reply:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {name: values[0] for name, values in fields.items()}
        refused = self._client_refused(request, form, knobs)
        if refused is not None:
            return refused
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._issue(knobs, form.get("scope"))
        if grant == "refresh_token":
            given = form.get("refresh_token", "")
            if not self.tokens.refresh_valid(given, knobs.oauth_refresh_token):
                return _error(
                    400, "invalid_grant", "the refresh token is invalid, expired or revoked"
                )
            rotated = self.tokens.rotate(given) if knobs.oauth_rotate else None
            return self._issue(knobs, form.get("scope"), rotated)
        if grant is None:
            return _error(400, "invalid_request", "grant_type is missing")
        return _error(400, "unsupported_grant_type", f"the grant {grant!r} is not supported")

    def _client_refused(
        self, request: web.Request, form: dict[str, str], knobs: DemoKnobs
    ) -> Reply | None:
        """None if the client authenticated (RFC 6749 §2.3.1), else the error to answer."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        basic = scheme.lower() == "basic"
        if basic:
            if "client_secret" in form:
                return _error(400, "invalid_request", "more than one client authentication")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, secret = (unquote_plus(part) for part in decoded.partition(":"))
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if client_id != knobs.oauth_client_id or not _same(secret, knobs.oauth_client_secret):
            return _error(401, "invalid_client", "client authentication failed", basic=basic)
        return None

    def _issue(
        self, knobs: DemoKnobs, scope: str | None, refresh_token: str | None = None
    ) -> Reply:
        lifetime = knobs.oauth_token_ttl_s
        # Counted from the request's arrival, before the latency the pipeline waited.
        arrived = time.monotonic() - knobs.latency_ms / 1000
        payload: dict[str, object] = {
            "access_token": self.tokens.new_access(lifetime, arrived),
            "token_type": "Bearer",
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
        }
        if scope:
            payload["scope"] = scope
        if refresh_token is not None:
            payload["refresh_token"] = refresh_token
        payload.update(knobs.oauth_answer_fields or {})
        return Reply(payload, headers=dict(_NO_STORE))

    # -- the /oauth routes ------------------------------------------------------------------

    async def guard(self, request: web.Request, knobs: DemoKnobs) -> web.Response | None:
        """None if `request` carries a token the routes accept, else the response refusing it."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _refusal("invalid_request", "a bearer token is required")
        introspection = knobs.oauth_introspection_url
        if not knobs.oauth_api_accepts:
            active = False
        elif introspection is None:
            active = self.tokens.access_valid(token)
        else:
            try:
                active = await self._introspect(URL(introspection), token)
            except (aiohttp.ClientError, ValueError) as exc:
                return web.Response(
                    body=json_bytes({"error": f"token introspection failed: {exc}"}),
                    status=503,
                    content_type=JSON_TYPE,
                )
        if active:
            return None
        return _refusal("invalid_token", "the access token is invalid or has expired")

    async def _introspect(self, endpoint: URL, token: str) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        credentials = f"{quote_plus(endpoint.user or '')}:{quote_plus(endpoint.password or '')}"
        basic = "Basic " + base64.b64encode(credentials.encode()).decode()  # RFC 6749 §2.3.1
        async with self._session.post(
            endpoint.with_user(None), data={"token": token}, headers={"Authorization": basic}
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status} from the introspection endpoint")
            answer = await response.json()
        return isinstance(answer, dict) and answer.get("active") is True


def _refusal(code: str, description: str) -> web.Response:
    return web.Response(
        body=json_bytes({"error": code, "error_description": description}),
        status=401,
        content_type=JSON_TYPE,
        headers={
            "WWW-Authenticate": f'Bearer realm="tui-connector demo", error="{code}"',
        },
    )
