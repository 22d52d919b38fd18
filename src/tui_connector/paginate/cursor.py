"""`type: cursor`: an opaque cursor read from each response, sent back as a query param or
placed in the JSON body (GraphQL's `after`)."""

from __future__ import annotations

from typing import Any

from tui_connector.config import CursorPagination, scalar_text
from tui_connector.exchange import Page, PageRequest, shorten
from tui_connector.extract import excerpt, read_value
from tui_connector.paginate.base import BasePaginator, State, where
from tui_connector.paginate.errors import PaginationError
from tui_connector.paginate.request import place

_CURSOR_SHOWN = 16


class CursorPaginator(BasePaginator[CursorPagination]):
    style = "cursor"
    position = "cursor"
    first_page_repeated = (
        "the server seems to ignore the cursor sent",
        "check pagination.cursor_param or cursor_body_field",
    )

    def request_at(self, state: State) -> PageRequest:
        pagination, template = self.pagination, self.template
        cursor = state["cursor"]
        if cursor is None:
            return template.request()
        if pagination.cursor_param is not None:
            return template.request({pagination.cursor_param: scalar_text(cursor)})
        assert pagination.cursor_body_field is not None  # config: exactly one
        return template.request(
            body=place(template.fresh_body(), pagination.cursor_body_field, cursor)
        )

    def next_position(self, state: State, page: Page, pages: int) -> Any:
        ref = self.pagination.cursor
        cursor = read_value(ref, page.body, page.headers)
        if cursor is None or cursor == "":
            return None
        if isinstance(cursor, bool) or not isinstance(cursor, str | int | float):
            raise PaginationError(
                f"the next cursor read from {where(ref)} is not a string or "
                f"number: {excerpt(cursor, 80)}; point pagination.cursor at the cursor value"
            )
        if cursor == state["cursor"]:
            raise PaginationError(
                "the server returned the same cursor twice in a row "
                f"({shorten(str(cursor), 40)}); stopping instead of looping forever"
            )
        return cursor

    def describe_position(self, state: State) -> str:
        cursor = state.get("cursor")
        return "first page" if cursor is None else f"cursor {shorten(str(cursor), _CURSOR_SHOWN)}"
