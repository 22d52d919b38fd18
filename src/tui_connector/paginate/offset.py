"""`type: offset`: a record offset and a limit in query params."""

from __future__ import annotations

from tui_connector.config import OffsetPagination
from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate.base import State
from tui_connector.paginate.errors import PaginationError
from tui_connector.paginate.parallel import AddressablePaginator


class OffsetPaginator(AddressablePaginator[OffsetPagination]):
    style = "offset"
    position = "offset"
    first_page_repeated = (
        "the server seems to ignore the offset parameter",
        "check pagination.offset_param",
    )

    def request_at(self, state: State) -> PageRequest:
        pagination = self.pagination
        return self.template.request(
            {
                pagination.offset_param: str(state["offset"]),
                pagination.limit_param: str(pagination.limit),
            }
        )

    def next_position(self, state: State, page: Page, pages: int) -> int:
        count = len(page.records)
        if count == 0:
            # The offset advances by the records received: with none it would stay put and
            # the same request would be sent forever.
            raise PaginationError(
                f"page {pages} at offset {state['offset']} returned no records, so the "
                "offset cannot advance; set stop.empty_page: true (the default) or a "
                "total/max_pages stop rule"
            )
        offset: int = state["offset"]
        return offset + count

    def describe_position(self, state: State) -> str:
        return f"offset {state.get('offset')}"

    def page_size(self, state: State) -> int:
        return self.pagination.limit

    def known_count(self, state: State) -> int | None:
        first_size = state.get("first_size") or 0
        total_records = state.get("total_records")
        if total_records is not None and 0 < first_size < self.pagination.limit:
            # The server caps the page size below the limit asked: computed offsets would
            # skip records, so it goes one by one (unless the first page was all there is).
            return None if total_records > first_size else 1
        return super().known_count(state)

    def position_of(self, state: State, index: int) -> int:
        return self.pagination.start + index * int(state["first_size"])
