"""Folds as plugins (contract section 8): `pipelines.testing.check_fold` over generated logs
for the built-in folds and the example `tests.folds:StockFold`; broken folds it catches;
how `get_fold` finds a fold (name, entry point, import path) and refuses one; and the
example fold through the `backfill` command, over two nights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import UsageError
from pipelines.folds import get_fold, known_folds
from pipelines.folds.balance import BalanceFold
from pipelines.folds.snapshot import SnapshotFold
from pipelines.testing import FoldCheckFailed, check_fold, fold_events
from tests.cli import ROOT, run_cli, run_main
from tests.folds import StockFold
from tests.helpers import backfill, event_line, event_record, table_states, write_night

STOCK_OPS = ("receive", "reserve", "release", "ship", "count")
FOLD_CHECKS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- generated logs ----------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@st.composite
def event_logs(draw: st.DrawFn, payloads: st.SearchStrategy[tuple[str, dict]]) -> list[dict]:
    """A few keys, each with distinct, gappy seqs (and maybe a second event at a seq already
    used, under another event_id), every event valid for the fold; in any order."""
    keys = draw(st.lists(st.sampled_from(["a", "b", "sku-1", "sku-22"]), min_size=1, unique=True))
    events = []
    for key in keys:
        seqs = draw(st.lists(st.integers(1, 40), min_size=1, max_size=10, unique=True))
        ties = draw(st.lists(st.sampled_from(seqs), max_size=2, unique=True))
        for number, seq in enumerate([*seqs, *ties]):
            op, fields = draw(payloads)
            time = draw(moments).isoformat()
            event = {"event_id": f"{key}-{number}", "key": key, "seq": seq, "event_time": time}
            events.append({**event, "op": op, **fields})
    return draw(st.permutations(events))


amounts = st.decimals(
    min_value=-(10**9), max_value=10**9, places=3, allow_nan=False, allow_infinity=False
)
balance_payloads = st.tuples(
    st.sampled_from(["add", "subtract", "set"]),
    st.one_of(amounts.map(str), st.integers(-(10**6), 10**6)).map(lambda a: {"amount": a}),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.sampled_from([1.5, 0.1, -2.25, 1e20])
    | st.text(alphabet='xy :"', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["p", "q"]), inner, max_size=2)
    ),
    max_leaves=6,
)
objects = st.dictionaries(st.sampled_from(["name", "qty", "tags", "address"]), json_values)
snapshot_payloads: st.SearchStrategy[tuple[str, dict]] = st.one_of(
    st.tuples(st.sampled_from(["upsert", "patch"]), objects.map(lambda o: {"data": o})),
    st.tuples(st.just("upsert"), objects.map(lambda o: {"data": json.dumps(o)})),
    st.tuples(st.just("delete"), st.just({})),
    st.tuples(st.just("delete"), objects.map(lambda o: {"data": o})),  # data ignored
)
stock_payloads = st.tuples(
    st.sampled_from(STOCK_OPS),
    st.one_of(st.integers(-20, 60), st.integers(0, 99).map(str)).map(lambda q: {"quantity": q}),
)


@FOLD_CHECKS
@given(event_logs(balance_payloads))
def test_the_balance_fold_conforms(events):
    rows = check_fold(BalanceFold(), events, trials=10)
    expected: dict[str, tuple[Decimal, int]] = {}
    for event in sorted(events, key=lambda e: (e["seq"], e["event_id"])):
        balance, count = expected.get(event["key"], (Decimal(0), 0))
        amount = Decimal(event["amount"])
        after = {"add": balance + amount, "subtract": balance - amount, "set": amount}
        expected[event["key"]] = (after[event["op"]], count + 1)
    assert {r["key"]: (r["balance"], r["event_count"]) for r in rows} == expected


@FOLD_CHECKS
@given(event_logs(snapshot_payloads))
def test_the_snapshot_fold_conforms(events):
    rows = check_fold(SnapshotFold(), events, trials=10)
    last_ops = {}
    for event in sorted(events, key=lambda e: (e["seq"], e["event_id"])):
        last_ops[event["key"]] = event["op"]
    assert {r["key"]: r["_deleted"] for r in rows} == {
        key: op == "delete" for key, op in last_ops.items()
    }


@FOLD_CHECKS
@given(event_logs(stock_payloads), st.booleans())
def test_the_stock_fold_conforms_and_matches_a_plain_reference(events, allow_negative):
    rows = check_fold(StockFold(allow_negative=allow_negative), events, trials=10)
    assert {r.pop("key"): r for r in rows} == {
        key: {**state, "_deleted": False}
        for key, state in reference_stock(events, allow_negative).items()
    }


def reference_stock(events: list[dict], allow_negative: bool = False) -> dict[str, dict]:
    """StockFold's documented semantics, written out independently of it."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_key[event["key"]].append(event)
    states = {}
    for key, history in sorted(by_key.items()):
        history = sorted(history, key=lambda e: (e["seq"], e["event_id"]))
        on_hand = reserved = 0
        for event in history:
            op, quantity = event["op"], int(event["quantity"])
            if allow_negative:  # every quantity as it is
                if op in ("receive", "ship"):
                    on_hand += quantity if op == "receive" else -quantity
                if op in ("reserve", "release", "ship"):
                    reserved += quantity if op == "reserve" else -quantity
                if op == "count":
                    on_hand = quantity
                continue
            quantity = max(quantity, 0)
            if op == "receive":
                on_hand += quantity
            elif op == "reserve":
                reserved = min(reserved + quantity, on_hand)
            elif op == "release":
                reserved = max(reserved - quantity, 0)
            elif op == "ship":
                sent = min(quantity, reserved)
                on_hand, reserved = on_hand - sent, reserved - sent
            elif op == "count":
                on_hand, reserved = quantity, min(reserved, quantity)
        seqs = {e["seq"] for e in history}
        states[key] = {
            "on_hand": on_hand,
            "reserved": reserved,
            "available": on_hand - reserved,
            "event_count": len(history),
            "last_seq": max(seqs),
            "missing_seq_count": max(seqs) - len(seqs),
            "last_event_time": datetime.fromisoformat(
                history[-1]["event_time"].replace("Z", "+00:00")
            ).astimezone(UTC),
        }
    return states


