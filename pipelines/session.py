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

from pipelines import class_archive
from pipelines.config import Config, S3Config, SparkConfig, conf_file
from pipelines.jvm_output import filtered_stderr

SPARK_VERSION = "4.2.0"
DELTA_VERSION = "4.4.0"
HADOOP_VERSION = "3.5.0"  # what pyspark 4.2.0 ships (pyspark/jars/hadoop-client-api-3.5.0.jar)
# hadoop-aws must equal pyspark's Hadoop; it brings the AWS SDK v2 bundle its release names.
MAVEN_PACKAGES = (
    f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
)
LOG4J_CONFIG = conf_file("log4j2.properties")
LOG4J_FILE_CONFIG = conf_file("log4j2-file.properties")  # a command run's, to its log file
IVY_SETTINGS = conf_file("ivysettings.xml")


def jars_dir(spark_config: SparkConfig) -> Path:
    resolved_set = f"delta-{DELTA_VERSION}-hadoop-aws-{HADOOP_VERSION}"
    return Path(spark_config.jars_dir).expanduser() / resolved_set


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


def s3a_settings(s3: S3Config) -> dict[str, str]:
    """Hadoop S3A settings for `s3`; `s3://` URIs are served by S3A too."""
    settings = {
        "fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
        "fs.s3a.endpoint.region": s3.region,
        "fs.s3a.path.style.access": str(s3.path_style_access).lower(),
        "fs.s3a.connection.ssl.enabled": str(s3.ssl).lower(),
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # A bounded wait for an endpoint that stops answering (S3Config). The SDK does not
        # retry on its own: S3A's retry policy does, `retry_limit` times.
        "fs.s3a.connection.establish.timeout": _millis(s3.connect_timeout_seconds),
        "fs.s3a.connection.timeout": _millis(s3.request_timeout_seconds),
        "fs.s3a.connection.request.timeout": _millis(s3.request_timeout_seconds),
        "fs.s3a.attempts.maximum": "0",
        "fs.s3a.retry.limit": str(s3.retry_limit),
        "fs.s3a.retry.interval": _millis(s3.retry_interval_seconds),
        # The classic input stream: the analytics accelerator's retries the settings above do
        # not bound, each logging a trace, kept a frozen-endpoint run waiting for 10 minutes.
        "fs.s3a.input.stream.type": "classic",
    }
    if s3.endpoint:
        settings["fs.s3a.endpoint"] = s3.endpoint
    return settings


def _millis(seconds: float) -> str:
    """A Hadoop duration: a whole number with its unit."""
    return f"{round(seconds * 1000)}ms"


def apply_s3_settings(spark: SparkSession, s3: S3Config) -> None:
    """Point an existing session's S3A at `s3` (new file systems pick it up)."""
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_settings(s3).items():
        hadoop_conf.set(key, value)
        spark.conf.set(key, value)


def build_session(
    config: Config,
    show_progress: bool = False,
    log_file: Path | None = None,
    large_run: bool = False,
) -> SparkSession:
    """Return a Delta-enabled session configured from `config` (Spark and S3 settings).

    `show_progress` turns on Spark's console progress bar (for a person at a terminal);
    with `log_file`, the JVM logs there instead of to the terminal. A `large_run` leaves out
    the config's `small_run_java_options`.
    """
    spark_config = config.spark
    builder = (
        SparkSession.builder.appName(spark_config.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(spark_config.shuffle_partitions))
        # Every table the session creates: deletion vectors only if the config asks.
        .config(
            "spark.databricks.delta.properties.defaults.enableDeletionVectors",
            str(config.tables.deletion_vectors).lower(),
        )
        # Exact decimals: never round a result's scale away (decimal(38,9) - decimal(38,9)
        # would otherwise become decimal(38,8)); an overflow fails the run instead.
        .config("spark.sql.decimalOperations.allowPrecisionLoss", "false")
        # Tables are paths, never catalog names: keep Spark's default warehouse folder out of
        # the working directory, where it would otherwise appear at every run.
        .config(
            "spark.sql.warehouse.dir",
            str(Path(spark_config.jars_dir).expanduser().parent / "warehouse"),
        )
        # Raw records and event ids are all distinct: Parquet's dictionary encoding of those
        # columns is tried and thrown away for every page of the events and quarantine tables.
        .config("spark.hadoop.parquet.enable.dictionary#raw", "false")
        .config("spark.hadoop.parquet.enable.dictionary#event_id", "false")
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
        logging = f"-Dlog4j.configurationFile={LOG4J_CONFIG}"
        if log_file is not None:
            logging = (
                f"-Dlog4j.configurationFile={LOG4J_FILE_CONFIG} -Dbackfill.log.file={log_file}"
            )
        jars = resolved_jars(spark_config)
        archive = class_archive.java_options(spark_config, jars)
        small = "" if large_run else spark_config.small_run_java_options
        java_options = f"{logging} {archive} {spark_config.java_options} {small}"
        builder = builder.config("spark.driver.extraJavaOptions", " ".join(java_options.split()))
        if jars:
            # On the class path, not in spark.jars: local executors share the driver's JVM,
            # so nothing (the AWS SDK bundle is 650 MB) is copied at each start.
            classpath = os.pathsep.join(str(j) for j in jars)
            builder = builder.config("spark.driver.extraClassPath", classpath)
            builder = builder.config("spark.executor.extraClassPath", classpath)
        else:
            builder = (
                builder.config("spark.jars.packages", ",".join(MAVEN_PACKAGES))
                .config("spark.jars.ivy", str(jars_dir(spark_config)))
                .config("spark.jars.ivySettings", str(IVY_SETTINGS))
            )
    for key, value in s3a_settings(config.s3).items():
        builder = builder.config(f"spark.hadoop.{key}", value)
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
        .config("spark.jars.ivySettings", str(IVY_SETTINGS))
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

    command = sys.argv[1:]
    if command == ["resolve"]:
        for jar in resolve(load_config().spark):
            print(jar)
    elif command == ["jars"]:  # for spark-submit --jars
        print(",".join(str(jar) for jar in resolve(load_config().spark)))
    else:
        raise SystemExit("usage: python -m pipelines.session resolve|jars")
