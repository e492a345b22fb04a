"""How large a run is, before Spark starts: the local sources' bytes inside its window, which
decide whether the run keeps the config's small-run JVM options (conf/local.yaml)."""

from __future__ import annotations

from datetime import date

from pipelines.config import load_config
from pipelines.io.sources import DateWindow, is_large_run, local_source_bytes


def test_the_bytes_of_a_run_count_its_window_and_its_data_files_only(tmp_path):
    for day, size in (("2026-01-01", 100), ("2026-01-02", 20), ("2026-01-03", 3)):
        (tmp_path / "log" / f"dt={day}").mkdir(parents=True)
        (tmp_path / "log" / f"dt={day}" / "part-0.jsonl").write_bytes(b"x" * size)
    (tmp_path / "log" / "_generator.json").write_bytes(b"x" * 1000)  # not data
    (tmp_path / "log" / "dt=2026-01-02" / ".part-0.jsonl.crc").write_bytes(b"x" * 1000)
    (tmp_path / "one.jsonl").write_bytes(b"x" * 7)
    log = str(tmp_path / "log")

    assert local_source_bytes([log], DateWindow()) == 123
    assert local_source_bytes([log], DateWindow(date(2026, 1, 2), date(2026, 1, 2))) == 20
    assert local_source_bytes([log], DateWindow(date(2026, 1, 2), None)) == 23
    assert local_source_bytes([f"file://{log}", str(tmp_path / "one.jsonl")], DateWindow()) == 130
    assert local_source_bytes([str(tmp_path / "log" / "dt=*")], DateWindow()) == 123
    assert local_source_bytes([log, "s3a://bucket/log"], DateWindow()) is None  # not local


def test_a_run_is_large_from_the_configs_threshold(tmp_path):
    (tmp_path / "one.jsonl").write_bytes(b"x" * 2**20)
    spark_config = load_config().spark  # small_run_mb 128
    assert not is_large_run([str(tmp_path)], DateWindow(), spark_config)
    one_mb = spark_config.model_copy(update={"small_run_mb": 1})
    assert is_large_run([str(tmp_path)], DateWindow(), one_mb)
    assert not is_large_run(["s3a://bucket/log"], DateWindow(), one_mb)  # size unknown: small
