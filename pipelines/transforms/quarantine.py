"""The rows a run adds to the quarantine, each named by its raw record (contract section 7).

A raw record is a line of a source file (or a row of a Parquet file): its `record_key` is a
digest of the file and the text, with the occurrence of that text in that file, so the same
text twice in one file is two records and the same text in another file is another record,
while re-reading a file yields the same keys.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.schema import QUARANTINE_COLUMNS


def quarantine_rows(
    rejects_df: DataFrame | None, displaced_df: DataFrame | None, run_id: str
) -> DataFrame | None:
    """This run's rejected records and the stored copies it displaced, once per `record_key`
    (None: neither). `rejects_df` holds records read by this run (with their `record_id`); a
    displaced copy is the record an earlier run accepted, its first occurrence in its file.
    """
    parts = []
    if rejects_df is not None:
        same_text = Window.partitionBy("source_file", "raw").orderBy("record_id")
        occurrence = F.row_number().over(same_text).alias("occurrence")
        parts.append(rejects_df.select(*QUARANTINE_COLUMNS, occurrence))
    if displaced_df is not None:
        parts.append(displaced_df.select(*QUARANTINE_COLUMNS, F.lit(1).alias("occurrence")))
    if not parts:
        return None
    rejects = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return (
        rejects.withColumn("record_key", _record_key())
        .dropDuplicates(["record_key"])
        .select(
            "record_key",
            F.lit(run_id).alias("run_id"),
            F.current_timestamp().alias("quarantined_at"),
            *QUARANTINE_COLUMNS,
        )
    )


def _record_key() -> Column:
    text = F.concat_ws("\n", F.col("source_file"), F.coalesce(F.col("raw"), F.lit("")))
    return F.concat(F.sha2(text, 256), F.lit(":"), F.col("occurrence").cast("string"))
