"""Redaction of secrets by value: wherever a URL, header, error or log line could show a
token, the token's value is replaced, whatever header or parameter carried it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "***"

# Broad on purpose: redacting a harmless value costs a little clarity, a leaked key costs more.
_SECRET_NAME = re.compile(
    r"(token|secret|pass|pwd|key|auth|credential|session|signature|private|access|pat$|sig$)",
    re.IGNORECASE,
)

# Secrets shorter than this are not redacted by value: replacing "a" everywhere would
# destroy every message while protecting nothing a real token looks like.
_MIN_SECRET_LENGTH = 4


def looks_secret(name: str) -> bool:
    """Whether a header, parameter or environment variable name suggests a secret value."""
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces every known secret value (and its URL-encoded forms) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        from urllib.parse import quote, quote_plus

        for secret in secrets:
            if len(secret) >= _MIN_SECRET_LENGTH:
                self._secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})
        if self._secrets:
            # Longest first, so a secret that contains another is replaced whole.
            alternatives = sorted(self._secrets, key=len, reverse=True)
            # A text cut short ("…" or its end) may end in the first part of a secret: that
            # part goes too. Messages cut a response's values before they are redacted.
            prefixes = sorted(
                {s[:n] for s in self._secrets for n in range(_MIN_SECRET_LENGTH, len(s))},
                key=len,
                reverse=True,
            )
            whole = "|".join(re.escape(s) for s in alternatives)
            cut = "|".join(re.escape(p) for p in prefixes)
            self._pattern = re.compile(f"{whole}|(?:{cut})(?=…|\\Z)" if cut else whole)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return bool(self._secrets)


class RedactingFormatter(logging.Formatter):
    """Formats log records, then redacts them whole: messages, arguments and tracebacks of
    every library (httpx logs each request's URL, query string included, at INFO)."""

    def __init__(self, redact: Redactor, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
