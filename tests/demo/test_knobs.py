"""The knobs (over HTTP and in process) and the request log."""

from __future__ import annotations

import httpx
import pytest

from tui_connector.demo.knobs import DemoKnobs

from .helpers import Factory


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
