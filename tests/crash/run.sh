#!/usr/bin/env bash
# tests/crash/run.sh — the crash and fault suite.
#
#   tests/crash/run.sh quick    every fault a few times, ~4 minutes   (make check)
#   tests/crash/run.sh long     many iterations per fault             (make crashtest)
#   tests/crash/run.sh MODE --faults daemon_kill,power_loss --iterations 5
#
# Builds what it needs (scripts/setup.sh: make all builds hotstockd,
# libhotstock, crash_load, crash_tool and pq/crash_sqlload), installs the extension when the
# installed one is stale (scripts/setup.sh), copies the programs to
# $CRASH_BASE/bin (so that a rebuild during the run cannot change them under
# a restart), then runs harness.py, which prints the per-fault table and
# ends with exactly "N passed, N failed".
#
# Needs root for the disk-full fault (mount -t tmpfs) and to run the
# cluster as user postgres.  Private clusters: port $CRASH_PORT (default:
# the first of 55442..55461 that no other run holds), under $CRASH_BASE
# (default /tmp/hs-crash-run-$CRASH_PORT); other clusters are not touched.
# CRASH_KEEP=1 keeps every cluster directory for inspection.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ME=crash/run.sh
MODE=${1:-quick}
shift || true

say() { printf '%s: %s\n' "$ME" "$*"; }
fail() {
    say "$*"
    echo "0 passed, 1 failed"
    exit 1
}

case $MODE in quick | long) ;; *) fail "usage: $ME quick|long [--faults a,b] [--iterations N]" ;; esac
[ "$(id -u)" -eq 0 ] || say "not root: the disk_full fault (tmpfs) and runuser will fail"

# PG_CONFIG as the Makefile and the scripts resolve it (the one place)
# shellcheck source=../../scripts/lib.sh
RUN_DIR_SAVED=${RUN_DIR-}
. "$REPO/scripts/lib.sh"
ME=crash/run.sh
RUN_DIR=$RUN_DIR_SAVED

# One run per port at a time: take the first free port from 55442 on (a
# lock file held for the whole run, and nothing else listening on it: a
# cluster from make demo may), and a base directory of its own, so that two
# runs (two checkouts, or make check beside make crashtest) never share a
# cluster.
if [ -z "${CRASH_PORT:-}" ]; then
    claim_port crash 55442 55461 || fail "no free port in 55442..55461"
    CRASH_PORT=$CLAIMED_PORT
fi
export CRASH_PORT
export CRASH_BASE=${CRASH_BASE:-/tmp/hs-crash-run-$CRASH_PORT}
BIN=$CRASH_BASE/bin


# ---- build and install ----
if ! bash "$REPO/scripts/setup.sh" >"$REPO/tests/crash/.setup.log" 2>&1; then
    tail -n 20 "$REPO/tests/crash/.setup.log" >&2
    fail "scripts/setup.sh failed (build or install); see tests/crash/.setup.log"
fi
mkdir -p "$BIN"
chmod 0755 "$CRASH_BASE" "$BIN"
for p in shmd/hotstockd tests/crash/crash_load tests/crash/crash_tool tests/crash/holds_crash tests/crash/basket_crash \
    tests/crash/buyer_crash tests/crash/pq/crash_sqlload; do
    [ -x "$REPO/$p" ] || fail "$p was not built (make all)"
    cp "$REPO/$p" "$BIN/$(basename "$p").new" && mv "$BIN/$(basename "$p").new" "$BIN/$(basename "$p")"
done
chmod 0755 "$BIN"/*
# cluster.sh and lib.sh as they are now: the harness restarts clusters many
# times and must not meet a half-edited script
mkdir -p "$CRASH_BASE/scripts"
cp "$REPO/scripts/cluster.sh" "$REPO/scripts/lib.sh" "$CRASH_BASE/scripts/"
export CRASH_SCRIPTS=$CRASH_BASE/scripts

export PATH="$("$PG_CONFIG" --bindir):$PATH"
# In the background so that a TERM (timeout) reaches the harness, which
# then stops its clusters on the way out.
python3 "$HERE/harness.py" "$MODE" "$@" 9>&- &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT
wait $pid
rc=$?
if [ $rc -ge 128 ]; then
    wait $pid
    rc=$?
fi
exit $rc
