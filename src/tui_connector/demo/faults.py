"""Which requests fault, and how: a pure function of the request and how often it was seen.

A request's identity is (method, path, sorted query, body bytes). Its ``k``-th occurrence
(``k`` = how many times the same request was seen before) draws from
``blake2b(seed, identity, k)``: the same request retried gets a fresh decision, and two servers
with the same seed given the same sequence of requests fault identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: Every fault the demo server knows (what each does: ``tui_connector.demo.pipeline``). The
#: default mix of ``DemoKnobs.faults``; the draw picks ``faults[i % len(faults)]``, so a seed's
#: sequence of faults depends on this list and its order as well.
FAULTS: tuple[str, ...] = (
    "429",
    "429-date",
    "500",
    "503",
    "slow",
    "drop",
    "truncate",
    "html-200",
    "wrong-content-type",
    "drop-mid-body",
)

_SCALE = float(1 << 64)


def request_key(method: str, path: str, query_string: str, body: bytes) -> bytes:
    """A compact identity of a request; the query's ``name=value`` pairs are sorted."""
    query = "&".join(sorted(query_string.split("&"))) if query_string else ""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{method}\0{path}\0{query}\0".encode("utf-8", "surrogateescape"))
    digest.update(body)
    return digest.digest()


def decide(
    seed: int, key: bytes, occurrence: int, fault_rate: float, faults: Sequence[str]
) -> str | None:
    """The fault for the ``occurrence``-th (0-based) sight of the request ``key``, or None."""
    if fault_rate <= 0.0 or not faults:
        return None
    digest = hashlib.blake2b(key, digest_size=16, person=b"tui-demo-faults")
    digest.update(f"{seed}:{occurrence}".encode("ascii"))
    value = digest.digest()
    draw = int.from_bytes(value[:8], "big") / _SCALE
    if draw >= fault_rate:
        return None
    return faults[int.from_bytes(value[8:], "big") % len(faults)]
