"""A real Azure Blob Storage endpoint for the tests: Azurite's blob service (Microsoft's
emulator, from npm: tests/node, installed by scripts/dev.py) in a node process on 127.0.0.1,
spoken to only over HTTP.

Azurite checks every request's Shared Key signature as Azure does: a wrong account key is
refused (403 AuthorizationFailure). The lake uses Azurite's published development account
and key; its clients find the endpoint through the standard AZURE_* variables, as they would
find an Azure account behind a custom endpoint (a sovereign cloud, a private link).

conftest.py's fixtures: `azure` (this endpoint, one per session) and `container` (a fresh
container per test, with the AZURE_* variables set for the test and the processes it starts)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from node_server import NODE_SERVERS, NodeServer

# Azurite's development account and its key, published in Azurite's documentation.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
BLOB_SERVER = NODE_SERVERS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
_LISTENING = re.compile(r"successfully listens on (http://\S+)")


class AzuriteEndpoint(NodeServer):
    """Azurite's blob service on an ephemeral 127.0.0.1 port, its data in memory."""

    name = "Azure Blob storage (Azurite)"
    package = "azurite"

    def __init__(self) -> None:
        super().__init__()
        self.url = ""  # of the service; the account's endpoint is `account_url`
        self._numbers = itertools.count(1)

    @property
    def account_url(self) -> str:
        return f"{self.url}/{ACCOUNT}"

    def arguments(self) -> list[str]:
        return [
            str(BLOB_SERVER),
            *("--blobHost", "127.0.0.1", "--blobPort", "0"),  # 0: a free port, printed
            *("--inMemoryPersistence", "--extentMemoryLimit", "256"),
            "--disableTelemetry",  # the tests reach no host but 127.0.0.1
            "--skipApiVersionCheck",  # the Rust clients send an API version of their own
            "--loose",
            "--silent",  # no line per request
        ]

    def listening(self, line: str) -> bool:
        found = _LISTENING.search(line)
        if found:
            self.url = found.group(1).rstrip("/")
        return found is not None

    def env(self, account_key: str = ACCOUNT_KEY) -> dict[str, str]:
        """The standard variables that point an Azure client (obstore, delta-rs) here."""
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": account_key,
            "AZURE_STORAGE_ENDPOINT": self.account_url,
            "AZURE_ALLOW_HTTP": "true",
        }

    def storage_options(self) -> dict[str, str]:
        """The same, as the storage options of a reader (deltalake)."""
        return {name.lower(): value for name, value in self.env().items()}

    def filesystem(self) -> Any:
        """A pyarrow filesystem of the account (paths are `container/key`): it creates
        containers, and reads the lake as a client other than the lake's own."""
        from pyarrow.fs import AzureFileSystem

        authority = self.url.removeprefix("http://")
        return AzureFileSystem(
            account_name=ACCOUNT,
            account_key=ACCOUNT_KEY,
            blob_storage_authority=authority,
            blob_storage_scheme="http",
            dfs_storage_authority=authority,
            dfs_storage_scheme="http",
        )

    def create_container(self) -> Container:
        name = f"lake-{next(self._numbers)}"
        self.filesystem().create_dir(name)
        return Container(self, name)

    def bucket(self, name: str) -> Container:
        """An existing container (Azure's name for a bucket)."""
        return Container(self, name)


@dataclass(frozen=True)
class Container:
    """One test's container on the endpoint."""

    endpoint: AzuriteEndpoint
    name: str

    def url(self, prefix: str = "lake", scheme: str = "az") -> str:
        return f"{scheme}://{self.name}/{prefix}" if prefix else f"{scheme}://{self.name}"

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every blob's name under a prefix, in order."""
        from pyarrow.fs import FileSelector, FileType

        folder = prefix.rpartition("/")[0]  # a prefix may end inside a name
        selector = FileSelector(f"{self.name}/{folder}".rstrip("/"), recursive=True)
        selector.allow_not_found = True
        infos = self.endpoint.filesystem().get_file_info(selector)
        return sorted(
            info.path.removeprefix(f"{self.name}/")
            for info in infos
            if info.type == FileType.File and info.path.startswith(f"{self.name}/{prefix}")
        )

    def read(self, key: str) -> bytes:
        with self.endpoint.filesystem().open_input_stream(f"{self.name}/{key}") as blob:
            return bytes(blob.read())

    def write(self, key: str, data: bytes) -> None:
        with self.endpoint.filesystem().open_output_stream(f"{self.name}/{key}") as blob:
            blob.write(data)
