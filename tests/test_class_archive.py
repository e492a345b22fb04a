"""The JVM's class-data archive (pipelines/class_archive.py): made by `make setup`, mapped by
every local session, named by the JDK and class path it is valid for."""

from __future__ import annotations

from pathlib import Path

from pipelines import class_archive
from pipelines.config import load_config
from pipelines.session import resolved_jars


def test_the_archive_is_named_by_the_class_path_and_chosen_only_when_it_exists(
    tmp_path, monkeypatch
):
    spark_config = load_config().spark.model_copy(update={"jars_dir": str(tmp_path)})
    jars = [tmp_path / "a.jar", tmp_path / "b.jar"]
    path = class_archive.archive_path(spark_config, jars)
    assert path is not None and path.parent == tmp_path / "class-archive"
    assert class_archive.archive_path(spark_config, jars[:1]) != path  # another class path
    monkeypatch.delenv(class_archive.DUMP_ENV, raising=False)
    assert class_archive.java_options(spark_config, jars) == ""  # not made yet: no flag
    path.parent.mkdir()
    path.write_bytes(b"")
    assert f"-XX:SharedArchiveFile={path}" in class_archive.java_options(spark_config, jars)
    assert class_archive.java_options(spark_config, []) == ""  # JARs fetched at each start
    monkeypatch.setenv(class_archive.SWITCH_ENV, "off")
    assert class_archive.java_options(spark_config, jars) == ""
    monkeypatch.delenv(class_archive.SWITCH_ENV)
    monkeypatch.setenv(class_archive.DUMP_ENV, str(tmp_path / "new.jsa"))
    dump = class_archive.java_options(spark_config, jars)
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in dump


def test_make_setup_made_the_archive_and_the_sessions_map_it(spark):
    spark_config = load_config().spark
    path = class_archive.archive_path(spark_config, resolved_jars(spark_config))
    assert path is not None and path.is_file(), "make setup writes it"
    jvm = spark.sparkContext._jvm
    runtime = jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    assert f"-XX:SharedArchiveFile={path}" in arguments
    # HotSpot's own word that class data sharing is on in this JVM.
    assert "sharing" in jvm.java.lang.System.getProperty("java.vm.info")
    assert Path(path).stat().st_size > 50 * 2**20  # Spark's, Delta's and the JDK's classes
