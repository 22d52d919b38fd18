"""The built-in demo API over real HTTP: paging shapes, auth, faults, knobs and the log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tui_connector.demo import data
from tui_connector.demo.faults import FAULTS, decide, request_key
from tui_connector.demo.server import DemoKnobs, DemoServer

from conftest import RECORDS, expected_ids, wait_for

TOKEN = "test-token-5f3a9"  # the session `demo` server's token (conftest)
Factory = Callable[..., DemoServer]


@pytest.fixture
def client(demo: DemoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        yield http


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


# -- records and cursors ----------------------------------------------------------------------


def test_records_are_deterministic_and_well_formed() -> None:
    record = data.record("ds", 42)
    assert record["id"] == "ds-000042" and record["n"] == 42 and record["name"] == "ds item 42"
    assert record["updated_at"] == "2024-01-01T00:42:00Z"
    assert data.record("ds", 24 * 60)["updated_at"] == "2024-01-02T00:00:00Z"
    assert isinstance(record["value"], float) and record["value"] == data.record("ds", 42)["value"]
    assert len({data.record("ds", n)["value"] for n in range(100)}) > 90
    assert ids(data.records("ds", range(230, 237))) == [f"ds-{n:06d}" for n in range(230, 237)]


@pytest.mark.parametrize(
    "numbers",
    [
        range(0),
        range(1),
        range(5, 3),
        range(1441),
        range(1439, 1441),
        range(3, 1441, 7),
        data.select(3000, since=data.BASE_EPOCH + 86_400, shards=4, shard=3)[10:40],
    ],
)
def test_records_json_is_the_json_of_records(numbers: range) -> None:
    for dataset in ("a", "x_y-9"):
        text = data.records_json(dataset, numbers)
        assert text == json.dumps(data.records(dataset, numbers), separators=(",", ":"))
        assert [record["n"] for record in json.loads(text)] == list(numbers)


BASE = data.BASE_EPOCH
#: Instants around the records' minutes (record n is at BASE + 60 n), as exact epoch seconds.
EDGES: list[Fraction | int | None] = [
    None,
    BASE - 3600,
    BASE,
    BASE + Fraction(1, 1_000_000),
    BASE + 59,
    BASE + 60,
    BASE + 60 * 37 - Fraction(1, 1_000_000),
    BASE + 60 * 37 + Fraction(1, 1_000_000),
    BASE + 60 * 99,
    BASE + 60 * 100,
    BASE + 10**9,
]


def test_select_is_the_window_intersected_with_the_shard() -> None:
    total = 100
    for since in EDGES:
        for before in EDGES:
            for shards in (1, 3, 7):
                for shard in range(shards):
                    expected = [
                        n
                        for n in range(total)
                        if (since is None or BASE + 60 * n >= since)
                        and (before is None or BASE + 60 * n < before)
                        and n % shards == shard
                    ]
                    got = data.select(total, since, before, shards, shard)
                    assert list(got) == expected, (since, before, shards, shard)
    with pytest.raises(ValueError):
        data.select(10, shards=2, shard=2)


def test_cursors_round_trip_and_reject_garbage() -> None:
    for offset in (0, 1, 50, 999_999):
        cursor = data.encode_cursor(offset)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
        assert data.decode_cursor(cursor) == offset
    for bad in ("", "zz", "!!!", "bm9wZQ", data.encode_cursor(5)[:-1] + "$"):
        with pytest.raises(ValueError):
            data.decode_cursor(bad)


# -- every paging style walks every record exactly once ---------------------------------------


def walk_pages(http: httpx.Client, route: str) -> tuple[list[str], int]:
    seen: list[str] = []
    requests = 0
    for page in range(1, 100):
        response = http.get(f"/v1/{route}/pg", params={"page": page, "per_page": 50})
        requests += 1
        body = response.json()
        assert response.headers["X-Total-Count"] == str(RECORDS)
        assert (body["page"], body["per_page"], body["total"], body["total_pages"]) == (
            page,
            50,
            RECORDS,
            5,
        )
        if not body["data"]:
            break
        seen += ids(body["data"])
    return seen, requests


def test_pages(client: httpx.Client) -> None:
    seen, requests = walk_pages(client, "pages")
    assert Counter(seen) == expected_ids("pg") and requests == 6  # 5 pages, then an empty one


def test_offset(client: httpx.Client) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        response = client.get("/v1/offset/off", params={"offset": offset, "limit": 50})
        body = response.json()
        assert body["count"] == RECORDS and response.headers["X-Total-Count"] == str(RECORDS)
        if not body["results"]:
            break
        seen += ids(body["results"])
        offset += len(body["results"])
    assert Counter(seen) == expected_ids("off") and offset == RECORDS


def test_cursor(client: httpx.Client) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 50}
    pages = 0
    while True:
        body = client.get("/v1/cursor/cur", params=params).json()
        pages += 1
        seen += ids(body["items"])
        assert body["has_more"] is (body["next_cursor"] is not None)
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert Counter(seen) == expected_ids("cur") and pages == 5


def test_header_cursor(client: httpx.Client) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 50}
    pages = 0
    while True:
        response = client.get("/v1/header-cursor/hc", params=params)
        pages += 1
        assert isinstance(response.json(), list)
        seen += ids(response.json())
        if "X-Next-Cursor" not in response.headers:
            break
        params["after"] = response.headers["X-Next-Cursor"]
    assert Counter(seen) == expected_ids("hc") and pages == 5


def test_next_link_in_body_is_absolute(demo: DemoServer, client: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = f"{demo.url}/v1/next/nx?per_page=50&keep=me&odd=%00records%00"
    pages = 0
    while url is not None:
        assert url.startswith(f"{demo.url}/v1/next/nx?")
        body = client.get(url).json()
        pages += 1
        seen += ids(body["data"])
        url = body["links"]["next"]
        if url is not None:
            assert "keep=me&odd=%00records%00" in url  # other query params survive
    assert Counter(seen) == expected_ids("nx") and pages == 5


LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')


def parse_link(header: str) -> dict[str, str]:
    return {rel: target for target, rel in LINK.findall(header)}


def test_link_header_is_relative_and_parseable(client: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "/v1/link/lk?page=1&per_page=50"
    pages = 0
    while url is not None:
        response = client.get(url)
        pages += 1
        seen += ids(response.json())
        links = parse_link(response.headers["Link"])
        assert links["first"] == "/v1/link/lk?page=1&per_page=50"
        url = links.get("next")
        if url is not None:
            assert url.startswith("/v1/link/lk?") and "://" not in url
            url = urljoin(str(response.url), url)
    assert Counter(seen) == expected_ids("lk") and pages == 5
    assert parse_link(client.get("/v1/link/lk?page=2&per_page=50").headers["Link"])["next"] == (
        "/v1/link/lk?page=3&per_page=50"
    )


def test_graphql(client: httpx.Client) -> None:
    seen: list[str] = []
    variables: dict[str, Any] = {"dataset": "gql", "first": 50, "after": None}
    pages = 0
    while True:
        response = client.post("/v1/graphql", json={"query": "{ items }", "variables": variables})
        assert response.status_code == 200
        items = response.json()["data"]["items"]
        pages += 1
        seen += ids(items["nodes"])
        if not items["pageInfo"]["hasNextPage"]:
            break
        variables["after"] = items["pageInfo"]["endCursor"]
    assert Counter(seen) == expected_ids("gql") and pages == 5


def test_all(client: httpx.Client) -> None:
    assert Counter(ids(client.get("/v1/all/everything").json())) == expected_ids("everything")


def test_no_next_page_when_the_last_page_is_exactly_full(client: httpx.Client) -> None:
    # 237 = 3 x 79: page 3 is full and the last one.
    last = client.get("/v1/link/ex?page=3&per_page=79")
    assert len(last.json()) == 79 and "next" not in parse_link(last.headers["Link"])
    assert "next" in parse_link(client.get("/v1/link/ex?page=2&per_page=79").headers["Link"])
    assert client.get("/v1/next/ex?page=3&per_page=79").json()["links"]["next"] is None
    assert client.get("/v1/next/ex?page=2&per_page=79").json()["links"]["next"] is not None
    cursor = data.encode_cursor(158)
    body = client.get(f"/v1/cursor/ex?cursor={cursor}&limit=79").json()
    assert (len(body["items"]), body["has_more"], body["next_cursor"]) == (79, False, None)
    assert (
        "X-Next-Cursor" not in client.get(f"/v1/header-cursor/ex?after={cursor}&limit=79").headers
    )
    variables = {"dataset": "ex", "first": 79, "after": cursor}
    info = client.post("/v1/graphql", json={"variables": variables}).json()["data"]["items"]
    assert len(info["nodes"]) == 79 and info["pageInfo"]["hasNextPage"] is False


def test_page_size_default_and_clamping(client: httpx.Client) -> None:
    assert len(client.get("/v1/pages/c").json()["data"]) == 50  # the page_size knob
    big = client.get("/v1/pages/c?per_page=5000").json()
    assert big["per_page"] == 1000 and len(big["data"]) == RECORDS
    assert client.get("/v1/pages/c?per_page=0").json()["per_page"] == 1
    assert len(client.get("/v1/offset/c?limit=7").json()["results"]) == 7
    assert client.get("/v1/pages/c?page=99").json()["data"] == []


@pytest.mark.parametrize(
    "url",
    ["/v1/cursor/c?cursor=zz", "/v1/header-cursor/c?after=%21", "/v1/pages/c?page=x"],
)
def test_bad_parameters_are_400_with_json(client: httpx.Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 400
    assert "error" in response.json()


def test_graphql_errors_are_http_200(client: httpx.Client) -> None:
    for variables in ({}, {"first": 5}, {"dataset": "g", "after": "zz"}):
        response = client.post("/v1/graphql", json={"query": "{}", "variables": variables})
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None and body["errors"][0]["message"]


# -- selecting records: time windows, shards, a dataset size ------------------------------------

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


# -- misbehaving endpoints ----------------------------------------------------------------------


def test_same_next_link_forever(demo: DemoServer, client: httpx.Client) -> None:
    url = f"{demo.url}/v1/bad/same-next/sn"
    first = client.get(url).json()
    assert first["links"]["next"] == url
    again = client.get(first["links"]["next"]).json()
    assert again == first and ids(first["data"]) == [f"sn-{n:06d}" for n in range(50)]


def test_last_page_forever(client: httpx.Client) -> None:
    last = client.get("/v1/bad/last-page-forever/lp?page=5&per_page=50").json()
    beyond = client.get("/v1/bad/last-page-forever/lp?page=9&per_page=50").json()
    assert ids(last["data"]) == ids(beyond["data"]) == [f"lp-{n:06d}" for n in range(200, 237)]
    assert "total" not in beyond


def test_errors_200(client: httpx.Client) -> None:
    response = client.get("/v1/bad/errors-200/e")
    assert response.status_code == 200
    assert response.json() == {"data": None, "errors": [{"message": "rate limited by upstream"}]}


def test_text_plain(client: httpx.Client) -> None:
    response = client.get("/v1/bad/text-plain/tp?page=2")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert ids(json.loads(response.text)["data"])[0] == "tp-000050"


def test_unknown_routes_are_404(client: httpx.Client) -> None:
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.get("/v1/pages/UPPER").status_code == 404


# -- auth ---------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"X-API-Key": TOKEN}, {}),
        ({}, {"api_key": TOKEN}),
        ({"Authorization": basic("demo", TOKEN)}, {}),
    ],
    ids=["bearer", "x-api-key", "query", "basic"],
)
def test_secure_accepts_each_auth_form(
    client: httpx.Client, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/secure/pages/s", headers=headers, params=params)
    assert response.status_code == 200
    assert len(response.json()["data"]) == 50
    gql = client.post(
        "/secure/graphql",
        headers=headers,
        params=params,
        json={"query": "{}", "variables": {"dataset": "s", "first": 3}},
    )
    assert len(gql.json()["data"]["items"]["nodes"]) == 3


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({"Authorization": f"Bearer {TOKEN}x"}, {}),
        ({"X-API-Key": TOKEN.upper()}, {}),
        ({}, {"api_key": "nope"}),
        ({"Authorization": basic("admin", TOKEN)}, {}),
        ({"Authorization": basic("demo", "wrong")}, {}),
        ({"Authorization": "Basic %%%"}, {}),
        ({"Authorization": TOKEN}, {}),
    ],
)
def test_secure_refuses_without_the_token(
    client: httpx.Client, headers: dict[str, str], params: dict[str, str]
) -> None:
    for path in ("/secure/pages/s", "/secure/all/s", "/secure/echo"):
        response = client.get(path, headers=headers, params=params)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
        assert TOKEN not in response.text and TOKEN.lower() not in response.text.lower()
        assert all(TOKEN not in value for value in response.headers.values())


def test_v1_needs_no_auth_and_secure_is_open_without_a_token(factory: Factory) -> None:
    server = factory(records=3)
    assert httpx.get(f"{server.url}/v1/all/x").status_code == 200
    assert httpx.get(f"{server.url}/secure/all/x").status_code == 200


def test_echo_reflects_headers_and_query(client: httpx.Client) -> None:
    body = client.get(
        "/secure/echo", params={"api_key": TOKEN, "q": "1"}, headers={"X-Custom": "v"}
    ).json()
    assert body["query"] == {"api_key": TOKEN, "q": "1"}
    assert body["headers"]["x-custom"] == "v"
    body = client.get("/secure/echo", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert body["headers"]["authorization"] == f"Bearer {TOKEN}"


# -- faults -------------------------------------------------------------------------------------


@pytest.fixture
def factory(demo_server_factory: Factory) -> Factory:
    return demo_server_factory


def test_every_dataset_request_faults_but_control_routes_do_not(factory: Factory) -> None:
    server = factory(records=RECORDS, fault_rate=1.0, faults=("500",))
    with httpx.Client(base_url=server.url) as http:
        for url in ("/v1/pages/f", "/v1/cursor/f", "/v1/all/f", "/secure/link/f"):
            response = http.get(url)
            assert response.status_code == 500 and "error" in response.json()
        assert http.post("/v1/graphql", json={"variables": {"dataset": "f"}}).status_code == 500
        assert http.get("/_demo/knobs").status_code == 200
        assert http.get("/_demo/log").status_code == 200
        assert http.post("/_demo/reset").status_code == 200
        assert http.get("/secure/echo").status_code == 200
    assert server.log() == []  # reset cleared it; control requests are never logged


REQUESTS = [f"/v1/pages/det?page={n % 7 + 1}" for n in range(60)] + ["/v1/all/det"] * 10


def statuses(server: DemoServer) -> list[tuple[int, str | None]]:
    with httpx.Client(base_url=server.url) as http:
        codes = [http.get(url).status_code for url in REQUESTS]
        gql = [
            http.post("/v1/graphql", json={"variables": {"dataset": "det", "first": n}})
            for n in (1, 2, 1, 2, 1, 2)
        ]
    codes += [response.status_code for response in gql]
    return list(zip(codes, [entry.fault for entry in server.log()], strict=True))


def test_faults_are_deterministic(factory: Factory) -> None:
    knobs = {"fault_rate": 0.3, "faults": ("429", "500", "503"), "retry_after_s": 0.01}
    first = statuses(factory(seed=7, **knobs))
    second = statuses(factory(seed=7, **knobs))
    assert first == second
    faulted = [status for status, fault in first if fault]
    assert 0.15 * len(first) < len(faulted) < 0.45 * len(first)
    assert {status for status, _ in first} == {200, 429, 500, 503}
    assert statuses(factory(seed=8, **knobs)) != first


def test_a_retried_request_gets_a_fresh_decision(factory: Factory) -> None:
    server = factory(fault_rate=0.5, faults=("500",), seed=1)
    attempts: list[int] = []
    with httpx.Client(base_url=server.url) as http:
        for page in range(1, 9):
            for attempt in range(1, 50):
                if http.get(f"/v1/pages/retry?page={page}").status_code == 200:
                    attempts.append(attempt)
                    break
    assert len(attempts) == 8  # every page eventually succeeded
    assert max(attempts) > 1  # and some only after a retry


def test_reset_restarts_the_occurrence_counters(factory: Factory) -> None:
    server = factory(fault_rate=0.5, faults=("500",), seed=2)
    with httpx.Client(base_url=server.url) as http:
        before = [http.get("/v1/all/r?x=1").status_code for _ in range(12)]
        server.reset()
        after = [http.get("/v1/all/r?x=1").status_code for _ in range(12)]
    assert before == after and len(set(before)) == 2


def test_fault_decision_is_a_pure_function() -> None:
    key = request_key("GET", "/v1/pages/a", "per_page=5&page=2", b"")
    assert key == request_key("GET", "/v1/pages/a", "page=2&per_page=5", b"")  # sorted query
    assert key != request_key("POST", "/v1/pages/a", "page=2&per_page=5", b"")
    assert key != request_key("GET", "/v1/pages/a", "page=2&per_page=5", b"{}")
    faults = ("429", "500")
    runs = [[decide(0, key, k, 0.5, faults) for k in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert {None, "429", "500"} == set(runs[0])
    assert all(decide(0, key, k, 0.0, faults) is None for k in range(50))
    assert all(decide(0, key, k, 1.0, faults) in faults for k in range(50))
    assert runs[0] != [decide(1, key, k, 0.5, faults) for k in range(200)]


def test_429_retry_after_seconds_and_date(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("429",), retry_after_s=2.5)
    response = httpx.get(f"{server.url}/v1/pages/t")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2.5"
    server.update_knobs(retry_after_s=1.0)
    assert httpx.get(f"{server.url}/v1/pages/t").headers["Retry-After"] == "1"
    server.update_knobs(faults=("503",))
    response = httpx.get(f"{server.url}/v1/pages/t")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"

    server.update_knobs(faults=("429-date",), retry_after_s=2.5)
    before = datetime.now(UTC)
    response = httpx.get(f"{server.url}/v1/pages/t")
    after = datetime.now(UTC)
    assert response.status_code == 429
    when = parsedate_to_datetime(response.headers["Retry-After"])
    assert when.tzinfo is not None and when.microsecond == 0
    # Rounded up to whole seconds: never earlier than asked, at most one second later.
    assert before + timedelta(seconds=2.5) <= when <= after + timedelta(seconds=3.5)


def test_drop_closes_the_connection_without_a_response(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("drop",))
    with httpx.Client(base_url=server.url) as http:
        with pytest.raises(httpx.TransportError):
            http.get("/v1/pages/d")
        server.update_knobs(fault_rate=0.0)
        assert http.get("/v1/pages/d").status_code == 200  # the server lives on
    assert [(e.status, e.fault) for e in server.log()] == [(0, "drop"), (200, None)]


def test_truncate_sends_half_the_json(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("truncate",))
    url = f"{server.url}/v1/cursor/tr?limit=10"
    truncated = httpx.get(url)
    assert truncated.status_code == 200
    assert truncated.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    server.update_knobs(fault_rate=0.0)
    full = httpx.get(url).content
    assert truncated.content == full[: len(full) // 2]


def test_latency_and_slow(factory: Factory) -> None:
    server = factory(latency_ms=100)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/v1/all/l").status_code == 200
    assert time.monotonic() - started >= 0.1
    # Control routes have no latency: with a 10-minute one, they still answer.
    server.update_knobs(latency_ms=600_000)
    assert httpx.get(f"{server.url}/_demo/knobs", timeout=60).status_code == 200
    server.update_knobs(latency_ms=0, fault_rate=1.0, faults=("slow",), slow_ms=150)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/v1/all/l").status_code == 200
    assert time.monotonic() - started >= 0.15
    assert server.log()[-1].fault == "slow"


def test_the_default_fault_mix_has_every_fault() -> None:
    assert FAULTS[:7] == ("429", "429-date", "500", "503", "slow", "drop", "truncate")
    assert set(FAULTS[7:]) == {"html-200", "wrong-content-type", "drop-mid-body"}
    assert DemoKnobs().faults == FAULTS
    key = request_key("GET", "/v1/pages/mix", "", b"")
    drawn = Counter(decide(3, key, k, 1.0, FAULTS) for k in range(2000))
    assert set(drawn) == set(FAULTS) and min(drawn.values()) > 100


def outcomes(server: DemoServer) -> list[tuple[str, int, str | None]]:
    """What a client sees for a fixed sequence of requests (a status or the transport error),
    with what the server logged for each."""
    seen: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for url in [f"/v1/pages/mix?page={n % 9 + 1}" for n in range(90)] + ["/v1/all/mix"] * 10:
            try:
                response = http.get(url)
                seen.append(f"{response.status_code} {response.headers['Content-Type']}")
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
    log = server.log()
    return [(s, e.status, e.fault) for s, e in zip(seen, log, strict=True)]


def test_the_default_mix_is_deterministic(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    knobs = {"fault_rate": 0.6, "slow_ms": 1, "retry_after_s": 0.01}
    first = outcomes(factory(seed=7, **knobs))
    assert outcomes(factory(seed=7, **knobs)) == first
    assert {fault for _, _, fault in first} == {None, *FAULTS}
    assert outcomes(factory(seed=8, **knobs)) != first
    assert_quiet(caplog)


def test_stopping_with_a_reply_pending_leaves_no_task_behind(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(records=RECORDS, latency_ms=30_000)
    with (
        httpx.Client(base_url=server.url, timeout=0.3) as http,
        contextlib.suppress(httpx.TimeoutException),
    ):
        http.get("/v1/pages/pending")  # the client gives up; the server's handler still waits
    server.stop()
    gc.collect()  # a task left pending in the closed loop is destroyed (and logged) here
    assert_quiet(caplog)


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing (the server's aiohttp, asyncio) logged a warning or worse: no tracebacks."""
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


