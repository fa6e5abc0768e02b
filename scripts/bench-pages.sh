#!/usr/bin/env bash
# Response times of the staff pages: the queue and a patient's page under 10,000 open follow-up
# items; the patients table and a patient's charts under 100,000 patients with 30 days of
# answers (--scenario trends); on SQLite and on PostgreSQL (examples/bench_pages.rs); prints the
# queries' plans and a Markdown table.
#   scripts/bench-pages.sh [--scenario queue|trends|all] [--items N] [--patients N] [--days N]
#     [--requests N] [--only sqlite|postgres]
# PostgreSQL: IVR_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test); a database is
# created for the run and dropped after it. BENCH_PROFILE=debug measures the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
if [ "${BENCH_PROFILE:-release}" = debug ]; then profile=(); fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --quiet "${profile[@]}" --example bench_pages -- "$@"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
