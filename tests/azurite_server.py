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
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Azurite's development account and its key, published in Azurite's documentation.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
NODE_SERVERS = Path(__file__).resolve().parent / "node"
BLOB_SERVER = NODE_SERVERS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
INSTALL = "python3 scripts/dev.py test (or: cd tests/node && npm install)"
_LISTENING = re.compile(r"successfully listens on (http://\S+)")
# A start takes about a second; a loaded machine may need many more.
START_WITHIN = 60.0


class AzuriteMissing(RuntimeError):
    """node, or Azurite, is not installed: the message says how to install it."""


class AzuriteEndpoint:
    """Azurite's blob service on an ephemeral 127.0.0.1 port, its data in memory."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=40)
        self._listening = threading.Event()
        self.url = ""  # of the service; the account's endpoint is `account_url`
        self._numbers = itertools.count(1)

    @property
    def account_url(self) -> str:
        return f"{self.url}/{ACCOUNT}"

    def start(self) -> AzuriteEndpoint:
        node = shutil.which("node")
        if node is None:
            raise AzuriteMissing(f"the Azure tests need node (20 or newer) and Azurite: {INSTALL}")
        if not BLOB_SERVER.exists():
            raise AzuriteMissing(f"Azurite is not installed in tests/node: {INSTALL}")
        self._process = subprocess.Popen(
            [
                node,
                str(BLOB_SERVER),
                *("--blobHost", "127.0.0.1", "--blobPort", "0"),  # 0: a free port, printed
                *("--inMemoryPersistence", "--extentMemoryLimit", "256"),
                "--disableTelemetry",  # the tests reach no host but 127.0.0.1
                "--skipApiVersionCheck",  # the Rust clients send an API version of their own
                "--loose",
                "--silent",  # no line per request
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=NODE_SERVERS,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._listening.wait(START_WITHIN) or not self.url:
            self.stop()
            said = "".join(self._output).strip() or "nothing"
            raise RuntimeError(f"Azurite did not start in {START_WITHIN:.0f} s; it said: {said}")
        return self

    def _read_output(self) -> None:
        """Keep reading what Azurite prints (a full pipe would stall it); the first address
        it listens on is the endpoint. The end of its output ends the wait too."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)
            found = _LISTENING.search(line)
            if found and not self.url:
                self.url = found.group(1).rstrip("/")
                self._listening.set()
        self._listening.set()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> AzuriteEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
