#!/usr/bin/env bash
# docs/openapi.json against a live `ivr serve`, with Schemathesis and every check it has: the
# answers must match the description (statuses, content types, bodies, headers), data the
# description allows must be accepted, data it forbids refused, and no request may get a 5xx.
#
# Usage: scripts/schemathesis.sh install     install the pinned Schemathesis (pip) and exit
#        scripts/schemathesis.sh installed   exit 0 if the pinned version is installed, 1 if not
#        scripts/schemathesis.sh [run]       install it if missing, then run it against a server
#
# The run starts `ivr serve` on a fresh SQLite file in a temporary folder, on a free port of
# 127.0.0.1, with the carrier simulator; adds a token with every scope and a small roster (so
# the documented patient ids exist); runs Schemathesis; stops the server; and exits non-zero
# if Schemathesis found anything. The binary is $IVR (default: `cargo build`'s target/debug/ivr).
# SCHEMATHESIS_MAX_EXAMPLES (default 50) bounds the cases generated per operation and phase.
# The tests only ask `installed` and never install: `.ci/run` installs, or a person does.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=scripts/requirements-schemathesis.txt
VERSION=$(sed -n 's/^schemathesis==//p' "$REQUIREMENTS")

installed() {
    [[ "$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" == "$VERSION" ]]
}

install() {
    installed && return 0
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$REQUIREMENTS" >&2
}

run() {
    install
    local ivr="${IVR:-}"
    if [[ -z "$ivr" ]]; then
        cargo build --quiet
        ivr=target/debug/ivr
    fi
    local port
    # Global, for the trap: it runs after this function has returned.
    pid=""
    dir=$(mktemp -d)
    # Stops the server (and only it) and removes the folder, however the run ends.
    trap 'if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$dir/ivr.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[database]
url = "sqlite://$dir/ivr.db"

[carrier]
kind = "simulator"
simulator_speed = 0

[issuer]
key = "schemathesis-issuer-key"

[scheduler]
autostart = false

[api]
# Schemathesis sends far more than a contact app would; a 429 is not what it tests here.
verify_per_minute = 1000000

[flows]
dir = "$PWD/call-flows"
prompts_dir = "$PWD/prompts"
TOML
    # The same for issue limits, where this version has them (a key it does not know is an error).
    if grep -q '`issue_per_minute`' docs/configuration.md; then
        sed -i 's/^verify_per_minute = .*/&\nissue_per_minute = 1000000\nissue_per_patient_per_hour = 1000000/' "$dir/ivr.toml"
    fi
    cat >"$dir/roster.csv" <<'CSV'
patient_id,name,phone,birth_date,email
P001,山田 花子,090-1234-5670,1950-04-12,hanako@example.jp
P003,佐藤 太郎,03-1234-5678,1941-01-31,
P101,Emily Carter,080-1234-5671,1962-12-01,e.carter@example.jp
CSV
    # Every scope, where tokens have scopes (`--scope` or `--scopes`, whichever this ivr has).
    local scopes=() flag
    flag=$("$ivr" tokens add --help | grep -oE -- '--scopes?([ =]|$)' | head -n1 | tr -d ' =' || true)
    if [[ -n "$flag" ]]; then
        scopes=("$flag" verify,staff)
    fi
    local token
    token=$("$ivr" tokens add --config "$dir/ivr.toml" "${scopes[@]}" schemathesis 2>/dev/null)
    "$ivr" patients import --config "$dir/ivr.toml" "$dir/roster.csv" >/dev/null

    "$ivr" serve --config "$dir/ivr.toml" >"$dir/serve.log" 2>&1 &
    pid=$!
    local ready=""
    for _ in $(seq 100); do
        if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
            ready=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if [[ -z "$ready" ]]; then
        echo "schemathesis: ivr serve did not become ready; its log:" >&2
        cat "$dir/serve.log" >&2
        return 1
    fi

    # pip puts the command beside the interpreter's scripts (or, for --user, on PATH).
    local st
    st="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis"
    [[ -x "$st" ]] || st=schemathesis
    local status=0
    "$st" --no-color --config-file scripts/schemathesis.toml run docs/openapi.json \
        --url "http://127.0.0.1:$port" \
        --checks all \
        --header "Authorization: Bearer $token" \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
        --seed "${SCHEMATHESIS_SEED:-1}" \
        --workers 1 \
        --request-timeout 10 \
        --generation-database none || status=$?
    if [[ $status -ne 0 ]]; then
        echo "schemathesis: the server's log:" >&2
        grep -v ' INFO ' "$dir/serve.log" | tail -n 40 >&2 || true
    fi
    return "$status"
}

case "${1:-run}" in
    install) install ;;
    installed) installed ;;
    run) run ;;
    *) sed -n '6,8p' "$0" >&2; exit 2 ;;
esac
