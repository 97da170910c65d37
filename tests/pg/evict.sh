#!/usr/bin/env bash
# tests/pg/evict.sh — online eviction of the order index, seen from SQL.
#
# With order_retention = 0 the daemon evicts every order as soon as the
# drain applied it, while it runs.  Then, without a restart, every retry
# of an evicted order must answer exactly as for an indexed one, from the
# ledger: a retry with the same sku and qty is true and takes nothing;
# another qty or sku raises HS004; a refunded (or rolled-back) order
# raises HS005; order_status says deducted / refunded; a refund of an
# evicted order is true once (database first), rolled back it changes
# nothing.  New orders are not held up.  Holds: a live one is never
# evicted; confirmed, cancelled and expired ones are, and then reserve,
# deduct, confirm, cancel, refund and order_status answer from the ledger
# as the index did (a cancelled or expired hold gives nothing back twice,
# and cannot be taken anew).  After a daemon restart (recovery from the
# filter's durable watermark) the same answers hold, and at the end
# stock.available = hotstock.available(), the unrefunded ledger rows add
# up to stock.sold, and available + reserved + sold = the stock put in.
#
# Environment: as lib.bash.  Writes order_retention into the daemon's
# hotstockd.conf for the run and restores the file at the end.  Prints
# `N passed, N failed`; about 20 seconds.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

cluster_start || {
    fail "cluster start"
    finish
}
check "drain running" wait_for 30 drain_running
trap daemon_conf_restore EXIT
check "daemon restarted with order_retention = 0" daemon_conf_set order_retention 0

S=ev-$RUN_ID
O=E$RUN_ID
q "SELECT hotstock.put_sku('$S', 100)" >/dev/null || fail "put_sku"
q "SELECT hotstock.put_sku('$S-other', 100)" >/dev/null || fail "put_sku other"
expect_sql "deduct o1 (1)" "SELECT hotstock.deduct('$S', 1, '$O-1')"
expect_sql "deduct o2 (2)" "SELECT hotstock.deduct('$S', 2, '$O-2')"
expect_sql "deduct o3 (1)" "SELECT hotstock.deduct('$S', 1, '$O-3')"
expect_sql "refund o3" "SELECT hotstock.refund('$O-3')"
q "BEGIN; SELECT hotstock.deduct('$S', 1, '$O-4'); COMMIT" >/dev/null || fail "o4 in a block"
q "BEGIN; SELECT hotstock.deduct('$S', 1, '$O-5'); ROLLBACK" >/dev/null || fail "o5 rolled back"
expect "available 96" "$(q "SELECT hotstock.available('$S')")" 96

# holds: confirmed, cancelled, expired, confirmed and refunded, and a live one
H=$S-h
q "SELECT hotstock.put_sku('$H', 10)" >/dev/null || fail "put_sku holds"
expect_sql "reserve h1 (2), confirm it" \
    "SELECT hotstock.reserve('$H', 2, '$O-h1', '10 minutes') AND hotstock.confirm('$O-h1')"
expect_sql "reserve h2 (1), cancel it" \
    "SELECT hotstock.reserve('$H', 1, '$O-h2', '10 minutes') AND hotstock.cancel('$O-h2')"
expect_sql "reserve h3 (1) for 1 second" "SELECT hotstock.reserve('$H', 1, '$O-h3', '1 second')"
expect_sql "reserve h4 (1), live" "SELECT hotstock.reserve('$H', 1, '$O-h4', '10 minutes')"
expect_sql "reserve h5 (1), confirm and refund it" \
    "SELECT hotstock.reserve('$H', 1, '$O-h5', '10 minutes') AND hotstock.confirm('$O-h5')
            AND hotstock.refund('$O-h5')"
h3_expired() { [ "$(q "SELECT hotstock.order_status('$O-h3')")" = expired ]; }
check "h3 expires" wait_for 30 h3_expired
expect "holds: available 7" "$(q "SELECT hotstock.available('$H')")" 7

