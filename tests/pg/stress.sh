#!/usr/bin/env bash
# tests/pg/stress.sh — many buyers on one SKU through SQL: never oversold,
# exactly the stock sold, and the drained tables agree with the app's view.
#
# A: 64 pgbench clients make 200,000 deduction attempts with unique order
#    ids on one SKU with 10,000 units.  Each attempt is
#        INSERT INTO hotstock_test.ok ... WHERE hotstock.deduct(...)
#    so hotstock_test.ok holds exactly the orders the app was told "true"
#    (the row commits with the deduction, or both roll back).  Then:
#    exactly 10,000 true; after the drain stock.available = 0, stock.sold =
#    10,000, 10,000 ledger rows, and the ledger's orders are the ok orders.
# B: the same with refunds mixed in (autocommit refunds, refunds inside
#    transaction blocks, rolled-back deductions, retries that must answer
#    true): sold = deducted - refunded = rows in ok, available = stock -
#    sold, the ledger's unrefunded orders are exactly the ok orders.
#
# Environment: PGHOST/PGPORT/PGUSER/PGDATABASE, HOTSTOCK_DIR (see lib.bash);
# STRESS_CLIENTS, STRESS_ATTEMPTS, STRESS_REFUND_ATTEMPTS, STRESS_STOCK.
# Prints `N passed, N failed`; well under 3 minutes on two cores.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

CLIENTS=${STRESS_CLIENTS:-64}
ATTEMPTS=${STRESS_ATTEMPTS:-200000}
REFUND_ATTEMPTS=${STRESS_REFUND_ATTEMPTS:-100000}
STOCK=${STRESS_STOCK:-10000}
WORK=$(mktemp -d /tmp/hotstock-stress.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cluster_start || {
    fail "cluster start"
    finish
}
check "drain running" wait_for 30 drain_running
check "daemon up" daemon_up

make_test_tables || fail "test tables"


# run_pgbench NAME TOTAL SCRIPT...: TOTAL transactions over CLIENTS clients;
# checks that all were processed and none failed.
run_pgbench() {
    local name=$1 total=$2 per out
    shift 2
    per=$((total / CLIENTS))
    out=$WORK/$name.out
    "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -t "$per" "$@" >"$out" 2>&1
    local rc=$?
    grep -E "^(tps|number of|latency average)" "$out" | sed "s/^/  $name: /"
    expect "$name: pgbench exit status" "$rc" 0
    expect "$name: every attempt ran" \
        "$(sed -n 's/^number of transactions actually processed: \([0-9]*\)\/.*/\1/p' "$out")" \
        $((per * CLIENTS))
    expect "$name: no failed transaction" \
        "$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")" 0
    [ $rc -eq 0 ] || tail -n 5 "$out"
}

# ---- A: deductions only ----
SKU_A=stress-$RUN_ID-a
q "SELECT hotstock.put_sku('$SKU_A', $STOCK)" >/dev/null || fail "put_sku $SKU_A"
cat >"$WORK/a.sql" <<EOF
\set id random(1, 1000000000000000)
INSERT INTO hotstock_test.ok (order_id, sku)
SELECT 'A$RUN_ID-' || :client_id || '-' || :id, '$SKU_A'
WHERE hotstock.deduct('$SKU_A', 1, 'A$RUN_ID-' || :client_id || '-' || :id);
EOF
say "A: $CLIENTS clients, $ATTEMPTS attempts on $STOCK units"
run_pgbench A "$ATTEMPTS" -f "$WORK/a.sql"

expect "A: exactly $STOCK deductions answered true" \
    "$(q "SELECT count(*) FROM hotstock_test.ok WHERE sku = '$SKU_A'")" "$STOCK"
expect "A: hotstock.available() = 0" "$(q "SELECT hotstock.available('$SKU_A')")" 0
check "A: drain caught up" wait_drain 90
expect "A: stock.available = 0, stock.sold = $STOCK" \
    "$(q "SELECT available || ' ' || sold FROM hotstock.stock WHERE sku = '$SKU_A'")" "0 $STOCK"
expect "A: $STOCK ledger rows, each order once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT order_id) FROM hotstock.ledger WHERE sku = '$SKU_A'")" \
    "$STOCK $STOCK"
