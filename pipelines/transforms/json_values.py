"""JSON values as the contract reads them: parsed exactly, then checked field by field.

msgspec, a strict JSON parser, gives a JSON number with a fraction or exponent as the digits
written (`JsonNumber`), so an amount is never rounded through a double, and a string is told
from a number. `VALUE_CHECKS` holds, by a fold field's type, the check that turns its JSON
value into text Spark casts exactly, or refuses it with a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import msgspec

MAX_INTEGER_DIGITS = 18  # of a decimal field: at most 18 integer and 9 fractional digits
MAX_SEQ = 2**63 - 1  # the largest bigint: of a `seq`, and of an integer field
AMOUNT_LIMIT = 10**MAX_INTEGER_DIGITS

# A decimal number as JSON writers and people write it: `12`, `-0.5`, `.5`, `5.`, `1e-3`.
_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+)(?:[eE][+-]?[0-9]+)?")
# The common amount, taken as it is written: no exponent, digits that fit.
_PLAIN_AMOUNT = re.compile(r"-?[0-9]{1,18}(?:[.][0-9]{1,9})?")
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
_MEMBER_END = re.compile(rb'"[ \t\r\n]*:')  # a member name's closing quote and its colon
_NINE_PLACES = Decimal("1e-9")


class JsonNumber(str):
    """A JSON number with a fraction or exponent, as written: never rounded through a float."""


_DECODER = msgspec.json.Decoder(float_hook=JsonNumber)


def parse_object(raw: bytes) -> dict[str, Any] | None:
    """The record as a JSON object, or None when it is not exactly one valid object.

    msgspec rejects bad UTF-8, trailing text and non-standard constants, but keeps the last
    of repeated member names, which JSON readers disagree on: such a record is malformed.
    """
    try:
        doc = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return None
    if type(doc) is not dict:
        return None
    # Each member ends in `"` and `:`; more of those than members means a repeated name,
    # or a nested object or string holding one: only then is the record parsed again.
    members = len(doc)
    if raw.count(b'":') != members and len(_MEMBER_END.findall(raw)) != members:
        return None if _has_repeated_names(raw) else doc
    return doc


def _has_repeated_names(raw: bytes) -> bool:
    def reject(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise ValueError("repeated member name")
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=reject)
    except (ValueError, RecursionError):
        return True
    return False


def _decimal(value: Any, name: str) -> tuple[str | None, str | None]:
    """(the number as text Spark casts exactly, None) or (None, the reason it is refused).

    A JSON number or a string holding one; at most 18 integer and 9 fractional significant
    digits, judged on the digits as written (`1e400` and `1.0000000001` are out of range).
    """
    kind = type(value)
    if kind is int:
        fits = -AMOUNT_LIMIT < value < AMOUNT_LIMIT
        return (str(value), None) if fits else (None, f"{name}_out_of_range")
    if kind is not JsonNumber and (kind is not str or not _NUMERIC_TEXT.fullmatch(value)):
        return None, f"bad_type:{name}"
    if _PLAIN_AMOUNT.fullmatch(value):
        return value, None
    text = _exact_amount_text(value)
    return (text, None) if text is not None else (None, f"{name}_out_of_range")


def _integer(value: Any, name: str) -> tuple[str | None, str | None]:
    """A JSON integer, or a string of digits with an optional `-`, within a signed bigint."""
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int:
        return None, f"bad_type:{name}"
    if not -MAX_SEQ - 1 <= value <= MAX_SEQ:
        return None, f"{name}_out_of_range"
    return str(value), None


def _string(value: Any, name: str) -> tuple[str | None, str | None]:
    return (value, None) if type(value) is str else (None, f"bad_type:{name}")


def _json_object(value: Any, name: str) -> tuple[str | None, str | None]:
    """A JSON object, or a string holding one, as canonical text: compact, member names
    sorted, numbers without trailing zeros. Equal objects give equal text, however written."""
    if type(value) is str:
        value = parse_object(value.encode())
    if type(value) is not dict:
        return None, f"bad_type:{name}"
    return _ENCODE_JSON(_plain_numbers(value)).decode(), None


def _plain_numbers(value: Any) -> Any:
    """`JsonNumber`s as numbers a JSON encoder writes: `1.50` as 1.5, `1.0` and `1e2` as 1
    and 100, so one value has one text."""
    kind = type(value)
    if kind is dict:
        return {name: _plain_numbers(item) for name, item in value.items()}
    if kind is list:
        return [_plain_numbers(item) for item in value]
    if kind is JsonNumber:
        number = Decimal(value)
        if not number.is_finite():
            return number
        number = number.normalize()
        if number == number.to_integral_value() and number.adjusted() < 30:
            return int(number)
        return number
    return value


_ENCODE_JSON = msgspec.json.Encoder(order="sorted", decimal_format="number").encode
VALUE_CHECKS: dict[str, Callable[[Any, str], tuple[str | None, str | None]]] = {
    "decimal": _decimal,
    "integer": _integer,
    "string": _string,
    "json": _json_object,
}


def _exact_amount_text(number: str) -> str | None:
    """The number's value with at most 9 decimal places, or None when it does not fit."""
    try:
        amount = Decimal(number)
    except InvalidOperation:  # an exponent beyond any decimal
        return None
    if amount.is_zero():
        return "0"
    if amount.adjusted() >= MAX_INTEGER_DIGITS:
        return None
    # Below 1e18 the quantized value has at most 27 digits: exact in the default context.
    quantized = amount.quantize(_NINE_PLACES, rounding=ROUND_DOWN)
    return str(quantized) if quantized == amount else None
