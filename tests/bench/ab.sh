#!/usr/bin/env bash
# tests/bench/ab.sh — A/B of two builds: the same pgbench script against two
# running clusters (two `make start`s of two trees, each with its own
# RUN_DIR and HOTSTOCK_PORT), alternated round by round so that a machine
# shared with other work loads both alike.  Prints each run and, per side,
# the median tps and the change of B against A.
#
#   bash tests/bench/ab.sh ENV_A ENV_B [SCRIPT] [ROUNDS] [SECS] [CLIENTS]
#
# ENV_A/ENV_B: the clusters' env files ($RUN_DIR/env).  SCRIPT: a file of
# tests/bench/pgbench/ (deduct_hot.sql); ROUNDS 5, SECS 15, CLIENTS 32.
# Before each run the side's drain must have caught up (at most 60 s), so
# neither run pays for the other's backlog.  Besides tps (wall clock: on a
# shared machine it swings by tens of per cent from run to run) it reports
# the CPU time per transaction of the side's PostgreSQL (the postmaster,
# its live children and those it reaped) and hotstockd, from /proc, taken
# once the drain has applied the run: the figure a busy machine disturbs
# least.  Each side gets SKU `hot` and
# '1'..'10000' with stock for the whole run (put_sku at the first round).
# Used for the statistics' overhead (shmd/README.md, "Statistics and hot
# SKUs").
set -uo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ENV_A=$1
ENV_B=$2
SCRIPT=${3:-deduct_hot.sql}
ROUNDS=${4:-5}
SECS=${5:-15}
CLIENTS=${6:-32}
J=$(nproc)
[ "$CLIENTS" -lt "$J" ] && J=$CLIENTS

# side ENV CMD...: run CMD in the environment of cluster ENV
side() {
    (
        . "$1"
        shift
        "$@"
    )
}
q() { side "$1" psql -X -q -tA -v ON_ERROR_STOP=1 -c "$2"; }

# cpu_ticks ENV: CPU clock ticks of the side's PostgreSQL and hotstockd.
cpu_ticks() {
    local pm dpid
    pm=$(side "$1" bash -c 'head -n 1 "$RUN_DIR/pg/postmaster.pid"')
    dpid=$(side "$1" bash -c 'cat "$HOTSTOCK_DIR/hotstockd.pid"')
    # fields after the ")": 2 ppid, 12 utime, 13 stime, 14 cutime, 15 cstime
    for f in /proc/[0-9]*/stat; do
        sed 's/^.*) //' "$f" 2>/dev/null | awk -v self="${f//[^0-9]/}" -v pm="$pm" -v d="$dpid" '
            self == pm { print $12 + $13 + $14 + $15 }
            $2 == pm || self == d { print $12 + $13 }'
    done | awk '{ t += $1 } END { print t + 0 }'
}

caught_up() {
    for _ in $(seq 1 600); do
        [ "$(q "$1" "SELECT drain_lag_records FROM hotstock.status")" = 0 ] && return 0
        sleep 0.1
    done
    echo "ab.sh: the drain of $1 did not catch up in 60 s" >&2
    return 1
}

for env in "$ENV_A" "$ENV_B"; do
    q "$env" "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS hotstock" || exit 1
    q "$env" "SELECT hotstock.put_sku('hot', 1000000000000)" >/dev/null || exit 1
    q "$env" "SELECT count(hotstock.put_sku(g::text, 100000000)) FROM generate_series(1, 10000) g" \
        >/dev/null || exit 1
done

if [ "${AB_PAIRED:-0}" = 1 ]; then
    half=$((CLIENTS / 2))
    J=$((J / 2 > 0 ? J / 2 : 1))
    declare -a R
    for r in $(seq 1 "$ROUNDS"); do
        caught_up "$ENV_A" && caught_up "$ENV_B" || exit 1
        base=$(($(date +%s) * 1000000 + r * 10000000000000))
        order="A B"
        [ $((r % 2)) = 0 ] && order="B A" # neither side always starts first
        for s in $order; do
            env=$ENV_A
            [ $s = B ] && env=$ENV_B
            side "$env" pgbench -n -M prepared -T "$SECS" -c "$half" -j "$J" \
                -f "$BENCH/pgbench/$SCRIPT" -D sku=hot -D n=0 \
                -D base=$([ $s = A ] && echo $((base + 1)) || echo $((base + 2))) \
                >"${TMPDIR:-/tmp}/ab.$$.$s" 2>&1 &
        done
        wait
        ta=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "${TMPDIR:-/tmp}/ab.$$.A")
        tb=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "${TMPDIR:-/tmp}/ab.$$.B")
        rm -f "${TMPDIR:-/tmp}/ab.$$.A" "${TMPDIR:-/tmp}/ab.$$.B"
        [ -n "$ta" ] && [ -n "$tb" ] || { echo "ab.sh: pgbench failed in round $r" >&2; exit 1; }
        ratio=$(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.2f", (b / a - 1) * 100 }')
        echo "round $r: A $ta tps, B $tb tps, B/A $ratio %"
        R+=("$ratio")
    done
    printf '%s\n' "${R[@]}" | sort -n | awk -v s="$SCRIPT" -v c="$half" -v t="$SECS" '
        { a[NR] = $1; sum += $1 }
        END { printf "%s, paired (%d clients each side), %d rounds of %d s: B/A median %+.1f %%, mean %+.1f %%, range %+.1f .. %+.1f %%\n", s, c, NR, t, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, sum / NR, a[1], a[NR] }'
    exit 0
fi

declare -a A B CA CB
hz=$(getconf CLK_TCK)
base=$(($(date +%s) * 1000000))
for r in $(seq 1 "$ROUNDS"); do
    for s in A B; do
        env=$ENV_A
        [ $s = B ] && env=$ENV_B
        caught_up "$env" || exit 1
        base=$((base + 10000000000000))
        t0=$(cpu_ticks "$env")
        out=$(side "$env" pgbench -n -M prepared -T "$SECS" -c "$CLIENTS" -j "$J" \
            -f "$BENCH/pgbench/$SCRIPT" -D sku=hot -D n=0 -D base=$base 2>&1)
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
        xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        [ -n "$tps" ] && [ "${xacts:-0}" -gt 0 ] || { echo "ab.sh: pgbench failed on $s: $out" >&2; exit 1; }
        caught_up "$env" || exit 1
        sleep 0.5 # the backends' exit, reaped into the postmaster's cutime
        t1=$(cpu_ticks "$env")
        cpu=$(awk -v a="$t0" -v b="$t1" -v x="$xacts" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / x }')
        echo "round $r $s $tps tps, $cpu us CPU per transaction"
        if [ $s = A ]; then
            A+=("$tps")
            CA+=("$cpu")
        else
            B+=("$tps")
            CB+=("$cpu")
        fi
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ma=$(median "${A[@]}")
mb=$(median "${B[@]}")
ca=$(median "${CA[@]}")
cb=$(median "${CB[@]}")
awk -v a="$ma" -v b="$mb" -v ca="$ca" -v cb="$cb" -v s="$SCRIPT" -v c="$CLIENTS" -v r="$ROUNDS" -v t="$SECS" \
    'BEGIN { printf "%s, %d clients, %d rounds of %d s: median A %.0f tps, B %.0f tps (B/A %+.1f %%); CPU per transaction A %.1f us, B %.1f us (B/A %+.1f %%)\n", s, c, r, t, a, b, (b / a - 1) * 100, ca, cb, (cb / ca - 1) * 100 }'
