"""Read raw event records from files, directories or globs, local or `s3a://`.

Every source becomes a `Source`: rows with the record's source file and raw text, the text
exactly as stored (JSON Lines) or the row rendered as JSON (Parquet), so a quarantined record
always keeps what was really read. A Parquet source also keeps its typed columns, which
`transforms.typed` checks without parsing text when their types allow. Nothing is inferred:
JSON lines are read as text and parsed by `transforms.validate`.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipelines.config import S3Config, SparkConfig
from pipelines.errors import UsageError
from pipelines.io import s3
from pipelines.schema import RAW, SOURCE_FILE, Source

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
JSON_GLOB = "*.{json,jsonl,ndjson,json.gz,jsonl.gz,ndjson.gz}"
PARQUET_SUFFIXES = (".parquet",)
PARTITION_COLUMN = "dt"
# A Parquet timestamp in a row's JSON text, to the microsecond (Spark's default writes ms).
TIMESTAMP_TEXT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"


@dataclass(frozen=True)
class DateWindow:
    """Inclusive range of `dt=` partitions to read; open ends read everything on that side."""

    start: date | None = None
    end: date | None = None

    @property
    def is_open(self) -> bool:
        return self.start is None and self.end is None


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def check_sources(uris: list[str], s3_config: S3Config) -> list[s3.PrefixStats]:
    """Fail fast, before Spark starts, on a source that does not exist or cannot be read.

    S3 sources get boto3's pre-flight (bucket, credentials, prefix); returns what it counted.
    """
    stats = []
    for uri in uris:
        if s3.is_s3(uri):
            stats.append(s3.preflight(uri, s3_config))
        elif is_remote(uri):
            continue  # another Hadoop file system: Spark will say if it is missing
        else:
            _check_local(uri)
    return stats


def local_source_bytes(uris: list[str], window: DateWindow) -> int | None:
    """The bytes of the data files local sources hold (only the `dt=` partitions inside
    `window`); None when a source is not on the local disk."""
    total = 0
    for uri in uris:
        if is_remote(uri):
            return None
        path = uri.removeprefix("file://")
        for found in glob.glob(path) if glob.has_magic(path) else [path]:
            if os.path.isfile(found):
                total += os.path.getsize(found)
                continue
            for root, folders, files in os.walk(found):
                folders[:] = [f for f in folders if _inside(f, window)]
                total += sum(
                    os.path.getsize(os.path.join(root, name))
                    for name in files
                    if not name.startswith(("_", "."))
                )
    return total


def is_large_run(uris: list[str], window: DateWindow, spark_config: SparkConfig) -> bool:
    """Whether a run reads `small_run_mb` or more of local sources (then it keeps the
    optimizing compiler: no `small_run_java_options`); sources not on the local disk count
    as small."""
    return (local_source_bytes(uris, window) or 0) >= spark_config.small_run_mb * 2**20


def _inside(folder: str, window: DateWindow) -> bool:
    """Whether a folder is a `dt=` partition inside `window` (any other folder is read)."""
    match = re.fullmatch(r"dt=(\d{4}-\d{2}-\d{2})", folder)
    if match is None:
        return True
    day = date.fromisoformat(match.group(1))
    return (window.start is None or day >= window.start) and (
        window.end is None or day <= window.end
    )


def _check_local(uri: str) -> None:
    path = uri.removeprefix("file://")
    if glob.has_magic(path):
        if not glob.glob(path):
            raise UsageError(f"source {uri} matches no files")
    elif not os.path.exists(path):
        raise UsageError(f"source {uri} does not exist")


def read_sources(spark: SparkSession, uris: list[str], window: DateWindow) -> list[Source]:
    """Every source that holds data files (one empty one if none does); blank lines are
    not records."""
    sources = [source for uri in uris if (source := _read_source(spark, uri, window)) is not None]
    empty = spark.createDataFrame([], f"{SOURCE_FILE} string, {RAW} string")
    return sources or [Source(empty, columns=None)]


def _read_source(spark: SparkSession, uri: str, window: DateWindow) -> Source | None:
    data_format = _detect_format(spark, uri)
    if data_format is None:
        return None
    if data_format == "json":
        df = spark.read.format("text").option("pathGlobFilter", JSON_GLOB).load(uri)
        df = _filter_window(df, uri, window)
        raw_df = df.select(
            F.col("_metadata.file_path").alias(SOURCE_FILE), F.col("value").alias(RAW)
        ).filter(F.trim(F.col(RAW)) != "")
        return Source(raw_df, columns=None)
    reader = spark.read.option("pathGlobFilter", "*.parquet").option("mergeSchema", "true")
    df = _filter_window(reader.parquet(uri), uri, window)
    data = [f for f in df.schema.fields if f.name != PARTITION_COLUMN]
    columns = [F.col(f"`{f.name}`") for f in data]
    rows_df = df.select(
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.to_json(F.struct(*columns), {"timestampFormat": TIMESTAMP_TEXT}).alias(RAW),
        *columns,
    )
    return Source(rows_df, columns=StructType(data))


def _filter_window(df: DataFrame, uri: str, window: DateWindow) -> DataFrame:
    if window.is_open:
        return df
    if PARTITION_COLUMN not in df.columns:
        raise UsageError(
            f"source {uri} has no {PARTITION_COLUMN}=YYYY-MM-DD partitions; "
            "--from/--to select partitions, so point --source at the partitioned directory"
        )
    dt = F.col(PARTITION_COLUMN).cast("date")
    if window.start is not None:
        df = df.filter(dt >= F.lit(window.start))
    if window.end is not None:
        df = df.filter(dt <= F.lit(window.end))
    return df


def _detect_format(spark: SparkSession, uri: str) -> str | None:
    """`json` or `parquet` from the file names under `uri`; None when it holds no data files."""
    kinds = {_kind(name) for name in _list_data_files(spark, uri)} - {None}
    if len(kinds) > 1:
        raise UsageError(
            f"source {uri} mixes JSON and Parquet files; give each format its own --source"
        )
    return kinds.pop() if kinds else None


def _kind(name: str) -> str | None:
    lowered = name.lower()
    if lowered.endswith(JSON_SUFFIXES):
        return "json"
    if lowered.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _list_data_files(spark: SparkSession, uri: str) -> list[str]:
    """Names of the visible files under `uri` (a file, directory or glob), via Hadoop's FS."""
    jvm: Any = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(hadoop_conf)
    statuses = fs.globStatus(path) or []
    if not statuses:
        raise UsageError(f"source {uri} does not exist")
    names: list[str] = []
    for status in statuses:
        if status.isFile():
            names.append(status.getPath().getName())
            continue
        files = fs.listFiles(status.getPath(), True)
        while files.hasNext():
            file_path = files.next().getPath()
            if not _is_hidden(str(file_path), str(status.getPath())):
                names.append(file_path.getName())
    return names


def _is_hidden(file_path: str, root: str) -> bool:
    """Spark skips files and directories whose names start with `_` or `.`."""
    relative = file_path[len(root) :].strip("/")
    return any(part.startswith(("_", ".")) for part in relative.split("/"))
