#!/usr/bin/env bash
# tests/bench/run.sh — hotstock against hot-row UPDATE, PostgreSQL's floor and
# Redis, in one run on one private cluster (`make bench`).
#
# What it measures (pgbench -M prepared, -T BENCH_SECONDS per cell, 1, 8, 32
# and 128 clients; scripts in tests/bench/pgbench/):
#   floor   SELECT 1                                     (the protocol floor)
#   hot     hot-row UPDATE, synchronous_commit on | off  (baseline: on)
#           hotstock.deduct on one SKU, hotstock.synchronous on | off
#           Redis 7 Lua check-and-decrement (EVALSHA, redis-benchmark),
#           appendfsync always | everysec
#   10k     the UPDATE and the deduct over 10,000 SKUs chosen at random
#   order   BEGIN; <stock>; INSERT INTO orders; COMMIT with the hot-row UPDATE
#           (baseline) or hotstock.deduct, and the INSERT alone (the floor)
# and, outside pgbench: in-process deducts/s through libhotstock
# (tests/bench/libbench, 1 and 2 threads), the drain's records/s on a backlog
# of BENCH_BACKLOG records, the daemon's recovery time per million queue
# records, the segment's bytes per SKU and per order.
#
# Every cell records tps, pgbench's average latency, p50, p99 and p99.9 (of
# the transactions pgbench logs, sampled at BENCH_SAMPLING; redis-benchmark's
# own for Redis) and context switches per transaction: the ctxt line of
# /proc/stat before and after the cell, over its transactions, machine-wide
# (every process counts, not only the benchmark's).
#
# Targets (hotstock's performance targets), evaluated at every
# client count run, PASS or MISS, reported and not enforced:
#   deduct sync on / hot-row UPDATE sync on      >= 1.0x at 1 client, >= 15x at more
#   deduct sync on / Redis Lua appendfsync always >= 0.8x at 1 client, >= 1.0x at more
#   deduct sync off / SELECT 1                   >= 0.8x
#   order txn with deduct / INSERT-only floor    >= 0.8x
#   deduct sync on and off: tps at 128 clients / at 32   >= 0.9x
#   deduct sync on: p50 at 1 client <= pg_test_fsync's fdatasync + 50 us
#   drain of the backlog: >= 100,000 records/s on one hot SKU, >= 250,000 on
#   10,000 SKUs
# and, informational only, order txn with deduct / with hot-row UPDATE >= 10x.
#
# Results (tests/bench/results/, or BENCH_OUT): results.md (the targets as a
# table of legs by client count with a PASS/MISS count, the cells with
# ratios, latency percentiles and cs/tx, libbench, drain, recovery, memory,
# perf), plot.png (tps against clients), raw.csv (one line per cell; columns
# group,scenario,label,clients,threads,seconds,tps,lat_avg_ms,p50_ms,p99_ms,
# transactions,failed,check,p999_ms,context_switches,cs_per_tx), machine.txt
# (cores, CPU, memory, kernel, versions, fdatasync latency), bench.log (this
# run's output) and, with BENCH_PERF=1, perf/SCENARIO-CLIENTS.txt.
#
# Knobs (environment):
#   BENCH_QUICK=1        -T 3, clients 1 and 32, one drain backlog: to try it out
#   BENCH_SECONDS=N      seconds per pgbench/redis cell (10; quick 3)
#   BENCH_CLIENTS="..."  client counts (1 8 32 128; quick 1 32)
#   BENCH_BACKLOG=N      drain backlog records (1000000)
#   BENCH_SAMPLING=F     fraction of transactions pgbench logs for the
#                        percentiles (0.1)
#   BENCH_ONLY=REGEX     run only the cells whose scenario matches (e.g.
#                        'select1|deduct_hot'); the drain/recovery part runs
#                        when REGEX matches 'drain', libbench when 'libbench'
#   BENCH_RUN_DIR, BENCH_PORT, BENCH_REDIS_PORT   where the private cluster
#                        (default <repo>/.run-bench, 55452) and Redis (56452)
#                        live: never the user's own cluster
#   BENCH_OUT=DIR        where the results go (tests/bench/results)
#   BENCH_KEEP=1         keep BENCH_RUN_DIR (logs, data) after the run
#   BENCH_PERF=1         profile the cells of BENCH_PERF_CELLS: a system-wide
#                        perf record -a -g -F 999 and perf stat -a over the
#                        middle half of each, written to perf/SCEN-CLIENTS.txt;
#                        those cells' figures include perf's cost (marked †).
#                        Off by default: no other cell runs beside perf
#   BENCH_PERF_CELLS="scenario@clients ..."   the cells BENCH_PERF=1 profiles
#                        (deduct_hot_off@32 deduct_hot_off@128 deduct_hot_on@1
#                        deduct_hot_on@128 order_deduct@1)
#   BENCH_HUGE=0         leave /dev/shm alone (default: as root, remount it
#                        huge=advise for the run so the segment gets 2 MB pages)
#
# Everything it starts (cluster, daemon, Redis, helper psql) is stopped on
# exit by the trap at the bottom of the setup section.  Exit status: 0 when
# every cell ran (targets may still MISS: they are reported, not enforced),
# 1 when the harness itself failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=$REPO/tests/bench
OUT=${BENCH_OUT:-$BENCH/results}

# The Makefile exports RUN_DIR (the user's cluster): the bench never uses it.
export RUN_DIR=${BENCH_RUN_DIR:-$REPO/.run-bench}
export HOTSTOCK_PORT=${BENCH_PORT:-55452}
REDIS_PORT=${BENCH_REDIS_PORT:-56452}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SECS=${BENCH_SECONDS:-3}
    CLIENTS=${BENCH_CLIENTS:-"1 32"}
else
    SECS=${BENCH_SECONDS:-10}
    CLIENTS=${BENCH_CLIENTS:-"1 8 32 128"}
fi
BACKLOG=${BENCH_BACKLOG:-1000000}
ONLY=${BENCH_ONLY:-}
SAMPLING=${BENCH_SAMPLING:-0.1} # fraction of transactions logged for p50/p99/p99.9
PERF=${BENCH_PERF:-0}
PERF_CELLS=${BENCH_PERF_CELLS:-"deduct_hot_off@32 deduct_hot_off@128 deduct_hot_on@1 deduct_hot_on@128 order_deduct@1"}
NPROC=$(nproc)
WORK=$RUN_DIR/bench # pgbench logs and scratch; not part of the results

# PG_CONFIG and its bindir as the Makefile and the scripts resolve them
# shellcheck source=scripts/lib.sh disable=SC1091  # followed with shellcheck -x from the top
. "$REPO/scripts/lib.sh"
PGBIN=$(pg_bindir)
export PATH=$PGBIN:$PATH

ME=bench
log() { printf '%s %s: %s\n' "$(date +%T)" "$ME" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# as_daemon CMD...: run CMD as the OS user of PostgreSQL and hotstockd (the
# segment's name carries that user's uid, so libhotstock programs must).
as_daemon() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

wanted() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }

for tool in pgbench psql redis-server redis-benchmark redis-cli gnuplot pg_test_fsync; do
    command -v "$tool" >/dev/null 2>&1 || MISSING_TOOL="${MISSING_TOOL:-} $tool"
done
if [ -n "${MISSING_TOOL:-}" ]; then
    log "missing:${MISSING_TOOL}; installing redis-server and gnuplot-nox"
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install redis-server gnuplot-nox"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        redis-server redis-tools gnuplot-nox >/dev/null
fi

