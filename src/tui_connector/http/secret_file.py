"""A file holding one secret (an OAuth2 refresh token, `refresh_token_file`): read, and replaced
atomically and durably, readable by its owner only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def read_secret_file(path: Path) -> str | None:
    """The secret in `path`, stripped; None when the file is missing (or holds nothing).
    Raises OSError or UnicodeDecodeError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def write_secret_file(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only (0600): a crash, or a failure
    midway, leaves the old file or the new one, never half of one, nor a moment readable by
    others; once this returns, the new one survives a power loss. A symbolic link is
    followed (its target is replaced, the link stays); a missing directory is made, for its
    owner only."""
    path = Path(os.path.realpath(path))
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:  # mkstemp makes it 0600
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename is durable once the directory that records it is.
    directory_handle = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(directory_handle)
    finally:
        os.close(directory_handle)
