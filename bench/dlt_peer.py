"""The peer: dlt's `rest_api` source pulling the benchmark's peer dataset into a local
filesystem destination (JSON Lines, like tui-connector's lake), configured as a dlt user would.

Runs in its own virtualenv (bench/.venv, which has dlt; the project's does not):
    bench/.venv/bin/python bench/dlt_peer.py JOB.json RESULT.json

`settings: "default"` leaves every dlt setting alone (resources are extracted one after the
other in the main thread); `settings: "parallel"` is dlt's documented way to go faster:
`parallelized=True` on the source, so each resource runs in the extract thread pool, with as
many extract workers as there are resources (one request in flight per resource: dlt's
paginators follow pages one after the other).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    work = Path(job["work_dir"])
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network here but loopback
    os.environ["DLT_DATA_DIR"] = str(work / "dlt-data")
    parallel = job["settings"] == "parallel"
    if parallel:
        os.environ["EXTRACT__WORKERS"] = str(len(job["datasets"]))

    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": job["base_url"] + "/v1/"},
            "resource_defaults": {
                "endpoint": {
                    "params": {"per_page": job["page_size"], "dataset_size": job["records"]},
                    "data_selector": "data",
                    "paginator": {
                        "type": "page_number",
                        "base_page": 1,
                        "page_param": "page",
                        "total_path": "total_pages",
                    },
                },
            },
            "resources": [
                {"name": name, "endpoint": {"path": f"pages/{name}"}} for name in job["datasets"]
            ],
        },
        parallelized=parallel,
    )
    pipeline = dlt.pipeline(
        pipeline_name="peer",
        destination=dlt.destinations.filesystem(bucket_url=str(work / "lake")),
        dataset_name="peer",
        pipelines_dir=str(work / "pipelines"),
    )
    cpu = time.process_time()
    started = time.monotonic()
    pipeline.run(source, loader_file_format="jsonl")
    wall = time.monotonic() - started
    cpu_seconds = time.process_time() - cpu
    counts: dict[str, Any] = pipeline.last_trace.last_normalize_info.row_counts
    records = sum(count for table, count in counts.items() if table in job["datasets"])
    result = {
        "wall_s": wall,
        "records": records,
        "cpu_s": cpu_seconds,  # this process only (normalize may use worker processes)
        "dlt_version": dlt.__version__,
        "settings": job["settings"],
        "extract_workers": len(job["datasets"]) if parallel else 5,
    }
    Path(sys.argv[2]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
