#!/usr/bin/env bash
# tests/model/run.sh — check the SPIN models of this folder.
#
#   hotstock.pml      deduct / refund / ring / spiller / crash / drain
#   eviction.pml      the order index with online eviction
#   compensation.pml  xid-aware compensation by the drain
#   holds.pml         holds: reserve, confirm, cancel, expiry, compensation,
#                     dead owners, crash and rebuild
#   basket.pml        baskets: the basket lock on the counters, group appends,
#                     the spiller's and the salvage's group rule, deaths, crash
#
# Every configuration is one exhaustive SPIN safety run (spin -a, gcc
# -DSAFETY -DCOLLAPSE, pan): assertions and invalid end states (a process
# blocked forever).  A configuration expected to PASS passes when pan reports
# "errors: 0" and its search was not cut by the depth limit.  A deliberately
# broken protocol variant is expected to FAIL: it passes when pan DOES find
# a violation (proof that the model can fail); its trail is replayed into
# <work>/<name>/trail.txt.
#
#   tests/model/run.sh            the quick set (about 2.5 minutes on 2 cores)
#   MODEL_DEEP=1 run.sh           also the large configurations (~12 minutes more)
#   MODEL_ONLY=name,name run.sh   only these configurations
#   MODEL_JOBS=N                  parallel pan runs (default: number of CPUs, at most 2)
#   MODEL_WORK=dir                keep the work files there (default: a temp dir, removed
#                                 unless something failed)
#
# The last line is "N passed, N failed"; the exit status is non-zero when
# anything failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
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

