#!/usr/bin/env bash
# scripts/cluster.sh — a private PostgreSQL 15 cluster and its hotstockd.
#
#   cluster.sh start        start whatever is not running (initdb the first time)
#   cluster.sh stop         PostgreSQL (fast), then hotstockd (smart); nothing left running
#   cluster.sh restart      stop, then start
#   cluster.sh restart-pg   restart PostgreSQL only (the daemon keeps running)
#   cluster.sh status       both states; exit 0 when both run, 3 otherwise
#   cluster.sh psql [ARGS]  psql into the cluster's database
#   cluster.sh env          print the shell lines of $RUN_DIR/env
#
# Everything lives under $RUN_DIR (default: <repo>/.run):
#   $RUN_DIR/pg          PostgreSQL data directory
#   $RUN_DIR/hotstock    hotstockd data directory (HOTSTOCK_DIR)
#   $RUN_DIR/pg.log      PostgreSQL's log
#   $RUN_DIR/env         `. $RUN_DIR/env && psql` connects
# The server listens on 127.0.0.1 and on a Unix socket in $RUN_DIR, port
# $HOTSTOCK_PORT (default 55432; remembered in postgresql.conf).  When the
# port is taken, the message names the knob and command to use
# (PORT_KNOB, PORT_COMMAND: set by demo.sh and check.sh).
#
# As root, PostgreSQL and hotstockd run as the OS user `postgres` (PostgreSQL
# refuses root; the daemon must share PostgreSQL's user because its segment,
# files and socket are mode 0600).  As another user, both run as that user.
# The daemon always starts before PostgreSQL and stops after it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=$(pg_bindir)
PGDATA=$RUN_DIR/pg
HSDIR=$RUN_DIR/hotstock
LOG=$RUN_DIR/pg.log
DBNAME=${HOTSTOCK_DB:-hotstock}
DEFAULT_PORT=55432
if [ -z "${HOTSTOCKD:-}" ]; then
    HOTSTOCKD=$BIN/hotstockd
    [ -x "$HOTSTOCKD" ] || HOTSTOCKD=$REPO/shmd/hotstockd
fi

# ---- state ----

conf_port() {
    [ -r "$PGDATA/postgresql.conf" ] &&
        sed -n 's/^port = \([0-9][0-9]*\).*/\1/p' "$PGDATA/postgresql.conf" | tail -n 1
}

# The port the postmaster actually listens on (4th line of postmaster.pid).
running_port() {
    [ -r "$PGDATA/postmaster.pid" ] && sed -n 4p "$PGDATA/postmaster.pid"
}

PORT=${HOTSTOCK_PORT:-$(conf_port || true)}
PORT=${PORT:-$DEFAULT_PORT}
case $PORT in '' | *[!0-9]*) die "HOTSTOCK_PORT='$PORT' is not a port number" ;; esac

