"""podnet.cni.jsonio against the json module: the same values in, the same text out."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.cni import jsonio

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


def same(a, b) -> bool:
    """Equality where NaN equals NaN (json round-trips it)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300)
@given(values, st.sampled_from([None, 0, 2, 4]))
def test_dumps_is_json_dumps(value, indent):
    assert jsonio.dumps(value, indent=indent) == json.dumps(value, indent=indent)


@settings(max_examples=300)
@given(values, st.sampled_from([None, 4]), st.sampled_from(["", " ", "\n\t "]))
def test_loads_is_json_loads(value, indent, padding):
    text = padding + json.dumps(value, indent=indent) + padding
    assert same(jsonio.loads(text), json.loads(text))
    assert same(jsonio.loads(text.encode()), json.loads(text.encode()))


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,]", '{"a" 1}', "\ufeff{}", "nul", '"\x01"'])
def test_invalid_input_fails_with_jsons_message(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        jsonio.loads(text)
    assert str(got.value) == str(expected.value)


@given(st.binary(max_size=40))
def test_random_bytes_fail_or_parse_as_json_does(data):
    try:
        expected = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        with pytest.raises(type(exc)):
            jsonio.loads(data)
    else:
        assert same(jsonio.loads(data), expected)


def test_tuples_encode_as_lists_and_bad_keys_are_refused():
    assert jsonio.dumps({"a": (1, "b")}, indent=4) == json.dumps({"a": [1, "b"]}, indent=4)
    with pytest.raises(TypeError):
        jsonio.dumps({1: "x"})
    with pytest.raises(TypeError):
        jsonio.dumps(object())
