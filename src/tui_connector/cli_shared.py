"""What the `tui-connector` commands share: loading a config or failing with exit 2, option
types, the engine for a run, and the front end that shows it."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tui_connector.facade import ExitCode, RunFacade

if TYPE_CHECKING:
    from tui_connector.config import LoadedConfig
    from tui_connector.engine import Engine
    from tui_connector.services import RunService

DEFAULT_CONFIG = "sources.yaml"


def fail(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    click.echo(f"tui-connector: {message}", err=True)
    sys.exit(code)


def load(path: str) -> LoadedConfig:
    from tui_connector.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(ExitCode.USAGE)


def split_names(values: tuple[str, ...]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses nan and inf, which pass its bounds (nan compares false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class LakeLocation(click.ParamType):
    """A lake directory (it must not be a file) or an object-store URL (a known scheme)."""

    name = "lake"
    _directory = click.Path(file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from tui_connector.config.lake import check_location, url_scheme

        if url_scheme(str(value)) is None:
            return self._directory.convert(value, param, ctx)
        try:
            return check_location(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def out_option(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option("--out", type=LakeLocation(), metavar="DIR|URL", help=help)


class ListenAddress(click.ParamType):
    """HOST:PORT, read as (host, port)."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from tui_connector.config.fields import listen_address

        if isinstance(value, tuple):
            return value
        try:
            return listen_address(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def metrics_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--metrics",
        type=ListenAddress(),
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts "
        "(default: the config's 'metrics'). Any host may be given, so that a scraper on another "
        "machine can reach it (0.0.0.0 is every interface): the figures carry no secret, but "
        "source names and progress can be read by whoever reaches the port.",
    )(command)


def control_services(no_control: bool, control: str | None, public: bool) -> list[RunService]:
    """The run's control endpoint: its socket unless `no_control`, and TCP at `control`."""
    from tui_connector.control import AddressError, ControlAddress, ControlServer

    if no_control and control is None:
        return []
    try:
        tcp = ControlAddress.parse(control) if control else None
        return [ControlServer(unix=not no_control, tcp=tcp, public=public)]
    except AddressError as exc:
        fail(str(exc))


def metrics_services(loaded: LoadedConfig, address: tuple[str, int] | None) -> list[RunService]:
    """The metrics server of a run: at `address` (the command line's), else at the config's
    `metrics:`; none when neither gives one."""
    if address is None and loaded.model.metrics is not None:
        from tui_connector.config.fields import listen_address

        address = listen_address(loaded.model.metrics)
    if address is None:
        return []
    from tui_connector.metrics import MetricsServer

    return [MetricsServer(*address)]


LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="warning",
        show_default=True,
        help="What goes to tui-connector.log beside the state database (secrets redacted): "
        "unexpected errors; with info, every request too; with debug, everything.",
    )(command)


def make_engine(
    loaded: LoadedConfig,
    state_path: Path | None,
    out: str | None,
    only: list[str],
    full_refresh: bool,
) -> Engine:
    from tui_connector.engine import Engine
    from tui_connector.sinks import LakeError

    try:
        return Engine(loaded, state_path=state_path, out=out, only=only, full_refresh=full_refresh)
    except (ValueError, LakeError) as exc:
        fail(str(exc))


def use_dashboard(headless: bool) -> bool:
    if headless:
        return False
    if sys.stdin.isatty() and sys.stdout.isatty():
        return True
    click.echo("no terminal: running headless (pass --headless to say so)", err=True)
    return False


def served(engine: Engine, services: Sequence[RunService]) -> RunFacade:
    """The run of `engine` in this process, with what it serves to other processes."""
    from tui_connector.in_process import InProcessRun
    from tui_connector.services import ServedRun

    run = InProcessRun(engine)
    return ServedRun(run, services) if services else run


def run_dashboard(
    engine: Engine,
    *,
    exit_when_done: bool,
    services: Sequence[RunService] = (),
    detach: Callable[[], int] | None = None,
    cannot_detach_why: str | None = None,
) -> int:
    """The dashboard of a run in this process; `detach` (given only when the run serves a
    control endpoint to attach to) goes on with the run in the background after `d`; else
    `cannot_detach_why` says why `d` cannot."""
    from tui_connector.tui.app import run_dashboard

    return run_dashboard(
        served(engine, services),
        exit_when_done=exit_when_done,
        detach=detach,
        cannot_detach_why=cannot_detach_why,
    )


def run_headless(
    engine: Engine, *, progress: str, interval: float, services: Sequence[RunService] = ()
) -> int:
    from tui_connector.headless import run_headless

    return run_headless(served(engine, services), progress=progress, interval=interval)


def log_to_file(loaded: LoadedConfig, state_path: Path | None, level: str) -> Path:
    """Tracebacks of unexpected errors go to a log beside the state, never to the terminal
    (the user sees one line naming the error; the dashboard's screen stays intact)."""
    import logging

    from tui_connector.redact import RedactingFormatter

    log_path = (state_path or loaded.state).with_name("tui-connector.log")
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(
            RedactingFormatter(loaded.redactor, "%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(level.upper())
    return log_path


def state_path_for(config: str, state: Path | None) -> Path:
    """The state database of a command: --state, else the config's, else the default."""
    from tui_connector.config import ConfigError, state_path_of

    if state is not None:
        return state
    if Path(config).exists():
        try:
            return state_path_of(config)
        except ConfigError as exc:
            fail(str(exc))
    return Path(".tui-connector/state.db")