# evicted: the drain applied everything written so far, and the daemon's
# evicted LSN passed it
LAST=$(q "SELECT durable_lsn FROM hotstock.status")
evicted_past() { [ "$(q "SELECT evicted_lsn >= $1 FROM hotstock.status")" = t ]; }
check "drain caught up" wait_drain 30
check "evicted LSN reaches $LAST" wait_for 30 evicted_past "$LAST"
EVICTIONS=$(as_pg "$HOTSTOCKD" status -D "$HOTSTOCK_DIR" --json | sed -n 's/.*"evictions": \([0-9]*\).*/\1/p')
check "the daemon counts evictions ($EVICTIONS)" test "${EVICTIONS:-0}" -ge 4

retries() {
    local when=$1
    expect_sql "$when: retry o1 is true" "SELECT hotstock.deduct('$S', 1, '$O-1')"
    expect_sql "$when: retry o4 is true" "SELECT hotstock.deduct('$S', 1, '$O-4')"
    expect "$when: o1 with another qty: HS004" "$(sqlstate "SELECT hotstock.deduct('$S', 2, '$O-1')")" HS004
    expect "$when: o1 with another sku: HS004" "$(sqlstate "SELECT hotstock.deduct('$S-other', 1, '$O-1')")" HS004
    expect "$when: refunded o3: HS005" "$(sqlstate "SELECT hotstock.deduct('$S', 1, '$O-3')")" HS005
    expect "$when: rolled-back o5: HS005" "$(sqlstate "SELECT hotstock.deduct('$S', 1, '$O-5')")" HS005
    expect "$when: status o1" "$(q "SELECT hotstock.order_status('$O-1')")" deducted
    expect "$when: status o3" "$(q "SELECT hotstock.order_status('$O-3')")" refunded
    expect "$when: status o5" "$(q "SELECT hotstock.order_status('$O-5')")" refunded
    expect "$when: status of an unknown id" "$(q "SELECT hotstock.order_status('$O-none')")" unknown
}
retries "evicted"
expect "retries took nothing: available 96" "$(q "SELECT hotstock.available('$S')")" 96

hold_retries() {
    local when=$1
    expect "$when: status h1" "$(q "SELECT hotstock.order_status('$O-h1')")" deducted
    expect "$when: status h2" "$(q "SELECT hotstock.order_status('$O-h2')")" cancelled
    expect "$when: status h3" "$(q "SELECT hotstock.order_status('$O-h3')")" expired
    expect "$when: status h4 (live, indexed)" "$(q "SELECT hotstock.order_status('$O-h4')")" reserved
    expect_sql "$when: reserve retry of confirmed h1 is true" \
        "SELECT hotstock.reserve('$H', 2, '$O-h1', '10 minutes')"
    expect_sql "$when: deduct retry of confirmed h1 is true" "SELECT hotstock.deduct('$H', 2, '$O-h1')"
    expect "$when: h1 with another qty: HS004" \
        "$(sqlstate "SELECT hotstock.reserve('$H', 3, '$O-h1', '10 minutes')")" HS004
    expect "$when: reserve of deduction o1: HS004" \
        "$(sqlstate "SELECT hotstock.reserve('$S', 1, '$O-1', '10 minutes')")" HS004
    expect "$when: reserve cancelled h2: HS009" \
        "$(sqlstate "SELECT hotstock.reserve('$H', 1, '$O-h2', '10 minutes')")" HS009
    expect "$when: deduct expired h3: HS008" "$(sqlstate "SELECT hotstock.deduct('$H', 1, '$O-h3')")" HS008
    expect_sql "$when: confirm confirmed h1 is true" "SELECT hotstock.confirm('$O-h1')"
    expect "$when: confirm cancelled h2: HS009" "$(sqlstate "SELECT hotstock.confirm('$O-h2')")" HS009
    expect "$when: confirm expired h3: HS008" "$(sqlstate "SELECT hotstock.confirm('$O-h3')")" HS008
    expect "$when: retake of evicted h3: HS008 (no retake once evicted)" \
        "$(sqlstate "SELECT hotstock.confirm('$O-h3', retake => true)")" HS008
    expect "$when: confirm refunded h5: HS005" "$(sqlstate "SELECT hotstock.confirm('$O-h5')")" HS005
    expect "$when: confirm deduction o1: HS010" "$(sqlstate "SELECT hotstock.confirm('$O-1')")" HS010
    expect "$when: cancel cancelled h2: false" "$(q "SELECT hotstock.cancel('$O-h2')")" f
    expect "$when: refund cancelled h2: false" "$(q "SELECT hotstock.refund('$O-h2')")" f
    expect "$when: refund expired h3: false" "$(q "SELECT hotstock.refund('$O-h3')")" f
}
hold_retries "evicted"
expect "hold retries took nothing: available 7" "$(q "SELECT hotstock.available('$H')")" 7
expect_sql "refund evicted confirmed h1: true" "SELECT hotstock.refund('$O-h1')"
expect "h1's units back: available 9" "$(q "SELECT hotstock.available('$H')")" 9
expect "status h1 refunded" "$(q "SELECT hotstock.order_status('$O-h1')")" refunded

