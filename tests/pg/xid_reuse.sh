#!/usr/bin/env bash
# tests/pg/xid_reuse.sh — a deduction whose transaction died in a crash is
# given back even when the crash hands its xid out again and the new
# transaction with that xid commits (pg_ext/starts.c).
#
#   1. The drain is held: a prepared transaction locks hotstock.drain_state's
#      row, so every batch waits, also across the crash reset.
#   2. A session deducts 3 units in a transaction block and sleeps; nothing
#      it did reaches the WAL (its xid is only in the queue record).  An
#      autocommit deduct makes that record durable.
#   3. Its backend is SIGKILLed: PostgreSQL resets, and recovery restarts
#      the xid counter at or below the dead transaction's xid.
#   4. Autocommit transactions take xids until one commits with the dead
#      transaction's xid (checked: that the xid was handed out again).
#   5. The drain is let go: it must give the 3 units back and mark the
#      order refunded (the commit log alone now says "committed"), and a
#      retry of the order id is told HS005.
#   6. A damaged $PGDATA/hotstock_starts stops PostgreSQL from starting,
#      with a message naming the file and the line; restored, it starts.
#
# Environment: as every tests/pg suite (lib.bash).  Prints `N passed, N
# failed`; about half a minute.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

WORK=$(mktemp -d /tmp/hotstock-xid.XXXXXX)
GID=hotstock-xid-$RUN_ID
cleanup() {
    "$PSQL" -X -q -c "ROLLBACK PREPARED '$GID'" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

cluster_start || {
    fail "cluster start"
    finish
}
check "drain running" wait_for 30 drain_running

SKU=xid-$RUN_ID
ORDER=X$RUN_ID-dead
q "SELECT hotstock.put_sku('$SKU', 10)" >/dev/null || fail "put_sku"
check "drain caught up" wait_drain 60

# ---- 1. hold the drain ----
hold_drain() {
    "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -c "BEGIN" \
        -c "SELECT 1 FROM hotstock.drain_state FOR UPDATE" -c "PREPARE TRANSACTION '$GID'" >/dev/null
}
check "1. a prepared transaction locks drain_state's row" hold_drain

# ---- 2. the deduction of a transaction that will die ----
PGAPPNAME=hotstock-xid-victim "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 \
    -c "BEGIN" -c "SELECT hotstock.deduct('$SKU', 3, '$ORDER')" \
    -c "SELECT 'xid=' || pg_current_xact_id()" -c "SELECT pg_sleep(120)" \
    >"$WORK/victim.out" 2>&1 &
VICTIM_PSQL=$!
victim() {
    VICTIM=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'hotstock-xid-victim'
                AND query LIKE '%pg_sleep%' AND state = 'active'" 2>/dev/null)
    [ -n "$VICTIM" ]
}
VICTIM=
check "2. a session sleeps inside its transaction after deducting 3 units" wait_for 30 victim
XID=$(sed -n 's/^xid=//p' "$WORK/victim.out")
say "the victim's xid: ${XID:-none}"
expect "2. its units are out" "$(q "SELECT hotstock.available('$SKU')")" 7
expect "2. an autocommit deduct returns, durable (and so is the victim's record, before it)" \
    "$(q "SELECT hotstock.deduct('$SKU', 1, 'X$RUN_ID-alive')")" t

# ---- 3. the crash ----
DRAIN_PID=$(drain_pid)
check "3. SIGKILL its backend (pid ${VICTIM:-none})" kill_pid KILL "$VICTIM"
wait "$VICTIM_PSQL" 2>/dev/null
check "3. serving again after the reset" wait_for 60 serving_after_reset "$DRAIN_PID"
expect "3. the drain waits for the prepared transaction (nothing drained yet)" \
    "$(q "SELECT count(*) FROM hotstock.ledger WHERE order_id = '$ORDER'")" 0

# ---- 4. the xid handed out again, committed ----
FIRST=$(q "SELECT pg_current_xact_id()")
GOT=$FIRST
case $XID in '' | *[!0-9]*) XID=0 ;; esac
while [ "${GOT:-0}" -lt "$XID" ]; do
    GOT=$(q "SELECT pg_current_xact_id()") || break
done
say "after the reset the xid counter started at $FIRST"
check "4. the reset handed out the dead transaction's xid again ($FIRST <= $XID)" \
    test "$XID" -gt 0 -a "${FIRST:-0}" -le "$XID"
expect "4. a transaction with that xid committed" \
    "$(q "SELECT pg_xact_status('$XID'::xid8)")" committed

# ---- 5. the drain gives the units back ----
check "5. the prepared transaction rolled back" q "ROLLBACK PREPARED '$GID'"
given_back() {
    [ "$(q "SELECT hotstock.available('$SKU') = 9 AND hotstock.order_status('$ORDER') = 'refunded'
               AND (SELECT count(*) = 1 AND bool_and(refunded_at IS NOT NULL AND xid IS NULL)
                    FROM hotstock.ledger WHERE order_id = '$ORDER')")" = t ]
}
check "5. the drain gave the 3 units back and marked the order refunded (within 60 s)" \
    wait_for 60 given_back
check "5. drain caught up" wait_drain 60
expect "5. stock: 9 available, 1 sold" \
    "$(q "SELECT available || ' ' || sold FROM hotstock.stock WHERE sku = '$SKU'")" "9 1"
expect "5. a retry of the order id is told it was rolled back (HS005)" \
    "$("$PSQL" -X -q -tA -v VERBOSITY=sqlstate -c "SELECT hotstock.deduct('$SKU', 3, '$ORDER')" 2>&1)" \
    "ERROR:  HS005"

# ---- 6. a damaged starts file ----
DATA=$(q "SHOW data_directory")
STARTS=$DATA/hotstock_starts
check "6. $STARTS numbers the starts (last line: '$(tail -n 1 "$STARTS" 2>/dev/null)')" \
    grep -Eq '^[0-9]+ [0-9]+$' "$STARTS"
cp -p "$STARTS" "$WORK/starts"
check "6. PostgreSQL stopped" as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop
printf '1 2\nnot a start\n' >"$STARTS"
as_pg_t 30 "$PGBIN/postgres" -D "$DATA" >"$WORK/start.out" 2>&1
RC=$?
check "6. PostgreSQL refuses to start (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check "6. naming the file and the line" \
    grep -q "line 2 of \"$STARTS\"" "$WORK/start.out"
sed "s/^/    /" "$WORK/start.out" | head -n 3
cp -p "$WORK/starts" "$STARTS"
check "6. restored, the cluster starts again" cluster_start
check "6. serving" wait_for 60 daemon_up
finish
