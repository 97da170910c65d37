#!/usr/bin/env bash
# tests/pg/upgrade.sh — the extension's upgrade path gives what a fresh
# install gives.
#
# For every older version the installed extension offers (1.0, 1.1, ...):
# in two scratch databases of the running cluster, one gets `CREATE
# EXTENSION hotstock VERSION 'X'` then `ALTER EXTENSION hotstock UPDATE`
# (1.0 -> 1.1 -> 1.2: every step on the way), the other `CREATE EXTENSION
# hotstock` (the default version).  Their hotstock schemas must be the
# same, object by object: columns with types, defaults and nullability;
# indexes; constraints; triggers; views; functions with their arguments
# (and their defaults) and results; privileges of every table, view and
# function.  Then both are dropped.  The functions work only in
# hotstock.drain_database; DDL works anywhere, which is all this needs.
#
# Environment as in lib.bash.  Prints `N passed, N failed`; a few seconds.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

DB_UP=hotstock_upgrade_$$
DB_NEW=hotstock_fresh_$$
OUT=${TMPDIR:-/tmp}/hotstock-upgrade-$$
cleanup() {
    q "DROP DATABASE IF EXISTS $DB_UP" >/dev/null 2>&1
    q "DROP DATABASE IF EXISTS $DB_NEW" >/dev/null 2>&1
    rm -f "$OUT".*
}
trap cleanup EXIT

cluster_start || {
    fail "cluster start"
    finish
}

# qd DB SQL: q in database DB.
qd() {
    PGDATABASE=$1 "$PSQL" -X -q -tA -v ON_ERROR_STOP=1 -c "$2"
}

# The schema, one line per object, sorted: what must not differ.
SCHEMA_SQL="
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
       || ' default=' || coalesce(column_default, '-')
FROM information_schema.columns WHERE table_schema = 'hotstock'
UNION ALL
SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = 'hotstock'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ': ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'hotstock'::regnamespace
UNION ALL
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname || ': ' || pg_get_triggerdef(oid)
FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'hotstock'::regnamespace)
UNION ALL
SELECT 'view ' || viewname || ': ' || definition FROM pg_views WHERE schemaname = 'hotstock'
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' (' || pg_get_function_arguments(p.oid)
       || ') returns ' || pg_get_function_result(p.oid)
       || ' ' || p.provolatile::text || ' acl=' || coalesce(p.proacl::text, '-')
FROM pg_proc p WHERE p.pronamespace = 'hotstock'::regnamespace
UNION ALL
SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '-')
       || ' options=' || coalesce(c.reloptions::text, '-')
FROM pg_class c WHERE c.relnamespace = 'hotstock'::regnamespace AND c.relkind IN ('r', 'v')
ORDER BY 1"

q "CREATE DATABASE $DB_NEW" >/dev/null || fail "scratch database $DB_NEW"
check "CREATE EXTENSION hotstock (the default version)" \
    qd "$DB_NEW" "SET client_min_messages = warning; CREATE EXTENSION hotstock"
DEFAULT=$(qd "$DB_NEW" "SELECT extversion FROM pg_extension WHERE extname = 'hotstock'")
qd "$DB_NEW" "$SCHEMA_SQL" >"$OUT.new" 2>&1
check "the fresh $DEFAULT schema has objects ($(wc -l <"$OUT.new") lines)" \
    test "$(wc -l <"$OUT.new")" -gt 40

# every older version the installed extension offers
OLDER=$(qd "$DB_NEW" "SELECT version FROM pg_available_extension_versions
                      WHERE name = 'hotstock' AND version <> '$DEFAULT' ORDER BY version")
check "versions to update from: $(echo $OLDER) (1.0 and 1.1 at least)" \
    test "$(echo "$OLDER" | wc -w)" -ge 2
for FROM in $OLDER; do
    q "DROP DATABASE IF EXISTS $DB_UP" >/dev/null 2>&1
    q "CREATE DATABASE $DB_UP" >/dev/null || fail "scratch database $DB_UP"
    check "CREATE EXTENSION hotstock VERSION '$FROM'" \
        qd "$DB_UP" "SET client_min_messages = warning; CREATE EXTENSION hotstock VERSION '$FROM'"
    check "$FROM: ALTER EXTENSION hotstock UPDATE" qd "$DB_UP" "ALTER EXTENSION hotstock UPDATE"
    expect "$FROM: updated to the default version" \
        "$(qd "$DB_UP" "SELECT extversion FROM pg_extension WHERE extname = 'hotstock'")" "$DEFAULT"
    qd "$DB_UP" "$SCHEMA_SQL" >"$OUT.up" 2>&1
    if diff -u "$OUT.new" "$OUT.up" >"$OUT.diff"; then
        pass "$FROM updated = $DEFAULT installed, object by object"
    else
        fail "$FROM updated differs from $DEFAULT installed:"
        sed 's/^/    /' "$OUT.diff" | head -n 40
    fi
done
finish
