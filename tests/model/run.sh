#!/usr/bin/env bash
# tests/model/run.sh — check hotstock.pml with SPIN.
#
# Every configuration is one exhaustive SPIN safety run (spin -a, gcc
# -DSAFETY -DCOLLAPSE, pan): assertions and invalid end states (a process
# blocked forever).  A configuration expected to PASS passes when pan reports
# "errors: 0" and its search was not cut by the depth limit.  A deliberately
# broken protocol variant is expected to FAIL: it passes when pan DOES find
# a violation (proof that the model can fail); its trail is replayed into
# <work>/<name>/trail.txt.
#
#   tests/model/run.sh            the quick set (under 2 minutes on 2 cores)
#   MODEL_DEEP=1 run.sh           also the large configurations (~4 minutes more)
#   MODEL_ONLY=name,name run.sh   only these configurations
#   MODEL_JOBS=N                  parallel pan runs (default: number of CPUs, at most 2)
#   MODEL_WORK=dir                keep the work files there (default: a temp dir, removed
#                                 unless something failed)
#
# The last line is "N passed, N failed"; the exit status is non-zero when
# anything failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
model=$here/hotstock.pml
jobs=${MODEL_JOBS:-$(nproc 2>/dev/null || echo 2)}
((jobs > 2)) && jobs=2
((jobs < 1)) && jobs=1
depth=${MODEL_DEPTH:-20000}
limit=${MODEL_TIMEOUT:-600}

for tool in spin gcc timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: $tool not found (apt-get install spin gcc coreutils)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
done

if [[ -n ${MODEL_WORK:-} ]]; then
    work=$MODEL_WORK
    mkdir -p "$work"
    keep=1
else
    work=$(mktemp -d /tmp/hotstock-model.XXXXXX)
    keep=0
fi

# name | expect (pass/fail) | set (quick/deep) | -D flags
# Common: STOCK 2 units, qty 1, RING 3 slots, LSNs up to 8, one stalled
# writer abandoned by the spiller (STALLS=1), one retry per operation.
configs=(
    # races between buyers: no crash, no death
    "race3|pass|quick|-DNB=3 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=0"
    "race2x2|pass|quick|-DNB=2 -DNOPS=2 -DNORD=3 -DCRASHES=0 -DDEATHS=0"
    "restock|pass|quick|-DNB=2 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=0 -DRESTOCK=1"
    # a buyer process dies at any step; waiters resolve its entries
    "death|pass|quick|-DNB=2 -DNOPS=2 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "death3|pass|quick|-DNB=3 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=1"
    # the daemon crashes at any point; the next one fences and salvages
    "crash|pass|quick|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    # crash with the drain: eviction, ledger checks, DB-first refunds
    "evict|pass|quick|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=1"
    # order 0 already evicted: both refund paths, deduct retries, deaths
    "evicted|pass|quick|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "evicted-death|pass|quick|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=1 -DCRASHES=0 -DDEATHS=1"
    # power loss: the queue keeps its durable prefix, every process dies
    "powerloss|pass|quick|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0 -DPOWERLOSS=1"

    # deliberately broken variants: SPIN must find the violation
    "broken-refund-order|fail|quick|-DBROKEN_REFUND_ORDER -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "broken-refund-nocas|fail|quick|-DBROKEN_REFUND_NOCAS -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "broken-spill-order|fail|quick|-DBROKEN_SPILL_ORDER -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "broken-ledger-once|fail|quick|-DBROKEN_LEDGER_ONCE -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=1"
    "broken-dbfirst-any|fail|quick|-DBROKEN_DBFIRST_ANY -DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    # segment.h / hotstock.h as written: findings of this model (README)
    "essay-seq|fail|quick|-DESSAY_SEQ -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "seq-lap-check|fail|quick|-DSEQ_LAP_CHECK -DRING=2 -DRESTOCK=1 -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "old-client-publish|fail|quick|-DCLIENT_C_PUBLISH -DRING=2 -DRESTOCK=1 -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "essay-release|fail|quick|-DESSAY_RELEASE -DONLY_REFUNDS -DPREEVICTED=1 -DNB=2 -DNOPS=1 -DNORD=1 -DCRASHES=0 -DDEATHS=1"
    "api-dup-nowait|fail|quick|-DAPI_DUP_NOWAIT -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"

    # large configurations (MODEL_DEEP=1)
    "deep-crash2x2|pass|deep|-DNB=2 -DNOPS=2 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    "deep-crash3|pass|deep|-DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    "deep-evicted-death|pass|deep|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "deep-crash-death|pass|deep|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=1 -DDRAIN=1"
    "deep-crash2|pass|deep|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=2 -DDEATHS=0 -DDRAIN=0"
)

