"""Airflow DAG: the nightly run, submitted to Spark, retried safely.

Each night reads only that day's `dt=` partition of the raw log (`--from/--to` the logical
date), stores its new events in the events table, and folds only the keys they touch: a late
or re-delivered event re-folds its key from the events table. Retries and re-runs of a date
are exact by construction: events already stored are duplicates, each raw record is
quarantined once, and the state folds from the events version it last reflected. A cleared
old date is processed again (late files that landed since are picked up).
`max_active_runs=1` keeps runs from overlapping (one writer per table).

Settings come from Airflow Variables, with these defaults:
  backfill_home    where this repository is deployed      (/opt/backfill)
  backfill_master  the Spark master URL                   (local[2])
  backfill_config  the pipeline config                    (<home>/conf/local.yaml)
  backfill_source  the raw events, dt=YYYY-MM-DD partitioned (required)
  backfill_table   the state Delta table                  (required)
  backfill_pushgateway  a Prometheus Pushgateway URL for each run's metrics   (none)
  backfill_metrics_file a node_exporter textfile path for them               (none)
  backfill_lineage      an OpenLineage endpoint URL or file:PATH             (none)

With Airflow's OpenLineage provider installed, each run's lineage names this task's run as
its parent (OPENLINEAGE_PARENT_ID / OPENLINEAGE_ROOT_PARENT_ID from the provider's macros).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

HOME = "{{ var.value.get('backfill_home', '/opt/backfill') }}"
SUBMIT = (
    f"{HOME}/infra/spark-submit.sh"
    " --master {{ var.value.get('backfill_master', 'local[2]') }}"
    " --config {{ var.value.get('backfill_config',"
    " var.value.get('backfill_home', '/opt/backfill') ~ '/conf/local.yaml') }}"
    " -- run"
    " --source {{ var.value.backfill_source }} --from {{ ds }} --to {{ ds }}"
    " --table {{ var.value.backfill_table }}"
    " --run-id {{ dag.dag_id }}-{{ ds_nodash }}-try{{ ti.try_number }}"
    " --report {{ var.value.backfill_table }}_reports/{{ ds }}.json"
    # Where operators look (contract section 12): each flag only where its Variable is set.
    "{% for flag, name in [('--metrics-push', 'backfill_pushgateway'),"
    " ('--metrics-file', 'backfill_metrics_file'), ('--lineage', 'backfill_lineage')] %}"
    "{% if var.value.get(name, '') %} {{ flag }} {{ var.value.get(name) }}{% endif %}"
    "{% endfor %}"
)
# The provider's ids of this task's run and of the DAG run, as `namespace/job/run id`.
PLUGIN = "macros.OpenLineageProviderPlugin"
LINEAGE_PARENT = {
    "OPENLINEAGE_PARENT_ID": (
        f"{{{{ {PLUGIN}.lineage_parent_id(task_instance) if {PLUGIN} is defined else '' }}}}"
    ),
    "OPENLINEAGE_ROOT_PARENT_ID": (
        f"{{{{ {PLUGIN}.lineage_root_parent_id(task_instance) if {PLUGIN} is defined else '' }}}}"
    ),
}

with DAG(
    dag_id="backfill_daily",
    description="Recompute per-key state from the raw event log and MERGE it into Delta",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=6),
    },
    tags=["backfill", "delta"],
) as dag:
    BashOperator(task_id="backfill", bash_command=SUBMIT, env=LINEAGE_PARENT, append_env=True)
