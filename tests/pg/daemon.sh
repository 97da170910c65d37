#!/usr/bin/env bash
# tests/pg/daemon.sh — the SQL side while hotstockd is down and after it
# restarted: HS001 errors, the drain draining from the queue files, and
# orders evicted from the daemon's index (answered from hotstock.ledger).
#
#  1. orders e1..e8 are deducted (e3 refunded), drained, and evicted from
#     the index online (order_retention = 0 for this suite);
#  2. records written while the drain is held back, then the daemon stops:
#     every call fails with HS001 and its hint, the status view says down,
#     and the drain applies the held-back records from the files;
#  3. the daemon starts again: the evicted orders stay evicted (the
#     filter's durable watermark).  Retries answer from the ledger (true, nothing
#     deducted; HS004 for another sku or qty; HS005 for a refunded order);
#     refunds go database-first (rollback keeps the order, commit returns
#     the units, as hotstock_app too, exactly one of 8 racing refunds wins);
#  4. a database-first refund whose transaction commits while the daemon
#     is down: the units come back later through the drain's retry; and a
#     refund of an order in the index likewise (its refund request);
#  5. after the drain: stock equals hotstock.available() and the ledger;
#  6. a deduct in a transaction block returns while the daemon is stopped,
#     and its COMMIT, which waits for the record, fails with HS001 once the
#     daemon is killed; the deduction is given back.
#
# Environment as in lib.bash.  Prints `N passed, N failed`; under a minute.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

WORK=$(mktemp -d /tmp/hotstock-daemon.XXXXXX)
declare -A SESSION_PID=()
cleanup() {
    local fd
    for fd in "${!SESSION_PID[@]}"; do session_close "$fd"; done
    rm -rf "$WORK"
    daemon_conf_restore
}
trap cleanup EXIT

# A psql session fed through a fifo on file descriptor FD, output to
# $WORK/session-FD.out: session_open FD; session_send FD SQL; session_close FD
# (ends its input: psql runs what it has and exits).
session_open() {
    mkfifo "$WORK/session-$1.in"
    "$PSQL" -X -q -tA <"$WORK/session-$1.in" >"$WORK/session-$1.out" 2>&1 &
    SESSION_PID[$1]=$!
    eval "exec $1>\"$WORK/session-$1.in\""
}
session_send() { echo "$2" >&"$1"; }
session_close() {
    eval "exec $1>&-"
    wait "${SESSION_PID[$1]}" 2>/dev/null
    unset "SESSION_PID[$1]"
}

cluster_start || {
    fail "cluster start"
    finish
}
check "drain running" wait_for 30 drain_running
check "daemon up" daemon_up
check "daemon restarted with order_retention = 0" daemon_conf_set order_retention 0
make_test_tables || fail "test tables"
q "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS hotstock_test.race (run text, client int, won boolean)" || fail "race table"

S=dmn-$RUN_ID
O=dmn-$RUN_ID
q "SELECT hotstock.put_sku('$S', 100), hotstock.put_sku('$S-x', 100)" >/dev/null
expect "1. deduct e1 (2 units) and e2..e8 (1 unit each)" \
    "$(q "SELECT hotstock.deduct('$S', 2, '$O-e1') AND bool_and(hotstock.deduct('$S', 1, '$O-e' || g))
          FROM generate_series(2, 8) g")" t
expect "1. refund e3" "$(q "SELECT hotstock.refund('$O-e3')")" t
check "1. drained" wait_drain 60
DRAINED=$(q "SELECT applied_lsn FROM hotstock.drain_state")
evicted_drained() { [ "$(q "SELECT evicted_lsn >= $DRAINED FROM hotstock.status")" = t ]; }
check "1. evicted online (evicted_lsn reaches $DRAINED)" wait_for 30 evicted_drained

# ---- 2. the daemon stops; the drain goes on from the files ----
session_open 7
session_send 7 "BEGIN; SELECT 'locked' FROM hotstock.drain_state FOR UPDATE;"
expect "2. deductions written while the drain is held back" \
    "$(q "SELECT bool_and(hotstock.deduct('$S-x', 1, '$O-x' || g)) FROM generate_series(1, 50) g")" t
