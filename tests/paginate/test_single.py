"""`type: none` (paginate/single.py) and what every style's request template does."""

from __future__ import annotations

from tui_connector.exchange import PageRequest

from .fakes import BASE, drive, make, page, rows


def test_no_pagination_is_one_request() -> None:
    paginator = make(params={"flag": True, "n": 3, "name": "x"})
    run = drive(paginator, lambda request: page(rows(0, 3)))
    assert run.requests == [PageRequest("GET", BASE, {"flag": "true", "n": "3", "name": "x"}, None)]
    assert run.records == rows(0, 3)
    assert paginator.describe(paginator.start()) == "single request"


def test_post_body_is_a_fresh_copy_each_time() -> None:
    template = {"filter": {"kind": ["a"]}}
    paginator = make(method="POST", body=template)
    first = paginator.request(paginator.start())
    assert first.json == {"filter": {"kind": ["a"]}}
    first.json["filter"]["kind"].append("mutated")
    assert paginator.request(paginator.start()).json == {"filter": {"kind": ["a"]}}
    assert template == {"filter": {"kind": ["a"]}}


def test_the_single_page_is_the_last() -> None:
    paginator = make()
    start = paginator.start()
    step = paginator.step(start, page(rows(0, 3)))
    assert step.finished and step.checkpoint == start
    assert step.describe() == "finished"