def test_slow_is_how_read_timeouts_are_tested(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("slow",), slow_ms=600)
    with pytest.raises(httpx.ReadTimeout):  # the client gave up before the slow reply came
        httpx.get(f"{server.url}/v1/pages/s", timeout=httpx.Timeout(5, read=0.2))
    wait_for(lambda: len(server.log()) == 1, timeout=5, what="the slow reply")
    assert [(e.status, e.fault) for e in server.log()] == [(200, "slow")]


def test_html_200_is_a_proxy_error_page(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("html-200",))
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for url in ("/v1/pages/h", "/v1/bad/hang/h", "/v1/bad/huge/h"):  # it replaces any reply
            response = http.get(url)
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/html"
            assert "<html>" in response.text and "<h1>502 Bad Gateway</h1>" in response.text
            with pytest.raises(json.JSONDecodeError):
                response.json()
    assert [(e.status, e.fault) for e in server.log()] == [(200, "html-200")] * 3


def test_wrong_content_type_is_the_right_json(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("wrong-content-type",))
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for url in ("/v1/pages/w?page=2", "/v1/bad/huge/w?mb=0&length=1"):
            labelled = http.get(url)
            server.update_knobs(fault_rate=0.0)
            right = http.get(url)
            server.update_knobs(fault_rate=1.0)
            assert labelled.headers["Content-Type"] == "text/html; charset=utf-8"
            assert right.headers["Content-Type"] == "application/json"
            assert labelled.status_code == right.status_code == 200
            assert labelled.content == right.content and labelled.json() == right.json()
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "wrong-content-type"), (200, None)] * 2