LAST=$(q "SELECT last_lsn FROM hotstock.status")
check "2. hotstockd stopped" daemon_stop
expect "2. deduct while down: HS001" "$(sqlstate "SELECT hotstock.deduct('$S', 1, '$O-down')")" HS001
expect "2. refund while down: HS001" "$(sqlstate "SELECT hotstock.refund('$O-e1')")" HS001
expect "2. available while down: HS001" "$(sqlstate "SELECT hotstock.available('$S')")" HS001
expect "2. order_status while down: HS001" "$(sqlstate "SELECT hotstock.order_status('$O-e1')")" HS001
MSG=$("$PSQL" -X -q -tA -c "SELECT hotstock.deduct('$S', 1, '$O-down')" 2>&1)
check "2. the error says the daemon is not running" grep -q "hotstock daemon is not running" <<<"$MSG"
check "2. the hint names hotstockd start and hotstock.data_directory" \
    grep -q "HINT:  Start it with \"hotstockd start -D .*\", or check hotstock.data_directory." <<<"$MSG"
expect "2. status view: daemon down" "$(q "SELECT daemon_up FROM hotstock.status")" f
session_send 7 "ROLLBACK;"
session_close 7
applied_last() { [ "$(q "SELECT applied_lsn >= $LAST FROM hotstock.drain_state")" = t ]; }
check "2. the drain applied the held-back records from the files, daemon down" wait_for 30 applied_last
expect "2. those records are in the tables" \
    "$(q "SELECT available || ' ' || sold FROM hotstock.stock WHERE sku = '$S-x'")" "50 50"

# ---- 3. the daemon restarts: evicted orders stay evicted ----
check "3. hotstockd started" daemon_start
check "3. daemon up" wait_for 30 daemon_up
expect "3. the orders evicted in 1. stay evicted (evicted_lsn >= their LSNs)" \
    "$(q "SELECT evicted_lsn >= $DRAINED FROM hotstock.status")" t
AVAIL=$(q "SELECT hotstock.available('$S')")
expect "3. available after the restart (100 - 2 - 7 + 1)" "$AVAIL" 92
expect "3. order_status of evicted e1: deducted" "$(q "SELECT hotstock.order_status('$O-e1')")" deducted
expect "3. order_status of evicted e3: refunded" "$(q "SELECT hotstock.order_status('$O-e3')")" refunded
expect "3. retry of evicted e1: true" "$(q "SELECT hotstock.deduct('$S', 2, '$O-e1')")" t
expect "3. retry of evicted e1: nothing deducted" "$(q "SELECT hotstock.available('$S')")" 92
expect "3. evicted e1 with another qty: HS004" "$(sqlstate "SELECT hotstock.deduct('$S', 1, '$O-e1')")" HS004
expect "3. evicted e1 with another sku: HS004" "$(sqlstate "SELECT hotstock.deduct('$S-x', 2, '$O-e1')")" HS004
expect "3. deduct of evicted refunded e3: HS005" "$(sqlstate "SELECT hotstock.deduct('$S', 1, '$O-e3')")" HS005
expect "3. refund of evicted refunded e3: false" "$(q "SELECT hotstock.refund('$O-e3')")" f
expect "3. a new order still deducts" "$(q "SELECT hotstock.deduct('$S', 1, '$O-new')")" t
expect "3. refund of evicted e1 rolled back: true, then nothing changed" \
    "$(q "BEGIN; SELECT hotstock.refund('$O-e1'); ROLLBACK;
          SELECT hotstock.available('$S') = 91 AND hotstock.order_status('$O-e1') = 'deducted'
             AND (SELECT refunded_at IS NULL FROM hotstock.ledger WHERE order_id = '$O-e1')" | tr '\n' ' ')" "t t "
expect "3. refund of evicted e1: true" "$(q "SELECT hotstock.refund('$O-e1')")" t
expect "3. refund of evicted e1: its 2 units back once committed" "$(q "SELECT hotstock.available('$S')")" 93
expect "3. refund of e1 again: false" "$(q "SELECT hotstock.refund('$O-e1')")" f
expect "3. order_status of e1: refunded" "$(q "SELECT hotstock.order_status('$O-e1')")" refunded
expect "3. deduct of e1 now: HS005" "$(sqlstate "SELECT hotstock.deduct('$S', 2, '$O-e1')")" HS005
expect "3. refund of evicted e2 in a block: units back only at commit" \
    "$(q "BEGIN; SELECT hotstock.refund('$O-e2'); SELECT hotstock.available('$S'); COMMIT;
          SELECT hotstock.available('$S')" | tr '\n' ' ')" "t 93 94 "
