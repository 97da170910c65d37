/*
 * basket.pml
 *      Promela model of baskets as built (shmd/README.md, "Baskets: every
 *      line or none"): the basket lock on the SKU counters (counter.c), the
 *      group append (ring.c append_group), basket_take (basket.c), the
 *      spiller's group rule (spiller.c hsd_collect_batch, hsd_group_ready,
 *      hsd_slot_stall) and the salvage of a dead daemon's ring with its
 *      group post-pass (recovery.c hsd_salvage_ring); checked with SPIN
 *      (tests/model/run.sh).
 *
 * The code as it landed (there is no separate specification to compare it
 * with, unlike holds.pml's IMPL switch): one d_step or guard is one atomic
 * instruction on a shared word (a load, a CAS, a store, fetch_or/_and/
 * _add/_sub), all sequentially consistent.  Merged, each argued where it
 * is done: a ring slot's fill (memcpy + crc) with its publishing store
 * (nobody reads a claimed slot before the store), the spiller's write of a
 * lone record with its spilled_lsn store, the recovery's post-pass with
 * the append of the salvaged records.
 *
 * Shared words, as segment.h lays them out:
 *   avail[s], lk[s]  hs_sku_slot.available of SKU s: the units and bit 62
 *                    (HS_AVAILABLE_LOCKED), one word (every step reads or
 *                    writes both at once); locker[s] the locker word (pid)
 *   nextl, fenced    header.next_lsn and its HS_LSN_FENCED bit (one word)
 *   spl              header.spilled_lsn
 *   seqv/seqk/seqp   hs_ring_slot.seq of each of RING slots: the LSN (low
 *                    bits), the kind (PLAIN: published or an earlier lap;
 *                    ABN: L | HS_SEQ_ABANDONED; CLM: hs_seq_claim(L, pid))
 *                    and the claimer's pid; one word
 *   rw/rsku/rgs/rgp  the slot's record: writer, SKU, group_size, group_pos
 *   q*[1..qlen]      the queue files: per LSN the record or a NOOP
 * Ghosts (not in the code): alive[] (a pid not "gone"), resv[L] (who
 * reserved L), tk[] (units a process took and did not give back), the
 * results, qtaken[s] (units of SKU s taken by records in the queue).
 *
 * Processes (pids 1..NP; SCENARIO picks them, see init):
 *   basket(me, x0, x1)  hs_deduct_basket of 2 lines, qty 1: line 0 SKU x0,
 *       line 1 SKU x1.  1 (FASTPATH) sold-out fast path: a load of each
 *       counter, lock bit masked; below 1: HS_SOLD_OUT.  3 lock both SKUs
 *       in slot order (counter_lock: load locker; 0 or a dead pid: CAS to
 *       me, else wait for it to change or die; then fetch_or LOCKED);
 *       check the lines in line order (a load each, bit masked); leave
 *       each SKU in lock order: fetch_sub(1 + LOCKED) or fetch_sub(LOCKED),
 *       then store locker 0.  4 append_group(2): ring_reserve (load next,
 *       fenced: HS_DAEMON_DOWN; load spilled; full: wait, or
 *       HS_QUEUE_FULL (FULLS), or HS_DAEMON_DOWN once the daemon is dead;
 *       CAS next += 2); ring_claim of each member (load seq; a claim or a
 *       value >= L: lost; CAS to CLAIMED(L, me)); on a lost claim
 *       ring_abandon_own of every other member (claimed: store L|ABN;
 *       unclaimed: load, CAS from an earlier lap) and counter_give of both
 *       lines (fetch_add), HS_DAEMON_DOWN; else fill + publish member 0,
 *       then member 1: HS_OK.
 *   taker(me, x)   hs_deduct of 1 unit of SKU x: counter_take (load; the bit
 *       set: counter_wait_unlocked: load; while the bit is set: load locker;
 *       a dead locker: CAS locker dead -> me, fetch_and ~LOCKED, store 0;
 *       else wait for a change; load again; then CAS from the value
 *       without the bit), then append_record (a group of 1), undo on
 *       failure as above.
 *   daemon  the spiller, from LSN 1: load next (wait while nothing is
 *       reserved), load seq of L: published lone record: write it (and
 *       spilled_lsn); published group start: hsd_group_ready (load seq of
 *       member 1: published: take the group; abandoned: NOOPs; claimed by
 *       a gone pid: CAS to abandoned, NOOPs; claimed by a live one, or
 *       unclaimed: wait, i.e. start over at L; unclaimed for "2 s": CAS to
 *       abandoned (STALLS bounds how often a live writer's slot is
 *       abandoned; a dead reserver's always may be), NOOPs); the group's
 *       two writes, then spilled_lsn; a published member whose group start
 *       was abandoned, or an abandoned slot: NOOP; not published:
 *       hsd_slot_stall (a live claimer is waited for; a dead claimer's
 *       slot, or an unclaimed one after the stall limit, CAS to abandoned:
 *       NOOP).  With CRASHES=1 the daemon may die between any two of its
 *       steps; the next daemon then fences next_lsn, cuts a group the torn
 *       tail of the queue ends inside (the recovery scan), salvages every
 *       LSN after the queue's last up to the fence as hsd_salvage_ring does
 *       (published: kept; abandoned: NOOP; claimed by a live writer: wait;
 *       else CAS to abandoned: NOOP), runs its group post-pass and appends
 *       the result.  The next segment is not served (nobody calls again):
 *       its counters would be the rebuild, stock - qtaken.
 *   Deaths (DEATHS): a client may be SIGKILLed between any two of its
 *       shared steps: it stops, and its pid is gone from then on.
 *
 * Properties (assertions; run.sh also fails on an invalid end state):
 *   B1 never oversold (monitor, every state): 0 <= avail[s] and
 *      avail[s] + qtaken[s] <= stock[s] for both SKUs.  stock - qtaken is
 *      what a restart rebuilds the counter to: the live counter may be
 *      lower (units held back by a dead or unfinished taker: undersell),
 *      never higher; and qtaken <= stock.  A basket leaves a SKU only
 *      while it holds the bit (else its fetch_sub(LOCKED) would corrupt
 *      the word).
 *   B2 the queue never holds part of a group: checked at every spilled_lsn
 *      store, after the salvage, and at the end.
 *   B3 at the end (every client finished or dead, the spiller caught up or
 *      the salvage done; a run that cannot get there is an invalid end
 *      state): every reserved LSN is in the queue; a basket (taker) that
 *      answered HS_OK has both (its) records in the queue; a live process
 *      holds exactly the units its records in the queue take (what it did
 *      not record it gave back), a dead one at least those; avail[s] + the
 *      units held = stock[s].
 *   B4 without disruption (no death, crash, stall or full ring): no NOOP in
 *      the queue, and a refusal stands: a process answered HS_SOLD_OUT
 *      only if at the end one of its SKUs has no unit (no unit it was
 *      refused came back: nothing was taken and undone meanwhile).
 *
 * Switches: SCENARIO (1-4, see init), STOCK0, STOCK1, RING, DEATHS,
 * CRASHES, STALLS, FULLS, FASTPATH.  Deliberately broken variants (run.sh
 * expects a violation):
 *   BROKEN_SPILL_EACH       the spiller takes a group's members one by one,
 *                           like lone records                          B2
 *   BROKEN_SALVAGE_NOGROUP  the salvage without its group post-pass    B2
 *   BROKEN_TAKE_NOLOCK      counter_take CASes from a value with the bit
 *                           (ignores the basket lock)                  B1
 *   BROKEN_CHECK_UNLOCKED   the basket checks its lines before it locks B1
 *   BROKEN_BREAK_NOOWN      the lock breaker clears the bit of a dead
 *                           locker without owning the locker word      B1
 *   BROKEN_ONE_BY_ONE       no lock: the basket takes its lines one by one
 *                           (counter_take) and gives back on failure   B4
 *   BROKEN_LOCK_LINE_ORDER  locks in line order, not slot order   deadlock
 *   BROKEN_STALL_LIVE       the spiller abandons a slot claimed by a live
 *                           writer after the stall limit               B3
 *   BROKEN_SALVAGE_LIVE     the salvage abandons a slot claimed by a live
 *                           writer instead of waiting                  B3
 * Not a failure (README, basket.pml finding 3):
 *   BROKEN_CLAIM_EACH       the writer claims and publishes member 0 before
 *                           it claims member 1 (claim-fill per member):
 *                           passes B1-B4 in the bounds tried, so it is not
 *                           in run.sh
 */