def raw_get(server: DemoServer, path: str) -> tuple[str, bytes]:
    """GET over a bare socket: the response head, and every byte after it until the server
    closes the connection (what an HTTP client would hide)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".encode())
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head.decode(), body


def header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_drop_mid_body_closes_the_connection_half_way(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(fault_rate=1.0, faults=("drop-mid-body",))
    url = "/v1/cursor/dm?limit=10"
    with httpx.Client(base_url=server.url, timeout=5) as http:
        with pytest.raises(httpx.TransportError) as raised:
            http.get(url)
        assert isinstance(raised.value, httpx.RemoteProtocolError | httpx.ReadError)
        head, partial = raw_get(server, url)
        server.update_knobs(fault_rate=0.0)
        full = http.get(url)  # a new connection: the server lives on
        assert full.status_code == 200 and len(full.json()["items"]) == 10
    assert head.startswith("HTTP/1.1 200 ")
    assert header(head, "Content-Type") == "application/json"
    assert header(head, "Content-Length") == str(len(full.content))  # the whole body's length
    assert partial == full.content[: len(full.content) // 2]  # then only half of it came
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "drop-mid-body"), (200, "drop-mid-body"), (200, None)]
    assert_quiet(caplog)


def test_drop_mid_body_and_truncate_cut_a_streamed_body(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(fault_rate=1.0, faults=("drop-mid-body",))
    head, partial = raw_get(server, "/v1/bad/huge/dh?mb=1&length=1")
    assert header(head, "Content-Length") == str(MIB) and len(partial) == MIB // 2
    assert partial.startswith(b'{"data":[{"id":"dh-000000"')
    with pytest.raises(httpx.TransportError):  # chunked: no last chunk
        httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1", timeout=5)

    server.update_knobs(faults=("truncate",))
    short = httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1&length=1", timeout=5)
    assert short.headers["Content-Length"] == str(MIB // 2) and len(short.content) == MIB // 2
    chunked = httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1", timeout=5)  # ends cleanly
    assert "Content-Length" not in chunked.headers and chunked.content == short.content
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "drop-mid-body")] * 2 + [(200, "truncate")] * 2
    assert_quiet(caplog)


def test_faults_that_need_a_body_do_not_apply_to_hang_and_trickle(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("truncate", "drop-mid-body"))
    timeout = httpx.Timeout(5, read=0.3)
    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/t?every_ms=5", timeout=timeout) as r:
        assert r.status_code == 200  # no half of a never-ending body: served as it is
        assert read_at_least(r, 20)[:20] == b'{"data":[{"id":"t-00'
    wait_for(lambda: len(server.log()) == 1, timeout=5, what="the server to see the client go")
    server.update_knobs(faults=("wrong-content-type", "truncate", "drop-mid-body"))
    with pytest.raises(httpx.ReadTimeout):  # no reply to relabel or cut: it still hangs
        httpx.get(f"{server.url}/v1/bad/hang/t", timeout=timeout)
    wait_for(lambda: len(server.log()) == 2, timeout=5, what="both requests to end")
    assert [(e.path, e.status, e.fault) for e in server.log()] == [
        ("/v1/bad/trickle/t", 200, None),
        ("/v1/bad/hang/t", 0, None),
    ]


# -- hostile servers ----------------------------------------------------------------------------

MIB = 1 << 20
HOSTILE = (
    "/bad/hang/a",
    "/bad/trickle/a",
    "/bad/huge/a",
    "/bad/redirect-loop/a",
    "/bad/redirect-away/a?to=http://example.invalid/",
    "/bad/status/404/a",
    "/bad/never-valid/a",
    "/bad/deep/a",
    "/bad/echo-error/a",
)


def read_at_least(response: httpx.Response, count: int) -> bytes:
    got = bytearray()
    for chunk in response.iter_raw():
        got += chunk
        if len(got) >= count:
            break
    return bytes(got)


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_routes_need_the_token_under_secure(client: httpx.Client, path: str) -> None:
    response = client.get(f"/secure{path}")
    assert response.status_code == 401 and response.json() == {"error": "unauthorized"}


def test_hang_never_answers_until_the_client_gives_up(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/v1/bad/hang/h", timeout=httpx.Timeout(5, read=0.3))
    assert time.monotonic() - started >= 0.3
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    [entry] = server.log()
    assert (entry.path, entry.status, entry.fault) == ("/v1/bad/hang/h", 0, None)
    assert entry.ended - entry.started >= 0.3
    assert httpx.get(f"{server.url}/v1/pages/h").status_code == 200
    assert_quiet(caplog)


def test_a_hang_holds_a_turn_of_the_capacity(factory: Factory) -> None:
    server = factory(capacity=1, capacity_queue=0)
    with socket.create_connection((server.host, server.port), timeout=5) as hanging:
        hanging.sendall(b"GET /v1/bad/hang/c HTTP/1.1\r\nHost: demo\r\n\r\n")
        wait_for(lambda: server.serving == 1, timeout=5, what="the hang to be served")
        assert httpx.get(f"{server.url}/v1/pages/c").status_code == 429  # over capacity
    wait_for(lambda: server.serving == 0, timeout=30, what="the turn to be given back")
    assert httpx.get(f"{server.url}/v1/pages/c").status_code == 200
    assert [(e.status, e.fault) for e in server.log()] == [
        (429, "capacity"),
        (0, None),
        (200, None),
    ]


def test_trickle_beats_a_read_timeout(factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    server = factory()
    started = time.monotonic()
    timeout = httpx.Timeout(5, read=0.1)  # shorter than the whole, longer than a byte's wait
    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/tr?every_ms=20", timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
        got = read_at_least(r, 30)
    assert time.monotonic() - started >= 29 * 0.02  # a byte at a time, and no read timeout
    assert got[:30] == b'{"data":[{"id":"tr-000000","n"'
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    assert [(e.status, e.fault) for e in server.log()] == [(200, None)]

    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/tr?every_ms=5000", timeout=0.2) as r:
        chunks = r.iter_raw()
        assert next(chunks) == b"{"  # sent at once
        with pytest.raises(httpx.ReadTimeout):
            next(chunks)
    assert httpx.get(f"{server.url}/v1/bad/trickle/tr?every_ms=0").status_code == 400
    assert_quiet(caplog)


def test_trickle_is_an_endless_valid_json_prefix(demo: DemoServer) -> None:
    with httpx.stream("GET", f"{demo.url}/v1/bad/trickle/tp?every_ms=1", timeout=5) as response:
        text = read_at_least(response, 400).decode()
    records = data.records_json("tp", range(10))
    assert text == ('{"data":[' + records[1:-1] + ",")[: len(text)]


def page_records(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records of a page ``{"data":[...]}`` read chunk by chunk, checking its JSON on the way
    with no more than a record in memory (the demo's records are flat: one ends at a "}")."""
    buffer, started, ended = b"", False, False
    for chunk in chunks:
        buffer += chunk
        if not started:
            if len(buffer) < 9:
                continue
            assert buffer.startswith(b'{"data":['), buffer[:20]
            buffer, started, expect_record = buffer[9:], True, True
        while buffer and not ended:
            if expect_record and buffer[:1] == b"{":
                end = buffer.find(b"}")
                if end < 0:
                    break
                yield json.loads(buffer[: end + 1])
                buffer, expect_record = buffer[end + 1 :], False
            elif not expect_record and buffer[:1] == b",":
                buffer, expect_record = buffer[1:], True
            else:
                buffer, ended = buffer.lstrip(b" "), True
        if ended and len(buffer) > 2:
            raise AssertionError(f"not a page's end: {buffer[:40]!r}")
    assert started and ended and buffer == b"]}", buffer[:40]


