# tests/pg/lib.bash — shared by the PostgreSQL-side tests in tests/pg/*.sh.
#
# Sourced, not run (its name does not end in .sh, so runners that take every
# tests/pg/*.sh as a suite skip it).  The cluster comes from the environment:
# PGHOST, PGPORT, PGUSER, PGDATABASE and HOTSTOCK_DIR (the daemon's data
# directory); when PGHOST is unset, ${RUN_DIR:-<repo>/.run}/env is read, as
# written by `make start`.  Restarts go through scripts/cluster.sh start
# (idempotent).  Every check is counted; finish prints `N passed, N failed`.

# The one shell library of scripts and tests: REPO, RUN_DIR, PG_CONFIG and
# pg_bindir, RUNAS and as_pg, say/warn/die, wait_for, kill_pid and the /proc
# helpers.
# shellcheck source=../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
ME=$(basename "$0" .sh)

if [ -z "${PGHOST:-}" ]; then
    _env=$RUN_DIR/env
    if [ -f "$_env" ]; then
        # shellcheck disable=SC1090
        . "$_env"
    fi
fi
: "${PGDATABASE:=hotstock}"
export PGDATABASE

PGBIN=$(pg_bindir)
PSQL=$PGBIN/psql
PGBENCH=$PGBIN/pgbench
if [ -z "${HOTSTOCKD:-}" ]; then
    HOTSTOCKD=$PGBIN/hotstockd
    [ -x "$HOTSTOCKD" ] || HOTSTOCKD=$REPO/shmd/hotstockd
fi
export HOTSTOCKD

PASSED=0
FAILED=0
T0=$(date +%s)

pass() {
    PASSED=$((PASSED + 1))
    printf 'ok     %s\n' "$1"
}

fail() {
    FAILED=$((FAILED + 1))
    printf 'FAILED %s\n' "$1"
}

# check LABEL CMD...: pass when CMD succeeds.
check() {
    local label=$1
    shift
    if "$@"; then pass "$label"; else fail "$label"; fi
}

# expect LABEL GOT WANT: pass when the two strings are equal.
expect() {
    if [ "$2" = "$3" ]; then
        pass "$1"
    else
        fail "$1 (got '$2', want '$3')"
    fi
}

# expect_sql LABEL SQL: pass when SQL returns exactly t.
expect_sql() {
    local got
    got=$(q "$2" 2>&1)
    if [ "$got" = t ]; then pass "$1"; else fail "$1 (got '$got')"; fi
}

finish() {
    say "done in $(($(date +%s) - T0)) s"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# q SQL: one value per line, unaligned, stop on the first error.
q() {
    "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -c "$1"
}

# sqlstate SQL: the SQLSTATE the statement raised, or ok.
sqlstate() {
    local out
    out=$("$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -c "$1" 2>&1) && {
        echo ok
        return
    }
    sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\).*/\1/p' <<<"$out" | head -n 1
}

pg_ready() { "$PGBIN/pg_isready" -q >/dev/null 2>&1 && q "SELECT 1" >/dev/null 2>&1; }

drain_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hotstock drain'" 2>/dev/null; }

# serving_after_reset OLD_DRAIN_PID: the crash reset a kill set off is over.
# Right after the kill, the old postmaster may still answer and still list
# the dead drain: only a drain with another pid shows that the reset ran.
serving_after_reset() {
    local now
    pg_ready && now=$(drain_pid) && [ -n "$now" ] && [ "$now" != "$1" ] && daemon_up
}

drain_running() {
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hotstock drain'" 2>/dev/null)" = 1 ]
}

daemon_up() {
    [ "$(q "SELECT daemon_up FROM hotstock.status" 2>/dev/null)" = t ]
}

# The drain has applied every record written so far.
drain_caught_up() {
    [ "$(q "SELECT applied_lsn >= last_lsn FROM hotstock.status" 2>/dev/null)" = t ]
}

# wait_drain SECONDS: until drain_caught_up (the daemon must be up).
wait_drain() {
    wait_for "$1" drain_caught_up
}

cluster_start() {
    if [ -f "$REPO/scripts/cluster.sh" ]; then
        bash "$REPO/scripts/cluster.sh" start >/dev/null
    else
        say "scripts/cluster.sh is missing"
        return 1
    fi
}

daemon_stop() {
    as_pg "$HOTSTOCKD" stop -D "$HOTSTOCK_DIR" >/dev/null 2>&1
}

daemon_start() {
    as_pg "$HOTSTOCKD" start -D "$HOTSTOCK_DIR" >/dev/null 2>&1
}

# daemon_conf_set KEY VALUE: KEY = VALUE in the daemon's hotstockd.conf for
# this suite, and a daemon restart to read it.  The suite calls
# daemon_conf_restore at exit: the file as it was, and a restart.
DAEMON_CONF_SAVED=
DAEMON_CONF_HAD=0
daemon_conf_set() {
    local conf=$HOTSTOCK_DIR/hotstockd.conf
    if [ -z "$DAEMON_CONF_SAVED" ]; then
        DAEMON_CONF_SAVED=$(mktemp /tmp/hotstock-conf.XXXXXX)
        if [ -f "$conf" ]; then
            DAEMON_CONF_HAD=1
            cp "$conf" "$DAEMON_CONF_SAVED"
        fi
    fi
    {
        [ -f "$conf" ] && grep -v "^ *$1 *=" "$conf"
        echo "$1 = $2"
    } >"$conf.new" && chmod 644 "$conf.new" && mv "$conf.new" "$conf" && daemon_restart
}
daemon_conf_restore() {
    local conf=$HOTSTOCK_DIR/hotstockd.conf
    [ -n "$DAEMON_CONF_SAVED" ] || return 0
    if [ "$DAEMON_CONF_HAD" = 1 ]; then cp "$DAEMON_CONF_SAVED" "$conf"; else rm -f "$conf"; fi
    rm -f "$DAEMON_CONF_SAVED"
    DAEMON_CONF_SAVED=
    daemon_restart || say "could not restart hotstockd with its own settings"
}

