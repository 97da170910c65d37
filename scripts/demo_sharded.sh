#!/usr/bin/env bash
# scripts/demo_sharded.sh — `make demo-sharded`: a flash sale across many
# SKUs on SHARDS hotstock nodes, through the PL/Proxy router.
#
# Sets up (scripts/setup.sh), starts the sharded system (scripts/sharded.sh:
# SHARDS nodes, default 4, and the router database), puts DEMO_SKUS SKUs
# (64) of DEMO_STOCK units (200) each on sale through the router, and lets
# DEMO_CLIENTS concurrent buyers (pgbench on the router, 32) make
# DEMO_ATTEMPTS purchase attempts (20,000) on random SKUs, each with its own
# order id, through hotstock.deduct() of the router.  An attempt the router
# answers true inserts the order into the router's demo_orders in the same
# router transaction: its rows are the acknowledged sales.
#
# Then, per shard and in total, from each shard's own tables once its drain
# has caught up: SKUs, stock put in, units sold (unrefunded ledger rows),
# orders acknowledged through the router, and oversold (per SKU, ledger
# units over the stock put in; must be 0); and the sale's throughput
# (attempts per second, pgbench's, and units sold per second over the
# sale).  Exits non-zero when anything is oversold or an acknowledged order
# is missing from its shard.  The shards are left running (make
# stop-sharded).
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"

SKUS=${DEMO_SKUS:-64}
STOCK=${DEMO_STOCK:-200}
CLIENTS=${DEMO_CLIENTS:-32}
ATTEMPTS=${DEMO_ATTEMPTS:-20000}
PER_CLIENT=$(((ATTEMPTS + CLIENTS - 1) / CLIENTS))
ATTEMPTS=$((PER_CLIENT * CLIENTS))
JOBS=$(nproc 2>/dev/null || echo 2)
[ "$JOBS" -gt "$CLIENTS" ] && JOBS=$CLIENTS

trap_errors
bash "$REPO/scripts/setup.sh" || exit 1
resolve_pg_config
bash "$REPO/scripts/sharded.sh" start || exit 1
# the router's connection, SHARDED_RUN_DIR, SHARDS, SHARD_PORT
# shellcheck disable=SC1090
. <(bash "$REPO/scripts/sharded.sh" env)
BIN=$(pg_bindir)
W=$SHARDED_RUN_DIR/demo
mkdir -p "$W"
STEP="the sale"

RUN=$(date +%s)
sql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA -F ' ' "$@"; }
# on_shard I ARGS...: psql into shard I's hotstock database.
on_shard() {
    local i=$1
    shift
    PGHOST=$SHARDED_RUN_DIR/s$i PGPORT=$((SHARD_PORT + i)) PGDATABASE=hotstock sql "$@"
}

