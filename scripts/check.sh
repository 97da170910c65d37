#!/usr/bin/env bash
# scripts/check.sh — `make check`: set up, start a cluster, run every suite.
#
# The tests run against their own cluster in $CHECK_RUN_DIR (default
# <repo>/.run-check, port $CHECK_PORT, default 55433), so a cluster started
# with `make start` or `make demo` in .run is never touched.  That folder is
# check's own: each run stops what a previous run left there, wipes it and
# starts afresh, and stops the cluster at the end (KEEP_CLUSTER=1 leaves it
# running for a look).  Pointed at a folder it did not make, check.sh reuses
# the cluster there and stops it at the end only if it started it.
#
# Each suite's output goes to the console (indented) and to
# $CHECK_RUN_DIR/logs/<suite>.log; its own closing `N passed, N failed` line
# is added up.  A suite that exits non-zero without counting a failure, times
# out, or prints no such line counts as one failure; a suite whose runner is
# not in the tree is reported as "not present" and counts as nothing.
# The suites: unit, layout, daemon, regress, pg, stress, soak, shard, crash,
# model, fuzz.  The last line is the sum over all suites: `N passed, N
# failed`; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

if [ -n "${CHECK_RUN_DIR:-}" ]; then
    CHECK_RUN_DIR=$(realpath -m "$CHECK_RUN_DIR")
