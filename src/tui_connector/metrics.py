"""Prometheus metrics of a run at `http://HOST:PORT/metrics` (`run --metrics`, `metrics:`).

`MetricsServer` is a `services.RunService`: an aiohttp server on the run's own event loop.
Every figure is worked out at scrape time, by `RunCollector`, from what any front end sees —
the facade's telemetry snapshot and each source's lake — and read on the loop, between two
steps of the run (a thread reading the telemetry would race it): the cost is proportional to
the number of sources, per scrape; nothing is done per request. Only the text, written from
figures that are plain numbers by then, is encoded on a thread.

Only numbers, the config's source names and fixed words (a status, a mode, a status class)
are exported: no error text, URL or position, so nothing here can carry a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from tui_connector import __version__
from tui_connector.facade import LakeWatch, RunError, RunFacade, RunResult, RunView
from tui_connector.figures import backoff_seconds
from tui_connector.telemetry import ConcurrencyMode, LakeInfo, SourceStats, SourceStatus

PATH = "/metrics"
PREFIX = "tui_connector_"
SOURCE = "source"

# A figure of one source, or None when it has none (no such sample is exported then).
Figure = Callable[[SourceStats, LakeInfo, float], float | None]


@dataclass(frozen=True)
class PerSource:
    """One metric family with a sample per source, labelled `source`."""

    name: str  # after the prefix; a counter's without `_total`
    help: str
    figure: Figure
    counter: bool = False


def _stat(name: str) -> Figure:
    """The figure a `SourceStats` field holds."""
    return lambda stats, _lake, _now: getattr(stats, name)


def _checkpoint_age(stats: SourceStats, _lake: LakeInfo, now: float) -> float | None:
    committed = stats.last_checkpoint_at
    return None if committed is None else max(0.0, now - committed)


PER_SOURCE = (
    PerSource("records", "Records fetched by this run.", _stat("records_this_run"), counter=True),
    PerSource("pages", "Pages fetched by this run.", _stat("pages_this_run"), counter=True),
    PerSource(
        "fetched_bytes", "Response body bytes fetched by this run.", _stat("bytes"), counter=True
    ),
    PerSource(
        "written_bytes",
        "Bytes this run wrote to the lake (files, or a table's data files).",
        lambda _stats, lake, _now: lake.bytes_written,
        counter=True,
    ),
    PerSource(
        "retries", "Attempts sent that retried a failed one.", _stat("retries"), counter=True
    ),
    PerSource(
        "errors",
        "Errors: failed attempts that were retried, and failures that ended a stream.",
        _stat("errors"),
        counter=True,
    ),
    PerSource(
        "source_records",
        "Records of the source so far, those of the earlier runs this one resumed included.",
        _stat("records"),
    ),
    PerSource(
        "expected_records",
        "Records the API says the source holds (absent while it has not said).",
        _stat("total_records"),
    ),
    PerSource("requests_in_flight", "Requests of the source in flight now.", _stat("in_flight")),
    PerSource(
        "concurrency_limit",
        "The most requests the source may have in flight now.",
        _stat("concurrency"),
    ),
    PerSource(
        "rate_limit_requests_per_second",
        "The most requests a second the source may send (absent: no limit).",
        _stat("rate_limit"),
    ),
    PerSource(
        "backoff_remaining_seconds",
        "Seconds until the source may send again after a failure or a Retry-After (0: not "
        "waiting).",
        lambda stats, _lake, now: backoff_seconds(stats, now) or 0.0,
    ),
    PerSource(
        "checkpoint_age_seconds",
        "Seconds since the source's checkpoints last committed (absent before the first).",
        _checkpoint_age,
    ),
    PerSource(
        "table_version",
        "The version of the source's Delta table (absent for files).",
        lambda _stats, lake, _now: lake.version,
    ),
)

# The status classes of `SourceStats.answers_by_class`, by index.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def request_outcomes(stats: SourceStats) -> dict[str, int]:
    """The source's attempts that ended, by outcome: `ok` (answered with a status below 400),
    `retried` (failed, and another attempt followed) and `failed` (the rest: failed for good).

    Each is known when the attempt ends: its retry is scheduled before the event loop moves
    on, so no scrape sees a retried attempt as failed. One overlap: an answer below 400 whose
    body proves unusable (cut short, not JSON) and is retried counts as ok and as retried;
    `max` keeps `failed` from going below zero then."""
    answers = stats.answers_by_class
    ok = answers[1] + answers[2] + answers[3]
    ended = stats.requests - stats.in_flight
    failed = max(0, ended - ok - stats.retried_attempts)
    return {"ok": ok, "retried": stats.retried_attempts, "failed": failed}


class RunCollector:
    """Every metric of a run, computed from its facade when collected."""

    def __init__(self, run: RunView) -> None:
        self._run = run
        self._lakes = LakeWatch(run)  # a source's lake is read again only once it moved

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        telemetry = self._run.snapshot()
        sources = list(telemetry.sources.values())
        lakes = {stats.name: self._lakes.of(stats.name, stats) for stats in sources}

        build = InfoMetricFamily(PREFIX + "build", "The tui-connector serving these metrics.")
        build.add_metric([], {"version": __version__})
        yield build
        yield GaugeMetricFamily(
            PREFIX + "uptime_seconds",
            "Seconds since the run began.",
            value=max(0.0, now - telemetry.started_at),
        )

        for metric in PER_SOURCE:
            family = (CounterMetricFamily if metric.counter else GaugeMetricFamily)(
                PREFIX + metric.name, metric.help, labels=[SOURCE]
            )
            for stats in sources:
                value = metric.figure(stats, lakes[stats.name], now)
                if value is not None:
                    family.add_metric([stats.name], value)
            yield family

        requests = CounterMetricFamily(
            PREFIX + "requests",
            "Attempts that ended, OAuth2 token requests included, by outcome: ok (answered "
            "with a status below 400), retried (failed, and another attempt followed), failed "
            "(failed for good). An answer below 400 with an unusable body that is retried "
            "counts as ok and as retried.",
            labels=[SOURCE, "outcome"],
        )
        responses = CounterMetricFamily(
            PREFIX + "responses",
            "Attempts answered, by status class (an attempt without an answer, such as a "
            "timeout or a refused connection, is in none).",
            labels=[SOURCE, "status_class"],
        )
        for stats in sources:
            for outcome, count in request_outcomes(stats).items():
                requests.add_metric([stats.name, outcome], count)
            for status_class, count in zip(STATUS_CLASSES, stats.answers_by_class[1:], strict=True):
                responses.add_metric([stats.name, status_class], count)
        yield requests
        yield responses

        yield _state_set(
            "source_status",
            "The source's status: 1 for the one it is in, 0 for the others.",
            "status",
            [(stats.name, stats.status) for stats in sources],
            tuple(SourceStatus),
        )
        yield _state_set(
            "concurrency_mode",
            "How the source's concurrency limit is set: fixed (as configured), auto "
            "(adaptive) or manual (adaptive, set by the operator); 1 for the one in use.",
            "mode",
            [(stats.name, stats.concurrency_mode) for stats in sources],
            tuple(ConcurrencyMode),
        )


def _state_set(
    name: str, help: str, label: str, current: list[tuple[str, str]], states: tuple[str, ...]
) -> GaugeMetricFamily:
    """One sample per source and state: 1 for the state each source is in, 0 for the others
    (so that `== 1` selects the sources in a state, and a change is a flip of two series).
    A state's words are joined by underscores ("backing_off"), as label values usually are."""
    family = GaugeMetricFamily(PREFIX + name, help, labels=[SOURCE, label])
    for source, state in current:
        for each in states:
            family.add_metric([source, each.replace(" ", "_")], 1.0 if each == state else 0.0)
    return family