#ifndef SCENARIO
#define SCENARIO 1
#endif
#ifndef STOCK0
#define STOCK0 2
#endif
#ifndef STOCK1
#define STOCK1 1
#endif
#ifndef RING
#define RING 4
#endif
#ifndef DEATHS
#define DEATHS 0
#endif
#ifndef CRASHES
#define CRASHES 0
#endif
#ifndef STALLS
#define STALLS 0
#endif
#ifndef FULLS
#define FULLS 0
#endif
#ifndef FASTPATH
#define FASTPATH 1
#endif

#if SCENARIO == 3 || SCENARIO == 4
#define NP 3
#else
#define NP 2
#endif
#define MAXL (2 * NP) /* every process reserves at most 2 LSNs */

/* seq kinds */
#define PLAIN 0
#define ABN 1
#define CLM 2

/* results */
#define R_NONE 0
#define R_OK 1
#define R_SOLDOUT 2
#define R_DOWN 3
#define R_FULL 4

/* ---- shared words ---- */
short avail[2];
bit lk[2];
byte locker[2];
byte nextl = 1;
bit fenced;
byte spl;
byte seqv[RING];
byte seqk[RING];
byte seqp[RING];
byte rw[RING];
byte rsku[RING];
byte rgs[RING];
byte rgp[RING];
/* the queue */
byte qlen;
bit qnoop[MAXL + 2];
byte qw[MAXL + 2];
byte qsku[MAXL + 2];
byte qgs[MAXL + 2];
byte qgp[MAXL + 2];

