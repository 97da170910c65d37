#!/usr/bin/env bash
# tests/stress/run.sh — the concurrency and crash stress of libhotstock
# against a real hotstockd, in bounded time (about a minute).
#
# Runs tests/stress/hammer (see its header) in several shapes: many
# processes and threads on one hot SKU without and with durability waits,
# a tiny ring (HS_QUEUE_FULL back-pressure), and SIGKILLs of the daemon in
# the middle of the load, with durability waits (nothing acknowledged as
# durable is lost) and without (nothing published in the ring is lost: the
# next daemon salvages it).  Then tests/stress/evict_stress: online eviction
# of a small order index under load, with workers killed and paused
# mid-call and the daemon killed.  Each run is one case: passed when the program exits 0
# (all its checks held), failed otherwise or when it exceeds its time
# limit.  Prints each case, then exactly "N passed, N failed".
#
# Environment: HOTSTOCKD (daemon binary, default ./shmd/hotstockd),
# STRESS_SEED (default 1), STRESS_KEEP=1 keeps the data directories.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2
export HOTSTOCKD=${HOTSTOCKD:-$REPO/shmd/hotstockd}
SEED=${STRESS_SEED:-1}
KEEP=()
[ "${STRESS_KEEP:-0}" = 1 ] && KEEP=(--keep)

if [ ! -x tests/stress/hammer ] || [ ! -x tests/stress/evict_stress ] ||
    [ ! -x tests/stress/evict_crash_back ] || [ ! -x "$HOTSTOCKD" ]; then
    make -s shmd/hotstockd tests/stress/hammer tests/stress/evict_stress \
        tests/stress/evict_crash_back >/dev/null || {
        echo "building hammer, evict_stress or hotstockd failed"
        echo "0 passed, 1 failed"
        exit 1
    }
fi

passed=0
failed=0
start=$(date +%s)

# case NAME LIMIT_SECONDS ARGS...  (runs $prog)
prog=tests/stress/hammer
case_() {
    local name=$1 limit=$2 out t0 rc
    shift 2
    t0=$(date +%s%N)
    out=$(timeout --signal=KILL "$limit" "$prog" --seed "$SEED" "${KEEP[@]}" "$@" 2>&1)
    rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    local secs=$((ms / 1000)).$(((ms % 1000) / 100))
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf 'ok    %-30s %6s s  %s\n' "$name" "$secs" "$(echo "$out" | tail -n 1)"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-30s %6s s  (exit %d)\n' "$name" "$secs" "$rc"
        echo "$out" | sed 's/^/      /'
    fi
}

case_ "async 4x2"                 40 --procs 4 --threads 2 --attempts 4000
case_ "async 8x1 small stock"     40 --procs 8 --threads 1 --attempts 2000 --stock 300
case_ "sync 3x2 (group commit)"   40 --procs 3 --threads 2 --attempts 800 --sync
case_ "tiny ring 4x2"             40 --procs 4 --threads 2 --attempts 2000 --ring-capacity 16
case_ "kill x3 3x2"               60 --procs 3 --threads 2 --attempts 1500 --kill 3
case_ "kill x5 4x1 large stock"   60 --procs 4 --threads 1 --attempts 1500 --kill 5 --stock 100000
case_ "kill x4 async (ring salvage)" 60 --procs 4 --threads 2 --attempts 3000 --kill 4 --async --stock 20000

# online eviction: 4096 order slots, ~40 times as many orders, workers
# killed and paused mid-call, the daemon killed twice (see
# tests/stress/evict_stress.c)
prog=tests/stress/evict_stress
case_ "evict 6 procs, kills+pauses" 60 --seconds 15 --kill-workers 200 --kill-daemon 2
prog=tests/stress/evict_crash_back
case_ "evicted order stays evicted" 30

echo "stress: $(($(date +%s) - start)) s"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
