"""The config file as a YAML document: read safely, with where each value stands in the text.

Safely means: no duplicate keys (YAML keeps the last one without a word), keys that are text,
no alias bombs or nesting deep enough to overflow a recursive walk, and every failure a
`ConfigError` located at its line and column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from tui_connector.config.errors import ConfigError, Loc, Mark, at, preview


@dataclass(frozen=True)
class Document:
    file: Path
    shown: str
    """The path as the user gave it: how messages name the file."""
    data: dict[str, Any]
    locations: Locations


def read_document(path: str | os.PathLike[str]) -> Document:
    """The config file parsed: a mapping, with where each value stands in the text."""
    file = Path(path)
    shown = str(path)
    text = _read_text(file, shown)
    locations = Locations()
    try:
        loader = _StrictLoader(_parsed(text, shown))
        node = loader.get_single_node()
        if node is not None:
            # Before constructing: it flattens merge keys (`<<: *anchor`) in place.
            locations.record(node)
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([at(shown, Mark.of(mark), f"YAML syntax error: {problem}")]) from None
    except yaml.reader.ReaderError as exc:
        # Characters YAML refuses anywhere in the file (control characters but tab and newline).
        where = Mark(
            text.count("\n", 0, exc.position) + 1,
            exc.position - text.rfind("\n", 0, exc.position),
        )
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        problem = f"the character {character!r} is not allowed"
        advice = "remove it, or write it as an escape in a double-quoted string"
        raise ConfigError([at(shown, where, f"YAML syntax error: {problem}; {advice}")]) from None

    if node is None or data is None:
        raise ConfigError([f"{shown}:1:1: (top level): the file is empty; define 'sources:'"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{shown}:1:1: (top level): expected a mapping with a 'sources:' key, "
                f"got {type(data).__name__}"
            ]
        )
    return Document(file, shown, data, locations)


def _read_text(file: Path, shown: str) -> str:
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{shown}: file not found; pass the path of your sources.yaml"]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"{shown}: is a directory; pass the path of your sources.yaml"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot be read: {exc.strerror}"]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        where = Mark(raw.count(b"\n", 0, exc.start) + 1, column)
        problem = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}: {exc.reason})"
        raise ConfigError([at(shown, where, f"{problem}; save the file as UTF-8")]) from None


class Locations:
    """Maps a path in the YAML document to the line and column where it was written."""

    def __init__(self) -> None:
        self.keys: dict[Loc, Mark] = {}
        self.values: dict[Loc, Mark] = {}

    def record(self, node: yaml.Node, loc: Loc = ()) -> None:
        self.values[loc] = _mark_of(node)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a list or mapping as a key: the constructor refuses it
                key = key_node.value
                self.keys[(*loc, key)] = _mark_of(key_node)
                self.record(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.record(item, (*loc, index))

    def find(self, loc: Loc, *, key: bool = False) -> Mark:
        """The closest recorded place for `loc`: the key itself, else its nearest parent."""
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            table = self.keys if key or end < len(loc) else self.values
            mark = table.get(prefix) or self.values.get(prefix)
            if mark is not None:
                return mark
        return Mark(1, 1)


def _mark_of(node: yaml.Node) -> Mark:
    return Mark.of(node.start_mark)


# ---------------------------------------------------------------------------------------------
# The loader

# What YAML made of a scalar, by the last part of its tag.
_YAML_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "timestamp": "a date or time",
    "binary": "binary data",
}


def _yaml_kind(node: yaml.Node) -> str:
    return _YAML_KINDS.get(node.tag.rpartition(":")[2], node.tag)


class _StrictLoader(
    yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
):
    """A SafeLoader that reads events already parsed (by `_parsed`), refuses duplicate keys
    (YAML silently keeps the last one) and keys that are not text, and reports a scalar it
    cannot build at its place."""

    def __init__(self, events: list[yaml.Event]) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._events = events
        self._next = 0

    # What the composer asks of a parser, answered from the events.
    def check_event(self, *choices: type[yaml.Event]) -> bool:
        if self._next == len(self._events):
            return False
        return not choices or isinstance(self._events[self._next], choices)

    def peek_event(self) -> yaml.Event:
        return self._events[self._next]

    def get_event(self) -> yaml.Event:
        self._next += 1
        return self._events[self._next - 1]

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError) as exc:
            # How PyYAML's scalar constructors fail on text that matches a tag's pattern but
            # is no such value (2024-02-30, an int past Python's 4300 digits), or on text given
            # an explicit tag it does not fit (`!!int abc`, `!!bool maybe`, `!!timestamp x`).
            if not isinstance(node, yaml.ScalarNode):
                raise
            reason = f" ({str(exc).split(';')[0]})" if isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {preview(node.value)} as {_yaml_kind(node)}{reason}",
                node.start_mark,
            ) from None


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not {kind}", key_node.start_mark
            )
        if key_node.tag != "tag:yaml.org,2002:str":
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key_node.value!r} is read by YAML as {_yaml_kind(key_node)}, not as "
                f'text; quote it: "{key_node.value}"',
                key_node.start_mark,
            )
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


# The stubs expect a whole Loader (with a reader and a parser), which this one needs not be.
_StrictLoader.add_constructor(  # type: ignore[type-var]
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)

# ---------------------------------------------------------------------------------------------
# Bombs

# A config nests a few levels deep and repeats little through aliases. Past these limits a
# file is broken or hostile: deep nesting overflows the stack of every recursive walk, and
# aliases of aliases expand exponentially ("billion laughs") in each of them.
_MAX_DEPTH = 64
_MAX_ALIASED_VALUES = 100_000


def _parsed(text: str, shown: str) -> list[yaml.Event]:
    """The parser's events, once deep nesting and alias bombs are refused: before anything is
    built (composing 10,000 nested lists recurses; validating a bomb walks it whole)."""

    def refuse(event: yaml.Event, message: str) -> NoReturn:
        raise ConfigError([at(shown, Mark.of(event.start_mark), message)])

    sizes: dict[str, int] = {}  # anchor -> how many values its node expands to
    open_: list[tuple[str | None, int]] = []  # collections being read: anchor, `total` before
    total = aliased = 0
    events = []
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        events.append(event)
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) == _MAX_DEPTH:
                refuse(event, f"the YAML nests deeper than {_MAX_DEPTH} levels")
            open_.append((event.anchor, total))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_.pop()
            if anchor is not None:
                sizes[anchor] = total - before
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if name not in sizes and any(anchor == name for anchor, _ in open_):
                refuse(event, f"the YAML alias *{name} is inside &{name}: it would contain itself")
            size = sizes.get(name, 1)  # an undefined alias: the composer reports it
            total += size
            aliased += size
            if aliased > _MAX_ALIASED_VALUES:
                refuse(
                    event,
                    f"the YAML expands to more than {_MAX_ALIASED_VALUES:,} values through "
                    "anchors and aliases (an alias bomb?); write the values out, or alias less",
                )
    return events
