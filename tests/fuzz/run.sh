#!/usr/bin/env bash
# tests/fuzz/run.sh — fuzz the queue reader (decoder, recovery scan, drain
# reader) with libFuzzer for a bounded time.
#
#   tests/fuzz/run.sh              FUZZ_SECONDS (default 60) of fuzzing   (make fuzz)
#   tests/fuzz/run.sh quick        a 10-second smoke run                  (make check)
#   tests/fuzz/run.sh corpus       rewrite the seed corpus with mkcorpus
#   tests/fuzz/run.sh repro FILE   run one input (a crash-* file) and show the report
#
# Builds with clang -fsanitize=fuzzer,address,undefined into $FUZZ_BUILD
# (default .run-fuzz at the top of the repository, ignored by git).  Inputs
# that once failed are kept in tests/fuzz/regress/ and replayed first, one
# check each.  New inputs go to $FUZZ_BUILD/work, never into the committed
# seed corpus tests/fuzz/corpus/.  A crash leaves its input in
# $FUZZ_BUILD/crash-*; the run then fails.  Ends with "N passed, N failed".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${FUZZ_BUILD:-$REPO/.run-fuzz}
SECONDS_BUDGET=${FUZZ_SECONDS:-60}
MODE=${1:-run}
CC_FUZZ=${CC_FUZZ:-}
ME=fuzz/run.sh

say() { printf '%s: %s\n' "$ME" "$*"; }

if [ -z "$CC_FUZZ" ]; then
    for c in clang clang-14 clang-15 clang-16; do
        command -v "$c" >/dev/null 2>&1 && CC_FUZZ=$c && break
    done
fi
if [ -z "$CC_FUZZ" ]; then
    say "clang not found: install clang and libclang-rt-dev (libFuzzer) to fuzz"
    echo "0 passed, 1 failed"
    exit 1
fi

mkdir -p "$BUILD"
: >"$BUILD/build.log"
# the queue format's reader and writer and the helpers they use (the
# Makefile's shmd/format and shmd/lib rooms)
QF_SRCS="$REPO/shmd/format/queue_file.c $REPO/shmd/format/queue_scan.c $REPO/shmd/format/queue_reader.c $REPO/shmd/format/queue_writer.c"
SRCS="$QF_SRCS $REPO/shmd/lib/util.c"
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -I$REPO/shmd/include -I$REPO/shmd/lib -I$REPO/shmd/format -fno-omit-frame-pointer"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

# Rebuild when a source is newer than the binary.
needs_build() {
    local bin=$1
    shift
    [ -x "$bin" ] || return 0
    for f in "$@" "$REPO"/shmd/*/*.h; do
        [ "$f" -nt "$bin" ] && return 0
    done
    return 1
}

# The queue format's files get bufcache.h forced in (their 1 MiB read
# windows are recycled instead of mmap'ed afresh by ASan on every scan: ~4x
# faster).
if needs_build "$BUILD/fuzz_queue" "$HERE/fuzz_queue.c" "$HERE/bufcache.c" "$HERE/bufcache.h" $SRCS; then
    objs=()
    ok=1
    for src in $QF_SRCS; do
        obj=$BUILD/$(basename "$src" .c).o
        objs+=("$obj")
        # shellcheck disable=SC2086
        "$CC_FUZZ" $CFLAGS $SAN -fsanitize=fuzzer-no-link -include "$HERE/bufcache.h" \
            -c -o "$obj" "$src" 2>>"$BUILD/build.log" || ok=0
    done
    # shellcheck disable=SC2086
    if [ $ok = 0 ] || ! "$CC_FUZZ" $CFLAGS $SAN -fsanitize=fuzzer -o "$BUILD/fuzz_queue" \
        "$HERE/fuzz_queue.c" "$HERE/bufcache.c" "${objs[@]}" "$REPO/shmd/lib/util.c" \
        -lpthread 2>>"$BUILD/build.log"; then
        cat "$BUILD/build.log" >&2
        say "could not build the fuzz target (is libclang-rt-dev installed?)"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi

if [ "$MODE" = corpus ]; then
    # shellcheck disable=SC2086
    "$CC_FUZZ" $CFLAGS -o "$BUILD/mkcorpus" "$HERE/mkcorpus.c" $SRCS -lpthread || exit 1
    rm -rf "$HERE/corpus"
    "$BUILD/mkcorpus" "$HERE/corpus" || exit 1
    say "seed corpus: $(ls "$HERE/corpus" | wc -l) files, $(du -sk "$HERE/corpus" | cut -f1) KB"
    exit 0
fi

if [ "$MODE" = repro ]; then
    [ -n "${2:-}" ] || { say "usage: $ME repro FILE"; exit 2; }
    "$BUILD/fuzz_queue" -runs=1 "$2"
    exit $?
fi

[ "$MODE" = quick ] && SECONDS_BUDGET=${FUZZ_QUICK_SECONDS:-10}
[ -d "$HERE/corpus" ] && [ -n "$(ls -A "$HERE/corpus" 2>/dev/null)" ] ||
    say "warning: no seed corpus in $HERE/corpus (tests/fuzz/run.sh corpus writes it)"

passed=0
failed=0
# the target's scratch queue directories: tmpfs when there is one
SCRATCH=$(mktemp -d /dev/shm/hsfuzz-run.XXXXXX 2>/dev/null || mktemp -d)
export FUZZ_SCRATCH=$SCRATCH
trap 'rm -rf "$SCRATCH"' EXIT

# Known failing inputs found earlier (tests/fuzz/regress/): each must pass.
for f in "$HERE"/regress/*; do
    [ -f "$f" ] || continue
    if "$BUILD/fuzz_queue" -runs=1 "$f" >"$BUILD/regress.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        say "regression input $(basename "$f") fails: $(grep -m1 -E 'property failed|ERROR' "$BUILD/regress.log")"
    fi
done

mkdir -p "$BUILD/work"
rm -f "$BUILD"/crash-* "$BUILD"/leak-* "$BUILD"/timeout-* "$BUILD"/oom-*
say "fuzzing the queue reader for ${SECONDS_BUDGET}s (work corpus $BUILD/work)"
(cd "$BUILD" && ./fuzz_queue -max_total_time="$SECONDS_BUDGET" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/" \
    "$BUILD/work" "$HERE/corpus") >"$BUILD/fuzz.log" 2>&1
rc=$?
grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|cov:' "$BUILD/fuzz.log" |
    tail -n 3 | sed "s|^|$ME: |"
crashes=$(ls "$BUILD"/crash-* "$BUILD"/leak-* "$BUILD"/timeout-* "$BUILD"/oom-* 2>/dev/null | wc -l)
if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    grep -E 'ERROR|property failed|SUMMARY|runtime error' "$BUILD/fuzz.log" | head -n 10 | sed "s|^|$ME: |"
    for f in "$BUILD"/crash-* "$BUILD"/leak-* "$BUILD"/timeout-* "$BUILD"/oom-*; do
        [ -e "$f" ] && say "failing input: $f (replay: $ME repro $f)"
    done
    say "log: $BUILD/fuzz.log"
    failed=$((failed + 1))
else
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$BUILD/fuzz.log" | tail -n 1)
    say "no crash, no property failure in ${execs:-?} executions"
    passed=$((passed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
