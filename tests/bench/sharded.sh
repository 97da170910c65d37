#!/usr/bin/env bash
# tests/bench/sharded.sh — `make bench-sharded`: what the PL/Proxy router
# adds to one call.
#
# Starts BENCH_SHARDS (2) shards and the router (scripts/sharded.sh) in a
# folder of its own (<repo>/.run-bench-sharded, ports $BENCH_SHARD_PORT..,
# default 55530), puts one SKU through the router, and runs pgbench
# (-M prepared, 1 client, BENCH_SECONDS each, default 5) for each call twice:
# on the router (`hotstock.*` there are PL/Proxy functions) and on the shard
# that owns the SKU directly:
#
#   available   SELECT hotstock.available(sku)
#   deduct      SELECT hotstock.deduct(sku, 1, a new order id)  (fsynced)
#
# After an unreported one-second warm-up of each cell, prints, per call,
# pgbench's average latency both ways and the difference
# (the router's cost per call: one more backend, a PL/Proxy connection
# already open, one more round trip), then stops the shards.  A benchmark,
# not a test: it reports figures; take them on a quiet machine.
set -Eeuo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

SHARDS=${BENCH_SHARDS:-2}
PORT=${BENCH_SHARD_PORT:-55530}
SECONDS_PER=${BENCH_SECONDS:-5}
DIR=$REPO/.run-bench-sharded
export SHARDS SHARDED_RUN_DIR=$DIR SHARD_PORT=$PORT

trap_errors
bash "$REPO/scripts/setup.sh" || exit 1
resolve_pg_config
BIN=$(pg_bindir)
W=$(mktemp -d)
stop_all() {
    bash "$REPO/scripts/sharded.sh" stop >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap stop_all EXIT
bash "$REPO/scripts/sharded.sh" start >"$W/start.log" 2>&1 || {
    cat "$W/start.log"
    die "starting $SHARDS shards on ports $PORT.. failed"
}
# the router's connection (PGHOST, PGPORT, PGDATABASE=router, PGUSER)
# shellcheck disable=SC1090
. <(bash "$REPO/scripts/sharded.sh" env)

SKU=bench-sharded-sku
"$BIN/psql" -X -q -tA -v ON_ERROR_STOP=1 -c "SELECT hotstock.put_sku('$SKU', 100000000)" >/dev/null
OWNER=$("$BIN/psql" -X -q -tA -v ON_ERROR_STOP=1 -c "SELECT hotstock_router.sku_partition('$SKU')")
SHARD_HOST=$DIR/s$OWNER
SHARD_PORT_OF=$((PORT + OWNER))

cat >"$W/available.sql" <<EOF
SELECT hotstock.available(:sku);
EOF
cat >"$W/deduct.sql" <<EOF
\set n :n + 1
SELECT hotstock.deduct(:sku, 1, :run || '-' || :n);
EOF

# latency LEG SCRIPT HOST PORT DB [SECONDS]: pgbench's average latency in ms
latency() {
    local leg=$1 script=$2 host=$3 port=$4 db=$5 secs=${6:-$SECONDS_PER}
    PGHOST=$host PGPORT=$port PGDATABASE=$db "$BIN/pgbench" -n -M prepared -c 1 \
        -T "$secs" -D sku="$SKU" -D n=0 -D run="$leg-$RANDOM$RANDOM" \
        -f "$W/$script.sql" 2>&1 | sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p'
}
# warm-up, unreported: a fresh cluster's first calls (connections, the
# first queue file's pages, plan caches) are slower than the steady state
for call in available deduct; do
    latency "w$call" "$call" "$SHARD_HOST" "$SHARD_PORT_OF" hotstock 1 >/dev/null
    latency "v$call" "$call" "$PGHOST" "$PGPORT" "$PGDATABASE" 1 >/dev/null
done

say "router in shard 0's cluster (port $PORT), SKU $SKU on shard $OWNER (port $SHARD_PORT_OF); 1 client, ${SECONDS_PER}s per cell"
printf '\n  %-10s %14s %14s %14s\n' call "direct (us)" "router (us)" "router adds"
for call in available deduct; do
    direct=$(latency "d$call" "$call" "$SHARD_HOST" "$SHARD_PORT_OF" hotstock)
    routed=$(latency "r$call" "$call" "$PGHOST" "$PGPORT" "$PGDATABASE")
    [ -n "$direct" ] && [ -n "$routed" ] || die "pgbench gave no latency for $call"
    awk -v c="$call" -v d="$direct" -v r="$routed" \
        'BEGIN { printf "  %-10s %14.0f %14.0f %14.0f\n", c, d * 1000, r * 1000, (r - d) * 1000 }'
done
echo
