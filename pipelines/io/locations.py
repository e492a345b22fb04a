"""Where a run will write, checked before it reads: a typo must cost a second, not the backfill.

Local paths are checked here in plain Python, before Spark starts. Once the session is up,
`tables.existing_version` checks every location (S3 too) through Hadoop's file system
with the same words, and an S3 location's bucket is checked with boto3 (`s3.check_bucket`).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pipelines.errors import UsageError


def local_path(uri: str) -> Path | None:
    """The local path of `uri` (a plain path or a `file:` URI), or None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(uri) if "://" not in uri else None


def check_can_create(path: Path, what: str) -> None:
    """A usage error when `path` could not be created: its nearest existing ancestor must be
    a folder this process may write in."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{what} {path} cannot be written: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} cannot be written: no permission to write in {folder}")


def check_report_path(uri: str) -> None:
    """A usage error, before the run, when the report could not be written at `uri`."""
    path = local_path(uri)
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"report {uri} is a directory; give a file name such as report.json")
    if not path.exists():
        check_can_create(path, "report")
    elif not os.access(path, os.W_OK):
        raise UsageError(f"report {uri} cannot be written: no permission")


def check_table_location(uri: str, what: str) -> None:
    """A usage error when the local `uri` can hold no Delta table this run could write: a
    file, a folder of other data, or a path that cannot be created. A Delta table's columns
    are checked once Spark is up."""
    path = local_path(uri)
    if path is None:
        return
    if not path.exists():
        check_can_create(path, what)
    elif path.is_file():
        raise not_a_table(what, uri)
    elif not any((path / "_delta_log").glob("*.json")):
        refuse_non_delta(what, uri, [entry.name for entry in path.iterdir()])


def not_a_table(what: str, uri: str) -> UsageError:
    return UsageError(f"{what} {uri} is a file, not a Delta table")


def refuse_non_delta(what: str, uri: str, names: list[str]) -> None:
    """A usage error for a folder Delta does not read as a table, unless it is empty (names
    starting with `_` or `.` are not data, as for Spark)."""
    data = sorted(n for n in names if not n.startswith(("_", ".")))
    if data:
        shown = ", ".join(data[:3]) + (", ..." if len(data) > 3 else "")
        raise UsageError(
            f"{what} {uri} is not a Delta table: it holds {shown} and no _delta_log; "
            "give a new or empty location, or the Delta table itself"
        )
    if "_delta_log" in names:
        raise UsageError(
            f"{what} {uri} has a _delta_log with no commit: a run was killed while creating "
            "it; remove that _delta_log and run again"
        )