expect "3. refund of evicted e4 as hotstock_app: true" \
    "$(q "SET ROLE hotstock_app; SELECT hotstock.refund('$O-e4'); RESET ROLE")" t
cat >"$WORK/race-refund.sql" <<EOF
INSERT INTO hotstock_test.race SELECT 'refund-$RUN_ID', :client_id, hotstock.refund('$O-e5');
EOF
"$PGBENCH" -n -c 8 -j 2 -t 1 -f "$WORK/race-refund.sql" >"$WORK/race.out" 2>&1 || fail "refund race: pgbench"
expect "3. 8 racing refunds of evicted e5: exactly one true" \
    "$(q "SELECT count(*) FILTER (WHERE won) || '/' || count(*) FROM hotstock_test.race WHERE run = 'refund-$RUN_ID'")" "1/8"
cat >"$WORK/race-deduct.sql" <<EOF
INSERT INTO hotstock_test.race SELECT 'deduct-$RUN_ID', :client_id, hotstock.deduct('$S', 1, '$O-e6');
EOF
"$PGBENCH" -n -c 8 -j 2 -t 1 -f "$WORK/race-deduct.sql" >"$WORK/race.out" 2>&1 || fail "deduct race: pgbench"
expect "3. 8 racing retries of evicted e6: all true" \
    "$(q "SELECT count(*) FILTER (WHERE won) FROM hotstock_test.race WHERE run = 'deduct-$RUN_ID'")" 8
expect "3. units: e1 (2), e2, e4, e5 back, new taken, nothing else" "$(q "SELECT hotstock.available('$S')")" 96

# ---- 4. a database-first refund committing while the daemon is down ----
session_open 8
session_send 8 "BEGIN; SELECT hotstock.refund('$O-e7');"
refund_sent() { grep -q '^t$' "$WORK/session-8.out"; }
check "4. refund of evicted e7 in an open block: true" wait_for 10 refund_sent
check "4. hotstockd stopped" daemon_stop
session_send 8 "COMMIT;"
session_close 8
check "4. commit warns that the drain will return the units" \
    grep -q "WARNING:  refund of order \"$O-e7\" is committed; its units will be returned by the drain" \
    "$WORK/session-8.out"
expect "4. the ledger says refunded, no REFUND record yet" \
    "$(q "SELECT refunded_at IS NOT NULL AND refund_lsn IS NULL FROM hotstock.ledger WHERE order_id = '$O-e7'")" t
check "4. hotstockd started" daemon_start
check "4. daemon up" wait_for 30 daemon_up
e7_returned() { [ "$(q "SELECT refund_lsn IS NOT NULL FROM hotstock.ledger WHERE order_id = '$O-e7'")" = t ]; }
check "4. the drain's retry returned e7's unit (within 60 s)" wait_for 60 e7_returned
expect "4. e7's unit is back" "$(q "SELECT hotstock.available('$S')")" 97
expect "4. refund of e7 again: false" "$(q "SELECT hotstock.refund('$O-e7')")" f

# ---- 4b. a refund of an order in the index committing while the daemon is down ----
# The refund is durable with the caller's commit (hotstock.refund_requests);
# the drain applies it, once, when the daemon is back.  The order must stay
# in the index until the refund claims it: a long retention from here on.
check "4b. daemon restarted with order_retention = 3600" daemon_conf_set order_retention 3600
expect "4b. deduct idx, an order the index holds" "$(q "SELECT hotstock.deduct('$S', 1, '$O-idx')")" t
session_open 9
session_send 9 "BEGIN; SELECT hotstock.refund('$O-idx');"
refund9_sent() { grep -q '^t$' "$WORK/session-9.out"; }
check "4b. refund of idx in an open block: true" wait_for 10 refund9_sent
check "4b. hotstockd stopped" daemon_stop
session_send 9 "COMMIT;"
session_close 9
check "4b. commit warns that the drain will return the units" \
    grep -q "WARNING:  refund of order \"$O-idx\" is committed; its units will be returned by the drain" \
    "$WORK/session-9.out"
