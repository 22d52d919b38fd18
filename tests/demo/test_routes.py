"""The dataset routes over real HTTP: every paging style walks every record exactly once, and the
routes that misbehave politely."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tui_connector.demo import data
from tui_connector.demo.server import DemoServer

from .helpers import ids, parse_link
from helpers import RECORDS, expected_ids

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


def test_export_is_json_lines_with_a_total_and_a_link_header(client: httpx.Client) -> None:
    responses = [client.get("/v1/export/nd?per_page=50&keep=me")]
    while "Link" in responses[-1].headers:  # none on the last page
        following = parse_link(responses[-1].headers["Link"])["next"]
        assert "keep=me" in following
        responses.append(client.get(urljoin(str(responses[-1].url), following)))
    assert len(responses) == 5
    assert {(r.headers["Content-Type"], r.headers["X-Total-Count"]) for r in responses} == {
        ("application/x-ndjson", str(RECORDS))
    }
    assert all(response.text.endswith("}\n") for response in responses)
    lines = [line for response in responses for line in response.text.splitlines()]
    assert Counter(ids([json.loads(line) for line in lines])) == expected_ids("nd")


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