# refunds of evicted orders: database first, once; a rolled-back one is void
q "BEGIN; SELECT hotstock.refund('$O-4'); ROLLBACK" >/dev/null || fail "refund o4 rolled back"
expect_sql "o4 still deducted after a rolled-back refund" "SELECT hotstock.deduct('$S', 1, '$O-4')"
expect_sql "refund evicted o2: true" "SELECT hotstock.refund('$O-2')"
expect "refund o2 again: false" "$(q "SELECT hotstock.refund('$O-2')")" f
expect "o2 after its refund: HS005" "$(sqlstate "SELECT hotstock.deduct('$S', 2, '$O-2')")" HS005
expect "o2's units back: available 98" "$(q "SELECT hotstock.available('$S')")" 98
expect_sql "a new order o6" "SELECT hotstock.deduct('$S', 1, '$O-6')"
expect "available 97" "$(q "SELECT hotstock.available('$S')")" 97

# a restart: recovery starts from the filter's durable watermark
check "daemon restart" daemon_restart
FILTER_LSN=$(as_pg "$HOTSTOCKD" status -D "$HOTSTOCK_DIR" --json | sed -n 's/.*"filter_lsn": \([0-9]*\).*/\1/p')
check "the filter is durable past the first orders (filter_lsn $FILTER_LSN)" test "${FILTER_LSN:-0}" -gt 0
retries "after a restart"
expect "available 97 after the restart" "$(q "SELECT hotstock.available('$S')")" 97
expect "after a restart: status h1" "$(q "SELECT hotstock.order_status('$O-h1')")" refunded
expect "after a restart: status h4 (live)" "$(q "SELECT hotstock.order_status('$O-h4')")" reserved
expect "after a restart: confirm cancelled h2: HS009" "$(sqlstate "SELECT hotstock.confirm('$O-h2')")" HS009
expect "after a restart: confirm expired h3: HS008" "$(sqlstate "SELECT hotstock.confirm('$O-h3')")" HS008
expect "after a restart: refund expired h3: false" "$(q "SELECT hotstock.refund('$O-h3')")" f
expect "after a restart: holds' available 9" "$(q "SELECT hotstock.available('$H')")" 9

check "drain caught up at the end" wait_drain 30
expect "stock.available = hotstock.available()" \
    "$(q "SELECT available FROM hotstock.stock WHERE sku = '$S'")" 97
expect "unrefunded ledger qty = stock.sold = 3 (o1, o4, o6)" \
    "$(q "SELECT (SELECT sum(qty) FROM hotstock.ledger WHERE sku = '$S' AND refunded_at IS NULL)
              || '=' || (SELECT sold FROM hotstock.stock WHERE sku = '$S')")" "3=3"
expect "holds: available, reserved (h4), sold = 9, 1, 0: they add up to 10" \
    "$(q "SELECT available || ',' || reserved || ',' || sold FROM hotstock.stock WHERE sku = '$H'")" "9,1,0"
expect "holds: the ledger (h1 refunded, h2 cancelled, h3 expired, h4 reserved, h5 refunded)" \
    "$(q "SELECT string_agg(right(order_id, 2) || ':' || hold || ':' || (refunded_at IS NOT NULL),
                            ' ' ORDER BY order_id) FROM hotstock.ledger WHERE sku = '$H'")" \
    "h1:confirmed:true h2:cancelled:false h3:expired:false h4:reserved:false h5:confirmed:true"
expect_sql "cancel live h4" "SELECT hotstock.cancel('$O-h4')"
finish
