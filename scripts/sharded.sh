#!/usr/bin/env bash
# scripts/sharded.sh — SHARDS hotstock nodes and a PL/Proxy router over them.
#
#   sharded.sh start          start every shard (initdb the first time) and
#                             (re)load the router
#   sharded.sh stop           stop every shard found in the folder
#   sharded.sh status         each shard's state; exit 0 when all run, 3 otherwise
#   sharded.sh psql [ARGS]    psql into the router database
#   sharded.sh shard I [ARGS] psql into shard I's hotstock database
#   sharded.sh env            print the shell lines of the router's env file
#
# Each shard is an ordinary hotstock node made by scripts/cluster.sh: its
# own PostgreSQL cluster and its own hotstockd, in $SHARDED_RUN_DIR/s<I>
# (default <repo>/.run-sharded/s<I>), port $SHARD_PORT + I (default
# 55500.., clear of make start 55432, make check 55433, the crash suite
# 55442-55461, the soak suite 55470-55479, the clean-install test
# 55482-55485 and the shard suite 55490-55499).  SHARDS (default 4) must be
# a power of two: PL/Proxy maps a hash to a partition by masking.  The
# folder remembers both ($SHARDED_RUN_DIR/shards, .../port); starting it
# with another count is refused
# (moving SKUs between shards is not automated: README.md, "Sharding").
#
# The router is the database `router` in shard 0's cluster: PL/Proxy
# functions (router/hotstock_router.sql) of the extension's names and
# arguments in schema hotstock, and the PL/Proxy cluster `stock` (a foreign
# server with one partition per shard, connecting over each shard's Unix
# socket as the calling user).  It holds no data, so it needs no cluster of
# its own; any other PostgreSQL with postgresql-15-plproxy can load the same
# file.  `. $SHARDED_RUN_DIR/env && psql` connects to it.
#
# As root, everything runs as the OS user postgres (cluster.sh's RUNAS).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ -n "${SHARDED_RUN_DIR:-}" ]; then
    SHARDED_RUN_DIR=$(realpath -m "$SHARDED_RUN_DIR")
else
    SHARDED_RUN_DIR=$REPO/.run-sharded
    # the shards' folders are one level deeper: keep their sockets short
    [ ${#SHARDED_RUN_DIR} -le $((RUN_DIR_MAX - 4)) ] || SHARDED_RUN_DIR=$(short_run_dir sharded)
fi
ROUTER_DB=router
BIN=$(pg_bindir)
COUNT_FILE=$SHARDED_RUN_DIR/shards
PORT_FILE=$SHARDED_RUN_DIR/port
# A folder remembers its count and first port; SHARDS given otherwise is
# refused at start (check_count).
SHARDS=${SHARDS:-$(cat "$COUNT_FILE" 2>/dev/null || echo 4)}
SHARD_PORT=${SHARD_PORT:-$(cat "$PORT_FILE" 2>/dev/null || echo 55500)}

case $SHARDS in '' | *[!0-9]*) die "SHARDS='$SHARDS' is not a number" ;; esac
case $SHARD_PORT in '' | *[!0-9]*) die "SHARD_PORT='$SHARD_PORT' is not a port number" ;; esac

shard_dir() { echo "$SHARDED_RUN_DIR/s$1"; }
shard_port() { echo $((SHARD_PORT + $1)); }

# cluster I CMD...: scripts/cluster.sh CMD for shard I.
cluster() {
    local i=$1
    shift
    RUN_DIR=$(shard_dir "$i") HOTSTOCK_PORT=$(shard_port "$i") \
        PORT_KNOB=SHARD_PORT PORT_COMMAND="make start-sharded" \
        bash "$REPO/scripts/cluster.sh" "$@"
}

# The shards of an existing folder, in order (the folders s0, s1, ...).
existing_shards() {
    local i=0
    while [ -d "$(shard_dir $i)" ]; do
        echo $i
        i=$((i + 1))
    done
}