/* ---- ghosts ---- */
byte qtaken[2];
bit alive[NP + 1];
bit done[NP + 1];
byte result[NP + 1];
byte want[NP + 1];     /* bit s: the process wants a unit of SKU s */
byte need[NP + 1];     /* records of a successful call */
byte tk[2 * (NP + 1)]; /* units of SKU s the process holds: tk[2 * p + s] */
byte resv[MAXL + 2];
byte deaths;
byte stalls;
byte fulls;
bit crashed;
bit recovered;
byte onext; /* the fence's next_lsn */
byte spnext = 1; /* the spiller's next LSN (the salvage's cursor after a crash) */

#define STOCK(s) ((s) == 0 -> STOCK0 : STOCK1)
#define INV (avail[0] >= 0 && avail[1] >= 0 && avail[0] + qtaken[0] <= STOCK0 && \
             avail[1] + qtaken[1] <= STOCK1)

/* a client may die here; the budget is tested in the step that spends it */
#define DIE                                                                    \
    if                                                                         \
    :: d_step {                                                                \
            deaths < DEATHS;                                                   \
            deaths++;                                                          \
            alive[me] = 0;                                                     \
            printf("@ P%d dies\n", me)                                         \
        };                                                                     \
        goto dead                                                              \
    :: true                                                                    \
    fi

/* the daemon may die here (CRASHES) */
#if CRASHES
#define CRASHPT                                                                \
    if                                                                         \
    :: !crashed -> goto crash                                                  \
    :: true                                                                    \
    fi
#define CRASHOPT :: !crashed -> goto crash
#else
#define CRASHPT skip
#define CRASHOPT :: false
#endif

/* the slot word of slot s, as seen, is still there */
#define SAME(s, v, k, p) (seqv[s] == v && seqk[s] == k && seqp[s] == p)

/* append record L to the queue (write(2)) */
inline qput(L, isnoop, pw, psku, pgs, pgp)
{
    assert(qlen + 1 == L);
    qlen = L;
    qnoop[L] = isnoop;
    if
    :: isnoop ->
        qw[L] = 0; qsku[L] = 0; qgs[L] = 0; qgp[L] = 0
    :: else ->
        qw[L] = pw; qsku[L] = psku; qgs[L] = pgs; qgp[L] = pgp;
        qtaken[psku]++
    fi
}

/* B2: every group in q[1..upto] is whole (a group here has 2 members) */
inline qwhole(upto, i)
{
    i = 1;
    do
    :: i <= upto ->
        if
        :: !qnoop[i] && qgs[i] > 1 && qgp[i] == 0 ->
            assert(i + 1 <= upto && !qnoop[i + 1] && qgs[i + 1] == 2 &&
                   qgp[i + 1] == 1 && qw[i + 1] == qw[i])
        :: !qnoop[i] && qgs[i] > 1 && qgp[i] != 0 ->
            assert(i > 1 && !qnoop[i - 1] && qgs[i - 1] == 2 && qgp[i - 1] == 0 &&
                   qw[i - 1] == qw[i])
        :: else
        fi;
        i++
    :: else -> break
    od
}

/*
 * ring_reserve(n): HS_OK with first set, or a failure result in res.
 */
inline reserve(n, nx, sp, fz, got, first, res)
{
    skip;
res_load:
    DIE;
    d_step { nx = nextl; fz = fenced } /* relaxed load of next_lsn */
res_chk:
    if
    :: fz -> res = R_DOWN; goto res_out
    :: else
    fi;
    DIE;
    sp = spl; /* acquire load of spilled_lsn */
    if
    :: sp < nx && nx - sp + (n - 1) >= RING ->
        /* full: wait for the spiller (spiller_wake), give up after
         * HS_QUEUE_WAIT_MS, or find the daemon dead (daemon_alive) */
        if
        :: crashed -> res = R_DOWN; goto res_out
        :: d_step { fulls < FULLS; fulls++ } -> res = R_FULL; goto res_out
        :: spl != sp || nextl != nx || fenced -> goto res_load
        fi
    :: else
    fi;
    DIE;
    d_step {
        if
        :: nextl == nx && !fenced ->
            nextl = nx + n; first = nx; got = 1;
            resv[nx] = me;
            if
            :: n > 1 -> resv[nx + 1] = me
            :: else
            fi;
            printf("@ P%d reserves LSN %d..%d\n", me, nx, nx + n - 1)
        :: else -> nx = nextl; fz = fenced; got = 0
        fi
    };
    if
    :: !got -> goto res_chk
    :: else
    fi;
res_out:
    skip
}

