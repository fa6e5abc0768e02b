#!/usr/bin/env bash
# The Debian package end to end, on this machine, as root: build it with cargo-deb, install it
# with dpkg -i, check what it installed, run the installed `ivr check` and `ivr serve` (as the
# ivr user, from the installed paths) until /readyz answers 200, back the database up while the
# server runs and restore it, install the package again over itself (an upgrade keeps a
# locally edited /etc/ivr/ivr.toml), then purge it so the machine is left as it was.
# systemd need not run as PID 1: the server is started by hand as the unit would start it.
# Prints the package's size, the installed binary's size and the time each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
started=$(date +%s)
step() { echo "== package: $*"; }
# dpkg, waiting (up to 5 minutes) while another dpkg or apt holds its lock.
dpkg_() {
    local out
    for _ in $(seq 150); do
        if out=$(dpkg "$@" 2>&1); then echo "$out"; return 0; fi
        if ! grep -q 'lock was locked by another process\|could not get lock' <<<"$out"; then echo "$out" >&2; return 1; fi
        sleep 2
    done
    fail "dpkg $*: its lock was held for 5 minutes"
}
# A command as the ivr user, from / (the ivr user may not enter the current directory).
as_ivr() { (cd / && runuser -u ivr -- "$@"); }
fail() { echo "package-test: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the package"
if dpkg-query -W -f='${Status}' ivr 2>/dev/null | grep -q ' installed'; then
    fail "the ivr package is already installed on this machine; this script would purge it"
fi
for path in /var/lib/ivr /etc/ivr /var/backups/ivr; do
    [ ! -e "$path" ] || fail "$path exists: this script would replace it"
done
if getent passwd ivr >/dev/null; then fail "a user ivr exists: this script would delete it"; fi

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    step "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

step "cargo deb (release build)"
t=$(date +%s)
# tee -a: /dev/stderr may be a log file, which a plain tee would empty.
deb=$(cargo deb 2>&1 | tee -a /dev/stderr | tail -n 1)
build_secs=$(( $(date +%s) - t ))
[ -f "$deb" ] || fail "cargo deb did not print the package's path: $deb"

work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; wait "$server" || true; fi
    if dpkg-query -W -f='${Status}' ivr 2>/dev/null | grep -q 'installed\|config-files'; then
        dpkg_ --purge ivr >/dev/null || true
    fi
    rm -rf /var/backups/ivr "$work"
}
trap cleanup EXIT

step "dpkg -i $(basename "$deb"), with systemd's helpers failing"
# Without systemd as PID 1, or with its helpers broken, the install must still succeed: the
# first install runs with deb-systemd-helper, deb-systemd-invoke and systemctl that all fail.
mkdir "$work/failing"
for tool in deb-systemd-helper deb-systemd-invoke systemctl; do
    printf '#!/bin/sh\nexit 1\n' >"$work/failing/$tool"
    chmod +x "$work/failing/$tool"
done
PATH="$work/failing:$PATH" dpkg_ -i "$deb"

step "installed files"
[ -x /usr/bin/ivr ] || fail "/usr/bin/ivr is not installed"
if readelf -S /usr/bin/ivr | grep -qE '\.symtab|\.debug_'; then fail "/usr/bin/ivr is not stripped"; fi
[ "$(getent passwd ivr | cut -d: -f6,7)" = "/var/lib/ivr:/usr/sbin/nologin" ] || fail "user ivr: $(getent passwd ivr)"
[ "$(stat -c '%U:%G %a' /var/lib/ivr)" = "ivr:ivr 750" ] || fail "/var/lib/ivr is $(stat -c '%U:%G %a' /var/lib/ivr)"
[ "$(stat -c '%U:%G %a' /etc/ivr/ivr.toml)" = "root:ivr 640" ] || fail "/etc/ivr/ivr.toml is $(stat -c '%U:%G %a' /etc/ivr/ivr.toml)"
dpkg-query -W -f='${Conffiles}\n' ivr | grep -q '^ /etc/ivr/ivr.toml ' || fail "/etc/ivr/ivr.toml is not a conffile"
for f in /usr/share/ivr/call-flows/daily-health-check.toml /usr/share/ivr/prompts/ja-JP.toml \
    /usr/share/ivr/prompts/en-US.toml /usr/share/doc/ivr/deployment.md /usr/share/doc/ivr/configuration.md \
    /usr/libexec/ivr/ivr-backup; do
    [ -f "$f" ] || fail "$f is not installed"
done
unit=$(dpkg -L ivr | grep '/systemd/system/ivr.service$') || fail "no ivr.service installed"
units=$(dpkg -L ivr | grep '/systemd/system/ivr')
if command -v systemd-analyze >/dev/null; then
    # shellcheck disable=SC2086
    systemd-analyze verify $units || fail "systemd-analyze verify $unit"
    systemd-analyze security --offline=yes --threshold=30 "$unit" >/dev/null \
        || fail "systemd-analyze security: $unit's exposure is above 3.0 (systemd-analyze's 30)"
fi
deb_size=$(stat -c %s "$deb")
bin_size=$(stat -c %s /usr/bin/ivr)

