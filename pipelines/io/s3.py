"""Where Python needs S3 itself (boto3): the pre-flight check, uploads, and reports.

Spark reads and writes S3 through Hadoop's S3A; this module runs before Spark starts, so a
wrong bucket, a missing prefix or bad credentials fail in a second with one clear line.
Credentials come from boto3's standard chain and are never printed.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipelines.config import S3Config
from pipelines.errors import UsageError

S3_SCHEMES = ("s3", "s3a", "s3n")
MAX_OBJECTS_COUNTED = 100_000


@dataclass(frozen=True)
class PrefixStats:
    uri: str
    objects: int
    bytes: int
    truncated: bool  # stopped counting at MAX_OBJECTS_COUNTED


def is_s3(uri: str) -> bool:
    return urlparse(uri).scheme in S3_SCHEMES


def split_uri(uri: str) -> tuple[str, str]:
    """`s3a://bucket/a/b*` -> (`bucket`, `a/b*`)."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def endpoint_url(s3: S3Config) -> str | None:
    """The endpoint as a URL (`https://` unless `ssl` is off when the config gives a bare host),
    or None for AWS itself."""
    endpoint = s3.endpoint
    if endpoint and "://" not in endpoint:
        endpoint = f"{'https' if s3.ssl else 'http'}://{endpoint}"
    return endpoint


def client(s3: S3Config) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url(s3),
        region_name=s3.region,
        config=BotoConfig(
            s3={"addressing_style": "path" if s3.path_style_access else "auto"},
            # The same bounded wait as S3A's (S3Config): attempts are the first and retries.
            retries={"total_max_attempts": s3.retry_limit + 1, "mode": "standard"},
            connect_timeout=s3.connect_timeout_seconds,
            read_timeout=s3.request_timeout_seconds,
        ),
    )


def preflight(uri: str, s3: S3Config, s3_client: Any = None) -> PrefixStats:
    """Check the bucket, the credentials and the prefix behind `uri`; count what is there."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, key = split_uri(uri)
    prefix = _literal_prefix(key)
    s3_client = s3_client or client(s3)
    objects = size = 0
    truncated = False
    try:
        pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if glob.has_magic(key) and not _matches(key, item["Key"]):
                    continue
                objects += 1
                size += item["Size"]
            if objects >= MAX_OBJECTS_COUNTED:
                truncated = True
                break
    except NoCredentialsError:
        raise UsageError(
            f"no AWS credentials found for {uri}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run where an instance role is available"
        ) from None
    except ClientError as exc:
        raise UsageError(_client_error_line(uri, bucket, exc)) from None
    except BotoCoreError as exc:
        raise UsageError(f"cannot reach S3 for {uri}: {exc}") from None
    if objects == 0:
        raise UsageError(f"source {uri} does not exist: no objects under s3://{bucket}/{prefix}")
    return PrefixStats(uri, objects, size, truncated)


def check_bucket(uri: str, s3: S3Config, s3_client: Any = None) -> None:
    """A table's bucket must exist and be reachable with these credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, _ = split_uri(uri)
    try:
        (s3_client or client(s3)).head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise UsageError(f"no AWS credentials found for {uri}") from None
    except ClientError as exc:
        raise UsageError(_client_error_line(uri, bucket, exc)) from None
    except BotoCoreError as exc:
        raise UsageError(f"cannot reach S3 for {uri}: {exc}") from None


def upload_tree(local_dir: Path, uri: str, s3: S3Config) -> int:
    """Upload every file under `local_dir` to the prefix `uri`; returns the count."""
    bucket, prefix = split_uri(uri)
    s3_client = client(s3)
    check_bucket(uri, s3, s3_client)
    count = 0
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        key = "/".join(
            part for part in (prefix.rstrip("/"), path.relative_to(local_dir).as_posix()) if part
        )
        s3_client.upload_file(str(path), bucket, key)
        count += 1
    return count


def put_text(uri: str, text: str, s3: S3Config) -> None:
    bucket, key = split_uri(uri)
    client(s3).put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))


def _literal_prefix(key: str) -> str:
    """The part of a key before its first glob character."""
    for index, char in enumerate(key):
        if char in "*?[{":
            return key[:index]
    return key


def _matches(pattern: str, key: str) -> bool:
    """Whether `key` lies under a path the Hadoop-style glob `pattern` selects."""
    from fnmatch import fnmatchcase

    parts = pattern.rstrip("/").split("/")
    return fnmatchcase("/".join(key.split("/")[: len(parts)]), "/".join(parts))


def _client_error_line(uri: str, bucket: str, exc: Any) -> str:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket", "404") or status == 404:
        return f"bucket {bucket} does not exist (for {uri})"
    if (
        code
        in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
            "ExpiredToken",
            "InvalidToken",
        )
        or status == 403
    ):
        return (
            f"S3 refused the credentials for {uri} ({code or status}); check your AWS credentials"
        )
    return f"S3 error for {uri}: {code or status}"
