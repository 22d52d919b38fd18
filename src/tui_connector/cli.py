"""The `tui-connector` command.

Exit codes: 0 every source done; 1 some source failed; 2 bad config or usage; 130 interrupted.

Each command imports what it needs when it runs (the config's models, asyncio, the engine,
Textual): `--help` and `validate` start in a fraction of the time the whole program takes
to import (bench/startup.py measures it).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tui_connector import __version__
from tui_connector.facade import ExitCode

if TYPE_CHECKING:
    from tui_connector.config import LoadedConfig
    from tui_connector.engine import Engine

DEFAULT_CONFIG = "sources.yaml"
DEMO_PORT = 8765  # preferred, so that checkpointed next-links stay valid across demo runs
DEMO_URL_VARIABLE = "DEMO_URL"


def _fail(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    click.echo(f"tui-connector: {message}", err=True)
    sys.exit(code)


def _load(path: str) -> LoadedConfig:
    from tui_connector.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(ExitCode.USAGE)


def _split_names(values: tuple[str, ...]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


class _FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses nan and inf, which pass its bounds (nan compares false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _LakeLocation(click.ParamType):
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


def _out_option(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option("--out", type=_LakeLocation(), metavar="DIR|URL", help=help)


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="warning",
        show_default=True,
        help="What goes to tui-connector.log beside the state database (secrets redacted): "
        "unexpected errors; with info, every request too; with debug, everything.",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tui-connector")
def cli() -> None:
    """Pull HTTP/JSON APIs into a local data lake, concurrently, and resume exactly."""


# -- run -------------------------------------------------------------------------------------


@cli.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
@click.option("--headless", is_flag=True, help="No dashboard: print progress lines instead.")
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="State database (default: the config's 'state').",
)
@_out_option("The lake: a directory or an object-store URL (default: the config's 'out').")
@click.option(
    "--only",
    multiple=True,
    metavar="SOURCE",
    help="Run only these sources (repeat, or separate with commas).",
)
@click.option(
    "--full-refresh", is_flag=True, help="Ignore checkpoints and start every stream over."
)
@click.option(
    "--progress",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Headless progress format.",
)
@click.option(
    "--progress-interval",
    type=_FiniteFloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between headless progress reports.",
)
@click.option(
    "--exit-when-done",
    is_flag=True,
    help="Dashboard: exit when every source has finished instead of staying open.",
)
@_log_level_option
def run(
    config: str,
    headless: bool,
    state_path: Path | None,
    out: str | None,
    only: tuple[str, ...],
    full_refresh: bool,
    progress: str,
    progress_interval: float,
    exit_when_done: bool,
    log_level: str,
) -> None:
    """Run the sources of CONFIG (default ./sources.yaml), resuming from checkpoints.

    Opens the dashboard in a terminal; --headless (or no terminal) prints progress lines.
    """
    loaded = _load(config)
    _log_to_file(loaded, state_path, log_level)
    engine = _engine(loaded, state_path, out, _split_names(only), full_refresh)
    if _use_dashboard(headless):
        code = _run_dashboard(engine, exit_when_done=exit_when_done)
    else:
        code = _run_headless(engine, progress=progress, interval=progress_interval)
    sys.exit(code)


def _engine(
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
        _fail(str(exc))


def _use_dashboard(headless: bool) -> bool:
    if headless:
        return False
    if sys.stdin.isatty() and sys.stdout.isatty():
        return True
    click.echo("no terminal: running headless (pass --headless to say so)", err=True)
    return False


def _run_dashboard(engine: Engine, *, exit_when_done: bool) -> int:
    from tui_connector.in_process import InProcessRun
    from tui_connector.tui.app import run_dashboard

    return run_dashboard(InProcessRun(engine), exit_when_done=exit_when_done)


def _run_headless(engine: Engine, *, progress: str, interval: float) -> int:
    from tui_connector.headless import run_headless
    from tui_connector.in_process import InProcessRun

    return run_headless(InProcessRun(engine), progress=progress, interval=interval)


# -- validate, status, reset ------------------------------------------------------------------


@cli.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
def validate(config: str) -> None:
    """Check CONFIG and list its sources; exit 2 with located errors if it is wrong."""
    from tui_connector.describe import headline

    loaded = _load(config)
    click.echo(f"{config}: OK, {len(loaded.sources)} source(s)")
    click.echo(f"  lake: {loaded.model.out} (format: {loaded.model.format})")
    for name, spec in loaded.sources.items():
        lake = f" format={spec.format}" if spec.format != loaded.model.format else ""
        if spec.write != "append":
            key = f" by {','.join(spec.primary_key)}" if spec.primary_key else ""
            lake += f" write={spec.write}{key}"
        click.echo(f"  {name}: {headline(spec, loaded.redactor)}{lake}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of sources.yaml, for completion and checks in your editor.

    sources.schema.json holds it (regenerate: tui-connector schema > sources.schema.json); a
    first line `# yaml-language-server: $schema=./sources.schema.json` in sources.yaml points
    VS Code (the YAML extension) or Neovim (yaml-language-server) at it.
    """
    from tui_connector.config.editor_schema import editor_schema_text

    click.echo(editor_schema_text(), nl=False)


