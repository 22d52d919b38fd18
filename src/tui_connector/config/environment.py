"""`${VAR}` and `${VAR:-default}` in the config's values, taken from the environment.

Values of variables whose names look secret are collected, so that they are redacted by
value wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tui_connector.config.errors import Loc, preview
from tui_connector.redact import looks_secret

# What a value that refers to the environment holds, as a JSON Schema pattern (a search).
REFERENCE_PATTERN = r"\$\{"

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


def resolve_env(
    data: Any, loc: Loc, env: Mapping[str, str], secrets: set[str], errors: list[tuple[Loc, str]]
) -> Any:
    """Interpolate every string value; check that every string, keys too, is text. Problems
    go to `errors` (with where they are), the values of secret-looking variables to
    `secrets`."""
    if isinstance(data, str):
        try:
            return _check_text(_interpolate(data, env, secrets) if "$" in data else data)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return data
    if isinstance(data, dict):
        for key in data:
            try:
                _check_text(key)
            except ValueError as exc:
                errors.append(((*loc, key), f"the key {exc}"))
        return {k: resolve_env(v, (*loc, k), env, secrets, errors) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_env(v, (*loc, i), env, secrets, errors) for i, v in enumerate(data)]
    return data


def _interpolate(value: str, env: Mapping[str, str], secrets: set[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default, malformed = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise ValueError(
                f"malformed variable reference {preview('${' + malformed)}; "
                "write ${NAME} or ${NAME:-default}"
            )
        if name in env:
            resolved = env[name]
        elif default is not None:
            resolved = default
        else:
            raise ValueError(
                f"environment variable {name} is not set; export it, or give a default "
                f"with ${{{name}:-value}}"
            )
        if looks_secret(name) and resolved:
            secrets.add(resolved)
        return resolved

    return _ENV_PATTERN.sub(substitute, value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(text: str) -> str:
    """Text that can be printed and sent: a lone surrogate (from a YAML escape like "\\ud800",
    or an environment variable's bytes that are not UTF-8) cannot be encoded."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(
            f"{preview(text)} contains {found.group()!r}, half of a UTF-16 surrogate pair, "
            "which is not a character; write the character itself, or an escape like "
            "\\U0001F600"
        )
    return text
