"""Where a run's control endpoint listens, and how a client finds it.

By default a Unix socket beside the state database (`<state>.sock`, mode 0600), which only
its owner can connect to; optionally TCP, where a random token (`<state>.token`, mode 0600,
new for every run) must be presented, and where an address beyond loopback needs the
operator to say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# sun_path holds 108 bytes with its terminating NUL; a longer path is reached through the
# directory's descriptor (/proc/self/fd/N/name), which Linux resolves like the path itself.
_SUN_PATH_MAX = 107

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class AddressError(ValueError):
    """A control address that cannot be used, phrased for the operator."""


def socket_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".sock")


def token_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".token")


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ControlAddress:
    """A Unix socket's path, or a TCP host and port."""

    unix: Path | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> ControlAddress:
        """`tcp://HOST:PORT`, `unix:PATH` or a socket's path."""
        if text.startswith("tcp://"):
            host, colon, port = text.removeprefix("tcp://").rstrip("/").rpartition(":")
            host = host.strip("[]")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise AddressError(
                    f"{text!r} is not a TCP control address: write tcp://HOST:PORT, "
                    "e.g. tcp://127.0.0.1:8766"
                )
            return cls(host=host, port=int(port))
        if "://" in text:
            raise AddressError(
                f"{text!r}: a control address is tcp://HOST:PORT or a Unix socket's path"
            )
        return cls(unix=Path(text.removeprefix("unix:")))

    def __str__(self) -> str:
        if self.unix is not None:
            return str(self.unix)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A path to bind or connect to that fits in sun_path."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        short = f"/proc/self/fd/{directory}/{path.name}"
        if len(os.fsencode(short)) > _SUN_PATH_MAX:
            raise AddressError(f"{path}: the socket's name is too long")
        yield short
    finally:
        os.close(directory)


async def serve_unix(handler: Handler, path: Path, *, limit: int) -> asyncio.AbstractServer:
    """Serve on a Unix socket at `path`, mode 0600 from the first instant: it is bound in a
    private directory, made 0600, then renamed into place — replacing a socket a killed run
    left there (the caller holds the run lock, so no live run owns it)."""
    private = Path(tempfile.mkdtemp(prefix=".control-", dir=path.parent))  # mode 0700
    bound = private / "s"
    try:
        with _reachable(bound) as address:
            server = await asyncio.start_unix_server(handler, path=address, limit=limit)
        try:
            os.chmod(bound, 0o600)
            os.replace(bound, path)
        except BaseException:
            server.close()
            raise
    finally:
        # A few syscalls on a local directory: not worth a thread.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bound)
        os.rmdir(private)
    return server


async def connect(
    address: ControlAddress, *, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.unix is not None:
        with _reachable(address.unix) as path:
            return await asyncio.open_unix_connection(path, limit=limit)
    return await asyncio.open_connection(address.host, address.port, limit=limit)


def new_token(path: Path) -> str:
    """A fresh random token, written to `path` with mode 0600 before anyone can read it."""
    token = secrets.token_urlsafe(32)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(token + "\n")
    os.replace(temp, path)
    return token


def read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AddressError(
            f"cannot read the control token at {path} ({exc.__class__.__name__}: {exc}); a run "
            "served with --control writes it beside its state database: give that file with "
            "--token-file, or --state, or set $TUI_CONNECTOR_CONTROL_TOKEN"
        ) from None
