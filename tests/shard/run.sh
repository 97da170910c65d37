#!/usr/bin/env bash
# tests/shard/run.sh — a sale across two shards through the PL/Proxy router,
# with one shard's daemon SIGKILLed mid-sale: nothing oversold, every
# acknowledged order on its shard's ledger once, refunds routed to the
# shard that knows the order and to no other.
#
# Starts its own sharded system (scripts/sharded.sh, SHARDS=2) in a folder
# of its own (default /tmp/hotstock-<hash>/shard-test-<port>) on two ports of
# 55490..55499 that nothing listens on and no other run holds (lock files
# /tmp/hs-shard-<port>.lock; SHARD_TEST_PORT names the first of two), and
# stops it on every exit path (EXIT/INT/TERM trap); the folder is removed
# after a run that passed.
#
#   1. routing: SKUs put through the router live on the shard PL/Proxy
#      names (hashtext of the SKU's group, masked), on that shard only;
#   2. a sale of SHARD_SKUS SKUs (16) of SHARD_STOCK units (300) by
#      SHARD_CLIENTS pgbench clients (6) on the router for SHARD_SECONDS
#      (20); each purchase is a router function that records the order,
#      when the router answered true, in a router table in the same
#      transaction, and records an error instead of aborting the client;
#   3. mid-sale, shard 1's hotstockd (its pid read from shard 1's
#      hotstock.status and checked against its data directory) is
#      SIGKILLed; its deductions fail while it is down; it is started again
#      with scripts/cluster.sh start and shard 1 sells again;
#   4. with the load over and both drains caught up, per shard: every
#      acknowledged order of its SKUs in its ledger exactly once and in no
#      other shard's; per SKU units sold (unrefunded ledger rows) <= stock,
#      = stock.sold, available + reserved + sold = stock, and the daemon's
#      available = the table's: 0 oversold;
#   5. refunds through the router (RUN ON ALL): an order of each shard is
#      refunded once (true, then false), its unit is back on its shard,
#      its ledger row refunded, and the other shard's queue (last_lsn),
#      refund requests and ledger are untouched; an unknown order id is
#      refunded by no shard (false) and writes nothing anywhere;
#   6. order_status, reserve/confirm/cancel and baskets through the router:
#      a basket of one group is taken whole on its shard, a basket of two
#      groups on different shards raises HSR01 and takes nothing.
#
# Prints `N passed, N failed`; about a minute.
set -uo pipefail
. "$(dirname "$0")/../pg/lib.bash"
# shellcheck disable=SC2034  # say() names the suite by it
ME=shard

SKUS=${SHARD_SKUS:-16}
STOCK=${SHARD_STOCK:-300}
CLIENTS=${SHARD_CLIENTS:-6}
SECONDS_LOAD=${SHARD_SECONDS:-20}
DIR_BASE=${SHARD_TEST_DIR:-$(short_run_dir shard-test)}
RUN=r$(date +%s)$$

# ---- two free ports, held for this run ----
if ! claim_port shard "${SHARD_TEST_PORT:-55490}" "${SHARD_TEST_PORT:-55498}" 2; then
    fail "two free ports in 55490..55499 (set SHARD_TEST_PORT)"
    finish
fi
PORT0=$CLAIMED_PORT
# the folder of the ports this run holds: no other run uses it now
DIR=$DIR_BASE-$PORT0

sharded() {
    SHARDS=2 SHARDED_RUN_DIR=$DIR SHARD_PORT=$PORT0 bash "$REPO/scripts/sharded.sh" "$@"
}
# router SQL / shard I SQL: one value per line, stop on the first error.
router() {
    PGHOST=$DIR/s0 PGPORT=$PORT0 PGUSER=$DBUSER PGDATABASE=router \
        "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -c "$1"
}
shard() {
    PGHOST=$DIR/s$1 PGPORT=$((PORT0 + $1)) PGUSER=$DBUSER PGDATABASE=hotstock \
        "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -c "$2"
}
router_sqlstate() {
    local out
    out=$(PGHOST=$DIR/s0 PGPORT=$PORT0 PGUSER=$DBUSER PGDATABASE=router \
        "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -c "$1" 2>&1) && {
        echo ok
        return
    }
    sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\).*/\1/p' <<<"$out" | head -n 1
}