expect "4b. the committed refund is recorded" \
    "$(q "SELECT count(*) FROM hotstock.refund_requests WHERE order_id = '$O-idx'")" 1
check "4b. hotstockd started" daemon_start
check "4b. daemon up" wait_for 30 daemon_up
idx_refunded() {
    [ "$(q "SELECT hotstock.order_status('$O-idx') = 'refunded' AND pending_refunds = 0 AND
               (SELECT refund_lsn IS NOT NULL FROM hotstock.ledger WHERE order_id = '$O-idx')
            FROM hotstock.status")" = t ]
}
check "4b. the drain applied it: refunded, its REFUND drained, no request left (within 60 s)" \
    wait_for 60 idx_refunded
expect "4b. its unit is back, once" "$(q "SELECT hotstock.available('$S')")" 97
expect "4b. refund of idx again: false" "$(q "SELECT hotstock.refund('$O-idx')")" f

# ---- 5. tables after the drain ----
check "5. drained" wait_drain 60
expect "5. stock = hotstock.available(), sold = unrefunded ledger units" \
    "$(q "SELECT s.available = hotstock.available('$S') AND s.sold =
                 (SELECT sum(qty) FROM hotstock.ledger WHERE sku = '$S' AND refunded_at IS NULL)
          FROM hotstock.stock s WHERE s.sku = '$S'")" t
expect "5. available + sold = 100" \
    "$(q "SELECT available + sold FROM hotstock.stock WHERE sku = '$S'")" 100
expect "5. every refunded ledger row has its REFUND record" \
    "$(q "SELECT count(*) FROM hotstock.ledger WHERE sku = '$S' AND refunded_at IS NOT NULL AND refund_lsn IS NULL")" 0
expect "5. ledger: e1, e2, e3, e4, e5, e7 refunded; e6, e8, new deducted" \
    "$(q "SELECT string_agg(right(order_id, 3) || '=' || (refunded_at IS NULL)::text, ' ' ORDER BY order_id)
          FROM hotstock.ledger WHERE sku = '$S'")" \
    "-e1=false -e2=false -e3=false -e4=false -e5=false -e6=true -e7=false -e8=true idx=false new=true"

# ---- 6. a take in a transaction block waits for its record at COMMIT ----
# The daemon is stopped (SIGSTOP): its spiller writes nothing.  In a block
# deduct returns true at once (its record is in the ring, durability is
# only asked for); then the daemon is SIGKILLed, and the COMMIT, which
# waits for that record, fails with HS001: the transaction aborts.  The
# restarted daemon salvages the record from the ring, and the drain
# compensates the deduction (its xid never committed): the units come back.
S6=$S-blk
q "SELECT hotstock.put_sku('$S6', 10)" >/dev/null || fail "6. put_sku"
DAEMON_PID=$(q "SELECT daemon_pid FROM hotstock.status")
check "6. SIGSTOP hotstockd (pid ${DAEMON_PID:-none})" kill_pid STOP "$DAEMON_PID"
session_open 6
session_send 6 "SET hotstock.synchronous = on;"
session_send 6 "BEGIN;"
session_send 6 "SELECT 'deducted', hotstock.deduct('$S6', 3, '$O-blk');"
deducted_at_once() { grep -q 'deducted|t' "$WORK/session-6.out"; }
check "6. in a block, deduct returns true while the daemon is stopped" wait_for 2 deducted_at_once
check "6. SIGKILL the stopped hotstockd" kill_pid KILL "$DAEMON_PID"
session_send 6 "\\set VERBOSITY sqlstate"
session_send 6 "COMMIT;"
session_close 6
expect "6. the COMMIT waited for the record and failed: HS001" \
    "$(grep -c '^ERROR:  HS001' "$WORK/session-6.out")" 1
check "6. hotstockd started" daemon_start
check "6. daemon up" wait_for 30 daemon_up
blk_compensated() {
    [ "$(q "SELECT hotstock.available('$S6') = 10 AND hotstock.order_status('$O-blk') = 'refunded'")" = t ]
}
check "6. the aborted deduction was given back (within 60 s)" wait_for 60 blk_compensated
expect "6. outside a block, deduct still returns once durable" \
    "$(q "SELECT hotstock.deduct('$S6', 1, '$O-blk2') AND (SELECT durable_lsn >= last_lsn FROM hotstock.status)")" t
finish