else
    CHECK_RUN_DIR=$REPO/.run-check
    [ ${#CHECK_RUN_DIR} -le "$RUN_DIR_MAX" ] || CHECK_RUN_DIR=$(short_run_dir check)
fi
export RUN_DIR=$CHECK_RUN_DIR
export HOTSTOCK_PORT=${CHECK_PORT:-55433}
# cluster.sh for check's own cluster (a port clash names CHECK_PORT)
cluster() { PORT_KNOB=CHECK_PORT PORT_COMMAND="make check" bash "$REPO/scripts/cluster.sh" "$@"; }
MARKER=$RUN_DIR/.made-by-check
LOGDIR=$RUN_DIR/logs
T0=$(date +%s)

total_passed=0
total_failed=0
summary=()

finish() {
    echo
    echo "==== summary ($(($(date +%s) - T0)) s, logs in $LOGDIR)"
    local s
    for s in "${summary[@]}"; do echo "  $s"; done
    echo "$total_passed passed, $total_failed failed"
    [ "$total_failed" -eq 0 ]
    exit $?
}

fail_early() {
    total_failed=$((total_failed + 1))
    summary+=("$(printf '%-24s FAILED: %s' "$1" "$2")")
    finish
}

# ---- setup and the cluster ----
echo "==== setup"
bash "$REPO/scripts/setup.sh" || fail_early setup "scripts/setup.sh failed"
resolve_pg_config

echo "==== cluster in $RUN_DIR (port $HOTSTOCK_PORT)"
own_cluster=0
if [ ! -e "$RUN_DIR" ] || [ -e "$MARKER" ]; then
    if [ -e "$RUN_DIR" ]; then
        cluster stop || fail_early cluster "could not stop the previous check cluster in $RUN_DIR"
        rm -rf "$RUN_DIR"
    fi
    own_cluster=1
    mkdir -p "$RUN_DIR"
    touch "$MARKER"
elif ! cluster status >/dev/null 2>&1; then
    own_cluster=1
fi
if ! cluster start; then
    [ $own_cluster -eq 1 ] && cluster stop
    fail_early cluster "scripts/cluster.sh start failed"
fi
mkdir -p "$LOGDIR"
# shellcheck disable=SC1091
. "$RUN_DIR/env"
export HOTSTOCKD=${HOTSTOCKD:-$(pg_bindir)/hotstockd} REPO PG_CONFIG

stop_cluster() {
    if [ $own_cluster -eq 1 ] && [ -z "${KEEP_CLUSTER:-}" ]; then
        echo "==== stopping the check cluster"
        cluster stop ||
            fail_early cluster-stop "the check cluster did not stop cleanly"
    fi
}
# Interrupted: stop what we started, then count it as a failure.
# The suite running now: `timeout`, which leads a process group of its own
# and passes a TERM on to the suite (which stops what it started).
SUITE_PID=
on_interrupt() {
    trap - INT TERM
    echo
    echo "==== interrupted"
    if [ -n "$SUITE_PID" ] && kill -TERM "$SUITE_PID" 2>/dev/null; then
        wait "$SUITE_PID" 2>/dev/null
    fi
    stop_cluster
    fail_early interrupted "check.sh was interrupted"
}
trap on_interrupt INT TERM

# ---- running one suite ----

# record NAME PASSED FAILED NOTE
record() {
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    summary+=("$(printf '%-24s %s passed, %s failed%s' "$1" "$2" "$3" "$4")")
}

# run_suite NAME SECONDS KIND CMD...   KIND: plain | regress
run_suite() {
    local name=$1 limit=$2 kind=$3
    shift 3
    local log=$LOGDIR/${name//\//_}.log start rc passed='' failed='' line note=''
    echo
    echo "==== $name: $* (limit ${limit}s)"
    start=$(date +%s)
    # The suite writes to its log file, not to a pipe: a process it leaves
    # behind cannot hold this script up.  tail follows the file until the
    # suite has exited.
    # The log exists before tail looks for it (the redirection below
    # happens in the background).
    : >"$log"
    (cd "$REPO" && exec timeout --kill-after=15 "$limit" "$@") </dev/null >"$log" 2>&1 &
    local pid=$!
    SUITE_PID=$pid
    tail -n +1 -s 0.5 -f --pid=$pid "$log" | sed -u -e 's/^/  /'
    wait $pid
    rc=$?
    SUITE_PID=
    note=" ($(($(date +%s) - start)) s)"
    if [ "$kind" = regress ]; then
        # pg_regress: " All 7 tests passed." or " 2 of 7 tests failed."
        if line=$(grep -E 'All [0-9]+ tests passed' "$log" | tail -n 1) && [ -n "$line" ]; then
            passed=$(sed -E 's/.*All ([0-9]+) tests passed.*/\1/' <<<"$line")
            failed=0
        elif line=$(grep -E '[0-9]+ of [0-9]+ tests failed' "$log" | tail -n 1) && [ -n "$line" ]; then
            failed=$(sed -E 's/.* ([0-9]+) of ([0-9]+) tests failed.*/\1/' <<<"$line")
            passed=$(($(sed -E 's/.* ([0-9]+) of ([0-9]+) tests failed.*/\2/' <<<"$line") - failed))
        fi
        if [ -f "$RUN_DIR/regress/regression.diffs" ] && [ -s "$RUN_DIR/regress/regression.diffs" ]; then
            echo "  ---- regression.diffs (first 200 lines; all in $RUN_DIR/regress/regression.diffs)"
            head -n 200 "$RUN_DIR/regress/regression.diffs" | sed 's/^/  /'
        fi
    else
        line=$(grep -E '^[[:space:]]*([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
        if [ -n "$line" ]; then
            passed=$(sed -E 's/^[^0-9]*([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
            failed=$(sed -E 's/^[^0-9]*([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
        fi
    fi
    if [ -z "$passed" ]; then
        passed=0
        failed=1
        note="$note; printed no result line, exit $rc: counted as 1 failure"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        failed=$((failed + 1))
        note="$note; timed out after ${limit}s: +1 failure"
    elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
        note="$note; exit $rc with no failure counted: counted as 1 failure"
    fi
    record "$name" "$passed" "$failed" "$note"
}

not_present() {
    summary+=("$(printf '%-24s not present (%s): nothing run' "$1" "$2")")
    echo
    echo "==== $1: not present ($2)"
}

# The suites that use the cluster get it (re)started first: an earlier
# suite may have killed the daemon or PostgreSQL on purpose.
ensure_cluster() {
    cluster start >"$LOGDIR/cluster-restart.log" 2>&1 || {
        cat "$LOGDIR/cluster-restart.log"
        record "$1" 0 1 " (cluster could not be started)"
        return 1
    }
}

# ---- the suites ----

if [ -f "$REPO/tests/run_unit.sh" ]; then
    run_suite unit 300 plain bash tests/run_unit.sh
else
    not_present unit tests/run_unit.sh
fi

# The layout: no call or include cycles, no daemon or writer code in
# hotstock.so, no .c file of 900 lines or more (on what setup.sh built).
if [ -f "$REPO/tests/layout/check.sh" ]; then
    run_suite layout 120 plain bash tests/layout/check.sh
else
    not_present layout tests/layout/check.sh
fi

found=0
for f in "$REPO"/tests/daemon/*.sh; do
    [ -f "$f" ] || continue
    found=1
    run_suite "daemon/$(basename "$f" .sh)" 300 plain bash "tests/daemon/$(basename "$f")"
done
[ $found -eq 1 ] || not_present daemon "tests/daemon/*.sh"

if compgen -G "$REPO/sql/*.sql" >/dev/null; then
    # The drain writes into one database (hotstock.drain_database, the
    # cluster's $PGDATABASE), so the Makefile runs pg_regress there with
    # --use-existing.  Its results/ and regression.diffs go under $RUN_DIR.
    if ensure_cluster regress; then
        rm -rf "$RUN_DIR/regress"
        run_suite regress 300 regress make -s installcheck PG_CONFIG="$PG_CONFIG" \
            EXTRA_REGRESS_OPTS="--outputdir=$RUN_DIR/regress"
    fi
else
    not_present regress "sql/*.sql"
fi

found=0
for f in "$REPO"/tests/pg/*.sh; do
    [ -f "$f" ] || continue
    found=1
    ensure_cluster "pg/$(basename "$f" .sh)" &&
        run_suite "pg/$(basename "$f" .sh)" 300 plain bash "tests/pg/$(basename "$f")"
done
[ $found -eq 1 ] || not_present pg "tests/pg/*.sh"

if [ -f "$REPO/tests/stress/run.sh" ]; then
    ensure_cluster stress && run_suite stress 420 plain bash tests/stress/run.sh
else
    not_present stress tests/stress/run.sh
fi

# The sustain test's short run, on a cluster of its own (a small order
# index that must serve many times its capacity online).
if [ -f "$REPO/tests/soak/run.sh" ]; then
    run_suite soak 300 plain bash tests/soak/run.sh quick
else
    not_present soak "tests/soak/run.sh quick"
fi

# Two shards and a PL/Proxy router of its own (own ports and run folder):
# a sale through the router with a shard's daemon killed mid-sale.
if [ -f "$REPO/tests/shard/run.sh" ]; then
    run_suite shard 180 plain bash tests/shard/run.sh
else
    not_present shard tests/shard/run.sh
fi

if [ -f "$REPO/tests/crash/run.sh" ]; then
    ensure_cluster crash && run_suite crash 420 plain bash tests/crash/run.sh quick
else
    not_present crash "tests/crash/run.sh quick"
fi

if [ -f "$REPO/tests/model/run.sh" ]; then
    run_suite model 420 plain bash tests/model/run.sh
else
    not_present model tests/model/run.sh
fi

if [ -f "$REPO/tests/fuzz/run.sh" ]; then
    run_suite fuzz 300 plain bash tests/fuzz/run.sh quick
else
    not_present fuzz "tests/fuzz/run.sh quick"
fi

stop_cluster
finish
