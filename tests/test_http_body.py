"""Response bodies decode exactly as the stdlib's `json.loads` decodes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui_connector.config.schema import ResponseFormat
from tui_connector.http.body import BadJsonLine, body_format, decode_json, decode_json_lines

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.integers(min_value=-(2**70), max_value=-(2**62))
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_response_bodies_decode_exactly_as_the_stdlib_decodes_them(value: Any) -> None:
    body = json.dumps(value).encode()
    assert repr(decode_json(body)) == repr(json.loads(body))  # repr: 1 and 1.0 differ


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 123456789012345678901234567890}',  # orjson alone: 1.2345678901234568e+29
        b"-9223372036854775809",  # orjson alone: -9.223372036854776e+18
        b"18446744073709551616",
        b'{"n": NaN, "big": Infinity}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark
        '{"a": "Zoë"}'.encode("utf-16"),
        b"1e400",
    ],
)
def test_response_bodies_orjson_would_refuse_or_change_decode_as_the_stdlib_does(
    body: bytes,
) -> None:
    assert repr(decode_json(body)) == repr(json.loads(body))


def test_an_invalid_body_raises_the_stdlib_error_with_its_position() -> None:
    with pytest.raises(json.JSONDecodeError, match=r"^Expecting property name.*line 1 column 9"):
        decode_json(b'{"a": 1,,}')


# -- JSON Lines --------------------------------------------------------------------------------


@given(st.lists(JSON_VALUES, max_size=8))
def test_json_lines_decode_each_line_exactly_as_the_stdlib_decodes_it(values: list[Any]) -> None:
    body = "".join(f"{json.dumps(value)}\n" for value in values).encode()
    assert repr(decode_json_lines(body)) == repr([json.loads(json.dumps(v)) for v in values])


def test_json_lines_skip_blank_lines_and_take_any_line_end() -> None:
    body = b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n[2, {"n": NaN}]\r\n"three"\n\n4'
    assert repr(decode_json_lines(body)) == repr([{"a": 1}, [2, {"n": float("nan")}], "three", 4])
    assert decode_json_lines(b"") == [] and decode_json_lines(b"\n \n") == []
    assert decode_json_lines(b'{"id": 123456789012345678901234567890}\n1') == [
        {"id": 123456789012345678901234567890},
        1,
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"a": 1}\n\n{"a": \n{"a": 3}',
            r'^line 3 is not valid JSON \(Expecting value at column 7\): \{"a":$',
        ),
        (b'{"a": 1} {"a": 2}\n', r"^line 1 is not valid JSON \(Extra data at column 10\)"),
        (b'1\n\xff\xfe"x"\n', r"^line 2 is not valid JSON \("),
        (b"[" + b"x" * 200 + b"\n", r"^line 1 .*: \[x{78}…$"),
    ],
)
def test_a_bad_json_line_is_named_by_its_number(body: bytes, message: str) -> None:
    with pytest.raises(BadJsonLine, match=message):
        decode_json_lines(body)


@pytest.mark.parametrize(
    ("configured", "content_type", "read_as"),
    [
        ("auto", "application/x-ndjson", "jsonl"),
        ("auto", "application/jsonl; charset=utf-8", "jsonl"),
        ("auto", "Application/X-JSONLines", "jsonl"),
        ("auto", "application/json", "json"),
        ("auto", "text/plain", "json"),
        ("auto", "", "json"),
        ("json", "application/x-ndjson", "json"),
        ("jsonl", "text/plain", "jsonl"),
    ],
)
def test_the_body_format_follows_the_config_or_the_content_type(
    configured: ResponseFormat, content_type: str, read_as: str
) -> None:
    assert body_format(configured, content_type) == read_as
