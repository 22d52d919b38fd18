"""`type: page_number`: page 1, 2, 3… in a query param, with an optional page size."""

from __future__ import annotations

from tui_connector.config import PageNumberPagination
from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate.base import State
from tui_connector.paginate.parallel import AddressablePaginator


class PageNumberPaginator(AddressablePaginator[PageNumberPagination]):
    style = "page_number"
    position = "page"
    first_page_repeated = (
        "an API counting its pages from 1 answers page 0 with page 1, and one ignoring the "
        "page parameter repeats its first page",
        "check pagination.start and page_param",
    )

    def request_at(self, state: State) -> PageRequest:
        pagination = self.pagination
        params = {pagination.page_param: str(state["page"])}
        if pagination.size_param is not None and pagination.size is not None:
            params[pagination.size_param] = str(pagination.size)
        return self.template.request(params)

    def next_position(self, state: State, page: Page, pages: int) -> int:
        page_number: int = state["page"]
        return page_number + 1

    def describe_position(self, state: State) -> str:
        return f"page {state.get('page')}"

    def page_size(self, state: State) -> int:
        size = self.pagination.size
        return super().page_size(state) if size is None else size

    def known_count(self, state: State) -> int | None:
        total_pages: int | None = state.get("total_pages")
        return super().known_count(state) if total_pages is None else total_pages

    def position_of(self, state: State, index: int) -> int:
        return self.pagination.start + index
