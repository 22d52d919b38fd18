"""`TokenEndpoint`: an OAuth2 provider's token endpoint as one source reaches it (RFC 6749
§4.4, §6): the token request sent through the source's client, within its slots, timeout and
retry policy, told to its report; the provider's answer read, its tokens redacted at once, and
what is wrong with it said as a `TokenError`.

A token request that fails with a status the retry policy retries (429, 5xx) or a connection
error is retried like any request, though not within the source's `Retry-After` hold (that
is the API's), and not counted as a sample of the API's load by an adaptive concurrency
limit. One the provider refuses (`invalid_client`, `invalid_grant`, ...) is not retried: its
`error_description` says why, a hint what to do."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tui_connector.config import OAuth2Auth, RetryPolicy
from tui_connector.http.attempt import Exchange
from tui_connector.http.body import decode_json
from tui_connector.http.client import USER_AGENT
from tui_connector.http.errors import FetchError, TokenError, fetch_error
from tui_connector.http.hold import SourceHold
from tui_connector.http.report import HttpReport
from tui_connector.http.retry import Retries, status_error
from tui_connector.redact import Redactor

# The most a token endpoint's answer may hold: a few tokens and their metadata.
_ANSWER_LIMIT = 1024 * 1024
# The fields of an answer that hold a token: redacted from the moment the answer arrives.
_TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
# What an access token may hold to travel in `Authorization: Bearer`: visible ASCII. RFC 6750's
# b64token is narrower, but real providers issue others (`id|secret`); what matters is that
# no space, control character (a header split in two) or non-ASCII character is in it.
_BEARER_TOKEN = re.compile(r"[!-~]+")
# What the provider's error codes (RFC 6749 §5.2, RFC 8707) ask of the operator.
_ERROR_HINTS = {
    "invalid_client": "check client_id, client_secret and client_auth (basic or post)",
    "unauthorized_client": "the provider does not let this client use this grant",
    "unsupported_grant_type": "the provider does not support this grant",
    "invalid_scope": "check scopes",
    "invalid_target": "check the resource in token_params",
    "invalid_request": "check token_params",
}

RefreshTokenKeeper = Callable[[str], Awaitable[None]]
# An attempt's slot as the token request enters it (`source.AttemptSlot`, maybe wrapped).
EnteredSlot = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class Turn(Protocol):
    """A token request's turn on the wire, among every source that shares the token: one
    attempt at a time is sent, with the form of that moment."""

    async def take(self) -> dict[str, str]:
        """Wait for the attempt on the wire to end, then the form to send. Raises what makes
        this request needless (a renewal ended meanwhile), or a TokenError (the turn is not
        taken then)."""
        ...

    def obtained(self, answer: TokenAnswer) -> None:
        """The attempt obtained a token: it is taken in, then the turn given back."""
        ...

    def failed(self, error: TokenError) -> None:
        """The attempt failed for good (it is not retried): that is the renewal's outcome,
        then the turn is given back."""
        ...

    def give_back(self) -> None:
        """The attempt ended otherwise (it will be retried, or was cut short)."""
        ...


@dataclass(frozen=True)
class TokenAnswer:
    """What a token request obtained."""

    access_token: str
    lifetime: float | None  # seconds (`expires_in`); None: the provider did not say
    sent_at: float  # monotonic: when the request went
    received_at: float  # monotonic: when its answer was read


class TokenEndpoint:
    """The token endpoint as one source reaches it. `keep_refresh_token` (the refresh token
    grant only) is given each refresh token an answer brings, before anything else is made
    of the answer; `sheltered` holds the attempts a cancellation may not cut short (those
    that may bring one), for whoever must wait for them."""

    def __init__(
        self,
        auth: OAuth2Auth,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        total_timeout: float,
        report: HttpReport,
        redact: Redactor,
        keep_refresh_token: RefreshTokenKeeper | None,
        sheltered: set[asyncio.Task[Any]],
    ) -> None:
        self._auth = auth
        self._redact = redact
        self._keep_refresh_token = keep_refresh_token
        self._sheltered = sheltered
        self.shown_url = redact(auth.token_url)
        # A Retry-After from the token endpoint delays the token request alone: the source's
        # hold (`retry_after: source`) is about the API.
        self._policy = policy.model_copy(update={"retry_after": "request"})
        self._retries = Retries(self._policy, SourceHold(self._policy, report), report)
        self._exchange = Exchange(
            lambda request, _attempt: client.send(request, stream=True),
            report.request_started,
            report.token_request_finished,
            redact,
            total_timeout,
            _ANSWER_LIMIT,
        )
        # Without a user and password: the client authenticates as `client_auth` says, and
        # the aiohttp transport refuses credentials in a URL beside an Authorization header.
        self._url = httpx.URL(auth.token_url).copy_with(userinfo=b"")
        # Not the client's headers: the source's own (an API key among them) are for the
        # API, not for the provider.
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if auth.client_auth == "basic":
            self._headers["Authorization"] = f"Basic {auth.basic_credentials()}"
        self._timeouts = client.timeout.as_dict()

    async def request(
        self, turn: Turn, slot: EnteredSlot | None, interrupt: asyncio.Event | None
    ) -> TokenAnswer:
        """A token, retried as the policy says; each attempt's outcome told to its `turn`.
        Raises TokenError.

        Each attempt holds a `slot` (not held by the caller, or the two could wait for each
        other), so a paused source sends none and a stopped one none more, then takes its
        `turn`; `interrupt` cuts a backoff short."""
        try:
            return await self._retries.run(interrupt, self._attempt, turn, slot)
        except TokenError as exc:
            exc.retryable = False  # retried here already: the page's attempt must not
            raise

    async def _attempt(self, attempt: int, turn: Turn, slot: EnteredSlot | None) -> TokenAnswer:
        async with slot() if slot else contextlib.nullcontext():
            form = await turn.take()
            try:
                request = httpx.Request(
                    "POST",
                    self._url,
                    data=form,
                    headers=self._headers,
                    extensions={"timeout": self._timeouts},
                )
                if self._keep_refresh_token is None:
                    answer = await self._answer(request, attempt)
                else:
                    answer = await self._shelter(self._answer(request, attempt))
            except TokenError as exc:
                if self._retries.tries_again(exc, attempt):
                    turn.give_back()
                else:
                    turn.failed(exc)
                raise
            except BaseException:
                turn.give_back()
                raise
            # Taken in here, before the slot is left (leaving it may wait, and be cancelled).
            turn.obtained(answer)
            return answer

    async def _shelter(self, work: Coroutine[Any, Any, TokenAnswer]) -> TokenAnswer:
        """`work` carried to its end even if the caller is cancelled (a stop, a sibling's
        failure): a provider that answered a refresh may have revoked the refresh token it
        used, and only its answer holds the new one."""
        task = asyncio.ensure_future(work)
        self._sheltered.add(task)
        task.add_done_callback(self._unshelter)
        return await asyncio.shield(task)

    def _unshelter(self, task: asyncio.Task[Any]) -> None:
        self._sheltered.discard(task)
        if not task.cancelled():
            task.exception()  # its caller may be gone: the failure is not one to log

    async def _answer(self, request: httpx.Request, attempt: int) -> TokenAnswer:
        """The token in the provider's answer to `request`; or the TokenError that says why
        there is none."""
        sent_at = time.monotonic()
        try:
            response, content = await self._exchange(request, self.shown_url, attempt)
        except FetchError as exc:
            raise self._as_token_error(exc) from None
        received_at = time.monotonic()
        try:
            answer = decode_json(content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            answer = None
        else:
            self._redact.add(
                *(value for name in _TOKEN_FIELDS if isinstance(value := answer.get(name), str))
            )
        status = response.status_code
        if answer is not None and 200 <= status < 300 and self._keep_refresh_token is not None:
            rotated = answer.get("refresh_token")
            if isinstance(rotated, str) and rotated:
                # Before anything else: whatever is wrong with the rest of the answer, the
                # provider may have revoked the refresh token this request used.
                await self._keep_refresh_token(rotated)
        if status >= 400:
            raise self._status_error(response, content, answer, attempt)
        if answer is None or not answer.get("access_token"):
            # A proxy's error page, or a body cut short, may come right the next time. Not
            # shown: half a token is no JSON, so it could not be redacted.
            raise self._error(
                f"HTTP {status} without an access_token "
                f"({response.headers.get('Content-Type', 'no content type')}; body not shown)",
                attempt,
                status=status,
            )
        access_token = answer["access_token"]
        unfit = _unfit_bearer_token(access_token)
        if unfit:
            raise self._error(
                f"the provider issued an access_token that cannot be sent as a bearer token "
                f"({unfit}; RFC 6750 allows visible ASCII characters only)",
                attempt,
                status=status,
                retryable=False,
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
        return TokenAnswer(access_token, seconds(answer.get("expires_in")), sent_at, received_at)

    # -- what went wrong ---------------------------------------------------------------------

    def _status_error(
        self,
        response: httpx.Response,
        content: bytes,
        answer: dict[str, Any] | None,
        attempt: int,
    ) -> TokenError:
        status = response.status_code
        refusal = answer is not None and isinstance(answer.get("error"), str)
        if answer is not None and refusal and status not in self._policy.statuses:
            return self._refused(answer, status, content, attempt)  # a 503 may say "error" too
        error = status_error(
            response, content, self.shown_url, attempt, self._policy, self._redact, has_auth=True
        )
        # The source's url is not what a 404 here gets wrong.
        return self._as_token_error(error, "check token_url" if status == 404 else None)

    def _refused(
        self, answer: dict[str, Any], status: int, content: bytes, attempt: int
    ) -> TokenError:
        code = answer["error"]
        described = answer.get("error_description")
        described = described.strip() if isinstance(described, str) else ""
        return self._error(
            f"the provider refused the token request (HTTP {status}, "
            + (f"{code}: {described})" if described else f"{code})"),
            attempt,
            status=status,
            # Said already: the body would only say it again.
            content=b"" if described else content,
            retryable=False,
            hint=self._refusal_hint(code),
        )

    def _refusal_hint(self, code: str) -> str:
        auth = self._auth
        if code != "invalid_grant":
            return _ERROR_HINTS.get(code, "")
        if auth.grant != "refresh_token":
            return "check scopes and token_params"
        if auth.refresh_token_file is not None:  # read before refresh_token: put it there
            return (
                f"the refresh token in {auth.refresh_token_file} is invalid, expired or "
                "revoked: put a new one in that file"
            )
        return "the refresh token is invalid, expired or revoked: obtain a new one"

    def still_rejected(
        self, response: httpx.Response, content: bytes, shown_url: str, attempt: int
    ) -> FetchError:
        """The error of a request the API refused (401) again, with a token obtained after
        its first 401."""
        return fetch_error(
            self._redact,
            f"HTTP 401 {response.reason_phrase}: the API refuses even a freshly issued "
            f"access token from {self.shown_url}",
            shown_url,
            attempt,
            status=401,
            content=content,
            retryable=False,
            hint="check the scopes and token_params (audience, resource) it expects",
        )

    def error(self, message: str) -> TokenError:
        """A token not requested, because of what `message` says (not worth a retry)."""
        return self._error(message, 1, retryable=False)

    def _error(
        self,
        message: str,
        attempt: int,
        *,
        status: int | None = None,
        content: bytes = b"",
        retryable: bool = True,
        hint: str = "",
    ) -> TokenError:
        return self._as_token_error(
            fetch_error(
                self._redact,
                message,
                self.shown_url,
                attempt,
                status=status,
                content=content,
                retryable=retryable,
                hint=hint,
            )
        )

    @staticmethod
    def _as_token_error(error: FetchError, hint: str | None = None) -> TokenError:
        """`error`, of a token request, as the TokenError that stops the sources using the
        token; with `hint` instead of its own, if given."""
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


def _unfit_bearer_token(value: object) -> str:
    """Why `value` cannot travel as a bearer token ("" if it can), without showing it."""
    if not isinstance(value, str):
        return f"{_JSON_KINDS.get(type(value), 'no text')} rather than text"
    if _BEARER_TOKEN.fullmatch(value):
        return ""
    if not value.isascii():
        return "it holds a character that is not ASCII"
    return "it holds a space or a control character"


_JSON_KINDS: dict[type, str] = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    dict: "an object",
    list: "an array",
}


def seconds(value: object) -> float | None:
    """`expires_in` as seconds (some providers send it as text); None if not a positive
    number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return number if number is not None and 0 < number < float("inf") else None
