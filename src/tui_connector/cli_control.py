"""The commands that reach a run in another process through its control endpoint — `attach`
and `stop` — and what `run --detach` and `status` need of it: starting a run in the
background, and reading a live run's picture."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tui_connector.cli_shared import DEFAULT_CONFIG, fail, state_path_for
from tui_connector.facade import ExitCode

if TYPE_CHECKING:
    from tui_connector.control import RemoteRun

TOKEN_ENVIRONMENT = "TUI_CONNECTOR_CONTROL_TOKEN"
# How long `run --detach` waits for the background run to open its state and endpoint (a
# hang guard: it takes well under a second).
DETACH_READY_TIMEOUT = 120.0


def control_options(command: Callable[..., None]) -> Callable[..., None]:
    """--state/--config (which run), --control and --token-file (a run served over TCP)."""
    for option in reversed(
        (
            click.option(
                "--state",
                type=click.Path(dir_okay=False, path_type=Path),
                help="The run's state database (default: from ./sources.yaml).",
            ),
            click.option(
                "--config",
                default=DEFAULT_CONFIG,
                type=click.Path(dir_okay=False),
                show_default=True,
                help="Config whose 'state' the run uses.",
            ),
            click.option(
                "--control",
                metavar="tcp://HOST:PORT",
                help="A run serving its controls over TCP (run --control) instead of its socket.",
            ),
            click.option(
                "--token-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help=f"The TCP run's token (default: <state>.token; or ${TOKEN_ENVIRONMENT}).",
            ),
        )
    ):
        command = option(command)
    return command


def remote_run(
    state: Path, control: str | None, token_file: Path | None, *, read_only: bool = False
) -> RemoteRun:
    """The run of `state` (or at `control`, over TCP with its token), ready to open; a bad
    address or an unreadable token fails the command (exit 2)."""
    from tui_connector.control import AddressError

    try:
        return _remote(state, control, token_file, read_only=read_only)
    except AddressError as exc:
        fail(str(exc))


def _remote(
    state: Path, control: str | None, token_file: Path | None, *, read_only: bool
) -> RemoteRun:
    from tui_connector.control import ControlAddress, RemoteRun, socket_path
    from tui_connector.control.address import read_token, token_path

    if control is None:
        return RemoteRun(ControlAddress(unix=socket_path(state)), read_only=read_only)
    address = ControlAddress.parse(control)
    token = os.environ.get(TOKEN_ENVIRONMENT) or read_token(token_file or token_path(state))
    return RemoteRun(address, token=token, read_only=read_only)


def attach_command(state: Path, control: str | None = None) -> str:
    """What an operator types to attach to the run of `state`."""
    where = f"--control {control}" if control else f"--state {state}"
    return f"tui-connector attach {where}"


def no_run_there(state: Path, reason: str) -> None:
    """`attach`/`stop` found no run: say so and what the state database holds; exit 1."""
    click.echo(f"tui-connector: {reason}: no run is in progress on {state}.", err=True)
    if state.exists():
        click.echo("Its last checkpoints (tui-connector status):", err=True)
        from tui_connector.cli import status

        status.callback(state=state, config=DEFAULT_CONFIG, as_json=False, per_stream=False)  # type: ignore[misc]
    sys.exit(ExitCode.FAILED)


async def _probe(run: RemoteRun) -> int | None:
    """Connect and hang up: the run's facts are known from then on; its pid."""
    await run.open()
    await run.close()
    return run.pid


def _reachable(run: RemoteRun, state: Path) -> None:
    import asyncio

    from tui_connector.control import NoRunThere
    from tui_connector.facade import RunError

    try:
        asyncio.run(_probe(run))
    except NoRunThere as exc:
        no_run_there(state, str(exc))
    except RunError as exc:
        fail(str(exc))


@click.command()
@control_options
@click.option("--read-only", is_flag=True, help="Watch only: no key steers the run.")
def attach(
    state: Path | None,
    config: str,
    control: str | None,
    token_file: Path | None,
    read_only: bool,
) -> None:
    """Open the dashboard on a run in progress in another process (started with --detach,
    headless by cron, or in another terminal). q detaches and leaves the run going; Q stops
    it."""
    from tui_connector.tui.app import run_dashboard

    path = state_path_for(config, state)
    run = remote_run(path, control, token_file, read_only=read_only)
    _reachable(run, path)  # its facts are known from here on; the dashboard connects again
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(
            "attach opens the dashboard, which needs a terminal; "
            "`tui-connector status` prints a run's live state"
        )
    code = run_dashboard(run, attach_again=attach_command(path, control))
    sys.exit(code)


