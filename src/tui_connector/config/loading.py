"""Loading a config: read the YAML, interpolate the environment, validate, then resolve each
source into the `SourceSpec` the engine runs (defaults applied, `values_file`s read, paths
made absolute, secrets collected for redaction)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, ValidationError

from tui_connector.config.auth_schema import ApiKeyAuth, BasicAuth, BearerAuth, OAuth2Auth
from tui_connector.config.document import Document, read_document
from tui_connector.config.environment import resolve_env
from tui_connector.config.errors import ConfigError, Loc, located, validation_messages
from tui_connector.config.fields import FilePath, Scalar, Strict
from tui_connector.config.lake import (
    LakeFormat,
    LakeLocation,
    is_object_store,
    merge_problem,
    missing_extra,
    storage_secrets,
    url_scheme,
)
from tui_connector.config.partition_schema import (
    AnyPartitions,
    ParentPartitions,
    ValuePartitions,
    check_values,
)
from tui_connector.config.schema import (
    AutoConcurrency,
    Config,
    Source,
    SourceKnobs,
)
from tui_connector.redact import Redactor, looks_secret


class SourceSpec(Source):
    """A source as the engine runs it: the knobs it left unset taken from `defaults:` (its
    headers added to theirs), a `values_file` read into `values`, and its name. Built from
    validated parts by `resolve_source`, never validated again."""

    model_config = ConfigDict(defer_build=True)

    name: str
    format: LakeFormat = "jsonl"  # the top level's, when the source sets none
    concurrency: int
    """The fixed limit, or where an adaptive one starts."""
    auto_concurrency: AutoConcurrency | None = None


def resolve_source(
    name: str,
    source: Source,
    defaults: SourceKnobs,
    partitions: AnyPartitions | None,
    format: LakeFormat = "jsonl",
) -> SourceSpec:
    """`source` with the knobs it did not set taken from `defaults`, and the lake format
    from the top level when it sets none."""
    knobs = {
        knob: getattr(source if knob in source.model_fields_set else defaults, knob)
        for knob in SourceKnobs.model_fields
    }
    knobs["headers"] = {**defaults.headers, **source.headers}
    concurrency = knobs.pop("concurrency")
    auto = concurrency if isinstance(concurrency, AutoConcurrency) else None
    fields = dict(source) | knobs
    fields |= {
        "name": name,
        "format": source.format or format,
        "partitions": partitions,
        "concurrency": auto.initial if auto else concurrency,
        "auto_concurrency": auto,
    }
    return SourceSpec.model_construct(**fields)


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    model: Config
    sources: dict[str, SourceSpec]
    out: Path | None  # the lake's directory; None when it is an object store
    state: Path
    redactor: Redactor
    lake: str = ""  # where the lake is: an absolute directory, or an object store's URL
    storage: Mapping[str, str] = field(default_factory=dict)  # the object-store options


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, interpolate and validate a config file. Raises ConfigError, never anything else."""
    document = read_document(path)
    secrets: set[str] = set()
    data = _interpolated(document, document.data, env, secrets)
    model = _validated(Config, document, data)
    base = document.file.resolve().parent
    partitions, problems = _resolve_partitions(model, base)
    _raise_located(document, problems)
    sources = {
        name: _files_beside(
            resolve_source(name, source, model.defaults, partitions[name], model.format), base
        )
        for name, source in model.sources.items()
    }
    _raise_located(document, _missing_refresh_tokens(model, sources))
    _raise_located(document, _refresh_tokens_shared_apart(sources))
    lake = lake_location(document.file, model.out)
    _raise_located(document, _lake_problems(model, sources, lake))
    environ = os.environ if env is None else env
    secrets |= set(storage_secrets(model.storage, environ))
    redactor = Redactor(secrets | set(_secret_values(sources)))
    return LoadedConfig(
        path=document.file,
        model=model,
        sources=sources,
        out=None if is_object_store(lake) else Path(lake),
        state=_beside(document.file, model.state),
        redactor=redactor,
        lake=lake,
        storage=dict(model.storage),
    )


def lake_location(config_file: Path, out: str) -> str:
    """`out:` made absolute: an object store's URL as written, a directory (or a file://
    URL) as an absolute path, relative to the config file."""
    if is_object_store(out):
        return out.rstrip("/")
    if url_scheme(out) == "file":
        return str(Path(urlsplit(out).path))
    return str(_beside(config_file, out))


def _lake_problems(
    model: Config, sources: Mapping[str, SourceSpec], lake: str
) -> list[tuple[Loc, str]]:
    """Formats whose libraries are missing, and dispositions a format cannot do."""
    problems: list[tuple[Loc, str]] = []
    told: set[str] = set()
    for name, spec in sources.items():
        own = model.sources[name].format is not None
        missing = missing_extra(spec.format, lake)
        if missing is not None and (own or missing not in told):
            told.add(missing)
            problems.append(((("sources", name, "format") if own else ("format",)), missing))
        if spec.write == "merge":
            problem = merge_problem(spec.format, spec.primary_key)
            if problem is not None:
                problems.append((("sources", name, "write"), problem))
    return problems


