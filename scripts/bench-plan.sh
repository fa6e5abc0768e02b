#!/usr/bin/env bash
# Time and peak memory of planning one day for a large roster (examples/bench_plan.rs), next to
# a floor that only iterates over the same patients and copies them.
# Usage: scripts/bench-plan.sh [--patients 1000000] [--runs 5]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bench_plan
"${CARGO_TARGET_DIR:-target}/release/examples/bench_plan" "$@"
echo "$(nproc) CPU(s), $(uname -sr)"
