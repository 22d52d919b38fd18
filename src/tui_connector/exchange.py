"""What passes between pagination and HTTP: the request for a page, the page that came back,
and the URL rules both apply (same origin, how a URL is shown in messages).

Pure values and functions: no I/O, no HTTP client, no pagination style.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tui_connector.redact import REDACTED, looks_secret

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


@dataclass(frozen=True)
class PageRequest:
    method: str
    url: str
    """Absolute URL to request; a next link already carries its query string."""
    params: dict[str, str]
    """Query parameters to add: static config params plus pagination params (empty for a
    next link, which carries its own)."""
    json: Any | None
    """The JSON body for POST (a fresh copy of the template, cursor placed), else None."""


@dataclass(frozen=True)
class Page:
    url: str
    """The URL actually requested, with its query: relative next links resolve against it."""
    headers: Mapping[str, str]
    body: Any
    records: list[Any]


class InvalidUrl(ValueError):
    """A URL whose origin cannot be told (an invalid port)."""


def origin(url: str) -> Origin:
    """Scheme, host and port (the scheme's default port when none is written)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise InvalidUrl(f"{shown_url(url)!r} has an invalid port") from None
    return scheme, (parts.hostname or ""), port or DEFAULT_PORTS.get(scheme)


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host and port: credentials may go to both."""
    return origin(url) == origin(other)


def origin_text(of: Origin) -> str:
    scheme, host, port = of
    return (
        f"{scheme}://{host}" if port == DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"
    )


def shown_url(url: str) -> str:
    """The URL with any password and secret-looking query values masked, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(looks_secret(name) for name, _ in pairs):
        masked = [(name, REDACTED if looks_secret(name) else value) for name, value in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