pg_running() {
    [ -f "$PGDATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

daemon_running() {
    [ -d "$HSDIR" ] && [ -x "$HOTSTOCKD" ] &&
        as_pg "$HOTSTOCKD" status -D "$HSDIR" >/dev/null 2>&1
}

daemon_stopped() { ! daemon_running; }

# Something (not our postmaster) accepts connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

q() {
    PGHOST=$RUN_DIR PGPORT=$(running_port || echo "$PORT") PGUSER=$DBUSER \
        "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA "$@"
}

# ---- preparing the run folder ----

check_paths() {
    case $RUN_DIR in
        *[[:space:]\'\",\\]*) die "RUN_DIR '$RUN_DIR' contains a space, quote, comma or backslash; choose a plain path, e.g. make start RUN_DIR=/tmp/hotstock" ;;
    esac
    # A Unix socket path is at most 107 bytes: $RUN_DIR/hotstock/hotstockd.sock
    [ ${#RUN_DIR} -le "$RUN_DIR_MAX" ] ||
        die "RUN_DIR '$RUN_DIR' is too long for the Unix sockets in it (${#RUN_DIR} > $RUN_DIR_MAX characters); use a shorter one, e.g. make start RUN_DIR=/tmp/hotstock"
}

check_installed() {
    [ -x "$BIN/initdb" ] || die "PostgreSQL 15 not found in $BIN: run scripts/setup.sh"
    [ -x "$HOTSTOCKD" ] || die "hotstockd not found ($HOTSTOCKD): run scripts/setup.sh"
    [ -f "$("$PG_CONFIG" --pkglibdir)/hotstock.so" ] ||
        die "the hotstock extension is not installed in $("$PG_CONFIG" --pkglibdir): run scripts/setup.sh"
}

# As root: make $RUN_DIR belong to postgres, and let postgres traverse every
# parent directory on the way to it (ACL when available, else o+x).
prepare_run_dir() {
    mkdir -p "$RUN_DIR"
    if [ -n "$RUNAS" ]; then
        chown "$RUNAS": "$RUN_DIR"
        chmod 0700 "$RUN_DIR"
        local d=$RUN_DIR
        local parents=()
        while [ "$d" != / ]; do
            d=$(dirname "$d")
            parents=("$d" "${parents[@]}")
        done
        for d in "${parents[@]}"; do
            runuser -u "$RUNAS" -- test -x "$d" 2>/dev/null && continue
            if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$RUNAS:x" "$d" 2>/dev/null; then
                say "gave user $RUNAS search permission on $d (ACL) so it can reach $RUN_DIR"
            else
                chmod o+x "$d"
                say "made $d searchable by others (o+x) so user $RUNAS can reach $RUN_DIR"
            fi
        done
    else
        chmod 0700 "$RUN_DIR"
    fi
    if [ ! -d "$HSDIR" ]; then
        as_pg mkdir -m 0700 "$HSDIR"
    fi
}

# initdb and our postgresql.conf, the first time.
init_cluster() {
    [ -f "$PGDATA/PG_VERSION" ] && return 0
    if [ -e "$PGDATA" ]; then
        say "removing $PGDATA: it holds no PG_VERSION (an interrupted initdb)"
        rm -rf "$PGDATA"
    fi
    say "initdb $PGDATA"
    if ! as_pg "$BIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$RUN_DIR/initdb.log" 2>&1; then
        tail -n 20 "$RUN_DIR/initdb.log" >&2
        die "initdb failed; full output in $RUN_DIR/initdb.log"
    fi
    cat >>"$PGDATA/postgresql.conf" <<EOF

# ---- hotstock private cluster (written by scripts/cluster.sh) ----
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN_DIR'
max_connections = 300           # pgbench with 128 clients and more
max_prepared_transactions = 16  # two-phase commit works with hotstock.deduct
shared_buffers = 512MB
effective_cache_size = 4GB
work_mem = 4MB
maintenance_work_mem = 128MB
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_timeout = 15min
max_parallel_workers_per_gather = 0   # two cores: the clients need them
fsync = on
synchronous_commit = on
log_line_prefix = '%m [%p] %q%u@%d '
shared_preload_libraries = 'hotstock'
hotstock.data_directory = '$HSDIR'
hotstock.drain_database = '$DBNAME'
EOF
}

# ---- commands ----

start_daemon() {
    daemon_running && return 0
    # Output to a file, not a pipe: the detached daemon must not hold our pipe.
    if ! as_pg_t 300 "$HOTSTOCKD" start -D "$HSDIR" >"$RUN_DIR/hotstockd-start.out" 2>&1; then
        cat "$RUN_DIR/hotstockd-start.out" >&2
        local f
        for f in "$HSDIR"/*.log; do
            [ -f "$f" ] && tail -n 20 "$f" >&2
        done
        die "hotstockd did not start in $HSDIR (see above)"
    fi
    say "hotstockd running in $HSDIR"
}

# Before starting anything: is the port free (unless our postmaster has it)?
check_port() {
    pg_running && return 0
    if port_busy "$PORT"; then
        # Suggest a port that is free now (not 55433, which make check uses).
        local p=$((PORT + 1))
        while [ $p -lt $((PORT + 50)) ] && { [ $p -eq 55433 ] || port_busy $p; }; do
            p=$((p + 1))
        done
        die "port $PORT on 127.0.0.1 is in use by another program; choose a free one, e.g. ${PORT_KNOB:-HOTSTOCK_PORT}=$p ${PORT_COMMAND:-make start}"
    fi
}

start_pg() {
    if pg_running; then
        local p
        p=$(running_port || true)
        [ -n "${HOTSTOCK_PORT:-}" ] && [ "$p" != "$HOTSTOCK_PORT" ] &&
            warn "PostgreSQL already runs on port $p; HOTSTOCK_PORT=$HOTSTOCK_PORT applies after cluster.sh stop"
        return 0
    fi
    if [ "$(conf_port)" != "$PORT" ]; then
        sed -i "s/^port = [0-9]*/port = $PORT/" "$PGDATA/postgresql.conf"
    fi
    # a cluster made by an older version of this script
    grep -q '^max_prepared_transactions' "$PGDATA/postgresql.conf" ||
        echo "max_prepared_transactions = 16  # two-phase commit works with hotstock.deduct" \
            >>"$PGDATA/postgresql.conf"
    check_port
    if ! as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 120 start >/dev/null 2>&1; then
        tail -n 20 "$LOG" >&2
        die "PostgreSQL did not start; log: $LOG"
    fi
    say "PostgreSQL running on port $PORT, data in $PGDATA, log $LOG"
}

ensure_database() {
    if [ "$(q -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" != 1 ]; then
        q -d postgres -c "CREATE DATABASE $DBNAME" || die "could not create database $DBNAME"
    fi
    q -d "$DBNAME" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS hotstock" \
        -c "ALTER EXTENSION hotstock UPDATE" ||
        die "CREATE EXTENSION hotstock (or its update) failed in database $DBNAME; log: $LOG"
}

# Is the drain worker running?  It starts with PostgreSQL but connects to
# $DBNAME, which a first start creates only afterwards: the postmaster
# restarts it a second later.  Callers (tests) read its status at once.
drain_up() {
    [ "$(q -d "$DBNAME" -c "SELECT drain_pid > 0 FROM hotstock.status" 2>/dev/null)" = t ]
}

write_env() {
    local p
    p=$(running_port || echo "$PORT")
    cat >"$RUN_DIR/env.tmp" <<EOF
# hotstock private cluster: . $RUN_DIR/env && psql
export PGHOST='$RUN_DIR'
export PGPORT=$p
export PGUSER=$DBUSER
export PGDATABASE=$DBNAME
export HOTSTOCK_DIR='$HSDIR'
export RUN_DIR='$RUN_DIR'
case ":\$PATH:" in *":$BIN:"*) ;; *) export PATH="$BIN:\$PATH" ;; esac
EOF
    mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"
}

cmd_start() {
    check_paths
    check_installed
    check_port
    prepare_run_dir
    init_cluster
    start_daemon # before PostgreSQL: backends and the drain attach to it
    start_pg
    ensure_database
    wait_for 30 drain_up || die "the hotstock drain did not start within 30 s; log: $LOG"
    write_env
    say "ready: . $RUN_DIR/env && psql   (stop: $(make_hint stop))"
}

cmd_stop() {
    if [ ! -d "$RUN_DIR" ]; then
        say "nothing to stop: $RUN_DIR does not exist"
        return 0
    fi
    local was=
    if pg_running; then
        was=" PostgreSQL"
        if ! as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1; then
            warn "PostgreSQL did not stop in 60 s (fast); stopping it in immediate mode"
            as_pg "$BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
    fi
    if daemon_running; then
        was="${was:+$was and} hotstockd"
        if ! as_pg_t 60 "$HOTSTOCKD" stop -D "$HSDIR" >"$RUN_DIR/hotstockd-stop.out" 2>&1 ||
            ! wait_for 30 daemon_stopped; then
            cat "$RUN_DIR/hotstockd-stop.out" >&2
            warn "hotstockd did not stop in time (smart); stopping it in immediate mode"
            as_pg_t 30 "$HOTSTOCKD" stop -D "$HSDIR" --mode immediate >/dev/null 2>&1 || true
            wait_for 30 daemon_stopped || true
        fi
    fi
    local left=
    pg_running && left="$left PostgreSQL"
    daemon_running && left="$left hotstockd"
    [ -z "$left" ] || die "still running after stop:$left (see $LOG and $HSDIR)"
    if [ -n "$was" ]; then
        say "stopped:$was (in $RUN_DIR)"
    else
        say "nothing was running in $RUN_DIR"
    fi
}

cmd_status() {
    local rc=0 pid
    if pg_running; then
        pid=$(head -n 1 "$PGDATA/postmaster.pid")
        echo "postgres:  running, pid $pid, port $(running_port), data $PGDATA"
    else
        echo "postgres:  not running (data $PGDATA)"
        rc=3
    fi
    if daemon_running; then
        echo "hotstockd:"
        as_pg "$HOTSTOCKD" status -D "$HSDIR" 2>&1 | sed 's/^/  /'
    else
        echo "hotstockd: not running (data $HSDIR)"
        rc=3
    fi
    return $rc
}

cmd_psql() {
    if [ ! -f "$RUN_DIR/env" ] || ! pg_running; then
        die "the cluster in $RUN_DIR is not running: $(make_hint start)"
    fi
    # shellcheck disable=SC1091
    . "$RUN_DIR/env"
    exec "$BIN/psql" "$@"
}

cmd_env() {
    [ -f "$RUN_DIR/env" ] || die "no $RUN_DIR/env yet: $(make_hint start)"
    cat "$RUN_DIR/env"
}

cmd_restart_pg() {
    check_installed
    start_daemon
    if pg_running; then
        as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -m fast -w -t 120 restart >/dev/null 2>&1 || {
            tail -n 20 "$LOG" >&2
            die "PostgreSQL did not restart; log: $LOG"
        }
        say "PostgreSQL restarted"
    else
        start_pg
    fi
    ensure_database
    write_env
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    restart-pg) cmd_restart_pg ;;
    status) cmd_status ;;
    psql) shift && cmd_psql "$@" ;;
    env) cmd_env ;;
    *)
        echo "usage: $ME start|stop|restart|restart-pg|status|psql|env   (RUN_DIR=$RUN_DIR)" >&2
        exit 2
        ;;
esac
