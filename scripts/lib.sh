# shellcheck shell=bash
# scripts/lib.sh — the one shell library: setup.sh, cluster.sh, check.sh,
# demo.sh, and the tests (tests/pg/lib.bash, tests/crash/run.sh,
# tests/bench/run.sh) source it.
#
# Sourced, not run.  Defines where things are (REPO, RUN_DIR, PG_CONFIG,
# PGBIN), who runs PostgreSQL and hotstockd (RUNAS: `postgres` when we are
# root, else nobody, i.e. ourselves), and small helpers.  Every message
# starts with the script's name and is one line.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=$(basename "$0")

say() { printf '%s: %s\n' "$ME" "$*"; }
warn() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() {
    printf '%s: %s\n' "$ME" "$*" >&2
    exit 1
}

# trap_errors: in a script run with `set -Eeuo pipefail`, a command that
# fails where no explicit check catches it ends the script with one line
# naming the step (STEP, when the script sets it), the line and the command,
# never silently.  A `die` has already said why and exits 1 (not an ERR).
# Only the script's own shell speaks: a subshell or process substitution
# that fails just exits, and the command that ran it fails in turn.
STEP=
trap_errors() {
    trap '_rc=$?; [ "$BASHPID" = "$$" ] || exit "$_rc"; trap - ERR
        printf "%s: %sline %s: \`%s\` failed (exit %s); nothing after it ran\n" \
        "$ME" "${STEP:+$STEP failed at }" "$LINENO" "$BASH_COMMAND" "$_rc" >&2; exit "$_rc"' ERR
}

# PostgreSQL 15 is the target.  The Makefile exports PG_CONFIG=pg_config;
# /usr/bin/pg_config picks the newest server-dev installed, so prefer 15's
# own pg_config whenever it is there.
# resolve_pg_config runs again after setup.sh may have installed it.
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
resolve_pg_config() {
    if [ -z "${PG_CONFIG:-}" ] || [ "$PG_CONFIG" = pg_config ]; then
        if [ -x "$PG15_CONFIG" ]; then PG_CONFIG=$PG15_CONFIG; else PG_CONFIG=pg_config; fi
    fi
    export PG_CONFIG
}
resolve_pg_config

# pg_bindir: PostgreSQL's bindir (initdb, pg_ctl, psql, pgbench, hotstockd).
pg_bindir() {
    if command -v "$PG_CONFIG" >/dev/null 2>&1; then
        "$PG_CONFIG" --bindir
    else
        echo /usr/lib/postgresql/15/bin
    fi
}

# The run folder: absolute, so that it can go into postgresql.conf.
RUN_DIR=${RUN_DIR:-$REPO/.run}
case $RUN_DIR in /*) ;; *) RUN_DIR=$PWD/$RUN_DIR ;; esac
RUN_DIR=$(realpath -m "$RUN_DIR")
# Unix socket paths are at most 107 bytes, and the longest one we make is
# $RUN_DIR/hotstock/hotstockd.sock: a default folder deep in the file system
# moves to /tmp (cluster.sh refuses an explicit one that is too long).
RUN_DIR_MAX=80
short_run_dir() { # short_run_dir NAME: a short stand-in for $REPO/NAME
    echo "/tmp/hotstock-$(printf '%s' "$REPO" | md5sum | cut -c1-8)/$1"
}
if [ "$RUN_DIR" = "$REPO/.run" ] && [ ${#RUN_DIR} -gt $RUN_DIR_MAX ]; then
    RUN_DIR=$(short_run_dir run)
fi
export RUN_DIR

# claim_port NAME FIRST LAST [WIDTH]: a port of FIRST..LAST (every
# WIDTH-th from FIRST; WIDTH 1 by default) for one run of NAME, with the
# WIDTH - 1 ports after it: nothing listens on any of them and no other
# run holds the first (the lock file /tmp/hs-NAME-<port>.lock, held on fd
# 9 for the rest of the caller's life), in CLAIMED_PORT.  Returns 1 when
# every port is taken.
claim_port() {
    local port width=${4:-1} i busy
    CLAIMED_PORT=
    for port in $(seq "$2" "$width" "$3"); do
        busy=0
        for ((i = 0; i < width; i++)); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null; then
                busy=1
                break
            fi
        done
        [ "$busy" = 0 ] || continue
        exec 9>"/tmp/hs-$1-$port.lock"
        if flock -n 9; then
            CLAIMED_PORT=$port
            return 0
        fi
        exec 9>&-
    done
    return 1
}

# How to say "make X" for this RUN_DIR.
make_hint() {
    if [ "$RUN_DIR" = "$REPO/.run" ]; then echo "make $1"; else echo "make $1 RUN_DIR=$RUN_DIR"; fi
}

# PostgreSQL refuses to run as root, and hotstockd must run as the same OS
# user as PostgreSQL (its segment, files and socket are mode 0600).
if [ "$(id -u)" -eq 0 ]; then
    RUNAS=postgres
else
    RUNAS=
fi
# shellcheck disable=SC2034  # used by cluster.sh
DBUSER=${RUNAS:-$(id -un)}

# as_pg CMD...: run CMD as the PostgreSQL OS user, from /, with our
# environment (runuser resets HOME, USER, LOGNAME and SHELL only).
as_pg() {
    if [ -n "$RUNAS" ]; then
        (cd / && runuser -u "$RUNAS" -- "$@")
    else
        "$@"
    fi
}

# as_pg_t SECONDS CMD...: as_pg, killed after SECONDS.
as_pg_t() {
    local t=$1
    shift
    if [ -n "$RUNAS" ]; then
        (cd / && timeout "$t" runuser -u "$RUNAS" -- "$@")
    else
        timeout "$t" "$@"
    fi
}

# as_root CMD...: run CMD as root, through sudo when we are not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* — run this as root or install sudo"
    fi
}

# kill_pid SIGNAL PID: send SIGNAL to the one process PID, which the test
# found itself (a query, a pid file).  False, with nothing sent, unless PID
# is a number above 1 naming a live process: an empty PID must never become
# `kill 0` (the test's own process group) or a group kill.
kill_pid() {
    local sig=$1 pid=${2:-}
    case $pid in
        '' | *[!0-9]* | 0 | 1)
            echo "kill_pid: no process to send SIG$sig to (pid '$pid')" >&2
            return 1
            ;;
    esac
    [ -d "/proc/$pid" ] || {
        echo "kill_pid: pid $pid not found" >&2
        return 1
    }
    kill -s "$sig" -- "$pid"
}

# children_of PID: the pids of PID's children, one a line, from /proc (no
# ps: a minimal machine has no procps).  Nothing for an empty PID.
children_of() {
    local f rest
    case ${1:-} in '' | *[!0-9]*) return 0 ;; esac
    for f in /proc/[0-9]*/stat; do
        read -r rest <"$f" 2>/dev/null || continue
        rest=${rest##*) } # after "pid (comm) ": "state ppid ..."
        rest=${rest#* }
        [ "${rest%% *}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

# pid_gone PID: PID has exited (no such process, or a zombie).
pid_gone() {
    local st
    [ -e "/proc/$1" ] || return 0
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    st=${st##*) }
    [ "${st%% *}" = Z ]
}

# pid_reaped PID: PID is not in the process table at all (not even a zombie).
pid_reaped() { [ ! -e "/proc/$1" ]; }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds; returns 1
# when SECONDS pass first.
wait_for() {
    local limit=$1 i=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -ge $((limit * 5)) ] && return 1
        sleep 0.2
    done
}
