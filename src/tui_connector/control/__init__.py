"""A run's control endpoint: its view and controls served to other processes (`server`),
and a run in another process seen and steered through it (`client`). `wire` is the protocol;
`address` says where it listens. Both sides know a run only through the facade."""

from tui_connector.control.address import AddressError, ControlAddress, socket_path, token_path
from tui_connector.control.client import NoRunThere, RemoteRun
from tui_connector.control.server import ControlServer

__all__ = [
    "AddressError",
    "ControlAddress",
    "ControlServer",
    "NoRunThere",
    "RemoteRun",
    "socket_path",
    "token_path",
]
