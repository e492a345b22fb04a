"""Contract section 1 on typed columns: Parquet sources that already hold the contract's types.

A Parquet file whose columns have the contract's types (strings, integers, timestamps,
decimals) needs no text parsing: each rule is checked on the columns by Spark expressions,
on the JVM, in the order the JSON path checks them, so a row gets the reason its JSON text
would get. Its raw text is the row as JSON, as for every Parquet row. A source with a column
of another type (an amount as a string or a double, a snapshot's `data`) is read as JSON text
instead, so its values follow the JSON rules exactly (`typed_plan` says which).
"""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ByteType,
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from pipelines.config import FieldNames
from pipelines.folds.base import COMMON_NAMES, EventField, Fold
from pipelines.schema import RAW, SOURCE_FILE, Source
from pipelines.transforms.json_values import AMOUNT_LIMIT, MAX_SEQ
from pipelines.transforms.records import BAD_INGESTED_AT
from pipelines.transforms.validate import parse_events, timestamp_from_text, within_readers_range

INTEGRAL = (ByteType, ShortType, IntegerType, LongType)
MOMENTS = (TimestampType, TimestampNTZType, DateType)
# Python's `str.strip()`, which the JSON path uses: Unicode white space and \x1c-\x1f.
_BLANK = r"(?U)^[\s\x{1c}-\x{1f}]*$"
_NINE_PLACES = DecimalType(27, 9)


def typed_plan(schema: StructType, fields: FieldNames, fold: Fold) -> dict[str, str] | None:
    """The source column of each event field when every present one has a type checked
    here (an absent field is a missing one); None when the rows must go through JSON."""
    columns = {f.name: f.dataType for f in schema.fields if f.name not in (SOURCE_FILE, RAW)}
    names = fields.as_dict()
    plan = {}
    for field in (f.name for f in fold.typed_fields):
        column = names.get(field, field)
        if column in columns and not _checkable(field, columns[column], fold):
            return None
        plan[field] = column
    return plan


def _checkable(field: str, data_type: DataType, fold: Fold) -> bool:
    if field in ("event_id", "key", "op"):
        return isinstance(data_type, StringType)
    if field == "seq":
        return isinstance(data_type, INTEGRAL)
    if field in ("event_time", "ingested_at"):
        return isinstance(data_type, (*MOMENTS, StringType))
    kind = next(f.type for f in fold.fields if f.name == field)
    if kind == "decimal":
        return isinstance(data_type, (*INTEGRAL, DecimalType))
    if kind == "integer":
        return isinstance(data_type, INTEGRAL)
    return kind == "string" and isinstance(data_type, StringType)


def parse_sources(sources: list[Source], fields: FieldNames, fold: Fold) -> DataFrame:
    """Every record of every source as `parse_events` gives them: typed Parquet checked on
    its columns here, the rest (JSON text, Parquet of other types as JSON) by the parser."""
    texts, parsed = [], []
    carried = sources[0].carried
    for source in sources:
        plan = typed_plan(source.columns, fields, fold) if source.columns is not None else None
        if plan is None:
            texts.append(source.df.select(SOURCE_FILE, RAW, *carried))
        else:
            parsed.append(check_typed(source.df, plan, fold))
    if texts:
        raw_df = reduce(DataFrame.unionByName, texts).toDF("source_file", "raw", *carried)
        parsed.insert(0, raw_df.transform(parse_events, fields, fold, carried))
    return reduce(DataFrame.unionByName, parsed)


