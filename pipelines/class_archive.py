"""The JVM's class-data archive for a local session: the classes Spark, Delta and the pipeline
load, parsed and verified once at set-up instead of at every start (HotSpot's AppCDS).

`make setup` runs `python -m pipelines.class_archive`, which starts a local session with
`-XX:ArchiveClassesAtExit`, runs a small `backfill demo` in it and keeps the archive the JVM
writes when it exits. Every later local session maps that file. The archive is named by what
it is only valid for (the JDK, pyspark's and the resolved JARs), so an upgrade of any of them
makes the sessions start without one, never with a stale one, until set-up runs again.
Sessions under `spark-submit` or on a cluster's executors never use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyspark

from pipelines.config import SparkConfig

# Set while `main` runs the demo: the session then writes the archive instead of reading it.
DUMP_ENV = "BACKFILL_CLASS_ARCHIVE_DUMP"
# BACKFILL_CLASS_ARCHIVE=off: sessions start without the archive (what it saves is measured so).
SWITCH_ENV = "BACKFILL_CLASS_ARCHIVE"
# The archive's own messages (a mismatch is never fatal: the JVM then loads classes as usual).
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path(spark_config: SparkConfig, jars: list[Path]) -> Path | None:
    """Where the archive for this JDK and class path lives (None: no JDK found)."""
    java = _java()
    if java is None:
        return None
    pyspark_jars = Path(pyspark.__file__).parent / "jars"
    identity = "\n".join(
        [
            str(java.resolve()),
            str(java.resolve().stat().st_mtime_ns),
            str(pyspark_jars.resolve()),
            *sorted(j.name for j in pyspark_jars.glob("*.jar")),
            *(str(j) for j in jars),
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(spark_config.jars_dir).expanduser() / "class-archive" / f"{digest}.jsa"


def java_options(spark_config: SparkConfig, jars: list[Path]) -> str:
    """The driver's options for the archive: write it (set-up), map it, or nothing."""
    if not jars:  # JARs fetched at start by spark.jars.packages: another class path each time
        return ""
    if os.environ.get(SWITCH_ENV) == "off":
        return ""
    dump = os.environ.get(DUMP_ENV)
    if dump:
        return f"-XX:ArchiveClassesAtExit={dump} {QUIET}"
    path = archive_path(spark_config, jars)
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def _java() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


def main() -> int:
    """Write the archive for this machine, unless it is there already."""
    from pyspark import SparkContext

    from pipelines import cli
    from pipelines.config import load_config
    from pipelines.session import resolved_jars

    spark_config = load_config().spark
    jars = resolved_jars(spark_config)
    path = archive_path(spark_config, jars)
    if not jars or path is None:
        print("no resolved JARs or no JDK: no class archive", file=sys.stderr)
        return 0
    if path.is_file():
        print(f"class archive: {path} (there already)")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.monotonic()
    os.environ[DUMP_ENV] = str(partial)
    with tempfile.TemporaryDirectory() as work:
        # The archive holds every class the demo's two runs load.
        flags = ["--events", "600", "--keys", "20", "--workdir", str(Path(work) / "demo")]
        print(f"writing the JVM's class archive by running a small demo (once): {path}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["demo", *flags])
    # The JVM writes the archive as it exits: when its stdin (the gateway's pipe) closes.
    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        gateway.proc.stdin.close()
        gateway.proc.wait(timeout=600)
    if status != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        print("no class archive: the demo that fills it failed", file=sys.stderr)
        return 1
    partial.rename(path)
    size = path.stat().st_size / 2**20
    print(f"class archive written ({size:,.0f} MB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
