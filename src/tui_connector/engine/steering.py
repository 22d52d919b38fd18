"""What the operator set by hand during a run (pauses, stops, concurrency and rate limits), kept
so that a run handed to the background with `d` goes on as the operator left it rather than as
the config says: an operator who throttled a source because its API complained, or paused one,
would otherwise find it running flat out behind their back. The background run also leaves out
the sources that were done (a non-incremental one would fetch everything again) or stopped by
hand; a failed one is tried again from its checkpoint, as any new run does.

It travels as a small JSON file beside the state (`handover_path`), written by the dashboard
that stops the run (atomically, for its owner only: source names may say what is fetched) and
read once, then removed, by the run that takes it over."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, ValidationError

from tui_connector.http.secret_file import write_secret_file


class SteeringError(Exception):
    """A hand-over file that cannot be read; says which and why."""


class Steering(BaseModel):
    """The operator's settings, by source. A source absent from a map keeps its config's."""

    model_config = ConfigDict(extra="forbid")

    paused: set[str] = set()
    stopped: set[str] = set()  # by hand
    concurrency: dict[str, PositiveInt] = {}  # absent: the config's (or auto)
    rate_limits: dict[str, PositiveFloat | None] = {}  # None: no limit
    done: set[str] = set()  # finished before the hand-over

    @property
    def left_out(self) -> set[str]:
        """The sources a run taking this over does not run: done, or stopped by hand."""
        return self.done | self.stopped

    def write(self, path: Path) -> None:
        write_secret_file(path, self.model_dump_json())

    @classmethod
    def take(cls, path: Path) -> Steering:
        """Read the file and remove it: it applies to the one run that takes the hand-over."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise SteeringError(f"cannot read the hand-over file {path}: {exc.strerror}") from None
        path.unlink(missing_ok=True)
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise SteeringError(f"the hand-over file {path} is not valid: {exc}") from None


def handover_path(state: Path) -> Path:
    """Where `d` leaves the operator's settings for the background run: beside the state."""
    return state.with_name(f"{state.name}.handover.json")