def check_typed(df: DataFrame, plan: dict[str, str], fold: Fold) -> DataFrame:
    """The rows of a typed source (its columns, `SOURCE_FILE` and `RAW`) as `parse_events`
    gives them: `source_file`, `raw`, the typed fields and a `reason` or NULL. `plan` maps
    each field to its column (`typed_plan`). Like the JSON path, a record refused before its
    `event_time` keeps no field; one refused later keeps its id, key, seq and time."""
    present = set(df.columns)

    def value(field: str) -> Column:
        column = plan[field]
        return F.col(f"`{column}`") if column in present else F.lit(None)

    def moment(field: str) -> Column:
        if plan[field] not in present:
            return F.lit(None).cast("timestamp")
        if isinstance(df.schema[plan[field]].dataType, StringType):
            return timestamp_from_text(value(field))
        instant = value(field).cast("timestamp")
        return F.when(within_readers_range(instant), instant)

    event_id, key, seq, op = value("event_id"), value("key"), value("seq"), value("op")
    event_time, ingested_at = moment("event_time"), moment("ingested_at")
    payload = {f.name: _payload_value(value(f.name), f) for f in fold.fields}

    first: list[tuple[Column, str]] = [
        (value(field).isNull(), f"missing_field:{field}")
        for field in (*COMMON_NAMES, *(f.name for f in fold.fields if f.required_for is None))
    ]
    first += [
        (event_id.rlike(_BLANK), "bad_type:event_id"),
        (key.rlike(_BLANK), "bad_type:key"),
        (~seq.between(1, MAX_SEQ), "bad_seq"),
    ]
    later: list[tuple[Column, str]] = [
        (event_time.isNull(), "bad_type:event_time"),
        (~op.isin(*sorted(fold.ops)), "unknown_op"),
    ]
    for field in fold.fields:
        read = ~op.isin(*sorted(field.ignored_for)) if field.ignored_for else F.lit(True)
        given = value(field.name)
        if field.required_for is not None:
            needed = op.isin(*sorted(field.required_for))
            later.append((read & needed & given.isNull(), f"missing_field:{field.name}"))
        out_of_range = payload[field.name][1]
        if out_of_range is not None:
            later.append((read & given.isNotNull() & out_of_range, f"{field.name}_out_of_range"))
    later.append((value("ingested_at").isNotNull() & ingested_at.isNull(), BAD_INGESTED_AT))

    checked = df.select(
        "*", _first_true(first).alias("_first_reason"), _first_true(later).alias("_later_reason")
    )
    identified = F.col("_first_reason").isNull()
    valid = identified & F.col("_later_reason").isNull()

    def kept(column: Column, field: EventField | None = None) -> Column:
        if field is not None and field.ignored_for:
            column = F.when(~op.isin(*sorted(field.ignored_for)), column)
        return F.when(valid, column)

    return checked.select(
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(RAW).alias("raw"),
        F.when(identified, event_id).alias("event_id"),
        F.when(identified, key).alias("key"),
        F.when(identified, seq.cast("bigint")).alias("seq"),
        F.when(identified, event_time).alias("event_time"),
        kept(op).alias("op"),
        *[kept(payload[f.name][0], f).alias(f.name) for f in fold.fields],
        kept(ingested_at).alias("ingested_at"),
        F.coalesce("_first_reason", "_later_reason").alias("reason"),
    )


def _first_true(rules: list[tuple[Column, str]]) -> Column:
    """The reason of the first rule whose condition holds, or NULL."""
    chain = F.when(rules[0][0], F.lit(rules[0][1]))
    for condition, reason in rules[1:]:
        chain = chain.when(condition, F.lit(reason))
    return chain


def _payload_value(column: Column, field: EventField) -> tuple[Column, Column | None]:
    """The field's value in its event-table type, and when it is out of range (or None)."""
    if field.type == "decimal":
        limit = F.lit(Decimal(AMOUNT_LIMIT))
        fits = column.try_cast(_NINE_PLACES)
        # Within 18 integer digits (checked first: nothing wider is cast), and no significant
        # digit past the ninth decimal place.
        out_of_range = F.when((column >= limit) | (column <= -limit), F.lit(True)).otherwise(
            fits.isNull() | (fits != column)
        )
        return fits, out_of_range
    return column.cast(field.spark_type), None
