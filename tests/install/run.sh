#!/usr/bin/env bash
# tests/install/run.sh — the clean-install test (`make check-fresh`).
#
# Proves the README's two commands on a machine that has nothing installed:
# a minbase Debian 12 root (only Debian's essential packages), the clone
# copied in, then, as root with a clean environment inside that root:
#
#   apt-get update && apt-get install make      (what the README asks first)
#   make demo                                   (a smaller sale: DEMO_* knobs)
#   make demo-sharded, make stop-sharded        (two shards, a smaller sale)
#   make check
#   make stop
#
# and it fails unless each exits 0, the demo printed "oversold 0", make
# check's own closing line has 0 failed, and nothing started inside the
# root is still running after `make stop`.  The last line adds up the inner
# `make check` counts and this test's own checks: `N passed, N failed`.
#
# Mechanics (root only: debootstrap, mount, chroot):
# - The base root is bootstrapped once, from the mirror this machine's apt
#   uses, into $FRESH_CACHE/base (default /var/tmp/hotstock-fresh) and kept:
#   it is the slow part.  A base whose bootstrap did not finish (no
#   .complete marker) is made again.  Nothing is ever installed into it
#   after bootstrap but the host's apt sources and a policy-rc.d that keeps
#   package scripts from starting services (PostgreSQL's own "main"
#   cluster) inside the root, as in any build chroot.
# - Each run copies the base to $FRESH_CACHE/run-<pid>, copies the files
#   git tracks (plus new, unignored ones) to /root/hotstock in it, and
#   mounts a private /proc, /dev/pts (newinstance) and /dev/shm (tmpfs);
#   the host's /dev is never bind-mounted or touched.  On every exit path
#   (also INT/TERM) the mounts are undone and the copy removed
#   (FRESH_KEEP=1 keeps it for a look).
# - The root shares the host's network, so the ports must be free:
#   FRESH_DEMO_PORT (default 55482) and FRESH_CHECK_PORT (55483; the crash
#   suite's cluster takes the next one and the soak suite's the one after:
#   the root's /tmp, where those suites lock their ports, is not the host's).
# - Processes still running in the root after `make stop` are a failed
#   check; they were started by this test (their root is the copy), so they
#   are listed and then SIGKILLed by PID before the copy is removed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ME=install
FRESH_CACHE=${FRESH_CACHE:-/var/tmp/hotstock-fresh}
BASE=$FRESH_CACHE/base
ROOT=$FRESH_CACHE/run-$$
# Each run's logs in a folder of its own (two runs may overlap); the five
# newest are kept.
LOG=${FRESH_LOG:-$FRESH_CACHE/logs/$(date +%Y%m%d-%H%M%S)-$$}
DEMO_PORT=${FRESH_DEMO_PORT:-55482}
CHECK_PORT=${FRESH_CHECK_PORT:-55483}
SHARD_PORT=${FRESH_SHARD_PORT:-55520} # make demo-sharded: SHARD_PORT and the next one
# The demo in the root: the README's command with a smaller sale.
DEMO_ENV=${FRESH_DEMO_ENV:-DEMO_STOCK=3000 DEMO_ATTEMPTS=4500}
T0=$(date +%s)

