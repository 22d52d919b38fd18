"""JSON Lines (NDJSON) response bodies end to end over real HTTP: read by their content type or
by `response_format`, paginated by page numbers (in parallel) and by Link headers, records
picked from each line, a bad line named by its number, and the size cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer

from helpers import RECORDS, expected_ids, lake_ids, run_done, run_failed, serving

EVENTS = (
    b'{"type": "item", "data": {"id": "ev-1"}}\r\n'
    b"\r\n"
    b'{"type": "progress", "done": 1}\n'
    b'{"type": "item", "data": {"id": "ev-2"}}\n'
)
BAD_THIRD_LINE = b'{"id": "a"}\n{"id": "b"}\n{"id": "c", oops}\n{"id": "d"}\n'


def items(url: str, body: str) -> str:
    return f"commit_interval: 0\nsources:\n  items:\n    url: {url}\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )


@pytest.fixture
async def lines_api() -> AsyncIterator[str]:
    """`GET /events` and `/bad`: fixed JSON Lines bodies, served as `?type=` says."""
    bodies = {"events": EVENTS, "bad": BAD_THIRD_LINE}

    async def serve(request: web.Request) -> web.Response:
        content_type = request.query.get("type", "application/x-ndjson")
        body = bodies[request.match_info["name"]]
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/{name}", serve)
    async with serving(app) as url:
        yield url


@pytest.mark.parametrize(
    ("query", "pagination", "pages"),
    [
        (
            "",
            "concurrency: 4\npagination: {type: page_number, size_param: per_page, size: 20, "
            "stop: {total_records: {header: X-Total-Count}}}",
            -(-RECORDS // 20),  # in parallel, once the first page's header told the total
        ),
        ("?per_page=60", "pagination: {type: next_url}", -(-RECORDS // 60)),  # Link headers
    ],
)
async def test_json_lines_pages_land_every_record_once(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    query: str,
    pagination: str,
    pages: int,
) -> None:
    config = write_config(items(f"{demo.url}/v1/export/nd{query}", pagination))
    engine = await run_done(config)
    assert lake_ids(config.out) == expected_ids("nd")
    assert engine.telemetry.sources["items"].pages == pages


@pytest.mark.parametrize(
    ("content_type", "setting", "failure"),
    [
        ("application/jsonl", "", None),
        ("text/plain", "", "(text/plain; Extra data: line 3 column 1"),
        ("text/plain", "response_format: jsonl", None),
        ("application/x-ndjson", "response_format: json", "(application/x-ndjson; Extra data"),
    ],
)
async def test_json_lines_are_read_by_their_content_type_or_as_the_config_says(
    lines_api: str,
    write_config: Callable[..., LoadedConfig],
    content_type: str,
    setting: str,
    failure: str | None,
) -> None:
    """Records are picked from the lines by a path over them: the item lines' `data`."""
    records = "records: \"[?type=='item'].data\"\nretry: {max_attempts: 1}\n"
    config = write_config(items(f"{lines_api}/events?type={content_type}", records + setting))
    if failure is None:
        await run_done(config)
        assert lake_ids(config.out) == {"ev-1": 1, "ev-2": 1}
    else:
        error = await run_failed(config)
        assert error.startswith(f"response is not valid JSON {failure}"), error
        # The hint comes last, after what the server sent.
        assert error.endswith("; it looks like JSON Lines: set response_format: jsonl") == (
            "response_format" not in setting
        )


async def test_a_bad_line_fails_the_source_naming_its_number(
    lines_api: str, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(items(f"{lines_api}/bad", "retry: {max_attempts: 1}"))
    error = await run_failed(config)
    assert error.startswith(
        "response is not valid JSON Lines (application/x-ndjson; line 3 is not valid JSON "
        "(Expecting property name enclosed in double quotes at column 13): "
        '{"id": "c", oops}) after 1 attempt'
    ), error
    assert lake_ids(config.out) == {}


async def test_the_size_cap_holds_for_json_lines(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        items(f"{demo.url}/v1/export/ndc?per_page=1000", "max_response_size: 4kB")
    )
    assert "the response is larger than max_response_size" in await run_failed(config)
