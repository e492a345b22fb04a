"""Names and schemas that the I/O modules and the transforms both use, in one place below both.

The three tables of a run (contract section 7) and where they live by default; the columns a
source's rows carry; the events table's key bucket; the columns a fold stage adds to a state
row; and the quarantine's columns. Neither `io` nor `transforms` imports the other: what they
share is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipelines.folds.base import Fold

# Where the events and quarantine tables live when no location is given: beside the state.
EVENTS_SUFFIX, QUARANTINE_SUFFIX = "_events", "_quarantine"


def default_events_uri(table_uri: str) -> str:
    return table_uri.rstrip("/") + EVENTS_SUFFIX


def default_quarantine_uri(table_uri: str) -> str:
    return table_uri.rstrip("/") + QUARANTINE_SUFFIX


# The columns every source's rows have, named so that no data column can clash with them.
SOURCE_FILE, RAW = "__source_file", "__raw"


@dataclass(frozen=True)
class Source:
    """One source's rows: `SOURCE_FILE` and `RAW`, and for Parquet its data columns, whose
    schema is `columns` (None for JSON text). The string columns `carried` (a redriven
    record's `record_key`) stay with each text record through validation."""

    df: DataFrame
    columns: StructType | None
    carried: tuple[str, ...] = ()


# The events table's partition column, `pmod(xxhash64(key), N)`: re-folding a few keys reads
# only their buckets.
BUCKET = "key_bucket"


def key_bucket(key: Column, buckets: int) -> Column:
    return F.pmod(F.xxhash64(key), F.lit(buckets)).cast("int")


def events_schema(fold: Fold) -> StructType:
    """The common fields, the fold's own (typed as it declares them), and what a later
    conflict needs to quarantine a stored event: its raw text and source file."""
    return StructType(
        [
            StructField(BUCKET, IntegerType(), False),
            *[StructField(f.name, f.spark_type, f.nullable) for f in fold.typed_fields],
            StructField("source_file", StringType(), False),
            StructField("raw", StringType(), True),
            StructField("run_id", StringType(), False),
        ]
    )


def event_row_columns(fold: Fold) -> list[str]:
    return [f.name for f in events_schema(fold).fields]


# What the fold stage adds to each state row: how it was made, from how many events, and
# whether the key has no events left (its state row goes).
MODE, EVENTS_FOLDED, DELETED = "_mode", "_events_folded", "_deleted"
REFOLD, RESUME = "refold", "resume"

# The quarantine's columns that come from the record itself.
QUARANTINE_COLUMNS = ("source_file", "raw", "event_id", "key", "reason")
QUARANTINE_SCHEMA = StructType(
    [
        # The raw record's identity (contract section 7): a digest of its source file and
        # text, and which occurrence of that text in that file it is. Insert-only by this key,
        # so re-reading an input quarantines nothing twice.
        StructField("record_key", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("quarantined_at", TimestampType(), False),
        StructField("source_file", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("event_id", StringType(), True),
        StructField("key", StringType(), True),
        StructField("raw", StringType(), True),
    ]
)

# What a redrive (contract section 11) adds to a quarantine row: the run that redrove it and
# what became of it (`admitted`, `duplicate`, or the reason it is still quarantined). A
# quarantine table gains them on its first redrive; until then it has none.
REDRIVEN_BY, REDRIVE_OUTCOME = "redriven_by", "redrive_outcome"
ADMITTED, DUPLICATE = "admitted", "duplicate"
REDRIVE_SCHEMA = StructType(
    [
        StructField(REDRIVEN_BY, StringType(), True),
        StructField(REDRIVE_OUTCOME, StringType(), True),
    ]
)
