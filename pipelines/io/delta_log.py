"""A Delta table's log and change feed read without Spark, with delta-rs (the `deltalake`
package): `history` and `diff` answer in a second instead of paying for a JVM and Delta's start,
and a run learns its tables' versions, columns and marks in milliseconds (`snapshot`).

Tables are local paths, `file:` URIs or S3 URIs (`s3a://`, `s3://`), reached on S3 the way
Spark's S3A reaches them: the config's endpoint, region, path style, TLS and timeouts, and the
credentials of the standard AWS chain (boto3's, the chain S3A's default provider follows too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipelines.config import S3Config
from pipelines.errors import UsageError
from pipelines.io import s3
from pipelines.io.locations import local_path
from pipelines.io.table_properties import CHANGE_FEED_PROPERTY

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

IN_COMMIT_TIMESTAMPS_PROPERTY = "delta.enableInCommitTimestamps"
IN_COMMIT_TIMESTAMPS_SINCE_PROPERTY = "delta.inCommitTimestampEnablementVersion"
# Reader features that change nothing in how the change feed's files are read. Any other
# (deletion vectors, column mapping, type widening) leaves the feed to Spark: delta-rs' feed
# reader is not known to apply them as Delta does.
FEED_SAFE_READER_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def table_uri(uri: str) -> str:
    """`uri` as delta-rs names it: a local path for a path or `file:` URI, `s3://` for S3A's
    schemes, anything else as it is."""
    path = local_path(uri)
    if path is not None:
        return str(path)
    if s3.is_s3(uri):
        bucket, key = s3.split_uri(uri)
        return f"s3://{bucket}/{key}".rstrip("/")
    return uri


def storage_options(uri: str, config: S3Config) -> dict[str, str]:
    """delta-rs' settings for `uri`: none for a local table; on S3, what S3A gets from the
    config, and the standard chain's credentials, frozen (a session token included)."""
    if not s3.is_s3(uri):
        return {}
    import boto3

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise UsageError(
            f"no AWS credentials found for {uri}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run where an instance role is available"
        )
    frozen = credentials.get_frozen_credentials()
    options = {
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
        "AWS_REGION": config.region,
        # A path-style endpoint names the bucket in the path; a virtual-hosted one in the host.
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not config.path_style_access).lower(),
        # The same bounded wait as S3A's and boto3's (S3Config).
        "connect_timeout": f"{round(config.connect_timeout_seconds * 1000)}ms",
        "timeout": f"{round(config.request_timeout_seconds * 1000)}ms",
        "max_retries": str(config.retry_limit),
    }
    if frozen.token:
        options["AWS_SESSION_TOKEN"] = frozen.token
    endpoint = s3.endpoint_url(config)
    if endpoint:
        if not config.path_style_access:  # delta-rs takes the bucket's own host here
            scheme, host = endpoint.split("://", 1)
            endpoint = f"{scheme}://{s3.split_uri(uri)[0]}.{host}"
        options["AWS_ENDPOINT_URL"] = endpoint
        options["AWS_ALLOW_HTTP"] = str(endpoint.startswith("http://")).lower()
    return options


def open_table(uri: str, config: S3Config, version: int | None = None) -> DeltaTable:
    """The Delta table at `uri` (at `version`, else the latest); a usage error when there is
    none, in the words Spark's path uses."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    options = storage_options(uri, config)
    if s3.is_s3(uri):
        s3.check_bucket(uri, config)  # a wrong bucket or refused credentials in one line
    try:
        return DeltaTable(table_uri(uri), version=version, storage_options=options)
    except TableNotFoundError:
        raise UsageError(f"{uri} is not a Delta table") from None
    except DeltaError:
        path = local_path(uri)
        if path is not None and not (path / "_delta_log").is_dir():  # a file, or nothing
            raise UsageError(f"{uri} is not a Delta table") from None
        raise


@dataclass(frozen=True)
class LogSnapshot:
    """A table's latest version as its log states it: what a run checks before any work."""

    version: int
    table_id: str
    schema_json: str  # Delta's schema string, the JSON of Spark's StructType
    properties: dict[str, str]
    table: DeltaTable

    def commit_infos(self) -> list[dict[str, Any]]:
        """Every kept commit's commitInfo up to this version, newest first."""
        infos = (i for i in numbered_history(self.table) if int(i["version"]) <= self.version)
        return sorted(infos, key=lambda info: -int(info["version"]))


def numbered_history(table: DeltaTable) -> list[dict[str, Any]]:
    """`table.history()` with each commit under its own version, the handle brought up to
    the latest one.

    delta-rs numbers the history down from the version its handle was loaded at, yet lists
    every commit the log holds when it is called, later ones too: after a commit another
    writer landed since the load, each entry would carry the number of the one before it
    (seen: a run took a concurrent MERGE's fingerprint for its CREATE's). So the handle is
    updated first, and the history read again if a commit lands while it is read.
    """
    for _ in range(20):
        table.update_incremental()
        loaded = table.version()
        history = table.history()
        table.update_incremental()
        if table.version() == loaded:
            return history
    raise RuntimeError(f"{table.table_uri}: its log kept changing while its history was read")


