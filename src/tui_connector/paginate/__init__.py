"""Pagination as pure logic: from a checkpointed state, the request for the page it points at;
from that page, the state for the next page, the rest of the pages at once, or the end.

One class per style (`single`, `page_number`, `offset`, `cursor`, `next_url`) fills in the
hooks of `BasePaginator`, which keeps the generic steps: the checkpoint's counters, the loop
guard, the stop rules. `registry.PAGINATORS` maps `pagination.type` to its class. To add a
style: a pagination model in the config, a class here implementing `request_at`,
`next_position` and `describe_position` (and `first_position`, `page_size` where the style
fixes them; `AddressablePaginator` for pages addressable by index), listed in the registry.

The checkpoint is the state dict, stored as JSON: its keys and values are a format old state
databases rely on (`style`, `pages`, `records`, `digest`, `first_size`, `total_records`,
`total_pages`, the position — `page`, `offset`, `cursor` or `next` — and `parallel` with
`count`, `low`, `done`). Nothing here does I/O.
"""

from tui_connector.paginate.base import AnyPagination, BasePaginator, State, Step
from tui_connector.paginate.errors import PaginationError
from tui_connector.paginate.next_url import next_link
from tui_connector.paginate.parallel import AddressablePaginator, ParallelPages
from tui_connector.paginate.registry import PAGINATORS, build_paginator, paginator_for
from tui_connector.paginate.request import RequestTemplate, place

__all__ = [
    "PAGINATORS",
    "AddressablePaginator",
    "AnyPagination",
    "BasePaginator",
    "PaginationError",
    "ParallelPages",
    "RequestTemplate",
    "State",
    "Step",
    "build_paginator",
    "next_link",
    "paginator_for",
    "place",
]
