#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: a flash sale you can watch.
#
# Sets up, starts the private cluster ($RUN_DIR, default <repo>/.run), then
# puts DEMO_STOCK units (1,000) of one SKU on sale and lets DEMO_CLIENTS
# concurrent buyers (pgbench, 64) make DEMO_ATTEMPTS purchase attempts
# (100,000), each with its own order id, through hotstock.deduct().  Every
# attempt that returns true inserts the order into demo_orders in the same
# transaction, so the committed rows are exactly the acknowledged sales.
# Then the same sale runs against a plain table with the classic
# `UPDATE ... SET qty = qty - 1 WHERE sku = $1 AND qty >= 1`, for comparison.
#
# Oversold is computed, not asserted: acknowledged orders minus the stock,
# when positive.  The demo exits non-zero if it is ever above 0.  The cluster
# is left running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

STOCK=${DEMO_STOCK:-1000}
CLIENTS=${DEMO_CLIENTS:-64}
ATTEMPTS=${DEMO_ATTEMPTS:-100000}
PER_CLIENT=$(((ATTEMPTS + CLIENTS - 1) / CLIENTS))
ATTEMPTS=$((PER_CLIENT * CLIENTS))
JOBS=$(nproc 2>/dev/null || echo 2)
[ "$JOBS" -gt "$CLIENTS" ] && JOBS=$CLIENTS

bash "$REPO/scripts/setup.sh"
resolve_pg_config
PORT_COMMAND="make demo" bash "$REPO/scripts/cluster.sh" start
# shellcheck disable=SC1091
. "$RUN_DIR/env"
BIN=$(pg_bindir)
W=$RUN_DIR/demo
mkdir -p "$W"

RUN=$(date +%s)
SKU=flash-$RUN
sql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA -F ' ' "$@"; }