def test_huge_streams_a_valid_page_of_the_size_asked(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/v1/bad/huge/hg?mb=3") as response:  # chunked
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
            numbers = [record["n"] for record in page_records(response.iter_bytes())]
            assert response.num_bytes_downloaded == 3 * MIB
        assert numbers == list(range(len(numbers))) and len(numbers) > 3 * MIB // 120

        sized = http.get("/v1/bad/huge/hg?mb=1&length=1")
        assert sized.headers["Content-Length"] == str(MIB) and len(sized.content) == MIB
        assert "Transfer-Encoding" not in sized.headers
        page = sized.json()["data"]  # small enough to parse whole: valid JSON
        assert page == data.records("hg", range(len(page)))
        assert sized.content.endswith(b" ]}") and len(sized.content) - len(json.dumps(page)) < 200

        for length in ("0", "1"):
            empty = http.get(f"/v1/bad/huge/hg?mb=0&length={length}")
            assert empty.content == b'{"data":[]}'
        for bad in ("mb=-1", "mb=x", "length=2"):
            assert http.get(f"/v1/bad/huge/hg?{bad}").status_code == 400
    assert [e.status for e in server.log()] == [200] * 4 + [400] * 3
    assert_quiet(caplog)


def test_huge_can_be_refused_on_its_header(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    with httpx.stream("GET", f"{server.url}/v1/bad/huge/hr?length=1", timeout=5) as response:
        assert response.headers["Content-Length"] == str(64 * MIB)  # the default: 64 MiB
    # Refused unread: the server stops writing at once.
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    [entry] = server.log()
    assert entry.status == 200 and entry.ended - entry.started < 2
    assert_quiet(caplog)


def test_redirect_loop_redirects_to_itself_forever(demo: DemoServer, client: httpx.Client) -> None:
    first = client.get("/v1/bad/redirect-loop/rl?keep=me")
    assert first.status_code == 302
    assert first.headers["Location"] == "/v1/bad/redirect-loop/rl?hop=1&keep=me"
    second = client.get(urljoin(str(first.url), first.headers["Location"]))
    assert second.status_code == 302
    assert second.headers["Location"] == "/v1/bad/redirect-loop/rl?hop=2&keep=me"
    following = httpx.Client(base_url=demo.url, follow_redirects=True, max_redirects=5)
    with following, pytest.raises(httpx.TooManyRedirects):
        following.get("/v1/bad/redirect-loop/rl?keep=me")


def test_redirect_away_sends_the_client_to_any_host(client: httpx.Client) -> None:
    to = "http://other.example:8080/steal?x=1"
    response = client.get("/v1/bad/redirect-away/ra", params={"to": to})
    assert response.status_code == 302 and response.headers["Location"] == to
    for bad in ("", "/relative", "ftp://other.example/", "http://", "javascript:alert(1)"):
        response = client.get("/v1/bad/redirect-away/ra", params={"to": bad})
        assert response.status_code == 400 and "to must be" in response.json()["error"], bad
    injected = client.get("/v1/bad/redirect-away/ra", params={"to": "http://a/\r\nX-Evil: 1"})
    assert injected.status_code == 400 and "X-Evil" not in injected.headers


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 500, 599])
def test_status_always_answers_its_code(client: httpx.Client, code: int) -> None:
    for _ in range(2):
        response = client.get(f"/v1/bad/status/{code}/st")
        assert response.status_code == code
        assert response.json()["error"].startswith(f"{code} ")


