#!/usr/bin/env bash
# run_unit.sh — run every C unit test (tests/unit/test_*, built by `make`),
# print each one's result, and end with the summed "N passed, N failed".
#
#   bash tests/run_unit.sh                 run them all
#   VALGRIND=1 bash tests/run_unit.sh      each under valgrind (memcheck); any
#                                          valgrind error fails that test
#
# A test whose exit status is non-zero, or that does not print its own
# "N passed, N failed" line, counts as one extra failure.  Exit status is
# non-zero when anything failed or no test binary exists.
set -u
cd "$(dirname "$0")/.." || exit 2

runner=()
if [[ -n ${VALGRIND:-} && ${VALGRIND} != 0 ]]; then
    runner=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
        --soname-synonyms=somalloc=*jemalloc*)
    export HS_UNDER_VALGRIND=1
fi

total_pass=0
total_fail=0
found=0
for bin in tests/unit/test_*; do
    [[ -f $bin && -x $bin && $bin != *.* ]] || continue
    found=$((found + 1))
    out=$(mktemp)
    start=$(date +%s.%N)
    "${runner[@]}" "./$bin" >"$out" 2>&1
    status=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    if [[ -n $line ]]; then
        read -r p _ f _ <<<"$line"
    else
        p=0
        f=0
    fi
    if [[ $status -ne 0 && $f -eq 0 ]] || [[ -z $line ]]; then
        f=$((f + 1)) # crashed, valgrind error, or no summary line
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    if [[ $f -eq 0 ]]; then
        printf 'ok    %-36s %s (%ss)\n' "$bin" "${line}" "$secs"
        grep -E '^perf:' "$out" | sed 's/^/      /'
    else
        printf 'FAIL  %-36s %s (exit %d, %ss)\n' "$bin" "${line:-no summary line}" "$status" "$secs"
        sed 's/^/      /' "$out" | tail -n 40
    fi
    rm -f "$out"
done

for src in tests/unit/test_*.c; do
    [[ -f $src ]] || continue
    if [[ ! -x ${src%.c} ]]; then
        printf 'FAIL  %-36s not built (run make)\n' "${src%.c}"
        total_fail=$((total_fail + 1))
    fi
done
if [[ $found -eq 0 ]]; then
    echo "no unit test binaries in tests/unit/: run make first"
    total_fail=$((total_fail + 1))
fi
echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
