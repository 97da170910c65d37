#!/usr/bin/env bash
# tests/pg/bench.bash — throughput of the SQL side, run by hand (not a
# suite: it asserts nothing and takes a few minutes).
#
#   bash tests/pg/bench.bash tps      pgbench tps at $CLIENTS clients on one SKU:
#                                     SELECT 1, hot-row UPDATE, hotstock.deduct
#                                     with hotstock.synchronous on and off
#   bash tests/pg/bench.bash drain    drain records/s on a backlog of $RECORDS
#                                     deductions (the drain is held back by a
#                                     lock on hotstock.drain_state while the
#                                     backlog is written, synchronous off,
#                                     by four server-side loops)
#
# Environment as for the other tests (lib.bash); CLIENTS (32), SECONDS_EACH
# (15), RECORDS (1000000; needs that many free order-index slots: start
# hotstockd with order_capacity >= RECORDS + what is in use).
set -uo pipefail
. "$(dirname "$0")/lib.bash"

CLIENTS=${CLIENTS:-32}
SECONDS_EACH=${SECONDS_EACH:-15}
RECORDS=${RECORDS:-1000000}
WORK=$(mktemp -d /tmp/hotstock-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | cut -d. -f1; }

bench_tps() {
    local sku=bench-$RUN_ID
    q "SELECT hotstock.put_sku('$sku', 1000000000000)" >/dev/null
    q "CREATE TABLE IF NOT EXISTS hotstock_test_hot_row (sku text PRIMARY KEY, qty bigint);
       INSERT INTO hotstock_test_hot_row VALUES ('$sku', 1000000000000) ON CONFLICT DO NOTHING" >/dev/null
    echo 'SELECT 1;' >"$WORK/select1.sql"
    echo "UPDATE hotstock_test_hot_row SET qty = qty - 1 WHERE sku = '$sku' AND qty >= 1;" >"$WORK/update.sql"
    cat >"$WORK/deduct.sql" <<EOF
\set id random(1, 1000000000000000)
SELECT hotstock.deduct('$sku', 1, 'bench-$RUN_ID-' || :client_id || '-' || :id);
EOF
    local name file opts
    for name in select1 update update_async deduct_sync deduct_async; do
        case $name in
            select1) file=select1 opts= ;;
            update) file=update opts="-c synchronous_commit=on" ;;
            update_async) file=update opts="-c synchronous_commit=off" ;;
            deduct_sync) file=deduct opts="-c hotstock.synchronous=on" ;;
            deduct_async) file=deduct opts="-c hotstock.synchronous=off" ;;
        esac
        PGOPTIONS="$opts" "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" \
            -f "$WORK/$file.sql" >"$WORK/$name.out" 2>&1
        printf '%-14s %8s tps   (%s clients, %s s, PGOPTIONS="%s")\n' "$name" \
            "$(tps_of "$WORK/$name.out")" "$CLIENTS" "$SECONDS_EACH" "$opts"
        wait_drain 120 || say "drain did not catch up within 120 s"
    done
    q "DROP TABLE hotstock_test_hot_row" >/dev/null
}

bench_drain() {
    local sku=drainbench-$RUN_ID per start_lsn end_lsn t0 t1 lock_pid
    q "SELECT hotstock.put_sku('$sku', 1000000000000)" >/dev/null
    wait_drain 120 || say "drain did not catch up before the run"
    start_lsn=$(q "SELECT applied_lsn FROM hotstock.drain_state")

    # hold the drain back: it waits on this row lock
    mkfifo "$WORK/lock.in"
    PGAPPNAME=hotstock-bench-lock "$PSQL" -X -q -v ON_ERROR_STOP=1 <"$WORK/lock.in" >/dev/null 2>&1 &
    lock_pid=$!
    exec 7>"$WORK/lock.in"
    echo "BEGIN; SELECT * FROM hotstock.drain_state FOR UPDATE;" >&7
    lock_held() {
        [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hotstock-bench-lock'
                AND state = 'idle in transaction'")" = 1 ]
    }
    wait_for 30 lock_held || say "the drain could not be held back"
    start_lsn=$(q "SELECT applied_lsn FROM hotstock.drain_state")

    # Four sessions, each a server-side loop (no protocol round trip per
    # deduction), committing every 10,000; a full ring (HS002) is retried.
    per=$((RECORDS / 4))
    say "writing a backlog of $((per * 4)) deductions (synchronous off) while the drain waits"
    local t_w0 t_w1 i pids=()
    t_w0=$(date +%s.%N)
    for i in 1 2 3 4; do
        PGOPTIONS="-c hotstock.synchronous=off" "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "
            DO \$\$
            BEGIN
                FOR g IN 1 .. $per LOOP
                    LOOP
                        BEGIN
                            PERFORM hotstock.deduct('$sku', 1, 'drainbench-$RUN_ID-$i-' || g);
                            EXIT;
                        EXCEPTION WHEN SQLSTATE 'HS002' THEN
                            PERFORM pg_sleep(0.01);
                        END;
                    END LOOP;
                    IF g % 10000 = 0 THEN
                        COMMIT;
                    END IF;
                END LOOP;
            END
            \$\$" >"$WORK/backlog-$i.out" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    t_w1=$(date +%s.%N)
    cat "$WORK"/backlog-*.out
    awk -v n=$((per * 4)) -v t0="$t_w0" -v t1="$t_w1" \
        'BEGIN { printf "backlog: %d deductions in %.1f s = %.0f/s (4 sessions, server-side loops)\n", n, t1 - t0, n / (t1 - t0) }'
    say "$(q "SELECT drain_lag_records FROM hotstock.status") records to drain"
    end_lsn=$(q "SELECT last_lsn FROM hotstock.status")

    t0=$(date +%s.%N)
    echo "ROLLBACK;" >&7
    exec 7>&- # psql reads its end of input and exits
    wait "$lock_pid" 2>/dev/null
    wait_for 600 drain_caught_up || say "drain did not catch up within 600 s"
    t1=$(date +%s.%N)
    awk -v n=$((end_lsn - start_lsn)) -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "drain: %d records in %.1f s = %.0f records/s\n", n, t1 - t0, n / (t1 - t0) }'
    q "SELECT 'drain: last full batch ' || round(drain_rate) || ' records/s (hotstock.status.drain_rate)' FROM hotstock.status"
}

case ${1:-} in
    tps) bench_tps ;;
    drain) bench_drain ;;
    *)
        echo "usage: $0 tps|drain" >&2
        exit 2
        ;;
esac
