"""The one JSON decoding path for everything that comes from outside: API
bodies, list cursors, SQS message bodies.

`loads` either returns a value that can be stored and encoded again, or raises
`BadInputError` with a clear message. It never raises anything else, whatever
the input: the standard library's parser raises RecursionError on deep
nesting, ValueError on an integer of more than 4,300 digits, and accepts lone
surrogates ("\\ud800") that then fail with UnicodeEncodeError at the first
`.encode()`. Here each is checked before or during parsing:

- the text is strict UTF-8 (bytes are decoded with errors="strict");
- nesting is at most `max_depth` arrays/objects, counted before parsing;
- integers have at most `max_int_digits` digits; NaN and Infinity are refused,
  and a float that overflows to infinity too; a decimal is at most
  `MAX_FLOAT_CHARS` characters (a double's 17 significant digits, sign, point
  and exponent fit in 25), so no number is silently rounded away;
- an object names each key once (the standard library keeps the last one);
- strings (keys included) are at most `max_string` characters and hold no
  lone surrogate.

Standard library only.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import BadInputError

MAX_DEPTH = 64
MAX_INT_DIGITS = 64
MAX_STRING_CHARS = 1024 * 1024
MAX_FLOAT_CHARS = 32
MAX_INT_PARAM_DIGITS = 18  # an integer in a query parameter or a header
_ASCII_INT = re.compile(f"[0-9]{{1,{MAX_INT_PARAM_DIGITS}}}")

# A JSON string literal (escapes included), a bracket, or an unterminated string's
# opening quote: one linear pass finds the nesting depth without parsing.
_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)


class _Refused(Exception):
    pass


def _depth(text: str) -> int:
    depth = deepest = 0
    for m in _TOKEN.finditer(text):
        token = m.group()
        if token == '"':
            raise _Refused("a string is not terminated")
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _check_strings(value: Any, max_string: int) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if len(v) > max_string:
                raise _Refused(f"a string is longer than {max_string} characters")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise _Refused("a string holds a lone surrogate (\\ud800-\\udfff)") from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def loads(
    data: str | bytes,
    *,
    what: str = "request body",
    max_depth: int = MAX_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
    max_string: int = MAX_STRING_CHARS,
) -> Any:
    """Decode JSON text from outside, or raise BadInputError naming `what`."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInputError(f"{what} is not valid UTF-8 (byte {e.start})") from None
    else:
        text = data
    try:
        if _depth(text) > max_depth:
            raise _Refused(f"nesting is deeper than {max_depth} levels")

        def parse_int(s: str) -> int:
            if len(s.lstrip("-")) > max_int_digits:
                raise _Refused(f"an integer has more than {max_int_digits} digits")
            return int(s)

        def parse_float(s: str) -> float:
            if len(s) > MAX_FLOAT_CHARS:
                raise _Refused(f"a decimal is longer than {MAX_FLOAT_CHARS} characters")
            f = float(s)
            if not math.isfinite(f):
                raise _Refused(f"a number is out of range: {s[:40]}")
            return f

        def parse_constant(s: str) -> Any:
            raise _Refused(f"{s} is not JSON")

        def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, v in pairs:
                if key in out:
                    raise _Refused(f"the key {key[:80]!r} appears twice in one object")
                out[key] = v
            return out

        value = json.loads(
            text,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
            object_pairs_hook=unique_keys,
        )
        _check_strings(value, max_string)
        return value
    except _Refused as e:
        raise BadInputError(f"{what} is refused: {e}") from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{what} is not valid JSON: {e}") from None
    except (ValueError, RecursionError, UnicodeError, TypeError) as e:
        # Defence in depth: the checks above should leave nothing for here.
        raise BadInputError(f"{what} is not valid JSON: {type(e).__name__}") from None


def int_param(text: str, *, what: str, lo: int, hi: int) -> int:
    """A whole number from outside as text (a query parameter, a header): ASCII
    digits only (`str.isdigit` also takes "²" and "٣"), at most
    `MAX_INT_PARAM_DIGITS` of them, within [lo, hi]; else BadInputError naming
    the range."""
    if not _ASCII_INT.fullmatch(text) or not lo <= int(text) <= hi:
        raise BadInputError(f"{what} must be a whole number from {lo} to {hi} in ASCII digits")
    return int(text)


def is_ascii_count(text: str) -> bool:
    """`text` is a whole number in at most `MAX_INT_PARAM_DIGITS` ASCII digits."""
    return _ASCII_INT.fullmatch(text) is not None


__all__ = [
    "MAX_DEPTH",
    "MAX_FLOAT_CHARS",
    "MAX_INT_DIGITS",
    "MAX_INT_PARAM_DIGITS",
    "MAX_STRING_CHARS",
    "int_param",
    "is_ascii_count",
    "loads",
]
