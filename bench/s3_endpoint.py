"""A local S3 endpoint for the lake workloads: moto's `ThreadedMotoServer` on 127.0.0.1, in
the bench's own process, its threads on the demo API's core. Workers reach it over HTTP exactly
as they would reach S3, through the standard environment variables (`worker_env`)."""

from __future__ import annotations

import logging
import os
import resource
import urllib.request
from typing import Any

BUCKET = "bench"


def moto_missing() -> str | None:
    """Why the endpoint cannot run here, or None."""
    try:
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError as exc:
        return f"moto[server] is not installed ({exc})"
    return None


class S3Endpoint:
    """`with S3Endpoint(cpus) as s3:` a running endpoint with one empty bucket."""

    def __init__(self, cpus: set[int] | None) -> None:
        self.cpus = cpus
        self.url = ""
        self._server: Any = None
        self._lakes = 0

    def __enter__(self) -> S3Endpoint:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # Threads inherit the affinity of the thread that starts them: the server's thread, and
        # the thread it starts per request, run where the demo API runs, not on the client's.
        mine = os.sched_getaffinity(0)
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)
        try:
            self._server.start()
        finally:
            os.sched_setaffinity(0, mine)
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _call(self, method: str, path: str) -> None:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    def fresh_lake(self) -> str:
        """An `out:` URL in an emptied store: what earlier runs wrote is dropped (moto keeps
        objects in this process's memory), and every run gets a prefix of its own."""
        self._call("POST", "/moto-api/reset")
        self._call("PUT", f"/{BUCKET}")
        self._lakes += 1
        return f"s3://{BUCKET}/lake-{self._lakes}"

    def worker_env(self) -> dict[str, str]:
        """What a worker needs to write there: the standard AWS variables."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
        }

    @staticmethod
    def cpu_seconds() -> float:
        """CPU time of this process (the bench itself waits on its workers: this is the
        endpoint's)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
