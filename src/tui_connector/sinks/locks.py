"""One run writes a table at a time: a lock object beside the lake's tables.

A run already holds its state database's lock, so a table lock left by the same state
database belongs to a run that is gone (killed) and is taken over; one left by another state
database is another run's, and the second writer is refused with what the lock says."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tui_connector.sinks import LakeError
from tui_connector.sinks.storage import open_store, store_reason

LOCKS = "_tc_locks"


def run_owner(state_path: Path) -> str:
    """Who writes: the state database a run holds, on this host."""
    return f"{socket.gethostname()}:{state_path.resolve()}"


class TableLock:
    """The lock of one table at `<lake>/_tc_locks/<name>.json`."""

    def __init__(self, lake: str, name: str, options: Mapping[str, str] | None, owner: str):
        self.lake = lake.rstrip("/")
        self.name = f"{name}.json"
        self.local = "://" not in lake
        self.options = options or {}
        self.owner = owner
        self.shown = f"{self.lake}/{LOCKS}/{self.name}"
        self.held = False
        self.taken_over = False  # from a run of the same state that was killed

    def _content(self) -> bytes:
        return json.dumps(
            {"owner": self.owner, "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        ).encode()

    def acquire(self) -> None:
        """Take the lock, or raise LakeError naming the run that holds it."""
        try:
            held_by = self._create_local() if self.local else self._create_remote()
        except Exception as exc:  # the store's own errors, and options it refuses
            raise LakeError(f"cannot lock {self.shown}: {store_reason(exc)}") from None
        if held_by is not None and held_by.get("owner") != self.owner:
            raise LakeError(
                f"{self.lake}/{self.name.removesuffix('.json')} is being written by another run "
                f"(state {held_by.get('owner', '?')}, pid {held_by.get('pid', '?')}, since "
                f"{held_by.get('since', '?')}): one run writes a table at a time. If that run "
                f"is gone, delete {self.shown}"
            )
        if held_by is not None:  # our own state's, left by a run that was killed
            self._overwrite()
        self.taken_over = held_by is not None
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self.local:
                Path(self.shown).unlink(missing_ok=True)
            else:
                import obstore

                obstore.delete(self._store(), self.name)
        except Exception:  # a lock left behind is taken over by the next run of this state
            return

    def _create_local(self) -> dict[str, Any] | None:
        path = Path(self.shown)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return _parsed(path.read_bytes())
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._content())
        return None

    def _store(self) -> Any:
        return open_store(f"{self.lake}/{LOCKS}", self.options)

    def _create_remote(self) -> dict[str, Any] | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        store = self._store()
        try:
            obstore.put(store, self.name, self._content(), mode="create")
            return None
        except (AlreadyExistsError, PreconditionError):
            return _parsed(bytes(obstore.get(store, self.name).bytes()))

    def _overwrite(self) -> None:
        if self.local:
            Path(self.shown).write_bytes(self._content())
        else:
            import obstore

            obstore.put(self._store(), self.name, self._content())


def _parsed(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