/* ring_claim(L): got = 1 when ours */
inline claim(L, s, sv, sk, sp, got)
{
    DIE;
    d_step { s = (L) % RING; sv = seqv[s]; sk = seqk[s]; sp = seqp[s] };
    do
    :: sk == CLM || sv >= L -> got = 0; break /* abandoned already */
    :: else ->
        DIE;
        d_step {
            if
            :: SAME(s, sv, sk, sp) ->
                seqv[s] = L; seqk[s] = CLM; seqp[s] = me; got = 1;
                printf("@ P%d claims LSN %d\n", me, L)
            :: else -> sv = seqv[s]; sk = seqk[s]; sp = seqp[s]; got = 0
            fi
        };
        if
        :: got -> break
        :: else
        fi
    od
}

/* ring_abandon_own(L, claimed) */
inline abandon_own(L, claimed, s, sv, sk, sp, got)
{
    DIE;
    if
    :: claimed ->
        d_step {
            s = (L) % RING; seqv[s] = L; seqk[s] = ABN; seqp[s] = 0;
            printf("@ P%d abandons its claim of LSN %d\n", me, L)
        }
    :: else ->
        d_step { s = (L) % RING; sv = seqv[s]; sk = seqk[s]; sp = seqp[s] };
        do
        :: sk != CLM && sv < L ->
            DIE;
            d_step {
                if
                :: SAME(s, sv, sk, sp) ->
                    seqv[s] = L; seqk[s] = ABN; seqp[s] = 0; got = 1;
                    printf("@ P%d abandons its unclaimed LSN %d\n", me, L)
                :: else -> sv = seqv[s]; sk = seqk[s]; sp = seqp[s]; got = 0
                fi
            };
            if
            :: got -> break
            :: else
            fi
        :: else -> break
        od
    fi
}

/* ring_fill: the record (memcpy, crc) and the publishing store, one step:
 * nobody reads a claimed slot's record before seq == L */
inline publish(L, psku, pgs, pgp, s)
{
    DIE;
    d_step {
        s = (L) % RING;
        rw[s] = me; rsku[s] = psku; rgs[s] = pgs; rgp[s] = pgp;
        seqv[s] = L; seqk[s] = PLAIN; seqp[s] = 0;
        printf("@ P%d publishes LSN %d (SKU %d, group %d pos %d)\n", me, L, psku, pgs, pgp)
    }
}

/* counter_lock(s): locker word, then the bit */
inline lock(s, l, got)
{
    got = 0;
    do
    :: !got ->
        DIE;
        l = locker[s];
        if
        :: l == 0 || (l != me && !alive[l]) ->
            DIE;
            d_step {
                if
                :: locker[s] == l -> locker[s] = me; got = 1
                :: else -> got = 0
                fi
            }
        :: else ->
            /* backoff: until the word changes or its pid is gone */
            locker[s] != l || !alive[l]
        fi
    :: else -> break
    od;
    DIE;
    d_step { lk[s] = 1; printf("@ P%d locks SKU %d\n", me, s) }
}

/* counter_unlock(s, take): fetch_sub(take + LOCKED), then locker 0 */
inline unlock(s, take)
{
    DIE;
    d_step {
        assert(lk[s]); /* else fetch_sub(LOCKED) corrupts the word */
        avail[s] = avail[s] - take;
        lk[s] = 0;
        tk[2 * me + s] = tk[2 * me + s] + take;
        printf("@ P%d leaves SKU %d, takes %d: %d left\n", me, s, take, avail[s])
    };
    DIE;
    locker[s] = 0
}

/* counter_give(s, 1) */
inline give(s)
{
    DIE;
    d_step {
        avail[s]++;
        tk[2 * me + s]--;
        printf("@ P%d gives 1 of SKU %d back\n", me, s)
    }
}

/*
 * counter_take(x, 1): got = 1 taken, 0 not enough.  Waits while the bit
 * is set, breaks a dead locker's lock (br: scratch).
 */
inline take(x, cur, cb, l, got, br)
{
    DIE;
    d_step { cur = avail[x]; cb = lk[x] }; /* relaxed load */
    got = 2;
    do
    :: got == 2 ->
#ifndef BROKEN_TAKE_NOLOCK
        if
        :: cb ->
            /* counter_wait_unlocked */
            DIE;
            d_step { cur = avail[x]; cb = lk[x] };
            do
            :: cb ->
                DIE;
                l = locker[x];
                if
                :: l != 0 && l != me && !alive[l] ->
#ifdef BROKEN_BREAK_NOOWN
                    DIE;
                    d_step { lk[x] = 0; printf("@ P%d clears the bit of dead %d on SKU %d\n", me, l, x) }
#else
                    DIE;
                    d_step {
                        if
                        :: locker[x] == l -> locker[x] = me; br = 1
                        :: else -> br = 0
                        fi
                    };
                    if
                    :: br ->
                        DIE;
                        d_step { lk[x] = 0; printf("@ P%d breaks the lock of dead %d on SKU %d\n", me, l, x) };
                        DIE;
                        locker[x] = 0
                    :: else
                    fi
#endif
                :: else ->
                    /* backoff until something changes */
                    lk[x] == 0 || locker[x] != l || (l != 0 && !alive[l])
                fi;
                DIE;
                d_step { cur = avail[x]; cb = lk[x] }
            :: else -> break
            od
        :: else
        fi;
#endif
        if
        :: cur < 1 -> got = 0
        :: else ->
            DIE;
            d_step {
                if
                :: avail[x] == cur && lk[x] == cb ->
                    avail[x] = cur - 1; got = 1;
                    tk[2 * me + x]++;
                    printf("@ P%d takes 1 of SKU %d: %d left\n", me, x, avail[x])
                :: else -> cur = avail[x]; cb = lk[x]; got = 2
                fi
            }
        fi
    :: else -> break
    od
}