# A unique prefix for this run's SKUs and order ids.
RUN_ID=$(date +%s)-$$

# Tables where the load scripts record what the app was told: ok holds the
# orders whose deduction answered true and was not refunded (the row
# commits with the deduction, or both roll back), refunded those refunded.
make_test_tables() {
    q "SET client_min_messages = warning;
       CREATE SCHEMA IF NOT EXISTS hotstock_test;
       CREATE TABLE IF NOT EXISTS hotstock_test.ok (order_id text PRIMARY KEY, sku text NOT NULL);
       CREATE TABLE IF NOT EXISTS hotstock_test.refunded (order_id text PRIMARY KEY, sku text NOT NULL);
       CREATE TABLE IF NOT EXISTS hotstock_test.held (order_id text PRIMARY KEY, sku text NOT NULL);
       CREATE TABLE IF NOT EXISTS hotstock_test.cancelled (order_id text PRIMARY KEY, sku text NOT NULL)"
}

# write_load_scripts DIR SKU PREFIX: pgbench scripts on SKU, order ids
# PREFIX-<client>-<random>:
#   deduct.sql        a deduction; its retry must answer true
#   refund.sql        a deduction refunded in autocommit
#   refund_block.sql  a deduction and its refund in one transaction block
#   rollback.sql      a deduction whose transaction rolls back
# A failed assertion divides by a zero pgbench cannot fold into a constant.
write_load_scripts() {
    local dir=$1 sku=$2 prefix=$3
    local oid="'$prefix-' || :client_id || '-' || :id"
    local ins="INSERT INTO hotstock_test.ok (order_id, sku) SELECT $oid, '$sku'
WHERE hotstock.deduct('$sku', 1, $oid);"
    local ref="WITH d AS (DELETE FROM hotstock_test.ok WHERE order_id = $oid AND hotstock.refund(order_id)
           RETURNING order_id, sku)
INSERT INTO hotstock_test.refunded SELECT * FROM d;"
    cat >"$dir/deduct.sql" <<EOF
\set id random(1, 1000000000000000)
$ins
SELECT CASE WHEN EXISTS (SELECT 1 FROM hotstock_test.ok WHERE order_id = $oid)
            THEN CASE WHEN hotstock.deduct('$sku', 1, $oid) THEN 0 ELSE 1 / (random() * 0)::int END END;
EOF
    cat >"$dir/refund.sql" <<EOF
\set id random(1, 1000000000000000)
$ins
$ref
EOF
    cat >"$dir/refund_block.sql" <<EOF
\set id random(1, 1000000000000000)
BEGIN;
$ins
$ref
COMMIT;
EOF
    cat >"$dir/rollback.sql" <<EOF
\set id random(1, 1000000000000000)
BEGIN;
$ins
ROLLBACK;
EOF
}

# write_hold_scripts DIR SKU PREFIX: pgbench scripts of holds on SKU, order
# ids PREFIX-<client>-<random>; an acknowledged reserve is a row of
# hotstock_test.held, an acknowledged confirm one of hotstock_test.ok, an
# acknowledged cancel one of hotstock_test.cancelled, each committed with
# the call that it records:
#   hold_confirm.sql   a hold (20 s), then its confirm
#   hold_cancel.sql    a hold (20 s), then its cancel
#   hold_expire.sql    a hold (1 s) left to expire
#   hold_rollback.sql  a hold whose transaction rolls back
write_hold_scripts() {
    local dir=$1 sku=$2 prefix=$3
    local oid="'$prefix-' || :client_id || '-' || :id"
    local hold="INSERT INTO hotstock_test.held (order_id, sku) SELECT $oid, '$sku'
WHERE hotstock.reserve('$sku', 1, $oid, '20 s');"
    cat >"$dir/hold_confirm.sql" <<EOF
\set id random(1, 1000000000000000)
$hold
INSERT INTO hotstock_test.ok (order_id, sku) SELECT order_id, sku FROM hotstock_test.held
WHERE order_id = $oid AND hotstock.confirm(order_id);
EOF
    cat >"$dir/hold_cancel.sql" <<EOF
\set id random(1, 1000000000000000)
$hold
INSERT INTO hotstock_test.cancelled (order_id, sku) SELECT order_id, sku FROM hotstock_test.held
WHERE order_id = $oid AND hotstock.cancel(order_id);
EOF
    cat >"$dir/hold_expire.sql" <<EOF
\set id random(1, 1000000000000000)
INSERT INTO hotstock_test.held (order_id, sku) SELECT $oid, '$sku'
WHERE hotstock.reserve('$sku', 1, $oid, '1 s');
EOF
    cat >"$dir/hold_rollback.sql" <<EOF
\set id random(1, 1000000000000000)
BEGIN;
$hold
ROLLBACK;
EOF
}

# Restart hotstockd (smart stop, start): its counters are rebuilt from the
# checkpoint and the queue, and drained orders leave the order index.
daemon_restart() {
    daemon_stop && daemon_start && wait_for 30 daemon_up
}
