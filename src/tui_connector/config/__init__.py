"""The `sources.yaml` config: its schema, and loading it into what the engine runs.

Nothing here knows about HTTP, SQLite or Textual; the rest of the program receives a
`LoadedConfig` or a `ConfigError` whose message is ready to print.

- `schema`, `partition_schema`, `auth_schema`: the pydantic models, one declaration per knob;
  `fields`: the field types they share.
- `document`: the YAML file read safely, with where each value stands in the text.
- `environment`: `${VAR}` interpolation.
- `errors`: `ConfigError`, and pydantic's errors as `file:line:col: field: message`.
- `loading`: `load_config`, `state_path_of`, `lake_settings_of`, and the resolved `SourceSpec`.
- `editor_schema`: the JSON Schema for editors (`tui-connector schema`).
"""

from tui_connector.config.auth_schema import ApiKeyAuth, Auth, BasicAuth, BearerAuth, OAuth2Auth
from tui_connector.config.errors import ConfigError
from tui_connector.config.fields import (
    FilePath,
    HttpUrl,
    JMESPath,
    PositiveFloat,
    PositiveInt,
    ResponseSize,
    Scalar,
    ScalarValue,
    Strict,
    parse_instant,
    parse_step,
    scalar_text,
    url_placeholders,
)
from tui_connector.config.loading import (
    LakeSettings,
    LoadedConfig,
    SourceSpec,
    lake_settings_of,
    load_config,
    state_path_of,
)
from tui_connector.config.partition_schema import (
    MAX_DATE_WINDOWS,
    AnyPartitions,
    DatePartitions,
    Incremental,
    ParentPartitions,
    Partitions,
    Placement,
    ValuePartitions,
)
from tui_connector.config.schema import (
    AutoConcurrency,
    Concurrency,
    Config,
    CursorPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    RetryPolicy,
    Source,
    SourceDefaults,
    SourceKnobs,
    StopRules,
    Timeouts,
    ValueRef,
)

__all__ = [
    "MAX_DATE_WINDOWS",
    "AnyPartitions",
    "ApiKeyAuth",
    "Auth",
    "AutoConcurrency",
    "BasicAuth",
    "BearerAuth",
    "Concurrency",
    "Config",
    "ConfigError",
    "CursorPagination",
    "DatePartitions",
    "FilePath",
    "HttpUrl",
    "Incremental",
    "JMESPath",
    "LakeSettings",
    "LoadedConfig",
    "NextUrlPagination",
    "NoPagination",
    "OAuth2Auth",
    "OffsetPagination",
    "PageNumberPagination",
    "Pagination",
    "ParentPartitions",
    "Partitions",
    "Placement",
    "PositiveFloat",
    "PositiveInt",
    "ResponseSize",
    "RetryPolicy",
    "Scalar",
    "ScalarValue",
    "Source",
    "SourceDefaults",
    "SourceKnobs",
    "SourceSpec",
    "StopRules",
    "Strict",
    "Timeouts",
    "ValuePartitions",
    "ValueRef",
    "lake_settings_of",
    "load_config",
    "parse_instant",
    "parse_step",
    "scalar_text",
    "state_path_of",
    "url_placeholders",
]
