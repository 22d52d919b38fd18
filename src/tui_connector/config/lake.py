"""Where the lake is and what it is made of: the `out:` location (a directory or an object-store
URL), the table formats and write dispositions, and the checks that span them (a format whose
optional libraries are missing, `merge` on a format that cannot upsert)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, WithJsonSchema

from tui_connector.redact import looks_secret

LakeFormat = Literal["jsonl", "parquet", "delta"]
WriteDisposition = Literal["append", "replace", "merge"]

# The URL schemes of the object stores (as obstore and delta-rs spell them), by store.
OBJECT_STORE_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "azure": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
_SCHEMES = (*OBJECT_STORE_SCHEMES, "file")


def url_scheme(location: str) -> str | None:
    """The scheme of a lake location, or None for a plain path (a Windows drive letter is
    not a scheme)."""
    if "://" not in location:
        return None
    return urlsplit(location).scheme.lower() or None


def is_object_store(location: str) -> bool:
    return url_scheme(location) in OBJECT_STORE_SCHEMES


def check_location(location: str) -> str:
    if "\x00" in location:
        raise ValueError(f"{location!r} contains a NUL character, which no path or URL can")
    scheme = url_scheme(location)
    if scheme is None:
        return location
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{location!r}: {scheme}:// is not a lake location; use a directory, or "
            "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path"
        )
    parts = urlsplit(location)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{location!r}: a file:// URL names no host; write file:///path")
        if not parts.path:
            raise ValueError(f"{location!r} names no directory; write file:///path/to/lake")
    elif not parts.netloc:
        raise ValueError(f"{location!r} names no bucket; write {scheme}://bucket/prefix")
    if parts.query or parts.fragment:
        raise ValueError(
            f"{location!r}: options go in the `storage:` section, not in the URL's ?query"
        )
    return location


LakeLocation = Annotated[
    str,
    AfterValidator(check_location),
    WithJsonSchema({"type": "string", "minLength": 1}),
]

# What each format (and an object store for file formats) needs beyond the core, by the
# importable module and the extra that installs it.
_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "parquet": (("pyarrow", "parquet"),),
    "delta": (("deltalake", "delta"), ("pyarrow", "delta")),
    "objects": (("obstore", "cloud"),),
}


def missing_extra(format: LakeFormat, location: str) -> str | None:
    """The `pip install` that a format, or a lake on an object store, still needs; None when
    everything is installed. (Delta writes its tables itself, but its writer lock and staging
    clean-up on an object store go through obstore too.)"""
    needs = list(_NEEDS.get(format, ()))
    if is_object_store(location):
        needs += _NEEDS["objects"]
    for module, extra in needs:
        if importlib.util.find_spec(module) is None:
            where = "an object store" if extra == "cloud" else f"format: {format}"
            return (
                f"{where} needs the '{module}' package, which is not installed: "
                f"pip install 'tui-connector[{extra}]'"
            )
    return None


def merge_problem(format: LakeFormat, primary_key: tuple[str, ...] | None) -> str | None:
    """Why `write: merge` cannot be done, or None."""
    if format != "delta":
        return (
            f"write: merge updates rows in place, which only format: delta can do "
            f"(this source writes {format} files); use format: delta, or write: append"
        )
    if not primary_key:
        return "write: merge needs primary_key: the field(s) that identify a record"
    return None


# Storage option names whose values are secrets, beyond those `looks_secret` recognises.
SECRET_STORAGE_OPTIONS = frozenset(
    {"google_service_account_key", "azure_storage_sas_key", "azure_storage_token"}
)
# The standard environment variables that carry an object store's secrets (every name
# obstore and delta-rs read one from).
SECRET_ENVIRONMENT = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)


def storage_secrets(storage: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """The values that must never be shown: secret options, and the store secrets the
    libraries read from the environment."""
    secrets = [
        value
        for name, value in storage.items()
        if looks_secret(name) or name.lower() in SECRET_STORAGE_OPTIONS
    ]
    return secrets + [environ[name] for name in SECRET_ENVIRONMENT if environ.get(name)]
