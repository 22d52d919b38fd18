"""`type: next_url`: each response names the next page's URL, in its body, in the RFC 8288
`Link` header, or in another header. The URL is checked before it is followed: http(s) only,
the source's origin unless other hosts are allowed, and never the page just fetched."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

from tui_connector.config import NextUrlPagination
from tui_connector.exchange import (
    DEFAULT_PORTS,
    Page,
    PageRequest,
    origin_text,
    shorten,
    shown_url,
)
from tui_connector.extract import excerpt, header_value, read_value
from tui_connector.paginate.base import BasePaginator, State, where
from tui_connector.paginate.errors import PaginationError
from tui_connector.paginate.request import checked_origin

_URL_SHOWN = 80


class NextUrlPaginator(BasePaginator[NextUrlPagination]):
    style = "next_url"
    position = "next"

    def request_at(self, state: State) -> PageRequest:
        next_url = state["next"]
        template = self.template
        return template.request() if next_url is None else template.follow(next_url)

    def next_position(self, state: State, page: Page, pages: int) -> str | None:
        pagination, template = self.pagination, self.template
        ref = pagination.next
        if ref.header is not None and ref.header.lower() == "link":
            link_header = header_value(page.headers, ref.header)
            raw: Any = None if link_header is None else next_link(link_header)
        else:
            raw = read_value(ref, page.body, page.headers)
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise PaginationError(
                f"the next link read from {where(ref)} is not a URL string: {excerpt(raw, 80)}"
            )
        next_url = template.without_auth_param(urljoin(page.url, raw.strip()))
        shown = shorten(shown_url(next_url), _URL_SHOWN)
        next_origin = checked_origin(next_url)
        if next_origin[0] not in DEFAULT_PORTS:
            raise PaginationError(f"the next link {shown} is not an http(s) URL")
        if next_origin != template.origin and not pagination.allow_other_hosts:
            raise PaginationError(
                f"the next link {shown} points to another host than the source URL "
                f"({shown_url(origin_text(template.origin))}); it could leak your credentials; "
                "set pagination.allow_other_hosts: true if you trust it"
            )
        if next_url in (state["next"], template.without_auth_param(page.url)):
            raise PaginationError(
                f"the server returned the same next link twice in a row ({shown}); "
                "stopping instead of looping forever"
            )
        return next_url

    def describe_position(self, state: State) -> str:
        next_url = state.get("next")
        if next_url is None:
            return "first page"
        return f"next {shorten(shown_url(str(next_url)), _URL_SHOWN)}"


# -- RFC 8288 Link header ----------------------------------------------------------------------

# One link: <uri-reference> followed by ;-separated parameters, quoted or not.
_LINK = re.compile(
    r'<(?P<url>[^>]*)>(?P<params>(?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,"\s]*))?)*)'
)
_LINK_PARAM = re.compile(
    r';\s*(?P<name>[^;,=\s]+)(?:\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^;,"\s]*)))?'
)


def next_link(header: str) -> str | None:
    """The URL of the `rel="next"` link in a Link header (as written: maybe relative)."""
    for link in _LINK.finditer(header):
        for param in _LINK_PARAM.finditer(link["params"]):
            if param["name"].lower() != "rel":
                continue
            rel = param["quoted"] if param["quoted"] is not None else param["token"] or ""
            # rel may hold several space-separated relation types, e.g. rel="next last".
            if "next" in rel.lower().split():
                return link["url"].strip()
            break  # RFC 8288 §3.3: only the first rel parameter of a link counts
    return None
