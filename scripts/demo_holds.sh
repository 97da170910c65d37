#!/usr/bin/env bash
# scripts/demo_holds.sh — `make demo-holds`: a sale with reservations, where
# some buyers never pay.
#
# Sets up, starts the private cluster ($RUN_DIR, default <repo>/.run), puts
# DEMO_STOCK units (1,000) of one SKU on sale and lets DEMO_CLIENTS buyers
# (pgbench, 32) try for DEMO_SECONDS (20 s).  Each attempt reserves one unit
# with hotstock.reserve(..., ttl => DEMO_TTL, 2 s) under its own order id;
# 70 % of the buyers who got a hold confirm it at once, the other 30 %
# never come back.  Their holds expire by themselves (the daemon's expirer,
# at the deadline) and the units are reserved again by other buyers, until
# everything is sold.  Every acknowledged answer is recorded in the same
# transaction as the call (demo_holds, demo_confirms), so the committed
# rows are exactly what the buyers were told.
#
# Printed: reserved, confirmed, expired, sold, units left, oversold
# (acknowledged confirms beyond the stock; computed, and the demo exits
# non-zero if it is ever above 0), the units that came back by expiry and
# were sold again, and the expiry delay p50 / p99 / max (the daemon's EXPIRE
# time minus the hold's deadline, from hotstock.ledger, every expired hold).
# The cluster is left running.
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"

STOCK=${DEMO_STOCK:-1000}
CLIENTS=${DEMO_CLIENTS:-32}
SECONDS_=${DEMO_SECONDS:-20}
TTL=${DEMO_TTL:-2 s}
CONFIRM_PCT=${DEMO_CONFIRM_PCT:-70}
JOBS=$(nproc 2>/dev/null || echo 2)
[ "$JOBS" -gt "$CLIENTS" ] && JOBS=$CLIENTS

trap_errors
bash "$REPO/scripts/setup.sh" || exit 1
resolve_pg_config
PORT_COMMAND="make demo-holds" bash "$REPO/scripts/cluster.sh" start || exit 1
# shellcheck disable=SC1091
. "$RUN_DIR/env"
BIN=$(pg_bindir)
W=$RUN_DIR/demo-holds
mkdir -p "$W"
STEP="the sale"

RUN=$(date +%s)
SKU=holds-$RUN
sql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA -F ' ' "$@"; }

sql >/dev/null <<EOF
CREATE TABLE IF NOT EXISTS demo_holds (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    will_pay boolean NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS demo_confirms (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX IF NOT EXISTS demo_holds_sku ON demo_holds (sku);
CREATE INDEX IF NOT EXISTS demo_confirms_sku ON demo_confirms (sku);
SELECT hotstock.put_sku('$SKU', $STOCK);
EOF

# One attempt = a reserve (its own transaction), then, for a buyer who
# pays, the confirm (another).  :i counts each client's attempts, so order
# ids are unique within the run; :run makes them unique across runs.
cat >"$W/buyer.sql" <<EOF
\\set n :client_id * 10000000 + :i
\\set pays random(1, 100)
INSERT INTO demo_holds (order_id, sku, will_pay)
SELECT :run::text || '-' || :n::text, :sku::text, :pays <= $CONFIRM_PCT
WHERE hotstock.reserve(:sku::text, 1, :run::text || '-' || :n::text, '$TTL');
INSERT INTO demo_confirms (order_id, sku)
SELECT order_id, sku FROM demo_holds
WHERE order_id = :run::text || '-' || :n::text AND will_pay AND hotstock.confirm(order_id);
\\set i :i + 1
EOF

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo
echo "== Sale with reservations: $STOCK units of '$SKU', $CLIENTS buyers for ${SECONDS_} s,"
echo "   each hold lives $TTL; $CONFIRM_PCT % of the buyers with a hold pay, the others never come back"
T0=$(now)
"$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$SECONDS_" \
    -D i=1 -D "run=$RUN" -D "sku=$SKU" -f "$W/buyer.sql" >"$W/pgbench.out" 2>&1 &
PID=$!
while kill -0 "$PID" 2>/dev/null; do
    sleep 1
    kill -0 "$PID" 2>/dev/null || break
    line=$(sql -c "SELECT hotstock.available('$SKU'),
                          (SELECT count(*) FROM demo_holds WHERE sku = '$SKU'),
                          (SELECT count(*) FROM demo_confirms WHERE sku = '$SKU')" 2>/dev/null) || continue
    read -r avail held confirmed <<<"$line"
    printf '  %5ss   available %5s   reserved %6s   confirmed %5s\n' \
        "$(secs "$T0" "$(now)")" "$avail" "$held" "$confirmed"
done
RC=0
wait "$PID" || RC=$?
if [ "$RC" -ne 0 ]; then
    warn "pgbench exited $RC; its output ($W/pgbench.out):"
    tail -n 20 "$W/pgbench.out" >&2
fi

# The sale is over: wait (bounded) until every hold ended and the drain
# applied it, so the ledger holds the whole story.
settled() {
    [ "$(sql -c "SELECT s.reserved = 0 AND st.drain_lag_records = 0
                       AND NOT EXISTS (SELECT 1 FROM hotstock.ledger
                                       WHERE sku = '$SKU' AND hold = 'reserved')
                 FROM hotstock.stock s, hotstock.status st WHERE s.sku = '$SKU'")" = t ]
}
settled_ok=0
for _ in $(seq 1 600); do
    if settled; then
        settled_ok=1
        break
    fi
    sleep 0.1
done

read -r RESERVED CONFIRMED_ACK <<<"$(sql -c "SELECT (SELECT count(*) FROM demo_holds WHERE sku = '$SKU'),
    (SELECT count(*) FROM demo_confirms WHERE sku = '$SKU')")"
read -r L_CONFIRMED L_EXPIRED L_CANCELLED L_HOLDS L_EXPIRED_UNITS <<<"$(sql -c "
    SELECT count(*) FILTER (WHERE hold = 'confirmed'), count(*) FILTER (WHERE hold = 'expired'),
           count(*) FILTER (WHERE hold = 'cancelled'), count(*),
           coalesce(sum(qty) FILTER (WHERE hold = 'expired'), 0)
    FROM hotstock.ledger WHERE sku = '$SKU'")"
read -r SOLD AVAILABLE HELD CONSISTENT <<<"$(sql -c "
    SELECT sold, available, reserved, available + sold + reserved = $STOCK
    FROM hotstock.stock WHERE sku = '$SKU'")"
NOT_PAYING=$(sql -c "SELECT count(*) FROM demo_holds WHERE sku = '$SKU' AND NOT will_pay")
read -r D_P50 D_P99 D_MAX D_N <<<"$(sql -c "
    SELECT coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 1), 0),
           coalesce(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 1), 0),
           coalesce(round(max(d)::numeric, 1), 0), count(*)
    FROM (SELECT extract(epoch FROM settled_at - expires_at) * 1000 AS d
          FROM hotstock.ledger WHERE sku = '$SKU' AND hold = 'expired') e")"
