"""What a run tells the operators' systems, at its start and its end (contract section 12):
each sink tried once, its failure one warning line on stderr naming it, never the run's."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.config import Config
from pipelines.failures import describe_failure
from pipelines.report import RunReport

if TYPE_CHECKING:
    from openlineage.client.transport.transport import Transport


def warn(message: str) -> None:
    print(f"backfill: warning: {message}", file=sys.stderr, flush=True)


class Observer:
    """Emits a run's lineage START (`started`), then its metrics and lineage end
    (`finished`), where the config asks for them."""

    def __init__(
        self,
        config: Config,
        run_id: str,
        table: str,
        inputs: list[str],
        outputs: list[str],
        redrive: bool = False,
        warn: Callable[[str], None] = warn,
    ) -> None:
        self.metrics, self.lineage = config.metrics, config.lineage
        self.run_id, self.table, self.inputs, self.outputs = run_id, table, inputs, outputs
        self.redrive, self.warn = redrive, warn
        self.started_at = time.time()
        self._transport: Transport | None = None
        self._lineage_down = False

    def started(self) -> None:
        if self.lineage.target is None:
            return
        from pipelines.observe import lineage

        job = lineage.job_name(self.table, self.redrive)
        try:
            self._transport = lineage.transport_for(self.lineage)
            self._transport.emit(
                lineage.start_event(self.lineage, self.run_id, job, self.inputs, self.outputs)
            )
        except Exception as exc:
            self._lineage_down = True
            self.warn(
                f"lineage endpoint {self.lineage.target} did not take the run's START event "
                f"({describe_failure(exc, None, None)}); this run emits no lineage"
            )

    def finished(self, report: RunReport | None, exit_code: int, error: str | None) -> None:
        finished_at = time.time()
        if self.metrics.pushgateway or self.metrics.file:
            self._metrics(report, exit_code, finished_at)
        if self.lineage.target is not None and not self._lineage_down:
            self._lineage_end(report, error)

    def _metrics(self, report: RunReport | None, exit_code: int, finished_at: float) -> None:
        from pipelines.observe import metrics

        outcome = metrics.RunOutcome(
            table=self.table,
            exit_code=exit_code,
            finished_at=finished_at,
            duration_seconds=round(finished_at - self.started_at, 3),
            report=report,
        )
        if self.metrics.pushgateway:
            try:
                metrics.push(self.metrics.pushgateway, outcome, self.metrics.timeout_seconds)
            except Exception as exc:
                self.warn(
                    f"Pushgateway {self.metrics.pushgateway} did not take the run's metrics "
                    f"({describe_failure(exc, None, None)})"
                )
        if self.metrics.file:
            try:
                metrics.write_file(self.metrics.file, outcome)
            except Exception as exc:
                why = describe_failure(exc, None, None)
                self.warn(f"cannot write the metrics file {self.metrics.file} ({why})")

    def _lineage_end(self, report: RunReport | None, error: str | None) -> None:
        from pipelines.observe import lineage

        job = lineage.job_name(self.table, self.redrive)
        try:
            assert self._transport is not None
            self._transport.emit(
                lineage.end_event(
                    self.lineage, self.run_id, job, self.inputs, self.outputs, report, error
                )
            )
        except Exception as exc:
            self.warn(
                f"lineage endpoint {self.lineage.target} did not take the run's end event "
                f"({describe_failure(exc, None, None)})"
            )
