"""`FetchError`: a request that failed, saying what happened, with every secret redacted; and
`TokenError`, an OAuth2 access token that could not be had."""

from __future__ import annotations

from tui_connector.redact import Redactor

_EXCERPT = 300  # characters of an error body kept for the error's message
_REDACTED_WINDOW = 64 * 1024  # of an error body, searched for secrets before the excerpt is cut


class FetchError(Exception):
    """A request that failed; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        body_excerpt: str = "",
        retryable: bool = True,
        retry_after: float | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.body_excerpt = body_excerpt
        # What the operator can do about it: shown after what the server said.
        self.hint = hint
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        return self.message


class TokenError(FetchError):
    """No access token could be had: refused by the provider, or not reached within the
    retry policy. No stream of the sources using it can do better, so they stop."""


def fetch_error(
    redact: Redactor,
    message: str,
    shown_url: str,
    attempt: int,
    *,
    status: int | None = None,
    content: bytes = b"",
    retryable: bool = True,
    retry_after: float | None = None,
    hint: str = "",
) -> FetchError:
    """The error of attempt `attempt` at `shown_url` (already redacted), its message, its
    `hint` and an excerpt of the body `content` redacted."""
    # Redacted before it is cut: cut first, a secret at the cut would show its first half.
    excerpt = redact(content[:_REDACTED_WINDOW].decode("utf-8", "replace"))[:_EXCERPT]
    error = FetchError(
        redact(message),
        url=shown_url,
        status=status,
        body_excerpt=excerpt,
        retryable=retryable,
        retry_after=retry_after,
        hint=redact(hint),
    )
    error.attempts = attempt
    return error