say() { printf '%s: %s\n' "$ME" "$*"; }
passed=0
failed=0
pass() {
    passed=$((passed + 1))
    printf 'ok     %s\n' "$1"
}
fail() {
    failed=$((failed + 1))
    printf 'FAILED %s\n' "$1"
}
finish() {
    say "done in $(($(date +%s) - T0)) s (logs in $LOG)"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
# give_up WHY: the test could not run at all: one line, one failure.
give_up() {
    fail "$1"
    finish
}

[ "$(id -u)" -eq 0 ] || give_up "the clean-install test needs root (debootstrap, mount, chroot); run: sudo make check-fresh"
mkdir -p "$FRESH_CACHE" "$LOG" || give_up "cannot create $FRESH_CACHE"
ls -1d "$FRESH_CACHE"/logs/*/ 2>/dev/null | head -n -5 | xargs -r rm -rf --

# ---- the base root, made once ----
host_mirror() {
    local m
    m=$(sed -n 's/^URIs: *\([^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    echo "${m:-http://deb.debian.org/debian}"
}

if [ ! -e "$BASE/.complete" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; } \
            >"$LOG/debootstrap-install.log" 2>&1 ||
            give_up "cannot install debootstrap: $(tail -n 1 "$LOG/debootstrap-install.log") (is the Debian mirror reachable?)"
    fi
    mirror=$(host_mirror)
    say "bootstrapping a minbase Debian 12 root from $mirror into $BASE (once; kept for later runs)"
    rm -rf --one-file-system "$BASE"
    mkdir -p "$BASE"
    if ! debootstrap --variant=minbase bookworm "$BASE" "$mirror" >"$LOG/debootstrap.log" 2>&1; then
        rm -rf --one-file-system "$BASE"
        give_up "debootstrap from $mirror failed: $(tail -n 1 "$LOG/debootstrap.log") (full log: $LOG/debootstrap.log)"
    fi
    # The host's apt sources (security and updates too, as on any installed
    # Debian 12), and no service starts from package scripts in the root.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$BASE/etc/apt/sources.list.d/"
        : >"$BASE/etc/apt/sources.list"
    elif [ -f /etc/apt/sources.list ]; then
        cp /etc/apt/sources.list "$BASE/etc/apt/sources.list"
    fi
    printf '#!/bin/sh\n# no services start inside the clean-install root\nexit 101\n' >"$BASE/usr/sbin/policy-rc.d"
    chmod 0755 "$BASE/usr/sbin/policy-rc.d"
    touch "$BASE/.complete"
fi

# ---- this run's copy ----
in_root_pids() { # the PIDs of processes whose root directory is $ROOT
    local p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [ "$r" = "$ROOT" ] && echo "${p#/proc/}"
    done
}
cleanup() {
    local pids p
    pids=$(in_root_pids)
    if [ -n "$pids" ]; then
        say "killing what this test started and left in $ROOT: $(echo $pids)"
        for p in $pids; do kill -KILL "$p" 2>/dev/null; done
        sleep 1
    fi
    local m
    for m in dev/shm dev/pts proc; do
        if grep -q " $ROOT/$m " /proc/mounts; then
            umount "$ROOT/$m" 2>/dev/null || umount -l "$ROOT/$m" ||
                say "could not unmount $ROOT/$m"
        fi
    done
    if [ "${FRESH_KEEP:-0}" = 1 ]; then
        say "kept $ROOT (FRESH_KEEP=1)"
    elif ! grep -q " $ROOT/" /proc/mounts; then
        rm -rf --one-file-system "$ROOT"
    else
        say "left $ROOT in place: something is still mounted under it"
    fi
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

say "copying the base root and the clone into $ROOT"
cp -a "$BASE" "$ROOT" || give_up "cannot copy $BASE to $ROOT (disk space?)"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null
mkdir -p "$ROOT/root/hotstock"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # What a clone holds: tracked files and new unignored ones, no build
    # products or run folders.
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf - | tar -xf - -C "$ROOT/root/hotstock") ||
        give_up "cannot copy the clone's files into $ROOT"
else
    cp -a "$REPO/." "$ROOT/root/hotstock/" || give_up "cannot copy $REPO into $ROOT"
fi
mount -t proc proc "$ROOT/proc" || give_up "cannot mount a private /proc in $ROOT"
mount -t devpts devpts "$ROOT/dev/pts" -o newinstance,ptmxmode=0666 ||
    give_up "cannot mount a private /dev/pts in $ROOT"
mount -t tmpfs -o size=8g,mode=1777 tmpfs "$ROOT/dev/shm" || give_up "cannot mount a private /dev/shm in $ROOT"

# in_root NAME CMD: run CMD with bash -c inside the root, as root, with a
# clean environment; output to $LOG/NAME.log and, indented, to the console.
in_root() {
    local name=$1 cmd=$2 rc
    echo
    say "[$name] $cmd"
    : >"$LOG/$name.log"
    chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/hotstock && $cmd" </dev/null >"$LOG/$name.log" 2>&1 &
    local pid=$!
    tail -n +1 -s 0.5 -f --pid=$pid "$LOG/$name.log" | sed -u 's/^/  /'
    wait $pid
    rc=$?
    return $rc
}

if in_root apt-make "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null"; then
    pass "apt-get install make in the fresh root"
else
    give_up "apt-get install make in the fresh root failed (see $LOG/apt-make.log)"
fi

in_root demo "$DEMO_ENV HOTSTOCK_PORT=$DEMO_PORT make demo"
rc=$?
if [ $rc -eq 0 ]; then pass "make demo exits 0 in the fresh root"; else fail "make demo exits 0 in the fresh root (exit $rc)"; fi
if grep -Eq '^[[:space:]]*oversold[[:space:]]+0[[:space:]]+0[[:space:]]*$' "$LOG/demo.log"; then
    pass "make demo: 0 oversold (hotstock and plain UPDATE)"
else
    fail "make demo: 0 oversold (no 'oversold 0 0' line in $LOG/demo.log)"
fi

# The sharded demo in the root (two shards, a smaller sale), then its stop.
in_root demo-sharded "SHARDS=2 SHARD_PORT=$SHARD_PORT DEMO_ATTEMPTS=4000 make demo-sharded"
rc=$?
if [ $rc -eq 0 ]; then pass "make demo-sharded exits 0 in the fresh root"; else fail "make demo-sharded exits 0 in the fresh root (exit $rc)"; fi
if grep -Eq ': oversold 0$' "$LOG/demo-sharded.log"; then
    pass "make demo-sharded: 0 oversold"
else
    fail "make demo-sharded: 0 oversold (no 'oversold 0' line in $LOG/demo-sharded.log)"
fi
in_root stop-sharded "SHARD_PORT=$SHARD_PORT make stop-sharded"
rc=$?
if [ $rc -eq 0 ]; then pass "make stop-sharded exits 0"; else fail "make stop-sharded exits 0 (exit $rc)"; fi

in_root check "CHECK_PORT=$CHECK_PORT CRASH_PORT=$((CHECK_PORT + 1)) SOAK_PORT=$((CHECK_PORT + 2)) make check"
rc=$?
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOG/check.log" | tail -n 1)
if [ -n "$line" ]; then
    in_passed=${line%% passed*}
    in_failed=${line#* passed, }
    in_failed=${in_failed%% failed*}
    passed=$((passed + in_passed))
    failed=$((failed + in_failed))
    say "make check in the fresh root: $line"
else
    fail "make check printed no closing 'N passed, N failed' line"
fi
if [ $rc -eq 0 ]; then pass "make check exits 0 in the fresh root"; else fail "make check exits 0 in the fresh root (exit $rc)"; fi

in_root stop "HOTSTOCK_PORT=$DEMO_PORT make stop"
rc=$?
if [ $rc -eq 0 ]; then pass "make stop exits 0"; else fail "make stop exits 0 (exit $rc)"; fi
# Give exiting processes a bounded moment to be reaped, then look.
left=
for _ in $(seq 1 50); do
    left=$(in_root_pids)
    [ -z "$left" ] && break
    sleep 0.2
done
if [ -z "$left" ]; then
    pass "nothing left running in the fresh root after make stop"
else
    fail "still running in the fresh root after make stop: $(for p in $left; do printf '%s(%s) ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)"
fi
finish