LOAD_PID=
STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$LOAD_PID" ] && ! pid_gone "$LOAD_PID"; then
        kill_pid TERM "$LOAD_PID" 2>/dev/null
        wait "$LOAD_PID" 2>/dev/null
    fi
    if [ $STARTED -eq 1 ]; then
        sharded stop >"$DIR.stop.log" 2>&1 || {
            echo "shard: stopping the shards failed:"
            cat "$DIR.stop.log"
        }
        rm -f "$DIR.stop.log"
    fi
    if [ "$rc" -eq 0 ] && [ -z "${SHARD_KEEP:-}" ]; then
        rm -rf "$DIR"
    else
        echo "shard: logs kept in $DIR (s0/pg.log, s1/pg.log, load.out)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- start ----
# A folder left by an earlier run: stop what runs there, start afresh.
if [ -d "$DIR" ]; then
    sharded stop >/dev/null 2>&1
    rm -rf "$DIR"
fi
mkdir -p "$(dirname "$DIR")"
STARTED=1
if ! sharded start >"$DIR.start.log" 2>&1; then
    cat "$DIR.start.log"
    fail "start 2 shards and the router (ports $PORT0, $((PORT0 + 1)))"
    finish
fi
mv "$DIR.start.log" "$DIR/start.log"
pass "start 2 shards and the router (ports $PORT0, $((PORT0 + 1)), folder $DIR)"

drained() { [ "$(shard "$1" "SELECT applied_lsn >= last_lsn FROM hotstock.status" 2>/dev/null)" = t ]; }
daemon_is() { [ "$(shard "$1" "SELECT daemon_up FROM hotstock.status" 2>/dev/null)" = "$2" ]; }

# ---- 1. routing ----
SKU_LIST=$(for k in $(seq 0 $((SKUS - 1))); do printf "'sku%s-%s'," "$k" "$RUN"; done)
SKU_LIST=${SKU_LIST%,}
router "SELECT hotstock.put_sku(s, $STOCK) FROM unnest(ARRAY[$SKU_LIST]) AS s" >/dev/null ||
    fail "put_sku through the router"
