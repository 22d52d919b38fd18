"""Response bodies decode exactly as the stdlib's `json.loads` decodes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui_connector.http.body import decode_json

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