if [ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1; then
    die "BENCH_PERF=1 needs perf (apt-get install linux-perf)"
fi

mkdir -p "$OUT"
rm -rf "$OUT/perf" # profiles of an earlier run would not match this one
exec > >(tee "$OUT/bench.log") 2>&1

# ---------------------------------------------------------------------------
# build, fresh cluster, cleanup trap
# ---------------------------------------------------------------------------

CLUSTER_STARTED=0
REDIS_PID=
PERF_PIDS=() # perf record and perf stat of the current cell (BENCH_PERF=1)
LOCK_PID=
SHM_RESTORE= # /dev/shm's huge= option to put back, when this run changed it

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PERF_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ -n "$LOCK_PID" ] && kill -0 "$LOCK_PID" 2>/dev/null; then
        psql -X -q -tA -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
            WHERE application_name = 'hotstock-bench-hold-drain'" >/dev/null 2>&1
        kill "$LOCK_PID" 2>/dev/null
        wait "$LOCK_PID" 2>/dev/null
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID"
        wait "$REDIS_PID" 2>/dev/null
    fi
    if [ "$CLUSTER_STARTED" = 1 ]; then
        log "stopping the cluster and the daemon in $RUN_DIR"
        bash "$REPO/scripts/cluster.sh" stop >/dev/null || log "cluster.sh stop failed (see $RUN_DIR)"
        if [ "${BENCH_KEEP:-0}" != 1 ]; then
            rm -rf "$RUN_DIR"
        fi
    fi
    if [ -n "$SHM_RESTORE" ]; then
        mount -o remount,huge="$SHM_RESTORE" /dev/shm || log "could not put /dev/shm back to huge=$SHM_RESTORE"
    fi
    [ $rc -eq 0 ] || log "failed (exit $rc); output in $OUT/bench.log"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Huge pages for the segment (BENCH_HUGE=1, the default): hotstockd asks for
# them (MADV_HUGEPAGE), which tmpfs grants only when /dev/shm is mounted
# huge=advise (README, "Huge pages").  As root the run remounts /dev/shm so
# for its duration and puts the old option back at exit; machine.txt says
# which page size the run had.  BENCH_HUGE=0 measures 4 kB pages.
if [ "${BENCH_HUGE:-1}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
    shm_huge=$(findmnt -no OPTIONS /dev/shm 2>/dev/null | tr ',' '\n' | sed -n 's/^huge=//p' | tail -n 1)
    case "${shm_huge:-never}" in
    advise | within_size | always) ;;
    *)
        if mount -o remount,huge=advise /dev/shm; then
            SHM_RESTORE=${shm_huge:-never}
            log "/dev/shm remounted huge=advise for this run (was huge=${shm_huge:-never})"
        else
            log "warning: could not remount /dev/shm huge=advise: the segment uses 4 kB pages"
        fi
        ;;
    esac
fi

cd "$REPO"
log "building and installing (scripts/setup.sh)"
bash scripts/setup.sh >"$OUT/setup.out" 2>&1 || {
    cat "$OUT/setup.out" >&2
    die "scripts/setup.sh failed"
}
# the bench's C programs are built by the Makefile (make all, which
# setup.sh ran), with header dependencies
make -s tests/bench/hsprobe tests/bench/backlog tests/bench/libbench tests/bench/syncprobe 2>/dev/null ||
    die "building tests/bench/hsprobe, backlog, libbench or syncprobe failed (run make)"
HAVE_LIBBENCH=1

# dsync_us: microseconds per 8 kB O_DSYNC write in $RUN_DIR (200 writes):
# a quick look at the disk's flush latency, taken at the start and at the
# end of the run, because on a shared machine it drifts.
dsync_us() {
    local f=$RUN_DIR/dsync_probe.tmp secs
    secs=$(LC_ALL=C dd if=/dev/zero of="$f" bs=8k count=200 oflag=dsync 2>&1 |
        sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p')
    rm -f "$f"
    awk -v s="${secs:-0}" 'BEGIN {printf "%.0f", s / 200 * 1e6}'
}

# machine.txt first, before anything of ours runs
log "machine facts and fdatasync latency (pg_test_fsync) -> $OUT/machine.txt"
mkdir -p "$RUN_DIR"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $NPROC"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
    echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
    echo "kernel: $(uname -sr)"
    # shellcheck disable=SC1091  # the running system's, not ours
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "postgresql: $("$PGBIN/postgres" --version)"
    echo "pgbench: $(pgbench --version)"
    echo "redis: $(redis-server --version)"
    echo "filesystem of $RUN_DIR: $(df -hT "$RUN_DIR" | awk 'NR == 2 {print $2 " on " $1 ", " $5 " used"}')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
DSYNC_START=$(dsync_us)
pg_test_fsync -s 1 -f "$RUN_DIR/pg_test_fsync.tmp" >"$RUN_DIR/pg_test_fsync.out" 2>&1 ||
    log "pg_test_fsync failed; see machine.txt"
rm -f "$RUN_DIR/pg_test_fsync.tmp"
# "fdatasync  N ops/sec  M usecs/op" of the one-8kB-write section
FDATASYNC_US=$(awk '/one 8kB write/ {s = 1} s && $1 == "fdatasync" {print $(NF - 1); exit}' \
    "$RUN_DIR/pg_test_fsync.out")
# what a 512-byte write + fdatasync costs appended to a growing file (the
# queue's way) against an overwrite (PostgreSQL's WAL's, pg_test_fsync's)
"$BENCH/syncprobe" "$RUN_DIR" 1000 >"$RUN_DIR/syncprobe.out" 2>&1 ||
    log "syncprobe failed: $(cat "$RUN_DIR/syncprobe.out")"
SYNC_APPEND_US=$(sed -n 's/^append_us=//p' "$RUN_DIR/syncprobe.out")
SYNC_OVERWRITE_US=$(sed -n 's/^overwrite_us=//p' "$RUN_DIR/syncprobe.out")
{
    echo "fdatasync latency (pg_test_fsync, one 8kB write): ${FDATASYNC_US:-?} usecs/op"
    echo "512-byte write + fdatasync (tests/bench/syncprobe, 1000 each): ${SYNC_APPEND_US:-?} µs appended to a growing file, ${SYNC_OVERWRITE_US:-?} µs overwriting a written file, $(sed -n 's/^fallocate_us=//p' "$RUN_DIR/syncprobe.out") µs into a posix_fallocate'd one"
    echo
    echo "---- pg_test_fsync -s 1 ----"
    cat "$RUN_DIR/pg_test_fsync.out"
} >>"$OUT/machine.txt"

log "fresh private cluster in $RUN_DIR (port $HOTSTOCK_PORT)"
bash scripts/cluster.sh stop >/dev/null 2>&1 || true
rm -rf "$RUN_DIR"
CLUSTER_STARTED=1
PGOPTIONS='-c client_min_messages=warning' bash scripts/cluster.sh start ||
    die "scripts/cluster.sh start failed"
# shellcheck disable=SC1091
. "$RUN_DIR/env"
[ "$PGPORT" = "$HOTSTOCK_PORT" ] || die "the cluster listens on $PGPORT, not $HOTSTOCK_PORT"
mkdir -p "$WORK"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

# The order index: BENCH_ORDER_CAPACITY slots of 128 bytes (default 2^22:
# 512 MiB, prefaulted).  Not bigger: every backend maps the segment with 4
# kB pages and takes a page fault for each page of the index it first
# touches, and a new order id lands on a random page, so a huge index costs
# each backend a fault per deduct for as long as the run lasts (measured:
# 2^25 slots halves deduct tps at 32 clients).  The evictor empties drained
# orders online after BENCH_ORDER_RETENTION seconds (make_room waits for
# it between cells when the next cell might pass half full); a deduct of a
# new order id reads the evicted-order filter and never hotstock.ledger
# unless the filter names it.  Everything else keeps the daemon's defaults.
ORDER_CAPACITY=${BENCH_ORDER_CAPACITY:-4194304}
ORDER_RETENTION=${BENCH_ORDER_RETENTION:-10}
as_daemon sh -c "printf 'order_capacity = %s\norder_retention = %s\n' $ORDER_CAPACITY $ORDER_RETENTION >>'$HOTSTOCK_DIR/hotstockd.conf'"
bash scripts/cluster.sh restart >/dev/null || die "scripts/cluster.sh restart failed"

MAXCONN=$(psql_q -c 'SHOW max_connections')
read -r -a CLIENT_LIST <<<"$CLIENTS"
MAXCLIENTS=$(printf '%s\n' "${CLIENT_LIST[@]}" | sort -n | tail -n 1)
[ "$MAXCONN" -ge $((MAXCLIENTS + 10)) ] ||
    die "max_connections = $MAXCONN is too small for $MAXCLIENTS clients"
PGOPTIONS='-c client_min_messages=warning' psql_q -f "$BENCH/setup.sql" >/dev/null || die "tests/bench/setup.sql failed"
prefault() {
    log "segment pages: $(as_daemon "$BENCH/hsprobe" prefault "$HOTSTOCK_DIR")"
}
prefault
{
    # Huge pages matter here: with 4 kB pages every backend that touches a
    # random order-index page pays a TLB (on a VM, shadow page table) miss
    # that grows with the number of processes mapping the segment.
    echo "segment pages: /dev/shm mounted $(findmnt -no OPTIONS /dev/shm 2>/dev/null | tail -n 1); $(grep -E '^ShmemHugePages' /proc/meminfo | tr -s ' ') after prefault"
    echo "postgresql settings: $(psql_q -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'max_connections', 'synchronous_commit', 'wal_sync_method', 'max_wal_size', 'hotstock.synchronous', 'hotstock.drain_batch_size', 'hotstock.drain_naptime')")"
} >>"$OUT/machine.txt"

