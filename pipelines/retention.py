"""The retention window (contract section 9): which versions of a table time travel, `diff`
and `rollback` may still read, told from the table's log alone.

Delta keeps a removed file for the table's `delta.deletedFileRetentionDuration` (7 days
unless `backfill maintain` set it from `tables.retain_days`), after which VACUUM may delete
it; and Delta refuses time travel to a version committed before that window (the latest
version is always readable). The readers without Spark (`history`, `diff`) apply the same
rule, so a version outside the window fails the same way everywhere: one line naming the
window (exit 2), before anything is read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.errors import UsageError

RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
DAY_MS = 24 * 3600 * 1000
DEFAULT_RETENTION_MS = 7 * DAY_MS  # Delta's default for the property
_UNIT_MS = {
    "week": 7 * DAY_MS,
    "day": DAY_MS,
    "hour": 3600 * 1000,
    "minute": 60 * 1000,
    "second": 1000,
}
_INTERVAL = re.compile(r"^\s*(?:interval\s+)?(\d+)\s+(week|day|hour|minute|second)s?\s*$", re.I)


@dataclass(frozen=True)
class Window:
    """Versions committed at `start` or later (ms since the epoch), and the latest, are
    readable; `oldest` is the first of them."""

    oldest: int
    start: int
    retention_ms: int

    def describe(self) -> str:
        days = f"{self.retention_ms / DAY_MS:g}"
        since = datetime.fromtimestamp(self.start / 1000, UTC).isoformat(timespec="seconds")
        return (
            f"{days} days ({RETENTION_PROPERTY}, set by `backfill maintain` from "
            f"tables.retain_days): Delta keeps the files of versions committed since {since}"
        )


def retention_ms(properties: Mapping[str, Any]) -> int:
    """The table's file retention, from its property (Delta's default when unset)."""
    text = properties.get(RETENTION_PROPERTY)
    match = _INTERVAL.match(str(text)) if text else None
    if match is None:
        return DEFAULT_RETENTION_MS
    return int(match.group(1)) * _UNIT_MS[match.group(2).lower()]


def window(
    commits: Iterable[Mapping[str, Any]],
    properties: Mapping[str, Any],
    now_ms: int | None = None,
) -> Window:
    """The window of a table whose kept `commits` (each with `version` and `timestamp` in
    ms, as `history` shows them) and `properties` are given."""
    kept = retention_ms(properties)
    start = (int(time.time() * 1000) if now_ms is None else now_ms) - kept
    ordered = sorted(commits, key=lambda commit: int(commit["version"]))
    inside = [int(c["version"]) for c in ordered if int(c["timestamp"]) >= start]
    oldest = inside[0] if inside else int(ordered[-1]["version"])
    return Window(oldest, start, kept)


def check_inside(
    uri: str,
    commits: Iterable[Mapping[str, Any]],
    properties: Mapping[str, Any],
    *versions: int,
) -> None:
    """A usage error naming the window when one of `versions` is older than it."""
    kept = window(commits, properties)
    for version in versions:
        if version < kept.oldest:
            raise UsageError(
                f"version {version} of {uri} is outside the retention window of "
                f"{kept.describe()}; the oldest version inside the window is {kept.oldest}"
            )
