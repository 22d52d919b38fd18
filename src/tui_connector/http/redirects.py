"""Redirects, followed by hand: httpx would forward custom auth headers (an API key) to
another host, where only `Authorization` is dropped. A redirect to another origin is refused
unless the source trusts other hosts (`pagination.allow_other_hosts`)."""

from __future__ import annotations

import httpx

from tui_connector.exchange import same_origin
from tui_connector.http.body import release
from tui_connector.http.errors import fetch_error
from tui_connector.redact import Redactor

MAX_REDIRECTS = 10


class RedirectFollower:
    """Sends a source's requests with its client, following their redirects."""

    def __init__(self, client: httpx.AsyncClient, redact: Redactor, allow_other_hosts: bool):
        self._client = client
        self._redact = redact
        self._allow_other_hosts = allow_other_hosts

    async def send(self, http_request: httpx.Request, attempt: int) -> httpx.Response:
        """The response (streamed, its body not read) at the end of the redirects. Raises a
        FetchError, not worth another attempt, for a refused host or a redirect loop."""
        first = http_request.url
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._client.send(http_request, stream=True)
            if not response.has_redirect_location:
                return response
            await release(response)
            target = http_request.url.join(response.headers["Location"])
            if not same_origin(str(target), str(first)) and not self._allow_other_hosts:
                raise fetch_error(
                    self._redact,
                    f"HTTP {response.status_code} redirect to another host "
                    f"({self._redact(str(target.copy_with(query=None)))}) refused: it would "
                    "receive your credentials; set pagination.allow_other_hosts: true "
                    "if you trust it",
                    self._redact(str(http_request.url)),
                    attempt,
                    retryable=False,
                )
            keeps_body = response.status_code in (307, 308)
            headers = {
                name: value
                for name, value in http_request.headers.items()
                if name.lower() not in ("host", "content-length")
                and (keeps_body or name.lower() != "content-type")
            }
            http_request = self._client.build_request(
                http_request.method if keeps_body else "GET",
                target,
                content=http_request.content if keeps_body else None,
                headers=headers,
            )
        raise fetch_error(
            self._redact,
            f"more than {MAX_REDIRECTS} redirects (a redirect loop?)",
            self._redact(str(http_request.url)),
            attempt,
            retryable=False,
        )
