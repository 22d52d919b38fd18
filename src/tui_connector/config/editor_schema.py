"""The JSON Schema of `sources.yaml` for editors (`tui-connector schema`), derived from the
models: completion, hover text and validation while typing, in VS Code (the YAML extension)
or Neovim (yaml-language-server), with `# yaml-language-server: $schema=...` atop the file.

It is as lenient as the loader where the loader reads more than pydantic's own JSON Schema
says: a number or true/false may come from the environment (`${VAR}`), and text that YAML
reads as a date is text to an editor (which reads YAML 1.2). The schema never says more
than the loader: what it accepts, the loader may still refuse (a cursor with no place to go).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tui_connector.config.environment import REFERENCE_PATTERN
from tui_connector.config.schema import Config

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_FROM_ENVIRONMENT = {
    "type": "string",
    "pattern": REFERENCE_PATTERN,
    "description": "from the environment: ${VAR} or ${VAR:-default}",
}


def _or_from_environment(schema: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": [schema, _FROM_ENVIRONMENT]}


class _EditorSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, with numbers and booleans that may come from the environment,
    and mappings whose keys must match a pattern (source names) checked whatever the key."""

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        json_schema = super().dict_schema(schema)
        # pydantic's `patternProperties` would leave a key that does not match unchecked.
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            json_schema |= {"propertyNames": {"pattern": pattern}, "additionalProperties": values}
        return json_schema

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return _or_from_environment(super().int_schema(schema))

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return _or_from_environment(super().float_schema(schema))

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return _or_from_environment(super().bool_schema(schema))


def editor_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a `sources.yaml`."""
    schema = Config.model_json_schema(schema_generator=_EditorSchema)
    return {"$schema": DIALECT, **schema, "title": "tui-connector sources.yaml"}


def editor_schema_text() -> str:
    """`editor_schema()` as `tui-connector schema` prints it and sources.schema.json holds it."""
    return json.dumps(editor_schema(), indent=2, ensure_ascii=False) + "\n"