def _state_options(command: Callable[..., None]) -> Callable[..., None]:
    """--state and --config, for the commands that read the state of a config's runs."""
    command = click.option(
        "--config",
        default=DEFAULT_CONFIG,
        type=click.Path(dir_okay=False),
        help="Config whose 'state' to use.",
        show_default=True,
    )(command)
    return click.option(
        "--state",
        type=click.Path(dir_okay=False, path_type=Path),
        help="State database (default: from ./sources.yaml).",
    )(command)


def _state_path(config: str, state: Path | None) -> Path:
    from tui_connector.config import ConfigError, state_path_of

    if state is not None:
        return state
    if Path(config).exists():
        try:
            return state_path_of(config)
        except ConfigError as exc:
            _fail(str(exc))
    return Path(".tui-connector/state.db")


@cli.command()
@_state_options
@click.option("--json", "as_json", is_flag=True, help="Print the streams as JSON.")
@click.option(
    "--streams", "per_stream", is_flag=True, help="One line per stream (partition), not per source."
)
def status(state: Path | None, config: str, as_json: bool, per_stream: bool) -> None:
    """Show each source's progress and high-water mark (--streams: every stream's checkpoint),
    and its lake: format, destination, a Delta table's version."""
    import asyncio
    import json

    from tui_connector.maintenance import lakes_of
    from tui_connector.state import StateError
    from tui_connector.state.report import aligned, lake_lines, source_table, stream_table
    from tui_connector.state.sqlite import StateStore

    path = _state_path(config, state)
    if not path.exists():
        _fail(
            f"no state database at {path}; nothing has run yet (or pass --state)", ExitCode.FAILED
        )

    async def read() -> list[dict[str, Any]]:
        store = StateStore(path)
        try:
            await store.open()
            return [dict(row.__dict__) for row in await store.streams()]
        finally:
            await store.close()

    try:
        rows = asyncio.run(read())
    except StateError as exc:
        _fail(str(exc))
    sources = list(dict.fromkeys(str(row["source"]) for row in rows))
    lakes, unknown = lakes_of(config, sources) if Path(config).exists() else ({}, None)
    if as_json:
        for row in rows:
            row["lake"] = lakes.get(row["source"])
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{path}: no streams yet")
        return
    for line in aligned(stream_table(rows) if per_stream else source_table(rows)):
        click.echo(line)
    for row in rows:
        if row["last_error"]:
            click.echo(f"{row['source']}/{row['partition']}: {row['last_error']}")
    if not per_stream:
        for line in lake_lines(lakes, unknown):
            click.echo(line)


@cli.command()
@click.argument("sources", nargs=-1)
@_state_options
def reset(sources: tuple[str, ...], state: Path | None, config: str) -> None:
    """Forget the checkpoints of SOURCES (all when none given): the next run starts them over
    and replaces their files in the lake."""
    import asyncio

    from tui_connector.state import StateError
    from tui_connector.state.sqlite import RunLock, StateStore

    path = _state_path(config, state)
    if not path.exists():
        _fail(f"no state database at {path}; nothing to reset", ExitCode.FAILED)
    names = _split_names(sources) or None

    async def forget() -> int:
        store = StateStore(path)
        try:
            await store.open()
            return await store.delete_streams(names)
        finally:
            await store.close()

    lock = RunLock(path)
    try:
        lock.acquire()
        try:
            removed = asyncio.run(forget())
        finally:
            lock.release()
    except StateError as exc:
        _fail(str(exc))
    what = ", ".join(names) if names else "all sources"
    click.echo(f"reset {what}: {removed} stream checkpoint(s) removed from {path}")


