#!/usr/bin/env bash
# Submit a backfill to a Spark cluster with spark-submit.
#
#   infra/spark-submit.sh --master spark://host:7077 [--config conf/local.yaml] \
#       [--spark-conf key=value ...] -- run --source URI --table URI [--from D --to D] ...
#
# Everything after `--` is the `backfill` command line. The script ships the `pipelines`
# package as a zip (--py-files), the JARs resolved at set-up (--jars), and runs
# infra/backfill_job.py. Executors use PYSPARK_PYTHON: on one machine the project's venv; on a
# real cluster point it at an environment every node has, or ship one with --archives.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
master="" config="$root/conf/local.yaml" spark_confs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --spark-conf) spark_confs+=(--conf "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "spark-submit.sh: unknown option $1 (backfill arguments go after --)" >&2; exit 2 ;;
  esac
done
[ -n "$master" ] || { echo "spark-submit.sh: --master is required" >&2; exit 2; }
[ $# -gt 0 ] || { echo "spark-submit.sh: give the backfill command after --" >&2; exit 2; }

dist="$root/build/submit"
mkdir -p "$dist"
# Written aside and renamed, so two submits at once never ship a half-written zip.
staged="$(mktemp "$dist/pipelines.XXXXXX")"
(cd "$root" && "$python" - "$staged" <<'PY'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted(Path("pipelines").rglob("*.py")):
        archive.write(path)
PY
)
mv -f "$staged" "$dist/pipelines.zip"
jars="$("$python" -m pipelines.session jars)"
spark_home="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$python}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$python}"
export SPARK_HOME="${SPARK_HOME:-$spark_home}"
command=("$1"); shift
exec "$SPARK_HOME/bin/spark-submit" \
  --master "$master" \
  --name "backfill-$command" \
  --py-files "$dist/pipelines.zip" \
  --jars "$jars" \
  --conf "spark.pyspark.python=$PYSPARK_PYTHON" \
  --conf "spark.ui.showConsoleProgress=false" \
  --driver-java-options "-Dlog4j.configurationFile=$root/conf/log4j2.properties" \
  "${spark_confs[@]}" \
  "$root/infra/backfill_job.py" "$command" --config "$config" "$@"
