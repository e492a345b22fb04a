"""Parse raw records and give every record that breaks the contract a quarantine reason.

Records are checked in Python workers (`mapInArrow`) by `records.RecordChecker`, which reads
them with a strict JSON parser that never rounds a number through a double (`json_values`).
Timestamps are checked on the JVM by Spark's own cast, so `event_time` means what it meant to
every earlier run. Valid records have `reason = NULL` and typed columns.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.config import FieldNames
from pipelines.folds.base import Fold
from pipelines.transforms.records import BAD_INGESTED_AT, RecordChecker, text_column

# ISO-8601 in the extended form: a date, or a date and a time of day with an optional zone.
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
# Spark's cast takes `10:00Z` and `10:00:00+05:30` but not `10:00+05:30`: given seconds.
_MINUTES_THEN_OFFSET = r"^(.{10}[T ]\d{2}:\d{2})([+-][0-9:]+)$"
# The instants a timestamp column can hold for every reader: Python's datetime (PySpark's
# collect, pandas, delta-rs) stops at years 1 and 9999, though Spark goes further.
_FIRST_INSTANT = "TIMESTAMP'0001-01-01 00:00:00Z'"
_LAST_INSTANT = "TIMESTAMP'9999-12-31 23:59:59.999999Z'"
_CHECKED_COMMON = (
    "source_file string, raw string, event_id string, key string, seq long, "
    "event_time_text string, op string"
)
_CHECKED_TAIL = "ingested_at_text string, checked_reason string, later_reason string"


def parse_events(
    raw_df: DataFrame, fields: FieldNames, fold: Fold, carried: tuple[str, ...] = ()
) -> DataFrame:
    """`(source_file, raw)` -> one row per record with typed fields and a `reason` or NULL.

    The typed fields are the common ones, then the fold's own (`fold.fields`), then
    `ingested_at`: the events table's columns. The string columns `carried` pass through.
    """
    checker = RecordChecker(fields.as_dict(), fold.ops, fold.fields)
    payload_schema = "".join(f"{text_column(f.name)} string, " for f in fold.fields)
    carried_schema = "".join(f", {name} string" for name in carried)
    checked_df = raw_df.select("source_file", "raw", *carried).mapInArrow(
        checker.check_batches,
        f"{_CHECKED_COMMON}, {payload_schema}{_CHECKED_TAIL}{carried_schema}",
    )
    event_time = _timestamp("event_time_text")
    ingested_at = _timestamp("ingested_at_text")
    reason = F.coalesce(
        F.col("checked_reason"),
        F.when(event_time.isNull(), F.lit("bad_type:event_time")),
        F.col("later_reason"),
        F.when(
            F.col("ingested_at_text").isNotNull() & ingested_at.isNull(), F.lit(BAD_INGESTED_AT)
        ),
    )
    return checked_df.select(
        "source_file",
        "raw",
        "event_id",
        "key",
        "seq",
        event_time.alias("event_time"),
        "op",
        # Checked in Python to fit the type: the casts are exact.
        *[F.col(text_column(f.name)).cast(f.spark_type).alias(f.name) for f in fold.fields],
        ingested_at.alias("ingested_at"),
        reason.alias("reason"),
        *carried,
    )


def _timestamp(text_col: str) -> Column:
    return timestamp_from_text(F.col(text_col))


def timestamp_from_text(text: Column) -> Column:
    """The instant an ISO-8601 text names, or NULL when it names none the tables can hold."""
    moment = F.coalesce(  # the second cast runs only where the first gave NULL
        text.try_cast("timestamp"),
        F.regexp_replace(text, _MINUTES_THEN_OFFSET, "$1:00$2").try_cast("timestamp"),
    )
    return F.when(text.rlike(_TIMESTAMP) & within_readers_range(moment), moment)


def within_readers_range(moment: Column) -> Column:
    return moment.between(F.expr(_FIRST_INSTANT), F.expr(_LAST_INSTANT))
