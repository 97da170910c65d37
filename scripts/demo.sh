#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: a flash sale you can watch.
#
# Sets up, starts the private cluster ($RUN_DIR, default <repo>/.run), then
# puts DEMO_STOCK units (10,000) of one SKU on sale and lets DEMO_CLIENTS
# concurrent buyers (pgbench, 64) make DEMO_ATTEMPTS purchase attempts
# (15,000), each with its own order id, through hotstock.deduct().  Every
# attempt that returns true inserts the order into demo_orders in the same
# transaction, so the committed rows are exactly the acknowledged sales.
# Then the same sale runs against a plain table with the classic
# `UPDATE ... SET qty = qty - 1 WHERE sku = $1 AND qty >= 1`, for comparison.
#
# What a sale is measured by is the time while stock lasts: from the first
# attempt to the last unit sold.  The headline is the ratio of the two
# throughputs over that window (units sold per second); beside it, the p50
# and p99 latency of the attempts that completed in it (pgbench's
# per-transaction log).  Attempts after the sell-out are cheap "sold out"
# answers on both sides and are not part of the comparison.
#
# Oversold is computed, not asserted: acknowledged orders minus the stock,
# when positive.  The demo exits non-zero if it is ever above 0.  The cluster
# is left running.
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"

STOCK=${DEMO_STOCK:-10000}
CLIENTS=${DEMO_CLIENTS:-64}
ATTEMPTS=${DEMO_ATTEMPTS:-15000}
PER_CLIENT=$(((ATTEMPTS + CLIENTS - 1) / CLIENTS))
ATTEMPTS=$((PER_CLIENT * CLIENTS))
JOBS=$(nproc 2>/dev/null || echo 2)
# Seconds from pgbench's start to the sale's opening: every buyer connects
# and takes its place before it (a backend maps the segment on its first
# call, a few ms each).
OPEN_DELAY=${DEMO_OPEN_DELAY:-$(awk -v c="$CLIENTS" 'BEGIN { printf "%.1f", 1 + c * 0.02 }')}
[ "$JOBS" -gt "$CLIENTS" ] && JOBS=$CLIENTS

trap_errors
# setup.sh and cluster.sh each end a failure with their own one-line reason.
bash "$REPO/scripts/setup.sh" || exit 1
resolve_pg_config
PORT_COMMAND="make demo" bash "$REPO/scripts/cluster.sh" start || exit 1
# shellcheck disable=SC1091
. "$RUN_DIR/env"
BIN=$(pg_bindir)
W=$RUN_DIR/demo
mkdir -p "$W"
STEP="the sale"

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

# Like a real sale, the buyers are connected and waiting when it opens: each
# client's first transaction (:i = 0) is its waiting room: it touches
# hotstock once (a backend maps the daemon's segment on its first call) and
# sleeps until the opening instant :open, common to all.  After that, one
# attempt = one transaction.  :i counts each client's attempts, so order ids
# are unique within the run; :run makes them unique across runs.
cat >"$W/deduct.sql" <<'EOF'
\if :i = 0
SELECT hotstock.available(:sku::text), pg_sleep(greatest(0, :open::float8 - extract(epoch FROM clock_timestamp())::float8));
\else
\set n :client_id * 1000000 + :i
INSERT INTO demo_orders (order_id, sku)
SELECT :run::text || '-' || :n::text, :sku::text
WHERE hotstock.deduct(:sku::text, 1, :run::text || '-' || :n::text);
\endif
\set i :i + 1
EOF
cat >"$W/plain.sql" <<'EOF'
\if :i = 0
SELECT qty, pg_sleep(greatest(0, :open::float8 - extract(epoch FROM clock_timestamp())::float8)) FROM stock_plain WHERE sku = :sku::text;
\else
\set n :client_id * 1000000 + :i
WITH sold AS (
    UPDATE stock_plain SET qty = qty - 1 WHERE sku = :sku::text AND qty >= 1
    RETURNING sku)