say "$SKUS SKUs x $STOCK units on $SHARDS shards; $CLIENTS buyers make $ATTEMPTS attempts through the router"
sql >/dev/null <<EOF
CREATE TABLE IF NOT EXISTS demo_orders (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT hotstock.put_sku('flash-$RUN-' || k, $STOCK) FROM generate_series(0, $SKUS - 1) AS k;
EOF

cat >"$W/buy.sql" <<'EOF'
\set k random(0, :skus - 1)
\set n :client_id * 1000000 + :i
INSERT INTO demo_orders (order_id, sku)
SELECT :run::text || '-' || :n::text, 'flash-' || :run::text || '-' || :k::text
WHERE hotstock.deduct('flash-' || :run::text || '-' || :k::text, 1, :run::text || '-' || :n::text);
\set i :i + 1
EOF

T0=$(date +%s.%N)
PGBENCH_RC=0
"$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -t "$PER_CLIENT" \
    -D i=0 -D "run=$RUN" -D "skus=$SKUS" -f "$W/buy.sql" >"$W/pgbench.out" 2>&1 || PGBENCH_RC=$?
T1=$(date +%s.%N)
if [ "$PGBENCH_RC" -ne 0 ]; then
    tail -n 20 "$W/pgbench.out" >&2
    die "pgbench on the router exited $PGBENCH_RC (output: $W/pgbench.out)"
fi
TPS=$(sed -nE 's/^tps = ([0-9]+)(\.[0-9]+)? \(without initial.*/\1/p' "$W/pgbench.out")
ELAPSED=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
LAST=$(sql -c "SELECT extract(epoch FROM max(at)) FROM demo_orders WHERE order_id LIKE '$RUN-%'")
SALE=$(awk -v a="$T0" -v b="${LAST:-$T1}" 'BEGIN { printf "%.2f", b - a }')

# ---- the count, per shard, from each shard's own tables ----
STEP="counting"
sql -c "SELECT order_id, sku FROM demo_orders WHERE order_id LIKE '$RUN-%'" | tr ' ' '|' >"$W/acked.txt"
drained() { [ "$(on_shard "$1" -c "SELECT applied_lsn >= last_lsn FROM hotstock.status")" = t ]; }
printf '\n  %-6s %-6s %6s %9s %9s %9s %9s %9s\n' shard port skus stock sold acked missing oversold
t_skus=0 t_stock=0 t_sold=0 t_acked=0 t_missing=0 t_over=0
for i in $(seq 0 $((SHARDS - 1))); do
    wait_for 60 drained "$i" || die "shard $i's drain did not catch up within 60 s"
    read -r skus stock sold acked missing over < <(on_shard "$i" <<EOF
CREATE TEMP TABLE acked (order_id text, sku text);
\copy acked FROM '$W/acked.txt' WITH (DELIMITER '|')
WITH mine AS (SELECT sku FROM hotstock.stock WHERE sku LIKE 'flash-$RUN-%'),
units AS (SELECT m.sku, coalesce(sum(l.qty) FILTER (WHERE l.refunded_at IS NULL
                 AND (l.hold IS NULL OR l.hold = 'confirmed')), 0) AS units
          FROM mine m LEFT JOIN hotstock.ledger l ON l.sku = m.sku GROUP BY m.sku)
SELECT (SELECT count(*) FROM mine),
       (SELECT count(*) FROM mine) * $STOCK,
       (SELECT coalesce(sum(units), 0) FROM units),
       (SELECT count(*) FROM acked a JOIN mine m ON m.sku = a.sku),
       (SELECT count(*) FROM acked a JOIN mine m ON m.sku = a.sku
         WHERE NOT EXISTS (SELECT 1 FROM hotstock.ledger l WHERE l.order_id = a.order_id)),
       (SELECT coalesce(sum(greatest(units - $STOCK, 0)), 0) FROM units);
EOF
    )
    printf '  %-6s %-6s %6s %9s %9s %9s %9s %9s\n' "$i" $((SHARD_PORT + i)) "$skus" "$stock" "$sold" "$acked" "$missing" "$over"
    t_skus=$((t_skus + skus)) t_stock=$((t_stock + stock)) t_sold=$((t_sold + sold))
    t_acked=$((t_acked + acked)) t_missing=$((t_missing + missing)) t_over=$((t_over + over))
done
printf '  %-6s %-6s %6s %9s %9s %9s %9s %9s\n' total '' "$t_skus" "$t_stock" "$t_sold" "$t_acked" "$t_missing" "$t_over"
echo
say "throughput: $ATTEMPTS attempts in ${ELAPSED}s, ${TPS:-?} attempts/s (pgbench on the router, $CLIENTS clients); $t_sold units sold in ${SALE}s (first attempt to last sale): $(awk -v n="$t_sold" -v s="$SALE" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }') units/s"
say "oversold $t_over"
say "the shards keep running: . $SHARDED_RUN_DIR/env && psql (the router); make stop-sharded"
[ "$t_over" -eq 0 ] || die "OVERSOLD: $t_over units over the stock put in"
[ "$t_missing" -eq 0 ] || die "$t_missing acknowledged orders are in no ledger of their shard"