@click.command()
@control_options
def stop(state: Path | None, config: str, control: str | None, token_file: Path | None) -> None:
    """Stop a run in progress gracefully: requests in flight finish and commit. Asked again
    while it stops: at once (what is committed stays exact either way)."""
    import asyncio

    from tui_connector.control import NoRunThere
    from tui_connector.facade import RunError

    path = state_path_for(config, state)
    run = remote_run(path, control, token_file)

    async def ask() -> tuple[str, int]:
        await run.open()
        try:
            await asyncio.wait_for(run.pictured(), 30)
            again = run.stop_requested_at is not None
            run.request_stop()
            grace = run.facts.stop_grace
            click.echo(
                f"{'stopping at once' if again else 'stopping'} the run (pid {run.pid})"
                + ("" if again else f": requests in flight finish, at most {grace:g} s"),
                err=True,
            )
            # A hang guard far beyond the grace: the run ends within it.
            await asyncio.wait_for(run.run(), grace * 10 + 60)
        finally:
            await run.close()
        result = run.result
        if result is None:
            return run.ended or "the run ended", int(ExitCode.OK)
        return (
            f"the run ended: {len(result.done)} done, {len(result.failed)} failed, "
            f"{len(result.stopped)} stopped",
            int(ExitCode.OK),
        )

    try:
        message, code = asyncio.run(ask())
    except NoRunThere as exc:
        no_run_there(path, str(exc))
    except RunError as exc:
        fail(str(exc))
    except TimeoutError:
        fail("the run did not end in time", ExitCode.FAILED)
    click.echo(message)
    sys.exit(code)


def live_lines(state: Path) -> list[str] | None:
    """A run in progress on `state` as `status` shows it (one line per source), or None when
    no run answers on its socket."""
    import asyncio

    from tui_connector.control import NoRunThere, RemoteRun, socket_path
    from tui_connector.control.address import ControlAddress
    from tui_connector.facade import RunError
    from tui_connector.headless import format_line, source_snapshot

    path = socket_path(state)
    if not path.exists():
        return None
    run = RemoteRun(ControlAddress(unix=path), read_only=True)

    async def picture() -> list[str]:
        await run.open()
        try:
            await asyncio.wait_for(run.pictured(), 30)
        finally:
            await run.close()
        now = time.monotonic()
        sources = run.snapshot().sources
        width = max((len(name) for name in sources), default=6)
        lines = [f"a run is in progress (pid {run.pid}; {attach_command(state)}):"]
        lines += [
            "  " + format_line(source_snapshot(stats, now, run.lake(name)), width)
            for name, stats in sources.items()
        ]
        return lines

    try:
        return asyncio.run(picture())
    except (NoRunThere, RunError, TimeoutError):
        return None


def start_detached(argv: Sequence[str], state: Path, log_path: Path, control: str | None) -> int:
    """`run --detach`: the same run, headless, in a new session (no terminal to lose), its
    output appended to the log beside the state; returns once it serves its controls (and
    says why not when it exits first: another run holds the state, a bad config...)."""
    import subprocess

    arguments = [arg for arg in argv if arg != "--detach"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        told_from = log.tell()
        child = subprocess.Popen(
            [sys.executable, "-m", "tui_connector", *arguments, "--headless"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + DETACH_READY_TIMEOUT
    # Only the child's own endpoint will do: another run may answer at the same address.
    while _serving_pid(state, control) != child.pid:
        code = child.poll()
        if code is not None:
            with open(log_path, "rb") as log:
                log.seek(told_from)
                said = log.read().decode(errors="replace").strip().splitlines()[-3:]
            click.echo(f"tui-connector: the background run ended at once (exit {code}):", err=True)
            for line in said:
                click.echo(f"  {line}", err=True)
            return code or int(ExitCode.FAILED)
        if time.monotonic() > deadline:
            click.echo(f"tui-connector: the background run did not start; see {log_path}", err=True)
            return int(ExitCode.FAILED)
        time.sleep(0.05)
    click.echo(
        f"running in the background (pid {child.pid}); progress: {log_path}\n"
        f"  watch and steer it: {attach_command(state, control)}\n"
        f"  stop it:            tui-connector stop --state {state}"
    )
    return int(ExitCode.OK)


def _serving_pid(state: Path, control: str | None) -> int | None:
    """The pid of the run answering at the state's control address, if one does."""
    import asyncio

    from tui_connector.control.address import AddressError
    from tui_connector.facade import RunError

    try:
        # Without --token-file: a TCP run's token appears beside its state as it starts.
        return asyncio.run(_probe(_remote(state, control, None, read_only=True)))
    except (RunError, AddressError, OSError):
        return None
