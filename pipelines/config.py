"""One typed configuration, loaded from `conf/*.yaml` and overridden by command-line flags."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import UsageError


def conf_file(name: str) -> Path:
    """A file of `conf/`: the installed package's copy (`pipelines.conf`, package data), or
    the source tree's when the code runs from a checkout."""
    try:
        packaged = resources.files("pipelines.conf") / name
        if packaged.is_file():
            return Path(str(packaged))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "conf" / name


DEFAULT_CONFIG = conf_file("local.yaml")
# The config file when no --config is given, e.g. set once for a scheduler's every run.
CONFIG_ENV = "BACKFILL_CONFIG"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldNames(BaseModel):
    """Names of the contract's event fields in the raw records; a fold's own fields (such as
    `snapshot`'s `data`) may be mapped here too, and keep their own name otherwise."""

    model_config = ConfigDict(frozen=True, extra="allow")

    event_id: str = "event_id"
    key: str = "key"
    seq: str = "seq"
    event_time: str = "event_time"
    op: str = "op"
    amount: str = "amount"
    ingested_at: str = "ingested_at"

    def as_dict(self) -> dict[str, str]:
        names = dict(self.model_dump())
        for field, name in names.items():
            if not isinstance(name, str) or not name:
                raise UsageError(f"config fields.{field}: expected a field name, found {name!r}")
        return names


class QuarantineConfig(_Frozen):
    max_ratio: float | None = Field(default=None, ge=0.0, le=1.0)


class SparkConfig(_Frozen):
    master: str | None = "local[*]"
    app_name: str = "backfill"
    shuffle_partitions: int = Field(default=8, ge=1)
    jars_dir: str = "~/.cache/backfill-pipeline/jars"
    # Options for the driver's JVM (which runs the executors too in local mode), after the
    # pipeline's own, e.g. "-XX:+UseSerialGC".
    java_options: str = ""
    # Added for small runs: every command but a `backfill run` whose local sources (within
    # its --from/--to window) hold `small_run_mb` or more, e.g. "-XX:TieredStopAtLevel=1".
    small_run_java_options: str = ""
    small_run_mb: int = Field(default=128, ge=0)
    conf: dict[str, str] = Field(default_factory=dict)


class S3Config(_Frozen):
    """How to reach S3 or an S3-compatible server. Credentials never live here: they come
    from the standard AWS chain (environment, profile, web identity, instance role)."""

    endpoint: str | None = None  # None: AWS itself; e.g. http://127.0.0.1:9000 otherwise
    region: str = "us-east-1"
    path_style_access: bool = False
    ssl: bool = True
    # How long an endpoint that stops answering can hold a run. Every request (S3A's and
    # boto3's) gives up after `request_timeout_seconds` (S3A raises anything below 15 s to
    # 15 s) or `connect_timeout_seconds` to connect, and is tried `retry_limit` more times,
    # `retry_interval_seconds` apart and doubling: a dead endpoint fails a run within about
    # 4 x 20 s + 7 s by default (`failure_bound_seconds`), and a freeze shorter than that
    # is ridden out.
    connect_timeout_seconds: float = Field(default=10, gt=0)
    request_timeout_seconds: float = Field(default=20, gt=0)
    retry_limit: int = Field(default=3, ge=0)
    retry_interval_seconds: float = Field(default=1, gt=0)

    @property
    def s3a_request_timeout_seconds(self) -> float:
        """The request timeout S3A applies: it will not wait less than 15 s."""
        return max(self.request_timeout_seconds, 15.0)

    @property
    def failure_bound_seconds(self) -> float:
        """About the longest a dead endpoint holds a run before it fails."""
        attempts = self.retry_limit + 1
        pauses = self.retry_interval_seconds * (2**self.retry_limit - 1)
        wait = max(self.connect_timeout_seconds, self.s3a_request_timeout_seconds)
        return attempts * wait + pauses