# name | expect (pass/fail) | set (quick/deep) | model (file without .pml) | -D flags
#   [| gcc optimisation, -O1 unless given: -O0 for small searches, where
#    compiling pan.c at -O1 takes longer than the search]
# hotstock: STOCK 2 units, qty 1, RING 3 slots, LSNs up to 8, one stalled
# writer abandoned by the spiller (STALLS=1), one retry per operation.
configs=(
    # races between buyers: no crash, no death
    "race3|pass|quick|hotstock|-DNB=3 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=0"
    "race2x2|pass|quick|hotstock|-DNB=2 -DNOPS=2 -DNORD=3 -DCRASHES=0 -DDEATHS=0"
    "restock|pass|quick|hotstock|-DNB=2 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=0 -DRESTOCK=1"
    # a buyer process dies at any step; waiters resolve its entries
    "death|pass|quick|hotstock|-DNB=2 -DNOPS=2 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "death3|pass|quick|hotstock|-DNB=3 -DNOPS=1 -DNORD=3 -DCRASHES=0 -DDEATHS=1"
    # the daemon crashes at any point; the next one fences and salvages
    "crash|pass|quick|hotstock|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    # crash with the drain: eviction, ledger checks, DB-first refunds
    "evict|pass|quick|hotstock|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=1"
    # order 0 already evicted: both refund paths, deduct retries, deaths
    "evicted|pass|quick|hotstock|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "evicted-death|pass|quick|hotstock|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=1 -DCRASHES=0 -DDEATHS=1"
    # power loss: the queue keeps its durable prefix, every process dies
    "powerloss|pass|quick|hotstock|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0 -DPOWERLOSS=1"

    # deliberately broken variants: SPIN must find the violation
    "broken-refund-order|fail|quick|hotstock|-DBROKEN_REFUND_ORDER -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "broken-refund-nocas|fail|quick|hotstock|-DBROKEN_REFUND_NOCAS -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "broken-spill-order|fail|quick|hotstock|-DBROKEN_SPILL_ORDER -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "broken-ledger-once|fail|quick|hotstock|-DBROKEN_LEDGER_ONCE -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=1"
    "broken-dbfirst-any|fail|quick|hotstock|-DBROKEN_DBFIRST_ANY -DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    # segment.h / hotstock.h as written: findings of this model (README)
    "essay-seq|fail|quick|hotstock|-DESSAY_SEQ -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "seq-lap-check|fail|quick|hotstock|-DSEQ_LAP_CHECK -DRING=2 -DRESTOCK=1 -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "old-client-publish|fail|quick|hotstock|-DCLIENT_C_PUBLISH -DRING=2 -DRESTOCK=1 -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"
    "essay-release|fail|quick|hotstock|-DESSAY_RELEASE -DONLY_REFUNDS -DPREEVICTED=1 -DNB=2 -DNOPS=1 -DNORD=1 -DCRASHES=0 -DDEATHS=1"
    "api-dup-nowait|fail|quick|hotstock|-DAPI_DUP_NOWAIT -DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=0"

    # large configurations (MODEL_DEEP=1)
    "deep-crash2x2|pass|deep|hotstock|-DNB=2 -DNOPS=2 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    "deep-crash3|pass|deep|hotstock|-DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=0 -DDRAIN=0"
    "deep-evicted-death|pass|deep|hotstock|-DPREEVICTED=1 -DNB=3 -DNOPS=1 -DNORD=2 -DCRASHES=0 -DDEATHS=1"
    "deep-crash-death|pass|deep|hotstock|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=1 -DDEATHS=1 -DDRAIN=1"
    "deep-crash2|pass|deep|hotstock|-DNB=2 -DNOPS=1 -DNORD=2 -DCRASHES=2 -DDEATHS=0 -DDRAIN=0"

    # eviction.pml: 2 buyers, 3-4 operations on 2 order ids (scenarios: see
    # init in eviction.pml), 3 slots (ev-retry-death: 2, the table fills),
    # STOCK 3; the evictor, the spiller and the drain
    "ev-retry|pass|quick|eviction|-DSCENARIO=1"
    "ev-retry-fp|pass|quick|eviction|-DSCENARIO=1 -DFALSEPOS=1"
    "ev-retry-death|pass|quick|eviction|-DSCENARIO=1 -DDEATHS=1 -DNSLOT=2"
    "ev-retake|pass|quick|eviction|-DSCENARIO=4 -DDEATHS=1"
    "ev-refund|pass|quick|eviction|-DSCENARIO=2"
    "ev-refund-death|pass|quick|eviction|-DSCENARIO=2 -DDEATHS=1"
    "ev-refund-failed|pass|quick|eviction|-DSCENARIO=5 -DDEATHS=1"
    "ev-chain|pass|quick|eviction|-DSCENARIO=3"
    "ev-broken-no-stripe|fail|quick|eviction|-DBROKEN_NO_STRIPE -DSCENARIO=1"
    "ev-broken-late-passed|fail|quick|eviction|-DBROKEN_LATE_PASSED -DSCENARIO=1"
    "ev-broken-stop-at-empty|fail|quick|eviction|-DBROKEN_STOP_AT_EMPTY -DSCENARIO=1"
    "ev-broken-filter-late|fail|quick|eviction|-DBROKEN_FILTER_LATE -DSCENARIO=1"
    "ev-broken-retake-nofilter|fail|quick|eviction|-DBROKEN_RETAKE_NOFILTER -DSCENARIO=4"
    "ev-broken-ledger-first|fail|quick|eviction|-DBROKEN_LEDGER_FIRST -DSCENARIO=1 -DFALSEPOS=1"
    "ev-broken-evict-recorded|fail|quick|eviction|-DBROKEN_EVICT_RECORDED -DSCENARIO=1"
    "ev-broken-decr-lost-cas|fail|quick|eviction|-DBROKEN_DECR_LOST_CAS -DSCENARIO=4"
    # pg_ext/api.c hotstock_refund() as written: finding (README)
    "ev-api-refund-e-after|fail|quick|eviction|-DBROKEN_REFUND_E_AFTER -DSCENARIO=2"

    # compensation.pml: 1-2 orders, each deducted by its own transaction
    # (commit, rollback, killed, prepared), a user's refund of order 0, the
    # evictor, the drain and its settling; STOCK 2
    "comp-one|pass|quick|compensation|-DNORD=1"
    "comp-one-crash|pass|quick|compensation|-DNORD=1 -DCRASHES=1"
    "comp-two|pass|quick|compensation|-DNORD=2 -DUSER=0"
    "comp-broken-fate-order|fail|quick|compensation|-DBROKEN_FATE_ORDER -DNORD=1"
    "comp-broken-prepared|fail|quick|compensation|-DBROKEN_PREPARED_ABORTED -DNORD=1"
    "comp-broken-blind|fail|quick|compensation|-DBROKEN_COMP_BLIND -DNORD=1"
    "comp-broken-settle-on-down|fail|quick|compensation|-DBROKEN_SETTLE_ON_DOWN -DNORD=1 -DCRASHES=1"
    # shmd/lib/refund.c hs_refund_evicted() as written: finding (README)
    "comp-api-refund-evicted|fail|quick|compensation|-DBROKEN_REFUND_EVICTED_UNCHECKED -DNORD=1"

    # large configurations of the new models (MODEL_DEEP=1)
    "ev-deep-refund-reuse|pass|deep|eviction|-DSCENARIO=6"
    "ev-deep-refund-reuse-death|pass|deep|eviction|-DSCENARIO=6 -DDEATHS=1"
    "ev-deep-chain-death|pass|deep|eviction|-DSCENARIO=3 -DDEATHS=1"
    "ev-deep-chain-fp|pass|deep|eviction|-DSCENARIO=3 -DFALSEPOS=1"
    "comp-deep-two-crash|pass|deep|compensation|-DNORD=2 -DUSER=0 -DCRASHES=1"
    "comp-deep-two-user|pass|deep|compensation|-DNORD=2 -DUSER=1"

    # holds.pml: holds with a time-to-live (hotstock.h, "Holds"); STOCK 1,
    # TTL 1, the clock 0..1; scenarios (init in holds.pml): 1 reserve +
    # confirm vs cancel, 2 the same two-phase, 3 two holds for one unit,
    # 4 a retake, 5 three settlers, 6 a cancel and a two-phase confirm of
    # two holds, 7 a sold-out reserve then a deduct of its order id, 8 a
    # retake after a cancel
    # (deaths, crashes and failures are "up to": each configuration also
    # covers the runs without them)
    "hold-death2|pass|quick|holds|-DSCENARIO=1 -DDEATHS=2|-O0"
    "hold-2pc-death|pass|quick|holds|-DSCENARIO=2 -DDEATHS=1 -DFULLS=1|-O0"
    "hold-two-death|pass|quick|holds|-DSCENARIO=3 -DDEATHS=1|-O0"
    "hold-three-death|pass|quick|holds|-DSCENARIO=5 -DDEATHS=1|-O0"
    "hold-deduct-death|pass|quick|holds|-DSCENARIO=7 -DDEATHS=1|-O0"
    "hold-crash-death|pass|quick|holds|-DSCENARIO=2 -DCRASHES=1 -DDEATHS=1|-O0"
    "hold-comp-death|pass|quick|holds|-DSCENARIO=2 -DCOMP=1 -DDEATHS=1|-O0"
    "hold-retake-typed|pass|quick|holds|-DSCENARIO=4 -DRETAKE=1 -DTYPED=1 -DDEATHS=1 -DCRASHES=1|-O0"
    # IMPL=1 TYPED=1: the code (hold.c, deduct.c, index.c, refund.c,
    # segment_build.c): its stores, and a dead owner settled by the type of
    # the last folded record (segment.h, hs_state_of_record).  IMPL=1
    # alone: its first version, which decided from an LSN base in
    # deducted_lsn and fails (H8, H9 in the README; kept below as must-fail);
    # IMPL_ONESTEP: as if each owner's deducted_lsn and state stores were one
    "hold-retake-impl-typed|pass|quick|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=4 -DRETAKE=1 -DDEATHS=1 -DCRASHES=1|-O0"
    "hold-deduct-impl-typed|pass|quick|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=7 -DDEATHS=1|-O0"
    "hold-cancel-retake-impl-typed|pass|quick|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=8 -DRETAKE=1 -DDEATHS=1|-O0"
    "hold-retake-impl-onestep|pass|quick|holds|-DIMPL=1 -DIMPL_ONESTEP -DSCENARIO=4 -DRETAKE=1 -DDEATHS=1 -DCRASHES=1|-O0"
    # the hold protocol as specified (and the code it extends): findings (README)
    "hold-spec-pending-dlsn|fail|quick|holds|-DSPEC_PENDING_NODLSN -DSCENARIO=1 -DDEATHS=2|-O0"
    "hold-spec-expiry-owned|fail|quick|holds|-DSPEC_EXPIRY_CC -DSCENARIO=1 -DDEATHS=1 -DCOMP=1|-O0"
    "hold-spec-retake|fail|quick|holds|-DRETAKE=1 -DSCENARIO=4 -DDEATHS=1|-O0"
    "hold-api-deduct-deadline|fail|quick|holds|-DAPI_DEDUCT_STALE_DEADLINE -DSCENARIO=7 -DDEATHS=1|-O0"
    "hold-api-record-timestamp|fail|quick|holds|-DAPI_RECORD_TIMESTAMP -DSCENARIO=1 -DCRASHES=1|-O0"
    "hold-api-install-dlsn|fail|quick|holds|-DAPI_INSTALL_DLSN -DSCENARIO=1 -DCRASHES=1 -DDEATHS=1|-O0"
    # the code's first version (IMPL=1, the LSN base): findings H8, H9
    # (README), fixed by the typed rule
    "hold-retake-impl|fail|quick|holds|-DIMPL=1 -DSCENARIO=4 -DRETAKE=1 -DDEATHS=1 -DCRASHES=1|-O0"
    "hold-impl-cancel-oversell|fail|quick|holds|-DIMPL=1 -DNO_P5 -DSCENARIO=1 -DDEATHS=1|-O0"
    "hold-impl-onestep-cancel-retake|fail|quick|holds|-DIMPL=1 -DIMPL_ONESTEP -DSCENARIO=8 -DRETAKE=1 -DDEATHS=1|-O0"
    # deliberately broken variants, at least one per property
    "hold-broken-raise-first|fail|quick|holds|-DBROKEN_RAISE_FIRST -DSCENARIO=1|-O0"
    "hold-broken-expire-nocas|fail|quick|holds|-DBROKEN_EXPIRE_NOCAS -DSCENARIO=1|-O0"
    "hold-broken-comp-confirmed|fail|quick|holds|-DBROKEN_COMP_CONFIRMED -DSCENARIO=1 -DCOMP=1|-O0"
    "hold-broken-confirm-nocas|fail|quick|holds|-DBROKEN_CONFIRM_NOCAS -DSCENARIO=1|-O0"
    "hold-broken-confirm-nodeadline|fail|quick|holds|-DBROKEN_CONFIRM_NODEADLINE -DSCENARIO=1|-O0"
    "hold-broken-expiry-giveup|fail|quick|holds|-DBROKEN_EXPIRY_GIVEUP -DSCENARIO=2|-O0"
    "hold-broken-resolve-nowait|fail|quick|holds|-DBROKEN_RESOLVE_NOWAIT -DSCENARIO=1 -DDEATHS=1|-O0"
    "hold-broken-rebuild-silent|fail|quick|holds|-DBROKEN_REBUILD_SILENT_EXPIRY -DSCENARIO=1 -DCRASHES=1|-O0"
    # large configurations of holds.pml (MODEL_DEEP=1)
    "hold-deep-three-crash|pass|deep|holds|-DSCENARIO=5 -DCRASHES=1"
    "hold-deep-death2-crash|pass|deep|holds|-DSCENARIO=2 -DDEATHS=2 -DCRASHES=1"
    "hold-deep-cancel-crash|pass|deep|holds|-DSCENARIO=6 -DDEATHS=1 -DCRASHES=1"
    "hold-deep-comp-crash|pass|deep|holds|-DSCENARIO=2 -DCOMP=1 -DDEATHS=1 -DCRASHES=1"
    "hold-deep-two-clock2|pass|deep|holds|-DSCENARIO=3 -DTMAX=2 -DDEATHS=1"
    "hold-deep-two-comp-crash|pass|deep|holds|-DSCENARIO=3 -DCOMP=1 -DCRASHES=1"
    "hold-deep-deduct-crash|pass|deep|holds|-DSCENARIO=7 -DDEATHS=1 -DCRASHES=1 -DTMAX=2"
    "hold-deep-impl-typed-three|pass|deep|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=5 -DDEATHS=1"
    "hold-deep-impl-typed-two-crash|pass|deep|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=6 -DDEATHS=1 -DCRASHES=1"
    "hold-deep-impl-typed-comp-crash|pass|deep|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=2 -DCOMP=1 -DDEATHS=1 -DCRASHES=1"
    "hold-deep-impl-typed-retake2|pass|deep|holds|-DIMPL=1 -DTYPED=1 -DSCENARIO=8 -DRETAKE=1 -DDEATHS=2 -DCRASHES=1 -DTMAX=2"

    # basket.pml: baskets as built (counter.c, ring.c append_group, basket.c,
    # spiller.c, recovery.c); 2 SKUs of STOCK0 2 and STOCK1 1 units, qty 1,
    # RING 4 slots (3 where given); scenarios (init in basket.pml): 1 a
    # basket against a single take of SKU 1, 2 two baskets (lines in
    # opposite orders), 3 two baskets and a take, 4 a basket and a take of
    # each SKU.  DEATHS: SIGKILLs of clients; CRASHES: the daemon dies, the
    # next one salvages; STALLS: a live writer's slot abandoned; FULLS: a
    # reservation that gives up on a full ring.
    "basket-race|pass|quick|basket|-DSCENARIO=1|-O0"
    "basket-2b|pass|quick|basket|-DSCENARIO=2|-O0"
    "basket-death|pass|quick|basket|-DSCENARIO=1 -DDEATHS=1|-O0"
    "basket-stall-crash|pass|quick|basket|-DSCENARIO=1 -DDEATHS=1 -DSTALLS=1 -DCRASHES=1|-O0"
    "basket-2b-full|pass|quick|basket|-DSCENARIO=2 -DDEATHS=1 -DSTALLS=1 -DFULLS=1 -DRING=3|-O0"
    "basket-2b-death2-crash|pass|quick|basket|-DSCENARIO=2 -DDEATHS=2 -DSTALLS=1 -DCRASHES=1"
    "basket-3-death2|pass|quick|basket|-DSCENARIO=3 -DDEATHS=2 -DRING=3"
    "basket-4-death|pass|quick|basket|-DSCENARIO=4 -DDEATHS=1"
    # deliberately broken variants of basket.pml
    "basket-broken-spill-each|fail|quick|basket|-DBROKEN_SPILL_EACH -DSCENARIO=1 -DDEATHS=1|-O0"
    "basket-broken-salvage-nogroup|fail|quick|basket|-DBROKEN_SALVAGE_NOGROUP -DSCENARIO=1 -DDEATHS=1 -DCRASHES=1|-O0"
    "basket-broken-take-nolock|fail|quick|basket|-DBROKEN_TAKE_NOLOCK -DSCENARIO=1|-O0"
    "basket-broken-check-unlocked|fail|quick|basket|-DBROKEN_CHECK_UNLOCKED -DSCENARIO=1|-O0"
    "basket-broken-break-noown|fail|quick|basket|-DBROKEN_BREAK_NOOWN -DSCENARIO=3 -DDEATHS=1|-O0"
    "basket-broken-one-by-one|fail|quick|basket|-DBROKEN_ONE_BY_ONE -DSCENARIO=2 -DSTOCK0=1|-O0"
    "basket-broken-lock-line-order|fail|quick|basket|-DBROKEN_LOCK_LINE_ORDER -DSCENARIO=2|-O0"
    "basket-broken-stall-live|fail|quick|basket|-DBROKEN_STALL_LIVE -DSCENARIO=1 -DSTALLS=1|-O0"
    "basket-broken-salvage-live|fail|quick|basket|-DBROKEN_SALVAGE_LIVE -DSCENARIO=1 -DCRASHES=1|-O0"
    # large configurations of basket.pml (MODEL_DEEP=1)
    "basket-deep-3-crash|pass|deep|basket|-DSCENARIO=3 -DDEATHS=1 -DCRASHES=1"
    "basket-deep-4-crash|pass|deep|basket|-DSCENARIO=4 -DDEATHS=1 -DCRASHES=1 -DRING=3"
)