proctype basket(byte me; byte x0; byte x1)
{
    byte s, l, nx, sp, first, j, k, sv, sk, spid;
    byte a, b; /* lock order */
    byte got;
    bit ok, fz, cl, br;
    short cur;
    bit cb;
    byte res;

    want[me] = (1 << x0) | (1 << x1);
    need[me] = 2;
#if FASTPATH
    /* 1. sold out and the basket unknown: answer without a claim */
    DIE;
    if
    :: avail[x0] < 1 -> goto soldout
    :: else
    fi;
    DIE;
    if
    :: avail[x1] < 1 -> goto soldout
    :: else
    fi;
#endif

#ifdef BROKEN_ONE_BY_ONE
    /* no lock: take line 0, then line 1, give back on failure */
    take(x0, cur, cb, l, got, br);
    if
    :: !got -> goto soldout
    :: else
    fi;
    take(x1, cur, cb, l, got, br);
    if
    :: !got -> give(x0); goto soldout
    :: else
    fi;
    goto records;
#endif

    /* 3. lock every SKU in slot order, check, take all or none */
#ifdef BROKEN_LOCK_LINE_ORDER
    a = x0; b = x1;
#else
    if
    :: x0 < x1 -> a = x0; b = x1
    :: else -> a = x1; b = x0
    fi;
#endif
#ifdef BROKEN_CHECK_UNLOCKED
    DIE;
    if
    :: avail[x0] >= 1 ->
        DIE;
        if
        :: avail[x1] >= 1 -> ok = 1
        :: else -> ok = 0
        fi
    :: else -> ok = 0
    fi;
    lock(a, l, got);
    lock(b, l, got);
#else
    lock(a, l, got);
    lock(b, l, got);
    DIE;
    if
    :: avail[x0] >= 1 ->
        DIE;
        if
        :: avail[x1] >= 1 -> ok = 1
        :: else -> ok = 0
        fi
    :: else -> ok = 0
    fi;
#endif
    unlock(a, ok);
    unlock(b, ok);
    if
    :: !ok -> goto soldout
    :: else
    fi;

records:
    skip;
    /* 4. the records, one group */
    reserve(2, nx, sp, fz, got, first, res);
    if
    :: res != R_NONE -> goto giveback
    :: else
    fi;
#ifdef BROKEN_CLAIM_EACH
    claim(first, s, sv, sk, spid, got);
    if
    :: !got -> j = 0; goto lost
    :: else
    fi;
    publish(first, x0, 2, 0, s);
    claim(first + 1, s, sv, sk, spid, got);
    if
    :: !got -> j = 1; goto lost
    :: else
    fi;
    publish(first + 1, x1, 2, 1, s);
    goto ok_out;
#endif
    j = 0;
    do
    :: j < 2 ->
        claim(first + j, s, sv, sk, spid, got);
        if
        :: got -> j++
        :: else -> break
        fi
    :: else -> break
    od;
    if
    :: j < 2 ->
lost:
    skip;
        printf("@ P%d lost its claim of LSN %d\n", me, first + j);
        k = 0;
        do
        :: k < 2 ->
            if
            :: k != j ->
                cl = (k < j);
                abandon_own(first + k, cl, s, sv, sk, spid, got)
            :: else
            fi;
            k++
        :: else -> break
        od;
        res = R_DOWN;
        goto giveback
    :: else
    fi;
    publish(first, x0, 2, 0, s);
    publish(first + 1, x1, 2, 1, s);
ok_out:
    skip;
    d_step { result[me] = R_OK; done[me] = 1; printf("@ P%d basket: HS_OK, LSN %d..%d\n", me, first, first + 1) };
    goto dead;

giveback:
    skip;
    give(x0);
    give(x1);
    d_step { result[me] = res; done[me] = 1; printf("@ P%d basket: failed (%d), units given back\n", me, res) };
    goto dead;
soldout:
    skip;
    d_step { result[me] = R_SOLDOUT; done[me] = 1; printf("@ P%d basket: HS_SOLD_OUT\n", me) };
dead:
    skip
}