class EventsConfig(_Frozen):
    """The events table (contract section 7)."""

    # Key buckets the table is partitioned by, fixed when it is created: re-folding a few
    # keys reads only their buckets, while each nightly append writes a file per bucket.
    buckets: int = Field(default=16, ge=1, le=4096)
    # The largest file `backfill maintain` writes when it lays the table out by key (Delta's
    # own default is 1024). A night that replaces stored events (a newer, different copy)
    # rewrites every file holding one, so smaller files bound that rewrite, and a bucket of
    # several files lets each file span fewer keys.
    max_file_mb: int = Field(default=32, ge=1, le=1024)


class TablesConfig(_Frozen):
    """How the tables are created (fixed when each is created), and how long `maintain`
    keeps their old versions readable."""

    # Days of versions `backfill maintain` keeps readable (contract section 9): VACUUM
    # removes a file only once the version that dropped it is older than this. Time travel,
    # `diff` and `rollback` reach back this far; a run or a reader may last at most this
    # long. Delta refuses to vacuum with less than its own 7-day default, and so does this.
    retain_days: int = Field(default=7, ge=7, le=3650)

    # On: a MERGE that corrects a few keys marks their old rows deleted instead of rewriting
    # every file that holds one, but readers without deletion-vector support (delta-rs, so
    # the `deltalake` package, Polars and DuckDB's delta extension) refuse to open the table.
    deletion_vectors: bool = False


class MetricsConfig(_Frozen):
    """Where each run's metrics go (contract section 12); both off by default."""

    # A Prometheus Pushgateway, e.g. http://pushgateway:9091 (job `backfill`, label `table`)
    pushgateway: str | None = None
    # A file for node_exporter's textfile collector, e.g. /var/lib/node_exporter/backfill.prom
    file: str | None = None
    # How long a gateway that does not answer may hold the end of a run (it costs a warning)
    timeout_seconds: float = Field(default=3, gt=0, le=60)


class LineageConfig(_Frozen):
    """Where each run's OpenLineage events go (contract section 12); off by default.

    `target` is an OpenLineage HTTP endpoint's base URL (events are POSTed to its
    `api/v1/lineage`, as Marquez takes them) or `file:PATH` (one JSON event per line,
    appended). `lineage: URL` is short for `lineage: {target: URL}`.
    """

    target: str | None = None
    namespace: str = "backfill"  # the jobs' namespace
    timeout_seconds: float = Field(default=3, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _target_alone(cls, data: Any) -> Any:
        if data is None:
            return {}
        return {"target": data} if isinstance(data, str) else data


class Config(_Frozen):
    fields: FieldNames = FieldNames()
    fold: str = "balance"  # a built-in, an installed plugin's name, or package.module:Class
    fold_options: dict[str, Any] = Field(default_factory=dict)  # the fold's constructor's
    quarantine: QuarantineConfig = QuarantineConfig()
    events: EventsConfig = EventsConfig()
    tables: TablesConfig = TablesConfig()
    spark: SparkConfig = SparkConfig()
    s3: S3Config = S3Config()
    metrics: MetricsConfig = MetricsConfig()
    lineage: LineageConfig = LineageConfig()

    def with_overrides(self, *, flags: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Return a copy with dotted keys replaced, e.g. `{"spark.master": "local[2]"}`; a
        value the config refuses is a usage error (exit 2) naming its flag in `flags`."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            name = (flags or {}).get(where, where)
            raise UsageError(f"{name} {overrides.get(where)!r}: {first['msg']}") from exc


def load_config(path: str | Path | None = None) -> Config:
    """Read a YAML config file into a `Config`; a bad file is a usage error (exit 2)."""
    config_path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    data = _read_yaml(config_path)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"config {config_path}: {where}: {first['msg']}") from exc


def _read_yaml(config_path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping, laid over the file it names in `extends` (relative to it)."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config {config_path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config {config_path} is not valid YAML: {_first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config {config_path} must be a mapping, found {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = (config_path.parent / str(parent)).resolve()
    if parent_path in seen:
        raise UsageError(f"config {config_path} extends itself through {parent_path}")
    return _deep_merge(_read_yaml(parent_path, (*seen, config_path.resolve())), data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
