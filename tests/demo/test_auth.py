"""Auth on the ``/secure`` routes: every credential form accepted, everything else a 401."""

from __future__ import annotations

import base64

import httpx
import pytest

from .helpers import TOKEN, Factory


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
