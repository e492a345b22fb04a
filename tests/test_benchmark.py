"""The benchmark's profile: the backfill's Spark jobs, read back from a real event log by step."""

from __future__ import annotations

import json

import pytest

from pipelines.generate.log import generate_log
from pipelines.run.accounting import STEPS
from tests.cli import run_python


def run_contender(name: str, data, work) -> dict:
    """`python -m benchmarks.contenders NAME DATA WORK` as `make bench` runs it; its result."""
    run = run_python("benchmarks.contenders", name, data, work, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_full_backfill_contender_reports_where_its_time_went(tmp_path):
    data, work = tmp_path / "events", tmp_path / "work"
    generate_log(data, events=4000, keys=80, seed=5, days=2, files_per_day=2)
    work.mkdir()
    result = run_contender("backfill_empty", data, work)
    profile = result["profile"]

    # Every step ran Spark jobs, and the shuffles are where the design puts them.
    assert all(profile[step]["seconds"] > 0 for step in STEPS), profile
    assert profile["validate"]["cpu_seconds"] > 0
    assert profile["dedupe"]["shuffle_written_mb"] > 0  # the event_id window
    assert profile["fold"]["shuffle_written_mb"] > 0  # the shuffle by key
    assert 0 < profile["outside Spark jobs"]["seconds"] < result["seconds"]


def test_time_inside_jobs_counts_overlapping_jobs_once():
    from benchmarks.profile import _covered_ms

    assert _covered_ms([]) == 0
    assert _covered_ms([(0, 10), (20, 30)]) == 20
    assert _covered_ms([(0, 10), (5, 15), (6, 8), (15, 16)]) == 16


@pytest.mark.slow
@pytest.mark.soak  # four runs of the bench's own harness; the full-backfill contender runs in CI
def test_the_nightly_contender_folds_only_the_keys_the_night_touched(tmp_path):
    data, work = tmp_path / "history", tmp_path / "work"
    generate_log(data, events=6000, keys=60, seed=5, days=3, files_per_day=1)
    work.mkdir()
    result = run_contender("nightly", data, work)
    night, full, alone = result["night"], result["full_refold"], result["night_alone"]
    assert night["records_read"] == 60  # 1% of the history
    # Late events re-fold their keys from history; the others resume; full re-folds all.
    assert night["keys_refolded"] > 0 and night["keys_resumed"] > 0
    assert 0 < night["history_events_read"] < full["history_events_read"]
    assert full["keys_refolded"] == full["keys_folded"] == 60
    assert alone["history_events_read"] == night["records_read"]


def test_the_performance_page_is_rendered_from_the_stored_figures():
    """docs/performance.md is what `python -m benchmarks.render` makes of results.json and
    notes.md: nobody edited it by hand, and nobody forgot to render it."""
    from benchmarks.render import NOTES, PAGE, RESULTS, page

    assert PAGE.read_text() == page(json.loads(RESULTS.read_text()), NOTES.read_text())


def _size(events: int, seconds: float) -> dict:
    timed = {"lines_per_second": 1, "peak_rss_mb": 100}
    return {
        "events": events,
        "contenders": {
            "spark_floor": {"seconds": 1.0, "ratio_to_floor": 1.0, **timed},
            "backfill_empty": {"seconds": seconds, "ratio_to_floor": seconds, **timed},
        },
    }


def test_figures_of_different_runs_are_never_mixed():
    from benchmarks.render import page

    report = {
        "sizes": [_size(1000, 2.0)],
        "large": _size(3000, 5.0),
        "measured": {
            "sizes": {"date": "2026-01-02", "commit": "aaaaaaa", "deletion_vectors": False},
            "large": {"date": "2026-01-01", "commit": "bbbbbbb", "deletion_vectors": True},
        },
    }
    notes = "## about\n\nAbout.\n\n## large @ bbbbbbb\n\nNow.\n\n## sizes @ ccccccc\n\nOld.\n"
    text = page(report, notes)

    # One section per run, the latest first; the older one says it had deletion vectors.
    newer, older = text.index("code at aaaaaaa"), text.index("code at bbbbbbb")
    assert newer < older
    assert "Measured with deletion vectors on" in text[older:]
    assert "Measured with deletion vectors on" not in text[newer:older]
    # The large size is not compared with a size of another run.
    assert "in at most 3.3x" not in text
    # A reading shows under its run while its figures are there, else under Earlier.
    assert text.index("Now.") > older
    assert text.index("Old.") > text.index("## Earlier measurements")


def test_the_small_runs_show_history_and_diff_once_measured():
    from benchmarks.render import small_runs_section, targets

    small = {
        "night_seconds": 12.0,
        "night_records": 200_000,
        "demo_seconds": 30.0,
        "demo_steps_seconds": [10.0, 12.0],
    }
    before = "\n".join(small_runs_section({"small_runs": small}))
    assert "history" not in before  # figures of a run that did not measure them
    measured = {
        **small,
        "history_seconds": 0.61,
        "history_versions": 4,
        "diff_seconds": 1.27,
        "diff_keys": 4_999,
        "diff_method": "change data feed",
    }
    text = "\n".join(small_runs_section({"small_runs": measured}))
    assert "| `backfill history` of that state table (4 versions) | 0.61 |" in text
    assert "| `backfill diff` of that night (4,999 keys changed, by change data feed) | 1.27 |" in (
        text
    )
    (judged,) = [t for t in targets({"small_runs": measured}, ["small_runs"]) if "diff" in t[0]]
    assert judged[1:] == ("0.61 s and 1.27 s", True)
    slow = {**measured, "diff_seconds": 5.5}
    (judged,) = [t for t in targets({"small_runs": slow}, ["small_runs"]) if "diff" in t[0]]
    assert judged[2] is False


def test_the_upkeep_part_shows_every_arm_and_judges_the_last_nights():
    from benchmarks.render import targets, upkeep_section

    def night(n: int, seconds: float, files: int) -> dict:
        return {
            "night": n,
            "seconds": seconds,
            "events_files": files,
            "state_files": 1,
            "quarantine_files": 1,
        }

    def reach(keys: int, files: int) -> dict:
        return {
            "keys": keys,
            "files": 16,
            "files_reached": files,
            "row_groups": 16,
            "row_groups_reached": files,
        }

    upkeep = {
        "nights": 12,
        "events_per_night": 100,
        "keys": 10,
        "maintain_every": 7,
        "arms": {
            "none": [night(n, 1.0 + n / 10, 16 * n) for n in range(1, 13)],
            "weekly": [night(n, 1.0, 16 * (n % 7 or 7)) for n in range(1, 13)],
            "auto": [night(n, 1.5, 16 * (n % 7 or 7)) for n in range(1, 13)],
        },
        "maintains": [{"night": 7, "seconds": 3.0}],
        "states_equal": True,
        "key_filter": {arm: [reach(5, 3), reach(200, 16)] for arm in ("none", "weekly", "auto")},
    }
    text = "\n".join(upkeep_section({"upkeep": upkeep}))
    assert "| 10 | 2.0 | 1.0 | 1.5 | 160 | 48 | 48 | 1 | 1 | 1 |" in text
    assert "| 12 | 2.2 | 1.0 | 1.5 | 192 | 80 | 80 | 1 | 1 | 1 |" in text
    assert "| auto compaction | 5 | 3 / 16 | 3 / 16 |" in text
    assert "ended equal, row for row: yes." in text
    assert "```mermaid" in text and "line [1.1, 1.2," in text and "line [1.5, 1.5," in text
    assert targets({"upkeep": upkeep}, ["upkeep"]) == []  # too short a stretch to judge
    # A run from before the auto arm renders its two arms.
    two = {**upkeep, "arms": {k: v for k, v in upkeep["arms"].items() if k != "auto"}}
    assert "| 10 | 2.0 | 1.0 | 160 | 48 | 1 | 1 |" in "\n".join(upkeep_section({"upkeep": two}))
    weekly = [night(n, 1.0 + (n > 100) * 0.3, 16) for n in range(1, 121)]
    longer = {**upkeep, "nights": 120, "arms": {"none": weekly, "weekly": weekly}}
    (judged,) = targets({"upkeep": longer}, ["upkeep"])
    assert judged[1:] == ("1.30x over 120 nights (not a year)", False)