# status KEY: one field of `hsprobe status` (the daemon's segment)
hs_status() {
    as_daemon "$BENCH/hsprobe" status "$HOTSTOCK_DIR" >"$WORK/status" ||
        die "hsprobe status $HOTSTOCK_DIR failed"
}
status_field() { sed -n "s/^$1=//p" "$WORK/status"; }

# wait_drained SECONDS: until the drain applied everything written so far;
# 1 (with a warning) when SECONDS pass first
wait_drained() {
    local limit=$1 i=0 next applied
    while :; do
        hs_status
        next=$(status_field next_lsn)
        applied=$(status_field applied_lsn)
        [ "$applied" -ge $((next - 1)) ] && return 0
        i=$((i + 1))
        if [ "$i" -ge $((limit * 10)) ]; then
            log "warning: the drain did not catch up in $limit s (applied_lsn $applied, next_lsn $next)"
            return 1
        fi
        sleep 0.1
    done
}

# hsd COMMAND...: hotstockd as the daemon's user
hsd() { as_daemon "$(command -v hotstockd || echo "$REPO/shmd/hotstockd")" "$@"; }

# make_room NEEDED: when fewer than NEEDED order slots would stay under
# half the capacity, let the drain catch up and wait (bounded) for the
# evictor to empty the drained orders.  Between cells only.
make_room() {
    local needed=$1 count cap i
    hs_status
    count=$(status_field order_count)
    cap=$(status_field order_capacity)
    [ $((count + needed)) -le $((cap / 2)) ] && return 0
    log "order index at $count of $cap slots: waiting for the drain and the evictor"
    wait_drained 300 || true
    for i in $(seq 1 $(((ORDER_RETENTION + 30) * 10))); do
        hs_status
        [ $(($(status_field order_count) + needed)) -le $((cap / 2)) ] && break
        sleep 0.1
    done
    log "order index now: $(status_field order_count) of $cap slots"
}

# ---------------------------------------------------------------------------
# pgbench cells
# ---------------------------------------------------------------------------

RAW=$OUT/raw.csv
echo "group,scenario,label,clients,threads,seconds,tps,lat_avg_ms,p50_ms,p99_ms,transactions,failed,check,p999_ms,context_switches,cs_per_tx" >"$RAW"
CELL=0
CELL_ERRORS=0

# stock_units SCENARIO: the counter the scenario takes units from (its
# decrease must equal the transactions pgbench counted), or nothing.
stock_units() {
    case $1 in
        update_hot_* | order_update) psql_q -c "SELECT qty FROM stock_plain WHERE sku = 'hot'" ;;
        update_10k_*) psql_q -c "SELECT sum(qty) FROM stock_plain WHERE sku <> 'hot'" ;;
        deduct_hot_* | order_deduct) psql_q -c "SELECT hotstock.available('hot')" ;;
        deduct_10k_*) psql_q -c "SELECT sum(hotstock.available(g::text)) FROM generate_series(1, 10000) g" ;;
        order_insert) psql_q -c "SELECT -count(*) FROM orders" ;;
        *) echo "" ;;
    esac
}

# percentiles DIR: "p50_ms p99_ms p999_ms" of the sampled per-transaction
# log (nearest rank: the smallest latency with at least that fraction of
# the samples at or below it; "nan nan nan" without samples)
percentiles() {
    cat "$1"/log.* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n |
        awk 'function rank(q, i) {i = int(NR * q); if (i < NR * q) i++; return (i < 1 ? 1 : i)}
             {v[NR] = $1}
             END {
                 if (NR == 0) {print "nan nan nan"; exit}
                 printf "%.3f %.3f %.3f\n", v[rank(0.50)] / 1000, v[rank(0.99)] / 1000, v[rank(0.999)] / 1000
             }'
}

# ctxt: context switches since boot, all CPUs (the ctxt line of /proc/stat).
# A cell's delta over its transactions is machine-wide: it counts every
# process's switches (PostgreSQL, hotstockd, pgbench or redis-benchmark,
# and anything else running on the machine).
ctxt() { awk '$1 == "ctxt" {print $2}' /proc/stat; }

# cs_per_tx DELTA TRANSACTIONS: "-" when nothing was counted
cs_per_tx() { awk -v d="$1" -v n="$2" 'BEGIN {if (n > 0) printf "%.2f", d / n; else print "-"}'; }

# ---- perf evidence (BENCH_PERF=1), for the cells named in BENCH_PERF_CELLS
# ("scenario@clients").  perf_start starts, beside the cell's load, a
# system-wide `perf record -a -g -F 999` and `perf stat -a` that count from
# a quarter to three quarters of the cell (their -D delay, then the rest of
# a sleep); perf_finish waits for both and writes $OUT/perf/SCEN-CLIENTS.txt
# (perf stat, then perf report's top entries and call chains).  Only these
# cells run beside perf, and their figures include its cost.

PERF_DONE=()   # cells with a profile in $OUT/perf
PERF_FAILED=() # cells whose perf failed
PERF_WINDOW=

# clients_text N: "1 client", "N clients"
clients_text() { if [ "$1" = 1 ]; then echo "1 client"; else echo "$1 clients"; fi; }

perf_wanted() { [ "$PERF" = 1 ] && [[ " $PERF_CELLS " == *" $1@$2 "* ]]; }

# perf_start SCENARIO CLIENTS CELL_SECONDS
perf_start() {
    perf_wanted "$1" "$2" || return 0
    local delay_ms total
    delay_ms=$(awk -v s="$3" 'BEGIN {printf "%d", s * 250}')
    total=$(awk -v s="$3" 'BEGIN {printf "%.3f", s * 0.75}')
    PERF_WINDOW=$(awk -v d="$delay_ms" -v t="$total" 'BEGIN {printf "from %.2f s to %.2f s", d / 1000, t}')
    rm -f "$WORK/perf.data" "$WORK/perf.data.old" "$WORK/perf.stat"
    perf record -a -g -F 999 -D "$delay_ms" -o "$WORK/perf.data" -- sleep "$total" \
        >"$WORK/perf.record.log" 2>&1 &
    PERF_PIDS+=($!)
    perf stat -a -D "$delay_ms" -e context-switches,cpu-migrations,task-clock \
        -o "$WORK/perf.stat" -- sleep "$total" >"$WORK/perf.stat.log" 2>&1 &
    PERF_PIDS+=($!)
}