_Model = TypeVar("_Model", bound=Strict)


class _StateOnly(Strict):
    model_config = ConfigDict(extra="ignore")
    state: FilePath = Config.model_fields["state"].default


def state_path_of(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Path:
    """Where a config keeps its state, read from its `state:` alone: `status` and `reset` work
    without the sources' secrets in the environment, and after the sources were edited."""
    document = read_document(path)
    data = {key: value for key, value in document.data.items() if key == "state"}
    model = _validated(_StateOnly, document, _interpolated(document, data, env, set()))
    return _beside(document.file, model.state)


@dataclass(frozen=True)
class LakeSettings:
    """What `compact` and `status` need of a config: the lake and each source's format."""

    lake: str  # an absolute directory, or an object store's URL
    storage: Mapping[str, str]  # the object-store options
    formats: Mapping[str, LakeFormat]  # by source, in the config's order


class _SourceFormatOnly(Strict):
    model_config = ConfigDict(extra="ignore")
    format: LakeFormat | None = None


class _LakeOnly(Strict):
    model_config = ConfigDict(extra="ignore")
    out: LakeLocation = Config.model_fields["out"].default
    format: LakeFormat = Config.model_fields["format"].default
    storage: dict[str, str] = {}
    sources: dict[str, _SourceFormatOnly] = {}


def lake_settings_of(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> LakeSettings:
    """The lake of a config, read from `out`, `format`, `storage` and the sources' `format`
    alone: like `state_path_of`, without the sources' secrets. Raises ConfigError."""
    document = read_document(path)
    data = {key: value for key, value in document.data.items() if key in _LakeOnly.model_fields}
    if isinstance(data.get("sources"), dict):
        data["sources"] = {
            name: {"format": source["format"]}
            if isinstance(source, dict) and "format" in source
            else {}
            for name, source in data["sources"].items()
        }
    model = _validated(_LakeOnly, document, _interpolated(document, data, env, set()))
    formats = {name: source.format or model.format for name, source in model.sources.items()}
    return LakeSettings(lake_location(document.file, model.out), dict(model.storage), formats)


def _interpolated(
    document: Document, data: Any, env: Mapping[str, str] | None, secrets: set[str]
) -> Any:
    errors: list[tuple[Loc, str]] = []
    data = resolve_env(data, (), os.environ if env is None else env, secrets, errors)
    _raise_located(document, errors)
    return data


def _validated(model: type[_Model], document: Document, data: Any) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        messages = validation_messages(exc, data, document.shown, document.locations)
        raise ConfigError(messages) from None


def _raise_located(document: Document, problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise ConfigError(
            [
                located(document.shown, document.locations.find(loc), loc, message)
                for loc, message in problems
            ]
        )


def _beside(config_file: Path, path: str) -> Path:
    """A path from the config: a relative one is relative to the config file."""
    return Path(path) if Path(path).is_absolute() else config_file.resolve().parent / path


# ---------------------------------------------------------------------------------------------
# What spans sources, and values files


def _files_beside(spec: SourceSpec, base: Path) -> SourceSpec:
    """The source with the files its auth names made absolute (relative to the config)."""
    auth = spec.auth
    if isinstance(auth, OAuth2Auth) and auth.refresh_token_file is not None:
        path = str(base / auth.refresh_token_file)  # an absolute one stays as it is
        return spec.model_copy(
            update={"auth": auth.model_copy(update={"refresh_token_file": path})}
        )
    return spec


def _missing_refresh_tokens(
    model: Config, sources: Mapping[str, SourceSpec]
) -> list[tuple[Loc, str]]:
    """An OAuth2 refresh token to be read from a file that is not there."""
    problems: list[tuple[Loc, str]] = []
    for name, spec in sources.items():
        auth, written = spec.auth, model.sources[name].auth
        if not (isinstance(auth, OAuth2Auth) and isinstance(written, OAuth2Auth)):
            continue
        if auth.refresh_token is not None or auth.refresh_token_file is None:
            continue  # a configured token to start from: the file is made when it rotates
        try:
            there = Path(auth.refresh_token_file).is_file()
        except OSError as exc:  # a name too long, say
            problems.append((_refresh_token_file_loc(name), f"cannot be read: {exc.strerror}"))
            continue
        if not there:
            problems.append(
                (
                    _refresh_token_file_loc(name),
                    f"{written.refresh_token_file} does not exist (a path relative to this "
                    "file); put the refresh token in it, or set refresh_token",
                )
            )
    return problems


def _refresh_tokens_shared_apart(sources: Mapping[str, SourceSpec]) -> list[tuple[Loc, str]]:
    """Sources that refresh one refresh token with auth blocks that differ otherwise. Blocks
    alike share one token (`OAuth2Auth.token_identity`); these would refresh it apart, and a
    provider that rotates refresh tokens refuses the one whose token the other's refresh
    revoked."""
    problems: list[tuple[Loc, str]] = []
    first: dict[str, tuple[str, OAuth2Auth]] = {}  # by where the refresh token comes from
    for name, spec in sources.items():
        auth = spec.auth
        if not isinstance(auth, OAuth2Auth):
            continue
        identity = auth.refresh_token_identity()
        if identity is None:
            continue
        if identity not in first:
            first[identity] = (name, auth)
            continue
        other, other_auth = first[identity]
        if other_auth.token_identity() != auth.token_identity():
            field = "refresh_token_file" if auth.refresh_token_file else "refresh_token"
            problems.append(
                (
                    ("sources", name, "auth", field),
                    f"source {other} refreshes the same refresh token with another auth "
                    "block: each refresh would revoke the other's token at a provider that "
                    "rotates them; give both the same auth block (they then share one "
                    "access token) or each a refresh token of its own",
                )
            )
    return problems


def _refresh_token_file_loc(source: str) -> Loc:
    return ("sources", source, "auth", "refresh_token_file")


def _resolve_partitions(
    model: Config, base: Path
) -> tuple[dict[str, AnyPartitions | None], list[tuple[Loc, str]]]:
    """Read `values_file`s, and check what spans sources: parents exist and form no cycle."""
    resolved: dict[str, AnyPartitions | None] = {}
    problems: list[tuple[Loc, str]] = []
    for name, source in model.sources.items():
        partitions = source.partitions
        loc = _partitions_loc(name)
        if isinstance(partitions, ValuePartitions) and partitions.values_file is not None:
            try:
                values = _read_values_file(base / partitions.values_file)
                check_values(values)
            except ValueError as exc:
                problems.append(((*loc, "values_file"), f"{partitions.values_file}: {exc}"))
            else:
                partitions = partitions.model_copy(update={"values": values})
        if isinstance(partitions, ParentPartitions):
            parent = partitions.source
            if parent == name:
                problems.append(((*loc, "source"), "a source cannot be its own parent"))
            elif parent not in model.sources:
                known = ", ".join(n for n in model.sources if n != name) or "none"
                problems.append(
                    ((*loc, "source"), f"no source named {parent!r}; the others are: {known}")
                )
        resolved[name] = partitions
    for name in model.sources:
        chain = [name]
        current = resolved.get(name)
        while isinstance(current, ParentPartitions) and current.source in model.sources:
            if current.source == name:
                cycle = " -> ".join([*chain, name])
                problems.append(
                    ((*_partitions_loc(name), "source"), f"parents form a cycle: {cycle}")
                )
                break
            if current.source in chain:
                break  # a cycle that does not pass through `name`: reported at its members
            chain.append(current.source)
            current = resolved.get(current.source)
    return resolved, problems


def _partitions_loc(name: str) -> Loc:
    return ("sources", name, "partitions")


def _read_values_file(path: Path) -> tuple[Scalar, ...]:
    """One value per line (blank lines and # comments skipped), or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError("file not found (the path is relative to the config file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in data
        ):
            raise ValueError("a .json values file must hold a list of strings or numbers")
        return tuple(data)
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _secret_values(sources: Mapping[str, SourceSpec]) -> Iterator[str]:
    for spec in sources.values():
        auth = spec.auth
        if isinstance(auth, BearerAuth):
            yield auth.token.get_secret_value()
        elif isinstance(auth, BasicAuth):
            password = auth.password.get_secret_value()
            yield password
            # The Authorization header carries it base64-encoded; a body may echo that.
            yield base64.b64encode(f"{auth.username}:{password}".encode()).decode()
        elif isinstance(auth, ApiKeyAuth):
            yield auth.key.get_secret_value()
        elif isinstance(auth, OAuth2Auth):
            yield from auth.secret_values()
            yield from _secrets_in(auth.token_url, auth.token_params)
        yield from _secrets_in(spec.url, spec.headers, spec.params)


def _secrets_in(url: str, *fields: Mapping[str, object]) -> Iterator[str]:
    """The password in `url`, and the values of `fields` whose names look secret."""
    parts = urlsplit(url)
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        yield from (parts.password, password)
        # httpx sends a URL's user and password as basic auth; a body may echo that header.
        yield base64.b64encode(f"{user}:{password}".encode()).decode()
    for mapping in fields:
        for name, value in mapping.items():
            if looks_secret(name) and isinstance(value, str) and value:
                yield value
