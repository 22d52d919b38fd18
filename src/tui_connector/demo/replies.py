"""What a dataset route's handler answers (:class:`Reply`, perhaps a :class:`StreamedBody`), and
how it refuses a request it cannot serve (:class:`BadRequest`, a 400 with a JSON error).

A handler is a plain function of the request, the knobs in force and the request's body
(:data:`Handler`); the request pipeline (``pipeline``) does everything around it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tui_connector.demo.knobs import DemoKnobs

JSON_TYPE = "application/json"


#: Where a reply's records go in its payload: they are serialised apart (``data.records_json``,
#: about 3x cheaper than ``json.dumps`` of dicts) and spliced in.
RECORDS = "\x00records\x00"
_RECORDS_JSON = json.dumps(RECORDS)


#: A reply's status meaning "never answer": hold the connection open until the client goes.
NO_ANSWER = 0
#: The faults that cut a reply's body in half: they need a body of known size.
CUTS = ("truncate", "drop-mid-body")


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """A reply body written chunk by chunk as the client reads it, never whole in memory."""

    chunks: Generator[bytes, None, None]
    #: The body's length in bytes; None if it never ends.
    size: int | None
    #: Send ``Content-Length`` (``size``); otherwise the body is chunked.
    declare_size: bool = False
    #: Seconds to wait after each chunk (0: as fast as the client reads).
    every_s: float = 0.0


class Reply:
    """What a dataset handler answers: ``payload`` as JSON (``records`` spliced in), or bytes
    sent as they are; or a ``stream``; or, with status ``NO_ANSWER``, nothing at all."""

    __slots__ = ("content_type", "headers", "payload", "records", "status", "stream")

    def __init__(
        self,
        payload: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = JSON_TYPE,
        records: str | None = None,
        stream: StreamedBody | None = None,
    ) -> None:
        self.payload = payload
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.records = records
        self.stream = stream

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        text = json.dumps(self.payload, separators=(",", ":"))
        if self.records is not None:
            text = text.replace(_RECORDS_JSON, self.records, 1)
        return text.encode()

    def takes(self, fault: str) -> bool:
        """Whether ``fault``, one that alters a reply rather than replacing it, applies here."""
        if self.status == NO_ANSWER:
            return fault == "slow"
        if fault in CUTS:
            return self.stream is None or self.stream.size is not None
        return True


class BadRequest(Exception):
    """A request a handler cannot serve: answered 400 ``{"error": <the message>}``."""


def json_bytes(payload: Any) -> bytes:
    """``payload`` as compact JSON."""
    return json.dumps(payload, separators=(",", ":")).encode()


#: A dataset route's handler: (request, knobs in force, request body) -> what to answer.
Handler = Callable[[web.Request, DemoKnobs, bytes], Reply]