@cli.command()
@click.argument("sources", nargs=-1)
@_state_options
@_out_option("The lake the sources ran with (default: the config's 'out').")
@click.option(
    "--retention",
    metavar="DURATION",
    help="Delta: how long vacuum keeps the files a table no longer uses, e.g. 7d or 168h "
    "(default: the table's delta.deletedFileRetentionDuration, 7 days unless set).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Delta: vacuum with a retention shorter than the table's own, breaking time travel "
    "past it and readers still reading an older version.",
)
@click.option(
    "--target-size",
    metavar="SIZE",
    help="How large merged files grow, e.g. 128MiB (default: 128MiB for files, the table's "
    "own for Delta).",
)
def compact(
    sources: tuple[str, ...],
    state: Path | None,
    config: str,
    out: str | None,
    retention: str | None,
    force: bool,
    target_size: str | None,
) -> None:
    """Compact the lake of SOURCES (all when none given): merge each stream's small Parquet
    or JSON Lines files into larger ones; optimize and vacuum Delta tables.

    Refused while a run uses the state database. A compaction killed midway is finished by
    the next run or compaction: no record is lost or doubled.
    """
    import asyncio

    from tui_connector.maintenance import compact_lake, compact_request
    from tui_connector.sinks.maintenance import RetentionRefused
    from tui_connector.state import StateError

    try:
        settings, names, options = compact_request(
            config, _split_names(sources), retention=retention, force=force, size=target_size
        )
    except ValueError as exc:
        _fail(str(exc))
    path = _state_path(config, state)
    if not path.exists():
        _fail(f"no state database at {path}; nothing has run yet (or pass --state)")
    try:
        done = asyncio.run(compact_lake(settings, path, names, options, out=out))
    except (StateError, RetentionRefused) as exc:
        _fail(str(exc))
    for outcome in done:
        click.echo(outcome.text, err=outcome.failed)
    sys.exit(ExitCode.FAILED if any(outcome.failed for outcome in done) else ExitCode.OK)


# -- the demo ---------------------------------------------------------------------------------


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
            type=_FiniteFloatRange(min=0),
            default=0,
            show_default=True,
            help="Added to every request.",
        ),
        click.option(
            "--fault-rate",
            type=_FiniteFloatRange(0, 1),
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
            "--retry-after-s",
            type=_FiniteFloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Retry-After sent with 429 and 503.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("serve-demo")
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
        _fail(f"cannot serve on port {port}: {exc.strerror or exc}")


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
            _fail(f"the demo server did not start (it said {line!r})", ExitCode.FAILED)
        yield line.removeprefix("listening on ")
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()


@cli.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
@click.option("--headless", is_flag=True, help="No dashboard: print progress lines instead.")
@click.option(
    "--latency-ms",
    type=_FiniteFloatRange(min=0),
    default=30,
    show_default=True,
    help="Demo server latency per request.",
)
@click.option(
    "--fault-rate",
    type=_FiniteFloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Demo server fault rate.",
)
@click.option(
    "--records",
    type=click.IntRange(min=0),
    default=20000,
    show_default=True,
    help="Records per demo dataset: enough to watch a backfill.",
)
@_log_level_option
def demo(
    config: str,
    headless: bool,
    latency_ms: float,
    fault_rate: float,
    records: int,
    log_level: str,
) -> None:
    """Start the demo API and run CONFIG (default ./sources.yaml) against it.

    Unfinished streams resume; when everything was already done, it starts over.
    """
    import asyncio

    if not Path(config).exists():
        _fail(f"{config} not found; run this from the tui-connector checkout, or pass a config")
    knobs = [
        "--records",
        str(records),
        "--latency-ms",
        str(latency_ms),
        "--fault-rate",
        str(fault_rate),
        "--token",
        os.environ.get("DEMO_TOKEN", "demo-token"),
    ]
    with demo_server(knobs) as url:
        os.environ[DEMO_URL_VARIABLE] = url
        os.environ.setdefault("DEMO_TOKEN", "demo-token")
        loaded = _load(config)
        click.echo(f"demo API at {url}; lake: {loaded.out}; state: {loaded.state}", err=True)
        full_refresh = asyncio.run(_everything_done(loaded))
        if full_refresh:
            click.echo("every stream was already complete: starting over", err=True)
        _log_to_file(loaded, None, log_level)
        engine = _engine(loaded, None, None, [], full_refresh)
        if _use_dashboard(headless):
            code = _run_dashboard(engine, exit_when_done=False)
        else:
            code = _run_headless(engine, progress="text", interval=2.0)
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


def _log_to_file(loaded: LoadedConfig, state_path: Path | None, level: str) -> Path:
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


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown; exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