INSERT INTO demo_plain_orders (order_id, sku)
SELECT :run::text || '-' || :n::text, sku FROM sold;
\endif
\set i :i + 1
EOF

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# sale NAME SCRIPT AVAILABLE_SQL ACKED_SQL DRAINED_SQL
# Runs pgbench in the background (per-transaction log in $W/NAME.log.*) and
# prints one progress line a second (drain lag = acknowledged - drained; no
# drain column when DRAINED_SQL is "").  Sets OPEN, ELAPSED (from the
# opening), TPS, PROCESSED (attempts, without the waiting rooms),
# PGBENCH_RC, END_T.
sale() {
    local name=$1 script=$2 avail_sql=$3 acked_sql=$4 drained_sql=$5
    local out=$W/$name.out pid line avail acked drained
    rm -f "$W/$name.log".*
    # The sale opens OPEN_DELAY seconds from now: time for every client to
    # connect and take its place (transaction 0).
    OPEN=$(awk -v t="$(now)" -v d="$OPEN_DELAY" 'BEGIN { printf "%.3f", t + d }')
    "$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -t "$((PER_CLIENT + 1))" \
        -l --log-prefix="$W/$name.log" \
        -D i=0 -D "open=$OPEN" -D "run=$name-$RUN" -D "sku=$SKU" -f "$script" >"$out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        kill -0 "$pid" 2>/dev/null || break
        awk -v t="$(now)" -v o="$OPEN" 'BEGIN { exit !(t < o) }' && continue # not open yet
        line=$(sql -c "SELECT ($avail_sql), ($acked_sql), (${drained_sql:-0})" 2>/dev/null) || continue
        read -r avail acked drained <<<"$line"
        if [ -n "$drained_sql" ]; then
            printf '  %6ss   available %6s   acknowledged %6s   drain lag %6s\n' \
                "$(secs "$OPEN" "$(now)")" "$avail" "$acked" "$((acked - drained))"
        else
            printf '  %6ss   available %6s   acknowledged %6s\n' "$(secs "$OPEN" "$(now)")" "$avail" "$acked"
        fi
    done
    PGBENCH_RC=0
    wait "$pid" || PGBENCH_RC=$?
    END_T=$(now)
    ELAPSED=$(secs "$OPEN" "$END_T")
    TPS=$(sed -nE 's/^tps = ([0-9]+)(\.[0-9]+)? \(without initial.*/\1/p' "$out")
    PROCESSED=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
    if [ "$PGBENCH_RC" -ne 0 ] || [ -z "$TPS" ]; then
        warn "pgbench ($name) exited $PGBENCH_RC; its output ($out):"
        tail -n 20 "$out" >&2
    fi
    PROCESSED=$((${PROCESSED:-$CLIENTS} - CLIENTS))
    # pgbench's tps counts the waiting rooms and their sleep: attempts over
    # the time from the opening instead.
    TPS=$(awk -v n="$PROCESSED" -v s="$ELAPSED" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
}

# window NAME SOLD OPEN LAST_SALE_EPOCH: the sale while stock lasted, from
# the opening instant OPEN to the last sale (LAST_SALE_EPOCH, the server's
# clock_timestamp() of the last order row: the same host clock).  pgbench's
# per-transaction log (client, txn, latency us, script, end s, end us) gives
# the latencies of the attempts in it: transaction 1 on (0 is the waiting
# room), completed by the last sale's commit.  Prints
# "SECONDS SALES_PER_S P50_MS P99_MS N".
window() {
    local name=$1 sold=$2 open=$3 last=$4
    cat "$W/$name.log".* 2>/dev/null | awk -v last="$last" -v open="$open" -v sold="$sold" -v tmp="$W/$name.lat" '
        BEGIN { m = 0; printf "" > tmp }
        # A sale ends with its commit, after the order row was written.
        $2 > 0 && $5 + $6 / 1e6 <= last + 0.05 { print $3 > tmp; m++ }
        END {
            close(tmp)
            span = last - open
            if (sold == 0 || span <= 0) { print "0 0 0"; exit }
            printf "%.3f %.0f %d\n", span, sold / span, m
        }' >"$W/$name.win"
    local span rate m p50=0 p99=0
    read -r span rate m <"$W/$name.win"
    if [ "${m:-0}" -gt 0 ]; then
        sort -n "$W/$name.lat" >"$W/$name.lat.sorted"
        p50=$(awk -v m="$m" 'NR == int((m - 1) * 0.50) + 1 { printf "%.2f", $1 / 1000 }' "$W/$name.lat.sorted")
        p99=$(awk -v m="$m" 'NR == int((m - 1) * 0.99) + 1 { printf "%.2f", $1 / 1000 }' "$W/$name.lat.sorted")
    fi
    echo "$span $rate $p50 $p99 ${m:-0}"
}

q_acked="SELECT count(*) FROM demo_orders WHERE sku = '$SKU'"
q_drained="SELECT coalesce((SELECT sold FROM hotstock.stock WHERE sku = '$SKU'), 0)"

echo
echo "== Flash sale: $STOCK units of '$SKU', $CLIENTS buyers, $ATTEMPTS attempts, hotstock.deduct()"
echo "   (hotstock.synchronous = on: every true is on disk before it is returned)"
sale deduct "$W/deduct.sql" "SELECT hotstock.available('$SKU')" "$q_acked" "$q_drained"
H_ELAPSED=$ELAPSED H_TPS=$TPS H_DONE=$PROCESSED H_RC=$PGBENCH_RC H_END=$END_T H_OPEN=$OPEN

# Outcome, and the drain catching up with the tables.
read -r H_AVAIL H_ACKED H_LAST <<<"$(sql -c "SELECT hotstock.available('$SKU'), count(*),
    coalesce(extract(epoch FROM max(at)), 0) FROM demo_orders WHERE sku = '$SKU'")"
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
read -r H_SPAN H_RATE H_P50 H_P99 H_N <<<"$(window deduct "$H_ACKED" "$H_OPEN" "$H_LAST")"

echo
echo "   units sold (counter)     $H_SOLD of $STOCK   (available now: $H_AVAIL)"
echo "   acknowledged orders      $H_ACKED   (rows committed in demo_orders)"
echo "   oversold                 $H_OVER"
echo "   sold out after           $H_SPAN s   -> $H_RATE sales/s while stock lasted"
echo "   all attempts             $H_DONE in $H_ELAPSED s   -> $H_TPS tps (pgbench)"
if [ $drain_ok -eq 1 ]; then
    echo "   drain                    hotstock.stock shows $drained sold, $LEDGER ledger rows: caught up within ${DRAIN_WAIT} s of the sale's end"
else
    echo "   drain                    hotstock.stock shows $drained of $H_ACKED after waiting ${DRAIN_WAIT} s (see $RUN_DIR/pg.log)"
fi

echo
echo "== The same sale on a plain table: UPDATE stock_plain SET qty = qty - 1 WHERE sku = \$1 AND qty >= 1"
sale plain "$W/plain.sql" "SELECT qty FROM stock_plain WHERE sku = '$SKU'" \
    "SELECT count(*) FROM demo_plain_orders WHERE sku = '$SKU'" ""
P_ELAPSED=$ELAPSED P_TPS=$TPS P_DONE=$PROCESSED P_RC=$PGBENCH_RC P_OPEN=$OPEN
read -r P_AVAIL P_ACKED P_LAST <<<"$(sql -c "SELECT (SELECT qty FROM stock_plain WHERE sku = '$SKU'), count(*),
    coalesce(extract(epoch FROM max(at)), 0) FROM demo_plain_orders WHERE sku = '$SKU'")"
P_SOLD=$((STOCK - P_AVAIL))
P_OVER=$((P_ACKED > STOCK ? P_ACKED - STOCK : 0))
read -r P_SPAN P_RATE P_P50 P_P99 P_N <<<"$(window plain "$P_ACKED" "$P_OPEN" "$P_LAST")"

RATIO=$(awk -v h="$H_RATE" -v p="$P_RATE" 'BEGIN { if (p > 0) printf "%.1f", h / p; else print "n/a" }')
echo
printf '   %-34s %16s %16s\n' "" "hotstock.deduct" "plain UPDATE"
printf '   %-34s %16s %16s\n' "units on sale" "$STOCK" "$STOCK"
printf '   %-34s %16s %16s\n' "units sold" "$H_SOLD" "$P_SOLD"
printf '   %-34s %16s %16s\n' "acknowledged orders" "$H_ACKED" "$P_ACKED"
printf '   %-34s %16s %16s\n' "oversold" "$H_OVER" "$P_OVER"
printf '   %-34s %16s %16s\n' "sold out after (s)" "$H_SPAN" "$P_SPAN"
printf '   %-34s %16s %16s\n' "sales/s while stock lasted" "$H_RATE" "$P_RATE"
printf '   %-34s %16s %16s\n' "latency p50 while stock lasted (ms)" "$H_P50" "$P_P50"
printf '   %-34s %16s %16s\n' "latency p99 while stock lasted (ms)" "$H_P99" "$P_P99"
printf '   %-34s %16s %16s\n' "attempts (all, incl. sold out)" "$H_DONE" "$P_DONE"
printf '   %-34s %16s %16s\n' "tps over all attempts (pgbench)" "$H_TPS" "$P_TPS"
echo
echo "== hotstock sold out in $H_SPAN s, the plain UPDATE in $P_SPAN s: ${RATIO}x the sales per second while stock lasted"
echo "   ($CLIENTS buyers, synchronous on both sides; p99 latency $H_P99 ms vs $P_P99 ms)"

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
