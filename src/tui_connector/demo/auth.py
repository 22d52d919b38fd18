"""Who may use the ``/secure`` routes while the ``token`` knob is set: the credential forms the
demo API accepts, and its 401."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.replies import JSON_TYPE, json_bytes


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def authorized(request: web.BaseRequest, token: str) -> bool:
    """Bearer token, ``X-API-Key``, ``api_key`` query param, or Basic ``demo:<token>``."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and _same(credentials, token):
            return True
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, colon, password = decoded.partition(":")
            if colon and user == "demo" and _same(password, token):
                return True
    key = request.headers.get("X-API-Key")
    if key is not None and _same(key, token):
        return True
    param = request.query.get("api_key")
    return param is not None and _same(param, token)


def unauthorized() -> web.Response:
    """The 401 a ``/secure`` request without the token gets."""
    return web.Response(
        body=json_bytes({"error": "unauthorized"}),
        status=401,
        content_type=JSON_TYPE,
        headers={"WWW-Authenticate": 'Bearer realm="tui-connector demo"'},
    )


async def token_guard(request: web.BaseRequest, knobs: DemoKnobs) -> web.Response | None:
    """The ``/secure`` routes' guard: None while the ``token`` knob is unset or the request
    carries it, else the 401."""
    if knobs.token is None or authorized(request, knobs.token):
        return None
    return unauthorized()
