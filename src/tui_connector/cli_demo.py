"""The demo commands: `serve-demo` (the built-in demo API) and `demo` (it, with a run of a
config against it)."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tui_connector.cli_shared import (
    DEFAULT_CONFIG,
    FiniteFloatRange,
    control_services,
    fail,
    load,
    log_level_option,
    log_to_file,
    make_engine,
    metrics_services,
    run_dashboard,
    run_headless,
    use_dashboard,
)
from tui_connector.facade import ExitCode

if TYPE_CHECKING:
    from tui_connector.config import LoadedConfig

DEMO_PORT = 8765  # preferred, so that checkpointed next-links stay valid across demo runs
DEMO_URL_VARIABLE = "DEMO_URL"
# The last day of the example's date-window backfill (`activity` in sources.yaml), which
# ends after its first day unless this says otherwise.
BACKFILL_END_VARIABLE = "DEMO_BACKFILL_END"
DEMO_FIRST_DAY = datetime.date(2024, 1, 1)  # the demo data's first record; one a minute after


@dataclass(frozen=True)
class DemoPace:
    """How long the demo lasts: each request's latency, each dataset's records, and how many
    days the date-window backfill covers (a day's windows are four 6-hour partitions)."""

    latency_ms: float
    records: int
    backfill_days: int

    @classmethod
    def of(cls, *, quick: bool, latency_ms: float | None, records: int | None) -> DemoPace:
        """The default demo lasts a few minutes: long enough to pause a source, watch a
        backfill's partitions and retry a failure; `quick` is over in about 20 seconds.
        Values given explicitly win."""
        pace = QUICK_DEMO if quick else DEFAULT_DEMO
        records = pace.records if records is None else records
        # The default backfill covers every record's day; the quick one only the first.
        days = pace.backfill_days or max(1, math.ceil(records / MINUTES_A_DAY))
        return cls(pace.latency_ms if latency_ms is None else latency_ms, records, days)

    @property
    def backfill_end(self) -> datetime.date:
        return DEMO_FIRST_DAY + datetime.timedelta(days=self.backfill_days)

    def describe(self) -> str:
        return (
            f"{self.latency_ms:g} ms a request, {self.records:,} records a dataset, "
            f"a {self.backfill_days}-day backfill"
        )


MINUTES_A_DAY = 1440
DEFAULT_DEMO = DemoPace(latency_ms=250, records=50_000, backfill_days=0)  # 0: as records reach
QUICK_DEMO = DemoPace(latency_ms=30, records=20_000, backfill_days=1)


def _demo_knob_options(func: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option(
            "--records",
            type=click.IntRange(min=0),
            default=1000,
            show_default=True,
            help="Records per dataset.",
        ),
        click.option("--page-size", type=click.IntRange(1, 1000), default=50, show_default=True),
        click.option(
            "--latency-ms",
            type=FiniteFloatRange(min=0),
            default=0,
            show_default=True,
            help="Added to every request.",
        ),
        click.option(
            "--fault-rate",
            type=FiniteFloatRange(0, 1),
            default=0,
            show_default=True,
            help="Share of requests answered with a fault (429, 5xx, drops, ...).",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Makes the faults reproducible."
        ),
        click.option("--token", default=None, help="Token required under /secure/."),
        click.option(
            "--capacity",
            type=click.IntRange(min=1),
            default=None,
            help="Serve at most N requests at once; a few more wait, the rest get 429.",
        ),
        click.option(
            "--oauth-token-ttl-s",
            type=FiniteFloatRange(min=0, min_open=True),
            default=300.0,
            show_default=True,
            help="Lifetime of the access tokens of /oauth/token (the /oauth routes need one).",
        ),
        click.option(
            "--retry-after-s",
            type=FiniteFloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Retry-After sent with 429 and 503.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("serve-demo")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 picks a free port.",
)
@_demo_knob_options
def serve_demo(port: int, **knobs: object) -> None:
    """Serve the built-in demo API on 127.0.0.1 (every pagination style, with fault knobs)."""
    from tui_connector.demo.knobs import DemoKnobs
    from tui_connector.demo.server import serve_forever

    try:
        serve_forever(DemoKnobs(**knobs), port=port)  # type: ignore[arg-type]
    except OSError as exc:
        fail(f"cannot serve on port {port}: {exc.strerror or exc}")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def demo_server(args: list[str]) -> Iterator[str]:
    """Start `serve-demo` as a child process; yield its base URL; stop it on exit."""
    import subprocess

    port = DEMO_PORT if _port_free(DEMO_PORT) else 0
    child = subprocess.Popen(
        [sys.executable, "-m", "tui_connector", "serve-demo", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line.startswith("listening on "):
            fail(f"the demo server did not start (it said {line!r})", ExitCode.FAILED)
        yield line.removeprefix("listening on ")
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()


@click.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
@click.option("--headless", is_flag=True, help="No dashboard: print progress lines instead.")
@click.option(
    "--quick",
    is_flag=True,
    help=f"A demo of about 20 seconds ({QUICK_DEMO.describe()}) instead of a few minutes "
    f"({DEFAULT_DEMO.latency_ms:g} ms, {DEFAULT_DEMO.records:,} records, a backfill of every "
    "record's day).",
)
@click.option(
    "--latency-ms",
    type=FiniteFloatRange(min=0),
    default=None,
    help=f"Demo server latency per request [default: {DEFAULT_DEMO.latency_ms:g}; "
    f"--quick: {QUICK_DEMO.latency_ms:g}].",
)
@click.option(
    "--fault-rate",
    type=FiniteFloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Demo server fault rate.",
)
@click.option(
    "--records",
    type=click.IntRange(min=0),
    default=None,
    help=f"Records per demo dataset [default: {DEFAULT_DEMO.records}; "
    f"--quick: {QUICK_DEMO.records}].",
)
@click.option(
    "--oauth-token-ttl-s",
    type=FiniteFloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Lifetime of the demo's OAuth2 access tokens: short, to watch them renewed.",
)
@log_level_option
def demo(
    config: str,
    headless: bool,
    quick: bool,
    latency_ms: float | None,
    fault_rate: float,
    records: int | None,
    oauth_token_ttl_s: float,
    log_level: str,
) -> None:
    """Start the demo API and run CONFIG (default ./sources.yaml) against it.

    Unfinished streams resume; when everything was already done, it starts over.
    """
    import asyncio

    if not Path(config).exists():
        fail(f"{config} not found; run this from the tui-connector checkout, or pass a config")
    pace = DemoPace.of(quick=quick, latency_ms=latency_ms, records=records)
    knobs = [
        "--records",
        str(pace.records),
        "--latency-ms",
        str(pace.latency_ms),
        "--fault-rate",
        str(fault_rate),
        "--token",
        os.environ.get("DEMO_TOKEN", "demo-token"),
        "--oauth-token-ttl-s",
        str(oauth_token_ttl_s),
    ]
    with demo_server(knobs) as url:
        os.environ[DEMO_URL_VARIABLE] = url
        os.environ.setdefault("DEMO_TOKEN", "demo-token")
        os.environ.setdefault(BACKFILL_END_VARIABLE, pace.backfill_end.isoformat())
        loaded = load(config)
        click.echo(
            f"demo API at {url} ({pace.describe()}); lake: {loaded.out}; state: {loaded.state}",
            err=True,
        )
        full_refresh = asyncio.run(_everything_done(loaded))
        if full_refresh:
            click.echo("every stream was already complete: starting over", err=True)
        log_to_file(loaded, None, log_level)
        engine = make_engine(loaded, None, None, [], full_refresh)
        # `tui-connector attach` reaches the demo's run from another terminal; `d` does not
        # hand it to the background: the demo API ends with this process.
        services = [*control_services(False, None, False), *metrics_services(loaded, None)]
        if use_dashboard(headless):
            code = run_dashboard(
                engine,
                exit_when_done=False,
                services=services,
                cannot_detach_why="the demo API ends with this demo (a `tui-connector run` "
                "of your own sources can go on in the background)",
            )
        else:
            code = run_headless(engine, progress="text", interval=2.0, services=services)
    sys.exit(code)


async def _everything_done(loaded: LoadedConfig) -> bool:
    from tui_connector.state import StateError
    from tui_connector.state.sqlite import StateStore

    if not loaded.state.exists():
        return False
    store = StateStore(loaded.state)
    try:
        await store.open()
        rows = await store.streams()
    except StateError:
        return False
    finally:
        await store.close()
    done = {row.source for row in rows if row.status == "done"}
    return bool(rows) and done >= set(loaded.sources)