# psql_at I DB ARGS...: psql into database DB of shard I.
psql_at() {
    local i=$1 db=$2
    shift 2
    PGHOST=$(shard_dir "$i") PGPORT=$(shard_port "$i") PGUSER=$DBUSER PGDATABASE=$db \
        "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

check_count() {
    if [ "$SHARDS" -lt 1 ] || [ $((SHARDS & (SHARDS - 1))) -ne 0 ]; then
        die "SHARDS=$SHARDS is not a power of two (PL/Proxy masks the hash): use 1, 2, 4, 8, ..."
    fi
    if [ -f "$COUNT_FILE" ]; then
        local had
        had=$(cat "$COUNT_FILE")
        [ "$had" = "$SHARDS" ] ||
            die "$SHARDED_RUN_DIR holds $had shards, not SHARDS=$SHARDS: start it with SHARDS=$had, or stop it and remove the folder (its stock with it) to start afresh; moving SKUs to new shards is not automated (README.md, Sharding)"
    fi
    [ -f "$(pg_config_sharedir)/extension/plproxy.control" ] ||
        die "PL/Proxy is not installed (postgresql-15-plproxy): run scripts/setup.sh"
}

pg_config_sharedir() {
    if command -v "$PG_CONFIG" >/dev/null 2>&1; then "$PG_CONFIG" --sharedir; else echo /usr/share/postgresql/15; fi
}

# The router: database $ROUTER_DB in shard 0's cluster, the server `stock`
# naming every shard, then router/hotstock_router.sql (reloaded each start:
# it holds no data).
load_router() {
    if [ "$(psql_at 0 postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$ROUTER_DB'")" != 1 ]; then
        psql_at 0 postgres -c "CREATE DATABASE $ROUTER_DB" || die "could not create database $ROUTER_DB in shard 0"
    fi
    local opts="" i
    for i in $(seq 0 $((SHARDS - 1))); do
        opts="$opts${opts:+, }p$i 'host=$(shard_dir "$i") port=$(shard_port "$i") dbname=hotstock'"
    done
    psql_at 0 "$ROUTER_DB" >/dev/null <<EOF || die "loading the router into database $ROUTER_DB of shard 0 failed (see above)"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS plproxy;
DROP SERVER IF EXISTS stock CASCADE;
CREATE SERVER stock FOREIGN DATA WRAPPER plproxy OPTIONS (connection_lifetime '1800', $opts);
CREATE USER MAPPING FOR PUBLIC SERVER stock;
\i $REPO/router/hotstock_router.sql
EOF
}

write_env() {
    cat >"$SHARDED_RUN_DIR/env.tmp" <<EOF
# hotstock sharded ($SHARDS shards), the router: . $SHARDED_RUN_DIR/env && psql
export PGHOST='$(shard_dir 0)'
export PGPORT=$(shard_port 0)
export PGUSER=$DBUSER
export PGDATABASE=$ROUTER_DB
export SHARDED_RUN_DIR='$SHARDED_RUN_DIR'
export SHARDS=$SHARDS
export SHARD_PORT=$SHARD_PORT
case ":\$PATH:" in *":$BIN:"*) ;; *) export PATH="$BIN:\$PATH" ;; esac
EOF
    mv "$SHARDED_RUN_DIR/env.tmp" "$SHARDED_RUN_DIR/env"
}

cmd_start() {
    check_count
    mkdir -p "$SHARDED_RUN_DIR"
    echo "$SHARDS" >"$COUNT_FILE"
    echo "$SHARD_PORT" >"$PORT_FILE"
    local i
    for i in $(seq 0 $((SHARDS - 1))); do
        cluster "$i" start | sed "s/^/shard $i: /" || die "shard $i did not start (see above)"
    done
    load_router
    write_env
    say "ready: $SHARDS shards on ports $(shard_port 0)..$(shard_port $((SHARDS - 1))); the router: . $SHARDED_RUN_DIR/env && psql   (stop: make stop-sharded)"
}

cmd_stop() {
    local i rc=0 any=0
    for i in $(existing_shards); do
        any=1
        cluster "$i" stop | sed "s/^/shard $i: /" || rc=1
    done
    [ $any -eq 1 ] || say "nothing to stop in $SHARDED_RUN_DIR"
    [ $rc -eq 0 ] || die "some shard did not stop (see above)"
}

cmd_status() {
    local i rc=0 any=0
    for i in $(existing_shards); do
        any=1
        echo "---- shard $i ($(shard_dir "$i"), port $(shard_port "$i"))"
        cluster "$i" status || rc=3
    done
    [ $any -eq 1 ] || {
        say "no shards in $SHARDED_RUN_DIR"
        return 3
    }
    return $rc
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    psql)
        shift
        exec env PGHOST="$(shard_dir 0)" PGPORT="$(shard_port 0)" PGUSER="$DBUSER" \
            PGDATABASE=$ROUTER_DB "$BIN/psql" "$@"
        ;;
    shard)
        i=${2:-}
        case $i in '' | *[!0-9]*) die "usage: $ME shard I [PSQL ARGS]" ;; esac
        shift 2
        exec env PGHOST="$(shard_dir "$i")" PGPORT="$(shard_port "$i")" PGUSER="$DBUSER" \
            PGDATABASE=hotstock "$BIN/psql" "$@"
        ;;
    env)
        [ -f "$SHARDED_RUN_DIR/env" ] || die "no $SHARDED_RUN_DIR/env yet: make start-sharded"
        cat "$SHARDED_RUN_DIR/env"
        ;;
    *)
        echo "usage: $ME start|stop|status|psql [ARGS]|shard I [ARGS]|env   (SHARDS=$SHARDS, SHARDED_RUN_DIR=$SHARDED_RUN_DIR)" >&2
        exit 2
        ;;
esac
