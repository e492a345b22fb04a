"""Row hashes and fingerprints of state rows in Spark (see `pipelines.fingerprint`).

A row's hash is Spark's 64-bit xxhash of its key and its other columns in name order, each
beside whether it is NULL (xxhash skips NULLs, so without the flag two rows whose NULL sits
in different columns of one type could hash alike). The columns are cast to the types given,
the state table's, so a row folded in Python and the same row read back hash alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructType

from pipelines.fingerprint import Fingerprint

# A sum of up to 10**19 signed 64-bit hashes fits, exactly, without ANSI overflow.
SUM_TYPE = "decimal(38,0)"


def row_hash(types: Mapping[str, DataType], prefix: str = "") -> Column:
    """The hash of a state row whose columns (but the key) are named `prefix` + column."""
    parts: list[Column] = []
    for name in ["key", *sorted(c for c in types if c != "key")]:
        column = F.col(f"`{name if name == 'key' else prefix + name}`").cast(types[name])
        parts += [column, column.isNull()]
    return F.xxhash64(*parts)


def state_types(schema: StructType) -> dict[str, DataType]:
    return {field.name: field.dataType for field in schema.fields}


def hash_sum(hashes: Column) -> Column:
    """The exact sum of a column of hashes (reduced modulo 2**64 by `Fingerprint`)."""
    return F.coalesce(F.sum(hashes.cast(SUM_TYPE)), F.lit(0).cast(SUM_TYPE))


def fingerprint_of(state_df: DataFrame, schema: StructType | None = None) -> Fingerprint:
    """The fingerprint of every row of `state_df` (one pass), hashed as `schema` types them
    (default: as `state_df` does)."""
    types = state_types(schema or state_df.schema)
    row = state_df.agg(F.count("*").alias("rows"), hash_sum(row_hash(types)).alias("sum")).first()
    assert row is not None
    return Fingerprint.of_hashes(int(row["rows"]), int(row["sum"]))
