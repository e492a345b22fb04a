"""What every stage of a run is given: the request, and a context holding the session, the
config, the fold, where progress goes, and the frames the run keeps until it ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from pipelines.config import Config
from pipelines.folds import Fold, get_fold
from pipelines.io.sources import DateWindow
from pipelines.report import Counts
from pipelines.schema import default_events_uri, default_quarantine_uri

Progress = Callable[[str], None]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class RedriveFilter:
    """Which quarantined records a redrive re-reads (contract section 11): those whose
    current reason starts with one of `reasons` (any, if none), quarantined by `run_id`
    (any, if None)."""

    reasons: tuple[str, ...] = ()
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"reasons": list(self.reasons), "run_id": self.run_id}


@dataclass(frozen=True)
class RunRequest:
    """One backfill run, as the user asked for it. The events and quarantine tables default
    to `<table>_events` and `<table>_quarantine`."""

    sources: list[str]
    table: str
    quarantine_table: str = ""
    events_table: str = ""
    window: DateWindow = field(default_factory=DateWindow)
    full: bool = False  # re-fold every key from the events table
    dry_run: bool = False
    report_path: str | None = None
    run_id: str = field(default_factory=new_run_id)
    # Delta idempotent writes: (app id, version). A commit whose version is not above the
    # last one recorded for the app id is skipped, so a retried window applies once.
    txn: tuple[str, int] | None = None
    # A redrive: the run's records are these quarantined ones, not `sources`.
    redrive: RedriveFilter | None = None

    def __post_init__(self) -> None:
        if not self.quarantine_table:
            object.__setattr__(self, "quarantine_table", default_quarantine_uri(self.table))
        if not self.events_table:
            object.__setattr__(self, "events_table", default_events_uri(self.table))

    @property
    def window_bounds(self) -> dict[str, str | None]:
        start, end = self.window.start, self.window.end
        return {
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
        }


@dataclass
class RunContext:
    """The session, config, fold and request of one run, and the frames it keeps cached."""

    spark: SparkSession
    config: Config
    fold: Fold
    request: RunRequest
    progress: Progress
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    code_version: str = field(default_factory=lambda: _code_version())
    cached: list[DataFrame] = field(default_factory=list)

    @classmethod
    def open(
        cls, spark: SparkSession, config: Config, request: RunRequest, progress: Progress
    ) -> RunContext:
        return cls(spark, config, get_fold(config.fold, config.fold_options), request, progress)

    def persist(
        self, df: DataFrame, level: StorageLevel = StorageLevel.MEMORY_AND_DISK
    ) -> DataFrame:
        """Persist `df` until the run ends; frames with a row per key stay in memory."""
        self.cached.append(df.persist(level))
        return df

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()
        self.cached.clear()

    def commit_metadata(self, counts: Counts, mode: str, **extra: Any) -> dict[str, Any]:
        """What every Delta commit of this run carries as `userMetadata`."""
        request = self.request
        return {
            "writer": "backfill",
            "run_id": request.run_id,
            "fold": self.config.fold,
            "sources": list(request.sources),
            "window": request.window_bounds,
            "mode": mode,
            "counts": {
                "records_read": counts.records_read,
                "valid_unique": counts.valid_unique,
                "duplicates_dropped": counts.duplicates_dropped,
                "quarantined": counts.quarantined,
            },
            "code_version": self.code_version,
            **({"redrive": request.redrive.to_json()} if request.redrive else {}),
            **extra,
        }

    @property
    def requested_mode(self) -> str:
        """The mode the run starts in; a state without a mark makes the fold full anyway."""
        return "full" if self.request.full else "incremental"


def _code_version() -> str:
    try:
        return metadata.version("backfill-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"
