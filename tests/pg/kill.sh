#!/usr/bin/env bash
# tests/pg/kill.sh — SIGKILL the PostgreSQL side under load; nothing is
# oversold, nothing is applied twice, nothing is skipped.
#
# Under a pgbench load of deductions, refunds (autocommit and in blocks),
# rolled-back deductions and retries on one SKU, and of holds on a second
# (reserve then confirm, reserve then cancel, reserve left to expire,
# reserve rolled back), it kills in turn:
#   1. the drain worker (the postmaster then resets every backend),
#   2. a backend in the middle of a hotstock.deduct() call, then one in
#      the middle of hotstock.reserve(), confirm() or cancel(),
#   3. the postmaster itself (then the cluster is started again),
#   4. hotstockd (the drain must keep draining from the queue files while
#      the daemon is down; then the daemon is started again),
#   5. a backend whose transaction deducted and is still open: no rollback
#      runs; the drain sees its xid never commit and compensates it; the
#      same for a backend whose open transaction reserved: its hold is
#      cancelled and its units come back; for a basket (every line
#      given back); and for a buyer under a per-buyer limit (its count
#      given back too).
# After each kill it waits (bounded) for the cluster to serve again.  Then,
# with the load stopped and the drain caught up:
#   - each order is in hotstock.ledger once; every order the app holds as
#     "true" (hotstock_test.ok, committed with its deduction) is in the
#     ledger unrefunded (a refund it saw committed may be held back by a
#     kill between commit and the callback: undersold, counted, allowed);
#   - stock.sold = units of unrefunded ledger rows, available + sold =
#     stock: never oversold;
#   - the holds' SKU, once every hold ended: available + sold = stock and
#     nothing reserved; every acknowledged confirm is a confirmed sale in
#     the ledger, every acknowledged cancel a cancelled hold, none both;
#     every acknowledged reserve is in the ledger once; stock.sold = units
#     of the confirmed holds;
#   - after a daemon restart (counters rebuilt from checkpoint + queue),
#     hotstock.available() equals stock.available exactly, for both SKUs.
#
# Environment: PGHOST/PGPORT/PGUSER/PGDATABASE, HOTSTOCK_DIR (lib.bash);
# KILL_CLIENTS (32), KILL_STOCK (20000).  Restarts use scripts/cluster.sh
# start.  Prints `N passed, N failed`; about a minute and a half.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

CLIENTS=${KILL_CLIENTS:-32}
STOCK=${KILL_STOCK:-20000}
WORK=$(mktemp -d /tmp/hotstock-kill.XXXXXX)
LOAD_PID=
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cluster_start || {
    fail "cluster start"
    finish
}
check "drain running" wait_for 30 drain_running
make_test_tables || fail "test tables"

SKU=kill-$RUN_ID
q "SELECT hotstock.put_sku('$SKU', $STOCK)" >/dev/null || fail "put_sku"
write_load_scripts "$WORK" "$SKU" "K$RUN_ID"
SKUH=holds-$RUN_ID
q "SELECT hotstock.put_sku('$SKUH', $STOCK)" >/dev/null || fail "put_sku (holds)"
write_hold_scripts "$WORK" "$SKUH" "H$RUN_ID"
PGDATA_DIR=$(q "SHOW data_directory")

# Load in the background until killed or 60 s are over.
load_start() {
    "$PGBENCH" -n -c "$CLIENTS" -j 2 -T 60 -f "$WORK/deduct.sql@6" -f "$WORK/refund.sql@2" \
        -f "$WORK/refund_block.sql@1" -f "$WORK/rollback.sql@1" \
        -f "$WORK/hold_confirm.sql@3" -f "$WORK/hold_cancel.sql@1" -f "$WORK/hold_expire.sql@1" \
        -f "$WORK/hold_rollback.sql@1" >"$WORK/load-$1.out" 2>&1 &
    LOAD_PID=$!
}