proctype taker(byte me; byte x)
{
    byte s, l, nx, sp, first, sv, sk, spid;
    bit fz, cb, br;
    byte got;
    short cur;
    byte res;

    want[me] = 1 << x;
    need[me] = 1;
    take(x, cur, cb, l, got, br);
    if
    :: !got ->
        d_step { result[me] = R_SOLDOUT; done[me] = 1; printf("@ P%d take: HS_SOLD_OUT\n", me) };
        goto dead
    :: else
    fi;
    reserve(1, nx, sp, fz, got, first, res);
    if
    :: res != R_NONE -> goto giveback
    :: else
    fi;
    claim(first, s, sv, sk, spid, got);
    if
    :: !got -> res = R_DOWN; goto giveback
    :: else
    fi;
    publish(first, x, 0, 0, s);
    d_step { result[me] = R_OK; done[me] = 1; printf("@ P%d take: HS_OK, LSN %d\n", me, first) };
    goto dead;
giveback:
    skip;
    give(x);
    d_step { result[me] = res; done[me] = 1; printf("@ P%d take: failed (%d), unit given back\n", me, res) };
dead:
    skip
}

proctype daemon()
{
    byte s, sv, sk, sp, gs, gp, w, sku;
    byte m, ms, msv, msk, msp;
    byte ospl, i, k, size, span, j;
    bit got, ready;

    /* ---- the spiller ---- */
end_idle:
    if
    :: spnext < nextl -> skip /* acquire load of next_lsn: L is reserved */
    CRASHOPT
    fi;
ld:
    skip;
    CRASHPT;
    d_step {
        s = spnext % RING; sv = seqv[s]; sk = seqk[s]; sp = seqp[s];
        gs = rgs[s]; gp = rgp[s]; w = rw[s]; sku = rsku[s]
    };
    if
    :: sv == spnext && sk == PLAIN ->
        if
#ifndef BROKEN_SPILL_EACH
        :: gs > 1 && gp == 0 -> goto group
        :: gs > 1 && gp != 0 ->
            /* a later member whose group start was abandoned */
            CRASHPT;
            d_step { qput(spnext, 1, 0, 0, 0, 0); spl = spnext; spnext++ }
#endif
        :: else ->
            /* write(2) and the spilled_lsn store, one step: a crash between
             * them leaves the salvage to start after the queue's last LSN,
             * as it does after this step */
            CRASHPT;
            d_step { qput(spnext, 0, w, sku, gs, gp); spl = spnext; spnext++ }
        fi
    :: sv == spnext && sk == ABN ->
        CRASHPT;
        d_step { qput(spnext, 1, 0, 0, 0, 0); spl = spnext; spnext++ }
    :: else ->
        /* hsd_slot_stall: reserved, not published */
        if
        :: sk == CLM && !alive[sp] -> skip
        :: sk == CLM && alive[sp] ->
#ifdef BROKEN_STALL_LIVE
            if
            :: d_step { stalls < STALLS; stalls++ } -> goto stall_cas
            :: true
            fi;
#endif
            if
            :: !SAME(s, sv, sk, sp) || !alive[sp] -> goto ld
            CRASHOPT
            fi
        :: sk != CLM && (!alive[resv[spnext]] || stalls < STALLS) -> skip
        :: sk != CLM ->
            if
            :: !SAME(s, sv, sk, sp) || !alive[resv[spnext]] -> goto ld
            CRASHOPT
            fi
        fi;
stall_cas:
    skip;
        CRASHPT;
        d_step {
            if
            :: SAME(s, sv, sk, sp) ->
                if
                :: sk != CLM && alive[resv[spnext]] -> stalls++
                :: else
                fi;
                seqv[s] = spnext; seqk[s] = ABN; seqp[s] = 0; got = 1;
                printf("@ spiller abandons LSN %d (kind %d, pid %d)\n", spnext, sk, sp)
            :: else -> got = 0
            fi
        };
        if
        :: !got -> goto ld /* published or abandoned meanwhile: look again */
        :: else
        fi;
        CRASHPT;
        d_step { qput(spnext, 1, 0, 0, 0, 0); spl = spnext; spnext++ }
    fi;
    goto end_idle;

group:
    /* hsd_group_ready: member 1 (groups of 2 here) */
    m = spnext + 1;
gl:
    skip;
    CRASHPT;
    d_step { ms = m % RING; msv = seqv[ms]; msk = seqk[ms]; msp = seqp[ms] };
    if
    :: msv == m && msk == PLAIN ->
        ready = (rgs[ms] == 2 && rgp[ms] == 1)
    :: msv == m && msk == ABN -> ready = 0
    :: msk == CLM && !alive[msp] ->
        CRASHPT;
        d_step {
            if
            :: SAME(ms, msv, msk, msp) ->
                seqv[ms] = m; seqk[ms] = ABN; seqp[ms] = 0;
                printf("@ spiller abandons LSN %d, member of a dead writer's group\n", m)
            :: else
            fi
        };
        ready = 0
    :: msk == CLM && alive[msp] ->
#ifdef BROKEN_STALL_LIVE
        if
        :: d_step { stalls < STALLS; stalls++ } -> goto g_cas
        :: true
        fi;
#endif
        goto gwait
    :: msk != CLM && msv < m && (!alive[resv[m]] || stalls < STALLS) ->
g_cas:
    skip;
        CRASHPT;
        d_step {
            if
            :: SAME(ms, msv, msk, msp) ->
                if
                :: msk != CLM && alive[resv[m]] -> stalls++
                :: else
                fi;
                seqv[ms] = m; seqk[ms] = ABN; seqp[ms] = 0; got = 1;
                printf("@ spiller abandons LSN %d, member of a stalled group\n", m)
            :: else -> msv = seqv[ms]; msk = seqk[ms]; msp = seqp[ms]; got = 0
            fi
        };
        if
        :: got -> ready = 0
        :: !got && msv == m && (msk == PLAIN || msk == ABN) -> goto gl /* look again */
        :: else -> goto gwait
        fi
    :: msk != CLM && msv < m -> goto gwait
    fi;
    /* the group's records, then spilled_lsn (a batch never ends inside a
     * group; the write may be cut between them by a crash: torn tail) */
    CRASHPT;
    d_step {
        if
        :: ready -> qput(spnext, 0, w, sku, 2, 0)
        :: else -> qput(spnext, 1, 0, 0, 0, 0)
        fi
    };
    CRASHPT;
    d_step {
        if
        :: ready -> qput(m, 0, rw[ms], rsku[ms], 2, 1)
        :: else ->
            qput(m, 1, 0, 0, 0, 0);
            printf("@ spiller: the group at LSN %d lost a member: NOOPs\n", spnext)
        fi
    };
    CRASHPT;
    d_step { spl = m; spnext = m + 1 };
    qwhole(qlen, i);
    goto end_idle;

gwait:
    /* a live writer fills the rest, or an unclaimed member: poll */
    if
    :: !SAME(ms, msv, msk, msp) || (msk == CLM && !alive[msp]) ||
       (msk != CLM && !alive[resv[m]]) -> goto ld
    CRASHOPT
    fi;

#if CRASHES
crash:
    skip;
    d_step { crashed = 1; printf("@ the daemon dies (spilled %d, queue ends at %d)\n", spl, qlen) };
    /* the next daemon: fence (fetch_or of next_lsn) */
    d_step { fenced = 1; onext = nextl; ospl = spl; printf("@ next daemon fences at %d\n", onext) };
    /* the recovery scan: a group cut by the torn tail is cut whole */
    d_step {
        if
        :: qlen > 0 && !qnoop[qlen] && qgs[qlen] > 1 && qgp[qlen] + 1 < qgs[qlen] ->
            k = qgp[qlen] + 1;
            do
            :: k > 0 ->
                if
                :: !qnoop[qlen] -> qtaken[qsku[qlen]]--
                :: else
                fi;
                qlen--; k--
            :: else -> break
            od;
            printf("@ recovery scan cuts a torn group: queue ends at %d\n", qlen)
        :: else
        fi;
        assert(ospl <= qlen);
        spnext = qlen + 1
    };
    /* hsd_salvage_ring: staged into q*[qlen + 1 .. onext - 1] */
    do
    :: spnext < onext ->
sl:
    skip;
        d_step {
            s = spnext % RING; sv = seqv[s]; sk = seqk[s]; sp = seqp[s];
            gs = rgs[s]; gp = rgp[s]; w = rw[s]; sku = rsku[s]
        };
        if
        :: sv == spnext && sk == PLAIN ->
            d_step {
                qnoop[spnext] = 0; qw[spnext] = w; qsku[spnext] = sku;
                if
                :: gs > 1 -> qgs[spnext] = gs; qgp[spnext] = gp
                :: else -> qgs[spnext] = 0; qgp[spnext] = 0
                fi;
                spnext++
            }
        :: sv == spnext && sk == ABN ->
            d_step { qnoop[spnext] = 1; qgs[spnext] = 0; qgp[spnext] = 0; qw[spnext] = 0; spnext++ }
        :: else ->
            assert(spnext > ospl); /* else: "queue files lost data" */
            if
            :: sk == CLM && alive[sp] ->
#ifdef BROKEN_SALVAGE_LIVE
                if
                :: true -> goto sl_cas
                :: true
                fi;
#endif
                /* a live claimer will publish: wait for it */
                !SAME(s, sv, sk, sp) || !alive[sp];
                goto sl
            :: else
            fi;
sl_cas:
    skip;
            d_step {
                if
                :: SAME(s, sv, sk, sp) ->
                    seqv[s] = spnext; seqk[s] = ABN; seqp[s] = 0;
                    qnoop[spnext] = 1; qgs[spnext] = 0; qgp[spnext] = 0; qw[spnext] = 0;
                    printf("@ salvage abandons LSN %d\n", spnext);
                    spnext++
                :: else
                fi
            }
        fi
    :: else -> break
    od;
    skip;
    /* the group post-pass (as recovery.c has it), then the append */
    d_step {
#ifndef BROKEN_SALVAGE_NOGROUP
        i = qlen + 1;
        do
        :: i < onext ->
            size = qgs[i];
            if
            :: size == 0 -> i++
            :: else ->
                k = 1;
                if
                :: qgp[i] == 0 ->
                    do
                    :: k < size && i + k < onext && qgs[i + k] == size && qgp[i + k] == k -> k++
                    :: else -> break
                    od
                :: else
                fi;
                if
                :: qgp[i] != 0 || k < size ->
                    span = (qgp[i] != 0 -> 1 : size);
                    j = i;
                    do
                    :: j < i + span && j < onext ->
                        qnoop[j] = 1; qgs[j] = 0; qgp[j] = 0; qw[j] = 0;
                        j++
                    :: else -> break
                    od;
                    printf("@ salvage: the group at LSN %d is not whole: %d NOOPs\n", i, span);
                    i = i + span
                :: else -> i = i + size
                fi
            fi
        :: else -> break
        od;
#endif
        i = qlen + 1;
        do
        :: i < onext ->
            if
            :: !qnoop[i] -> qtaken[qsku[i]]++
            :: else
            fi;
            i++
        :: else -> break
        od;
        qlen = onext - 1;
        recovered = 1;
        printf("@ salvage done: queue ends at %d; rebuilt counters %d, %d\n", qlen,
               STOCK0 - qtaken[0], STOCK1 - qtaken[1])
    };
    qwhole(qlen, i);
    assert(qtaken[0] <= STOCK0 && qtaken[1] <= STOCK1)
#endif
}

