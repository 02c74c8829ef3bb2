"""JSON in and out for the plugin executable, on the standard library's C accelerator.

`import json` costs a plugin run about 5 ms, most of it `re` (json.decoder and json.encoder
compile regular expressions at import), against a whole ADD of about 10 ms for the reference
plugin. The parsing and the string escaping json does are in its C module `_json`, which
imports in microseconds; this module drives it directly. Input that `_json` rejects goes to
`json.loads` after all, so an error message is exactly json's. Output is byte for byte what
`json.dumps(obj, indent=...)` writes (tests/test_cni_jsonio.py checks both with hypothesis).
"""

from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # an interpreter without the accelerator: the json package does it all
    _make_scanner = None

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_WHITESPACE = " \t\n\r"


class _Options:
    """What json.JSONDecoder() hands its scanner: the defaults of json.loads."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _make_scanner(_Options()) if _make_scanner is not None else None


def loads(data: str | bytes):
    """json.loads: the same values, and for invalid input the same exception and message."""
    if _scan is not None:
        try:
            text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
            if not text.startswith("\ufeff"):  # json refuses (str) or skips (bytes) a BOM
                stripped = text.strip(_WHITESPACE)
                value, end = _scan(stripped, 0)
                if end == len(stripped):
                    return value
        except Exception:  # noqa: BLE001 - StopIteration, a decode error: json explains it below
            pass
    import json  # only to explain an error: json costs ms that _json does not

    return json.loads(data)


def dumps(obj, indent: int | None = None) -> str:
    """json.dumps(obj, indent=indent) for JSON values (dict with str keys, list, tuple, str,
    int, float, bool, None)."""
    if _scan is None:
        import json  # only to explain an error

        return json.dumps(obj, indent=indent)
    return "".join(_encode(obj, 0, None if indent is None else " " * indent))


def _encode(obj, level: int, indent: str | None):
    if isinstance(obj, str):
        yield _quote(obj)
    elif obj is None:
        yield "null"
    elif obj is True:
        yield "true"
    elif obj is False:
        yield "false"
    elif isinstance(obj, int):
        yield int.__repr__(obj)
    elif isinstance(obj, float):
        yield _float(obj)
    elif isinstance(obj, (list, tuple)):
        yield from _container("[", "]", [_encode(v, level + 1, indent) for v in obj], level, indent)
    elif isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            items.append(_member(key, value, level + 1, indent))
        yield from _container("{", "}", items, level, indent)
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _member(key: str, value, level: int, indent: str | None):
    yield _quote(key)
    yield ": "
    yield from _encode(value, level, indent)


def _container(opening: str, closing: str, parts: list, level: int, indent: str | None):
    if not parts:
        yield opening + closing
        return
    yield opening
    if indent is None:
        separator, inner, outer = ", ", "", ""
    else:
        inner = "\n" + indent * (level + 1)
        separator, outer = "," + inner, "\n" + indent * level
    yield inner
    for i, part in enumerate(parts):
        if i:
            yield separator
        yield from part
    yield outer
    yield closing


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