# The load is past its start: at least `want` more orders hold units.
progress_from() {
    local now
    now=$(q "SELECT count(*) FROM hotstock_test.ok WHERE sku = '$SKU'" 2>/dev/null) || return 1
    [ "${now:-0}" -ge "$1" ]
}

# The load (started just now) makes progress: 200 more orders within 20 s,
# and pgbench is still running.  A count that cannot be read is a failure,
# never a base of 0.
load_running() {
    local base
    base=$(q "SELECT count(*) FROM hotstock_test.ok WHERE sku = '$SKU'") && [ -n "$base" ] || return 1
    wait_for 20 progress_from $((base + 200)) && kill -0 "$LOAD_PID" 2>/dev/null
}

load_stop() {
    if [ -n "$LOAD_PID" ]; then
        kill "$LOAD_PID" 2>/dev/null
        wait "$LOAD_PID" 2>/dev/null
    fi
    LOAD_PID=
}

serving() { pg_ready && drain_running && daemon_up; }

# ---- 1. the drain worker ----
load_start drain
check "1. load running" load_running
DRAIN_PID=$(drain_pid)
check "1. SIGKILL the drain (pid ${DRAIN_PID:-none})" kill_pid KILL "$DRAIN_PID"
load_stop
check "1. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"

# ---- 2. a backend in mid-deduct ----
load_start backend
check "2. load running" load_running
# A backend in mid-deduct, looked for for at most 15 s (on a loaded machine
# the load may still be reconnecting after the reset of step 1).
victim_found() {
    VICTIM=$(q "SELECT pid FROM pg_stat_activity
                WHERE application_name = 'pgbench' AND state = 'active'
                  AND query LIKE '%hotstock.deduct%' LIMIT 1" 2>/dev/null)
    [ -n "$VICTIM" ]
}
VICTIM=
wait_for 15 victim_found
DRAIN_PID=$(drain_pid)
check "2. SIGKILL a backend running hotstock.deduct (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
load_stop
check "2. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"

load_start backend-hold
check "2b. load running" load_running
hold_victim_found() {
    VICTIM=$(q "SELECT pid FROM pg_stat_activity
                WHERE application_name = 'pgbench' AND state = 'active'
                  AND query ~ 'hotstock\.(reserve|confirm|cancel)' LIMIT 1" 2>/dev/null)
    [ -n "$VICTIM" ]
}
VICTIM=
wait_for 15 hold_victim_found
DRAIN_PID=$(drain_pid)
check "2b. SIGKILL a backend running hotstock.reserve/confirm/cancel (pid ${VICTIM:-none})" \
    kill_pid KILL "$VICTIM"
load_stop
check "2b. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"

# ---- 3. the postmaster ----
load_start postmaster
check "3. load running" load_running
PM_PID=$(head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null)
DRAIN_PID=$(drain_pid)
CHILDREN=$(children_of "$PM_PID")
check "3. the postmaster has children to orphan (${CHILDREN//$'\n'/ })" test -n "$CHILDREN"
check "3. SIGKILL the postmaster (pid ${PM_PID:-none})" kill_pid KILL "$PM_PID"
load_stop # its orphaned backends exit once their clients are gone
children_gone() {
    local p
    for p in $CHILDREN; do
        pid_gone "$p" || return 1
    done
    return 0
}
if ! wait_for 60 children_gone; then
    say "orphaned children of the killed postmaster still alive after 60 s: killing them"
    for p in $CHILDREN; do pid_gone "$p" || kill_pid KILL "$p"; done
    wait_for 10 children_gone
fi
# A new postmaster refuses to start while the old pid still answers
# kill(pid, 0), as a zombie does until init reaps it (on some machines
# seconds later): wait until it has left the process table.
check "3. the killed postmaster has been reaped" wait_for 60 pid_reaped "$PM_PID"
check "3. cluster started again" cluster_start
check "3. serving again" wait_for 60 serving_after_reset "$DRAIN_PID"

# ---- 4. hotstockd; the drain goes on from the files ----
load_start daemon
check "4. load running" load_running
DAEMON_PID=$(q "SELECT daemon_pid FROM hotstock.status")
DURABLE=$(q "SELECT durable_lsn FROM hotstock.status")
check "4. SIGKILL hotstockd (pid ${DAEMON_PID:-none})" kill_pid KILL "$DAEMON_PID"
load_stop
check "4. deduct while the daemon is down fails with HS001" \
    bash -c "'$PSQL' -X -q -tA -v VERBOSITY=sqlstate -c \"SELECT hotstock.deduct('$SKU', 1, 'K$RUN_ID-down')\" 2>&1 | grep -q HS001"
applied_past() { [ "$(q "SELECT applied_lsn >= $DURABLE FROM hotstock.drain_state")" = t ]; }
check "4. the drain applied what was durable before the kill, with the daemon down" wait_for 30 applied_past
expect "4. status says the daemon is down" "$(q "SELECT daemon_up FROM hotstock.status")" f
check "4. cluster started again" cluster_start
check "4. serving again" wait_for 60 serving

# ---- 5. a backend killed inside its transaction, after its deduct ----
# The session deducts in a transaction block and then sleeps: its
# transaction is open when its backend is SIGKILLed, so no rollback runs.
# Its xid never commits: the drain compensates the deduction, exactly once,
# and a retry of the order id is told HS005 (rolled back).
SKU5=open-$RUN_ID
ORDER5=K$RUN_ID-open
q "SELECT hotstock.put_sku('$SKU5', 10)" >/dev/null || fail "5. put_sku"
PGAPPNAME=hotstock-kill-open "$PSQL" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN" -c "SELECT hotstock.deduct('$SKU5', 3, '$ORDER5')" -c "SELECT pg_sleep(120)" \
    >"$WORK/open.out" 2>&1 &
OPEN_PSQL=$!
open_victim() {
    VICTIM=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'hotstock-kill-open'
                AND query LIKE '%pg_sleep%' AND state = 'active'" 2>/dev/null)
    [ -n "$VICTIM" ]
}
VICTIM=
check "5. a session sleeps inside its transaction after deducting 3 units" wait_for 30 open_victim
expect "5. its units are out while the transaction is open" "$(q "SELECT hotstock.available('$SKU5')")" 7
DRAIN_PID=$(drain_pid)
check "5. SIGKILL its backend (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
wait "$OPEN_PSQL" 2>/dev/null
check "5. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"
open_compensated() {
    [ "$(q "SELECT hotstock.available('$SKU5') = 10 AND hotstock.order_status('$ORDER5') = 'refunded'
               AND (SELECT count(*) = 1 AND bool_and(refunded_at IS NOT NULL AND xid IS NULL)
                    FROM hotstock.ledger WHERE order_id = '$ORDER5')")" = t ]
}
check "5. the drain gave the 3 units back and marked the order refunded (within 60 s)" \
    wait_for 60 open_compensated
expect "5. a retry of the order id is told it was rolled back (HS005)" \
    "$("$PSQL" -X -q -tA -v VERBOSITY=sqlstate -c "SELECT hotstock.deduct('$SKU5', 3, '$ORDER5')" 2>&1)" \
    "ERROR:  HS005"
expect "5. and takes nothing" "$(q "SELECT hotstock.available('$SKU5')")" 10

# The same for a hold: reserved in an open transaction, the backend killed.
ORDER5H=K$RUN_ID-open-hold
PGAPPNAME=hotstock-kill-open "$PSQL" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN" -c "SELECT hotstock.reserve('$SKU5', 4, '$ORDER5H', '1 hour')" -c "SELECT pg_sleep(120)" \
    >"$WORK/open-hold.out" 2>&1 &
OPEN_PSQL=$!
VICTIM=
check "5b. a session sleeps inside its transaction after reserving 4 units" wait_for 30 open_victim
expect "5b. its units are held while the transaction is open" "$(q "SELECT hotstock.available('$SKU5')")" 6
DRAIN_PID=$(drain_pid)
check "5b. SIGKILL its backend (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
wait "$OPEN_PSQL" 2>/dev/null
check "5b. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"
open_hold_compensated() {
    [ "$(q "SELECT hotstock.available('$SKU5') = 10 AND hotstock.order_status('$ORDER5H') = 'cancelled'
               AND (SELECT count(*) = 1 AND bool_and(hold = 'cancelled' AND xid IS NULL)
                    FROM hotstock.ledger WHERE order_id = '$ORDER5H')")" = t ]
}
check "5b. the drain cancelled the hold and its 4 units came back (within 60 s)" \
    wait_for 60 open_hold_compensated

# The same for a basket: two lines taken in an open transaction, the
# backend killed: the drain gives back every line (compensation by xid),
# and a retry is told it was rolled back.
SKU5B=open-b-$RUN_ID
ORDER5B=K$RUN_ID-open-basket
q "SELECT hotstock.put_sku('$SKU5B', 10)" >/dev/null || fail "5c. put_sku"
PGAPPNAME=hotstock-kill-open "$PSQL" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN" -c "SELECT hotstock.deduct_basket('$ORDER5B', ARRAY['$SKU5', '$SKU5B'], ARRAY[2, 5])" \
    -c "SELECT pg_sleep(120)" >"$WORK/open-basket.out" 2>&1 &
OPEN_PSQL=$!
VICTIM=
check "5c. a session sleeps inside its transaction after taking a basket of 2 lines" \
    wait_for 30 open_victim
expect "5c. both lines are out while the transaction is open" \
    "$(q "SELECT hotstock.available('$SKU5') || ' ' || hotstock.available('$SKU5B')")" "8 5"
DRAIN_PID=$(drain_pid)
check "5c. SIGKILL its backend (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
wait "$OPEN_PSQL" 2>/dev/null
check "5c. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"
open_basket_compensated() {
    [ "$(q "SELECT hotstock.available('$SKU5') = 10 AND hotstock.available('$SKU5B') = 10
               AND (SELECT count(*) = 2 AND bool_and(refunded_at IS NOT NULL AND xid IS NULL)
                    FROM hotstock.ledger WHERE order_id LIKE '$ORDER5B' || chr(31) || '%')")" = t ]
}
check "5c. the drain gave back both lines of the basket (within 60 s)" \
    wait_for 60 open_basket_compensated
expect "5c. a retry of the basket is told it was rolled back (HS005)" \
    "$("$PSQL" -X -q -tA -v VERBOSITY=sqlstate \
        -c "SELECT hotstock.deduct_basket('$ORDER5B', ARRAY['$SKU5', '$SKU5B'], ARRAY[2, 5])" 2>&1)" \
    "ERROR:  HS005"
expect "5c. and takes nothing" \
    "$(q "SELECT hotstock.available('$SKU5') || ' ' || hotstock.available('$SKU5B')")" "10 10"

# The same for a buyer under a per-buyer limit: the compensation gives the
# buyer's count back too, and the buyer may take the units again.
SKU5D=open-d-$RUN_ID
ORDER5D=K$RUN_ID-open-buyer
q "SELECT hotstock.put_sku('$SKU5D', 10), hotstock.configure_sale('$SKU5D', per_buyer_limit => 3)" \
    >/dev/null || fail "5d. put_sku"
PGAPPNAME=hotstock-kill-open "$PSQL" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN" -c "SELECT hotstock.deduct('$SKU5D', 3, '$ORDER5D', 'kb')" \
    -c "SELECT pg_sleep(120)" >"$WORK/open-buyer.out" 2>&1 &
OPEN_PSQL=$!
VICTIM=
check "5d. a session sleeps inside its transaction after buyer kb took 3 (the limit)" \
    wait_for 30 open_victim
expect "5d. kb's count is 3 while the transaction is open" \
    "$(q "SELECT hotstock.buyer_units('$SKU5D', 'kb')")" 3
DRAIN_PID=$(drain_pid)
check "5d. SIGKILL its backend (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
wait "$OPEN_PSQL" 2>/dev/null
check "5d. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"
open_buyer_compensated() {
    [ "$(q "SELECT hotstock.available('$SKU5D') = 10 AND hotstock.buyer_units('$SKU5D', 'kb') = 0")" = t ]
}
check "5d. the drain gave back the 3 units and kb's count (within 60 s)" \
    wait_for 60 open_buyer_compensated
expect "5d. kb may take 3 again under a new order id" \
    "$(q "SELECT hotstock.deduct('$SKU5D', 3, '$ORDER5D-2', 'kb')")" t
expect "5d. and not a fourth" \
    "$("$PSQL" -X -q -tA -v VERBOSITY=sqlstate \
        -c "SELECT hotstock.deduct('$SKU5D', 1, '$ORDER5D-3', 'kb')" 2>&1)" "ERROR:  HS016"

# ---- quiescence ----
check "drain caught up" wait_drain 120
unsettled_none() { [ "$(q "SELECT unsettled_orders FROM hotstock.status")" = 0 ]; }
check "the drain settled every deduction's transaction" wait_for 60 unsettled_none
STATE=$(q "SELECT s.available || ' ' || s.sold FROM hotstock.stock s WHERE s.sku = '$SKU'")
read -r T_AVAILABLE T_SOLD <<<"$STATE"
say "after the kills: stock.available $T_AVAILABLE, stock.sold $T_SOLD, hotstock.available() $(q "SELECT hotstock.available('$SKU')")"
expect "never oversold: available + sold = stock, available >= 0" \
    "$(q "SELECT available + sold = $STOCK AND available >= 0 AND sold <= $STOCK FROM hotstock.stock WHERE sku = '$SKU'")" t
expect "hotstock.available() <= stock.available (units held back by a killed caller, never extra)" \
    "$(q "SELECT hotstock.available('$SKU') <= available FROM hotstock.stock WHERE sku = '$SKU'")" t
expect "each order once in the ledger" \
    "$(q "SELECT count(*) = count(DISTINCT order_id) FROM hotstock.ledger WHERE sku = '$SKU'")" t
expect "stock.sold = units of unrefunded ledger rows" \
    "$(q "SELECT (SELECT sold FROM hotstock.stock WHERE sku = '$SKU') =
                 (SELECT coalesce(sum(qty), 0) FROM hotstock.ledger WHERE sku = '$SKU' AND refunded_at IS NULL)")" t
expect "every order the app holds is deducted in the ledger" \
    "$(q "SELECT count(*) FROM hotstock_test.ok o WHERE o.sku = '$SKU' AND NOT EXISTS
              (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = o.order_id AND l.refunded_at IS NULL)")" 0
expect "every refund the app saw is in the ledger" \
    "$(q "SELECT count(*) FROM hotstock_test.refunded r WHERE r.sku = '$SKU' AND NOT EXISTS
              (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = r.order_id)")" 0
# A backend killed after its refund's transaction committed but before the
# commit callback returned the units leaves the order deducted: held back.
say "refunds the app saw committed whose units a kill held back (undersold): $(q "
    SELECT count(*) FROM hotstock_test.refunded r WHERE r.sku = '$SKU' AND EXISTS
        (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = r.order_id AND l.refunded_at IS NULL)")"
expect "drain_state.applied_lsn = last LSN" \
    "$(q "SELECT applied_lsn = last_lsn FROM hotstock.status")" t
say "orders deducted in the ledger that the app does not hold (held back by kills: undersold): $(q "
    SELECT count(*) FROM hotstock.ledger l WHERE l.sku = '$SKU' AND l.refunded_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM hotstock_test.ok o WHERE o.order_id = l.order_id)")"

# ---- the holds' SKU: once every hold ended ----
holds_ended() {
    [ "$(q "SELECT (SELECT reserved = 0 FROM hotstock.stock WHERE sku = '$SKUH')
               AND NOT EXISTS (SELECT 1 FROM hotstock.ledger WHERE sku = '$SKUH' AND hold = 'reserved')
               AND (SELECT applied_lsn = last_lsn FROM hotstock.status)")" = t ]
}
check "every hold ended (confirmed, cancelled or expired) and drained (within 60 s)" wait_for 60 holds_ended
say "holds: $(q "SELECT string_agg(coalesce(hold, 'deduction') || ' ' || n, ', ' ORDER BY hold)
                 FROM (SELECT hold, count(*) AS n FROM hotstock.ledger WHERE sku = '$SKUH' GROUP BY hold) h");
  acknowledged: $(q "SELECT count(*) FROM hotstock_test.held WHERE sku = '$SKUH'") reserves,
  $(q "SELECT count(*) FROM hotstock_test.ok WHERE sku = '$SKUH'") confirms,
  $(q "SELECT count(*) FROM hotstock_test.cancelled WHERE sku = '$SKUH'") cancels"
expect "holds: never oversold: available + sold = stock, nothing reserved" \
    "$(q "SELECT available + sold = $STOCK AND available >= 0 AND reserved = 0 FROM hotstock.stock WHERE sku = '$SKUH'")" t
expect "holds: stock.sold = units of the confirmed holds in the ledger" \
    "$(q "SELECT (SELECT sold FROM hotstock.stock WHERE sku = '$SKUH') =
                 (SELECT coalesce(sum(qty), 0) FROM hotstock.ledger WHERE sku = '$SKUH'
                  AND refunded_at IS NULL AND hold = 'confirmed')")" t
expect "holds: the ledger has only holds, each order once" \
    "$(q "SELECT count(*) = count(DISTINCT order_id) AND bool_and(hold IS NOT NULL)
          FROM hotstock.ledger WHERE sku = '$SKUH'")" t
expect "holds: every acknowledged reserve is in the ledger" \
    "$(q "SELECT count(*) FROM hotstock_test.held h WHERE h.sku = '$SKUH' AND NOT EXISTS
              (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = h.order_id)")" 0
expect "holds: every acknowledged confirm is a confirmed sale" \
    "$(q "SELECT count(*) FROM hotstock_test.ok o WHERE o.sku = '$SKUH' AND NOT EXISTS
              (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = o.order_id
               AND l.hold = 'confirmed' AND l.refunded_at IS NULL)")" 0
expect "holds: every acknowledged cancel is a cancelled hold" \
    "$(q "SELECT count(*) FROM hotstock_test.cancelled c WHERE c.sku = '$SKUH' AND NOT EXISTS
              (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = c.order_id AND l.hold = 'cancelled')")" 0
expect "holds: no order both confirmed and cancelled by the app" \
    "$(q "SELECT count(*) FROM hotstock_test.ok o JOIN hotstock_test.cancelled c USING (order_id)")" 0
expect "holds: some of each ended hold (confirmed, cancelled, expired)" \
    "$(q "SELECT count(DISTINCT hold) FROM hotstock.ledger WHERE sku = '$SKUH'")" 3

# ---- counters rebuilt by a daemon restart equal the drained table ----
check "daemon restarted (smart stop, start)" daemon_restart
check "drain caught up after the restart" wait_drain 60
expect "stock.available = hotstock.available() after the restart" \
    "$(q "SELECT available = hotstock.available('$SKU') FROM hotstock.stock WHERE sku = '$SKU'")" t
expect "holds: stock.available = hotstock.available() after the restart" \
    "$(q "SELECT available = hotstock.available('$SKUH') FROM hotstock.stock WHERE sku = '$SKUH'")" t
expect "holds: order_status agrees with the ledger for every hold" \
    "$(q "SELECT count(*) FROM hotstock.ledger WHERE sku = '$SKUH' AND
              hotstock.order_status(order_id) <> CASE WHEN refunded_at IS NOT NULL THEN 'refunded'
                                                     WHEN hold = 'confirmed' THEN 'deducted' ELSE hold END")" 0
expect "order_status agrees with the ledger for every order (index and evicted)" \
    "$(q "SELECT count(*) FROM hotstock.ledger WHERE sku = '$SKU' AND
              hotstock.order_status(order_id) <> CASE WHEN refunded_at IS NULL THEN 'deducted' ELSE 'refunded' END")" 0
finish