/* B1, in every state */
active proctype monitor()
{
end:
    atomic { !(INV) -> assert(INV) }
}

/* B3 and B4, once every client finished and the daemon is idle */
proctype finish()
{
    byte p, s, i, n;
    byte recd[2];

    d_step {
        (done[1] || !alive[1]) && (done[2] || !alive[2]) &&
        (NP < 3 || done[NP] || !alive[NP]) &&
        ((!crashed && spnext == nextl) || recovered);
        printf("@ end: queue ends at %d; counters %d, %d\n", qlen, avail[0], avail[1]);
        qwhole(qlen, i);
        if
        :: !crashed -> assert(qlen == nextl - 1)
        :: else -> assert(qlen == onext - 1)
        fi;
        s = 0;
        do
        :: s < 2 ->
            n = avail[s];
            p = 1;
            do
            :: p <= NP ->
                n = n + tk[2 * p + s];
                p++
            :: else -> break
            od;
            assert(n == STOCK(s));
            s++
        :: else -> break
        od;
        p = 1;
        do
        :: p <= NP ->
            recd[0] = 0; recd[1] = 0; n = 0;
            i = 1;
            do
            :: i <= qlen ->
                if
                :: !qnoop[i] && qw[i] == p -> recd[qsku[i]]++; n++
                :: else
                fi;
                i++
            :: else -> break
            od;
            if
            :: result[p] == R_OK -> assert(n == need[p])
            :: else
            fi;
            if
            :: alive[p] -> assert(tk[2 * p] == recd[0] && tk[2 * p + 1] == recd[1])
            :: else -> assert(tk[2 * p] >= recd[0] && tk[2 * p + 1] >= recd[1])
            fi;
            if
            :: deaths == 0 && !crashed && stalls == 0 && fulls == 0 && result[p] == R_SOLDOUT ->
                /* B4: the refusal stands */
                assert(((want[p] & 1) && avail[0] < 1) || ((want[p] & 2) && avail[1] < 1))
            :: else
            fi;
            p++
        :: else -> break
        od;
        if
        :: deaths == 0 && !crashed && stalls == 0 && fulls == 0 ->
            i = 1;
            do
            :: i <= qlen -> assert(!qnoop[i]); i++
            :: else -> break
            od
        :: else
        fi
    }
}

init
{
    atomic {
        avail[0] = STOCK0;
        avail[1] = STOCK1;
        alive[1] = 1;
        alive[2] = 1;
#if NP == 3
        alive[3] = 1;
#endif
#if SCENARIO == 1
        /* a basket of both SKUs against a single take of the scarce one */
        run basket(1, 0, 1);
        run taker(2, 1);
#elif SCENARIO == 2
        /* two baskets of both SKUs, lines in opposite orders */
        run basket(1, 0, 1);
        run basket(2, 1, 0);
#elif SCENARIO == 3
        /* two baskets and a single take of the scarce SKU */
        run basket(1, 0, 1);
        run basket(2, 1, 0);
        run taker(3, 1);
#elif SCENARIO == 4
        /* a basket against a single take of each SKU */
        run basket(1, 0, 1);
        run taker(2, 0);
        run taker(3, 1);
#endif
        run daemon();
        run finish()
    }
}