# perf_finish SCENARIO CLIENTS: after the cell; nothing when perf_start did not start
perf_finish() {
    [ "${#PERF_PIDS[@]}" -gt 0 ] || return 0
    local pid rc=0 f=$OUT/perf/$1-$2.txt
    for pid in "${PERF_PIDS[@]}"; do
        wait "$pid" || rc=$?
    done
    PERF_PIDS=()
    if [ $rc -ne 0 ] || [ ! -s "$WORK/perf.data" ]; then
        log "perf of $1 at $(clients_text "$2") failed (exit $rc): $(tail -n 2 "$WORK/perf.record.log" "$WORK/perf.stat.log" 2>/dev/null | tr '\n' ' ')"
        PERF_FAILED+=("$1@$2")
        rm -f "$WORK/perf.data" "$WORK/perf.data.old" "$WORK/perf.stat"
        return 0
    fi
    # perf report's padding and empty IPC columns, cut at the line's end
    local trim='s/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//'
    perf report -i "$WORK/perf.data" --no-children --sort comm,dso,symbol --stdio -g none \
        2>/dev/null | sed -E "$trim" >"$WORK/perf.flat" || true
    perf report -i "$WORK/perf.data" --no-children --sort comm,dso,symbol --stdio \
        --percent-limit 5 2>/dev/null | sed -E "$trim" >"$WORK/perf.graph" || true
    mkdir -p "$OUT/perf"
    {
        echo "# $1, $(clients_text "$2"): system-wide (every process on the machine), $PERF_WINDOW of a $SECS s cell"
        echo
        echo "## perf stat -a -e context-switches,cpu-migrations,task-clock"
        grep -v -e '^#' -e '^[[:space:]]*$' "$WORK/perf.stat" | sed -E "$trim" || true
        echo
        echo "## perf record -a -g -F 999; perf report --no-children --sort comm,dso,symbol -g none (top 40)"
        echo
        grep -E '^# (Samples|Event count)' "$WORK/perf.flat" || true
        grep -v -e '^#' -e '^$' "$WORK/perf.flat" | head -n 40 || true
        echo
        echo "## call chains of the entries over 5 % (perf report --no-children --sort comm,dso,symbol --percent-limit 5)"
        echo
        grep -v '^#' "$WORK/perf.graph" | cat -s | head -n 200 || true
    } >"$f"
    rm -f "$WORK/perf.data" "$WORK/perf.data.old" "$WORK/perf.stat" "$WORK/perf.flat" "$WORK/perf.graph"
    PERF_DONE+=("$1@$2")
    log "perf of $1 at $(clients_text "$2"): $f"
}

# run_pg GROUP SCENARIO LABEL SCRIPT CLIENTS [PGOPTIONS]
run_pg() {
    local group=$1 scen=$2 label=${3//,/;} script=$BENCH/pgbench/$4 c=$5 opts=${6:-}
    wanted "$scen" || return 0
    CELL=$((CELL + 1))
    local j=$((c < NPROC ? c : NPROC))
    local dir=$WORK/$scen-$c
    rm -rf "$dir"
    mkdir -p "$dir"
    # same start for every cell: no dirty buffers, no dead tuples, no orders
    case $scen in
        order_*) psql_q -c "TRUNCATE orders" ;;
    esac
    psql_q -c "VACUUM stock_plain" -c "CHECKPOINT"
    case $scen in
        deduct_* | order_deduct)
            # room for 100,000 deductions per second of the cell
            make_room $((SECS * 100000))
            wait_drained 120 || true
            ;;
    esac
    local before after cs0 cs1 rc=0
    before=$(stock_units "$scen")
    log "$scen: $c clients, $SECS s"
    cs0=$(ctxt)
    perf_start "$scen" "$c" "$SECS"
    PGOPTIONS="$opts" pgbench -n -M prepared -T "$SECS" -c "$c" -j "$j" -f "$script" \
        -D sku=hot -D n=0 -D base=$((CELL * 1000000000000)) \
        -l --sampling-rate="$SAMPLING" --log-prefix="$dir/log" >"$dir/out" 2>&1 || rc=$?
    cs1=$(ctxt)
    after=$(stock_units "$scen")
    local tps lat xacts failed p50 p99 p999 cspt check
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$dir/out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$dir/out")
    xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/out")
    read -r p50 p99 p999 < <(percentiles "$dir")
    cspt=$(cs_per_tx $((cs1 - cs0)) "${xacts:-0}")
    if [ $rc -ne 0 ] || [ -z "$tps" ]; then
        log "$scen with $c clients: pgbench exit $rc:"
        grep -v '^pgbench: client [0-9]* receiving' "$dir/out" | tail -n 8 >&2
        CELL_ERRORS=$((CELL_ERRORS + 1))
        check="pgbench error (exit $rc)"
    elif [ -n "$before" ]; then
        local taken=$((before - after))
        if [ "$taken" -eq "${xacts:-0}" ]; then
            check=ok
        else
            check="units taken $taken != transactions $xacts"
            log "$scen with $c clients: $check"
        fi
    else
        check=-
    fi
    echo "$group,$scen,$label,$c,$j,$SECS,${tps:-0},${lat:-nan},$p50,$p99,${xacts:-0},${failed:-0},$check,$p999,$((cs1 - cs0)),$cspt" >>"$RAW"
    log "$scen: $c clients: ${tps:-0} tps, p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, $cspt cs/tx ($check)"
    perf_finish "$scen" "$c"
    rm -rf "$dir"
}

for c in $CLIENTS; do
    run_pg floor select1 "SELECT 1" select1.sql "$c"
done
for c in $CLIENTS; do
    run_pg hot update_hot_on "hot-row UPDATE (synchronous_commit on)" update_hot.sql "$c"
done
for c in $CLIENTS; do
    run_pg hot update_hot_off "hot-row UPDATE (synchronous_commit off)" update_hot.sql "$c" \
        "-c synchronous_commit=off"
done
for c in $CLIENTS; do
    run_pg hot deduct_hot_on "hotstock.deduct 1 SKU (synchronous on)" deduct_hot.sql "$c" \
        "-c hotstock.synchronous=on"
done
for c in $CLIENTS; do
    run_pg hot deduct_hot_off "hotstock.deduct 1 SKU (synchronous off)" deduct_hot.sql "$c" \
        "-c hotstock.synchronous=off"
done
for c in $CLIENTS; do
    run_pg 10k update_10k_on "UPDATE 1 of 10k rows (synchronous_commit on)" update_10k.sql "$c"
done
for c in $CLIENTS; do
    run_pg 10k update_10k_off "UPDATE 1 of 10k rows (synchronous_commit off)" update_10k.sql \
        "$c" "-c synchronous_commit=off"
done
for c in $CLIENTS; do
    run_pg 10k deduct_10k_on "hotstock.deduct 10k SKUs (synchronous on)" deduct_10k.sql "$c" \
        "-c hotstock.synchronous=on"
done
for c in $CLIENTS; do
    run_pg 10k deduct_10k_off "hotstock.deduct 10k SKUs (synchronous off)" deduct_10k.sql "$c" \
        "-c hotstock.synchronous=off"
done
for c in $CLIENTS; do
    run_pg order order_update "order txn: hot-row UPDATE + INSERT" order_update.sql "$c"
done
for c in $CLIENTS; do
    run_pg order order_deduct "order txn: hotstock.deduct + INSERT" order_deduct.sql "$c" \
        "-c hotstock.synchronous=on"
done
for c in $CLIENTS; do
    run_pg order order_insert "order txn: INSERT alone (floor)" order_insert.sql "$c"
done

# ---------------------------------------------------------------------------
# Redis: a private instance, Lua check-and-decrement by EVALSHA
# ---------------------------------------------------------------------------

