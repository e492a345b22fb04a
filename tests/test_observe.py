"""Where operators look (contract section 12): each run's metrics on a real Prometheus
Pushgateway (Debian's `prometheus-pushgateway`, started here on a free loopback port) and in
a node_exporter textfile, and its OpenLineage events through the file transport and to an
HTTP receiver on loopback, checked against the RunEvent schema. An endpoint that does not
answer costs one warning line within seconds, never the run."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.config import load_config
from pipelines.observe.observer import Observer
from pipelines.run import store
from tests.cli import run_main
from tests.helpers import event_line
from tests.s3server import free_port

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / ".venv" / "bin" / "prometheus-pushgateway"
SERIES = (
    "backfill_run_duration_seconds",
    "backfill_records",
    "backfill_keys",
    "backfill_last_run_status",
    "backfill_last_success_timestamp_seconds",
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A real Pushgateway on a free loopback port, for this module."""
    binary = GATEWAY if GATEWAY.exists() else shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is missing: run `make pushgateway` (make test does)")
    port = free_port()
    process = subprocess.Popen(
        [str(binary), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the Pushgateway did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """A night of 12 events over 4 keys, one re-delivered twice, and two bad lines."""
    lines = [
        event_line(f"{key}-{seq}", key, seq, "add", amount=str(seq))
        for key in "abcd"
        for seq in (1, 2, 3)
    ]
    lines += [lines[0], lines[0], "not json", event_line("x-1", "x", 1, "add")]  # 2 dups, 2 bad
    folder = tmp_path_factory.mktemp("observe") / "events"
    folder.mkdir()
    (folder / "part-0.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return folder


def scrape(gateway: str, table: str) -> dict[tuple[str, str], float]:
    """The gateway's `backfill_*` samples of job `backfill` and this table, by (name, label)."""
    text = urllib.request.urlopen(f"{gateway}/metrics", timeout=5).read().decode()
    return samples(text, table, job="backfill")


def samples(text: str, table: str, **labels: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("backfill_") or sample.labels.get("table") != table:
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            label = sample.labels.get("outcome") or sample.labels.get("change") or ""
            found[(sample.name, label)] = sample.value
    return found


def expected_series(report: dict) -> dict[tuple[str, str], float]:
    counts, keys = report["counts"], report["keys"]
    return {
        ("backfill_records", "read"): counts["records_read"],
        ("backfill_records", "valid_unique"): counts["valid_unique"],
        ("backfill_records", "duplicates_dropped"): counts["duplicates_dropped"],
        ("backfill_records", "quarantined"): counts["quarantined"],
        **{("backfill_keys", c): keys[c] for c in ("inserted", "updated", "deleted", "unchanged")},
    }


def test_a_night_pushes_its_report_and_a_failed_run_keeps_the_last_success(
    spark, gateway, night, tmp_path
):
    table, prom = str(tmp_path / "state"), tmp_path / "textfile" / "backfill.prom"
    flags = ("--metrics-push", gateway, "--metrics-file", str(prom))
    report_file = tmp_path / "night.json"

    result = run_main(
        "run",
        "--source",
        str(night),
        "--table",
        table,
        "--report",
        str(report_file),
        *flags,
        spark=spark,
    )

    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    report = json.loads(report_file.read_text())
    pushed = scrape(gateway, table)
    assert {name for name, _ in pushed} == set(SERIES) | {"backfill_last_run_timestamp_seconds"}
    assert {k: pushed[k] for k in expected_series(report)} == expected_series(report)
    assert expected_series(report)[("backfill_records", "read")] == 16
    assert pushed[("backfill_last_run_status", "")] == 0
    success = pushed[("backfill_last_success_timestamp_seconds", "")]
    assert abs(success - time.time()) < 120
    assert pushed[("backfill_run_duration_seconds", "")] >= report["duration_seconds"]
    written = samples(prom.read_text(), table)
    assert written == pushed  # the textfile holds the same series
    assert not list(prom.parent.glob("*.tmp*"))  # written atomically: no temporary left

    # 2 of 16 records quarantined: over a threshold of 10%, exit 3, nothing folded.
    over = run_main(
        "run",
        "--source",
        str(night),
        "--table",
        table,
        "--max-quarantine-ratio",
        "0.1",
        "--report",
        str(tmp_path / "over.json"),
        *flags,
        spark=spark,
    )

    assert over.returncode == 3, over.stderr
    after = scrape(gateway, table)
    assert after[("backfill_last_run_status", "")] == 3
    assert after[("backfill_last_success_timestamp_seconds", "")] == success  # kept
    assert after[("backfill_last_run_timestamp_seconds", "")] > success
    over_report = json.loads((tmp_path / "over.json").read_text())
    assert {k: after[k] for k in expected_series(over_report)} == expected_series(over_report)
    assert samples(prom.read_text(), table) == after


class _Silent:
    """A TCP port that accepts connections and never answers: an endpoint that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_endpoints_that_do_not_answer_cost_a_warning_line_each_within_seconds(
    spark, night, tmp_path
):
    silent = _Silent()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused at once
    try:
        config = load_config().with_overrides(
            **{"metrics.pushgateway": silent.url, "lineage.target": dead}
        )
        warnings: list[str] = []
        observer = Observer(config, "r1", "/t", ["/src"], ["/t"], warn=warnings.append)
        started = time.monotonic()
        observer.started()
        observer.finished(None, 0, None)
        assert time.monotonic() - started < 10
        assert len(warnings) == 2  # lineage once (START; no end event after it), gateway once
        assert silent.url in warnings[1] and "Pushgateway" in warnings[1]
        assert dead in warnings[0] and "no lineage" in warnings[0]

        result = run_main(
            "run",
            "--source",
            str(night),
            "--table",
            str(tmp_path / "state"),
            "--metrics-push",
            silent.url,
            "--lineage",
            dead,
            spark=spark,
        )
    finally:
        silent.close()

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("backfill: warning")]
    assert len(lines) == 2 and all("Traceback" not in line for line in lines)


# The RunEvent of OpenLineage's spec (2-0-2), as its required fields, enums and the facets
# this pipeline writes; the spec's own file is not in a registry these machines reach.
FACET = {"type": "object", "required": ["_producer", "_schemaURL"]}
DATASET = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": {"type": "object", "additionalProperties": FACET},
        "inputFacets": {"type": "object", "additionalProperties": FACET},
        "outputFacets": {
            "type": "object",
            "additionalProperties": FACET,
            "properties": {
                "outputStatistics": {
                    **FACET,
                    "properties": {"rowCount": {"type": "integer", "minimum": 0}},
                    "required": [*FACET["required"], "rowCount"],
                }
            },
        },
    },
}
RUN_EVENT = {
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "eventType", "run", "job"],
    "properties": {
        "eventTime": {"type": "string"},
        "producer": {"type": "string", "pattern": "^[a-z][a-z0-9+.-]*:"},
        "schemaURL": {"type": "string", "pattern": "^https://openlineage.io/spec/"},
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string"},
                "facets": {
                    "type": "object",
                    "additionalProperties": FACET,
                    "properties": {
                        "parent": {
                            **FACET,
                            "required": [*FACET["required"], "run", "job"],
                            "properties": {
                                "run": {"type": "object", "required": ["runId"]},
                                "job": {"type": "object", "required": ["namespace", "name"]},
                            },
                        },
                        "errorMessage": {
                            **FACET,
                            "required": [*FACET["required"], "message", "programmingLanguage"],
                        },
                    },
                },
            },
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"facets": {"type": "object", "additionalProperties": FACET}},
        },
        "inputs": {"type": "array", "items": DATASET},
        "outputs": {"type": "array", "items": DATASET},
    },
}


def check_event(event: dict) -> None:
    jsonschema.validate(event, RUN_EVENT)
    uuid.UUID(event["run"]["runId"])
    datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))


class _Receiver(BaseHTTPRequestHandler):
    events: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).events.append({"path": self.path, "event": json.loads(body)})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_lineage_of_a_committed_run_over_http_and_of_a_failed_run_in_a_file(
    spark, night, tmp_path, monkeypatch
):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.events = []
    table = tmp_path / "state"
    parent_run = str(uuid.uuid4())
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", f"airflow/backfill_daily.backfill/{parent_run}")
    try:
        result = run_main(
            "run",
            "--source",
            str(night),
            "--table",
            str(table),
            "--lineage",
            f"http://127.0.0.1:{server.server_port}",
            spark=spark,
        )
    finally:
        server.shutdown()

    assert result.returncode == 0, result.stderr
    assert [e["path"] for e in _Receiver.events] == ["/api/v1/lineage"] * 2
    start, complete = (e["event"] for e in _Receiver.events)
    for event in (start, complete):
        check_event(event)
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("file", str(night))]
        assert [d["name"] for d in event["outputs"]] == [
            str(table),
            f"{table}_events",
            f"{table}_quarantine",
        ]
        assert event["run"]["facets"]["parent"]["run"]["runId"] == parent_run
        assert event["run"]["facets"]["parent"]["job"]["name"] == "backfill_daily.backfill"
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    rows = [d["outputFacets"]["outputStatistics"]["rowCount"] for d in complete["outputs"]]
    assert rows == [4, 12, 2]  # keys written, events stored, records quarantined

    # A run that fails after its events commit: START, then FAIL with the error, in a file.
    log = tmp_path / "lineage" / "events.jsonl"
    merge_events = store.merge_events

    def commit_then_fail(*args, **kwargs):
        merge_events(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "merge_events", commit_then_fail)
    monkeypatch.delenv("OPENLINEAGE_PARENT_ID")
    failed = run_main(
        "run",
        "--source",
        str(night),
        "--table",
        str(tmp_path / "other"),
        "--lineage",
        f"file:{log}",
        spark=spark,
    )

    assert failed.returncode == 1
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        check_event(event)
        assert "parent" not in event["run"]["facets"]
    assert "disk full" in events[1]["run"]["facets"]["errorMessage"]["message"]


def test_the_alert_rules_and_the_dashboard_name_only_series_a_run_writes():
    import re

    import yaml

    monitoring = ROOT / "infra" / "monitoring"
    rules = yaml.safe_load((monitoring / "backfill-alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((monitoring / "backfill-dashboard.json").read_text())
    exprs = [r["expr"] for r in rules] + [
        t["expr"] for p in dashboard["panels"] for t in p["targets"]
    ]
    written = {*SERIES, "backfill_last_run_timestamp_seconds"}
    for expr in exprs:
        named = set(re.findall(r"backfill_[a-z_]+", expr))
        assert named and named <= written, expr
    stale = next(r for r in rules if r["alert"] == "BackfillLastSuccessStale")
    assert "backfill_last_success_timestamp_seconds" in stale["expr"]


def test_a_run_that_ends_with_a_usage_error_reports_status_2_before_spark(tmp_path):
    prom = tmp_path / "backfill.prom"
    table = str(tmp_path / "state")

    result = run_main(
        "run",
        "--source",
        str(tmp_path / "no-such-dir"),
        "--table",
        table,
        "--metrics-file",
        str(prom),
    )  # no Spark session: the test fails if the command asks for one

    assert result.returncode == 2
    written = samples(prom.read_text(), table)
    assert written[("backfill_last_run_status", "")] == 2
    assert ("backfill_last_success_timestamp_seconds", "") not in written


def test_the_config_names_the_sinks_and_datasets_are_named_as_openlineage_names_them(tmp_path):
    from pipelines.observe.lineage import dataset_name

    conf = tmp_path / "observed.yaml"
    conf.write_text("metrics:\n  pushgateway: http://gw:9091\nlineage: file:/var/log/ol.jsonl\n")
    config = load_config(conf)
    assert config.metrics.pushgateway == "http://gw:9091" and config.metrics.file is None
    assert (config.lineage.target, config.lineage.namespace) == (
        "file:/var/log/ol.jsonl",
        "backfill",
    )
    assert dataset_name("s3a://lake/raw/events/") == ("s3://lake", "raw/events")
    assert dataset_name(str(tmp_path / "t")) == ("file", str(tmp_path / "t"))
    assert dataset_name(f"file://{tmp_path}/t") == ("file", f"{tmp_path}/t")
