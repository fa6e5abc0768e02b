#!/usr/bin/env bash
# Measures one engine step, one step + TwiML render, and a whole daily call (criterion).
# Usage: scripts/bench-engine.sh   (prints the median time of each)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench engine -- --noplot 2>/dev/null | grep -E '^(step|turn|whole)|time:' | paste - - | sed -E 's/ +/ /g'