sql >/dev/null <<EOF
CREATE TABLE IF NOT EXISTS demo_orders (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS demo_plain_orders (LIKE demo_orders INCLUDING ALL);
CREATE TABLE IF NOT EXISTS stock_plain (sku text PRIMARY KEY, qty bigint NOT NULL);
CREATE INDEX IF NOT EXISTS demo_orders_sku ON demo_orders (sku);
CREATE INDEX IF NOT EXISTS demo_plain_orders_sku ON demo_plain_orders (sku);
SELECT hotstock.put_sku('$SKU', $STOCK);
INSERT INTO stock_plain VALUES ('$SKU', $STOCK)
    ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty;
EOF

# One attempt = one transaction.  :i counts each client's attempts, so
# order ids are unique within the run; :run makes them unique across runs.
cat >"$W/deduct.sql" <<'EOF'
\set i :i + 1
\set n :client_id * 1000000 + :i
INSERT INTO demo_orders (order_id, sku)
SELECT :run::text || '-' || :n::text, :sku::text
WHERE hotstock.deduct(:sku::text, 1, :run::text || '-' || :n::text);
EOF
cat >"$W/plain.sql" <<'EOF'
\set i :i + 1
\set n :client_id * 1000000 + :i
WITH sold AS (
    UPDATE stock_plain SET qty = qty - 1 WHERE sku = :sku::text AND qty >= 1
    RETURNING sku)
INSERT INTO demo_plain_orders (order_id, sku)
SELECT :run::text || '-' || :n::text, sku FROM sold;
EOF

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# sale NAME SCRIPT AVAILABLE_SQL ACKED_SQL DRAINED_SQL
# Runs pgbench in the background and prints one progress line a second
# (drain lag = acknowledged - drained; no drain column when DRAINED_SQL is "").
# Sets ELAPSED, TPS, PROCESSED, PGBENCH_RC.
sale() {
    local name=$1 script=$2 avail_sql=$3 acked_sql=$4 drained_sql=$5
    local out=$W/$name.out t0 pid line avail acked drained
    "$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -t "$PER_CLIENT" \
        -D i=0 -D "run=$name-$RUN" -D "sku=$SKU" -f "$script" >"$out" 2>&1 &
    pid=$!
    t0=$(now)
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        kill -0 "$pid" 2>/dev/null || break
        line=$(sql -c "SELECT ($avail_sql), ($acked_sql), (${drained_sql:-0})" 2>/dev/null) || continue
        read -r avail acked drained <<<"$line"
        if [ -n "$drained_sql" ]; then
            printf '  %6ss   available %6s   acknowledged %6s   drain lag %6s\n' \
                "$(secs "$t0" "$(now)")" "$avail" "$acked" "$((acked - drained))"
        else
            printf '  %6ss   available %6s   acknowledged %6s\n' "$(secs "$t0" "$(now)")" "$avail" "$acked"
        fi
    done
    PGBENCH_RC=0
    wait "$pid" || PGBENCH_RC=$?
    END_T=$(now)
    ELAPSED=$(secs "$t0" "$END_T")
    TPS=$(sed -nE 's/^tps = ([0-9]+)(\.[0-9]+)? \(without initial.*/\1/p' "$out")
    PROCESSED=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
    if [ "$PGBENCH_RC" -ne 0 ] || [ -z "$TPS" ]; then
        warn "pgbench ($name) exited $PGBENCH_RC; its output ($out):"
        tail -n 20 "$out" >&2
    fi
    TPS=${TPS:-0}
    PROCESSED=${PROCESSED:-0}
}

q_acked="SELECT count(*) FROM demo_orders WHERE sku = '$SKU'"
q_drained="SELECT coalesce((SELECT sold FROM hotstock.stock WHERE sku = '$SKU'), 0)"

echo
echo "== Flash sale: $STOCK units of '$SKU', $CLIENTS buyers, $ATTEMPTS attempts, hotstock.deduct()"
echo "   (hotstock.synchronous = on: every true is on disk before it is returned)"
sale deduct "$W/deduct.sql" "SELECT hotstock.available('$SKU')" "$q_acked" "$q_drained"
H_ELAPSED=$ELAPSED H_TPS=$TPS H_DONE=$PROCESSED H_RC=$PGBENCH_RC H_END=$END_T

# Outcome, and the drain catching up with the tables.
read -r H_AVAIL H_ACKED H_SPAN <<<"$(sql -c "SELECT hotstock.available('$SKU'), count(*),
    coalesce(round(extract(epoch FROM max(at) - min(at))::numeric, 2), 0)
    FROM demo_orders WHERE sku = '$SKU'")"
H_SOLD=$((STOCK - H_AVAIL))
H_OVER=$((H_ACKED > STOCK ? H_ACKED - STOCK : 0))
# Poll (every 0.1 s, at most 60 s) until hotstock.stock shows every
# acknowledged unit; the wait is counted from the end of the sale.
drain_ok=0
for _ in $(seq 1 600); do
    drained=$(sql -c "$q_drained")
    if [ "$drained" -eq "$H_ACKED" ]; then
        drain_ok=1
        break
    fi
    sleep 0.1
done
DRAIN_WAIT=$(secs "$H_END" "$(now)")
LEDGER=$(sql -c "SELECT count(*) FROM hotstock.ledger WHERE sku = '$SKU'" 2>/dev/null || echo "?")

echo
echo "   units sold (counter)     $H_SOLD of $STOCK   (available now: $H_AVAIL)"
echo "   acknowledged orders      $H_ACKED   (rows committed in demo_orders)"
echo "   oversold                 $H_OVER"
echo "   attempts                 $H_DONE in $H_ELAPSED s   -> $H_TPS tps (pgbench)"
echo "   first to last sale       $H_SPAN s"
if [ $drain_ok -eq 1 ]; then
    echo "   drain                    hotstock.stock shows $drained sold, $LEDGER ledger rows: caught up within ${DRAIN_WAIT} s of the sale's end"
else
    echo "   drain                    hotstock.stock shows $drained of $H_ACKED after waiting ${DRAIN_WAIT} s (see $RUN_DIR/pg.log)"
fi

echo
echo "== The same sale on a plain table: UPDATE stock_plain SET qty = qty - 1 WHERE sku = \$1 AND qty >= 1"
sale plain "$W/plain.sql" "SELECT qty FROM stock_plain WHERE sku = '$SKU'" \
    "SELECT count(*) FROM demo_plain_orders WHERE sku = '$SKU'" ""
P_ELAPSED=$ELAPSED P_TPS=$TPS P_DONE=$PROCESSED P_RC=$PGBENCH_RC
read -r P_AVAIL P_ACKED P_SPAN <<<"$(sql -c "SELECT (SELECT qty FROM stock_plain WHERE sku = '$SKU'), count(*),
    coalesce(round(extract(epoch FROM max(at) - min(at))::numeric, 2), 0)
    FROM demo_plain_orders WHERE sku = '$SKU'")"
P_SOLD=$((STOCK - P_AVAIL))
P_OVER=$((P_ACKED > STOCK ? P_ACKED - STOCK : 0))

echo
printf '   %-22s %18s %18s\n' "" "hotstock.deduct" "plain UPDATE"
printf '   %-22s %18s %18s\n' "attempts" "$H_DONE" "$P_DONE"
printf '   %-22s %18s %18s\n' "units sold" "$H_SOLD" "$P_SOLD"
printf '   %-22s %18s %18s\n' "acknowledged orders" "$H_ACKED" "$P_ACKED"
printf '   %-22s %18s %18s\n' "oversold" "$H_OVER" "$P_OVER"
printf '   %-22s %18s %18s\n' "elapsed (s)" "$H_ELAPSED" "$P_ELAPSED"
printf '   %-22s %18s %18s\n' "throughput (tps)" "$H_TPS" "$P_TPS"
printf '   %-22s %18s %18s\n' "first to last sale (s)" "$H_SPAN" "$P_SPAN"

echo
echo "The cluster is still running (RUN_DIR=$RUN_DIR)."
echo "  connect:  . $RUN_DIR/env && psql      (or: $(make_hint psql))"
echo "  look:     SELECT * FROM hotstock.stock WHERE sku = '$SKU';  SELECT * FROM hotstock.status;"
echo "  stop:     $(make_hint stop)"

rc=0
if [ "$H_OVER" -ne 0 ]; then
    warn "OVERSOLD: $H_OVER units acknowledged beyond the stock of $STOCK"
    rc=1
fi
if [ "$H_ACKED" -gt "$H_SOLD" ]; then
    warn "acknowledged orders ($H_ACKED) exceed the units the counter gave out ($H_SOLD)"
    rc=1
fi
[ "$H_RC" -eq 0 ] && [ "$P_RC" -eq 0 ] || rc=1
[ $drain_ok -eq 1 ] || rc=1
exit $rc
