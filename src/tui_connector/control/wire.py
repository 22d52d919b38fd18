"""The control protocol's messages: JSON objects, one per line, UTF-8, at most 1 MiB a line.

Version 1. The client speaks first:

    client  {"type": "hello", "protocol": 1, "token": "...", "interval": 0.1}
    server  {"type": "welcome", "protocol": 1, "version": "...", "pid": 123, "now": <monotonic>,
             "facts": {...}, "descriptions": {source: {...}}}
    server  {"type": "update", "now": ..., "run": {...}, "sources": {name: {field: value}},
             "streams": {name: {key: [...]}}, "lakes": {name: {...}},
             "in_flight": {"add": [[...]], "remove": [id, ...]}, "errors": [{...}]}
    client  {"type": "control", "id": 7, "action": "pause", "source": "orders"}
    server  {"type": "reply", "id": 7, "ok": true, "value": null}
    server  {"type": "finished", "result": {"done": [...], ...} | null}   (then closes)
    server  {"type": "error", "error": "..."}                              (then closes)

An update carries only what changed since the connection's last one: a source's changed
fields (its rate windows and its changed streams at most once a second), requests that started
or ended, new errors. It comes at most once per `interval` seconds (≥ 0.1), and not at all
when nothing changed. The first update carries everything. Times named in
`MONOTONIC_FIELDS` are the server's `time.monotonic()`; a client moves them onto its own
clock by the difference of the two `now`s. Everything a run sends is redacted before it is sent.

The server validates every client message (pydantic); anything else — not JSON, an unknown
type, a control before the hello, a line over the limit — closes that connection.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tui_connector.facade import RunFacts, RunResult, SourceDescription
from tui_connector.telemetry import (
    ConcurrencyMode,
    ErrorEvent,
    InFlightRequest,
    LakeInfo,
    RateWindow,
    RunTelemetry,
    SourceStats,
    SourceStatus,
    StreamStats,
    StreamStatus,
)

PROTOCOL = 1
MAX_MESSAGE_BYTES = 1 << 20
MIN_INTERVAL = 0.1  # seconds between two updates to one client, at least
STREAMS_INTERVAL = 1.0  # a source's streams are compared at most this often
# A source's rate windows (one-second buckets) are sent at most this often: they are most of
# a running source's bytes, and a rate read a second late reads the same.
RATES_INTERVAL = 1.0

# SourceStats fields holding a monotonic clock reading.
MONOTONIC_FIELDS = frozenset(
    {
        "concurrency_changed_at",
        "last_checkpoint_at",
        "backoff_until",
        "token_expires_at",
        "started_at",
        "finished_at",
    }
)
_RATE_FIELDS = frozenset({"records_rate", "requests_rate"})
_ENUM_FIELDS: dict[str, type[StrEnum]] = {
    "status": SourceStatus,
    "concurrency_mode": ConcurrencyMode,
}
_STATS_FIELDS = tuple(
    field.name for field in dataclasses.fields(SourceStats) if field.name not in ("name", "streams")
)
_PLAIN_FIELDS = tuple(name for name in _STATS_FIELDS if name not in _RATE_FIELDS)


class ProtocolError(ValueError):
    """A message that does not follow the protocol."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    except RecursionError:  # nesting deeper than the parser goes: "[" * 10_000 fits a line
        raise ProtocolError("not JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message is a JSON object")
    return message


# -- what a client may send ---------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Hello(_Message):
    type: Literal["hello"]
    protocol: int
    token: str | None = Field(default=None, max_length=200)
    interval: float = Field(default=MIN_INTERVAL, ge=MIN_INTERVAL, le=60.0)
    read_only: bool = False


SOURCE_ACTIONS = ("pause", "resume", "stop", "retry", "set_auto")
RUN_ACTIONS = ("pause_all", "resume_all", "request_stop")


class SourceControl(_Message):
    type: Literal["control"]
    id: int
    action: Literal["pause", "resume", "stop", "retry", "set_auto"]
    source: str = Field(max_length=1000)


class ConcurrencyControl(_Message):
    type: Literal["control"]
    id: int
    action: Literal["set_concurrency"]
    source: str = Field(max_length=1000)
    value: int = Field(ge=1, le=1_000_000)


class RateControl(_Message):
    type: Literal["control"]
    id: int
    action: Literal["set_rate_limit"]
    source: str = Field(max_length=1000)
    value: float | None = Field(ge=0, allow_inf_nan=False)


class RunControlMessage(_Message):
    type: Literal["control"]
    id: int
    action: Literal["pause_all", "resume_all", "request_stop"]


Control = Annotated[
    SourceControl | ConcurrencyControl | RateControl | RunControlMessage,
    Field(discriminator="action"),
]
_HELLO = TypeAdapter(Hello)
_CONTROL: TypeAdapter[Control] = TypeAdapter(Control)


def parse_hello(message: dict[str, Any]) -> Hello:
    try:
        return _HELLO.validate_python(message)
    except ValueError as exc:
        raise ProtocolError(f"not a hello: {exc}") from None


def parse_control(message: dict[str, Any]) -> Control:
    if message.get("type") != "control":
        raise ProtocolError("only controls follow the hello")
    try:
        return _CONTROL.validate_python(message)
    except ValueError as exc:
        raise ProtocolError(f"not a control: {exc}") from None


# -- the run's plain data, both ways ---------------------------------------------------------


def facts_data(facts: RunFacts) -> dict[str, Any]:
    return {
        "selected": list(facts.selected),
        "state_path": str(facts.state_path),
        "lake": facts.lake,
        "max_concurrency": facts.max_concurrency,
        "stop_grace": facts.stop_grace,
    }


def facts_from(data: dict[str, Any], *, read_only: bool) -> RunFacts:
    return RunFacts(
        selected=tuple(str(name) for name in data["selected"]),
        state_path=Path(data["state_path"]),
        lake=str(data["lake"]),
        max_concurrency=int(data["max_concurrency"]),
        stop_grace=float(data["stop_grace"]),
        attached=True,
        read_only=read_only,
    )


def description_data(description: SourceDescription) -> dict[str, Any]:
    return dataclasses.asdict(description)


def description_from(data: dict[str, Any]) -> SourceDescription:
    return SourceDescription(
        name=str(data["name"]),
        headline=str(data["headline"]),
        settings=tuple((str(label), str(text)) for label, text in data["settings"]),
        concurrency=int(data["concurrency"]),
        partitioned=bool(data["partitioned"]),
        adaptive=bool(data["adaptive"]),
    )


def lake_data(lake: LakeInfo) -> dict[str, Any]:
    return dataclasses.asdict(lake)


def lake_from(data: dict[str, Any]) -> LakeInfo:
    return LakeInfo(
        format=str(data["format"]),
        destination=str(data["destination"]),
        bytes_written=int(data["bytes_written"]),
        version=None if data["version"] is None else int(data["version"]),
        schema=None if data["schema"] is None else str(data["schema"]),
        json_columns=tuple(map(str, data["json_columns"])),
        notes=tuple(map(str, data["notes"])),
    )


def result_data(result: RunResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def result_from(data: dict[str, Any]) -> RunResult:
    return RunResult(
        done=list(map(str, data["done"])),
        failed=list(map(str, data["failed"])),
        stopped=list(map(str, data["stopped"])),
        interrupted=bool(data["interrupted"]),
    )


def _field_data(name: str, value: Any) -> Any:
    """A source's field as it is sent: plain JSON values, lists copied (the diff keeps what
    it sent to compare with later)."""
    if name in _RATE_FIELDS:
        return list(value.state())
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list):
        return list(value)
    return value


def _stream_data(stream: StreamStats) -> list[Any]:
    return [
        stream.status.value,
        stream.pages,
        stream.records,
        stream.position,
        stream.pages_total,
        stream.error,
    ]


def _in_flight_data(request: InFlightRequest) -> list[Any]:
    return [
        request.id,
        request.source,
        request.method,
        request.url,
        request.started_at,
        request.attempt,
        request.source_in_flight,
    ]


def _error_data(event: ErrorEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


class TelemetryDiff:
    """What changed in a run's telemetry since the last update sent to one client."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, dict[str, list[Any]]] = {}
        self._streams_at = float("-inf")
        self._rates_at = float("-inf")
        self._in_flight: set[int] = set()
        self._errors_seen = 0
        self._run: dict[str, Any] = {}

    def update(
        self,
        telemetry: RunTelemetry,
        run: dict[str, Any],
        lakes: dict[str, LakeInfo],
        now: float,
    ) -> dict[str, Any] | None:
        """The update to send, or None when nothing changed."""
        message: dict[str, Any] = {}
        run_changed = {key: value for key, value in run.items() if self._run.get(key) != value}
        if run_changed or not self._run:
            run_changed.setdefault("started_at", telemetry.started_at)
            run_changed["finished_at"] = telemetry.finished_at
            self._run.update(run)
            message["run"] = run_changed
        with_rates = now - self._rates_at >= RATES_INTERVAL
        if with_rates:
            self._rates_at = now
        sources = self._source_changes(telemetry.sources.values(), with_rates=with_rates)
        if sources:
            message["sources"] = sources
        if now - self._streams_at >= STREAMS_INTERVAL:
            self._streams_at = now
            streams = self._stream_changes(telemetry.sources.values())
            if streams:
                message["streams"] = streams
        if lakes:
            message["lakes"] = {name: lake_data(lake) for name, lake in lakes.items()}
        in_flight = self._in_flight_changes(telemetry)
        if in_flight:
            message["in_flight"] = in_flight
        new_errors = min(telemetry.errors_seen - self._errors_seen, len(telemetry.errors))
        self._errors_seen = telemetry.errors_seen
        if new_errors > 0:
            errors = list(telemetry.errors)[-new_errors:]
            message["errors"] = [_error_data(event) for event in errors]
        if not message:
            return None
        message["type"] = "update"
        message["now"] = now
        return message

    def _source_changes(
        self, sources: Iterable[SourceStats], *, with_rates: bool
    ) -> dict[str, dict[str, Any]]:
        changes: dict[str, dict[str, Any]] = {}
        fields = _STATS_FIELDS if with_rates else _PLAIN_FIELDS
        for stats in sources:
            sent = self._sources.setdefault(stats.name, {})
            changed: dict[str, Any] = {}
            for name in fields:
                value = _field_data(name, getattr(stats, name))  # plain, and a copy
                if sent.get(name, _UNSENT) != value:
                    sent[name] = changed[name] = value
            if changed:
                changes[stats.name] = changed
        return changes

    def _stream_changes(self, sources: Iterable[SourceStats]) -> dict[str, dict[str, list[Any]]]:
        changes: dict[str, dict[str, list[Any]]] = {}
        for stats in sources:
            sent = self._streams.setdefault(stats.name, {})
            changed = {}
            for key, stream in list(stats.streams.items()):
                data = _stream_data(stream)
                if sent.get(key) != data:
                    sent[key] = data
                    changed[key] = data
            if changed:
                changes[stats.name] = changed
        return changes

    def _in_flight_changes(self, telemetry: RunTelemetry) -> dict[str, list[Any]]:
        now_in_flight = telemetry.in_flight
        current = set(now_in_flight)
        added = current - self._in_flight
        removed = self._in_flight - current
        self._in_flight = current
        changes: dict[str, list[Any]] = {}
        if added:
            changes["add"] = [_in_flight_data(now_in_flight[i]) for i in sorted(added)]
        if removed:
            changes["remove"] = sorted(removed)
        return changes


_UNSENT = object()


class TelemetryMirror:
    """A run's telemetry rebuilt in this process from the updates of a `TelemetryDiff`; times
    moved onto this process's monotonic clock by `offset` seconds."""

    def __init__(self, offset: float) -> None:
        self.telemetry = RunTelemetry()
        self.offset = offset
        self.run: dict[str, Any] = {}
        self.lakes: dict[str, LakeInfo] = {}

    def _time(self, value: Any) -> float | None:
        return None if value is None else float(value) + self.offset

    def apply(self, message: dict[str, Any]) -> None:
        """Apply an update; raises ProtocolError on one that does not fit."""
        try:
            self._apply(message)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(f"an update that does not fit: {exc!r}") from None

    def _apply(self, message: dict[str, Any]) -> None:
        telemetry = self.telemetry
        run = message.get("run")
        if run:
            self.run.update(run)
            if "started_at" in run:
                telemetry.started_at = float(run["started_at"]) + self.offset
            telemetry.finished_at = self._time(run.get("finished_at"))
        for name, changed in message.get("sources", {}).items():
            stats = telemetry.source(str(name))
            for field, value in changed.items():
                setattr(stats, field, self._field(field, value))
        for name, streams in message.get("streams", {}).items():
            stats = telemetry.source(str(name))
            for key, data in streams.items():
                status, pages, records, position, pages_total, error = data
                stats.streams[key] = StreamStats(
                    str(key),
                    StreamStatus(status),
                    int(pages),
                    int(records),
                    str(position),
                    None if pages_total is None else int(pages_total),
                    None if error is None else str(error),
                )
        for name, lake in message.get("lakes", {}).items():
            self.lakes[str(name)] = lake_from(lake)
        in_flight = message.get("in_flight", {})
        for request_id in in_flight.get("remove", ()):
            telemetry.in_flight.pop(int(request_id), None)
        for data in in_flight.get("add", ()):
            request_id, source, method, url, started_at, attempt, source_in_flight = data
            telemetry.in_flight[int(request_id)] = InFlightRequest(
                int(request_id),
                str(source),
                str(method),
                str(url),
                float(started_at) + self.offset,
                int(attempt),
                int(source_in_flight),
            )
        for data in message.get("errors", ()):
            # Into the ring only: the sources' error counts and last errors came as fields.
            telemetry.errors.append(ErrorEvent(**data))
            telemetry.errors_seen += 1

    def _field(self, name: str, value: Any) -> Any:
        if name not in _STATS_FIELDS:
            raise ValueError(f"no source field {name!r}")
        if name in _RATE_FIELDS:
            buckets, stamps, started = value
            shift = round(self.offset)
            return RateWindow.restored(
                buckets, [stamp + shift for stamp in stamps], started + self.offset
            )
        if name in _ENUM_FIELDS:
            return _ENUM_FIELDS[name](value)
        if name in MONOTONIC_FIELDS:
            return self._time(value)
        if name == "warnings":
            return [str(text) for text in value]
        return value
