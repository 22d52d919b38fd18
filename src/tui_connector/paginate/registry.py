"""Which class paginates which `pagination.type`. A new style is a class with its `style`
name, listed here."""

from __future__ import annotations

from typing import Any

from tui_connector.config import SourceSpec
from tui_connector.paginate.base import AnyPagination, BasePaginator
from tui_connector.paginate.cursor import CursorPaginator
from tui_connector.paginate.next_url import NextUrlPaginator
from tui_connector.paginate.offset import OffsetPaginator
from tui_connector.paginate.page_number import PageNumberPaginator
from tui_connector.paginate.request import RequestTemplate
from tui_connector.paginate.single import SinglePage

PAGINATORS: dict[str, type[BasePaginator[Any]]] = {
    paginator.style: paginator
    for paginator in (
        SinglePage,
        PageNumberPaginator,
        OffsetPaginator,
        CursorPaginator,
        NextUrlPaginator,
    )
}


def build_paginator(pagination: AnyPagination, template: RequestTemplate) -> BasePaginator[Any]:
    """The paginator of a stream: its style's class, from the pagination model and the
    request the stream sends."""
    return PAGINATORS[pagination.type](pagination, template)


def paginator_for(spec: SourceSpec) -> BasePaginator[Any]:
    """The paginator of a stream whose spec is `spec` (see `partitions.stream_spec`)."""
    return build_paginator(spec.pagination, RequestTemplate.from_spec(spec))
