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
# destroy every message while protecting nothing a real token looks like. Nor is less of one
# where a text was cut.
_MIN_SECRET_LENGTH = 4
_CUT = "…"  # how a shortened text shows where it was cut


def looks_secret(name: str) -> bool:
    """Whether a header, parameter or environment variable name suggests a secret value."""
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces every known secret value (and its URL-encoded forms) in text, and the first
    part of one where a text was cut short.

    Secrets join while a run goes on (each OAuth2 token as it arrives), so the cost of a call
    must not grow with their number: whole values are one alternation of literals, and a cut
    is looked for only where a text may have been cut (its end, and each "…"), among the
    values that begin there."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._whole: re.Pattern[str] | None = None
        self._by_head: dict[str, list[str]] = {}  # each value, by its first characters
        self._heads: re.Pattern[str] | None = None  # where a value may begin
        self._longest = 0
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        from urllib.parse import quote, quote_plus

        forms = {
            form
            for secret in secrets
            if len(secret) >= _MIN_SECRET_LENGTH
            for form in (secret, quote(secret, safe=""), quote_plus(secret))
        }
        new = forms - self._secrets
        if not new:
            return
        self._secrets |= new
        for form in new:
            self._by_head.setdefault(form[:_MIN_SECRET_LENGTH], []).append(form)
        self._longest = max(self._longest, *map(len, new))
        # Longest first, so a secret that contains another is replaced whole.
        alternatives = sorted(self._secrets, key=len, reverse=True)
        self._whole = re.compile("|".join(map(re.escape, alternatives)))
        self._heads = re.compile("|".join(map(re.escape, self._by_head)))

    def __call__(self, text: str) -> str:
        if self._whole is None or not text:
            return text
        text = self._whole.sub(REDACTED, text)
        # A text cut short ("…" or its end) may end in the first part of a secret: that part
        # goes too. Messages cut a response's values before they are redacted. From the
        # right, so that the places left of a replacement stay where they were.
        end = len(text)
        while end >= _MIN_SECRET_LENGTH:
            start = self._cut_secret_start(text, end)
            if start is not None:
                text = text[:start] + REDACTED + text[end:]
                end = start
            end = text.rfind(_CUT, 0, end)
        return text

    def _cut_secret_start(self, text: str, end: int) -> int | None:
        """Where the longest part of `text` ending at `end` that begins a secret (but is not
        all of it) starts, if it is at least `_MIN_SECRET_LENGTH` long."""
        heads = self._heads
        assert heads is not None
        found = heads.search(text, max(0, end - self._longest), end)
        while found is not None:
            start = found.start()
            part = text[start:end]
            if any(
                len(form) > len(part) and form.startswith(part)
                for form in self._by_head[found.group()]
            ):
                return start
            found = heads.search(text, start + 1, end)  # heads may overlap
        return None

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
