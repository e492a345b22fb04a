#!/usr/bin/env bash
# One nightly run: run-backfill.sh SOURCE TABLE [extra backfill run flags...]
# Reads yesterday's dt= partition of SOURCE (BACKFILL_DAY=YYYY-MM-DD picks another day) and
# folds only the keys it touches; a rerun of a day is exact. A lock makes an overlapping
# start exit at once (code 75) instead of racing the running one.
set -euo pipefail
home="${BACKFILL_HOME:-$(cd "$(dirname "$0")/../.." && pwd)}"
source_uri="$1" table="$2"; shift 2
day="${BACKFILL_DAY:-$(date -u -d yesterday +%F)}"
lock="${BACKFILL_LOCK:-/tmp/backfill-$(printf '%s' "$table" | cksum | cut -d' ' -f1).lock}"

exec 9>"$lock"
if ! flock --nonblock 9; then
  echo "backfill: another run holds $lock; not starting" >&2
  exit 75
fi
# Where operators look (contract section 12), when set: BACKFILL_METRICS_PUSH (a Pushgateway
# URL), BACKFILL_METRICS_FILE (a node_exporter textfile), BACKFILL_LINEAGE (OpenLineage URL or
# file:PATH). The config's metrics: and lineage: do the same for every run.
observe=()
if [ -n "${BACKFILL_METRICS_PUSH:-}" ]; then observe+=(--metrics-push "$BACKFILL_METRICS_PUSH"); fi
if [ -n "${BACKFILL_METRICS_FILE:-}" ]; then observe+=(--metrics-file "$BACKFILL_METRICS_FILE"); fi
if [ -n "${BACKFILL_LINEAGE:-}" ]; then observe+=(--lineage "$BACKFILL_LINEAGE"); fi
"$home/.venv/bin/backfill" run --source "$source_uri" --from "$day" --to "$day" \
  --table "$table" --run-id "cron-$day-$(date -u +%H%M%S)" \
  --report "$home/reports/$day.json" ${observe[@]+"${observe[@]}"} "$@"
