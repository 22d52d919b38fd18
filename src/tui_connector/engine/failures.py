"""How a source's failures become errors the operator reads: one event in the error ring, the
source's last error, and whether the whole source must stop."""

from __future__ import annotations

import logging
import time

from tui_connector.extract import ExtractError
from tui_connector.http.errors import FetchError
from tui_connector.http.oauth2 import TokenError
from tui_connector.incremental import IncrementalError
from tui_connector.paginate import PaginationError
from tui_connector.redact import Redactor
from tui_connector.sinks import LakeError
from tui_connector.telemetry import ErrorEvent, RunTelemetry, error_text

log = logging.getLogger(__name__)

# What fails one stream (and is reported as such); anything else is a bug.
STREAM_ERRORS = (FetchError, ExtractError, PaginationError, LakeError, IncrementalError)
# Failures no other partition of the source would escape: credentials refused.
_FATAL_STATUSES = frozenset({401, 403, 407})


class StreamFailed(Exception):
    def __init__(self, message: str, event: ErrorEvent, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.event = event
        self.fatal = fatal  # the whole source stops: no other partition would do better


def stops_the_source(exc: Exception) -> bool:
    """A lake that cannot be written, credentials refused, or no OAuth2 token to be had,
    fail every stream alike."""
    return isinstance(exc, LakeError | TokenError) or (
        isinstance(exc, FetchError) and exc.status in _FATAL_STATUSES
    )


class FailureReporter:
    """Records one source's failures in the run's telemetry."""

    def __init__(self, telemetry: RunTelemetry, source: str, redact: Redactor) -> None:
        self._telemetry = telemetry
        self._source = source
        self._redact = redact

    def report(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        excerpt: str = "",
        attempts: int = 0,
        text: str = "",
    ) -> ErrorEvent:
        """`message` heads the error pane's line; `text`, the error as it reads on its own,
        defaults to it and what the server said (`excerpt`)."""
        event = ErrorEvent(
            at=time.time(),
            source=self._source,
            status=status,
            error=message,
            url=url,
            body_excerpt=excerpt,
            attempt=attempts,
            next_step="source failed",
            text=text,
        )
        self._telemetry.error(event)
        self._telemetry.source(self._source).last_error = event.text
        return event

    def stream_failed(self, message: str, *, fatal: bool) -> StreamFailed:
        """A failure found before any request: reported, and raised by the caller."""
        return StreamFailed(message, self.report(message), fatal=fatal)

    def exception(self, exc: Exception) -> ErrorEvent:
        """A stream error, with what the request that failed said; its `text` is what the
        source's last error and the stream's checkpoint keep."""
        if isinstance(exc, FetchError):
            tries = f" after {exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"
            # The error pane's line, its excerpt in a column of its own: the hint right after
            # the status, as it always read there.
            hint = f"; {exc.hint}" if exc.hint else ""
            return self.report(
                f"{exc.message}{hint}{tries}",
                url=exc.url,
                status=exc.status,
                excerpt=exc.body_excerpt,
                attempts=exc.attempts,
                text=error_text(f"{exc.message}{tries}", exc.body_excerpt, exc.hint),
            )
        return self.report(self._redact(str(exc)), attempts=1)

    def internal_error(self, exc: Exception) -> str:
        """A bug: it fails one source, not the run, and its traceback goes to the log."""
        log.error("source %s: unexpected error", self._source, exc_info=exc)
        message = self._redact(
            f"internal error: {type(exc).__name__}: {exc} (traceback in tui-connector.log)"
        )
        self.report(message)
        return message
