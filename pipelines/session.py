"""Build the Spark session: Delta's extension and catalog, JARs resolved once at set-up.

`make setup` calls `python -m pipelines.session resolve`, which lets Spark's own Ivy resolver
fetch the Maven packages below into `spark.jars_dir`. Every later session loads those JAR
files with `spark.jars`, so runs need no network. Under `spark-submit` the JARs come from
`--jars`/`--packages` and the master from the command line; nothing here overrides them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from pipelines.config import SparkConfig
from pipelines.jvm_output import filtered_stderr

SPARK_VERSION = "4.2.0"
DELTA_VERSION = "4.4.0"
MAVEN_PACKAGES = (f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}",)
LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "log4j2.properties"


def jars_dir(spark_config: SparkConfig) -> Path:
    return Path(spark_config.jars_dir).expanduser() / f"delta-{DELTA_VERSION}"


def resolved_jars(spark_config: SparkConfig) -> list[Path]:
    """The resolved JARs that pyspark does not already ship (listed by `resolve`)."""
    manifest = jars_dir(spark_config) / "classpath.txt"
    if not manifest.exists():
        return []
    jars = [Path(line) for line in manifest.read_text().split()]
    return jars if all(j.exists() for j in jars) else []


def _artifact_name(jar: Path) -> str:
    """`io.delta_delta-spark_4.2_2.13-4.4.0.jar` -> `delta-spark_4.2_2.13`."""
    name = jar.name.split("_", 1)[1] if "_" in jar.name.split("-", 1)[0] else jar.name
    match = re.match(r"^(.*?)-\d[\w.\-]*\.jar$", name)
    return match.group(1) if match else name


def build_session(spark_config: SparkConfig, show_progress: bool = False) -> SparkSession:
    """Return a Delta-enabled session configured from `spark_config`.

    `show_progress` turns on Spark's console progress bar (for a person at a terminal).
    """
    builder = (
        SparkSession.builder.appName(spark_config.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(spark_config.shuffle_partitions))
        # Exact decimals: never round a result's scale away (decimal(38,9) - decimal(38,9)
        # would otherwise become decimal(38,8)); an overflow fails the run instead.
        .config("spark.sql.decimalOperations.allowPrecisionLoss", "false")
    )
    active = SparkSession.getActiveSession()
    launched_by_submit = active is None and _launched_by_spark_submit()
    if not launched_by_submit:
        if spark_config.master:
            builder = builder.master(spark_config.master)
        # Python workers must start this interpreter, not the system python3 (which lacks
        # pandas and pyarrow). PySpark reads PYSPARK_PYTHON when it creates the context.
        os.environ["PYSPARK_PYTHON"] = sys.executable
        builder = builder.config("spark.ui.showConsoleProgress", str(show_progress).lower())
        if LOG4J_CONFIG.exists():
            builder = builder.config(
                "spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile={LOG4J_CONFIG}"
            )
        jars = resolved_jars(spark_config)
        if jars:
            builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
        else:
            builder = builder.config("spark.jars.packages", ",".join(MAVEN_PACKAGES)).config(
                "spark.jars.ivy", str(jars_dir(spark_config))
            )
    for key, value in spark_config.conf.items():
        builder = builder.config(key, value)
    with filtered_stderr():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM before Python and passes its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def resolve(spark_config: SparkConfig) -> list[Path]:
    """Download the Maven packages once, with Spark's Ivy resolver, into `jars_dir`."""
    if resolved_jars(spark_config):
        return resolved_jars(spark_config)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("backfill-resolve-jars")
        .config("spark.ui.enabled", "false")
        .config("spark.jars.packages", ",".join(MAVEN_PACKAGES))
        .config("spark.jars.ivy", str(jars_dir(spark_config)))
        .getOrCreate()
    )
    spark.stop()
    # Ivy also fetches Delta's transitive Hadoop, Parquet, Jackson and log4j JARs, older than
    # the ones pyspark ships; keep only what pyspark lacks so the classpath has one of each.
    shipped = {_artifact_name(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    downloaded = sorted((jars_dir(spark_config) / "jars").glob("*.jar"))
    needed = [j for j in downloaded if _artifact_name(j) not in shipped]
    if not any("delta-spark" in j.name for j in needed):
        raise SystemExit(f"Delta was not resolved into {jars_dir(spark_config)}")
    (jars_dir(spark_config) / "classpath.txt").write_text("\n".join(str(j) for j in needed))
    return needed


if __name__ == "__main__":
    from pipelines.config import load_config

    if sys.argv[1:] != ["resolve"]:
        raise SystemExit("usage: python -m pipelines.session resolve")
    for jar in resolve(load_config().spark):
        print(jar)