step "ivr check --config /etc/ivr/ivr.toml, as ivr"
as_ivr /usr/bin/ivr check --config /etc/ivr/ivr.toml

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
# As the unit does: the ivr user, in /var/lib/ivr, NO_COLOR. Only the port differs, since
# another program may hold 8080 here.
start_server() {
    # setpriv execs ivr itself (runuser would stay as its parent), so SIGTERM reaches the server
    # and its exit status is the server's.
    (cd /var/lib/ivr && exec setpriv --reuid=ivr --regid=ivr --init-groups -- env NO_COLOR=1 \
        IVR_SERVER__LISTEN="127.0.0.1:$port" /usr/bin/ivr serve --config /etc/ivr/ivr.toml) >>"$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 300); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; then return 0; fi
        kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; fail "ivr serve exited"; }
        sleep 0.1
    done
    cat "$work/serve.log" >&2
    fail "/readyz did not answer 200 within 30 s"
}
stop_server() {
    kill -TERM "$server"
    local status=0
    wait "$server" || status=$?
    server=
    [ "$status" = 0 ] || { cat "$work/serve.log" >&2; fail "ivr serve exited with $status on SIGTERM"; }
}
# As ivr: sqlite3 run by root on a stopped server's database could leave root's -wal and -shm.
tokens() { as_ivr sqlite3 /var/lib/ivr/ivr.db "select group_concat(name, ' ') from (select name from api_tokens order by name)"; }

step "ivr serve, as ivr, until /readyz answers 200"
t=$(date +%s)
start_server
ready_secs=$(( $(date +%s) - t ))
curl -s "$url/readyz"; echo
[ "$(stat -c '%U:%G' /var/lib/ivr/ivr.db)" = "ivr:ivr" ] || fail "the database is owned by $(stat -c '%U:%G' /var/lib/ivr/ivr.db)"

step "back up while the server runs, restore, start again"
as_ivr /usr/bin/ivr tokens add before-backup --scope verify --config /etc/ivr/ivr.toml >/dev/null
touch -d '20 days ago' /var/backups/ivr/ivr-20000101T000000Z.db
as_ivr /usr/libexec/ivr/ivr-backup /var/lib/ivr/ivr.db /var/backups/ivr 14
[ ! -e /var/backups/ivr/ivr-20000101T000000Z.db ] || fail "a backup older than 14 days was kept"
backup=$(ls /var/backups/ivr/ivr-*.db)
[ "$(stat -c '%U %a' "$backup")" = "ivr 600" ] || fail "$backup is $(stat -c '%U %a' "$backup")"
as_ivr /usr/bin/ivr tokens add after-backup --scope verify --config /etc/ivr/ivr.toml >/dev/null
[ "$(tokens)" = "after-backup before-backup" ] || fail "tokens before the restore: $(tokens)"
stop_server
# The restore of docs/deployment.md: aside the database and its -wal and -shm, the backup in.
mkdir /var/lib/ivr/before-restore
mv /var/lib/ivr/ivr.db* /var/lib/ivr/before-restore/
install -o ivr -g ivr -m 0640 "$backup" /var/lib/ivr/ivr.db
[ "$(as_ivr sqlite3 /var/lib/ivr/ivr.db 'pragma integrity_check')" = ok ] || fail "the restored database fails integrity_check"
start_server
[ "$(tokens)" = "before-backup" ] || fail "tokens after the restore: $(tokens)"
as_ivr /usr/bin/ivr migrate --config /etc/ivr/ivr.toml
stop_server

step "flows copied to /etc/ivr and edited there, as docs/deployment.md section 13 does"
cp -r /usr/share/ivr/call-flows /usr/share/ivr/prompts /etc/ivr/
sed -i 's|^dir = "/usr/share/ivr/call-flows"|dir = "/etc/ivr/call-flows"|; s|^prompts_dir = "/usr/share/ivr/prompts"|prompts_dir = "/etc/ivr/prompts"|' /etc/ivr/ivr.toml
as_ivr /usr/bin/ivr check --config /etc/ivr/ivr.toml
start_server
stop_server

step "dpkg -i again over itself: the edited settings file is kept"
dpkg_ -i --force-confdef --force-confold "$deb"
grep -qx 'dir = "/etc/ivr/call-flows"' /etc/ivr/ivr.toml || fail "the upgrade replaced the edited /etc/ivr/ivr.toml"
[ "$(stat -c '%U:%G %a' /etc/ivr/ivr.toml)" = "root:ivr 640" ] || fail "after the upgrade /etc/ivr/ivr.toml is $(stat -c '%U:%G %a' /etc/ivr/ivr.toml)"
[ "$(tokens)" = "before-backup" ] || fail "the upgrade lost the database"
start_server
stop_server

step "dpkg --purge ivr"
dpkg_ --purge ivr
rm -rf /var/backups/ivr
for path in /usr/bin/ivr /var/lib/ivr /etc/ivr /usr/share/ivr "$unit"; do
    [ ! -e "$path" ] || fail "$path is left after the purge"
done
if getent passwd ivr >/dev/null; then fail "the user ivr is left after the purge"; fi
if getent group ivr >/dev/null; then fail "the group ivr is left after the purge"; fi

echo "package-test: ok: $(basename "$deb") $deb_size bytes; /usr/bin/ivr $bin_size bytes;" \
    "cargo deb ${build_secs}s; ready after ${ready_secs}s; whole script $(( $(date +%s) - started ))s"