OVER=$((CONFIRMED_ACK > STOCK ? CONFIRMED_ACK - STOCK : 0))
# Expired holds gave L_EXPIRED_UNITS units back; at most the units left
# unsold are ones that came back and found no buyer.
RESOLD=$((L_EXPIRED_UNITS > AVAILABLE ? L_EXPIRED_UNITS - AVAILABLE : 0))

echo
echo "   reserved                 $RESERVED holds acknowledged ($NOT_PAYING of them by buyers who never pay)"
echo "   confirmed                $CONFIRMED_ACK acknowledged ($L_CONFIRMED confirmed holds in the ledger)"
echo "   expired                  $L_EXPIRED holds gave their unit back at the deadline ($L_CANCELLED cancelled)"
echo "   sold                     $SOLD of $STOCK   (available $AVAILABLE, still reserved $HELD)"
echo "   oversold                 $OVER"
echo "   expired units sold again at least $RESOLD of $L_EXPIRED_UNITS units given back"
echo "   expiry delay             p50 $D_P50 ms, p99 $D_P99 ms, max $D_MAX ms after the deadline ($D_N holds)"
if [ $settled_ok -eq 0 ]; then
    echo "   (holds or the drain had not settled after 60 s: see $RUN_DIR/pg.log)"
fi
echo
echo "The cluster is still running (RUN_DIR=$RUN_DIR)."
echo "  look:     SELECT * FROM hotstock.stock WHERE sku = '$SKU';  SELECT hold, count(*) FROM hotstock.ledger WHERE sku = '$SKU' GROUP BY 1;"
echo "  stop:     $(make_hint stop)"

rc=0
if [ "$OVER" -ne 0 ]; then
    warn "OVERSOLD: $OVER confirmed units acknowledged beyond the stock of $STOCK"
    rc=1
fi
if [ "$CONFIRMED_ACK" -ne "$L_CONFIRMED" ] || [ "$L_CONFIRMED" -ne "$SOLD" ]; then
    warn "acknowledged confirms ($CONFIRMED_ACK), confirmed holds in the ledger ($L_CONFIRMED) and stock.sold ($SOLD) differ"
    rc=1
fi
if [ "$CONSISTENT" != t ] || [ "$RESERVED" -ne "$L_HOLDS" ]; then
    warn "the tables disagree: available + sold + reserved = stock is $CONSISTENT; $RESERVED acknowledged holds, $L_HOLDS in the ledger"
    rc=1
fi
[ "$RC" -eq 0 ] && [ $settled_ok -eq 1 ] || rc=1
exit $rc
