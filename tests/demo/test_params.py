"""Selecting records through a request's params: time windows, shards, a dataset size."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tui_connector.demo import data
from tui_connector.demo.server import DemoServer

from .helpers import ids, parse_link
from helpers import RECORDS, expected_ids

BASE = data.BASE_EPOCH

#: Query params and the GraphQL variables that mean the same.
GRAPHQL_NAMES = {
    "updated_since": "updatedSince",
    "updated_before": "updatedBefore",
    "shards": "shards",
    "shard": "shard",
    "dataset_size": "datasetSize",
}
STYLES = ("pages", "offset", "cursor", "header-cursor", "next", "link", "graphql", "all")


def walk(
    http: httpx.Client, style: str, ds: str, select: dict[str, Any], size: int = 5
) -> list[str]:
    """Every record id a client paging through `style` with the selection `select` receives."""
    seen: list[str] = []
    if style == "all":
        return ids(http.get(f"/v1/all/{ds}", params=select).json())
    variables: dict[str, Any] = {GRAPHQL_NAMES[k]: v for k, v in select.items()}
    variables.update(dataset=ds, first=size)
    params: dict[str, Any] = {**select, "limit": size}
    url: str | None = f"/v1/{style}/{ds}?{httpx.QueryParams({**select, 'per_page': size})}"
    for page in range(1, 200):
        if style == "graphql":
            items = http.post("/v1/graphql", json={"variables": variables}).json()["data"]["items"]
            seen += ids(items["nodes"])
            if not items["pageInfo"]["hasNextPage"]:
                return seen
            variables["after"] = items["pageInfo"]["endCursor"]
        elif style == "pages":
            body = http.get(f"/v1/pages/{ds}", params={**select, "page": page, "per_page": size})
            if not body.json()["data"]:
                return seen
            seen += ids(body.json()["data"])
        elif style == "offset":
            results = http.get(f"/v1/offset/{ds}", params={**params, "offset": len(seen)})
            if not results.json()["results"]:
                return seen
            seen += ids(results.json()["results"])
        elif style == "cursor":
            body = http.get(f"/v1/cursor/{ds}", params=params).json()
            seen += ids(body["items"])
            if not body["has_more"]:
                return seen
            params["cursor"] = body["next_cursor"]
        elif style == "header-cursor":
            response = http.get(f"/v1/header-cursor/{ds}", params=params)
            seen += ids(response.json())
            if "X-Next-Cursor" not in response.headers:
                return seen
            params["after"] = response.headers["X-Next-Cursor"]
        else:  # next, link: follow the links, which must keep the selection params
            assert url is not None
            response = http.get(url)
            seen += ids(response.json()["data"] if style == "next" else response.json())
            if style == "next":
                url = response.json()["links"]["next"]
            else:
                url = parse_link(response.headers["Link"]).get("next")
            if url is None:
                return seen
            assert all(f"{name}=" in url for name in select)
    raise AssertionError(f"{style}: no last page after 200 pages")


def numbered(ds: str, numbers: range) -> list[str]:
    return [f"{ds}-{n:06d}" for n in numbers]


#: Minutes 5 to 16 (records 5..16), written in every accepted way.
WINDOW_FORMATS = [
    ("2024-01-01T00:05:00Z", "2024-01-01T00:17:00Z"),
    ("2024-01-01T01:05:00+01:00", "2024-01-01T00:17:00+00:00"),
    ("2023-12-31T19:04:59.5-05:00", "2024-01-01T00:16:00.000001Z"),
    ("2024-01-01 00:05", "2024-01-01T00:17"),  # no offset: UTC
    (str(BASE + 300), str(BASE + 1020)),
    (f"{BASE + 240}.001", f"{BASE + 960}.5"),
    (str((BASE + 300) * 1000), str((BASE + 1020) * 1000 - 1)),
    (str((BASE + 241) * 1000), str((BASE + 961) * 1000)),
]


@pytest.mark.parametrize(("since", "before"), WINDOW_FORMATS)
def test_time_window_formats(client: httpx.Client, since: str, before: str) -> None:
    window = {"updated_since": since, "updated_before": before}
    expected = numbered("tw", range(5, 17))
    assert ids(client.get("/v1/all/tw", params=window).json()) == expected
    response = client.get("/v1/pages/tw", params={**window, "per_page": 5, "page": 3})
    body = response.json()
    assert (body["total"], body["total_pages"], response.headers["X-Total-Count"]) == (12, 3, "12")
    assert ids(body["data"]) == expected[10:]
    variables = {"dataset": "tw", "first": 100, "updatedSince": since, "updatedBefore": before}
    nodes = client.post("/v1/graphql", json={"variables": variables}).json()["data"]["items"]
    assert ids(nodes["nodes"]) == expected


def test_time_window_as_json_numbers_in_graphql(client: httpx.Client) -> None:
    for since, before in ((BASE + 300, BASE + 1020), ((BASE + 300) * 1000, BASE + 1019.5)):
        variables = {"dataset": "tj", "updatedSince": since, "updatedBefore": before}
        items = client.post("/v1/graphql", json={"variables": variables}).json()["data"]["items"]
        assert ids(items["nodes"]) == numbered("tj", range(5, 17))


@pytest.mark.parametrize("style", STYLES)
def test_walking_a_window_returns_exactly_its_records(client: httpx.Client, style: str) -> None:
    window = {"updated_since": "2024-01-01T00:05:00Z", "updated_before": "2024-01-01T00:17:00Z"}
    assert walk(client, style, "ww", window) == numbered("ww", range(5, 17))
    since = {"updated_since": "2024-01-01T03:48:00Z"}  # the last 9 of 237 records
    assert walk(client, style, "ww", since, size=3) == numbered("ww", range(228, 237))
    before = {"updated_before": "2024-01-01T00:11:00Z"}
    assert walk(client, style, "ww", before, size=4) == numbered("ww", range(11))
    assert walk(client, style, "ww", {"updated_since": "2024-01-02"}) == []  # after the last one


def test_totals_and_links_reflect_the_window(client: httpx.Client) -> None:
    window = {"updated_since": "2024-01-01T00:05:00Z", "updated_before": "2024-01-01T00:17:00Z"}
    offset = client.get("/v1/offset/tt", params={**window, "offset": 10, "limit": 5})
    assert offset.json()["count"] == 12 and offset.headers["X-Total-Count"] == "12"
    assert ids(offset.json()["results"]) == numbered("tt", range(15, 17))
    cursor = client.get("/v1/cursor/tt", params={**window, "limit": 12}).json()
    assert (len(cursor["items"]), cursor["has_more"], cursor["next_cursor"]) == (12, False, None)
    link = client.get("/v1/link/tt", params={**window, "page": 1, "per_page": 6})
    links = parse_link(link.headers["Link"])
    assert links["next"] == f"/v1/link/tt?page=2&per_page=6&{httpx.QueryParams(window)}"
    assert links["first"] == f"/v1/link/tt?page=1&per_page=6&{httpx.QueryParams(window)}"
    last = client.get("/v1/next/tt", params={**window, "page": 2, "per_page": 6}).json()
    assert last["links"]["next"] is None
    empty = client.get("/v1/pages/tt", params={"updated_before": "2023-12-31"}).json()
    assert (empty["data"], empty["total"], empty["total_pages"]) == ([], 0, 0)


def test_misbehaving_routes_select_too(demo: DemoServer, client: httpx.Client) -> None:
    window = {"updated_since": "2024-01-01T00:05:00Z", "updated_before": "2024-01-01T00:17:00Z"}
    params = {**window, "per_page": 5}
    forever = client.get("/v1/bad/last-page-forever/mb", params={**params, "page": 9}).json()
    assert ids(forever["data"]) == numbered("mb", range(15, 17))
    same = client.get("/v1/bad/same-next/mb", params=params).json()
    assert ids(same["data"]) == numbered("mb", range(5, 10))
    assert same["links"]["next"] == f"{demo.url}/v1/bad/same-next/mb?{httpx.QueryParams(params)}"
    text = client.get("/v1/bad/text-plain/mb", params={**params, "page": 2})
    assert text.headers["Content-Type"].startswith("text/plain")
    assert ids(json.loads(text.text)["data"]) == numbered("mb", range(10, 15))


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("updated_since", "yesterday"),
        ("updated_since", "2024-13-01"),
        ("updated_before", "nan"),
        ("updated_before", "1e9"),
        ("updated_before", "2024-01-01T00:00:00 00:00"),  # an unencoded "+"
        ("shards", "0"),
        ("shards", "two"),
        ("shard", "-1"),
        ("shard", "3"),  # with shards=3
        ("dataset_size", "-1"),
        ("dataset_size", "1.5"),
    ],
)
def test_bad_selection_params_are_400_naming_the_param(
    client: httpx.Client, param: str, value: str
) -> None:
    for route in ("pages", "offset", "cursor", "header-cursor", "next", "link", "all"):
        response = client.get(f"/v1/{route}/bp", params={"shards": 3, param: value})
        assert response.status_code == 400, route
        assert response.json()["error"].startswith(f"{param} must be")
    variables = {"dataset": "bp", "shards": 3, GRAPHQL_NAMES[param]: value}
    response = client.post("/v1/graphql", json={"variables": variables})
    assert response.status_code == 200  # GraphQL reports bad variables as errors
    assert f"variables.{GRAPHQL_NAMES[param]}" in response.json()["errors"][0]["message"]


def test_shards_partition_the_records(client: httpx.Client) -> None:
    shards = [walk(client, "cursor", "sh", {"shards": 3, "shard": i}, size=50) for i in range(3)]
    # Together: every record, each once.
    assert Counter(n for shard in shards for n in shard) == expected_ids("sh")
    for i, shard in enumerate(shards):
        assert shard == numbered("sh", range(i, RECORDS, 3))
    body = client.get("/v1/pages/sh", params={"shards": 3, "shard": 2}).json()
    assert (body["total"], body["total_pages"]) == (79, 2)
    assert walk(client, "graphql", "sh", {"shards": 3, "shard": 1}, size=50) == shards[1]


def test_shards_within_a_window(client: httpx.Client) -> None:
    window = {"updated_since": "2024-01-01T00:05:00Z", "updated_before": "2024-01-01T00:17:00Z"}
    got = [walk(client, "link", "sw", {**window, "shards": 4, "shard": i}, 2) for i in range(4)]
    assert got[1] == numbered("sw", range(5, 17, 4)) == ["sw-000005", "sw-000009", "sw-000013"]
    assert sorted(n for shard in got for n in shard) == numbered("sw", range(5, 17))
    assert walk(client, "graphql", "sw", {**window, "shards": 4, "shard": 0}) == got[0]


def test_dataset_size_overrides_the_records_knob(client: httpx.Client) -> None:
    for size in (0, 12, 2000):
        assert walk(client, "all", "dz", {"dataset_size": size}) == numbered("dz", range(size))
        body = client.get("/v1/pages/dz", params={"dataset_size": size, "per_page": 7}).json()
        assert body["total"] == size and body["total_pages"] == -(-size // 7)
    assert walk(client, "next", "dz", {"dataset_size": 12}) == numbered("dz", range(12))
    assert walk(client, "graphql", "dz", {"dataset_size": 7}, size=3) == numbered("dz", range(7))
    assert client.get("/v1/pages/dz").json()["total"] == RECORDS  # the knob, per request only
    dated = {"dataset_size": 3000, "updated_since": "2024-01-02", "updated_before": "2024-01-03"}
    body = client.get("/v1/offset/dz", params={**dated, "limit": 2}).json()
    assert body["count"] == 1440 and ids(body["results"]) == ["dz-001440", "dz-001441"]
    assert body["results"][0]["updated_at"] == "2024-01-02T00:00:00Z"
