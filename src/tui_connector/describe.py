"""A source's config described for people, secrets redacted: the one line `validate` prints
and the rows of the dashboard's detail screen, both from `describe_source`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tui_connector.config import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    DatePartitions,
    OAuth2Auth,
    Placement,
    SourceSpec,
    ValuePartitions,
)
from tui_connector.exchange import shorten
from tui_connector.facade import Setting, SourceDescription
from tui_connector.figures import PLACEHOLDER, one_line
from tui_connector.redact import REDACTED, looks_secret

MAX_VALUES_SHOWN = 5
MAX_BODY_SHOWN = 200


def describe_source(spec: SourceSpec, redact: Callable[[str], str]) -> SourceDescription:
    """Every string passes through `redact`; auth values never appear at all."""
    settings = tuple((label, redact(one_line(text))) for label, text in _settings(spec))
    return SourceDescription(
        name=spec.name,
        headline=headline(spec, redact),
        settings=settings,
        concurrency=spec.concurrency,
        partitioned=spec.partitions is not None,
        adaptive=spec.auto_concurrency is not None,
    )


def headline(spec: SourceSpec, redact: Callable[[str], str]) -> str:
    """The request, its pagination, concurrency and rate limit, partitions and incremental
    field, on one line."""
    auto = spec.auto_concurrency
    concurrency = f"auto ({auto.min}-{auto.max})" if auto else str(spec.concurrency)
    limit = f", {spec.rate_limit:g} req/s" if spec.rate_limit else ""
    extras = ""
    partitions = spec.partitions
    if partitions is not None:
        of = f" of {partitions.source}" if partitions.type == "parent" else ""
        extras += f" partitions={partitions.type}{of}"
    if spec.incremental is not None:
        extras += f" incremental={spec.incremental.cursor_field}"
    return (
        f"{spec.method} {redact(spec.url)}  "
        f"pagination={spec.pagination.type} concurrency={concurrency}{limit}{extras}"
    )


def _settings(spec: SourceSpec) -> Iterable[Setting]:
    retry = spec.retry
    timeout = spec.timeout
    yield "request", f"{spec.method} {spec.url}"
    yield "params", _pairs(spec.params, "=")
    yield "headers", _pairs(spec.headers, ": ")
    if spec.body is not None:
        yield "body", shorten(json.dumps(spec.body, separators=(",", ":")), MAX_BODY_SHOWN)
    yield "records", spec.records or "the body (a bare array)"
    yield "errors", spec.errors or PLACEHOLDER
    yield "pagination", _describe_model(spec.pagination)
    partitions = describe_partitions(spec)
    if partitions is not None:
        yield "partitions", partitions
    if spec.incremental is not None:
        incremental = spec.incremental
        where = f"param {incremental.param}" if incremental.param else incremental.body_field
        yield "incremental", f"newer than the last {incremental.cursor_field} → {where}"
    yield "auth", _describe_auth(spec)
    yield SourceDescription.CONCURRENCY_LABEL, _describe_concurrency(spec)
    yield "rate limit", f"{spec.rate_limit:g} req/s" if spec.rate_limit else "none"
    yield (
        "retry",
        f"{retry.max_attempts} attempts, backoff {retry.backoff_base:g}-{retry.backoff_max:g}"
        f" s, Retry-After up to {retry.max_wait:g} s"
        + (" (holds the source)" if retry.retry_after == "source" else "")
        + ", on "
        + " ".join(str(status) for status in retry.statuses),
    )
    yield (
        "timeouts",
        f"connect {timeout.connect:g} s, read {timeout.read:g} s, total {timeout.total:g} s",
    )
    yield "transport", spec.transport


def _flatten(prefix: str, value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, list | tuple):
        yield f"{prefix}={','.join(str(item) for item in value)}"
    else:
        yield f"{prefix}={value}"


def _describe_model(model: BaseModel) -> str:
    values = model.model_dump(exclude_none=True)
    kind = values.pop("type", None)
    described = " ".join(_flatten("", values))
    return f"{kind} {described}".strip() if kind else described


def _describe_auth(spec: SourceSpec) -> str:
    # Only where a credential goes, never any part of it (a username is a credential too).
    auth = spec.auth
    if auth is None:
        return "none"
    if isinstance(auth, BearerAuth):
        return "bearer token (hidden)"
    if isinstance(auth, BasicAuth):
        return "HTTP basic (username and password hidden)"
    if isinstance(auth, ApiKeyAuth):
        where = f"header {auth.header}" if auth.header else f"query parameter {auth.param}"
        return f"API key in {where} (hidden)"
    if isinstance(auth, OAuth2Auth):
        grant = auth.grant.replace("_", " ")
        return f"OAuth2 bearer token ({grant} grant) from {auth.token_url} (credentials hidden)"
    return type(auth).__name__


def _pairs(mapping: Mapping[str, Any], separator: str) -> str:
    if not mapping:
        return PLACEHOLDER
    return "  ".join(
        f"{name}{separator}{REDACTED if looks_secret(name) else value}"
        for name, value in mapping.items()
    )


def _describe_step(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _describe_instant(moment: datetime) -> str:
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _placement(placement: Placement) -> str:
    if placement.path:
        return f"url {{{placement.path}}}"
    if placement.param:
        return f"param {placement.param}"
    return f"body {placement.body_field}"


def describe_partitions(spec: SourceSpec) -> str | None:
    """The partition kind and its shape in one line, e.g. "values (3): a, b, c → url {ds}"."""
    partitions = spec.partitions
    if partitions is None:
        return None
    if isinstance(partitions, DatePartitions):
        end = _describe_instant(partitions.end) if partitions.end else "now"
        where = partitions.start_param or f"body {partitions.start_body_field}"
        if partitions.end_param or partitions.end_body_field:
            where += f", {partitions.end_param or 'body ' + str(partitions.end_body_field)}"
        return (
            f"dates {_describe_instant(partitions.start)} → {end} every "
            f"{_describe_step(partitions.step)} ({partitions.format}) → {where}"
        )
    if isinstance(partitions, ValuePartitions):
        values = [str(value) for value in partitions.values or ()]
        shown = ", ".join(values[:MAX_VALUES_SHOWN])
        if len(values) > MAX_VALUES_SHOWN:
            shown += f", … ({len(values) - MAX_VALUES_SHOWN} more)"
        origin = f" from {partitions.values_file}" if partitions.values_file else ""
        return f"values ({len(values)}{origin}): {shown} → {_placement(partitions)}"
    return (
        f"parent of {partitions.source}: one per record's {partitions.value} → "
        f"{_placement(partitions)}"
    )


def _describe_concurrency(spec: SourceSpec) -> str:
    auto = spec.auto_concurrency
    if auto is None:
        return f"{spec.concurrency}"
    return f"auto {auto.min}-{auto.max}, starting at {spec.concurrency}"
