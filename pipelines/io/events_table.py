"""The events table: every valid, deduplicated event ever accepted (contract section 7).

It is partitioned by a key bucket, `pmod(xxhash64(key), N)`, so re-folding a few keys reads
only their buckets; N is fixed when the table is created and kept in its properties. Each
row keeps what a later conflict needs to quarantine it: its raw text and source file.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipelines.folds import Fold
from pipelines.io.delta_tables import (
    MergeResult,
    ensure_table,
    merge_metrics,
    retry_conflicts,
    table_version,
)
from pipelines.transforms.dedupe import content_fields, precedence
from pipelines.transforms.stored import BUCKET as BUCKET_COLUMN

BUCKETS_PROPERTY = "backfill.keyBuckets"


def events_schema(fold: Fold) -> StructType:
    """The common fields, the fold's own (typed as it declares them), and what a later
    conflict needs to quarantine a stored event: its raw text and source file."""
    return StructType(
        [
            StructField(BUCKET_COLUMN, IntegerType(), False),
            StructField("event_id", StringType(), False),
            StructField("key", StringType(), False),
            StructField("seq", LongType(), False),
            StructField("event_time", TimestampType(), False),
            StructField("op", StringType(), False),
            *[StructField(f.name, f.spark_type, True) for f in fold.fields],
            StructField("ingested_at", TimestampType(), True),
            StructField("source_file", StringType(), False),
            StructField("raw", StringType(), True),
            StructField("run_id", StringType(), False),
        ]
    )


def event_row_columns(fold: Fold) -> list[str]:
    return [f.name for f in events_schema(fold).fields]


def _stats_columns(fold: Fold) -> str:
    """Delta keeps min/max statistics of these only: the raw text and source file of every
    event (and JSON documents) are never filtered on, and their statistics cost a sixth of
    the table's write."""
    own = [f.name for f in fold.fields if f.type != "json"]
    return ",".join(["event_id", "key", "seq", "event_time", "op", *own, "ingested_at", "run_id"])


def default_events_uri(table_uri: str) -> str:
    return table_uri.rstrip("/") + "_events"


def key_bucket(key: Column, buckets: int) -> Column:
    return F.pmod(F.xxhash64(key), F.lit(buckets)).cast("int")


def table_buckets(spark: SparkSession, uri: str, default: int) -> int:
    """The bucket count the table was created with; `default` for a table not made yet."""
    if table_version(spark, uri) is None:
        return default
    properties = _detail(spark, uri)["properties"]
    return int(properties.get(BUCKETS_PROPERTY, default))


def table_id(spark: SparkSession, uri: str) -> str:
    """The id Delta gave the table when it was created: a recreated table has another."""
    return str(_detail(spark, uri)["id"])


def _detail(spark: SparkSession, uri: str) -> Row:
    detail = DeltaTable.forPath(spark, uri).detail().first()
    assert detail is not None
    return detail


def as_event_rows(winners_df: DataFrame, run_id: str, buckets: int, fold: Fold) -> DataFrame:
    """Accepted records (typed fields, `source_file`, `raw`) as rows of the events table."""
    return winners_df.withColumn(BUCKET_COLUMN, key_bucket(F.col("key"), buckets)).select(
        *[c for c in event_row_columns(fold) if c != "run_id"], F.lit(run_id).alias("run_id")
    )


def read_events(spark: SparkSession, uri: str, version: int) -> DataFrame:
    return spark.read.format("delta").option("versionAsOf", version).load(uri)


def read_changes(spark: SparkSession, uri: str, after: int | None, upto: int) -> DataFrame:
    """The events table's change feed from the version after `after` to `upto`."""
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0 if after is None else after + 1)
        .option("endingVersion", upto)
        .load(uri)
    )


def merge_events(
    spark: SparkSession, uri: str, rows_df: DataFrame, buckets: int, fold: Fold
) -> MergeResult:
    """Insert events not stored yet; replace a stored copy that a newer, different copy beats.

    The MERGE itself decides, by the same precedence as the dedupe window, so a retry after a
    concurrent commit (or a rerun) never stores an event twice or lets an older copy win.
    """
    content = content_fields(fold)
    stored, incoming = (
        F.struct(*[F.col(f"t.{c}") for c in content]),
        F.struct(*[F.col(f"s.{c}") for c in content]),
    )
    beats_stored = ~incoming.eqNullSafe(stored) & (
        precedence(content, "s.") < precedence(content, "t.")
    )

    def merge() -> MergeResult:
        table = ensure_table(
            spark,
            uri,
            events_schema(fold),
            partition_by=BUCKET_COLUMN,
            properties={
                BUCKETS_PROPERTY: str(buckets),
                "delta.dataSkippingStatsColumns": _stats_columns(fold),
            },
        )
        metrics = (
            table.alias("t")
            .merge(rows_df.alias("s"), "t.event_id = s.event_id")
            .whenMatchedUpdateAll(condition=beats_stored)
            .whenNotMatchedInsertAll()
            .execute()
            .first()
        )
        return merge_metrics(spark, uri, metrics)

    result, _ = retry_conflicts(uri, "events MERGE", merge)
    return result
