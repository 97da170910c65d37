#!/usr/bin/env bash
# scripts/setup.sh — install what hotstock needs, build it, install it.
#
# 1. Debian packages: PostgreSQL 15 (server, client, pgbench, server-dev for
#    PGXS), liburcu and jemalloc (the daemon links them), a C toolchain,
#    and what the tests use: spin (the model checker), clang with libFuzzer
#    (the queue reader's fuzz smoke run) and python3 (the fault harness).  Only missing ones are
#    installed, with one `apt-get update` first; via sudo when not root.
# 2. make (the daemon, libhotstock, the extension, the test programs).
# 3. make install (the extension and hotstockd into PostgreSQL 15's
#    directories), skipped when the installed files are already these.
# Runs in a second or two when everything is in place.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PACKAGES=(postgresql-15 postgresql-client-15 postgresql-server-dev-15
    liburcu-dev libjemalloc-dev build-essential spin clang libclang-rt-14-dev python3)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian-like: say what is needed and check only the essentials.
    for tool in cc make "$PG_CONFIG" spin; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "apt-get not found and '$tool' is missing: install PostgreSQL 15 with its server headers, pgbench, liburcu, jemalloc, a C compiler, make and spin, then run this again"
    done
else
    # One dpkg-query for all: "ii  name" for each installed package.
    have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null |
        awk '$1 == "ii" { print $2 }')
    missing=()
    for p in "${PACKAGES[@]}"; do
        grep -qx -- "$p" <<<"$have" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
            die "missing packages: ${missing[*]} — run as root: apt-get install ${missing[*]} (or install sudo)"
        fi
        say "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
        for p in "${missing[@]}"; do
            installed "$p" || die "apt-get did not install $p"
        done
    fi
fi

resolve_pg_config
command -v "$PG_CONFIG" >/dev/null 2>&1 || die "pg_config not found: install postgresql-server-dev-15"
command -v runuser >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] ||
    die "runuser not found (package util-linux): it is needed to run PostgreSQL as user postgres"

# ---- build ----
# The top Makefile replaces PGXS's `check` recipe with its own; make warns
# about that on every run.  Those two lines are expected: keep them out.
quiet_make() {
    make -s PG_CONFIG="$PG_CONFIG" "$@" 2> >(grep -v -e "overriding recipe for target 'check'" \
        -e "ignoring old recipe for target 'check'" >&2)
}
cd "$REPO"
quiet_make all ||
    die "build failed (see the compiler output above)"

# ---- install, unless the installed files already are these ----
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
        die "make install failed"
fi
say "ready: built and installed ($("$PG_CONFIG" --version))"
