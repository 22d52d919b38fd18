"""`type: none`: one request is the whole stream."""

from __future__ import annotations

from tui_connector.config import NoPagination
from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate.base import BasePaginator, State


class SinglePage(BasePaginator[NoPagination]):
    style = "none"

    def start(self) -> State:
        # No position, and none of the counters the loop guard and stop rules keep.
        return {"style": self.style, "pages": 0, "records": 0}

    def advance(self, state: State, page: Page) -> State | None:
        return None

    def request_at(self, state: State) -> PageRequest:
        return self.template.request()

    def describe_position(self, state: State) -> str:
        return "single request"
