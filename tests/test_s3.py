"""Sources and tables on S3, against a real S3 server process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date
from pathlib import Path

import pytest

from pipelines import versions
from pipelines.config import S3Config
from pipelines.generate.log import FaultRates, generate_log
from pipelines.io import delta_log, s3
from pipelines.io.reports import REPORTS_DIR
from pipelines.io.sources import SOURCE_FILE, DateWindow, read_sources
from pipelines.report import format_diff_summary, json_default
from pipelines.session import apply_s3_settings
from tests.cli import ROOT, assert_one_line_error, run_cli, run_main
from tests.helpers import backfill, table_states
from tests.reference import read_lines, reference_backfill
from tests.s3server import issue_access_key, s3_server
from tests.test_log_versions import backfill_without_spark
from tests.test_pipeline import HEAVY_FAULTS, assert_matches_reference


@pytest.fixture(scope="module")
def s3_config(spark):
    with s3_server() as config:
        apply_s3_settings(spark, config)
        yield config


@pytest.fixture
def s3_run_config(config, s3_config):
    return config.model_copy(update={"s3": s3_config})


@pytest.fixture
def bucket(s3_config):
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3.client(s3_config).create_bucket(Bucket=name)
    return name


@pytest.fixture
def config_file(tmp_path, s3_config):
    path = tmp_path / "s3-test.yaml"
    path.write_text(
        f"extends: {ROOT / 'conf' / 's3.yaml'}\n"
        "spark:\n  master: local[2]\n  shuffle_partitions: 2\n"
        f"s3:\n  endpoint: {s3_config.endpoint}\n  path_style_access: true\n  ssl: false\n"
    )
    return path


def upload(events: Path, bucket: str, prefix: str, s3_config) -> str:
    s3.upload_tree(events, f"s3://{bucket}/{prefix}", s3_config)
    return f"s3a://{bucket}/{prefix}"


@pytest.mark.parametrize("data_format", ["json", "parquet"])
def test_backfill_on_s3_equals_reference(
    spark, s3_run_config, s3_config, bucket, tmp_path, data_format
):
    events = tmp_path / "events"
    generate_log(
        events, events=1500, keys=40, seed=21, faults=HEAVY_FAULTS, data_format=data_format
    )
    expected = reference_backfill(read_lines(events))
    source = upload(events, bucket, "raw/events", s3_config)
    table = f"s3a://{bucket}/tables/state"

    report = backfill(spark, s3_run_config, [source], table)

    assert report.status == "committed"
    assert_matches_reference(spark, report, table, expected)
    quarantine = spark.read.format("delta").load(f"{table}_quarantine")
    assert quarantine.count() == expected.quarantined
    kept = s3.client(s3_config).get_object(
        Bucket=bucket, Key=f"tables/state/{REPORTS_DIR}/{report.run_id}.json"
    )
    assert json.loads(kept["Body"].read())["counts"]["records_read"] == expected.records_read
    rerun = backfill(spark, s3_run_config, [source], table)
    assert (rerun.keys.inserted, rerun.keys.updated) == (0, 0)


def test_partition_pruning_reads_only_the_selected_partitions(
    spark, s3_run_config, s3_config, bucket, tmp_path
):
    events = tmp_path / "events"
    generate_log(events, events=1000, keys=20, seed=22, faults=HEAVY_FAULTS, days=4)
    source = upload(events, bucket, "raw", s3_config)
    window = DateWindow(date(2026, 1, 2), date(2026, 1, 3))

    (raw,) = read_sources(spark, [source], window)
    plan = raw.df._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(dt" in plan and "2026-01-02" in plan
    read_from = {
        r[SOURCE_FILE].split("/")[-2] for r in raw.df.select(SOURCE_FILE).distinct().collect()
    }
    assert read_from == {"dt=2026-01-02", "dt=2026-01-03"}

    selected = [d for d in events.glob("dt=*") if d.name in ("dt=2026-01-02", "dt=2026-01-03")]
    expected = reference_backfill([line for d in selected for line in read_lines(d)])
    table = f"s3a://{bucket}/state"
    report = backfill(spark, s3_run_config, [f"{source}/"], table, window=window)
    assert_matches_reference(spark, report, table, expected)


def test_history_diff_rollback_on_s3(spark, s3_run_config, s3_config, bucket, tmp_path):
    events = tmp_path / "events"
    generate_log(events, events=600, keys=15, seed=23, faults=FaultRates())
    source = upload(events, bucket, "raw", s3_config)
    table = f"s3a://{bucket}/state"
    backfill(spark, s3_run_config, [source], table)
    spark.sql(f"UPDATE delta.`{table}` SET balance = balance * 2 WHERE key = 'acct-000003'")

    assert [c["operation"] for c in versions.history(spark, table)][:2] == ["UPDATE", "MERGE"]
    changed = versions.diff(spark, table, 1, 2).changes.collect()
    assert [r["key"] for r in changed] == ["acct-000003"]
    versions.rollback(spark, table, 1, reason="undo the manual edit")
    assert table_states(spark, table) == table_states(spark, table, 1)


def test_history_and_diff_on_s3_without_spark_equal_spark(
    spark, s3_run_config, s3_config, bucket, config_file, tmp_path
):
    events = tmp_path / "events"
    generate_log(events, events=600, keys=15, seed=24, faults=FaultRates())
    table = f"s3a://{bucket}/state"
    backfill(spark, s3_run_config, [upload(events, bucket, "raw", s3_config)], table)
    spark.sql(f"UPDATE delta.`{table}` SET balance = balance * 2 WHERE key = 'acct-000003'")
    commits = versions.history(spark, table)
    table_diff = versions.diff(spark, table, 0)
    rows = [r.asDict(recursive=True) for r in table_diff.changes.orderBy("key").collect()]
    assert table_diff.method == "change_data_feed" and len(rows) == 15

    for uri in (table, f"s3://{bucket}/state"):  # S3A's scheme, and the plain one
        history = backfill_without_spark(
            "history", "--table", uri, "--json", "--config", str(config_file)
        )
        assert history.returncode == 0, history.stderr
        assert history.stdout.splitlines() == [
            json.dumps(c, sort_keys=True, default=json_default) for c in commits
        ]
    diff = backfill_without_spark(
        "diff", "--table", table, "--from-version", "0", "--json", "--config", str(config_file)
    )
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == [
        json.dumps(r, sort_keys=True, default=json_default) for r in rows
    ]
    assert diff.stderr.splitlines() == [format_diff_summary(table_diff.summary())]
    assert_one_line_error(
        backfill_without_spark(
            "history", "--table", f"s3a://{bucket}/nothing", "--config", str(config_file)
        ),
        2,
        f"s3a://{bucket}/nothing is not a Delta table",
    )
    assert_one_line_error(
        backfill_without_spark(
            "history", "--table", "s3a://gone-bucket/t", "--config", str(config_file)
        ),
        2,
        "bucket gone-bucket does not exist",
    )


def test_delta_rs_reaches_s3_with_s3a_settings_and_the_standard_chain(monkeypatch):
    """The endpoint, region, path style and TLS of the config; the chain's credentials with
    their session token; a virtual-hosted endpoint names the bucket in its host, as S3A does."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    path_style = S3Config(endpoint="127.0.0.1:9000", path_style_access=True, ssl=False)
    options = delta_log.storage_options("s3a://lake/tables/state", path_style)
    assert delta_log.table_uri("s3a://lake/tables/state/") == "s3://lake/tables/state"
    assert {
        name: options[name]
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ALLOW_HTTP",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
        )
    } == {
        "AWS_ACCESS_KEY_ID": "key-id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }
    hosted = S3Config(endpoint="https://s3.example.com", region="eu-west-3")
    options = delta_log.storage_options("s3a://lake/state", hosted)
    assert options["AWS_ENDPOINT_URL"] == "https://lake.s3.example.com"
    assert (options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"], options["AWS_ALLOW_HTTP"]) == (
        "true",
        "false",
    )
    assert "AWS_ENDPOINT_URL" not in delta_log.storage_options("s3://lake/state", S3Config())
    assert delta_log.storage_options("/local/state", path_style) == {}


def test_generate_to_s3_and_preflight_counts(s3_config, bucket, config_file):
    result = run_main(
        "generate",
        "--out",
        f"s3://{bucket}/gen",
        "--events",
        "300",
        "--keys",
        "5",
        "--days",
        "2",
        "--config",
        str(config_file),
    )
    assert result.returncode == 0, result.stderr
    listed = s3.client(s3_config).list_objects_v2(Bucket=bucket, Prefix="gen/")["Contents"]
    stats = s3.preflight(f"s3a://{bucket}/gen", s3_config)
    assert stats.objects == len(listed) and stats.bytes == sum(o["Size"] for o in listed)
    only_day = s3.preflight(f"s3a://{bucket}/gen/dt=2026-01-01/*.jsonl", s3_config)
    assert 0 < only_day.objects < stats.objects


def test_s3_error_paths_exit_2_before_spark(bucket, config_file, tmp_path):
    base = ["run", "--table", f"s3a://{bucket}/state", "--config", str(config_file)]
    assert_one_line_error(
        run_main(*base, "--source", "s3a://no-such-bucket-here/events"),
        2,
        "bucket no-such-bucket-here does not exist",
    )
    assert_one_line_error(
        run_main(*base, "--source", f"s3a://{bucket}/nothing/here"), 2, "does not exist"
    )
    table_in_missing_bucket = [
        "run",
        "--source",
        str(ROOT / "conf"),
        "--table",
        "s3a://gone-bucket/t",
        "--config",
        str(config_file),
    ]
    assert_one_line_error(
        run_main(*table_in_missing_bucket), 2, "bucket gone-bucket does not exist"
    )

    # A process of its own: boto3 keeps the credentials it found in this one.
    no_credentials = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = run_cli(*base, "--source", f"s3a://{bucket}/x", env=no_credentials, timeout=120)
    assert_one_line_error(result, 2, "no AWS credentials found")
    assert "backfill-test" not in result.stderr


def test_bad_credentials_exit_2_and_are_never_printed(tmp_path):
    with s3_server(check_credentials=True) as checking:
        key_id, secret = issue_access_key(checking)
        issued = _client_with(checking, key_id, secret)
        issued.create_bucket(Bucket="checked-bucket")
        issued.put_object(Bucket="checked-bucket", Key="events/a.jsonl", Body=b"{}")
        config_file = tmp_path / "checking.yaml"
        config_file.write_text(
            f"extends: {ROOT / 'conf' / 's3.yaml'}\n"
            f"s3:\n  endpoint: {checking.endpoint}\n  path_style_access: true\n  ssl: false\n"
        )
        for wrong_id, wrong_secret in ((key_id, "not-the-secret"), ("AKIAUNKNOWN", secret)):
            result = run_cli(
                "run",
                "--source",
                "s3a://checked-bucket/events",
                "--table",
                "s3a://checked-bucket/t",
                "--config",
                str(config_file),
                env={
                    **os.environ,
                    "AWS_ACCESS_KEY_ID": wrong_id,
                    "AWS_SECRET_ACCESS_KEY": wrong_secret,
                },
                timeout=120,
            )
            assert_one_line_error(result, 2, "S3 refused the credentials")
            assert wrong_secret not in result.stderr and secret not in result.stderr


def _client_with(config, key_id: str, secret: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=config.endpoint,
        region_name=config.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