expect "A: ledger orders = orders answered true" \
    "$(q "SELECT count(*) FROM ((SELECT order_id FROM hotstock.ledger WHERE sku = '$SKU_A'
                                 EXCEPT SELECT order_id FROM hotstock_test.ok WHERE sku = '$SKU_A')
                                UNION ALL
                                (SELECT order_id FROM hotstock_test.ok WHERE sku = '$SKU_A'
                                 EXCEPT SELECT order_id FROM hotstock.ledger WHERE sku = '$SKU_A')) d")" 0
expect "A: order_status says deducted for every true" \
    "$(q "SELECT count(*) FROM hotstock_test.ok
          WHERE sku = '$SKU_A' AND hotstock.order_status(order_id) <> 'deducted'")" 0

# ---- B: refunds mixed in ----
SKU_B=stress-$RUN_ID-b
q "SELECT hotstock.put_sku('$SKU_B', $STOCK)" >/dev/null || fail "put_sku $SKU_B"
write_load_scripts "$WORK" "$SKU_B" "B$RUN_ID"
say "B: $CLIENTS clients, $REFUND_ATTEMPTS attempts with refunds and rollbacks mixed in"
run_pgbench B "$REFUND_ATTEMPTS" -f "$WORK/deduct.sql@6" -f "$WORK/refund.sql@2" \
    -f "$WORK/refund_block.sql@1" -f "$WORK/rollback.sql@1"

check "B: drain caught up" wait_drain 90
read -r OK_B REFUNDED_B <<<"$(q "SELECT (SELECT count(*) FROM hotstock_test.ok WHERE sku = '$SKU_B'),
                                        (SELECT count(*) FROM hotstock_test.refunded WHERE sku = '$SKU_B')" | tr '|' ' ')"
say "B: $OK_B orders hold units, $REFUNDED_B refunded"
check "B: refunds happened" [ "${REFUNDED_B:-0}" -gt 0 ]
expect "B: never oversold (sold <= stock)" \
    "$(q "SELECT sold <= $STOCK AND available >= 0 FROM hotstock.stock WHERE sku = '$SKU_B'")" t
expect "B: stock.sold = deducted - refunded = orders holding units" \
    "$(q "SELECT sold FROM hotstock.stock WHERE sku = '$SKU_B'")" "$OK_B"
expect "B: stock.available = stock - sold" \
    "$(q "SELECT available FROM hotstock.stock WHERE sku = '$SKU_B'")" $((STOCK - OK_B))
expect "B: stock.available = hotstock.available()" \
    "$(q "SELECT available = hotstock.available('$SKU_B') FROM hotstock.stock WHERE sku = '$SKU_B'")" t
expect "B: ledger sold = stock.sold (deducted - refunded rows)" \
    "$(q "SELECT count(*) FILTER (WHERE refunded_at IS NULL) FROM hotstock.ledger WHERE sku = '$SKU_B'")" "$OK_B"
expect "B: each order once in the ledger" \
    "$(q "SELECT count(*) = count(DISTINCT order_id) FROM hotstock.ledger WHERE sku = '$SKU_B'")" t
expect "B: unrefunded ledger orders = orders holding units" \
    "$(q "SELECT count(*) FROM ((SELECT order_id FROM hotstock.ledger WHERE sku = '$SKU_B' AND refunded_at IS NULL
                                 EXCEPT SELECT order_id FROM hotstock_test.ok WHERE sku = '$SKU_B')
                                UNION ALL
                                (SELECT order_id FROM hotstock_test.ok WHERE sku = '$SKU_B'
                                 EXCEPT SELECT order_id FROM hotstock.ledger WHERE sku = '$SKU_B' AND refunded_at IS NULL)) d")" 0
expect "B: every refund is in the ledger with its REFUND record" \
    "$(q "SELECT count(*) FROM hotstock_test.refunded r
          WHERE r.sku = '$SKU_B' AND NOT EXISTS (SELECT 1 FROM hotstock.ledger l
              WHERE l.order_id = r.order_id AND l.refunded_at IS NOT NULL AND l.refund_lsn IS NOT NULL)")" 0
expect "B: order_status agrees for every order holding units" \
    "$(q "SELECT count(*) FROM hotstock_test.ok
          WHERE sku = '$SKU_B' AND hotstock.order_status(order_id) <> 'deducted'")" 0

q "SELECT 'status: ' || daemon_up || ', lag ' || drain_lag_records || ' records, drain ' ||
          round(drain_rate) || ' records/s (last full batch), ring fill ' || round(ring_fill::numeric, 3) ||
          ', order index fill ' || round(order_index_fill::numeric, 3) FROM hotstock.status" | sed "s/^/$ME: /"
finish
