"""The former one-class interface, `Paginator(spec)`, over the strategies. Kept only until the
engine builds its paginators with `paginator_for` and steps with `BasePaginator.step` and
`ParallelPages`; delete this module then."""

from __future__ import annotations

from tui_connector.config import SourceSpec
from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate.base import State
from tui_connector.paginate.registry import paginator_for


class Paginator:
    """One source's pagination: `start`, `request`, `advance`, `page_count`, `seek` and
    `describe` over state dicts, as the strategy of its style does them."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.pagination = spec.pagination
        self.style: str = spec.pagination.type
        self.strategy = paginator_for(spec)

    def start(self) -> State:
        return self.strategy.start()

    def request(self, state: State) -> PageRequest:
        return self.strategy.request(state)

    def advance(self, state: State, page: Page) -> State | None:
        return self.strategy.advance(state, page)

    def page_count(self, state: State) -> int | None:
        return self.strategy.page_count(state)

    def seek(self, state: State, index: int) -> State:
        return self.strategy.seek(state, index)

    def describe(self, state: State) -> str:
        return self.strategy.describe(state)