REDIS_LUA="local v = tonumber(redis.call('GET', KEYS[1]) or '-1')
if v >= tonumber(ARGV[1]) then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return -1"

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# redis_bench CLIENTS THREADS N: "rps avg p50 p99 p999" of N EVALSHA calls,
# from redis-benchmark's report (its --csv has no p99.9): the summary's
# throughput, avg, p50 and p99, and p99.9 as the first line of "Latency by
# percentile distribution" at or above 99.9 % (an HDR histogram bucket)
redis_bench() {
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$1" --threads "$2" -n "$3" \
        EVALSHA "$REDIS_SHA" 1 hot 1 2>/dev/null | tr '\r' '\n' |
        awk '/^Latency by percentile distribution/ {dist = 1; next}
             /^Cumulative distribution/ {dist = 0}
             dist && p999 == "" && $2 == "<=" && $1 + 0 >= 99.9 {p999 = $3}
             /throughput summary:/ {rps = $3}
             /latency summary/ {getline; getline; avg = $1; p50 = $3; p99 = $5}
             END {if (rps != "") print rps, avg, p50, p99, (p999 == "" ? "nan" : p999)}'
}

# run_redis SCENARIO LABEL APPENDFSYNC CLIENTS
run_redis() {
    local scen=$1 label=${2//,/;} fsync=$3 c=$4
    wanted "$scen" || return 0
    local j=$((c < NPROC ? c : NPROC)) rps avg p50 p99 p999 n before after cs0 cs1 check
    rcli config set appendfsync "$fsync" >/dev/null
    rcli bgrewriteaof >/dev/null # keep the AOF from growing across cells
    sleep 0.5
    # a short calibration run sizes -n for about SECS seconds
    read -r rps _ < <(redis_bench "$c" "$j" $((c * 100 > 5000 ? c * 100 : 5000)))
    n=$(awk -v r="${rps:-1000}" -v s="$SECS" 'BEGIN {n = int(r * s); print (n < 1000 ? 1000 : n)}')
    before=$(rcli get hot)
    log "$scen: $c clients, $n calls"
    cs0=$(ctxt)
    perf_start "$scen" "$c" "$SECS"
    read -r rps avg p50 p99 p999 < <(redis_bench "$c" "$j" "$n")
    cs1=$(ctxt)
    after=$(rcli get hot)
    if [ -z "${rps:-}" ]; then
        check="redis-benchmark error"
        CELL_ERRORS=$((CELL_ERRORS + 1))
    elif [ $((before - after)) -eq "$n" ]; then
        check=ok
    else
        check="units taken $((before - after)) != calls $n"
    fi
    local secs
    secs=$(awk -v n="$n" -v r="${rps:-0}" 'BEGIN {printf "%.1f", (r > 0 ? n / r : 0)}')
    local cspt
    cspt=$(cs_per_tx $((cs1 - cs0)) "$([ -n "${rps:-}" ] && echo "$n" || echo 0)")
    echo "hot,$scen,$label,$c,$j,$secs,${rps:-0},${avg:-nan},${p50:-nan},${p99:-nan},$n,0,$check,${p999:-nan},$((cs1 - cs0)),$cspt" >>"$RAW"
    log "$scen: $c clients: ${rps:-0} calls/s, p50 ${p50:-nan} ms, p99 ${p99:-nan} ms, p99.9 ${p999:-nan} ms, $cspt cs/tx ($check)"
    perf_finish "$scen" "$c"
}

if wanted redis_always || wanted redis_everysec; then
    if rcli ping >/dev/null 2>&1; then
        die "something already answers on 127.0.0.1:$REDIS_PORT; set BENCH_REDIS_PORT"
    fi
    mkdir -p "$RUN_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis/redis.log" --daemonize no \
        --save '' --appendonly yes --appendfsync always >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
        rcli ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    rcli ping >/dev/null 2>&1 || die "redis-server did not answer on port $REDIS_PORT (log: $RUN_DIR/redis/redis.log)"
    rcli set hot 1000000000000000 >/dev/null
    REDIS_SHA=$(rcli script load "$REDIS_LUA")
    for c in $CLIENTS; do
        run_redis redis_always "Redis Lua decrement (appendfsync always)" always "$c"
    done
    for c in $CLIENTS; do
        run_redis redis_everysec "Redis Lua decrement (appendfsync everysec)" everysec "$c"
    done
    rcli shutdown nosave >/dev/null 2>&1 || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
fi

# ---------------------------------------------------------------------------
# in-process deducts through libhotstock (tests/bench/libbench)
# ---------------------------------------------------------------------------

LIBBENCH_LINES=()
LIBBENCH_OUT=$WORK/libbench.out
: >"$LIBBENCH_OUT"
if [ "$HAVE_LIBBENCH" = 1 ] && wanted libbench; then
    # its own private daemon (a temporary directory, 4M order slots): a
    # run of millions of order ids must not fill the cluster's order index
    log "libbench: 1 and 2 threads, one hot SKU, $SECS s per cell, private daemon"
    if as_daemon env HOTSTOCKD="$REPO/shmd/hotstockd" "$BENCH/libbench" -s "$SECS" \
        >"$LIBBENCH_OUT" 2>&1; then
        LIBBENCH_LINES+=("tests/bench/libbench -s $SECS (its own daemon in a temporary directory):")
    else
        LIBBENCH_LINES+=("tests/bench/libbench -s $SECS failed:")
        CELL_ERRORS=$((CELL_ERRORS + 1))
    fi
    cat "$LIBBENCH_OUT" >&2
elif [ "$HAVE_LIBBENCH" = 0 ]; then
    LIBBENCH_LINES+=("tests/bench/libbench.c is not there: not measured")
fi

# ---------------------------------------------------------------------------
# drain throughput and recovery time, on a held-back backlog
# ---------------------------------------------------------------------------
#
# The drain is held back by a transaction that holds ACCESS EXCLUSIVE locks
# on its tables (it blocks at its first statement); `backlog` then puts
# BENCH_BACKLOG deductions into the queue through libhotstock.  Recovery:
# the daemon is killed (SIGKILL) with that backlog not yet drained, so a
# restart replays it; `hotstockd start` is timed until a READY segment of
# the next generation answers.  Drain: the lock is released and the time
# until hotstock.drain_state.applied_lsn reaches the backlog's last LSN
# gives records/s.

DRAIN_LINES=()
RECOVERY_LINES=()
DRAIN_HOT_RATE=
DRAIN_10K_RATE=

# hold_drain: a session takes ACCESS EXCLUSIVE locks on the drain's tables
# and sleeps in that transaction; release_drain cancels its sleep (the
# transaction aborts, the locks go).  No pipe to the session: programs
# started meanwhile (a restarted daemon) must not inherit anything of it.
LOCK_APP=hotstock-bench-hold-drain
hold_drain() {
    PGAPPNAME=$LOCK_APP psql -X -q -tA -v ON_ERROR_STOP=1 \
        -c "SET lock_timeout = '60s'" -c "BEGIN" \
        -c "LOCK TABLE hotstock.drain_state, hotstock.ledger, hotstock.stock IN ACCESS EXCLUSIVE MODE" \
        -c "SELECT pg_sleep(3600)" >"$WORK/lock.out" 2>&1 </dev/null &
    LOCK_PID=$!
    local i
    for i in $(seq 600); do
        LOCK_BACKEND=$(psql_q -c "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE a.application_name = '$LOCK_APP' AND l.granted AND l.mode = 'AccessExclusiveLock'
              AND l.relation = 'hotstock.drain_state'::regclass")
        [ -n "$LOCK_BACKEND" ] && return 0
        kill -0 "$LOCK_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$WORK/lock.out" >&2
    die "could not lock the drain's tables"
}

release_drain() {
    [ "$(psql_q -c "SELECT pg_cancel_backend($LOCK_BACKEND)")" = t ] ||
        die "could not cancel the session holding the drain's tables (pid $LOCK_BACKEND)"
    wait "$LOCK_PID" 2>/dev/null || true # it ends with "canceling statement"
    LOCK_PID=
}

now_ns() { date +%s%N; }

# measure_recovery: kill the daemon, restart it, time until READY
measure_recovery() {
    hs_status
    local pid gen next ckpt applied from replay t0 t1
    pid=$(status_field daemon_pid)
    gen=$(status_field generation)
    next=$(status_field next_lsn)
    ckpt=$(status_field checkpoint_lsn)
    applied=$(status_field applied_lsn)
    from=$((ckpt < applied ? ckpt : applied))
    replay=$((next - 1 - from))
    log "recovery: SIGKILL hotstockd (pid $pid); $replay records after min(checkpoint_lsn $ckpt, applied_lsn $applied)"
    kill -KILL "$pid"
    local i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && die "hotstockd pid $pid survived SIGKILL"
    t0=$(now_ns)
    hsd start -D "$HOTSTOCK_DIR" >"$WORK/restart.out" 2>&1 || {
        cat "$WORK/restart.out" >&2
        die "hotstockd start -D $HOTSTOCK_DIR failed after SIGKILL"
    }
    as_daemon "$BENCH/hsprobe" wait-ready "$HOTSTOCK_DIR" $((gen + 1)) 600000 >/dev/null ||
        die "no READY segment after the restart"
    t1=$(now_ns)
    local secs per_m
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    per_m=$(awk -v s="$secs" -v r="$replay" 'BEGIN {printf "%.3f", (r > 0 ? s / r * 1e6 : 0)}')
    RECOVERY_LINES+=("restart after SIGKILL: $secs s to READY with $replay queue records to replay -> $per_m s per million records")
    local logline
    logline=$(grep -hiE 'recovery done|replayed' "$HOTSTOCK_DIR"/*.log 2>/dev/null | tail -n 2 |
        sed 's/^.* LOG: *//' | paste -sd';' - || true)
    [ -n "$logline" ] && RECOVERY_LINES+=("the daemon's log: $logline")
    log "recovery: $secs s ($per_m s per million records)"
    prefault
}

# drain_run NAME NSKUS SKU_PREFIX RECOVER(0|1)
drain_run() {
    local name=$1 nskus=$2 prefix=$3 recover=$4
    make_room "$BACKLOG"
    wait_drained 300 || true
    hold_drain
    hs_status
    local a0 out last secs_fill t0 t1 secs rate
    a0=$(status_field applied_lsn)
    log "drain ($name): $BACKLOG records into the queue while the drain is held"
    out=$(as_daemon "$BENCH/backlog" "$HOTSTOCK_DIR" "$BACKLOG" "$nskus" "$prefix" "bl-$name-") ||
        die "backlog failed: $out"
    last=$(echo "$out" | sed -n 's/^last_lsn=//p')
    secs_fill=$(echo "$out" | sed -n 's/^seconds=//p')
    hs_status
    [ "$(status_field applied_lsn)" = "$a0" ] ||
        log "warning: applied_lsn moved while the drain was held ($a0 -> $(status_field applied_lsn))"
    [ "$recover" = 1 ] && measure_recovery
    t0=$(now_ns)
    release_drain
    psql_q -c "SET statement_timeout = '600s'" -c "DO \$\$
        BEGIN
            WHILE coalesce((SELECT max(applied_lsn) FROM hotstock.drain_state), 0) < $last LOOP
                PERFORM pg_sleep(0.005);
            END LOOP;
        END \$\$" || die "the drain did not reach LSN $last"
    t1=$(now_ns)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    rate=$(awk -v s="$secs" -v n="$((last - a0))" 'BEGIN {printf "%.0f", n / s}')
    DRAIN_LINES+=("$name: $((last - a0)) records drained in $secs s = $rate records/s (queue filled at $(echo "$out" | sed -n 's/^records_per_s=//p') records/s in $secs_fill s by one libhotstock thread)")
    log "drain ($name): $rate records/s"
    case $name in
        "one hot SKU") DRAIN_HOT_RATE=$rate ;;
        "10k SKUs") DRAIN_10K_RATE=$rate ;;
    esac
    return 0
}

if wanted drain; then
    drain_run "one hot SKU" 1 hot 1
    [ "$QUICK" = 1 ] || drain_run "10k SKUs" 10000 "" 0
fi

# the deduct again, now that the daemon has restarted: a restart must not
# make deducts of new order ids slower (recovery keeps the evicted-order
# filter; no ledger look-up unless the filter names the id)
if wanted drain && grep -q 'restart after SIGKILL' <<<"${RECOVERY_LINES[*]:-}"; then
    run_pg hot deduct_hot_on_restarted "hotstock.deduct 1 SKU (synchronous on) after a daemon restart" \
        deduct_hot.sql 32 "-c hotstock.synchronous=on"
    run_pg hot deduct_hot_off_restarted "hotstock.deduct 1 SKU (synchronous off) after a daemon restart" \
        deduct_hot.sql 32 "-c hotstock.synchronous=off"
fi

# memory of the segment
hs_status
SIZES=$(as_daemon "$BENCH/hsprobe" sizes)
SKU_BYTES=$(echo "$SIZES" | sed -n 's/^sku_slot_bytes=//p')
ORDER_BYTES=$(echo "$SIZES" | sed -n 's/^order_slot_bytes=//p')
RING_BYTES=$(echo "$SIZES" | sed -n 's/^ring_slot_bytes=//p')
# shellcheck disable=SC2012  # names are hotstock.<uid>.<hex>: nothing to quote
SEG_FILE=$(ls -t /dev/shm/hotstock.* 2>/dev/null | head -n 1 || true)
SEG_BYTES=$([ -n "$SEG_FILE" ] && stat -c %s "$SEG_FILE" || echo 0)
MEMORY_LINES=(
    "SKU: $SKU_BYTES bytes per slot (capacity $(status_field sku_capacity), $(status_field sku_count) used)"
    "order: $ORDER_BYTES bytes per slot (capacity $(status_field order_capacity), $(status_field order_count) used)"
    "queue ring: $RING_BYTES bytes per slot (capacity $(status_field ring_capacity))"
    "segment: $SEG_BYTES bytes in all ($(awk -v b="$SEG_BYTES" 'BEGIN {printf "%.1f", b / 1048576}') MiB, ${SEG_FILE:-not found})"
)

# ---------------------------------------------------------------------------
# report: results.md and plot.png
# ---------------------------------------------------------------------------

log "writing $OUT/results.md and $OUT/plot.png"
DSYNC_END=$(dsync_us)
{
    echo
    echo "8 kB O_DSYNC write (dd, 200 writes): ${DSYNC_START} µs at the start of the run, ${DSYNC_END} µs at the end"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$OUT/machine.txt"

# ---- targets, at every client count run (hotstock's performance
# targets).  One row per leg, one column per client count and one for
# what does not depend on clients (the drain).  A cell holds the measured
# figure and PASS or MISS against the leg's target at that client count;
# "—" where the leg has none there; "not measured" where a cell it needs
# did not run.  N_PASS, N_MISS and N_UNMEASURED count the cells of the
# counted rows; an informational row's verdicts are in lower case and
# parentheses and counted nowhere.

# field_of SCENARIO CLIENTS COLUMN: one field of the cell's line of raw.csv
field_of() { awk -F, -v s="$1" -v c="$2" -v k="$3" '$2 == s && $4 == c {print $k; exit}' "$RAW"; }
tps_of() { field_of "$1" "$2" 7; }

mapfile -t CLIENTS_SORTED < <(printf '%s\n' "${CLIENT_LIST[@]}" | sort -n -u)
has_clients() { [[ " ${CLIENTS_SORTED[*]} " == *" $1 "* ]]; }
TARGET_ROWS=()
N_PASS=0
N_MISS=0
N_UNMEASURED=0

# judge VALUE OP LIMIT COUNTED: VERDICT=PASS when VALUE OP LIMIT holds (OP
# is >= or <=), else MISS; counted when COUNTED is 1, else "(pass)" or
# "(miss)"
judge() {
    if awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {exit !(op == ">=" ? v >= l : v <= l)}'; then
        VERDICT=PASS
    else
        VERDICT=MISS
    fi
    if [ "$4" = 1 ]; then
        if [ "$VERDICT" = PASS ]; then N_PASS=$((N_PASS + 1)); else N_MISS=$((N_MISS + 1)); fi
    else
        VERDICT="(${VERDICT,,})"
    fi
}

# unmeasured COUNTED [WHY]: UNMEASURED="not measured[ (WHY)]", counted
unmeasured() {
    UNMEASURED="not measured${2:+ ($2)}"
    [ "$1" = 1 ] && N_UNMEASURED=$((N_UNMEASURED + 1))
    return 0
}

# ratio_row LEG A B NEED_1 NEED_MORE [COUNTED]: tps of scenario A over tps
# of B at each client count, at least NEED_1 at 1 client and NEED_MORE at
# more ("-": no target there)
ratio_row() {
    local leg=$1 a=$2 b=$3 need1=$4 needn=$5 counted=${6:-1}
    local target row c need av bv ratio
    if [ "$need1" = "$needn" ]; then
        target="≥ ${need1}×"
    elif [ "$need1" = - ]; then
        target="≥ ${needn}× at more than 1 client"
    else
        target="≥ ${need1}× at 1 client, ≥ ${needn}× at more"
    fi
    row="| $leg | $target |"
    for c in "${CLIENTS_SORTED[@]}"; do
        if [ "$c" = 1 ]; then need=$need1; else need=$needn; fi
        if [ "$need" = - ]; then
            row+=" — |"
            continue
        fi
        av=$(tps_of "$a" "$c")
        bv=$(tps_of "$b" "$c")
        if [ -z "$av" ] || [ -z "$bv" ] || awk -v b="$bv" 'BEGIN {exit !(b <= 0)}'; then
            unmeasured "$counted"
            row+=" $UNMEASURED |"
            continue
        fi
        ratio=$(awk -v a="$av" -v b="$bv" 'BEGIN {printf "%.2f", a / b}')
        judge "$ratio" ">=" "$need" "$counted"
        row+=" ${ratio}× $VERDICT |"
    done
    TARGET_ROWS+=("$row — |")
}

# scale_row LEG SCENARIO NEED: tps at 128 clients over tps at 32, in the
# column of 128
scale_row() {
    local leg=$1 scen=$2 need=$3 row c a b ratio last="—"
    row="| $leg | ≥ ${need}× |"
    for c in "${CLIENTS_SORTED[@]}"; do
        if [ "$c" != 128 ]; then
            row+=" — |"
            continue
        fi
        a=$(tps_of "$scen" 128)
        b=$(tps_of "$scen" 32)
        if [ -z "$a" ] || [ -z "$b" ] || awk -v b="$b" 'BEGIN {exit !(b <= 0)}'; then
            unmeasured 1 "$([ -z "$b" ] && echo "no cell at 32 clients")"
            row+=" $UNMEASURED |"
            continue
        fi
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')
        judge "$ratio" ">=" "$need" 1
        row+=" ${ratio}× $VERDICT |"
    done
    if ! has_clients 128; then
        unmeasured 1 "128 clients not run"
        last=$UNMEASURED
    fi
    TARGET_ROWS+=("$row $last |")
}

# p50_row LEG SCENARIO: its p50 at 1 client, at most pg_test_fsync's
# fdatasync latency + 50 µs
p50_row() {
    local leg=$1 scen=$2 row c p50 limit="" last="—"
    [ -n "${FDATASYNC_US:-}" ] && limit=$(awk -v f="$FDATASYNC_US" 'BEGIN {printf "%.0f", f + 50}')
    row="| $leg | ≤ fdatasync ${FDATASYNC_US:-?} µs + 50 µs = ${limit:-?} µs |"
    for c in "${CLIENTS_SORTED[@]}"; do
        if [ "$c" != 1 ]; then
            row+=" — |"
            continue
        fi
        p50=$(field_of "$scen" 1 9)
        if [ -z "$p50" ] || [ "$p50" = nan ] || [ -z "$limit" ]; then
            unmeasured 1 "$([ -z "$limit" ] && echo "no fdatasync figure")"
            row+=" $UNMEASURED |"
            continue
        fi
        p50=$(awk -v p="$p50" 'BEGIN {printf "%.0f", p * 1000}')
        judge "$p50" "<=" "$limit" 1
        row+=" ${p50} µs $VERDICT |"
    done
    if ! has_clients 1; then
        unmeasured 1 "1 client not run"
        last=$UNMEASURED
    fi
    TARGET_ROWS+=("$row $last |")
}

# thousands N: N with a comma between groups of three digits
thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

# rate_row LEG RATE NEED WHY_MISSING: a drain rate (records/s), in the
# last column
rate_row() {
    local leg=$1 rate=$2 need=$3 row c
    row="| $leg | ≥ $(thousands "$need") records/s |"
    for c in "${CLIENTS_SORTED[@]}"; do
        row+=" — |"
    done
    if [ -n "$rate" ]; then
        judge "$rate" ">=" "$need" 1
        row+=" $(thousands "$rate")/s $VERDICT |"
    else
        unmeasured 1 "$4"
        row+=" $UNMEASURED |"
    fi
    TARGET_ROWS+=("$row")
}

ratio_row "deduct, sync on / hot-row UPDATE, synchronous_commit on" deduct_hot_on update_hot_on 1.0 15
ratio_row "deduct, sync on / Redis Lua, appendfsync always" deduct_hot_on redis_always 0.8 1.0
ratio_row "deduct, sync off / SELECT 1" deduct_hot_off select1 0.8 0.8
ratio_row "order txn with deduct / INSERT-only floor" order_deduct order_insert 0.8 0.8
ratio_row "order txn with deduct / order txn with hot-row UPDATE (informational, not counted)" \
    order_deduct order_update 10 10 0
scale_row "deduct, sync on: tps at 128 clients / at 32" deduct_hot_on 0.9
scale_row "deduct, sync off: tps at 128 clients / at 32" deduct_hot_off 0.9
p50_row "deduct, sync on: p50 latency at 1 client" deduct_hot_on
DRAIN_WHY=$(wanted drain || echo "BENCH_ONLY skipped the drain")
rate_row "drain, one hot SKU, backlog of $(thousands "$BACKLOG")" "$DRAIN_HOT_RATE" 100000 "$DRAIN_WHY"
rate_row "drain, 10,000 SKUs, backlog of $(thousands "$BACKLOG")" "$DRAIN_10K_RATE" 250000 \
    "${DRAIN_WHY:-$([ "$QUICK" = 1 ] && echo "quick mode drains one hot SKU only")}"
TARGET_HEAD="| leg | target |"
TARGET_RULE="| --- | --- |"
for c in "${CLIENTS_SORTED[@]}"; do
    TARGET_HEAD+=" $(clients_text "$c") |"
    TARGET_RULE+=" --- |"
done
TARGET_HEAD+=" once per run |"
TARGET_RULE+=" --- |"

{
    echo "# hotstock benchmark"
    echo
    QUICK_NOTE=
    [ "$QUICK" = 1 ] && QUICK_NOTE="**quick mode** (BENCH_QUICK=1), "
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $QUICK_NOTE${SECS} s per cell, clients: $CLIENTS."
    echo "Machine: $(sed -n 's/^nproc: //p' "$OUT/machine.txt") cores, $(sed -n 's/^cpu: //p' "$OUT/machine.txt"), fdatasync ${FDATASYNC_US:-?} µs/op (pg_test_fsync; a 512-byte append + fdatasync, as the queue's, ${SYNC_APPEND_US:-?} µs against ${SYNC_OVERWRITE_US:-?} µs for an overwrite, as PostgreSQL's WAL's); an 8 kB O_DSYNC write took ${DSYNC_START} µs at the start and ${DSYNC_END} µs at the end of the run (a drift means the disk was shared: the synchronous rows move with it); details in [machine.txt](machine.txt)."
    echo "All PostgreSQL cells: pgbench -M prepared on one private PostgreSQL 15 cluster with hotstockd; Redis 7 private instance on loopback; raw numbers in [raw.csv](raw.csv)."
    [ "$CELL_ERRORS" -eq 0 ] || echo "**$CELL_ERRORS cell(s) failed: see bench.log.**"
    echo
    echo "## Targets at every client count"
    echo
    echo "hotstock's performance targets, one hot SKU. A ratio is the first scenario's tps over the second's at the same client count (the 128/32 rows: the same scenario at 128 clients over 32); the p50 target is pg_test_fsync's fdatasync latency at the start of the run plus 50 µs. — : no target there. Rows marked informational are not counted; their verdicts are in parentheses."
    echo
    echo "**$N_PASS PASS, $N_MISS MISS**$([ "$N_UNMEASURED" -eq 0 ] || echo ", $N_UNMEASURED not measured")"
    echo
    echo "$TARGET_HEAD"
    echo "$TARGET_RULE"
    printf '%s\n' "${TARGET_ROWS[@]}"
    echo
    echo "## Throughput and latency"
    echo
    echo "Ratio: to the group's baseline at the same client count (floor: SELECT 1; hot: hot-row UPDATE, synchronous_commit on; 10k: UPDATE of 1 in 10k rows, synchronous_commit on; order: order txn with hot-row UPDATE). × SELECT 1: to the protocol floor at the same client count. avg: pgbench's latency average (clients × time / transactions; redis-benchmark's own for Redis). p50/p99/p99.9: from pgbench's per-transaction log, sampled at $SAMPLING (redis-benchmark's own for Redis, its p99.9 an HDR bucket); pgbench reads the clock once per batch of ready clients, so sub-0.1 ms percentiles with many clients per thread read low, and a p99.9 of fewer than 10,000 sampled transactions rests on fewer than 10 of them. cs/tx: context switches of the whole machine (/proc/stat ctxt, every process, not only this benchmark's) during the cell, per transaction; a round trip between a client and a server that both sleep while they wait costs about 4 (each is switched out, then in), as SELECT 1 at 1 client shows. check: units taken from the counter = transactions counted."
    echo
    echo "| group | scenario | clients | tps | avg ms | p50 ms | p99 ms | p99.9 ms | cs/tx | ratio | × SELECT 1 | check |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    awk -F, -v perf=" ${PERF_DONE[*]} " '
        NR == 1 {next}
        {row[NR] = $0; tps[$2 "@" $4] = $7}
        END {
            base["floor"] = "select1"; base["hot"] = "update_hot_on"
            base["10k"] = "update_10k_on"; base["order"] = "order_update"
            for (i = 2; i <= NR; i++) {
                split(row[i], f, ",")
                b = tps[base[f[1]] "@" f[4]]; s = tps["select1@" f[4]]
                r = (b > 0 ? sprintf("%.2f", f[7] / b) : "-")
                r1 = (s > 0 ? sprintf("%.2f", f[7] / s) : "-")
                mark = (index(perf, " " f[2] "@" f[4] " ") ? " †" : "")
                printf "| %s | %s%s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    f[1], f[3], mark, f[4], f[7], f[8], f[9], f[10], f[14], f[16], r, r1, f[13]
            }
        }' "$RAW"
    echo
    echo "## In-process deducts through libhotstock (one hot SKU)"
    echo
    printf -- '%s\n' "${LIBBENCH_LINES[@]:-not run}"
    if [ -s "$LIBBENCH_OUT" ]; then
        echo
        echo '```'
        cat "$LIBBENCH_OUT"
        echo '```'
    fi
    echo
    echo "## Drain (records/s into hotstock.ledger and hotstock.stock, backlog of $BACKLOG)"
    echo
    printf -- '- %s\n' "${DRAIN_LINES[@]:-not run}"
    echo
    echo "## Recovery"
    echo
    printf -- '- %s\n' "${RECOVERY_LINES[@]:-not run}"
    echo
    echo "## Memory of the segment"
    echo
    printf -- '- %s\n' "${MEMORY_LINES[@]}"
    if [ "$PERF" = 1 ]; then
        echo
        echo "## perf"
        echo
        echo "BENCH_PERF=1: a system-wide \`perf record -a -g -F 999\` and \`perf stat -a -e context-switches,cpu-migrations,task-clock\` over the middle half of each cell below (from a quarter to three quarters of its seconds); the file has perf stat's counts, perf report's top 40 entries (--no-children --sort comm,dso,symbol) and the call chains of those over 5 %. These cells ran beside perf: their figures in the table (marked †) include its cost."
        echo
        for cell in $PERF_CELLS; do
            if [[ " ${PERF_DONE[*]} " == *" $cell "* ]]; then
                echo "- [${cell%@*} at $(clients_text "${cell#*@}")](perf/${cell%@*}-${cell#*@}.txt)"
            elif [[ " ${PERF_FAILED[*]} " == *" $cell "* ]]; then
                echo "- ${cell%@*} at $(clients_text "${cell#*@}"): perf failed (see bench.log)"
            else
                echo "- ${cell%@*} at $(clients_text "${cell#*@}"): not run"
            fi
        done
    fi
} >"$OUT/results.md"

# plot: one line per scenario, tps against clients, log-log
{
    echo "set terminal pngcairo size 1400,860 font 'DejaVu Sans,11' noenhanced"
    echo "set output '$OUT/plot.png'"
    echo "set title 'hotstock vs hot-row UPDATE, PostgreSQL floor and Redis ($NPROC cores, ${SECS} s per point)'"
    echo "set xlabel 'clients'; set ylabel 'transactions per second'"
    echo "set logscale x 2; set logscale y 10"
    echo "set xtics ($(printf '%s\n' "${CLIENT_LIST[@]}" | paste -sd, -))"
    echo "set xrange [$(printf '%s\n' "${CLIENT_LIST[@]}" | sort -n | head -n 1)*0.8:$MAXCLIENTS*1.25]"
    echo "set format y '%.0s%c'"
    echo "set grid xtics ytics mytics"
    echo "set key outside right top box Left reverse"
    echo "set datafile separator ','"
    printf "plot "
    first=1
    # scenario | colour | dash | width | point
    while IFS='|' read -r scen colour dash width pt; do
        grep -q ",$scen," "$RAW" || continue
        label=$(awk -F, -v s="$scen" '$2 == s {print $3; exit}' "$RAW")
        [ $first = 1 ] || printf ", \\\\\n     "
        first=0
        printf "'< grep \",%s,\" %s | sort -t, -k4,4n' using 4:7 with linespoints lw %s dt %s pt %s lc rgb '%s' title '%s'" \
            "$scen" "$RAW" "$width" "$dash" "$pt" "$colour" "$label"
    done <<'EOF'
select1|#000000|1|2|7
update_hot_on|#d62728|1|2|5
update_hot_off|#ff9896|2|2|5
deduct_hot_on|#1f77b4|1|3|9
deduct_hot_off|#17becf|1|3|11
redis_always|#2ca02c|1|2|13
redis_everysec|#98df8a|2|2|13
update_10k_on|#8c564b|1|1|4
update_10k_off|#c49c94|2|1|4
deduct_10k_on|#9467bd|1|2|8
deduct_10k_off|#c5b0d5|2|2|8
order_update|#e377c2|1|2|6
order_deduct|#7f7f7f|1|3|6
order_insert|#bcbd22|3|2|6
EOF
    echo
} >"$WORK/plot.gp"
# a run of no throughput cell (BENCH_ONLY=drain, say) has nothing to plot
if [ "$(wc -l <"$RAW")" -gt 1 ]; then
    gnuplot "$WORK/plot.gp" || die "gnuplot failed ($WORK/plot.gp)"
else
    log "no throughput cell ran: no plot"
fi

cat "$OUT/results.md"
log "done: $OUT/results.md, $OUT/plot.png, $OUT/raw.csv, $OUT/machine.txt"
[ "$CELL_ERRORS" -eq 0 ] || die "$CELL_ERRORS cell(s) failed"