def snapshot(uri: str, config: S3Config) -> LogSnapshot | None:
    """The table at `uri` as its log states it; None when
    delta-rs cannot tell (no table there, an unreadable log, S3 refusing the request): the
    caller then asks Spark, whose answer and errors are the contract's."""
    from deltalake import DeltaTable

    path = local_path(uri)
    if path is not None and not (path / "_delta_log").is_dir():
        return None
    try:
        table = DeltaTable(table_uri(uri), storage_options=storage_options(uri, config))
        metadata = table.metadata()
        return LogSnapshot(
            version=table.version(),
            table_id=str(metadata.id),
            schema_json=table.schema().to_json(),
            properties={k: str(v) for k, v in metadata.configuration.items()},
            table=table,
        )
    except Exception:  # any failure leaves the answer to Spark
        return None


def commits(uri: str, config: S3Config) -> list[dict[str, Any]]:
    """Every commit's commitInfo, newest first, its `timestamp` (ms since the epoch) the time
    Spark's DESCRIBE HISTORY shows.

    That is not commitInfo's own `timestamp` (the writer's clock as it began to commit, tens
    of ms to seconds before the commit landed): Delta shows each commit file's modification
    time, raised where needed so that times increase with versions, and the in-commit
    timestamp from the version that enabled them on. `timestampAsOf` time travel goes by the
    same times, so an analyst can take a time from `history` to it; and `history` prints what
    it printed when it ran on Spark.
    """
    table = open_table(uri, config)
    infos = sorted(numbered_history(table), key=lambda info: int(info["version"]))
    file_times = commit_file_times(uri, config)
    properties = table.metadata().configuration
    in_commit_since: int | None = None
    if str(properties.get(IN_COMMIT_TIMESTAMPS_PROPERTY, "")).lower() == "true":
        in_commit_since = int(properties.get(IN_COMMIT_TIMESTAMPS_SINCE_PROPERTY, 0))
    previous: int | None = None
    for info in infos:
        version = int(info["version"])
        if in_commit_since is not None and version >= in_commit_since:
            info["timestamp"] = int(info.get("inCommitTimestamp") or info["timestamp"])
            continue
        moment = file_times.get(version, int(info["timestamp"]))
        if previous is not None and moment <= previous:
            moment = previous + 1
        info["timestamp"] = previous = moment
    return infos[::-1]


def commit_file_times(uri: str, config: S3Config) -> dict[int, int]:
    """Each commit file's modification time in ms, by version, as Hadoop's file systems
    report it (local: the file's mtime; S3: the object's LastModified)."""
    times: dict[int, int] = {}
    path = local_path(uri)
    if path is not None:
        with os.scandir(path / "_delta_log") as entries:
            for entry in entries:
                version = _commit_version(entry.name)
                if version is not None:
                    times[version] = entry.stat().st_mtime_ns // 1_000_000
        return times
    bucket, key = s3.split_uri(uri)
    prefix = f"{key.rstrip('/')}/_delta_log/".lstrip("/")
    pages = (
        s3.client(config).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    for page in pages:
        for item in page.get("Contents", []):
            version = _commit_version(item["Key"][len(prefix) :])
            if version is not None:
                times[version] = (item["LastModified"] - _EPOCH) // timedelta(milliseconds=1)
    return times


def _commit_version(name: str) -> int | None:
    """20 digits and `.json`: a commit file's version; None for any other file in the log."""
    stem, dot, suffix = name.partition(".")
    return int(stem) if len(stem) == 20 and stem.isdigit() and dot and suffix == "json" else None


def change_feed(
    table: DeltaTable, uri: str, config: S3Config, after: int, upto: int
) -> pa.Table | None:
    """The change feed of the versions after `after` up to `upto`, with `_change_type` and
    `_commit_version`; None where it is not what Spark's feed would be: the feed off at the
    first of them or turned off within them (Spark refuses such a range, delta-rs may answer
    with files read as inserts and deletes), or a reader feature left to Spark."""
    import pyarrow as pa
    from deltalake.exceptions import DeltaError

    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    if protocol.min_reader_version == 2 or not features <= FEED_SAFE_READER_FEATURES:
        return None
    first = open_table(uri, config, version=after + 1)
    if str(first.metadata().configuration.get(CHANGE_FEED_PROPERTY, "")).lower() != "true":
        return None
    try:  # delta-rs refuses a range in which a commit turns the feed off
        batches = table.load_cdf(starting_version=after + 1, ending_version=upto)
        feed = pa.RecordBatchReader.from_stream(batches).read_all()  # pa.table() loads pandas
    except DeltaError:
        return None
    return feed.cast(
        pa.schema(
            field.with_type(pa.string()) if field.type == pa.string_view() else field
            for field in feed.schema
        )
    )
