#!/usr/bin/env bash
# Response times of the Today page (/ui/today) and GET /api/v1/today with 100,000 patients
# planned for the day and a week of jobs behind them, on SQLite and on PostgreSQL
# (examples/bench_today.rs), with the figures query's plan; prints a Markdown table.
#   scripts/bench-today.sh [--patients N] [--days N] [--requests N] [--only sqlite|postgres]
# PostgreSQL: IVR_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test); a database is
# created for the run and dropped after it. BENCH_PROFILE=debug measures the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
if [ "${BENCH_PROFILE:-release}" = debug ]; then profile=(); fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --quiet "${profile[@]}" --example bench_today -- "$@"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
