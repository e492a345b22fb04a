"""A run's OpenLineage events (contract section 12), with `openlineage-python`: START before
the run reads anything, then COMPLETE or FAIL. Inputs are the run's sources (a redrive's:
its quarantine table), outputs the three tables, each with the rows the run wrote to it
(`outputStatistics`). A parent run given by the scheduler in `OPENLINEAGE_PARENT_ID` (and
`OPENLINEAGE_ROOT_PARENT_ID`), as `namespace/job/run id` (what Airflow's OpenLineage
provider's `lineage_parent_id` macro gives), becomes the `parent` facet.

Dataset names follow OpenLineage's naming: a local path is namespace `file`, name the
absolute path; `s3a://bucket/key` is namespace `s3://bucket`, name `key`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse

from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    OutputDatasetFacet,
    RunFacet,
    error_message_run,
    output_statistics_output_dataset,
    parent_run,
)
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from pipelines.config import LineageConfig
from pipelines.report import RunReport

PRODUCER = "urn:backfill-pipeline"  # who wrote the events (a URI, as the spec asks)
PARENT_ENV, ROOT_ENV = "OPENLINEAGE_PARENT_ID", "OPENLINEAGE_ROOT_PARENT_ID"
FILE_PREFIX = "file:"


def transport_for(config: LineageConfig) -> Transport:
    """The file or HTTP transport `config.target` names; an HTTP endpoint is tried twice."""
    assert config.target is not None
    if config.target.startswith(FILE_PREFIX):
        path = config.target[len(FILE_PREFIX) :]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return FileTransport(FileConfig(log_file_path=path, append=True))
    retry = {
        "total": 1,
        "connect": 1,
        "read": 1,
        "backoff_factor": 0.2,
        "allowed_methods": ["POST"],
    }
    return HttpTransport(HttpConfig(url=config.target, timeout=config.timeout_seconds, retry=retry))


def run_uuid(run_id: str) -> str:
    """The OpenLineage run id of a backfill run: a UUID derived from its run id, so both
    events of a run, and anyone who knows the run id, name the same run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"backfill:{run_id}"))


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a location, as OpenLineage's naming spec has them."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a", "s3n"):
        return f"s3://{parsed.netloc}", parsed.path.strip("/")
    if parsed.scheme in ("", "file"):
        return "file", os.path.abspath(parsed.path if parsed.scheme else uri)
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.strip("/")


def job_name(table: str, redrive: bool) -> str:
    """One job per state table (and one for its redrives): the graph's node for the tables."""
    return f"backfill.{'redrive' if redrive else 'run'}:{dataset_name(table)[1]}"


def start_event(
    config: LineageConfig, run_id: str, job: str, inputs: list[str], outputs: list[str]
) -> RunEvent:
    return _event(RunState.START, config, run_id, job, inputs, outputs, _parent_facets(), None)


def end_event(
    config: LineageConfig,
    run_id: str,
    job: str,
    inputs: list[str],
    outputs: list[str],
    report: RunReport | None,
    error: str | None,
) -> RunEvent:
    """COMPLETE, or FAIL with the error's one line; outputs carry the rows the run wrote."""
    facets = _parent_facets()
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", producer=PRODUCER
        )
    state = RunState.FAIL if error is not None else RunState.COMPLETE
    return _event(state, config, run_id, job, inputs, outputs, facets, _rows_written(report))


def _event(
    state: RunState,
    config: LineageConfig,
    run_id: str,
    job: str,
    inputs: list[str],
    outputs: list[str],
    facets: dict[str, RunFacet],
    written: list[int] | None,
) -> RunEvent:
    """A RunEvent of this run's job, its sources as inputs and its tables as outputs (with
    the rows written to each, when known)."""

    def statistics(rows: int) -> dict[str, OutputDatasetFacet]:
        return {
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows, producer=PRODUCER
            )
        }

    return RunEvent(
        eventType=state,
        eventTime=_now(),
        run=Run(runId=run_uuid(run_id), facets=facets),
        job=Job(namespace=config.namespace, name=job),
        inputs=[InputDataset(*dataset_name(uri)) for uri in inputs],
        outputs=[
            OutputDataset(
                *dataset_name(uri),
                outputFacets=statistics(written[i]) if written is not None else {},
            )
            for i, uri in enumerate(outputs)
        ],
        producer=PRODUCER,
    )


def _rows_written(report: RunReport | None) -> list[int] | None:
    """Rows written to the state, events and quarantine tables, in that order."""
    if report is None:
        return None
    keys = report.keys
    state = (
        0
        if report.table_version_after == report.table_version_before
        else (keys.inserted + keys.updated + keys.deleted)
    )
    marked = report.redrive.quarantine_rows_marked if report.redrive else 0
    return [
        state,
        report.events_inserted + report.events_replaced,
        report.quarantine_rows_added + marked,
    ]


def _parent_facets() -> dict[str, RunFacet]:
    parent = _parse(os.environ.get(PARENT_ENV))
    if parent is None:
        return {}
    root = _parse(os.environ.get(ROOT_ENV)) or parent
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent[2]),
            job=parent_run.Job(namespace=parent[0], name=parent[1]),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=root[2]),
                job=parent_run.RootJob(namespace=root[0], name=root[1]),
            ),
            producer=PRODUCER,
        )
    }


def _parse(value: str | None) -> tuple[str, str, str] | None:
    """`namespace/job/run id` (a job's name may hold `/`), or None if it is not that."""
    if not value:
        return None
    namespace, _, rest = value.partition("/")
    job, _, run_id = rest.rpartition("/")
    try:
        uuid.UUID(run_id)
    except ValueError:
        return None
    return (namespace, job, run_id) if namespace and job else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