def test_status_codes_outside_errors_are_refused(client: httpx.Client) -> None:
    for code in ("200", "302", "399", "600"):
        response = client.get(f"/v1/bad/status/{code}/st")
        assert response.status_code == 400 and "code must be" in response.json()["error"]
    assert client.get("/v1/bad/status/40x/st").status_code == 404
    assert client.get("/v1/bad/status/st").status_code == 404


def test_never_valid_is_never_json(client: httpx.Client) -> None:
    for _ in range(3):
        response = client.get("/v1/bad/never-valid/nv")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            response.json()


def test_deep_nests_its_one_record_as_deep_as_asked(client: httpx.Client) -> None:
    assert client.get("/v1/bad/deep/d", params={"depth": 3}).content == b'{"data": [[[[]]]]}'
    deepest = client.get("/v1/bad/deep/d", params={"depth": 100_000}).content
    assert deepest.count(b"[") == 100_001
    for bad in ("0", "100001", "x"):
        response = client.get("/v1/bad/deep/d", params={"depth": bad})
        assert response.status_code == 400 and "depth must be" in response.json()["error"], bad


def test_echo_error_echoes_the_whole_request(client: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": TOKEN, "X-Custom": "v"}
    response = client.get(
        "/secure/bad/echo-error/ee", params={"api_key": TOKEN, "q": "1"}, headers=headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] and body["method"] == "GET" and body["path"] == "/secure/bad/echo-error/ee"
    assert body["query"] == {"api_key": TOKEN, "q": "1"}
    assert body["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert body["headers"]["x-api-key"] == TOKEN and body["headers"]["x-custom"] == "v"
    assert body["body"] == ""

    posted = client.post(
        "/v1/bad/echo-error/ee?status=401", json={"client_secret": "s3cr3t"}, headers=headers
    )
    assert posted.status_code == 401
    body = posted.json()
    assert body["method"] == "POST" and body["query"] == {"status": "401"}
    assert json.loads(body["body"]) == {"client_secret": "s3cr3t"}
    assert body["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert client.get("/v1/bad/echo-error/ee?status=503").status_code == 503
    refused = client.get("/v1/bad/echo-error/ee?status=200")
    assert refused.status_code == 400 and "status must be" in refused.json()["error"]


# -- capacity -----------------------------------------------------------------------------------


def fire(url: str, count: int) -> list[httpx.Response]:
    """`count` concurrent GETs of `url`, each on its own connection."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:
            return list(await asyncio.gather(*(http.get(url) for _ in range(count))))

    return asyncio.run(main())


def test_capacity_serves_n_queues_some_and_rejects_the_rest(factory: Factory) -> None:
    server = factory(latency_ms=200, capacity=4, capacity_queue=2, retry_after_s=0.25)
    responses = fire(f"{server.url}/v1/pages/cap", 12)
    assert Counter(r.status_code for r in responses) == {200: 6, 429: 6}
    for rejected in (r for r in responses if r.status_code == 429):
        assert rejected.json() == {"error": "over capacity"}
        assert rejected.headers["Retry-After"] == "0.25"
    log = server.log()
    assert Counter((e.status, e.fault) for e in log) == {(200, None): 6, (429, "capacity"): 6}
    assert server.max_serving == 4
    assert (server.serving, server.waiting, server.in_flight) == (0, 0, 0)
    served = sorted(e.ended - e.started for e in log if e.status == 200)
    refused = [e.ended - e.started for e in log if e.status == 429]
    assert max(refused) < served[0]  # answered at once, not after a turn
    assert served[0] >= 0.2 and served[-1] >= 0.3  # two waited for a turn: about 2x the latency
    assert served[-1] > served[0]


def test_capacity_changes_live(factory: Factory) -> None:
    server = factory(latency_ms=300, capacity=1, capacity_queue=3)
    url = f"{server.url}/v1/all/live"
    with ThreadPoolExecutor(max_workers=1) as pool:
        burst = pool.submit(fire, url, 4)
        wait_for(lambda: server.waiting == 3, timeout=5, what="three requests in line")
        server.update_knobs(capacity=4)  # the three are served together, not one by one
        assert [r.status_code for r in burst.result()] == [200] * 4
    assert server.max_serving == 3

    server.reset()
    assert server.max_serving == 0
    with httpx.Client(base_url=server.url) as http:
        knobs = {"capacity": 2, "capacity_queue": 0, "latency_ms": 150}
        changed = http.post("/_demo/knobs", json=knobs).json()
    assert (changed["capacity"], changed["capacity_queue"]) == (2, 0)
    assert Counter(r.status_code for r in fire(url, 4)) == {200: 2, 429: 2}
    assert server.max_serving == 2

    server.update_knobs(capacity=None)  # no limit: every request is served at once
    assert [r.status_code for r in fire(url, 8)] == [200] * 8
    assert server.max_serving > 4


def test_capacity_admission_comes_before_auth(factory: Factory) -> None:
    server = factory(capacity=1, token="cap-secret-42")
    assert httpx.get(f"{server.url}/secure/pages/a").status_code == 401
    headers = {"Authorization": "Bearer cap-secret-42"}
    assert httpx.get(f"{server.url}/secure/pages/a", headers=headers).status_code == 200
    assert [e.status for e in server.log()] == [401, 200]
    assert server.max_serving == 1 and server.serving == 0


def test_capacity_knobs_are_validated() -> None:
    assert DemoKnobs().capacity is None and DemoKnobs().capacity_queue is None
    assert [DemoKnobs(capacity=n).queue_limit for n in (1, 2, 9)] == [1, 1, 4]
    assert DemoKnobs(capacity=9, capacity_queue=0).queue_limit == 0
    for bad in ({"capacity": 0}, {"capacity_queue": -1}):
        with pytest.raises(ValueError):
            DemoKnobs(**bad)  # type: ignore[arg-type]
    for bad_type in ({"capacity": True}, {"capacity": 2.0}, {"capacity_queue": "1"}):
        with pytest.raises(TypeError):
            DemoKnobs(**bad_type)  # type: ignore[arg-type]


# -- knobs and the log --------------------------------------------------------------------------


def test_knobs_over_http(factory: Factory) -> None:
    server = factory(records=10, token="knob-secret-123")
    with httpx.Client(base_url=server.url) as http:
        knobs = http.get("/_demo/knobs").json()
        assert knobs["records"] == 10 and knobs["faults"][0] == "429"
        assert knobs["token"] == "***"  # control routes are unauthenticated
        assert knobs["capacity"] is None and knobs["capacity_queue"] is None
        changed = http.post("/_demo/knobs", json={"records": 3, "faults": ["500"]}).json()
        assert changed["records"] == 3 and changed["faults"] == ["500"]
        assert server.knobs.records == 3 and server.knobs.faults == ("500",)
        assert len(http.get("/v1/all/k").json()) == 3
        for bad in (
            {"nope": 1},
            {"records": "3"},
            {"records": True},
            {"fault_rate": 2},
            {"faults": ["explode"]},
            {"page_size": 0},
            {"latency_ms": -1},
            {"capacity": 0},
            {"capacity": "2"},
            {"capacity_queue": -1},
        ):
            response = http.post("/_demo/knobs", json=bad)
            assert response.status_code == 400, bad
            assert "error" in response.json()
        assert http.post("/_demo/knobs", content=b"[1]").status_code == 400
        assert http.post("/_demo/knobs", content=b"{").status_code == 400
        assert server.knobs.records == 3  # nothing applied by the bad requests


def test_update_knobs(factory: Factory) -> None:
    server = factory(records=5, page_size=2)
    assert len(httpx.get(f"{server.url}/v1/pages/u").json()["data"]) == 2
    server.update_knobs(page_size=4, records=9)
    body = httpx.get(f"{server.url}/v1/pages/u").json()
    assert (len(body["data"]), body["total"]) == (4, 9)
    with pytest.raises(TypeError):
        server.update_knobs(bogus=1)
    with pytest.raises(ValueError):
        server.update_knobs(fault_rate=-0.5)
    with pytest.raises(ValueError):
        DemoKnobs(faults=("nope",))


def test_log_records_dataset_requests(factory: Factory) -> None:
    server = factory(records=20)
    with httpx.Client(base_url=server.url) as http:
        http.get("/v1/pages/lg?page=2&per_page=5")
        http.get("/v1/cursor/lg?cursor=zz")
        http.post("/v1/graphql", json={"variables": {"dataset": "lg"}})
        http.get("/_demo/knobs")
        http.get("/nothing")
        remote = http.get("/_demo/log").json()
    log = server.log()
    assert [(e.method, e.path, e.query, e.status, e.fault) for e in log] == [
        ("GET", "/v1/pages/lg", "page=2&per_page=5", 200, None),
        ("GET", "/v1/cursor/lg", "cursor=zz", 400, None),
        ("POST", "/v1/graphql", "", 200, None),
    ]
    assert all(e.started <= e.ended for e in log)
    assert log[0].ended <= log[1].started
    assert [entry["path"] for entry in remote] == [e.path for e in log]
    assert set(remote[0]) == {"started", "ended", "method", "path", "query", "status", "fault"}
    server.reset()
    assert server.log() == []


# -- lifecycle ----------------------------------------------------------------------------------


def test_start_stop_and_a_busy_port() -> None:
    with DemoServer(DemoKnobs(records=1)) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/v1/all/a").json()[0]["id"] == "a-000000"
        with pytest.raises(OSError):
            DemoServer(port=server.port).start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/all/a")


def test_stop_does_not_wait_for_slow_requests() -> None:
    latency_s = 600
    server = DemoServer(DemoKnobs(latency_ms=latency_s * 1000)).start()
    with httpx.Client(base_url=server.url, timeout=latency_s) as http:
        failed = threading.Event()

        def call() -> None:
            try:
                http.get("/v1/all/slow")
            except httpx.TransportError:
                failed.set()

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        wait_for(lambda: server.in_flight == 1, timeout=5, what="the request to arrive")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < latency_s / 10  # a hang guard, not a speed target
        worker.join(timeout=60)
        assert failed.is_set()


def test_stop_does_not_wait_for_hostile_requests(caplog: pytest.LogCaptureFixture) -> None:
    grace_s = 300  # long enough that waiting for any of it could not go unnoticed
    server = DemoServer(DemoKnobs(), shutdown_grace=grace_s).start()
    paths = ("/v1/bad/hang/s", "/v1/bad/trickle/s?every_ms=10000", "/v1/bad/huge/s?mb=512")
    sockets = []
    try:
        for path in paths:  # never read: the huge page fills the buffers, then waits
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sockets.append(sock)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
        wait_for(lambda: server.in_flight == 3, timeout=5, what="the requests to arrive")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < grace_s / 10  # hostile handlers get no grace
        for sock in sockets:  # each connection was closed
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(1 << 20):
                    pass
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    entries = sorted((e.path, e.status) for e in server.log())
    assert entries == [("/v1/bad/hang/s", 0), ("/v1/bad/huge/s", 200), ("/v1/bad/trickle/s", 200)]
    assert_quiet(caplog)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_forever_prints_its_url_and_stops_on_a_signal(signum: int) -> None:
    code = (
        "from tui_connector.demo.server import DemoKnobs, serve_forever\n"
        "serve_forever(DemoKnobs(records=2))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+\n", line)
        url = line.removeprefix("listening on ").strip()
        assert ids(httpx.get(f"{url}/v1/all/z", timeout=10).json()) == ["z-000000", "z-000001"]
    finally:
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stdout == "" and stderr == ""
