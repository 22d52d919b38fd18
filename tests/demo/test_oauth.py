"""The demo's OAuth2 token endpoint (RFC 6749 §4.4, §6) and its ``/oauth`` routes."""

from __future__ import annotations

import base64

import httpx

from .helpers import Factory
from helpers import wait_for

CLIENT = ("demo-client", "demo-client-secret")


def token(http: httpx.Client, form: dict[str, str], basic: bool = True) -> httpx.Response:
    if basic:
        return http.post("/oauth/token", data=form, auth=CLIENT)
    return http.post(
        "/oauth/token", data={**form, "client_id": CLIENT[0], "client_secret": CLIENT[1]}
    )


def test_client_credentials_tokens_open_the_oauth_routes_until_they_expire(
    factory: Factory,
) -> None:
    server = factory(records=20, oauth_token_ttl_s=60)
    with httpx.Client(base_url=server.url) as http:
        for basic in (True, False):
            answer = token(http, {"grant_type": "client_credentials", "scope": "a b"}, basic)
            assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
            body = answer.json()
            assert body["token_type"] == "Bearer" and body["expires_in"] == 60
            assert body["scope"] == "a b" and "refresh_token" not in body
            bearer = {"Authorization": f"Bearer {body['access_token']}"}
            assert len(http.get("/oauth/all/o", headers=bearer).json()) == 20
        refused = http.get("/oauth/all/o", headers={"Authorization": "Bearer made-up"})
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert http.get("/oauth/all/o").json()["error"] == "invalid_request"
        server.revoke_access_tokens()
        assert http.get("/oauth/all/o", headers=bearer).status_code == 401
        server.update_knobs(oauth_token_ttl_s=0.05)
        short_lived = token(http, {"grant_type": "client_credentials"}).json()["access_token"]
        bearer = {"Authorization": f"Bearer {short_lived}"}
        wait_for(
            lambda: http.get("/oauth/all/o", headers=bearer).status_code == 401,
            what="the token to expire",
        )
    assert [entry.path for entry in server.log()][:2] == ["/oauth/token", "/oauth/all/o"]


def test_refresh_tokens_rotate_and_a_used_one_is_refused(factory: Factory) -> None:
    server = factory(oauth_refresh_token="first-refresh-token")
    with httpx.Client(base_url=server.url) as http:
        first = token(http, {"grant_type": "refresh_token", "refresh_token": "first-refresh-token"})
        rotated = first.json()["refresh_token"]
        assert rotated.startswith("rt-")
        again = token(http, {"grant_type": "refresh_token", "refresh_token": "first-refresh-token"})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        second = token(http, {"grant_type": "refresh_token", "refresh_token": rotated})
        assert second.status_code == 200 and second.json()["refresh_token"] != rotated
        server.update_knobs(oauth_rotate=False)
        kept = second.json()["refresh_token"]
        for _ in range(2):
            same = token(http, {"grant_type": "refresh_token", "refresh_token": kept})
            assert same.status_code == 200 and "refresh_token" not in same.json()
    assert server.issued_tokens()[0] == rotated  # a refresh token, then the access token


def test_the_token_endpoint_refuses_as_rfc_6749_says(factory: Factory) -> None:
    server = factory()
    wrong = "Basic " + base64.b64encode(b"demo-client:nope").decode()
    with httpx.Client(base_url=server.url) as http:
        bad_client = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": wrong},
        )
        assert bad_client.status_code == 401
        assert bad_client.json()["error"] == "invalid_client"
        assert bad_client.headers["WWW-Authenticate"].startswith("Basic")
        anonymous = http.post("/oauth/token", data={"grant_type": "client_credentials"})
        assert anonymous.json()["error"] == "invalid_client"
        both = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_secret": CLIENT[1]},
            auth=CLIENT,
        )
        assert both.json()["error"] == "invalid_request"
        assert token(http, {}).json()["error"] == "invalid_request"
        assert token(http, {"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
        server.update_knobs(oauth_api_accepts=False)
        fresh = token(http, {"grant_type": "client_credentials"}).json()["access_token"]
        refused = http.get("/oauth/all/o", headers={"Authorization": f"Bearer {fresh}"})
        assert refused.status_code == 401
        knobs = http.get("/_demo/knobs").json()
        assert knobs["oauth_client_secret"] == knobs["oauth_refresh_token"] == "***"


def test_answers_can_be_made_odd_and_tokens_live_from_the_requests_arrival(
    factory: Factory,
) -> None:
    server = factory(
        latency_ms=200, oauth_token_ttl_s=0.3, oauth_answer_fields={"token_type": "mac"}
    )
    with httpx.Client(base_url=server.url) as http:
        answer = token(http, {"grant_type": "client_credentials"}).json()
        assert answer["token_type"] == "mac" and answer["expires_in"] == 0.3
        # Its life began as the request arrived, 200 ms before the answer: 200 ms more until
        # the API looks at it, and it has expired.
        bearer = {"Authorization": f"Bearer {answer['access_token']}"}
        assert http.get("/oauth/all/o", headers=bearer).status_code == 401
