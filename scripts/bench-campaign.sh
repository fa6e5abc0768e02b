#!/usr/bin/env bash
# A simulated daily campaign through the real `ivr serve` (release, SQLite, the built-in carrier
# simulator): call rate held, concurrent calls, webhook latency, server CPU and memory
# (examples/bench_campaign.rs), then the floor: the same create_call requests at the same rate
# straight to the simulator's API, no dialer.
#
# Usage: scripts/bench-campaign.sh            (10,000 patients: about 8 minutes with the floor)
#   BENCH_PATIENTS=1000 BENCH_CPS=50 BENCH_CONCURRENT=500 BENCH_SPEED=0.7 BENCH_RING_TIMEOUT=45s
#   BENCH_FLOOR=false   (skip the floor)       BENCH_PORT=18090
#   BENCH_WEB=true      (two check-ins a day, half the patients reporting on the web, next to a
#                        calls-only day with the same check-ins; BENCH_CHECKIN_GAP=3 minutes to
#                        the second check-in, BENCH_WEB_GRACE=60s; run it before 23:50 Asia/Tokyo)
#   extra arguments go to the example (--keep keeps the database and logs)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin ivr --example bench_campaign
export BENCH_FLOOR=${BENCH_FLOOR:-true}
"$target_dir/release/examples/bench_campaign" --ivr "$target_dir/release/ivr" "$@"
echo "$(nproc) CPU(s), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
