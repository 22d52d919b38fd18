"""OAuth 2.0 access tokens for one source: the client credentials grant (RFC 6749 §4.4) and
refreshing with a refresh token (§6), over the source's own client.

A token is obtained before the source's first request, kept, and renewed ahead of its expiry
(`expires_in` less a margin) and once when the API answers 401. However many streams and
parallel pages need one, a single token request is in flight: the others wait for its
answer. A token request that fails with a status the retry policy retries (429, 5xx) or a
connection error is retried like any request; one the provider refuses (`invalid_client`,
`invalid_grant`, ...) fails the source at once, with the provider's `error_description`.
A token request is a request of the source (it holds a concurrency slot; a pause and a stop
apply), though not of its rate limit or `Retry-After` hold, which are the API's. Every token
obtained joins the redactor the moment it arrives. A provider that rotates
refresh tokens is followed: the newest is used, and written to `refresh_token_file`
(atomically, mode 0600) when that is set; else the operator is told once that the configured
one is stale.

Written here rather than taken from an OAuth library (Authlib's `AsyncOAuth2Client` was
the candidate) because what a source needs is the part such a client leaves out:
- Authlib refreshes inside `AsyncOAuth2Client.request()` only; a source sends with
  `send(stream=True)` and follows redirects by hand (`redirects`), so its refresh would be
  called from here all the same, and it never renews on a 401.
- Its token requests would go around the source's retry policy, `Retry-After`, body cap,
  reporting and redaction; wrapping them means classifying its exceptions back into ours.
- Rotated refresh tokens written to a file, and failures that stop the source, are ours
  either way; and Authlib brings `cryptography` along for two form posts and a JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tui_connector.config import OAuth2Auth, RetryPolicy, scalar_text
from tui_connector.http.body import ResponseTooLarge, decode_json, read_body
from tui_connector.http.client import USER_AGENT
from tui_connector.http.errors import FetchError, fetch_error
from tui_connector.http.hold import SourceHold
from tui_connector.http.report import HttpReport
from tui_connector.http.retry import Retries, status_error
from tui_connector.http.transport import EXCHANGE_FAILURES, exchange_failure
from tui_connector.redact import Redactor

if TYPE_CHECKING:
    from tui_connector.http.source import AttemptSlot

# A token is renewed this long before it expires, at most: a request sent just before the
# expiry must not arrive after it. Short-lived tokens keep the last third of their life.
REFRESH_AHEAD_S = 30.0
# The most a token endpoint's answer may hold: a few tokens and their metadata.
_ANSWER_LIMIT = 1024 * 1024
# What the provider's error codes (RFC 6749 §5.2, RFC 8707) ask of the operator.
_ERROR_HINTS = {
    "invalid_client": "check client_id, client_secret and client_auth (basic or post)",
    "invalid_grant": "the refresh token is invalid, expired or revoked: obtain a new one",
    "unauthorized_client": "the provider does not let this client use this grant",
    "unsupported_grant_type": "the provider does not support this grant",
    "invalid_scope": "check scopes",
    "invalid_target": "check the resource in token_params",
    "invalid_request": "check token_params",
}


class TokenError(FetchError):
    """No access token could be had: refused by the provider, or not reached within the
    retry policy. No stream of the source can do better, so the source stops."""


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float | None  # monotonic; None: the provider gave no lifetime (renewed on a 401)

    def fresh(self) -> bool:
        return self.renew_at is None or time.monotonic() < self.renew_at


def renewal_margin(lifetime: float) -> float:
    """How long before its expiry a token of `lifetime` seconds is renewed."""
    return min(REFRESH_AHEAD_S, lifetime / 3)


class OAuth2Tokens:
    """The access token of one source: obtained, kept, renewed; one token request at a time."""

    def __init__(
        self,
        auth: OAuth2Auth,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        total_timeout: float,
        report: HttpReport,
        redact: Redactor,
    ) -> None:
        self._auth = auth
        self._client = client
        self._total_timeout = total_timeout
        self._report = report
        self._redact = redact
        self._shown_url = redact(auth.token_url)
        # A Retry-After from the token endpoint delays the token request alone: the source's
        # hold (`retry_after: source`) is about the API.
        own_policy = policy.model_copy(update={"retry_after": "request"})
        self._policy = own_policy
        self._retries = Retries(own_policy, SourceHold(own_policy, report), report)
        self._token: _Token | None = None
        self._refresh_token: str | None = None  # read when first needed (it may be in a file)
        self._told_stale = False
        self._renewing = asyncio.Lock()
        self._failures = 0
        self._last_failure: TokenError | None = None

    async def authorize(
        self, request: httpx.Request, slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> None:
        """Put a fresh access token on `request`, obtaining one first if need be.

        A token request is a request of the source: each attempt holds a `slot` (not held
        by the caller, or the two could wait for each other), so a paused source sends none
        and a stopped one none more; `interrupt` cuts its backoff short."""
        token = self._token
        if token is None or not token.fresh():
            token = await self._renew(token, slot, interrupt)
        request.headers["Authorization"] = f"Bearer {token.value}"

    async def rejected(
        self, request: httpx.Request, slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> None:
        """The API answered 401 to `request`: renew its token, unless another request's 401
        had it renewed already."""
        token = self._token
        if token is not None and request.headers.get("Authorization") == f"Bearer {token.value}":
            await self._renew(token, slot, interrupt)

    def still_rejected(
        self, response: httpx.Response, content: bytes, shown_url: str, attempt: int
    ) -> FetchError:
        """The error of a request the API refused (401) again, with a token obtained after
        its first 401."""
        return fetch_error(
            self._redact,
            f"HTTP 401 {response.reason_phrase}: the API refuses even a freshly issued "
            f"access token from {self._shown_url}; check the scopes and token_params "
            "(audience, resource) it expects",
            shown_url,
            attempt,
            status=401,
            content=content,
            retryable=False,
        )

    async def _renew(
        self, stale: _Token | None, slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> _Token:
        """A token other than `stale`: the one another task obtained meanwhile, or a new one.
        Those waiting for a renewal that fails get its failure, without a request of their own."""
        failures = self._failures
        async with self._renewing:
            token = self._token
            if token is not None and token is not stale and token.fresh():
                return token
            if self._failures != failures and self._last_failure is not None:
                raise self._last_failure
            try:
                token = await self._obtain(slot, interrupt)
            except TokenError as exc:
                self._failures += 1
                self._last_failure = exc
                raise
            self._token = token
            return token

    # -- the token request ------------------------------------------------------------------

    async def _obtain(self, slot: AttemptSlot | None, interrupt: asyncio.Event | None) -> _Token:
        form = await self._form()
        try:
            answer, sent_at = await self._attempt(form, 1, slot)
        except TokenError as exc:
            if not exc.retryable or self._policy.max_attempts == 1:
                raise
            try:
                answer, sent_at = await self._retries.after(
                    exc, lambda number: self._attempt(form, number, slot), interrupt
                )
            except TokenError as last:
                last.retryable = False  # retried here already: the page's attempt must not
                raise
        return await self._accept(answer, sent_at)

    async def _form(self) -> dict[str, str]:
        auth = self._auth
        form: dict[str, str] = {"grant_type": auth.grant}
        if auth.grant == "refresh_token":
            form["refresh_token"] = self._refresh_token or await self._first_refresh_token()
        if auth.scopes:
            form["scope"] = " ".join(auth.scopes)
        form.update({name: scalar_text(value) for name, value in auth.token_params.items()})
        if auth.client_auth == "post":
            form["client_id"] = auth.client_id
            if auth.client_secret is not None:
                form["client_secret"] = auth.client_secret.get_secret_value()
        return form

    async def _attempt(
        self, form: dict[str, str], attempt: int, slot: AttemptSlot | None
    ) -> tuple[dict[str, Any], float]:
        """One token request: the provider's answer, and when it was sent. Raises TokenError."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._auth.client_auth == "basic":
            headers["Authorization"] = f"Basic {self._auth.basic_credentials()}"
        # Not built by the client: the source's own headers (an API key among them) are for
        # the API, not for the provider.
        request = httpx.Request(
            "POST",
            self._auth.token_url,
            data=form,
            headers=headers,
            extensions={"timeout": self._client.timeout.as_dict()},
        )
        report = self._report
        async with slot() if slot else contextlib.nullcontext():
            sent_at = time.monotonic()
            request_id = report.request_started("POST", self._shown_url, attempt)
            size, status, timed_out = 0, None, False
            try:
                async with asyncio.timeout(self._total_timeout):
                    response = await self._client.send(request, stream=True)
                    status = response.status_code
                    content = await read_body(response, _ANSWER_LIMIT)
                size = len(content)
            except EXCHANGE_FAILURES as exc:
                failure = exchange_failure(exc, self._total_timeout)
                timed_out = failure.timed_out
                raise self._error(failure.message, attempt, retryable=failure.retryable) from None
            except ResponseTooLarge as exc:
                raise self._error(str(exc), attempt, retryable=False) from None
            finally:
                report.request_finished(request_id, size, status, timed_out)
        return self._answer(response, content, attempt), sent_at

    def _answer(self, response: httpx.Response, content: bytes, attempt: int) -> dict[str, Any]:
        """The provider's JSON answer, its tokens redacted from now on; or the TokenError
        that says why there is no access token in it."""
        try:
            answer = decode_json(content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = None
        if isinstance(answer, dict):
            self._redact.add(
                *(
                    value
                    for name in ("access_token", "refresh_token", "id_token")
                    if isinstance(value := answer.get(name), str)
                )
            )
        status = response.status_code
        if status >= 400:
            refusal = isinstance(answer, dict) and isinstance(answer.get("error"), str)
            if refusal and status not in self._policy.statuses:  # a 503 may say "error" too
                raise self._refused(answer, status, content, attempt)
            error = status_error(
                response,
                content,
                self._shown_url,
                attempt,
                self._policy,
                self._redact,
                has_auth=True,
            )
            # The source's url is not what a 404 here gets wrong.
            raise self._from(error, "check token_url" if status == 404 else error.hint)
        if not isinstance(answer, dict) or not answer.get("access_token"):
            # A proxy's error page, or a body cut short, may come right the next time. Not
            # shown: half a token is no JSON, so it could not be redacted.
            raise self._error(
                f"HTTP {status} without an access_token "
                f"({response.headers.get('Content-Type', 'no content type')}; body not shown)",
                attempt,
                status=status,
            )
        token_type = answer.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise self._error(
                f"the provider issued a token of type {token_type!r}; only bearer tokens "
                "are supported",
                attempt,
                status=status,
                retryable=False,
            )
        return answer

    def _refused(
        self, answer: dict[str, Any], status: int, content: bytes, attempt: int
    ) -> TokenError:
        code = answer["error"]
        described = answer.get("error_description")
        said = f"{code}: {described}" if isinstance(described, str) and described else code
        hint = _ERROR_HINTS.get(code)
        return self._error(
            f"the provider refused the token request (HTTP {status}, {said})"
            + (f"; {hint}" if hint else ""),
            attempt,
            status=status,
            content=content,
            retryable=False,
        )

    def _error(
        self,
        message: str,
        attempt: int,
        *,
        status: int | None = None,
        content: bytes = b"",
        retryable: bool = True,
    ) -> TokenError:
        return self._from(
            fetch_error(
                self._redact,
                message,
                self._shown_url,
                attempt,
                status=status,
                content=content,
                retryable=retryable,
            )
        )

    def _from(self, error: FetchError, hint: str | None = None) -> TokenError:
        token_error = TokenError(
            f"OAuth2 token request: {error.message}",
            url=error.url,
            hint=error.hint if hint is None else hint,
            status=error.status,
            body_excerpt=error.body_excerpt,
            retryable=error.retryable,
            retry_after=error.retry_after,
        )
        token_error.attempts = error.attempts
        return token_error

    # -- the answer -------------------------------------------------------------------------

    async def _accept(self, answer: dict[str, Any], sent_at: float) -> _Token:
        lifetime = _seconds(answer.get("expires_in"))
        renew_at = None if lifetime is None else sent_at + lifetime - renewal_margin(lifetime)
        self._report.token_obtained(lifetime)
        rotated = answer.get("refresh_token")
        if (
            self._auth.grant == "refresh_token"
            and isinstance(rotated, str)
            and rotated
            and rotated != self._refresh_token
        ):
            self._refresh_token = rotated
            await self._keep(rotated)
        return _Token(answer["access_token"], renew_at)

    async def _first_refresh_token(self) -> str:
        """The refresh token to start from: `refresh_token_file`'s (the newest, once a
        provider rotated it), else the configured one."""
        auth = self._auth
        configured = auth.refresh_token.get_secret_value() if auth.refresh_token else None
        path = auth.refresh_token_file
        kept = None
        if path is not None:
            try:
                kept = (await asyncio.to_thread(Path(path).read_text, encoding="utf-8")).strip()
            except FileNotFoundError:
                pass
            except (OSError, UnicodeDecodeError) as exc:
                raise self._error(
                    f"refresh_token_file {path} cannot be read: {exc}", 1, retryable=False
                ) from None
        token = kept or configured
        if not token:
            raise self._error(
                f"refresh_token_file {path} is missing or empty; put the refresh token in it, "
                "or set refresh_token",
                1,
                retryable=False,
            )
        self._redact.add(token)
        self._refresh_token = token
        return token

    async def _keep(self, refresh_token: str) -> None:
        """The provider rotated the refresh token: keep the new one where the next run
        finds it, or say that the configured one is stale."""
        path = self._auth.refresh_token_file
        if path is None:
            self._tell_once(
                "the provider rotated the refresh token: the configured refresh_token is now "
                "stale (the next run may be refused with invalid_grant); set "
                "auth.refresh_token_file to keep the newest one"
            )
            return
        try:
            await asyncio.to_thread(write_secret_file, Path(path), refresh_token)
        except OSError as exc:
            self._tell_once(
                f"the provider rotated the refresh token, but refresh_token_file {path} cannot "
                f"be written ({exc}); the next run may be refused with invalid_grant"
            )

    def _tell_once(self, message: str) -> None:
        if not self._told_stale:
            self._told_stale = True
            self._report.warned(self._redact(message))


def _seconds(value: object) -> float | None:
    """`expires_in` as seconds (some providers send it as text); None if not a positive
    number."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 < seconds < float("inf") else None


def write_secret_file(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only (0600), atomically: a crash
    leaves the old file or the new one, never half of one, nor a moment readable by others.
    A missing directory is made, for its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:  # mkstemp makes it 0600
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
