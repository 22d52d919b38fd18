"""How the demo server behaves: :class:`DemoKnobs`, validated on construction, changed live by
replacing them (``DemoServer.update_knobs``, ``POST /_demo/knobs``).

Latency and faults (``fault_rate``, ``faults``, ``retry_after_s``, ``slow_ms``, ``seed``) apply to
the dataset routes only (see ``pipeline``); ``capacity`` and ``capacity_queue`` to how many are
served at once (see ``state``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from yarl import URL

from tui_connector.demo.faults import FAULTS

#: The most records a page may hold, whatever a request or the ``page_size`` knob asks.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class DemoKnobs:
    """How the demo server behaves. Validated on construction; replace to change."""

    records: int = 1000
    page_size: int = 50
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    retry_after_s: float = 1.0
    slow_ms: float = 2000.0
    seed: int = 0
    token: str | None = None
    #: Dataset requests served at once (None: no limit); more wait in line, then get 429.
    capacity: int | None = None
    #: How many may wait in line for a turn (None: half the capacity, at least one).
    capacity_queue: int | None = None
    #: The one client of the OAuth2 token endpoint (``oauth``).
    oauth_client_id: str = "demo-client"
    oauth_client_secret: str = "demo-client-secret"
    #: The refresh token the token endpoint accepts first (until a rotation revokes it).
    oauth_refresh_token: str = "demo-refresh-token"
    #: Seconds an access token of the token endpoint lives.
    oauth_token_ttl_s: float = 300.0
    #: Each use of a refresh token revokes it and issues a new one.
    oauth_rotate: bool = True
    #: The ``/oauth`` routes accept the endpoint's tokens (False: they refuse every one, as
    #: an API does a token meant for another audience).
    oauth_api_accepts: bool = True
    #: Fields that replace those of the token endpoint's answers, to play an odd provider
    #: (``{"token_type": "mac"}``, an ``access_token`` that is no bearer token).
    oauth_answer_fields: dict[str, Any] | None = None
    #: An RFC 7662 introspection endpoint (another authorization server's) that decides which
    #: tokens ``/oauth`` accepts instead; its client credentials in the URL: http://id:secret@...
    oauth_introspection_url: str | None = None

    def __post_init__(self) -> None:
        _check_int("records", self.records, minimum=0)
        _check_int("page_size", self.page_size, minimum=1, maximum=MAX_PAGE_SIZE)
        _check_int("seed", self.seed)
        if self.capacity is not None:
            _check_int("capacity", self.capacity, minimum=1)
        if self.capacity_queue is not None:
            _check_int("capacity_queue", self.capacity_queue, minimum=0)
        for name in ("latency_ms", "fault_rate", "retry_after_s", "slow_ms", "oauth_token_ttl_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        if self.fault_rate > 1:
            raise ValueError(f"fault_rate must be between 0 and 1, not {self.fault_rate!r}")
        faults = self.faults
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError("faults must be a list of fault names")
        faults = tuple(faults)
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown!r}; known: {', '.join(FAULTS)}")
        object.__setattr__(self, "faults", faults)
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise TypeError("token must be a non-empty string or null")
        for name in ("oauth_client_id", "oauth_client_secret", "oauth_refresh_token"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"{name} must be a non-empty string")
        if self.oauth_token_ttl_s == 0:
            raise ValueError("oauth_token_ttl_s must be above 0")
        for name in ("oauth_rotate", "oauth_api_accepts"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false")
        fields = self.oauth_answer_fields
        if fields is not None and not (
            isinstance(fields, dict) and all(isinstance(name, str) for name in fields)
        ):
            raise TypeError("oauth_answer_fields must be an object (field names to values) or null")
        introspection = self.oauth_introspection_url
        if introspection is not None and not (
            isinstance(introspection, str) and introspection.startswith(("http://", "https://"))
        ):
            raise ValueError("oauth_introspection_url must be an http(s) URL or null")

    def to_json(self) -> dict[str, Any]:
        """The knobs as JSON, the secrets masked (the control endpoints are unauthenticated)."""
        values = dataclasses.asdict(self)
        values["faults"] = list(self.faults)
        values["token"] = None if self.token is None else "***"
        for secret in ("oauth_client_secret", "oauth_refresh_token"):
            values[secret] = "***"
        if self.oauth_introspection_url is not None:
            values["oauth_introspection_url"] = str(
                URL(self.oauth_introspection_url).with_user(None)
            )
        return values

    @property
    def queue_limit(self) -> int:
        """How many requests may wait for a turn while ``capacity`` are being served."""
        if self.capacity_queue is not None:
            return self.capacity_queue
        return max(1, (self.capacity or 0) // 2)


def _check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bounds}, not {value}")
