"""Parse raw records and give every record that breaks the contract a quarantine reason.

Each raw record is parsed once into a VARIANT (`try_parse_json`), which keeps JSON numbers
exact (a JSON float never passes through a double) and tells a string from a number. Every
field is then checked in contract order; the first failed check is the record's `reason`.
Valid records have `reason = NULL` and typed columns.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.config import FieldNames

AMOUNT_TYPE = "decimal(27,9)"  # at most 18 integer and 9 fractional digits
MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 9
JSON_WHITESPACE = " \t\r\n"
REQUIRED_FIELDS = ("event_id", "key", "seq", "event_time", "op", "amount")

_NUMBER = r"^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$"
# The common case, checked first: a plain decimal that fits, no exponent.
_PLAIN_AMOUNT = r"^-?\d{1,18}(\.\d{1,9})?$"
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")

VALIDATED_COLUMNS = (
    "source_file",
    "raw",
    "event_id",
    "key",
    "seq",
    "event_time",
    "op",
    "amount",
    "ingested_at",
    "reason",
)


def parse_events(raw_df: DataFrame, fields: FieldNames, ops: Iterable[str]) -> DataFrame:
    """`(source_file, raw)` -> one row per record with typed fields and a `reason` or NULL."""
    # Parsed inside a one-element array: `try_parse_json` stops after the first value and
    # ignores what follows, while in `[raw]` any text after the object breaks the array.
    wrapped = F.concat(F.lit("["), F.col("raw"), F.lit("]"))
    parsed_df = raw_df.select("source_file", "raw", F.try_parse_json(wrapped).alias("_doc")).select(
        "source_file",
        "raw",
        _is_json_object().alias("_is_object"),
        *[c for name, path in fields.as_dict().items() for c in _text_and_type(name, path)],
    )
    amount_text = _exact_number_text("amount", fields.as_dict()["amount"])
    return parsed_df.withColumn("amount_text", amount_text).select(
        "source_file",
        "raw",
        F.col("event_id_text").alias("event_id"),
        F.col("key_text").alias("key"),
        F.col("seq_text").try_cast("bigint").alias("seq"),
        _timestamp("event_time_text").alias("event_time"),
        F.col("op_text").alias("op"),
        F.col("amount_text").try_cast(AMOUNT_TYPE).alias("amount"),
        _timestamp("ingested_at_text").alias("ingested_at"),
        _reason(sorted(set(ops))).alias("reason"),
    )


def _is_json_object() -> Column:
    """`[raw]` parsed as an array holding one object and nothing else.

    Text after the object makes the array invalid, unless it starts with `]` (`{...}],[...`):
    that closes the array early and the parser ignores the rest. Wrapped as `{"x": raw}`
    instead, that text is invalid, and whatever starts with `}` was already invalid in the
    array: a line that parses both ways is one object. The second parse is paid only by the
    lines that hold a `]` at all.
    """
    doc, raw = F.col("_doc"), F.col("raw")
    one_element = F.try_variant_get(doc, "$[1]", "variant").isNull()
    as_member = F.try_parse_json(F.concat(F.lit('{"x":'), raw, F.lit("}")))
    no_early_close = F.when(raw.contains("]"), as_member.isNotNull()).otherwise(True)
    starts_object = F.ltrim(raw, F.lit(JSON_WHITESPACE)).startswith("{")
    # JSON text is UTF-8; the parser would turn bad bytes into U+FFFD and merge distinct keys.
    utf8 = F.is_valid_utf8(raw)
    is_object = doc.isNotNull() & utf8 & starts_object & one_element & no_early_close
    return F.coalesce(is_object, F.lit(False))


def _text_and_type(name: str, path: str) -> tuple[Column, Column]:
    """The field as text (numbers keep their exact digits) and its JSON type, e.g. `BIGINT`."""
    json_path = "$[0]['" + path.replace("'", "\\'") + "']"
    value = F.try_variant_get("_doc", json_path, "variant")  # looked up once, used twice
    return (
        F.try_variant_get(value, "$", "string").alias(f"{name}_text"),
        F.schema_of_variant(value).alias(f"{name}_type"),
    )


def _exact_number_text(name: str, path: str) -> Column:
    """The field's digits as written, also for a JSON number the parser held as a double.

    Numbers with an exponent or more than 38 digits come out of the VARIANT as a double
    (`-1e-400` as `-0.0`, 40 digits rounded), so their text is taken from the raw record:
    the value of a `"<path>":` member whose digits make the same double.
    """
    text, json_type = F.col(f"{name}_text"), F.col(f"{name}_type")
    number = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    pattern = '"\\Q' + path + '\\E"\\s*:\\s*' + number
    candidates = F.regexp_extract_all(F.col("raw"), F.lit(pattern), 1)
    as_parsed = F.filter(candidates, lambda c: c.try_cast("double") == text.try_cast("double"))
    written = F.coalesce(F.try_element_at(as_parsed, F.lit(1)), F.lit("unmatched"))
    return F.when(json_type.isin("DOUBLE", "FLOAT"), written).otherwise(text)


def _is_absent(name: str) -> Column:
    return F.col(f"{name}_type").isNull() | (F.col(f"{name}_type") == "VOID")


def _is_string(name: str) -> Column:
    return F.col(f"{name}_type") == "STRING"


def _timestamp(text_col: str) -> Column:
    text = F.col(text_col)
    return F.when(text.rlike(_TIMESTAMP), text.try_cast("timestamp"))


def _reason(ops: list[str]) -> Column:
    """The first contract rule the record breaks, or NULL when it is valid."""
    checks = [F.when(~F.col("_is_object"), F.lit("malformed_json"))]
    checks += [F.when(_is_absent(name), F.lit(f"missing_field:{name}")) for name in REQUIRED_FIELDS]
    checks += [
        F.when(~_is_string(name) | (F.trim(F.col(f"{name}_text")) == ""), F.lit(f"bad_type:{name}"))
        for name in ("event_id", "key")
    ]
    checks += [
        F.when(~_is_valid_seq(), F.lit("bad_seq")),
        F.when(
            ~_is_string("event_time") | _timestamp("event_time_text").isNull(),
            F.lit("bad_type:event_time"),
        ),
        F.when(~_is_string("op") | ~F.col("op_text").isin(ops), F.lit("unknown_op")),
        F.when(~_is_numeric_amount(), F.lit("bad_type:amount")),
        F.when(~_amount_fits(), F.lit("amount_out_of_range")),
        F.when(
            ~_is_absent("ingested_at")
            & (~_is_string("ingested_at") | _timestamp("ingested_at_text").isNull()),
            F.lit("bad_type:ingested_at"),
        ),
    ]
    return F.coalesce(*checks)


def _is_valid_seq() -> Column:
    seq_type, seq_text = F.col("seq_type"), F.col("seq_text")
    is_integral = (
        seq_type.isin(*_INTEGER_TYPES)
        | (seq_type.startswith("DECIMAL(") & seq_type.endswith(",0)"))
        | (_is_string("seq") & seq_text.rlike(r"^\d+$"))
    )
    seq = seq_text.try_cast("bigint")
    return F.coalesce(is_integral & seq.isNotNull() & (seq >= 1), F.lit(False))


def _is_plain_amount() -> Column:
    return F.col("amount_text").rlike(_PLAIN_AMOUNT)


def _is_numeric_amount() -> Column:
    amount_type, text = F.col("amount_type"), F.col("amount_text")
    is_number_type = amount_type.isin(*_INTEGER_TYPES, "DOUBLE", "FLOAT") | amount_type.startswith(
        "DECIMAL("
    )
    # A double's text is its written digits (`_exact_number_text`), so `1e400` is numeric
    # here and out of range in `_amount_fits`.
    is_numeric_text = text.rlike(_NUMBER) & text.rlike(r"\d")
    is_number = F.when(_is_plain_amount(), True).otherwise(is_numeric_text)
    return (is_number_type | _is_string("amount")) & is_number


def _amount_fits() -> Column:
    """True when the number has at most 18 integer and 9 fractional significant digits.

    Works on the text, so `1e400`, `1.0000000001` and 40-digit integers are caught exactly
    instead of being rounded by a cast.
    """
    text = F.col("amount_text")
    int_digits = F.regexp_extract(text, _NUMBER, 1)
    frac_digits = F.regexp_extract(text, _NUMBER, 2)
    exponent = F.regexp_extract(text, _NUMBER, 3)
    # Exponents past six digits are out of range whatever the mantissa (unless it is zero);
    # leaving them NULL keeps the arithmetic below from overflowing.
    exponent_value = F.when(exponent == "", F.lit(0)).when(
        F.length(exponent) <= 7, exponent.try_cast("int")
    )
    mantissa = F.concat(int_digits, frac_digits)
    no_leading = F.regexp_replace(mantissa, "^0+", "")
    significant = F.regexp_replace(no_leading, "0+$", "")
    point = F.length(int_digits) + exponent_value
    leading_zeros = F.length(mantissa) - F.length(no_leading)
    last_digit = F.length(mantissa) - (F.length(no_leading) - F.length(significant))
    is_zero = significant == ""
    fits = (point - leading_zeros <= MAX_INTEGER_DIGITS) & (
        last_digit - point <= MAX_FRACTION_DIGITS
    )
    exact_check = F.coalesce(text.rlike(_NUMBER) & (is_zero | fits), F.lit(False))
    return F.when(_is_plain_amount(), True).otherwise(exact_check)
