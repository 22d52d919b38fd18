"""One pooled `httpx.AsyncClient` per source: transport, timeouts, headers, auth and TLS, and
the URL of a request with its query parameters."""

from __future__ import annotations

import functools
import ssl
from urllib.parse import quote, urlencode

import httpx

from tui_connector.config import ApiKeyAuth, BasicAuth, BearerAuth, OAuth2Auth, SourceSpec
from tui_connector.exchange import PageRequest
from tui_connector.http.transport import truthful_transport

USER_AGENT = "tui-connector"


def _auth_and_params(spec: SourceSpec) -> tuple[httpx.Auth | None, dict[str, str], dict[str, str]]:
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    auth: httpx.Auth | None = None
    match spec.auth:
        case BearerAuth(token=token):
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        case BasicAuth(username=username, password=password):
            auth = httpx.BasicAuth(username, password.get_secret_value())
        case ApiKeyAuth(key=key, header=header, param=param):
            if header:
                headers[header] = key.get_secret_value()
            elif param:
                params[param] = key.get_secret_value()
        case OAuth2Auth():
            pass  # its access token changes: `oauth2.OAuth2Tokens` puts it on each request
    return auth, headers, params


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every source: building one loads the CA bundle, about 16 ms of
    blocked event loop each, which a config of a hundred sources paid at every start."""
    return httpx.create_ssl_context()


def build_client(spec: SourceSpec, pool_size: int) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """One client per source, and the query parameters its auth adds to every request.

    The pool is as large as the most the source may ever run at once, so no request waits in
    the pool behind the concurrency limiter's back."""
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    timeout = httpx.Timeout(
        connect=spec.timeout.connect,
        read=spec.timeout.read,
        write=spec.timeout.read,
        pool=spec.timeout.total,
    )
    transport = truthful_transport(spec.transport, limits, tls_context())
    auth, auth_headers, auth_params = _auth_and_params(spec)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update({name: str(value) for name, value in spec.headers.items()})
    headers.update(auth_headers)
    client = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        headers=headers,
        auth=auth,
        follow_redirects=False,  # `redirects` follows them, refusing other hosts
    )
    # Query params are merged into each URL by `request_url`: httpx replaces a URL's query
    # with any params given (client-level ones included), which would drop a next link's query.
    return client, auth_params


def request_url(request: PageRequest, auth_params: dict[str, str]) -> str | httpx.URL:
    """The URL with the request's and the auth's params. Parsing a URL is a good part of
    a request's CPU time, so a URL without a query of its own (the common case) gets its
    params appended as text; one with a query has them merged, replacing its own."""
    params = {**request.params, **auth_params}
    if not params:
        return request.url
    if "?" not in request.url:
        return f"{request.url}?{urlencode(params, quote_via=quote)}"
    return httpx.URL(request.url).copy_merge_params(params)
