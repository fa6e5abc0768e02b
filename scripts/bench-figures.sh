#!/usr/bin/env bash
# Response times of the ministry's figures for a month (the API for the month and per day, the
# page by week with its chart) over 100,000 patients and 30 days of answers, on SQLite and on
# PostgreSQL, with each store's plan (examples/bench_figures.rs); prints a Markdown table.
#   scripts/bench-figures.sh [--patients N] [--requests N] [--only sqlite|postgres]
# PostgreSQL: IVR_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test); a database is
# created for the run and dropped after it. BENCH_PROFILE=debug measures the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
if [ "${BENCH_PROFILE:-release}" = debug ]; then profile=(); fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --quiet "${profile[@]}" --example bench_figures -- "$@"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
