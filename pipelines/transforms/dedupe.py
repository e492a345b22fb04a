"""Deduplicate valid events by `event_id` with window functions (contract section 3).

Every valid copy of an event gets an `outcome`:
- `valid`: the winning copy, the one with the latest `ingested_at`; ties are broken by the
  content itself (`key`, `seq`, `event_time`, `op` and the fold's own fields, such as
  `amount`), so the choice is total and deterministic whatever the order of files and lines;
- `duplicate`: same content as the winner, dropped and counted;
- `conflicting_duplicate`: different content, a loser, to be quarantined.

The window runs over the narrow typed columns only. The raw text of a loser is fetched
afterwards by its `record_id`, so the shuffle never carries the raw records.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

CONFLICT = "conflicting_duplicate"  # the outcome of a loser, and its quarantine reason
# 8 bytes per id: two million ids broadcast as ~16 MB, far cheaper than shuffling raw records.
BROADCAST_LOSERS = 2_000_000
_NEVER_INGESTED = 2**63 - 1
ID_HASH = "_id_hash"


def dedupe_columns(content: tuple[str, ...]) -> tuple[str, ...]:
    return ("record_id", "event_id", *content, "ingested_at")


def precedence(content: tuple[str, ...], prefix: str = "") -> Column:
    """Which of two copies wins: the smaller value. The latest `ingested_at` first (a copy
    without one last), then the content itself, so the order is total and deterministic.

    One definition for the window within a batch and for a batch against stored events.
    """
    newest_first = F.coalesce(-F.unix_micros(F.col(f"{prefix}ingested_at")), F.lit(_NEVER_INGESTED))
    return F.struct(newest_first, *[F.col(f"{prefix}{c}") for c in content])


def repeated_ids(events_df: DataFrame) -> DataFrame:
    """Hashes of the `event_id`s that more than one copy carries: the only ids the window
    has to order. Two ids sharing a hash only add candidates; the window still decides."""
    return (
        events_df.groupBy(F.xxhash64("event_id").alias(ID_HASH))
        .count()
        .filter(F.col("count") > 1)
        .select(ID_HASH, F.lit(True).alias("_has_copies"))
    )


def with_dedupe_outcome(
    events_df: DataFrame,
    content: tuple[str, ...],
    repeated_df: DataFrame | None = None,
    broadcast: bool = True,
) -> DataFrame:
    """`dedupe_columns` of every valid copy, plus its `outcome`; no copy is dropped here."""
    singles_df, copies_df = split_by_copies(events_df, content, repeated_df, broadcast)
    return singles_df.unionByName(copy_outcomes(copies_df, content))


def split_by_copies(
    events_df: DataFrame,
    content: tuple[str, ...],
    repeated_df: DataFrame | None = None,
    broadcast: bool = True,
) -> tuple[DataFrame, DataFrame]:
    """(the copies whose id arrives once, already `valid`; the copies of repeated ids).

    Most ids arrive once, so only the ids in `repeated_df` (from `repeated_ids`, broadcast
    when `broadcast`) go through the window of `copy_outcomes`.
    """
    if repeated_df is None:
        repeated_df = repeated_ids(events_df)
    columns = dedupe_columns(content)
    hashed = events_df.select(*columns, F.xxhash64("event_id").alias(ID_HASH))
    flagged = hashed.join(F.broadcast(repeated_df) if broadcast else repeated_df, ID_HASH, "left")
    singles_df = flagged.filter(F.col("_has_copies").isNull()).select(
        *columns, F.lit("valid").alias("outcome")
    )
    return singles_df, flagged.filter(F.col("_has_copies")).select(*columns)


def copy_outcomes(copies_df: DataFrame, content: tuple[str, ...]) -> DataFrame:
    """Each copy's `outcome`, decided by the window over its `event_id`."""
    copy_order = Window.partitionBy("event_id").orderBy(precedence(content))
    copy_content = F.struct(*content)
    # The default frame runs from the first row to the current one: `first` is the winner.
    winner = F.first(copy_content).over(copy_order)
    outcome = (
        F.when(F.row_number().over(copy_order) == 1, F.lit("valid"))
        .when(copy_content.eqNullSafe(winner), F.lit("duplicate"))
        .otherwise(F.lit(CONFLICT))
    )
    return copies_df.select(*dedupe_columns(content), outcome.alias("outcome"))


def quarantined_records(parsed_df: DataFrame, outcomes_df: DataFrame, conflicts: int) -> DataFrame:
    """Every record to quarantine: the invalid ones and the losers of conflicts."""
    invalid_df = parsed_df.filter(F.col("reason").isNotNull())
    return invalid_df.unionByName(conflict_losers(parsed_df, outcomes_df, conflicts))


def conflict_losers(parsed_df: DataFrame, outcomes_df: DataFrame, expected: int) -> DataFrame:
    """The parsed records (raw text included) that lost a conflict, reason set.

    `expected` is how many there are (already counted): when they are few, their ids are
    broadcast, so the semi-join scans the parsed records without shuffling them.
    """
    loser_ids = outcomes_df.filter(F.col("outcome") == CONFLICT).select("record_id")
    if expected <= BROADCAST_LOSERS:
        loser_ids = F.broadcast(loser_ids)
    return parsed_df.join(loser_ids, on="record_id", how="left_semi").withColumn(
        "reason", F.lit(CONFLICT)
    )
