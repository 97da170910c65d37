#!/usr/bin/env bash
# scripts/setup.sh — install what hotstock needs, build it, install it.
#
# 1. Debian packages: PostgreSQL 15 (server, client, pgbench, server-dev for
#    PGXS), liburcu and jemalloc (the daemon links them), a C toolchain,
#    and what the tests use: spin (the model checker), clang with libFuzzer
#    (the queue reader's fuzz smoke run), python3 (the fault harness) and
#    python3-yaml (tests/pg/prometheus.sh reads the Prometheus query file);
#    PL/Proxy (postgresql-15-plproxy) for the sharded router.
#    Only missing ones are installed, with one `apt-get update` first; via
#    sudo when not root.
# 2. make (the daemon, libhotstock, the extension, the test programs).
# 3. make install (the extension and hotstockd into PostgreSQL 15's
#    directories), skipped when the installed files are already these.
# Runs in a second or two when everything is in place.
#
# It never fails silently: each step is named (STEP) and every failure
# ends with one line "setup.sh: <step> failed: <what> — <what to do>",
# either from an explicit check or from the ERR trap (lib.sh), which names
# the line and command that failed.
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
trap_errors

PACKAGES=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-plproxy
    liburcu-dev libjemalloc-dev build-essential spin clang libclang-rt-14-dev python3
    python3-yaml)

# installed PKG: is PKG installed ("ii")?  A package dpkg has never heard
# of is simply not installed: dpkg-query's exit 1 for it is an answer here,
# not an error.
installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
    [ "$status" = "ii " ]
}

LOGDIR=${TMPDIR:-/tmp}
APT_LOG=$LOGDIR/hotstock-setup-apt.$$.log

# apt STEP HINT ARGS...: apt-get ARGS as root, output to APT_LOG; on failure
# one line with apt's last error and the hint.
apt() {
    local step=$1 hint=$2
    shift 2
    STEP=$step
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$APT_LOG" 2>&1; then
        local why
        why=$(grep -E '^(E|Err|W):' "$APT_LOG" | tail -n 1)
        [ -n "$why" ] || why=$(tail -n 1 "$APT_LOG")
        die "$step failed: apt-get $* said: ${why:-nothing} — $hint (full output: $APT_LOG)"
    fi
}
# Kept when setup fails: the message points to it.
trap '[ $? -ne 0 ] || rm -f "$APT_LOG"' EXIT

# The build writes into the clone and the run folders live in it: say so
# now, before anything is installed, rather than at the first compiler.
STEP="checking the clone"
probe=$REPO/.setup-write-probe.$$
if ! (: >"$probe") 2>/dev/null; then
    die "the clone $REPO is not writable by $(id -un): the build and the run folders go into it — clone it into a folder you can write"
fi
rm -f "$probe"

STEP="finding the missing packages"
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian-like: say what is needed and check only the essentials.
    for tool in cc make "$PG_CONFIG" spin; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "apt-get not found and '$tool' is missing: install PostgreSQL 15 with its server headers, pgbench, liburcu, jemalloc, a C compiler, make and spin, then run this again"
    done
else
    missing=()
    for p in "${PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
            die "missing packages: ${missing[*]} — run as root: apt-get install ${missing[*]} (or install sudo)"
        fi
        say "installing: ${missing[*]}"
        mirror_hint="check that this machine reaches its Debian mirror (/etc/apt/sources.list*), then run this again"
        apt "apt-get update" "$mirror_hint" update -qq
        # apt-get update exits 0 when it could not reach the mirror, with
        # only a warning: look for it, or install would fail less clearly.
        if [ -f "$APT_LOG" ] && grep -qE '^(W|E): (Failed to fetch|Some index files failed)' "$APT_LOG"; then
            die "apt-get update failed: $(grep -E '^(W|E): Failed to fetch' "$APT_LOG" | head -n 1) — $mirror_hint"
        fi
        apt "installing ${missing[*]}" "check the mirror and the disk space, or install them by hand: apt-get install ${missing[*]}" \
            install -y -qq --no-install-recommends "${missing[@]}"
        STEP="checking the installed packages"
        for p in "${missing[@]}"; do
            installed "$p" || die "apt-get install reported success but $p is not installed — run: apt-get install $p"
        done
    fi
fi

STEP="finding pg_config"
resolve_pg_config
command -v "$PG_CONFIG" >/dev/null 2>&1 || die "pg_config not found ($PG_CONFIG): install postgresql-server-dev-15"
command -v runuser >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] ||
    die "runuser not found (package util-linux): it is needed to run PostgreSQL as user postgres"

# ---- build ----
STEP="building"
cd "$REPO"
quiet_make() {
    make -s PG_CONFIG="$PG_CONFIG" "$@"
}
quiet_make all ||
    die "build failed: make all (see the compiler output above)"

# ---- install, unless the installed files already are these ----
STEP="installing"
bindir=$("$PG_CONFIG" --bindir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
pairs=("shmd/hotstockd $bindir/hotstockd" "hotstock.so $pkglibdir/hotstock.so")
for f in pg_ext/*.control pg_ext/*.sql; do
    [ -e "$f" ] && pairs+=("$f $extdir/$(basename "$f")")
done
stale=
for pair in "${pairs[@]}"; do
    read -r built target <<<"$pair"
    cmp -s "$built" "$target" || stale="$stale $target"
done
if [ -n "$stale" ]; then
    say "installing into $bindir, $pkglibdir and $extdir"
    if [ "$(id -u)" -eq 0 ]; then
        quiet_make install >/dev/null
    else
        as_root make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
    fi ||
        die "make install failed (see above) — it writes into $bindir, $pkglibdir and $extdir: run as root or with sudo"
fi
say "ready: built and installed ($("$PG_CONFIG" --version))"
