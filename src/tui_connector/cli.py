"""The `tui-connector` command.

Exit codes: 0 every source done; 1 some source failed; 2 bad config or usage; 130 interrupted.

Each command imports what it needs when it runs (the config's models, asyncio, the engine,
Textual): `--help` and `validate` start in a fraction of the time the whole program takes
to import (bench/startup.py measures it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tui_connector import __version__
from tui_connector.cli_control import attach, stop
from tui_connector.cli_demo import demo, serve_demo
from tui_connector.cli_shared import (
    DEFAULT_CONFIG,
    FiniteFloatRange,
    control_services,
    fail,
    load,
    log_level_option,
    log_to_file,
    make_engine,
    metrics_option,
    metrics_services,
    out_option,
    run_dashboard,
    run_headless,
    split_names,
    state_path_for,
    use_dashboard,
)
from tui_connector.facade import ExitCode

if TYPE_CHECKING:
    from tui_connector.engine import Engine
    from tui_connector.engine.steering import Steering


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
@out_option("The lake: a directory or an object-store URL (default: the config's 'out').")
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
    type=FiniteFloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between headless progress reports.",
)
@click.option(
    "--exit-when-done",
    is_flag=True,
    help="Dashboard: exit when every source has finished instead of staying open.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Run in the background, headless, tied to no terminal; print its pid and how to "
    "attach to it. Progress goes to the log beside the state database.",
)
@click.option(
    "--no-control",
    is_flag=True,
    help="Serve no control endpoint (by default <state>.sock lets attach, stop and status "
    "reach the run).",
)
@click.option(
    "--control",
    metavar="tcp://HOST:PORT",
    help="Also serve the controls over TCP, guarded by a token written to <state>.token.",
)
@click.option(
    "--control-public",
    is_flag=True,
    help="Let --control listen beyond loopback (anyone holding the token steers the run).",
)
@click.option(
    "--handover",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="The operator's settings left by `d` in a dashboard: the run that takes it over.",
)
@metrics_option
@log_level_option
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
    detach: bool,
    no_control: bool,
    control: str | None,
    control_public: bool,
    metrics: tuple[str, int] | None,
    handover: Path | None,
    log_level: str,
) -> None:
    """Run the sources of CONFIG (default ./sources.yaml), resuming from checkpoints.

    Opens the dashboard in a terminal; --headless (or no terminal) prints progress lines.
    Another terminal reaches the run with `tui-connector attach`, `stop` and `status`.
    """
    loaded = load(config)
    log_path = log_to_file(loaded, state_path, log_level)
    controls = control_services(no_control, control, control_public)
    state = state_path or loaded.state
    if detach:
        from tui_connector.cli_control import start_detached

        if not controls:
            fail("--detach needs the control endpoint to attach to: drop --no-control")
        sys.exit(start_detached(sys.argv[1:], state, log_path, control))
    selected = split_names(only)
    steering = take_handover(handover) if handover is not None else None
    if steering is not None:
        selected = [name for name in selected or loaded.sources if name not in steering.left_out]
        if not selected:
            click.echo("every source was done or stopped by hand: nothing to take over")
            sys.exit(ExitCode.OK)
    engine = make_engine(loaded, state_path, out, selected, full_refresh)
    if steering is not None:
        engine.carry_over(steering)
    services = [*controls, *metrics_services(loaded, metrics)]
    if use_dashboard(headless):
        code = run_dashboard(
            engine,
            exit_when_done=exit_when_done,
            services=services,
            detach=handoff(sys.argv[1:], engine, log_path, control) if controls else None,
        )
    else:
        code = run_headless(
            engine, progress=progress, interval=progress_interval, services=services
        )
    sys.exit(code)


def handoff(
    argv: list[str], engine: Engine, log_path: Path, control: str | None
) -> Callable[[], int]:
    """What `d` in the dashboard does once its run has stopped and committed: the same run
    goes on in the background from its checkpoints (never starting over again), as the
    operator left it (`engine.steering`)."""

    def start() -> int:
        from tui_connector.cli_control import start_detached
        from tui_connector.engine.steering import handover_path

        steering = engine.handover()
        if not set(engine.selected) - steering.left_out:
            click.echo("every source was done or stopped by hand: nothing left to run")
            return engine.result().exit_code
        carried = handover_path(engine.state_path)
        try:
            steering.write(carried)
        except OSError as exc:
            fail(f"cannot hand the run over: cannot write {carried}: {exc.strerror}")
        again = [arg for arg in argv if arg not in ("--full-refresh", "--exit-when-done")]
        code = start_detached(
            [*again, "--handover", str(carried)], engine.state_path, log_path, control
        )
        carried.unlink(missing_ok=True)  # the background run took it, or never will
        return code

    return start


def take_handover(path: Path) -> Steering:
    from tui_connector.engine.steering import Steering, SteeringError

    try:
        return Steering.take(path)
    except SteeringError as exc:
        fail(str(exc))


# -- validate, status, reset ------------------------------------------------------------------


@cli.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
def validate(config: str) -> None:
    """Check CONFIG and list its sources; exit 2 with located errors if it is wrong."""
    from tui_connector.describe import headline

    loaded = load(config)
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


@cli.command()
@_state_options
@click.option("--json", "as_json", is_flag=True, help="Print the streams as JSON.")
@click.option(
    "--streams", "per_stream", is_flag=True, help="One line per stream (partition), not per source."
)
def status(state: Path | None, config: str, as_json: bool, per_stream: bool) -> None:
    """Show each source's progress and high-water mark (--streams: every stream's checkpoint),
    and its lake: format, destination, a Delta table's version. A run in progress is shown
    live first (through its control endpoint)."""
    import asyncio
    import json

    from tui_connector.maintenance import lakes_of
    from tui_connector.state import StateError
    from tui_connector.state.report import (
        aligned,
        as_of_no_run,
        lake_lines,
        source_table,
        stream_table,
    )
    from tui_connector.state.sqlite import StateStore, run_in_progress

    path = state_path_for(config, state)
    if not path.exists():
        fail(f"no state database at {path}; nothing has run yet (or pass --state)", ExitCode.FAILED)

    async def read() -> list[dict[str, Any]]:
        store = StateStore(path)
        try:
            await store.open()
            return [dict(row.__dict__) for row in await store.streams()]
        finally:
            await store.close()

    # Before the rows: a run that ends while they are read leaves rows "running" that it
    # finished, and must not read as interrupted.
    run_held_state = run_in_progress(path)
    try:
        rows = asyncio.run(read())
    except StateError as exc:
        fail(str(exc))
    sources = list(dict.fromkeys(str(row["source"]) for row in rows))
    lakes, unknown = lakes_of(config, sources) if Path(config).exists() else ({}, None)
    if as_json:
        for row in rows:
            row["lake"] = lakes.get(row["source"])
        click.echo(json.dumps(rows, indent=2))
        return
    from tui_connector.cli_control import live_lines

    live = live_lines(path)
    for line in live or ():
        click.echo(line)
    if live is None and not run_held_state and not run_in_progress(path):
        rows = as_of_no_run(rows)
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

    path = state_path_for(config, state)
    if not path.exists():
        fail(f"no state database at {path}; nothing to reset", ExitCode.FAILED)
    names = split_names(sources) or None

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
        fail(str(exc))
    what = ", ".join(names) if names else "all sources"
    click.echo(f"reset {what}: {removed} stream checkpoint(s) removed from {path}")


@cli.command()
@click.argument("sources", nargs=-1)
@_state_options
@out_option("The lake the sources ran with (default: the config's 'out').")
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
            config, split_names(sources), retention=retention, force=force, size=target_size
        )
    except ValueError as exc:
        fail(str(exc))
    path = state_path_for(config, state)
    if not path.exists():
        fail(f"no state database at {path}; nothing has run yet (or pass --state)")
    try:
        done = asyncio.run(compact_lake(settings, path, names, options, out=out))
    except (StateError, RetentionRefused) as exc:
        fail(str(exc))
    for outcome in done:
        click.echo(outcome.text, err=outcome.failed)
    sys.exit(ExitCode.FAILED if any(outcome.failed for outcome in done) else ExitCode.OK)


cli.add_command(serve_demo)
cli.add_command(demo)
cli.add_command(attach)
cli.add_command(stop)


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
