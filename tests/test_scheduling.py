"""Scheduled runs: the Airflow DAG run by real Airflow, the cron lock, the k8s manifest."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pyspark
import pytest
import yaml

from pipelines.cli import build_parser
from pipelines.generate.log import generate_log
from tests.helpers import table_states
from tests.reference import read_lines, reference_backfill

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"

PARSE_DAG = """
import json, os
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["DAGS"], include_examples=False)
dags = {}
for dag_id, dag in bag.dags.items():
    (task,) = dag.tasks
    dags[dag_id] = {
        "task_id": task.task_id,
        "schedule": str(getattr(dag, "schedule", None) or getattr(dag, "schedule_interval", None)),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "retries": task.retries,
        "bash_command": task.bash_command,
    }
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": dags,
}))
"""


class _Variables(dict):
    def __getattr__(self, name: str) -> str:
        return self[name]


def render(template: str, **more: str) -> list[str]:
    variables = _Variables(
        backfill_source="s3a://lake/raw/events/", backfill_table="/lake/state", **more
    )
    context = {
        "var": SimpleNamespace(value=variables),
        "dag": SimpleNamespace(dag_id="backfill_daily"),
        "ds": "2026-03-04",
        "ds_nodash": "20260304",
        "ti": SimpleNamespace(try_number=2),
    }
    return shlex.split(jinja2.Template(template).render(**context))


def test_dag_parses_in_real_airflow_and_submits_an_idempotent_daily_run(tmp_path):
    if not AIRFLOW_PYTHON.exists():
        pytest.fail("the Airflow venv is missing: run `make airflow` (make test does)")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "DAGS": str(ROOT / "infra" / "airflow"),
    }
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", PARSE_DAG], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])

    assert parsed["import_errors"] == {}
    assert sorted(parsed["dags"]) == ["backfill_daily", "backfill_maintain"]
    daily, weekly = parsed["dags"]["backfill_daily"], parsed["dags"]["backfill_maintain"]
    assert (daily["task_id"], daily["schedule"]) == ("backfill", "@daily")
    assert daily["max_active_runs"] == 1 and daily["retries"] >= 1
    command = render(daily["bash_command"])
    assert command[0] == "/opt/backfill/infra/spark-submit.sh"
    assert command[command.index("--config") + 1] == "/opt/backfill/conf/local.yaml"
    backfill_args = command[command.index("--") + 1 :]
    args = build_parser().parse_args(backfill_args)
    assert (args.command, args.source, args.table) == (
        "run",
        ["s3a://lake/raw/events/"],
        "/lake/state",
    )
    assert (str(args.from_date), str(args.to_date)) == ("2026-03-04", "2026-03-04")
    assert (args.txn_app_id, args.full) == (None, False)  # a cleared old date runs again
    assert args.run_id == "backfill_daily-20260304-try2"
    assert (args.metrics_push, args.metrics_file, args.lineage) == (None, None, None)
    observed = render(
        daily["bash_command"],
        backfill_pushgateway="http://pushgateway:9091",
        backfill_lineage="http://marquez:5000",
    )
    args = build_parser().parse_args(observed[observed.index("--") + 1 :])
    assert (args.metrics_push, args.metrics_file) == ("http://pushgateway:9091", None)
    assert args.lineage == "http://marquez:5000"

    # The weekly upkeep of the same tables (contract section 9).
    assert (weekly["task_id"], weekly["schedule"]) == ("maintain", "@weekly")
    assert weekly["max_active_runs"] == 1 and weekly["retries"] >= 1
    command = render(weekly["bash_command"])
    args = build_parser().parse_args(command[command.index("--") + 1 :])
    assert (args.command, args.table, args.json, args.dry_run) == (
        "maintain",
        "/lake/state",
        True,
        False,
    )


@pytest.mark.slow
def test_airflow_runs_the_dag_for_a_date_and_a_rerun_applies_nothing_twice(spark, tmp_path):
    """`airflow dags test` on a SQLite metadata DB: the task submits the real wrapper with
    spark-submit over that date's partition; running the same logical date again changes
    nothing (no new state version, nothing quarantined twice)."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail("the Airflow venv is missing: run `make airflow` (make test does)")
    events, table = tmp_path / "events", tmp_path / "state"
    generate_log(events, events=300, keys=12, days=3, seed=7)
    config = tmp_path / "airflow-test.yaml"
    config.write_text(f"extends: {ROOT / 'conf' / 'local.yaml'}\nspark:\n  shuffle_partitions: 2\n")
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "infra" / "airflow"),
        # Airflow Variables, as a deployment sets them
        "AIRFLOW_VAR_BACKFILL_HOME": str(ROOT),
        "AIRFLOW_VAR_BACKFILL_MASTER": "local[2]",
        "AIRFLOW_VAR_BACKFILL_CONFIG": str(config),
        "AIRFLOW_VAR_BACKFILL_SOURCE": str(events),
        "AIRFLOW_VAR_BACKFILL_TABLE": str(table),
    }
    airflow = str(AIRFLOW_PYTHON.parent / "airflow")
    migrated = subprocess.run(
        [airflow, "db", "migrate"], capture_output=True, text=True, env=env, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]

    def run_date(day: str) -> tuple[str, dict]:
        result = subprocess.run(
            [airflow, "dags", "test", "backfill_daily", day],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        with sqlite3.connect(home / "airflow.db") as db:
            (state,) = db.execute(
                "SELECT ti.state FROM task_instance ti JOIN dag_run r USING (dag_id, run_id)"
                " WHERE ti.dag_id = 'backfill_daily' AND ti.task_id = 'backfill'"
                " AND date(r.logical_date) = ?",
                (day,),
            ).fetchone()
        report = json.loads((tmp_path / "state_reports" / f"{day}.json").read_text())
        return state, report

    day = "2026-01-02"
    expected = reference_backfill(read_lines(events / f"dt={day}"))
    state, first = run_date(day)
    assert state == "success"
    assert first["run_id"] == "backfill_daily-20260102-try1" and first["status"] == "committed"
    assert first["window"] == {"from": day, "to": day}
    assert first["counts"]["records_read"] == expected.records_read
    assert first["counts"]["quarantined_by_reason"] == dict(expected.reasons)
    assert table_states(spark, table) == expected.states

    state, again = run_date(day)
    assert state == "success"
    assert again["status"] == "unchanged", again
    assert again["table_version_after"] == first["table_version_after"]
    assert again["events_inserted"] == 0 and again["quarantine_rows_added"] == 0
    assert again["counts"]["records_read"] == expected.records_read
    assert table_states(spark, table) == expected.states


def test_cron_runs_never_overlap(tmp_path):
    lock = tmp_path / "backfill.lock"
    script = ROOT / "infra" / "cron" / "run-backfill.sh"
    env = {**os.environ, "BACKFILL_LOCK": str(lock), "BACKFILL_HOME": str(ROOT)}
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        blocked = subprocess.run(
            [str(script), str(tmp_path / "events"), str(tmp_path / "state")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert blocked.returncode == 75
    assert "another run holds" in blocked.stderr
    # With the lock free the backfill itself starts (and refuses the missing source).
    free = subprocess.run(
        [str(script), str(tmp_path / "events"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert free.returncode == 2 and "does not exist" in free.stderr


def test_kubernetes_spark_application_is_valid():
    manifest = yaml.safe_load(
        (ROOT / "infra" / "k8s" / "backfill-sparkapplication.yaml").read_text()
    )
    assert manifest["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert manifest["kind"] == "SparkApplication"
    spec = manifest["spec"]
    for required in (
        "type",
        "mode",
        "image",
        "mainApplicationFile",
        "sparkVersion",
        "driver",
        "executor",
    ):
        assert required in spec, required
    assert spec["type"] == "Python" and spec["mode"] in ("cluster", "client")
    assert spec["sparkVersion"] == pyspark.__version__
    entry = spec["mainApplicationFile"].removeprefix("local:///opt/backfill/")
    assert (ROOT / entry).is_file()
    args = build_parser().parse_args(spec["arguments"])
    assert args.command == "run" and args.txn_app_id and args.txn_version
    assert (ROOT / args.config.removeprefix("/opt/backfill/")).is_file()
    assert all(str(v) == v for v in spec["sparkConf"].values())  # Spark conf values are strings
