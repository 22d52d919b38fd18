"""The user's settings for the dashboard: `settings.yaml` in `$XDG_CONFIG_HOME/tui-connector/`
(`~/.config/tui-connector/` by default; `$TUI_CONNECTOR_SETTINGS` names another file).

Today it holds one section, the keymap, which rebinds the keys of `keys.py` by id:

    keymap:
      pause: x            # binding id: key
      quit: ctrl+q,q      # several keys, separated by commas

A file that is wrong is refused with `file:line:col: field: what is wrong`, like the config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from textual.keys import REPLACED_KEYS, Keys, key_to_character

from tui_connector.tui.keys import KEY_SCOPES, KEYS_BY_ID

SETTINGS_VARIABLE = "TUI_CONNECTOR_SETTINGS"
MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
# Keys with a name of their own, like "up", "f2", "enter", "space" or "pageup".
NAMED_KEYS = frozenset(
    name
    for name in (key.value.rpartition("+")[2] for key in Keys)
    if len(name) > 1 and not name.startswith("<")
)
KEY_ADVICE = (
    "write one key like x, X, ctrl+x, f2, enter, question_mark, or several separated by "
    "commas (`textual keys`, from `pip install textual-dev`, prints the name of any key you press)"
)


class SettingsError(Exception):
    """What is wrong with the settings file, phrased for the user, one problem per line."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Settings:
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys, as written


def settings_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get(SETTINGS_VARIABLE)
    if explicit:
        return Path(explicit)
    config_home = env.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "tui-connector" / "settings.yaml"


def load_settings(path: Path | None = None) -> Settings:
    """The settings in `path` (default: `settings_path()`); the defaults when there is no
    such file. Raises SettingsError."""
    path = settings_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{path}: cannot be read: {exc}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = _Place(path, mark.line + 1, mark.column + 1) if mark else _Place(path, 1, 1)
        raise SettingsError([place.say("", f"YAML syntax error: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise SettingsError([f"{path}: YAML error: {exc}"]) from None
    if root is None:  # an empty file
        return Settings()
    problems: list[str] = []
    keymap: dict[str, str] = {}
    places: dict[str, _Place] = {}
    for name, node, place in _entries(path, root, "", problems):
        if name != "keymap":
            problems.append(place.say(name, "unknown setting; the settings file has: keymap"))
            continue
        for id, value, where in _entries(path, node, "keymap", problems):
            problem = _keys_problem(id, value)
            if problem is not None:
                problems.append(where.say(f"keymap.{id}", problem))
            else:
                keymap[id] = str(value.value)
                places[id] = where
    if not problems:
        clashes = dict.fromkeys(_clashes(keymap))  # a key shared in two scopes: said once
        problems = [places[id].say(f"keymap.{id}", clash) for id, clash in clashes]
    if problems:
        raise SettingsError(problems)
    return Settings(keymap)


@dataclass(frozen=True)
class _Place:
    file: Path
    line: int
    column: int

    @classmethod
    def of(cls, file: Path, node: yaml.Node) -> _Place:
        return cls(file, node.start_mark.line + 1, node.start_mark.column + 1)

    def say(self, field: str, message: str) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _entries(
    file: Path, node: yaml.Node, field: str, problems: list[str]
) -> Iterator[tuple[str, yaml.Node, _Place]]:
    """The entries of a mapping node, each with the place of its key."""
    if not isinstance(node, yaml.MappingNode):
        problems.append(_Place.of(file, node).say(field or "(top level)", "must be a mapping"))
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        place = _Place.of(file, key_node)
        name = str(key_node.value)
        shown = f"{field}.{name}" if field else name
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(place.say(field or "(top level)", "a key must be text"))
        elif name in seen:
            problems.append(place.say(shown, "given twice"))
        else:
            seen.add(name)
            yield name, value_node, place


def _keys_problem(id: str, value: yaml.Node) -> str | None:
    if id not in KEYS_BY_ID:
        return f"no key binding has this id; use one of {', '.join(sorted(KEYS_BY_ID))}"
    if not isinstance(value, yaml.ScalarNode) or value.tag.endswith(":null"):
        return f"give the key(s) as text; {KEY_ADVICE}"
    for key in str(value.value).split(","):
        key = key.strip()
        if not _is_key(key):
            return f"{key!r} is not a key; {KEY_ADVICE}"
    return None


def _is_key(key: str) -> bool:
    if len(key) == 1:
        return key.isprintable() and not key.isspace()
    *modifiers, name = key.split("+")
    if not all(modifier in MODIFIERS for modifier in modifiers):
        return False
    if len(name) == 1:
        return name.isprintable() and not name.isspace()
    return name in NAMED_KEYS or key_to_character(REPLACED_KEYS.get(name, name)) is not None


def _canonical(key: str) -> str:
    """One spelling per key, to compare them: "?" and "question_mark" are the same key."""
    key = key.strip()
    if len(key) == 1:
        return key
    *modifiers, name = key.split("+")
    if len(name) > 1:
        name = key_to_character(REPLACED_KEYS.get(name, name)) or name
    return "+".join([*sorted(modifiers), name])


def _clashes(keymap: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(id, why) for each rebound binding that took a key another one uses at the same time.
    Keys the defaults already share (enter, in every table) are not clashes."""
    for scope in KEY_SCOPES:
        default_owners: dict[str, set[str]] = {}
        owners: dict[str, set[str]] = {}
        for key in scope:
            default_owners.setdefault(_canonical(key.key), set()).add(key.id)
            for name in keymap.get(key.id, key.key).split(","):
                owners.setdefault(_canonical(name), set()).add(key.id)
        for name, ids in owners.items():
            if len(ids) < 2 or ids <= default_owners.get(name, set()):
                continue
            for id in sorted(ids & keymap.keys()):
                others = ", ".join(sorted(ids - {id}))
                yield id, f"{name} is also the key of {others}"
