"""Partitions, parallel page plans and incremental marks as pure logic (no I/O)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tui_connector.config import ConfigError, LoadedConfig, SourceSpec, load_config
from tui_connector.exchange import Page
from tui_connector.incremental import HighWater, IncrementalError, merged
from tui_connector.paginate import paginator_for
from tui_connector.partitions import (
    WHOLE_SOURCE,
    ParentValues,
    Partition,
    partition_key,
    plan,
    stream_spec,
)

URL = "http://127.0.0.1:9/v1"
Write = Callable[..., LoadedConfig]


def source(write_config: Write, body: str, name: str = "s") -> SourceSpec:
    return write_config(f"sources:\n  {name}:\n{body}").sources[name]


# -- partition keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["eu", "a/b", "a%2Fb", ".", "..", ".hidden", "", "x" * 300, "ünï cödé", "a b", "A:B"],
)
def test_partition_keys_are_safe_file_names(value: str) -> None:
    key = partition_key(value)
    assert key and "/" not in key and key not in (".", "..") and not key.startswith(".")
    assert len(key) <= 120
    assert all(c.isascii() and (c.isalnum() or c in "-_.~%") for c in key), key


def test_partition_keys_are_injective() -> None:
    values = ["a/b", "a%2Fb", "a b", "a+b", "x" * 300, "x" * 299 + "y", ".", "%2E", "", "1"]
    keys = [partition_key(v) for v in values]
    assert len(set(keys)) == len(values)
    assert partition_key(1) == partition_key("1") == "1"


def test_partition_keys_differ_even_where_file_names_ignore_case() -> None:
    values = ["abc", "Abc", "aBc", "ABC", "x" * 200, "X" + "x" * 199, "é", "É"]
    keys = [partition_key(v).casefold() for v in values]
    assert len(set(keys)) == len(values)
    assert partition_key("north") == "north"  # lowercase values keep readable names
    assert partition_key("Berlin").startswith("Berlin~")


# -- planning ----------------------------------------------------------------------------------


def test_a_source_without_partitions_is_one_stream(write_config: Write) -> None:
    spec = source(write_config, f"    url: {URL}/items\n")
    assert plan(spec) == [Partition(WHOLE_SOURCE)]
    assert stream_spec(spec, Partition(WHOLE_SOURCE)) is spec


def test_date_windows_cover_start_to_end_exactly(write_config: Write) -> None:
    spec = source(
        write_config,
        f"    url: {URL}/items\n"
        "    partitions:\n"
        "      type: dates\n"
        "      start: 2024-01-01\n"
        "      end: 2024-01-02T03:00:00Z\n"
        "      step: 6h\n"
        "      start_param: since\n"
        "      end_param: until\n",
    )
    windows = plan(spec, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert windows is not None
    assert [w.key for w in windows] == [
        "2024-01-01T00-00-00",
        "2024-01-01T06-00-00",
        "2024-01-01T12-00-00",
        "2024-01-01T18-00-00",
        "2024-01-02T00-00-00",
    ]
    bounds = [(w.params["since"], w.params["until"]) for w in windows]
    assert bounds[0] == ("2024-01-01T00:00:00Z", "2024-01-01T06:00:00Z")
    assert bounds[-1] == ("2024-01-02T00:00:00Z", "2024-01-02T03:00:00Z")  # cut at the end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert not any(w.open_ended for w in windows)


@pytest.mark.parametrize(
    ("style", "first"),
    [("date", "2024-01-01"), ("epoch", 1704067200), ("epoch_ms", 1704067200000)],
)
def test_date_window_formats_and_body_fields(write_config: Write, style: str, first: Any) -> None:
    spec = source(
        write_config,
        f"    url: {URL}/items\n"
        "    method: POST\n"
        "    body: {variables: {first: 10}}\n"
        "    partitions:\n"
        "      type: dates\n"
        "      start: 2024-01-01\n"
        "      end: 2024-01-03\n"
        "      step: 1d\n"
        f"      format: {style}\n"
        "      start_body_field: variables.from\n"
        "      end_body_field: variables.to\n",
    )
    windows = plan(spec)
    assert windows is not None and [w.key for w in windows] == ["2024-01-01", "2024-01-02"]
    body = stream_spec(spec, windows[0]).body
    assert body == {"variables": {"first": 10, "from": first, "to": body["variables"]["to"]}}
    assert spec.body == {"variables": {"first": 10}}  # the template is not modified


def test_a_window_reaching_past_now_is_cut_and_open_ended(write_config: Write) -> None:
    spec = source(
        write_config,
        f"    url: {URL}/items\n"
        "    partitions: {type: dates, start: 2024-01-01, step: 1d, start_param: since, "
        "end_param: until}\n",
    )
    now = datetime(2024, 1, 3, 15, 30, tzinfo=UTC)
    windows = plan(spec, now=now)
    assert windows is not None and [w.key for w in windows][-1] == "2024-01-03"
    last = windows[-1]
    assert last.open_ended and last.params["until"] == "2024-01-03T15:30:00Z"
    later = plan(spec, now=datetime(2024, 1, 3, 18, 0, tzinfo=UTC))
    assert later is not None
    # The same window asks for more later: its identity changes, so it is fetched again.
    assert later[-1].key == last.key and later[-1].identity() != last.identity()
    assert later[0].identity() == windows[0].identity()


def test_value_partitions_go_into_a_param_a_body_field_or_the_path(
    write_config: Write, tmp_path: Path
) -> None:
    (tmp_path / "regions.txt").write_text("# regions\neu\n\nus west\n")
    spec = source(
        write_config,
        f"    url: {URL}/items/{{region}}\n"
        "    params: {limit: 10}\n"
        "    partitions: {type: values, values_file: regions.txt, path: region}\n",
    )
    parts = plan(spec)
    assert parts is not None and [p.key for p in parts] == ["eu", "us%20west"]
    assert stream_spec(spec, parts[1]).url == f"{URL}/items/us%20west"
    spec = source(
        write_config,
        f"    url: {URL}/items\n    partitions: {{type: values, values: [1, 2], param: shard}}\n",
    )
    parts = plan(spec)
    assert parts is not None
    assert dict(stream_spec(spec, parts[0]).params) == {"shard": "1"}


def test_parent_records_become_child_partitions(write_config: Write) -> None:
    config = write_config(
        "sources:\n"
        f"  repos:\n    url: {URL}/repos\n"
        "  issues:\n"
        f"    url: {URL}/repos/{{repo}}/issues\n"
        "    partitions:\n"
        "      type: parent\n"
        "      source: repos\n"
        "      value: id\n"
        "      path: repo\n"
        "      copy_fields: {repo_id: id, repo_name: meta.name}\n"
    )
    spec = config.sources["issues"]
    assert plan(spec) is None  # they come from the parent's records
    values = ParentValues(spec.partitions)  # type: ignore[arg-type]
    child = values.partition({"id": "a/b", "meta": {"name": "A"}})
    assert child is not None and child.key == "a%2Fb"
    assert child.copy == {"repo_id": "a/b", "repo_name": "A"}
    assert stream_spec(spec, child).url == f"{URL}/repos/a%2Fb/issues"
    assert values.partition({"name": "no id"}) is None and values.skipped == 1


def test_incremental_mark_goes_into_the_request(write_config: Write) -> None:
    spec = source(
        write_config,
        f"    url: {URL}/items\n"
        "    incremental: {cursor_field: updated_at, param: since, initial: '2024-01-01'}\n",
    )
    assert dict(stream_spec(spec, Partition(WHOLE_SOURCE), since="2024-02-01").params) == {
        "since": "2024-02-01"
    }


# -- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    partitions: {type: dates, start: 2024-01-01, step: 1 day, start_param: a}\n",
            "sources.s.partitions.step: '1 day' is not a step",
        ),
        (
            "    partitions: {type: dates, start: yesterday, step: 1d, start_param: a}\n",
            "sources.s.partitions.start: 'yesterday' is not a date or time",
        ),
        (
            "    partitions: {type: dates, start: 2024-01-01, step: 1d}\n",
            "give exactly one of 'start_param' or 'start_body_field'",
        ),
        (
            "    partitions: {type: dates, start: 2024-01-01, end: 2023-01-01, step: 1d, "
            "start_param: a}\n",
            "'end' (2023-01-01 00:00) is not after 'start'",
        ),
        (
            "    partitions: {type: dates, start: 2000-01-01, end: 2024-01-01, step: 1m, "
            "start_param: a}\n",
            "windows of 0:01:00 between start and end; at most 100,000",
        ),
        (
            "    partitions: {type: values, values: [a, b, a], param: x}\n",
            "the value 'a' is listed twice",
        ),
        ("    partitions: {type: values, values: [], param: x}\n", "the list of values is empty"),
        (
            "    partitions: {type: values, values: [a], param: x, path: y}\n",
            "give exactly one of 'param' (query parameter), 'body_field'",
        ),
        (
            "    partitions: {type: values, values_file: missing.txt, param: x}\n",
            "sources.s.partitions.values_file: missing.txt: file not found",
        ),
        (
            "    partitions: {type: values, values: [a], path: region}\n",
            "partitions.path is 'region' but the url has no {region} placeholder",
        ),
        (
            "    partitions: {type: values, values: [a], body_field: x}\n",
            "partitions.body_field puts a value in the JSON body, which needs 'method: POST'",
        ),
        (
            "    partitions: {type: parent, source: nope, value: id, param: x}\n",
            "sources.s.partitions.source: no source named 'nope'",
        ),
        (
            "    partitions: {type: parent, source: s, value: id, param: x}\n",
            "a source cannot be its own parent",
        ),
        (
            "    partitions: {type: weekly}\n",
            "sources.s.partitions: unknown type 'weekly'; use one of 'dates', 'values', 'parent'",
        ),
        (
            "    incremental: {cursor_field: updated_at}\n",
            "give exactly one of 'param' or 'body_field'",
        ),
        (
            "    incremental: {cursor_field: '[[', param: since}\n",
            "sources.s.incremental.cursor_field: not a valid JMESPath expression",
        ),
        ("    concurrency: {min: 9, max: 3}\n", "min (9) is above max (3)"),
        ("    concurrency: {min: 1, most: 3}\n", "sources.s.concurrency.most: unknown key 'most'"),
        ("    concurrency: 2.5\n", "sources.s.concurrency: Input should be a valid integer"),
    ],
)
def test_bad_partition_incremental_and_concurrency_configs(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(f"sources:\n  s:\n    url: {URL}/items\n{body}")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"{path}:")


def test_parents_that_form_a_cycle_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        + "".join(
            f"  {name}:\n    url: {URL}/items\n"
            f"    partitions: {{type: parent, source: {parent}, value: id, param: x}}\n"
            for name, parent in (("a", "b"), ("b", "c"), ("c", "a"))
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "parents form a cycle: a -> b -> c -> a" in str(caught.value)


def test_concurrency_auto_forms(write_config: Write) -> None:
    config = write_config(
        "defaults: {concurrency: auto}\n"
        "sources:\n"
        f"  a:\n    url: {URL}/a\n"
        f"  b:\n    url: {URL}/b\n    concurrency: {{min: 2, max: 30, start: 8}}\n"
        f"  c:\n    url: {URL}/c\n    concurrency: 3\n"
    )
    a, b, c = (config.sources[n] for n in "abc")
    assert a.auto_concurrency is not None and (a.auto_concurrency.min, a.concurrency) == (1, 4)
    assert b.auto_concurrency is not None and (b.auto_concurrency.max, b.concurrency) == (30, 8)
    assert c.auto_concurrency is None and c.concurrency == 3


# -- parallel page plans -------------------------------------------------------------------------


def first_page(spec: SourceSpec, records: int, body: dict[str, Any]) -> dict[str, Any] | None:
    paginator = paginator_for(spec)
    page = Page(url=spec.url, headers={}, body=body, records=[{"n": i} for i in range(records)])
    return paginator.advance(paginator.start(), page)


@pytest.mark.parametrize(
    ("pagination", "first_records", "body", "count"),
    [
        ("{type: page_number, stop: {total_pages: pages}}", 50, {"pages": 7}, 7),
        ("{type: page_number, stop: {total_records: total}}", 50, {"total": 237}, 5),
        # the server gave 40 a page although 100 were asked: its size counts
        (
            "{type: page_number, size_param: n, size: 100, stop: {total_records: total}}",
            40,
            {"total": 237},
            6,
        ),
        ("{type: offset, limit: 50, stop: {total_records: total}}", 50, {"total": 237}, 5),
        # an offset API capping the page size below the limit: offsets would skip records
        ("{type: offset, limit: 100, stop: {total_records: total}}", 40, {"total": 237}, None),
        ("{type: page_number, stop: {total_records: total, max_pages: 3}}", 50, {"total": 237}, 3),
        (
            "{type: page_number, parallel: false, stop: {total_pages: pages}}",
            50,
            {"pages": 7},
            None,
        ),
        ("{type: page_number}", 50, {}, None),  # no total: one by one
    ],
)
def test_page_count_after_the_first_page(
    write_config: Write,
    pagination: str,
    first_records: int,
    body: dict[str, Any],
    count: int | None,
) -> None:
    spec = source(write_config, f"    url: {URL}/items\n    pagination: {pagination}\n")
    state = first_page(spec, first_records, body)
    assert state is not None
    paginator = paginator_for(spec)
    assert paginator.page_count(state) == count
    if count is not None:
        third = paginator.request(paginator.seek(state, 2)).params
        expected = {"page": "3"} if "page_number" in pagination else {"offset": "100"}
        assert expected.items() <= third.items()
        # Only right after the first page: later states are not a plan's start.
        later = paginator.seek(state, 1)
        assert paginator.page_count({**later, "pages": 2}) is None


# -- incremental marks ---------------------------------------------------------------------------


def incremental(write_config: Write, extra: str = "") -> Any:
    spec = source(
        write_config,
        f"    url: {URL}/items\n    incremental: {{cursor_field: t, param: since{extra}}}\n",
    )
    return spec.incremental


def test_the_boundary_is_not_duplicated_and_the_mark_only_merges_at_the_end(
    write_config: Write,
) -> None:
    config = incremental(write_config, ", primary_key: id")
    first = HighWater(config, None, None)
    records = [{"id": i, "t": t} for i, t in ((1, "a"), (2, "b"), (3, "c"), (4, "c"))]
    assert first.new_records(records) == records
    assert first.pending == {"value": "c", "keys": ["3", "4"]}
    mark = merged(None, first.pending)
    second = HighWater(config, mark, None)
    assert second.since == "c"
    again = [{"id": 3, "t": "c"}, {"id": 4, "t": "c"}, {"id": 5, "t": "c"}, {"id": 6, "t": "d"}]
    assert second.new_records([{"id": 2, "t": "b"}, *again]) == again[2:]
    assert second.pending == {"value": "d", "keys": ["6"]}
    assert merged(mark, {"value": "c", "keys": ["5"]}) == {"value": "c", "keys": ["3", "4", "5"]}
    assert merged(mark, None) == mark


def test_initial_value_bounds_the_first_run_and_types_must_agree(write_config: Write) -> None:
    config = incremental(write_config, ", initial: 10")
    high = HighWater(config, None, None)
    assert high.since == 10
    assert high.new_records([{"t": 9}, {"t": 10}, {"t": 11}, {"x": 1}]) == [
        {"t": 10},
        {"t": 11},
        {"x": 1},
    ]
    assert high.without_cursor == 1
    with pytest.raises(IncrementalError, match="different types"):
        high.new_records([{"t": "2024-01-01"}])
    with pytest.raises(IncrementalError, match="must be a number or a string"):
        HighWater(config, None, None).new_records([{"t": {"nested": 1}}])