# one configuration: prints one result line into $work/<name>/result
run_one() {
    local name=$1 expect=$2 flags=$3 hashbits=$4
    local dir=$work/$name
    mkdir -p "$dir"
    cp "$model" "$dir/hotstock.pml"
    local start=$SECONDS
    (
        cd "$dir" || exit 1
        # shellcheck disable=SC2086
        if ! spin -a $flags hotstock.pml >spin.out 2>&1; then
            echo "FAIL $name: spin -a failed: $(head -1 spin.out)" >result
            exit 0
        fi
        if ! gcc -O1 -w -DSAFETY -DCOLLAPSE -DMEMLIM=8192 -o pan pan.c >gcc.out 2>&1; then
            echo "FAIL $name: gcc failed: $(head -1 gcc.out)" >result
            exit 0
        fi
        timeout "$limit" ./pan -m"$depth" -w"$hashbits" >pan.out 2>&1
        local rc=$?
        local errors states depthr secs verdict what
        errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | tail -1)
        states=$(sed -n 's/^ *\([0-9e.+]*\) states, stored.*/\1/p' pan.out | tail -1)
        depthr=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' pan.out | tail -1)
        secs=$((SECONDS - start))
        what=$(grep -m1 -E 'assertion violated|invalid end state|acceptance cycle' pan.out |
            sed 's/^pan:1: //; s/ (at depth [0-9]*)//')
        if ((rc == 124)); then
            verdict="FAIL $name: pan timed out after ${limit}s"
        elif [[ -z $errors ]]; then
            verdict="FAIL $name: pan gave no verdict (exit $rc): $(tail -1 pan.out)"
        elif grep -q 'max search depth too small' pan.out; then
            verdict="FAIL $name: search truncated (max search depth too small, -m$depth)"
        elif grep -q 'out of memory\|memory limit' pan.out; then
            verdict="FAIL $name: pan ran out of memory"
        elif [[ $expect == pass ]]; then
            if ((errors == 0)); then
                verdict="PASS $name: $states states, depth $depthr, no violation (${secs}s)"
            else
                verdict="FAIL $name: $what (errors: $errors; trail in $dir/trail.txt)"
                spin -t -p -g $flags hotstock.pml >trail.txt 2>&1
                spin -t $flags hotstock.pml 2>&1 | sed -n 's/^ *@ //p' >story.txt
            fi
        else
            if ((errors > 0)); then
                verdict="PASS $name: violation found as expected: $what (${secs}s)"
                spin -t -p -g $flags hotstock.pml >trail.txt 2>&1
                spin -t $flags hotstock.pml 2>&1 | sed -n 's/^ *@ //p' >story.txt
            else
                verdict="FAIL $name: expected a violation, SPIN found none ($states states)"
            fi
        fi
        echo "$verdict" >result
    )
}

selected=()
for c in "${configs[@]}"; do
    IFS='|' read -r name expect set flags <<<"$c"
    if [[ -n ${MODEL_ONLY:-} ]]; then
        [[ ",$MODEL_ONLY," == *",$name,"* ]] || continue
    elif [[ $set == deep && -z ${MODEL_DEEP:-} ]]; then
        continue
    fi
    selected+=("$c")
done

echo "hotstock model: ${#selected[@]} configurations, $jobs at a time, work in $work"
running=0
for c in "${selected[@]}"; do
    IFS='|' read -r name expect set flags <<<"$c"
    hashbits=24
    [[ $set == deep ]] && hashbits=27
    run_one "$name" "$expect" "$flags" "$hashbits" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n
        running=$((running - 1))
    fi
done
wait

passed=0
failed=0
for c in "${selected[@]}"; do
    IFS='|' read -r name expect set flags <<<"$c"
    if [[ -f $work/$name/result ]]; then
        line=$(cat "$work/$name/result")
    else
        line="FAIL $name: no result"
    fi
    echo "$line"
    if [[ $line == PASS* ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done

if ((failed == 0 && keep == 0)); then
    rm -rf "$work"
fi
echo "$passed passed, $failed failed"
((failed == 0))
