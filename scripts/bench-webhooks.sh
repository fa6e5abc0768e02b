#!/usr/bin/env bash
# Signed webhook turns per second, p50/p99 latency and server memory, for `ivr serve` on SQLite
# and PostgreSQL next to their floors (examples/bench_floor.rs): a bare hyper server answering
# constant TwiML, and durable ones (signature check + one transaction per request, on SQLite
# and on PostgreSQL).
#
# Every run starts a fresh server process on a fresh database (1000 patients), waits for
# /readyz, drives it with examples/bench_load.rs (keep-alive connections, whole daily calls,
# every request signed) for BENCH_WARMUP + BENCH_SECONDS, reads its VmRSS/VmHWM and stops it.
# Targets alternate within each round, so each ratio compares runs made seconds apart.
#
# Usage: scripts/bench-webhooks.sh            (about 6 minutes with the defaults)
#   BENCH_SECONDS=5 BENCH_WARMUP=1 BENCH_ROUNDS=3 BENCH_CONNECTIONS="16 64 256"
#   BENCH_TARGETS="bare durable durable-spawn-blocking durable-postgres ivr-sqlite ivr-postgres"
#   BENCH_PG="postgres://postgres@127.0.0.1:5432"   (server; a database ivr_bench is recreated)
#   BENCH_PG_ADMIN_DB=test                          (the database psql connects to for that)
#   BENCH_OUT=results.txt                           (raw lines; default: a temporary file)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECONDS:-5}
warmup=${BENCH_WARMUP:-1}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNECTIONS:-"16 64 256"}
targets=${BENCH_TARGETS:-"bare durable durable-spawn-blocking durable-postgres ivr-sqlite ivr-postgres"}
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
pg_admin_db=${BENCH_PG_ADMIN_DB:-test}
port=${BENCH_PORT:-18080}
export IVR_CARRIER__AUTH_TOKEN=bench-auth-token-0123456789abcdef

target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin ivr --example bench_floor --example bench_load
bin=$target_dir/release
load=$bin/examples/bench_load

work=$(mktemp -d)
out=${BENCH_OUT:-$work/results.txt}
: >"$out"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the server for a target in the background; sets $server (empty if it could not start).
start() {
  local target=$1 db=$work/$1.db log=$work/$1.log
  rm -f "$db" "$db-wal" "$db-shm"
  server=""
  case $target in
    durable-postgres)
      psql "$pg/$pg_admin_db" -qX -v ON_ERROR_STOP=1 -c "drop database if exists ivr_bench with (force)" \
        -c "create database ivr_bench" >"$log" 2>&1 || return 0
      "$bin/examples/bench_floor" --mode "$target" --listen "127.0.0.1:$port" --db "$pg/ivr_bench" \
        --public-url "http://127.0.0.1:$port" >"$log" 2>&1 &
      ;;
    bare | durable | durable-spawn-blocking)
      "$bin/examples/bench_floor" --mode "$target" --listen "127.0.0.1:$port" --db "$db" \
        --public-url "http://127.0.0.1:$port" >"$log" 2>&1 &
      ;;
    ivr-sqlite | ivr-postgres)
      local url="sqlite://$db"
      if [ "$target" = ivr-postgres ]; then
        url="$pg/ivr_bench"
        psql "$pg/$pg_admin_db" -qX -v ON_ERROR_STOP=1 -c "drop database if exists ivr_bench with (force)" \
          -c "create database ivr_bench" >"$log" 2>&1 || return 0
      fi
      "$load" seed --db "$url" --patients 1000 >>"$log" 2>&1 || return 0
      IVR_SERVER__LISTEN=127.0.0.1:$port IVR_SERVER__PUBLIC_URL=http://127.0.0.1:$port \
        IVR_DATABASE__URL=$url RUST_LOG=warn "$bin/ivr" serve >>"$log" 2>&1 &
      ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  local pid=$!
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then server=$pid; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop() {
  kill "$server" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

echo "webhook benchmark: ${rounds} round(s) × connections ($conns) × targets ($targets), ${warmup}+${secs} s each" >&2
for round in $(seq "$rounds"); do
  for c in $conns; do
    for t in $targets; do
      start "$t"
      if [ -z "$server" ]; then
        echo "target=$t connections=$c failed=1 round=$round" >>"$out"
        echo "  $t: did not start: $(grep -m1 -E 'panicked|error' "$work/$t.log" || tail -n 1 "$work/$t.log")" >&2
        continue
      fi
      kind=ivr
      case $t in bare | durable*) kind=floor ;; esac
      line=$("$load" run --target "$kind" --label "$t" --addr "127.0.0.1:$port" --connections "$c" \
        --seconds "$secs" --warmup "$warmup" --pid "$server" 2>>"$work/$t.log") || line="target=$t connections=$c failed=1"
      stop
      echo "$line round=$round" | tee -a "$out" >&2
    done
  done
done

floors=()
for f in bare durable durable-spawn-blocking durable-postgres; do
  case " $targets " in *" $f "*) floors+=(--floor "$f=$f") ;; esac
done
echo
echo "$(nproc) CPU(s), $(uname -sr); ${warmup} s warm-up + ${secs} s measured per run"
echo
"$load" report "$out" "${floors[@]}"
