"""Object stores: the options a lake's URL is opened with, and what a store's failure says.

obstore (for files) and delta-rs (for Delta tables) are both built on the Rust `object_store`
crate: they read the same standard environment variables (AWS_*, GOOGLE_*, AZURE_*), take the
same option names, and retry transient failures (5xx, throttling, resets) with backoff
themselves. The `storage:` section of sources.yaml overrides the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

# Options that are ours to read (obstore takes them apart from the store's config); delta-rs
# takes them among its storage options as they are.
_RETRY_OPTIONS = ("max_retries", "retry_timeout")
_CLIENT_OPTIONS = frozenset(
    {"allow_http", "connect_timeout", "timeout", "allow_invalid_certificates"}
)
# Failures that resolve no faster than this are failures: how long a write keeps retrying one.
DEFAULT_RETRY_TIMEOUT = "60s"


def _seconds(value: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*", value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 500ms, 2m)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]


def open_store(url: str, options: Mapping[str, str]) -> Any:
    """An obstore store rooted at `url`. Raises ValueError for options it cannot take."""
    from obstore.exceptions import BaseError
    from obstore.store import from_url

    config = {k.lower(): v for k, v in options.items()}
    retry: dict[str, Any] = {"retry_timeout": timedelta(seconds=_seconds(DEFAULT_RETRY_TIMEOUT))}
    if "max_retries" in config:
        retry["max_retries"] = int(config.pop("max_retries"))
    if "retry_timeout" in config:
        retry["retry_timeout"] = timedelta(seconds=_seconds(config.pop("retry_timeout")))
    client = {}
    for key in list(config):
        # delta-rs takes `aws_allow_http`; obstore only as the client option `allow_http`
        # (given among the store's options, it panics).
        bare = re.sub(r"^(aws|google|azure)_", "", key)
        if bare in _CLIENT_OPTIONS:
            client[bare] = config.pop(key)
    open_url: Any = from_url  # its overloads are by store; the options are checked at run time
    try:
        return open_url(
            url, config=config or None, client_options=client or None, retry_config=retry
        )
    except BaseError as exc:
        raise ValueError(store_reason(exc)) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a Rust panic is a BaseException: an option it choked on
        raise ValueError(f"the store refused its options: {exc}") from None


def delta_options(options: Mapping[str, str]) -> dict[str, str]:
    """delta-rs's storage options: the same names, and our retry bound unless one is set."""
    return {"retry_timeout": DEFAULT_RETRY_TIMEOUT} | {k.lower(): v for k, v in options.items()}


_XML_CODE = re.compile(r"<Code>(.*?)</Code>", re.DOTALL)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.DOTALL)
_CAUSE_MARK = re.compile(r"(\x1b\[[0-9;]*m)|↳\s*")
_PERFORMING = re.compile(r"Error performing \w+ \S+ in [\d.]+\w+(, after \d+ retries[^-]*)? - ")
_GENERIC = re.compile(r"^Generic \w+ error: ")  # obstore's prefix: says nothing
# What to fix, by the store's error code, where its message does not say: Azure's speaks of
# an Authorization header, which nobody writes by hand. (Azurite answers a signature made
# with another key with AuthorizationFailure; Azure with AuthenticationFailed, and with
# AuthorizationFailure a request its network rules or roles refuse.)
_AZURE_CREDENTIALS = (
    "check the account name and key: AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, "
    "or azure_storage_account_name and azure_storage_account_key under storage:"
)
_WHAT_TO_FIX = {
    "AuthenticationFailed": _AZURE_CREDENTIALS,
    "AuthorizationFailure": _AZURE_CREDENTIALS + ", and what the account allows",
}
# obstore's debug dump ends in the OS error's message ("Connection refused"), which its first
# line leaves out ("error sending request").
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')


def store_reason(exc: BaseException) -> str:
    """The store's own reason for a failure, in a line: the error code and message when the
    server sent them (and what to fix, where the message does not say), otherwise the first
    line of what the library said (its debug dump of the request left out), and the last
    cause: of delta-rs's chain, or the OS error in obstore's debug dump."""
    text, _, debug = str(exc).partition("\n\nDebug source:")
    code, message = _XML_CODE.search(text), _XML_MESSAGE.search(text)
    if code is not None:
        reason = name = code.group(1).strip()
        if message is not None:  # Azure's goes on with lines of request id and time
            reason += ": " + message.group(1).strip().partition("\n")[0]
        if name in _WHAT_TO_FIX:
            reason += f" ({_WHAT_TO_FIX[name]})"
        return reason
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = _GENERIC.sub("", _PERFORMING.sub("", lines[0])) if lines else type(exc).__name__
    if len(lines) > 1 and "↳" in lines[-1]:
        # delta-rs's chain of causes, one per line: the first says what, the last why.
        first += ": " + _CAUSE_MARK.sub("", lines[-1]).strip()
    elif (messages := _OS_MESSAGE.findall(debug)) and messages[-1] not in first:
        first += f": {messages[-1]}"
    return first if len(first) <= 300 else first[:297] + "..."
