"""What every request of a stream shares before pagination places its position in it: the
method, the URL, the static query params, the JSON body template, and the API-key param the
HTTP layer adds (which must stay out of the next links a checkpoint stores)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tui_connector.config import ApiKeyAuth, Scalar, SourceSpec, scalar_text
from tui_connector.exchange import InvalidUrl, Origin, PageRequest, origin
from tui_connector.extract import excerpt
from tui_connector.paginate.errors import PaginationError


class RequestTemplate:
    """One stream's request before pagination: built once, read for every page."""

    __slots__ = ("auth_param", "body", "method", "origin", "params", "url")

    def __init__(
        self,
        method: str,
        url: str,
        params: Mapping[str, Scalar] | None = None,
        body: Mapping[str, Any] | None = None,
        auth_param: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.method = method
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        """The URL without its query: httpx replaces (not merges) a URL's query when given
        params, so a query written in the url travels in `params` instead."""
        self.params: Mapping[str, str] = {
            **dict(parse_qsl(parts.query, keep_blank_values=True)),
            **{name: scalar_text(value) for name, value in (params or {}).items()},
        }
        """The static query params: the url's own, under the configured ones of that name."""
        self.body = body
        self.auth_param = auth_param
        """The query param carrying an API key: servers echo it into their next links, and
        the state DB is not a secret store."""
        self.origin: Origin = checked_origin(url)
        """Where the source's credentials may go (next links elsewhere need consent)."""

    @classmethod
    def from_spec(cls, spec: SourceSpec) -> RequestTemplate:
        auth = spec.auth
        auth_param = auth.param if isinstance(auth, ApiKeyAuth) else None
        return cls(spec.method, spec.url, spec.params, spec.body, auth_param)

    def request(
        self, params: Mapping[str, str] | None = None, body: Any | None = None
    ) -> PageRequest:
        """The request with pagination's `params` added to the static ones, and `body` (by
        default a fresh copy of the template)."""
        query = {**self.params, **params} if params else dict(self.params)
        return PageRequest(
            self.method, self.url, query, self.fresh_body() if body is None else body
        )

    def follow(self, url: str) -> PageRequest:
        """The request for a next link: it carries its own query."""
        return PageRequest(self.method, url, {}, self.fresh_body())

    def fresh_body(self) -> Any | None:
        """A copy of the body template that placing a value in cannot change the template."""
        return None if self.body is None else copy.deepcopy(dict(self.body))

    def without_auth_param(self, url: str) -> str:
        if self.auth_param is None:
            return url
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if not any(name == self.auth_param for name, _ in pairs):
            return url
        query = urlencode([(name, value) for name, value in pairs if name != self.auth_param])
        return urlunsplit(parts._replace(query=query))


def place(body: Any | None, dotted_path: str, value: Any) -> dict[str, Any]:
    """Put `value` at `dotted_path` in `body` (a fresh copy), creating objects on the way."""
    root: dict[str, Any] = body if isinstance(body, dict) else {}
    target = root
    *parents, last = dotted_path.split(".")
    for index, part in enumerate(parents):
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: index + 1])
            raise PaginationError(
                f"{dotted_path!r}: the body's {where!r} is {excerpt(child, 60)}, not an object, "
                "so no value can be placed in it"
            )
        target = child
    target[last] = value
    return root


def checked_origin(url: str) -> Origin:
    """The URL's origin; a URL whose origin cannot be told cannot be paginated safely."""
    try:
        return origin(url)
    except InvalidUrl as exc:
        raise PaginationError(str(exc)) from None