class Collected:
    """Metric families already collected, and a collector safe on any thread: what an
    encoder writes out on a thread of its own."""

    def __init__(self, families: list[Metric], threadsafe: ProcessCollector) -> None:
        self._families = families
        self._threadsafe = threadsafe

    def collect(self) -> Iterable[Metric]:
        yield from self._families
        yield from self._threadsafe.collect()


class MetricsServer:
    """A run's metrics over HTTP at `http://host:port/metrics` (Prometheus's text format, or
    OpenMetrics when the scraper asks for it), served on the run's event loop while the run
    lasts. Port 0 takes a free port: `port` says which once started."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    async def start(self, run: RunFacade) -> None:
        collector = RunCollector(run)
        process = ProcessCollector(registry=None)  # CPU seconds, memory, open files

        async def scrape(request: web.Request) -> web.Response:
            encode, content_type = choose_encoder(request.headers.get("Accept", ""))
            # Read on the loop, between two steps of the run; the text (most of a scrape's
            # cost: ~10 us a sample, 30 ms for 100 sources) is written on a thread from
            # figures that are plain numbers by then, so the run's loop does not stall.
            collected = Collected(list(collector.collect()), process)
            body = await asyncio.to_thread(encode, collected)
            return web.Response(body=body, headers={"Content-Type": content_type})

        app = web.Application()
        app.router.add_get(PATH, scrape)
        # A scrape under way when the run closes gets a moment to finish, not aiohttp's minute.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise RunError(
                f"metrics: cannot listen on {self.host}:{self.port}: {_why(exc)}"
            ) from None
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self, result: RunResult | None) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()


def _why(exc: OSError) -> str:
    """Why an address cannot be listened on, as the operator can act on it."""
    if isinstance(exc, socket.gaierror):
        return "no such host (give an address of this machine, e.g. 127.0.0.1)"
    reasons = {
        errno.EADDRINUSE: "the port is in use (another process listens there); choose another",
        errno.EADDRNOTAVAIL: "no interface of this machine has that address",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))
