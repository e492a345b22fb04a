#!/usr/bin/env bash
# One scheduled backfill: run-backfill.sh SOURCE TABLE [extra backfill run flags...]
# A lock makes an overlapping start exit at once (code 75) instead of racing the running one.
set -euo pipefail
home="${BACKFILL_HOME:-$(cd "$(dirname "$0")/../.." && pwd)}"
source_uri="$1" table="$2"; shift 2
day="$(date -u +%Y%m%d)"
lock="${BACKFILL_LOCK:-/tmp/backfill-$(printf '%s' "$table" | cksum | cut -d' ' -f1).lock}"

exec 9>"$lock"
if ! flock --nonblock 9; then
  echo "backfill: another run holds $lock; not starting" >&2
  exit 75
fi
"$home/.venv/bin/backfill" run --source "$source_uri" --table "$table" \
  --run-id "cron-$day" --txn-app-id cron-backfill --txn-version "$day" \
  --report "$home/reports/$day.json" "$@"
