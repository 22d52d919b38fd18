"""What the operator set by hand during a run (pauses, stops, concurrency and rate limits), kept
so that a run handed to the background with `d` goes on as the operator left it rather than as
the config says: an operator who throttled a source because its API complained, or paused one,
would otherwise find it running flat out behind their back. The background run also leaves out
the sources that were done (a non-incremental one would fetch everything again) or stopped by
hand; a failed one is tried again from its checkpoint, as any new run does.

It travels as a small JSON file beside the state (`handover_path`), written by the dashboard
that stops the run and read once, then removed, by the run that takes it over."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError


class SteeringError(Exception):
    """A hand-over file that cannot be read; says which and why."""


@dataclass
class Steering:
    """The operator's settings, by source. A source absent from a map keeps its config's."""

    paused: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)  # by hand
    concurrency: dict[str, int] = field(default_factory=dict)  # absent: the config's (or auto)
    rate_limits: dict[str, float | None] = field(default_factory=dict)  # None: no limit
    done: set[str] = field(default_factory=set)  # finished before the hand-over

    @property
    def left_out(self) -> set[str]:
        """The sources a run taking this over does not run: done, or stopped by hand."""
        return self.done | self.stopped

    def write(self, path: Path) -> None:
        """Atomically, readable by the user only (source names may say what is fetched)."""
        text = _SteeringFile(
            paused=sorted(self.paused),
            stopped=sorted(self.stopped),
            concurrency=self.concurrency,
            rate_limits=self.rate_limits,
            done=sorted(self.done),
        ).model_dump_json()
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(partial, path)

    @classmethod
    def take(cls, path: Path) -> Steering:
        """Read the file and remove it: it applies to the one run that takes the hand-over."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise SteeringError(f"cannot read the hand-over file {path}: {exc.strerror}") from None
        path.unlink(missing_ok=True)
        try:
            carried = _SteeringFile.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise SteeringError(f"the hand-over file {path} is not valid: {exc}") from None
        return cls(
            paused=set(carried.paused),
            stopped=set(carried.stopped),
            concurrency=dict(carried.concurrency),
            rate_limits=dict(carried.rate_limits),
            done=set(carried.done),
        )


class _SteeringFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paused: list[str] = []
    stopped: list[str] = []
    concurrency: dict[str, PositiveInt] = Field(default_factory=dict)
    rate_limits: dict[str, PositiveFloat | None] = Field(default_factory=dict)
    done: list[str] = []


def handover_path(state: Path) -> Path:
    """Where `d` leaves the operator's settings for the background run: beside the state."""
    return state.with_name(f"{state.name}.handover.json")