def test_check_fold_starts_no_spark():
    """The conformance check is plain Python and Arrow: no JVM, no process started."""
    script = textwrap.dedent(
        """
        import subprocess

        def refuse(*args, **kwargs):
            raise AssertionError("check_fold started a process")

        subprocess.Popen = refuse
        from pyspark import SparkContext
        from pipelines.testing import check_fold
        from tests.folds import StockFold

        events = [
            {"event_id": f"e{i}", "key": f"k{i % 3}", "seq": i, "op": "receive",
             "event_time": "2026-01-01T00:00:00Z", "quantity": i}
            for i in range(1, 10)
        ]
        rows = check_fold(StockFold(), events)
        assert SparkContext._gateway is None and SparkContext._active_spark_context is None
        print(len(rows))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout.strip()) == (0, "3"), result.stderr


# --- broken folds are caught -------------------------------------------------------------


STOCK_EVENTS = [
    event_record("a1", "a", 1, "receive", quantity=10),
    event_record("a2", "a", 2, "reserve", quantity=4),
    event_record("a4", "a", 4, "ship", quantity=1),
    event_record("b1", "b", 1, "count", quantity=5),
    event_record("b3", "b", 3, "reserve", quantity=2),
    event_record("c7", "c", 7, "receive", quantity=1),
]


class RemembersEarlierBatches(StockFold):
    """Its result depends on what it folded before, in which order: it adds the number of
    batches already folded, so the same keys fold differently in another batching."""

    batches = 0

    def fold_keys(self, events: pa.Table) -> pa.Table:
        states = super().fold_keys(events)
        leak = pa.array([self.batches] * states.num_rows, pa.int64())
        self.batches += 1
        on_hand = pa.compute.add(states["on_hand"], leak)
        return states.set_column(1, "on_hand", on_hand)


class LastTimeOfTheBatch(StockFold):
    """A batch-at-once fold_keys with a typical slip: every key gets the batch's last
    event_time instead of its own."""

    def fold_keys(self, events: pa.Table) -> pa.Table:
        states = super().fold_keys(events)
        last = events["event_time"][-1].as_py()
        times = pa.array([last] * states.num_rows, pa.timestamp("us", tz="UTC"))
        column = states.schema.get_field_index("last_event_time")
        return states.set_column(column, "last_event_time", times)


class ResumeForgetsReservations(StockFold):
    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        return super().resume_rows({**state, "reserved": 0}, events)


class ResumeRecountsFromZero(StockFold):
    def resume_rows(self, state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        return super().resume_rows(state, events) | {"event_count": len(events)}


class NullOnHand(StockFold):
    def fold_rows(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return super().fold_rows(key, events) | {"on_hand": None}


class RenamedColumn(StockFold):
    def fold_key(self, events: pa.Table) -> pa.Table:
        return (
            super()
            .fold_key(events)
            .rename_columns(["key", "stock", "reserved", "available", *self.state_columns[3:]])
        )


class TextAvailable(StockFold):
    def fold_key(self, events: pa.Table) -> pa.Table:
        states = super().fold_key(events)
        return states.set_column(3, "available", pa.array(["plenty"] * states.num_rows))


class PlentyInARow(StockFold):
    def fold_rows(self, key: str, events: list[dict]) -> dict:
        return {**super().fold_rows(key, events), "available": "plenty"}


class TwoRowsPerKey(StockFold):
    def fold_key(self, events: pa.Table) -> pa.Table:
        state = super().fold_key(events)
        return pa.concat_tables([state, state])


class MaybeDeleted(StockFold):
    def is_deleted(self, states: pa.Table) -> pa.Array:
        return pa.array([None] * states.num_rows, pa.bool_())


BROKEN_FOLDS = [
    (RemembersEarlierBatches, "in another order or batching"),
    (LastTimeOfTheBatch, r"fold_keys over many keys gave .* fold_key over key"),
    (ResumeForgetsReservations, r"key 'a' resumed after seq \d gave"),
    (ResumeRecountsFromZero, "resumed after seq .* folding its whole history gave"),
    (NullOnHand, "returned NULL in on_hand, which its state_schema declares NOT NULL"),
    (RenamedColumn, r"returned columns \['key', 'stock'"),
    (TextAvailable, "where its state_schema declares"),
    (PlentyInARow, r"fold stock returned \{.*'plenty'.*which does not fit its state_schema"),
    (TwoRowsPerKey, "expected one row per key"),
    (MaybeDeleted, "is_deleted must give True or False"),
]


@pytest.mark.parametrize(
    ("fold_class", "message"), [pytest.param(c, m, id=c.__name__) for c, m in BROKEN_FOLDS]
)
def test_check_fold_catches_a_broken_fold(fold_class, message):
    check_fold(StockFold(), STOCK_EVENTS)  # the events and the fold it breaks are fine
    with pytest.raises(FoldCheckFailed, match=message):
        check_fold(fold_class(), STOCK_EVENTS)


def test_check_fold_refuses_two_events_with_one_id():
    copy = {**STOCK_EVENTS[0], "quantity": 7}
    with pytest.raises(ValueError, match="appears more than once"):
        check_fold(StockFold(), [*STOCK_EVENTS, copy])


def test_check_fold_refuses_events_the_pipeline_would_quarantine():
    bad = {**STOCK_EVENTS[0], "quantity": "abc"}
    with pytest.raises(ValueError, match="as bad_type:quantity"):
        check_fold(StockFold(), [bad])
    with pytest.raises(FoldCheckFailed, match="at least one event"):
        check_fold(StockFold(), [])


# --- finding a fold ----------------------------------------------------------------------


def assert_usage_error(spec: str, options: dict | None, text: str) -> None:
    with pytest.raises(UsageError) as raised:
        get_fold(spec, options)
    message = str(raised.value)
    assert text in message and repr(spec) in message, message
    assert "\n" not in message and raised.value.exit_code == 2


def test_an_unknown_name_lists_the_known_folds():
    assert_usage_error("median", None, "unknown fold 'median'; known folds: ")
    for name in ("balance", "snapshot", "package.module:ClassName"):
        assert_usage_error("median", None, name)


def test_a_missing_class_is_not_a_fold():
    assert_usage_error("tests.folds:Missing", {}, "tests.folds:Missing is not a subclass")


def test_a_class_that_is_not_a_fold_is_refused():
    assert_usage_error("pipelines.config:Config", {}, "is not a subclass of pipelines Fold")
    assert_usage_error("pipelines.folds.base:RowFold", {}, "RowFold does not implement fold_rows")


def test_a_module_that_fails_to_import_names_its_error(tmp_path, monkeypatch):
    (tmp_path / "plugins_that_raise.py").write_text("raise RuntimeError('no warehouse here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_usage_error(
        "plugins_that_raise:Fold", {}, "cannot load fold 'plugins_that_raise:Fold': RuntimeError"
    )
    assert_usage_error("plugins_that_raise:Fold", {}, "no warehouse here")
    assert_usage_error("no_such_plugin_module:Fold", {}, "ModuleNotFoundError")


def test_options_the_fold_does_not_take_are_refused():
    assert_usage_error(
        "tests.folds:StockFold",
        {"allow_negatives": True},
        "does not take the options {'allow_negatives': True}: StockFold.__init__() got an "
        "unexpected keyword argument 'allow_negatives'",
    )
    assert_usage_error("balance", {"precision": 2}, "BalanceFold() takes no arguments")


def test_a_fold_that_declares_a_missing_measure_cannot_run(tmp_path, monkeypatch):
    (tmp_path / "plugins_bad_measure.py").write_text(
        "from tests.folds import StockFold\n\nclass NoMeasure(StockFold):\n    measure = 'value'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_usage_error(
        "plugins_bad_measure:NoMeasure", {}, "its state_schema has no column 'value'"
    )


def test_a_fold_without_the_bookkeeping_columns_cannot_run(tmp_path, monkeypatch):
    (tmp_path / "plugins_no_bookkeeping.py").write_text(
        "from pyspark.sql.types import LongType, StringType, StructField, StructType\n"
        "from tests.folds import StockFold\n\n"
        "class NoLastSeq(StockFold):\n"
        "    count_column = None\n"
        "    state_schema = StructType([StructField('key', StringType(), False),\n"
        "        StructField('available', LongType(), False),\n"
        "        StructField('last_seq', StringType(), False)])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_usage_error(
        "plugins_no_bookkeeping:NoLastSeq",
        {},
        "cannot run: its state_schema lacks the bookkeeping columns event_count bigint, "
        "last_seq bigint, missing_seq_count bigint, last_event_time timestamp (build it with "
        "pipelines.folds.state_schema_with)",
    )


def test_fold_options_reach_the_constructor():
    strict = get_fold("tests.folds:StockFold", {})
    lenient = get_fold("tests.folds:StockFold", {"allow_negative": True})
    assert (type(lenient), strict.allow_negative, lenient.allow_negative) == (
        StockFold,
        False,
        True,
    )
    oversold = [
        event_record("1", "k", 1, "receive", quantity=2),
        event_record("2", "k", 2, "reserve", quantity=5),
    ]
    shown = {"on_hand", "reserved", "available"}
    assert {c: fold_events(strict, oversold)[0][c] for c in shown} == {
        "on_hand": 2,
        "reserved": 2,
        "available": 0,
    }
    assert {c: fold_events(lenient, oversold)[0][c] for c in shown} == {
        "on_hand": 2,
        "reserved": 5,
        "available": -3,
    }


def test_an_installed_plugin_is_found_by_its_entry_point(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist_info = site / "acme_stock-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-stock\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[backfill.folds]\nstockx = tests.folds:StockFold\n"
    )
    assert_usage_error("stockx", {}, "unknown fold 'stockx'")  # not installed yet

    monkeypatch.syspath_prepend(str(site))
    fold = get_fold("stockx", {"allow_negative": True})
    assert type(fold) is StockFold and fold.allow_negative
    assert "stockx" in known_folds()

    monkeypatch.undo()  # uninstalled again: nothing cached
    assert_usage_error("stockx", {}, "unknown fold 'stockx'")


# --- through Spark -----------------------------------------------------------------------


def valid_events(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


FIRST_NIGHT = [
    event_line("a1", "sku-a", 1, "receive", quantity=10),
    event_line("a2", "sku-a", 2, "reserve", quantity=4),
    event_line("a3", "sku-a", 3, "ship", quantity="3"),  # a string of digits is an integer
    event_line(
        "a5", "sku-a", 5, "reserve", quantity=20
    ),  # more than available: reserves the 6 left
    event_line("b1", "sku-b", 1, "count", quantity=7),
    event_line("b2", "sku-b", 2, "reserve", quantity=5),
    event_line("b3", "sku-b", 3, "count", quantity=2),  # cuts the reservations to 2
    event_line("c1", "sku-c", 1, "receive", quantity=5),
]
FIRST_NIGHT_GARBAGE = [
    event_line("a2", "sku-a", 2, "reserve", quantity=4),  # an identical copy: a duplicate
    event_line("x1", "sku-a", 4, "receive"),
    event_line("x2", "sku-b", 4, "receive", quantity="abc"),
    event_line("x3", "sku-c", 2, "receive", quantity=2.5),
    event_line("x4", "sku-c", 3, "steal", quantity=1),
    "not json at all",
]
SECOND_NIGHT = [
    event_line("a6", "sku-a", 6, "release", quantity=2),
    event_line("a7", "sku-a", 7, "ship", quantity=50),  # more than reserved: ships the 5 reserved
    event_line("b5", "sku-b", 5, "ship", quantity=9),
    event_line("d2", "sku-d", 2, "receive", quantity=3),
    event_line("c4", "sku-c", 4, "count", quantity=1, note="extra fields are ignored"),
]


@pytest.mark.slow
def test_the_stock_fold_through_the_backfill_command_over_two_nights(spark, config, tmp_path):
    """The first night through the installed `backfill` as a user runs it from the repository:
    the fold is found on the working directory, with no PYTHONPATH, and travels to Spark's
    Python workers by value. The second night, in this process, resumes from that table."""
    table, report_file = tmp_path / "tables" / "stock", tmp_path / "report.json"
    flags = ["--table", str(table), "--report", str(report_file), "--fold", "tests.folds:StockFold"]
    flags += ["--master", "local[2]", "--shuffle-partitions", "2"]
    first = write_night(tmp_path, 1, FIRST_NIGHT + FIRST_NIGHT_GARBAGE)

    ran = run_cli("run", "--source", str(first), *flags, installed=True)

    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert (report["fold"], report["status"]) == ("tests.folds:StockFold", "committed")
    assert report["counts"]["duplicates_dropped"] == 1
    reasons = {
        "missing_field:quantity": 1,
        "bad_type:quantity": 2,
        "unknown_op": 1,
        "malformed_json": 1,
    }
    assert report["counts"]["quarantined_by_reason"] == reasons
    quarantine = spark.read.format("delta").load(f"{table}_quarantine").collect()
    assert Counter(r["reason"] for r in quarantine) == reasons
    assert table_states(spark, table) == reference_stock(valid_events(FIRST_NIGHT))
    assert table_states(spark, table)["sku-a"] | {"last_event_time": None} == {
        "on_hand": 7,
        "reserved": 7,
        "available": 0,
        "event_count": 4,
        "last_seq": 5,
        "missing_seq_count": 1,
        "last_event_time": None,
    }

    second = write_night(tmp_path, 2, SECOND_NIGHT)
    night = backfill(spark, config.with_overrides(fold="tests.folds:StockFold"), [second], table)

    assert (night.fold, night.status, night.counts.quarantined) == (
        "tests.folds:StockFold",
        "committed",
        0,
    )
    keys = night.keys
    # Every new event follows its key's stored row: those keys resume; sku-d is new.
    assert (keys.inserted, keys.updated, keys.resumed, keys.refolded) == (1, 3, 4, 0)
    everything = valid_events(FIRST_NIGHT + SECOND_NIGHT)
    assert table_states(spark, table) == reference_stock(everything)
    assert {k: s["available"] for k, s in table_states(spark, table).items()} == {
        "sku-a": 2,
        "sku-b": 0,
        "sku-c": 1,
        "sku-d": 3,
    }


def test_fold_options_from_the_config_file_reach_the_fold_before_any_spark(tmp_path):
    config = tmp_path / "stock.yaml"
    config.write_text(
        f"extends: {ROOT / 'conf' / 'local.yaml'}\n"
        "fold: tests.folds:StockFold\n"
        "fold_options:\n  allow_negatives: true\n"
    )

    ran = run_main(
        "run", "--source", str(tmp_path), "--table", str(tmp_path / "t"), "--config", str(config)
    )

    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "backfill: fold 'tests.folds:StockFold' does not take the options "
        "{'allow_negatives': True}: StockFold.__init__() got an unexpected keyword argument "
        "'allow_negatives'"
    ]
    assert not (tmp_path / "t").exists()


def test_the_docs_show_the_fold_the_tests_run():
    root = Path(__file__).resolve().parent.parent
    docs = (root / "docs" / "folds.md").read_text()
    section = docs[docs.index("## Your own fold") :]
    start = section.index("```python\n") + len("```python\n")
    shown = section[start : section.index("\n```", start)]
    assert shown.strip() and shown in (root / "tests" / "folds.py").read_text()
