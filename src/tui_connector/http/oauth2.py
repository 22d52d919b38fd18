"""OAuth 2.0 access tokens: the client credentials grant (RFC 6749 §4.4) and refreshing with
a refresh token (§6), over the sources' own clients.

A token is obtained before a source's first request, kept, and renewed ahead of its expiry
(`expires_in` less a margin) and once when the API answers 401. The sources of a run that give
the same auth block share one token (`SharedTokens`): a provider that rotates refresh tokens
revokes the one a refresh used, so two holders of one refresh token refreshing apart would
refuse each other. However many sources, streams and parallel pages need a token, a single
token request is in flight: the others wait for its answer, and take any token obtained after
they began to wait. The request is sent by a source that needs it, through its own client,
slots and report (`token_endpoint`); every source sharing the token is told it arrived. A
source that cannot send its next attempt because it is paused holds nobody back: another that
waits sends one, and each attempt first looks whether a renewal ended since its request began
(then it takes that token, or that failure, and sends nothing).
Every token obtained joins the redactor the moment it arrives. A rotated refresh token is
kept before anything else is made of the answer, and written to `refresh_token_file`
(atomically, mode 0600) when that is set; else the operator is told once that the configured
one is stale. A refresh in flight is carried to its end even if its caller is cancelled.

Written here rather than taken from an OAuth library (Authlib's `AsyncOAuth2Client` was
the candidate) because what a source needs is the part such a client leaves out:
- Authlib refreshes inside `AsyncOAuth2Client.request()` only; a source sends with
  `send(stream=True)` and follows redirects by hand (`redirects`), so its refresh would be
  called from here all the same, and it never renews on a 401.
- Its token requests would go around the source's retry policy, `Retry-After`, body cap,
  reporting and redaction; wrapping them means classifying its exceptions back into ours.
- Rotated refresh tokens written to a file, tokens shared by sources, and failures that stop
  the source, are ours either way; and Authlib brings `cryptography` along for two form
  posts and a JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tui_connector.config import Auth, OAuth2Auth, RetryPolicy, scalar_text
from tui_connector.http.errors import FetchError, TokenError
from tui_connector.http.report import HttpReport
from tui_connector.http.secret_file import read_secret_file, write_secret_file
from tui_connector.http.token_endpoint import EnteredSlot, TokenAnswer, TokenEndpoint
from tui_connector.redact import Redactor

if TYPE_CHECKING:
    from tui_connector.http.source import AttemptSlot

__all__ = ["OAuth2Tokens", "SharedTokens", "SourceTokens", "TokenError", "renewal_margin"]

# A token is renewed this long before it expires, at most: a request sent just before the
# expiry must not arrive after it. Short-lived tokens keep the last third of their life.
REFRESH_AHEAD_S = 30.0


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float | None  # monotonic; None: the provider gave no lifetime (renewed on a 401)

    def fresh(self) -> bool:
        return self.renew_at is None or time.monotonic() < self.renew_at


def renewal_margin(lifetime: float) -> float:
    """How long before its expiry a token of `lifetime` seconds is renewed."""
    return min(REFRESH_AHEAD_S, lifetime / 3)


def renewal_time(answer: TokenAnswer) -> float | None:
    """When the token of `answer` is renewed (monotonic): a margin before it expires, counted
    from when it was asked for; but never before a part of its life has passed since it
    arrived, or a token whose round trip took most of its life would be renewed for every
    request."""
    lifetime = answer.lifetime
    if lifetime is None:
        return None
    margin = renewal_margin(lifetime)
    return max(answer.sent_at + lifetime - margin, answer.received_at + margin)


class OAuth2Tokens:
    """The access token of one auth block, for every source that gives it: obtained, kept,
    renewed; one token request at a time."""

    def __init__(self, auth: OAuth2Auth, redact: Redactor) -> None:
        self.auth = auth
        self._redact = redact
        self.token: _Token | None = None
        # Renewals ended (a token obtained or a failure): a task that began to wait for one
        # takes whatever the next one brought.
        self.renewals = 0
        self._last_failure: TokenError | None = None
        self._wire = asyncio.Lock()  # held by the token request on the wire
        # Tasks asking for a token, and how many of them wait for their source's resume.
        self._renewing = 0
        self._held_back = 0
        self._changed = asyncio.Event()  # replaced by a new one each time it is set
        self._refresh_token: str | None = None  # read when first needed (it may be in a file)
        self._told_stale = False
        self._reports: list[HttpReport] = []  # of the sources sharing the token
        self._sheltered: set[asyncio.Task[Any]] = set()  # refreshes a cancel did not cut

    def for_source(
        self,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        total_timeout: float,
        report: HttpReport,
    ) -> SourceTokens:
        """The token as a source uses it: its token requests are sent with its `client`, as
        its `policy` says, told to its `report` (which is told of every token obtained)."""
        self._reports.append(report)
        keep = self._store_rotated if self.auth.grant == "refresh_token" else None
        endpoint = TokenEndpoint(
            self.auth, client, policy, total_timeout, report, self._redact, keep, self._sheltered
        )
        return SourceTokens(self, endpoint)

    async def settle(self) -> None:
        """Wait until no refresh cut short by a cancel is still in flight (its answer may
        hold a new refresh token to keep); before a client that sent one is closed."""
        if self._sheltered:
            await asyncio.wait(self._sheltered)

    async def renew(
        self,
        seen: int,
        endpoint: TokenEndpoint,
        slot: AttemptSlot | None,
        interrupt: asyncio.Event | None,
    ) -> _Token:
        """A token obtained after `seen` renewals ended: the one another task obtained while
        this one waited, or a new one, asked for through `endpoint`. Those waiting for a
        renewal that fails get its failure, without a request of their own; unless every
        task renewing waits for its source to be resumed: then this one sends."""
        while True:
            if self.renewals != seen:
                if self._last_failure is not None:
                    raise self._last_failure
                if self.token is not None:
                    return self.token
            if self._renewing > self._held_back:
                changed = self._changed
                await changed.wait()
                continue
            await self._ask(seen, endpoint, slot, interrupt)

    async def _ask(
        self,
        seen: int,
        endpoint: TokenEndpoint,
        slot: AttemptSlot | None,
        interrupt: asyncio.Event | None,
    ) -> None:
        """Ask `endpoint` for a token, unless a renewal (another task's) ends first; the
        outcome is the renewal's (`renewals`, `token`, `_last_failure`)."""
        self._renewing += 1
        try:
            await endpoint.request(_Turn(self, seen, endpoint), self._counted(slot), interrupt)
        except _RenewedMeanwhile:
            pass
        except TokenError as exc:
            # Failed before its turn (its form could not be made): the renewal's outcome all
            # the same, told once no attempt is on the wire.
            async with self._wire:
                if self.renewals == seen:
                    self._failed(exc)
        finally:
            self._renewing -= 1
            self._tell_waiters()

    def _obtained(self, answer: TokenAnswer) -> None:
        self.token = _Token(answer.access_token, renewal_time(answer))
        self._last_failure = None
        self.renewals += 1
        for report in self._reports:
            report.token_obtained(answer.lifetime)

    def _failed(self, error: TokenError) -> None:
        self._last_failure = error
        self.renewals += 1

    def _counted(self, slot: AttemptSlot | None) -> EnteredSlot | None:
        """`slot`, with the renewing tasks held back by a paused source counted (see
        `renew`): the others then need not wait for them."""
        if slot is None:
            return None
        source_slot = slot

        @contextlib.asynccontextmanager
        async def counted() -> AsyncIterator[None]:
            entered = source_slot()
            held_back = entered.held_back
            if held_back:
                self._held_back += 1
                self._tell_waiters()
            try:
                async with entered:
                    if held_back:
                        self._held_back -= 1
                        held_back = False
                    yield
            finally:
                if held_back:
                    self._held_back -= 1

        return counted

    def _tell_waiters(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _form(self, endpoint: TokenEndpoint) -> dict[str, str]:
        auth = self.auth
        form: dict[str, str] = {"grant_type": auth.grant}
        if auth.grant == "refresh_token":
            form["refresh_token"] = self._refresh_token or await self._first_refresh_token(endpoint)
        if auth.scopes:
            form["scope"] = " ".join(auth.scopes)
        form.update({name: scalar_text(value) for name, value in auth.token_params.items()})
        if auth.client_auth == "post":
            form["client_id"] = auth.client_id
            if auth.client_secret is not None:
                form["client_secret"] = auth.client_secret.get_secret_value()
        return form

    # -- the refresh token ------------------------------------------------------------------

    async def _first_refresh_token(self, endpoint: TokenEndpoint) -> str:
        """The refresh token to start from: `refresh_token_file`'s (the newest, once a
        provider rotated it), else the configured one."""
        auth = self.auth
        configured = auth.refresh_token.get_secret_value() if auth.refresh_token else None
        path = auth.refresh_token_file
        kept = None
        if path is not None:
            try:
                kept = await asyncio.to_thread(read_secret_file, Path(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise endpoint.error(f"refresh_token_file {path} cannot be read: {exc}") from None
        token = kept or configured
        if not token:
            raise endpoint.error(
                f"refresh_token_file {path} is missing or empty; put the refresh token in it, "
                "or set refresh_token"
            )
        self._redact.add(token)
        self._refresh_token = token
        return token

    async def _store_rotated(self, refresh_token: str) -> None:
        """An answer brought `refresh_token`: the provider rotated it. Use it from now on,
        and keep it where the next run finds it, or say that the configured one is stale."""
        if refresh_token == self._refresh_token:
            return
        self._refresh_token = refresh_token
        path = self.auth.refresh_token_file
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
            for report in self._reports:
                report.warned(self._redact(message))


class _RenewedMeanwhile(Exception):
    """A renewal ended while a token request waited for its turn: nothing to send."""


class _Turn:
    """One token request's turn on the wire (`token_endpoint.Turn`)."""

    __slots__ = ("_endpoint", "_seen", "_tokens")

    def __init__(self, tokens: OAuth2Tokens, seen: int, endpoint: TokenEndpoint) -> None:
        self._tokens, self._seen, self._endpoint = tokens, seen, endpoint

    async def take(self) -> dict[str, str]:
        tokens = self._tokens
        await tokens._wire.acquire()
        try:
            if tokens.renewals != self._seen:
                raise _RenewedMeanwhile
            await tokens.settle()  # a refresh cut short may still bring the refresh token
            return await tokens._form(self._endpoint)
        except BaseException:
            tokens._wire.release()
            raise

    def obtained(self, answer: TokenAnswer) -> None:
        try:
            self._tokens._obtained(answer)
        finally:
            self.give_back()

    def failed(self, error: TokenError) -> None:
        try:
            self._tokens._failed(error)
        finally:
            self.give_back()

    def give_back(self) -> None:
        self._tokens._wire.release()


class SourceTokens:
    """A source's use of its OAuth2 token (maybe shared with other sources): what its
    requests carry, and the token requests it sends when the token must be renewed."""

    __slots__ = ("_endpoint", "_tokens")

    def __init__(self, tokens: OAuth2Tokens, endpoint: TokenEndpoint) -> None:
        self._tokens = tokens
        self._endpoint = endpoint

    async def authorize(
        self, request: httpx.Request, slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> None:
        """Put a fresh access token on `request`, obtaining one first if need be.

        A token request is a request of the source: each attempt holds a `slot` (not held
        by the caller, or the two could wait for each other), so a paused source sends none
        and a stopped one none more; `interrupt` cuts its backoff short."""
        tokens = self._tokens
        token = tokens.token
        if token is None or not token.fresh():
            token = await tokens.renew(tokens.renewals, self._endpoint, slot, interrupt)
        request.headers["Authorization"] = f"Bearer {token.value}"

    async def rejected(
        self, request: httpx.Request, slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> None:
        """The API answered 401 to `request`: renew its token, unless another request's 401
        had it renewed already."""
        tokens = self._tokens
        token = tokens.token
        if token is not None and request.headers.get("Authorization") == f"Bearer {token.value}":
            await tokens.renew(tokens.renewals, self._endpoint, slot, interrupt)

    def still_rejected(
        self, response: httpx.Response, content: bytes, shown_url: str, attempt: int
    ) -> FetchError:
        """The error of a request the API refused (401) again, with a token obtained after
        its first 401."""
        return self._endpoint.still_rejected(response, content, shown_url, attempt)

    async def settle(self) -> None:
        """See `OAuth2Tokens.settle`."""
        await self._tokens.settle()


class SharedTokens:
    """The OAuth2 tokens of a run: one `OAuth2Tokens` per token, shared by the sources whose
    auth blocks ask for the same one (`OAuth2Auth.token_identity`)."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._tokens: dict[tuple[object, ...], OAuth2Tokens] = {}

    def tokens_for(self, auth: Auth | None) -> OAuth2Tokens | None:
        """The token of a source with `auth`; None if it is no OAuth2 auth."""
        if not isinstance(auth, OAuth2Auth):
            return None
        key = auth.token_identity()
        tokens = self._tokens.get(key)
        if tokens is None:
            tokens = self._tokens[key] = OAuth2Tokens(auth, self._redact)
        return tokens