# one configuration: prints one result line into $work/<name>/result
run_one() {
    local name=$1 expect=$2 model=$3 flags=$4 hashbits=$5 copt=${6:--O1}
    local dir=$work/$name
    local pml=$model.pml
    mkdir -p "$dir"
    cp "$here/$pml" "$dir/$pml"
    local start=$SECONDS
    (
        cd "$dir" || exit 1
        # shellcheck disable=SC2086
        if ! spin -a $flags "$pml" >spin.out 2>&1; then
            echo "FAIL $name: spin -a failed: $(head -1 spin.out)" >result
            exit 0
        fi
        if ! gcc "$copt" -w -DSAFETY -DCOLLAPSE -DMEMLIM=8192 -o pan pan.c >gcc.out 2>&1; then
            echo "FAIL $name: gcc failed: $(head -1 gcc.out)" >result
            exit 0
        fi
        timeout "$limit" ./pan -m"$depth" -w"$hashbits" >pan.out 2>&1
        local rc=$?
        local errors states depthr vector secs verdict what
        errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | tail -1)
        states=$(sed -n 's/^ *\([0-9e.+]*\) states, stored.*/\1/p' pan.out | tail -1)
        depthr=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' pan.out | tail -1)
        vector=$(sed -n 's/^State-vector \([0-9]*\) byte.*/\1/p' pan.out | tail -1)
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
                verdict="PASS $name: $states states, vector $vector bytes, depth $depthr, no violation (${secs}s)"
            else
                verdict="FAIL $name: $what (errors: $errors; trail in $dir/trail.txt)"
                spin -t -p -g $flags "$pml" >trail.txt 2>&1
                spin -t $flags "$pml" 2>&1 | sed -n 's/^ *@ //p' >story.txt
            fi
        else
            if ((errors > 0)); then
                verdict="PASS $name: violation found as expected: $what (${secs}s)"
                spin -t -p -g $flags "$pml" >trail.txt 2>&1
                spin -t $flags "$pml" 2>&1 | sed -n 's/^ *@ //p' >story.txt
            else
                verdict="FAIL $name: expected a violation, SPIN found none ($states states)"
            fi
        fi
        echo "$verdict" >result
    )
}

selected=()
for c in "${configs[@]}"; do
    IFS='|' read -r name expect set model flags <<<"$c"
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
    IFS='|' read -r name expect set model flags copt <<<"$c"
    hashbits=24
    [[ $set == deep ]] && hashbits=27
    run_one "$name" "$expect" "$model" "$flags" "$hashbits" "${copt:-}" &
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
    IFS='|' read -r name expect set model flags <<<"$c"
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
