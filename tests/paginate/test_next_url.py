"""`type: next_url` (paginate/next_url.py): the RFC 8288 Link header, body paths and plain
headers, and the checks before a next link is followed."""

from __future__ import annotations

import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError, next_link

from .fakes import BASE, drive, full_url, link_server, make, page, query, rows


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a.test/x?page=2>; rel="next"', "https://a.test/x?page=2"),
        ("<https://a.test/x?page=2>; rel=next", "https://a.test/x?page=2"),
        (
            '<https://a.test/x?p=1>; rel="prev", <https://a.test/x?p=3>; rel="next"',
            "https://a.test/x?p=3",
        ),
        ('<https://a.test/x?p=3>; rel="next last"', "https://a.test/x?p=3"),
        ('<https://a.test/x?p=9>; rel="last", </x?p=3>; title="a, b"; REL="Next"', "/x?p=3"),
        ('<https://a.test/x?a=1,2>; rel="next"', "https://a.test/x?a=1,2"),
        (
            '<https://a.test/x?p=1>;rel="first",<https://a.test/x?p=2>;rel="next"',
            "https://a.test/x?p=2",
        ),
        ('<https://a.test/x?p=1>; rel="prev"', None),
        # RFC 8288 §3.3: a second rel parameter on the same link is ignored.
        ('<https://a.test/x?p=1>; rel="prev"; rel="next"', None),
        ('<https://a.test/x?p=1>; rel="nextpage"', None),
        ("", None),
    ],
)
def test_next_link_parsing(header: str, expected: str | None) -> None:
    assert next_link(header) == expected


def test_next_url_from_relative_link_header() -> None:
    paginator = make({"type": "next_url"}, params={"per_page": 2})
    run = drive(paginator, link_server(5, 2, lambda n: f"items?page={n + 1}&per_page=2"))
    assert [(r.url, r.params) for r in run.requests] == [
        (BASE, {"per_page": "2"}),
        ("https://api.example.com/v1/items?page=2&per_page=2", {}),
        ("https://api.example.com/v1/items?page=3&per_page=2", {}),
    ]
    assert run.records == rows(0, 5)
    assert paginator.describe(run.states[0]) == "first page"
    assert paginator.describe(run.states[1]) == (
        "next https://api.example.com/v1/items?page=2&per_page=2"
    )


def test_next_url_from_a_body_path() -> None:
    paginator = make({"type": "next_url", "next": "links.next"})

    def serve(request: PageRequest) -> Page:
        number = int(query(request).get("page", "1"))
        found = rows(number * 10, number * 10 + 3)
        following = f"/v1/items?page={number + 1}" if number < 3 else None
        return page(found, {"results": found, "links": {"next": following}}, url=full_url(request))

    run = drive(paginator, serve)
    assert [full_url(r) for r in run.requests] == [
        BASE,
        f"{BASE}?page=2",
        f"{BASE}?page=3",
    ]


def test_next_url_from_a_plain_header() -> None:
    paginator = make({"type": "next_url", "next": {"header": "X-Next"}})
    state = paginator.start()
    following = paginator.advance(state, page(rows(0, 2), headers={"x-next": f"{BASE}?after=9"}))
    assert following is not None
    assert paginator.request(following) == PageRequest("GET", f"{BASE}?after=9", {}, None)
    assert paginator.advance(following, page(rows(2, 3), url=f"{BASE}?after=9")) is None


def test_next_link_to_another_host_is_refused() -> None:
    paginator = make({"type": "next_url"})
    with pytest.raises(PaginationError) as caught:
        drive(paginator, link_server(5, 2, lambda n: f"https://evil.test/steal?page={n + 1}"))
    message = str(caught.value)
    assert "https://evil.test/steal?page=2 points to another host" in message
    assert "could leak your credentials" in message
    assert "allow_other_hosts: true" in message


@pytest.mark.parametrize(
    "target",
    [
        "http://api.example.com/v1/items?page=2",  # a downgrade to plain http
        "https://api.example.com:8443/v1/items?page=2",
        "//cdn.example.com/v1/items?page=2",
    ],
)
def test_scheme_port_and_host_all_count(target: str) -> None:
    paginator = make({"type": "next_url"})
    with pytest.raises(PaginationError, match="points to another host"):
        drive(paginator, link_server(5, 2, lambda n: target))


def test_explicit_default_port_is_the_same_host() -> None:
    paginator = make({"type": "next_url"})
    run = drive(
        paginator,
        link_server(5, 2, lambda n: f"https://API.example.com:443/v1/items?page={n + 1}"),
    )
    assert run.records == rows(0, 5)


def test_other_hosts_allowed_when_trusted() -> None:
    paginator = make({"type": "next_url", "allow_other_hosts": True})
    run = drive(paginator, link_server(5, 2, lambda n: f"https://mirror.test/x?page={n + 1}"))
    assert run.requests[1].url == "https://mirror.test/x?page=2"
    assert run.records == rows(0, 5)


def test_next_link_that_is_not_http_is_refused() -> None:
    paginator = make({"type": "next_url", "allow_other_hosts": True})
    with pytest.raises(PaginationError, match="not an http"):
        drive(paginator, link_server(5, 2, lambda n: "ftp://files.test/items"))


def test_same_next_link_twice_is_a_loop() -> None:
    paginator = make({"type": "next_url"})
    # Page 2 links to itself: the second time round the guard stops it.
    with pytest.raises(PaginationError, match="same next link twice in a row"):
        drive(paginator, link_server(50, 2, lambda n: f"{BASE}?page=2"))


def test_next_link_to_the_page_just_fetched_is_a_loop() -> None:
    paginator = make({"type": "next_url"}, params={"page": 0})
    state = paginator.start()
    requested = full_url(paginator.request(state))
    with pytest.raises(PaginationError, match="same next link twice"):
        paginator.advance(
            state, page(rows(0, 2), headers={"Link": f'<{requested}>; rel="next"'}, url=requested)
        )


def test_secrets_in_next_links_are_masked_in_messages() -> None:
    paginator = make({"type": "next_url"})
    link = '<https://user:pw@evil.test/x?api_key=s3cret&page=2>; rel="next"'
    with pytest.raises(PaginationError) as caught:
        paginator.advance(paginator.start(), page(rows(0, 1), headers={"Link": link}))
    assert "s3cret" not in str(caught.value)
    assert "pw" not in str(caught.value)
    following = {**paginator.start(), "next": f"{BASE}?access_token=s3cret&page=2"}
    assert paginator.describe(following) == f"next {BASE}?access_token=***&page=2"


def test_the_api_key_param_stays_out_of_next_links() -> None:
    """The HTTP layer adds it to every request; the state DB is not a secret store."""
    paginator = make({"type": "next_url"}, auth_param="api_key")
    link = f'<{BASE}?page=2&api_key=s3cret>; rel="next"'
    following = paginator.advance(paginator.start(), page(rows(0, 2), headers={"Link": link}))
    assert following is not None
    assert following["next"] == f"{BASE}?page=2"