ON0=$(router "SELECT count(*) FROM unnest(ARRAY[$SKU_LIST]) AS s WHERE hotstock_router.sku_partition(s) = 0")
ON1=$((SKUS - ON0))
check "SKUs on both shards ($ON0 and $ON1)" test "$ON0" -gt 0 -a "$ON1" -gt 0
for i in 0 1; do
    wait_for 30 drained $i || fail "shard $i drained put_sku"
    want=$(router "SELECT string_agg(s, ',' ORDER BY s) FROM unnest(ARRAY[$SKU_LIST]) AS s
                   WHERE hotstock_router.sku_partition(s) = $i")
    got=$(shard $i "SELECT string_agg(sku, ',' ORDER BY sku) FROM hotstock.stock WHERE sku LIKE '%-$RUN'")
    expect "shard $i holds exactly the SKUs PL/Proxy routes to it" "$got" "$want"
done

# ---- 2. the sale ----
router "SET client_min_messages = warning;
    CREATE SCHEMA shard_test;
    CREATE TABLE shard_test.ok (order_id text PRIMARY KEY, sku text NOT NULL,
                                at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE shard_test.errors (at timestamptz NOT NULL DEFAULT clock_timestamp(),
                                    sku text, sqlstate text, message text);
    CREATE FUNCTION shard_test.buy(p_sku text, p_order text) RETURNS integer
    LANGUAGE plpgsql AS \$\$
    BEGIN
        IF hotstock.deduct(p_sku, 1, p_order) THEN
            INSERT INTO shard_test.ok (order_id, sku) VALUES (p_order, p_sku);
            RETURN 1;
        END IF;
        RETURN 0;
    EXCEPTION WHEN others THEN
        INSERT INTO shard_test.errors (sku, sqlstate, message) VALUES (p_sku, SQLSTATE, SQLERRM);
        RETURN -1;
    END
    \$\$;" || fail "the router's test tables"
cat >"$DIR/buy.sql" <<EOF
\set k random(0, $((SKUS - 1)))
SELECT shard_test.buy('sku' || :k || '-$RUN', 'o$RUN-' || :client_id || '-' || :i);
\set i :i + 1
EOF
PGHOST=$DIR/s0 PGPORT=$PORT0 PGUSER=$DBUSER PGDATABASE=router \
    "$PGBENCH" -n -c "$CLIENTS" -j 2 -T "$SECONDS_LOAD" -D i=0 -f "$DIR/buy.sql" >"$DIR/load.out" 2>&1 9>&- &
LOAD_PID=$!

acked_on() { # acked_on I [SINCE]: acknowledged orders of shard I's SKUs
    router "SELECT count(*) FROM shard_test.ok WHERE hotstock_router.sku_partition(sku) = $1
            ${2:+AND at > '$2'}"
}
acked_at_least() { [ "$(acked_on "$1" "${3:-}")" -ge "$2" ]; }
errors_since() { [ "$(router "SELECT count(*) FROM shard_test.errors WHERE at > '$1'")" -gt 0 ]; }

# ---- 3. SIGKILL shard 1's daemon mid-sale ----
check "the sale is under way on shard 1 (40 orders)" wait_for 30 acked_at_least 1 40
HSDIR1=$DIR/s1/hotstock
DPID=$(shard 1 "SELECT daemon_pid FROM hotstock.status")
# the pid must be shard 1's daemon: hotstockd with shard 1's data directory
if [ -n "$DPID" ] && tr '\0' ' ' <"/proc/$DPID/cmdline" 2>/dev/null | grep -q "hotstockd.* -D $HSDIR1\( \|$\)"; then
    pass "shard 1's hotstockd is pid $DPID ($HSDIR1)"
else
    fail "shard 1's hotstockd pid '${DPID:-}' is not a hotstockd of $HSDIR1"
    DPID=
fi
KILLED_AT=$(router "SELECT clock_timestamp()")
check "SIGKILL shard 1's hotstockd (pid ${DPID:-none}) mid-sale" kill_pid KILL "$DPID"
check "shard 1 reports its daemon down" wait_for 30 daemon_is 1 f
check "deductions through the router fail while it is down (counted, clients go on)" \
    wait_for 15 errors_since "$KILLED_AT"
check "load still running (the kill came before the end of the sale)" kill -0 "$LOAD_PID"
if RUN_DIR=$DIR/s1 HOTSTOCK_PORT=$((PORT0 + 1)) bash "$REPO/scripts/cluster.sh" start >"$DIR/restart.log" 2>&1; then
    pass "shard 1's daemon started again (cluster.sh start)"
else
    cat "$DIR/restart.log"
    fail "shard 1's daemon started again (cluster.sh start)"
fi
RESTARTED_AT=$(router "SELECT clock_timestamp()")
check "shard 1 reports its daemon up" wait_for 30 daemon_is 1 t
# sold out already?  Then no order can come; else one must.
if [ "$(shard 1 "SELECT sum(hotstock.available(sku)) FROM hotstock.stock WHERE sku LIKE '%-$RUN'")" -gt 0 ]; then
    check "shard 1 sells again after the restart" wait_for 30 acked_at_least 1 1 "$RESTARTED_AT"
else
    pass "shard 1 sold out before the restart (nothing left to sell after it)"
fi

wait "$LOAD_PID"
rc=$?
LOAD_PID=
expect "pgbench on the router: no client aborted (exit status)" "$rc" 0
TX=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$DIR/load.out")
say "load: ${TX:-?} purchase attempts, $(router "SELECT count(*) FROM shard_test.ok") acknowledged, $(router "SELECT count(*) FROM shard_test.errors") errors (shard 1's daemon down)"

# ---- 4. every acknowledged order on its shard once; 0 oversold ----
for i in 0 1; do check "shard $i drain caught up" wait_for 60 drained $i; done
router "SELECT order_id, sku FROM shard_test.ok" >"$DIR/acked.txt"
# shard_check I SQL: SQL run on shard I after acked(order_id, sku) is
# loaded with every acknowledged order.
shard_check() {
    PGHOST=$DIR/s$1 PGPORT=$((PORT0 + $1)) PGUSER=$DBUSER PGDATABASE=hotstock \
        "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -F '|' <<EOF
CREATE TEMP TABLE acked (order_id text, sku text);
\copy acked FROM '$DIR/acked.txt' WITH (DELIMITER '|')
$2
EOF
}
for i in 0 1; do
    expect "shard $i: every acknowledged order of its SKUs is in its ledger" \
        "$(shard_check $i "SELECT count(*) FROM acked a JOIN hotstock.stock s ON s.sku = a.sku
                            WHERE NOT EXISTS (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = a.order_id AND l.sku = a.sku)")" 0
    expect "shard $i: no order twice in its ledger" \
        "$(shard "$i" "SELECT count(*) FROM (SELECT order_id FROM hotstock.ledger GROUP BY order_id HAVING count(*) > 1) d")" 0
    expect "shard $i: no acknowledged order of the other shard's SKUs in its ledger" \
        "$(shard_check $i "SELECT count(*) FROM acked a JOIN hotstock.ledger l ON l.order_id = a.order_id
                            WHERE NOT EXISTS (SELECT 1 FROM hotstock.stock s WHERE s.sku = a.sku)")" 0
    expect "shard $i: oversold units (ledger units over stock, per SKU)" \
        "$(shard "$i" "SELECT coalesce(sum(greatest(units - $STOCK, 0)), 0) FROM (
                         SELECT s.sku, coalesce(sum(l.qty) FILTER (WHERE l.refunded_at IS NULL
                                AND (l.hold IS NULL OR l.hold = 'confirmed')), 0) AS units
                         FROM hotstock.stock s LEFT JOIN hotstock.ledger l ON l.sku = s.sku
                         WHERE s.sku LIKE '%-$RUN' GROUP BY s.sku) u")" 0
    expect "shard $i: per SKU stock.sold = ledger units, available + reserved + sold = stock" \
        "$(shard "$i" "SELECT count(*) FROM hotstock.stock s WHERE s.sku LIKE '%-$RUN' AND (
                         s.available + s.reserved + s.sold <> $STOCK OR s.sold <> (
                         SELECT coalesce(sum(l.qty), 0) FROM hotstock.ledger l WHERE l.sku = s.sku
                         AND l.refunded_at IS NULL AND (l.hold IS NULL OR l.hold = 'confirmed')))")" 0
    expect "shard $i: the daemon's available = the table's, per SKU" \
        "$(shard "$i" "SELECT count(*) FROM hotstock.stock WHERE sku LIKE '%-$RUN'
                       AND hotstock.available(sku) <> available")" 0
    sold=$(shard "$i" "SELECT sum(sold) FROM hotstock.stock WHERE sku LIKE '%-$RUN'")
    acked=$(shard_check $i "SELECT count(*) FROM acked a JOIN hotstock.stock s ON s.sku = a.sku")
    check "shard $i: acknowledged ($acked) <= sold ($sold) <= stock ($(($(shard "$i" "SELECT count(*) FROM hotstock.stock WHERE sku LIKE '%-$RUN'") * STOCK)))" \
        test "$acked" -le "$sold" -a "$sold" -le "$(($(shard "$i" "SELECT count(*) FROM hotstock.stock WHERE sku LIKE '%-$RUN'") * STOCK))"
done

# ---- 5. refunds through the router ----
for i in 0 1; do
    o=$((1 - i))
    line=$(router "SELECT order_id || ' ' || sku FROM shard_test.ok
                   WHERE hotstock_router.sku_partition(sku) = $i ORDER BY at LIMIT 1")
    read -r ORDER SKU <<<"$line"
    if [ -z "${ORDER:-}" ]; then
        fail "an acknowledged order on shard $i to refund"
        continue
    fi
    before=$(shard $i "SELECT hotstock.available('$SKU')")
    other_lsn=$(shard $o "SELECT last_lsn FROM hotstock.status")
    expect "refund of $ORDER (shard $i) through the router" "$(router "SELECT hotstock.refund('$ORDER')")" t
    expect "its second refund answers false" "$(router "SELECT hotstock.refund('$ORDER')")" f
    expect "order_status through the router says refunded" "$(router "SELECT hotstock.order_status('$ORDER')")" refunded
    expect "shard $i: its unit is back" "$(shard $i "SELECT hotstock.available('$SKU')")" $((before + 1))
    check "shard $i drain caught up" wait_for 30 drained $i
    expect "shard $i: its ledger row is refunded" \
        "$(shard $i "SELECT count(*) FROM hotstock.ledger WHERE order_id = '$ORDER' AND refunded_at IS NOT NULL")" 1
    expect "shard $o: no record written (last_lsn)" "$(shard $o "SELECT last_lsn FROM hotstock.status")" "$other_lsn"
    expect "shard $o: no refund request, no ledger row of it" \
        "$(shard $o "SELECT (SELECT count(*) FROM hotstock.refund_requests WHERE order_id = '$ORDER')
                          + (SELECT count(*) FROM hotstock.ledger WHERE order_id = '$ORDER')")" 0
done
lsns=$(shard 0 "SELECT last_lsn FROM hotstock.status")/$(shard 1 "SELECT last_lsn FROM hotstock.status")
expect "refund of an unknown order through the router" "$(router "SELECT hotstock.refund('nobody-$RUN')")" f
expect "it wrote nothing on either shard (last_lsn)" \
    "$(shard 0 "SELECT last_lsn FROM hotstock.status")/$(shard 1 "SELECT last_lsn FROM hotstock.status")" "$lsns"
expect "order_status of an unknown order through the router" \
    "$(router "SELECT hotstock.order_status('nobody-$RUN')")" unknown

# ---- 6. holds and baskets through the router ----
router "SELECT hotstock.put_sku('g$RUN-' || g || '/' || item, 10)
        FROM generate_series(0, 7) AS g, unnest(ARRAY['a', 'b']) AS item" >/dev/null ||
    fail "put_sku of the basket groups"
G0=$(router "SELECT min(g) FROM generate_series(0, 7) AS g WHERE hotstock_router.sku_partition('g$RUN-' || g || '/a') = 0")
G1=$(router "SELECT min(g) FROM generate_series(0, 7) AS g WHERE hotstock_router.sku_partition('g$RUN-' || g || '/a') = 1")
if [ -n "$G0" ] && [ -n "$G1" ]; then
    expect "a basket of one group through the router" \
        "$(router "SELECT hotstock.deduct_basket('b1-$RUN', ARRAY['g$RUN-$G1/a', 'g$RUN-$G1/b'], ARRAY[1, 2])")" t
    expect "its lines taken on the group's shard (1)" \
        "$(shard 1 "SELECT hotstock.available('g$RUN-$G1/a') || ',' || hotstock.available('g$RUN-$G1/b')")" "9,8"
    expect "order_status of the basket through the router" \
        "$(router "SELECT hotstock.order_status('b1-$RUN')")" deducted
    expect "a basket of two groups on two shards raises HSR01" \
        "$(router_sqlstate "SELECT hotstock.deduct_basket('b2-$RUN', ARRAY['g$RUN-$G0/a', 'g$RUN-$G1/a'], ARRAY[1, 1])")" HSR01
    expect "and takes nothing" \
        "$(shard 0 "SELECT hotstock.available('g$RUN-$G0/a')")/$(shard 1 "SELECT hotstock.available('g$RUN-$G1/a')")" "10/9"
else
    fail "groups on both shards among g0..g7 (got '$G0', '$G1')"
fi
expect "reserve then confirm through the router" \
    "$(router "SELECT hotstock.reserve('g$RUN-$G0/b', 1, 'h1-$RUN', '1 minute')")$(router "SELECT hotstock.confirm('h1-$RUN')")" tt
expect "the confirmed hold is deducted" "$(router "SELECT hotstock.order_status('h1-$RUN')")" deducted
expect "reserve then cancel through the router" \
    "$(router "SELECT hotstock.reserve('g$RUN-$G0/b', 1, 'h2-$RUN', '1 minute')")$(router "SELECT hotstock.cancel('h2-$RUN')")" tt
expect "a second cancel answers false" "$(router "SELECT hotstock.cancel('h2-$RUN')")" f
expect "its unit is back (10 - 1 confirmed)" "$(router "SELECT hotstock.available('g$RUN-$G0/b')")" 9

finish
