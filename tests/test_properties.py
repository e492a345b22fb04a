"""Property: however the same events are split into files, shuffled or re-delivered, the
resulting table is the same, and equals the reference fold."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import backfill, balance_event, event_line, examples, table_states
from tests.reference import reference_backfill

amounts = st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False).map(str)


@st.composite
def event_logs(draw) -> list[str]:
    n = draw(st.integers(min_value=1, max_value=30))
    lines = []
    for i in range(n):
        event = draw(balance_event(i, max_seq=12, amounts=amounts))
        lines.append(event_line(**event))
        if draw(st.booleans()) and draw(st.booleans()):
            conflicting = {**event, "amount": draw(amounts), "ingested_at": "2026-01-03T00:00:00Z"}
            lines.append(event_line(**conflicting))
    garbage = draw(st.lists(st.sampled_from(["{", "nope", '{"event_id":"x"}', "[]"]), max_size=3))
    return lines + garbage


@settings(max_examples=examples(4, 25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=event_logs(),
    data=st.data(),
)
def test_split_shuffle_and_duplicate_never_change_the_table(spark, config, lines, data):
    expected = reference_backfill(lines)
    shuffled = data.draw(st.permutations(lines))
    repeats = data.draw(st.lists(st.sampled_from(lines), max_size=5))
    delivered = shuffled + repeats
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events"
        events.mkdir()
        for index, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(delivered)], strict=True)):
            (events / f"part-{index}.jsonl").write_text(
                "".join(f"{line}\n" for line in delivered[lo:hi])
            )
        report = backfill(spark, config, [events], Path(tmp) / "state")
        assert table_states(spark, Path(tmp) / "state") == expected.states
    counts = report.counts
    assert counts.records_read == len(delivered)
    assert (
        counts.records_read == counts.valid_unique + counts.duplicates_dropped + counts.quarantined
    )
    assert counts.valid_unique == expected.valid_unique
