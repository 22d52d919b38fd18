"""The request template (paginate/request.py) and building a paginator from a source's spec
(paginate/registry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_connector.config import load_config
from tui_connector.paginate import (
    PAGINATORS,
    PaginationError,
    RequestTemplate,
    paginator_for,
    place,
)

from .fakes import BASE, full_url


def test_query_written_in_the_config_url_is_kept(tmp_path: Path) -> None:
    # httpx drops a URL's own query when it is given params: it must travel in params.
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"sources:\n  items:\n    url: '{BASE}?kind=a&page=9&empty='\n"
        "    params: {kind: b}\n    pagination: {type: page_number}\n",
        encoding="utf-8",
    )
    spec = load_config(path, env={}).sources["items"]
    request = paginator_for(spec).request(paginator_for(spec).start())
    assert request.url == BASE
    assert request.params == {"kind": "b", "page": "1", "empty": ""}
    assert full_url(request) == f"{BASE}?kind=b&page=1&empty="


def test_a_spec_gives_its_method_body_and_api_key_param(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"sources:\n  items:\n    url: {BASE}\n    method: POST\n    body: {{q: 1}}\n"
        "    auth: {type: api_key, key: k, param: key}\n"
        "    pagination: {type: cursor, cursor: next, cursor_param: after}\n",
        encoding="utf-8",
    )
    paginator = paginator_for(load_config(path, env={}).sources["items"])
    assert type(paginator) is PAGINATORS["cursor"]
    template = paginator.template
    assert (template.method, template.url, template.body, template.auth_param) == (
        "POST",
        BASE,
        {"q": 1},
        "key",
    )


def test_every_style_is_registered_under_its_type() -> None:
    assert set(PAGINATORS) == {"none", "page_number", "offset", "cursor", "next_url"}
    assert all(paginator.style == style for style, paginator in PAGINATORS.items())


def test_a_url_whose_origin_cannot_be_told_is_refused() -> None:
    with pytest.raises(PaginationError, match="has an invalid port"):
        RequestTemplate("GET", "https://api.example.com:99999/items")


def test_the_api_key_param_is_removed_from_a_url_and_nothing_else() -> None:
    template = RequestTemplate("GET", BASE, auth_param="api_key")
    assert template.without_auth_param(f"{BASE}?a=1&api_key=s&b=") == f"{BASE}?a=1&b="
    assert template.without_auth_param(f"{BASE}?a=1") == f"{BASE}?a=1"


def test_place_creates_objects_on_the_way_and_refuses_to_go_through_values() -> None:
    assert place(None, "a.b", 1) == {"a": {"b": 1}}
    assert place({"a": {"c": 2}}, "a.b", 1) == {"a": {"c": 2, "b": 1}}
    with pytest.raises(PaginationError, match="the body's 'a' is 3, not an object"):
        place({"a": 3}, "a.b", 1)
