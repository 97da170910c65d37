/*
 * hotstock.pml
 *      Promela model of hotstock's deduct / refund / eviction / drain
 *      protocol, checked with SPIN (tests/model/run.sh).
 *
 * What is modelled, at the level of its atomic steps (one d_step or atomic
 * block = one atomic instruction of shmd/lib/segment.h's protocol essay):
 *
 *   - one SKU, STOCK units, qty 1 per order, NORD order ids;
 *   - per segment (one per daemon generation): the counter `available`
 *     (CAS-decrement only if >= 1, fetch_add to raise), the order index
 *     (state word = state + 8 * owner, moved by CAS), `recorded`, the ring
 *     (RING slots reused modulo RING, seq words, ABANDONED bit), next_lsn with
 *     its FENCED bit, spilled_lsn, durable_lsn, evicted_lsn;
 *   - buyer processes running deduct / refund with retries of the same
 *     order id, the SQL layer's ledger check and DB-first refund included;
 *     a buyer may die between any two of its shared steps;
 *   - the daemon: spiller (consume in LSN order, mark `recorded`, free the
 *     slot; abandon a stalled slot; fdatasync), process crash at any point
 *     and the next daemon's recovery (fence, salvage the ring, rebuild the
 *     counter from the queue and the index from records after applied_lsn,
 *     evicting the rest); optionally a power loss (queue cut to its durable
 *     prefix, every process and the shared memory gone);
 *   - the drain: applies durable records after applied_lsn into a ledger
 *     and a stock, one atomic transaction per record, then publishes
 *     applied_lsn.
 *
 * Where segment.h is silent or wrong, the default model takes the fixes
 * argued in README.md (section "findings"): ring slots are claimed by CAS
 * before they are filled, `recorded` carries the record type, a dead
 * REFUNDING claimed from "absent" goes back to absent, HS_DUPLICATE waits for
 * the original's durability, the ledger answers only for orders absent from
 * the index and evicted from the segment claimed in.  The literal contract
 * is kept as switches below, and fails.
 *
 * Properties: assertions, marked "NEVER OVERSELL", "refund at most once",
 * etc. where they are made; run.sh also fails on invalid end states (a
 * process blocked forever).
 *
 * Online eviction of the order index (probing, `passed`, versions, the
 * evicted filter) is modelled in eviction.pml, xid-aware compensation in
 * compensation.pml; here the index is one slot per order id and only a
 * restart evicts.
 *
 * Switches (-D on the spin command line, see run.sh):
 *   NB NORD NOPS RETRIES DEATHS CRASHES POWERLOSS STALLS RESTOCK DRAIN RING
 *   MAXLSN PREEVICTED ONLY_REFUNDS (scripts of refunds only)
 *   Protocol variants, each expected to FAIL (run.sh checks that it does):
 *   BROKEN_REFUND_ORDER  refund raises the counter before its record
 *   BROKEN_REFUND_NOCAS  in-index refund claim is load + store, not a CAS
 *   BROKEN_LEDGER_ONCE   deduct checks the ledger once per operation, not
 *                        again after re-attaching to a newer segment
 *   ESSAY_SEQ            segment.h as written: the writer reads seq, fills
 *                        the slot, then CAS(seq, old, L), whatever old was
 *   SEQ_LAP_CHECK        the same, refusing an old value of L|ABANDONED or
 *                        of a later lap (still fails: the fill of a stale
 *                        writer lands in a later lap's record)
 *   CLIENT_C_PUBLISH     shmd/lib/ring.c's ring_publish(): SEQ_LAP_CHECK plus
 *                        a spilled_lsn check, both before the memcpy
 *   ESSAY_RELEASE        a dead REFUNDING owner is always released to
 *                        DEDUCTED, also when hs_refund_evicted() claimed it
 *   API_DUP_NOWAIT       HS_DUPLICATE returns at once (lsn 0) and the
 *                        caller takes it as an acknowledgement
 *   BROKEN_SPILL_ORDER   spiller frees the slot (spilled_lsn) before it
 *                        marks `recorded`
 *   BROKEN_DBFIRST_ANY   the DB-first refund takes any ledger row after a
 *                        NOT_FOUND, not only rows evicted from the index
 */

/* ---- sizes ---- */
#ifndef NB
#define NB 2
#endif
#ifndef NORD
#define NORD 2
#endif
#ifndef NOPS
#define NOPS 1
#endif
#ifndef RETRIES
#define RETRIES 1
#endif
#ifndef DEATHS
#define DEATHS 0
#endif
#ifndef CRASHES
#define CRASHES 1
#endif
#ifndef POWERLOSS
#define POWERLOSS 0
#endif
#ifndef RESTOCK
#define RESTOCK 0
#endif
#ifndef RING
#define RING 3
#endif
#ifndef STALLS
#define STALLS 1
#endif
#ifndef MAXLSN
#define MAXLSN 8
#endif

/* without a restart nothing reads the ledger: the drain only multiplies
 * interleavings then (its checks are of the queue) */
#ifndef PREEVICTED
#define PREEVICTED 0 /* start with order 0 deducted, drained and evicted */
#endif
#ifndef DRAIN
#define DRAIN (CRASHES + POWERLOSS + PREEVICTED > 0)
#endif

#if RING > 5
#error "SALVAGE_READY covers RING <= 5"
#endif

#define STOCK 2
#define NSEG (CRASHES + POWERLOSS + 1)

#define FENCED 32    /* next_lsn's HS_LSN_FENCED bit (LSNs stay < 32) */
#define ABANDONED 32 /* ring seq's HS_SEQ_ABANDONED bit */
#define NEXT(g) (seg[g].next % FENCED)

/* order slot states (hotstock.h enum hs_order_slot_state) */
#define O_EMPTY 0 /* also stands for HS_INDEX_DEAD: "not in the index" */
#define O_PENDING 2
#define O_DEDUCTED 3
#define O_FAILED 4
#define O_REFUNDING 5
#define O_REFUNDED 6
#define ST(w) ((w) % 8)
#define OWN(w) ((w) / 8)
#define W(s, p) ((s) + 8 * (p))

/* record types (segment.h enum hs_record_type) */
#define R_NONE 0
#define R_DEDUCT 1
#define R_REFUND 2
#define R_ADD 4
#define R_NOOP 5

/* segment states */
#define S_NONE 0 /* never built, or gone with a power loss */
#define S_READY 2
#define S_DEAD 4

/* results */
#define GO 0
#define OK 1
#define DUPL 2
#define SOLDOUT 3
#define NOTFOUND 4
#define ALREADY 5
#define FULL 6
#define DOWN 7
#define WAIT 8
#define AGAIN 9
#define LDUP 10 /* duplicate, known from the ledger */

#define OP_DEDUCT 1
#define OP_REFUND 2

typedef Seg {
    byte state;
    bool daemon_alive; /* heartbeat fresh */
    short avail;       /* hs_sku_slot.available */
    byte next;         /* next LSN to reserve | FENCED */
    byte spilled;
    byte durable;
    byte evicted;
    byte ord[NORD];      /* order slot state word */
    byte rec_lsn[NORD];  /* `recorded`: LSN of the last folded record */
    byte rec_type[NORD]; /* and its type (see README: must be encoded) */
    byte dlsn[NORD];     /* LSN of the order's DEDUCT (for HS_DUPLICATE) */
    byte raises[NORD];   /* ghost: counter raises by refunds of o here */
    byte seq[RING];
    byte claimer[RING]; /* pid bits of a CLAIMED seq word */
    byte resv[RING];    /* ghost: pid that reserved the slot's LSN */
    byte rtype[RING];
    byte rord[RING];
};

Seg seg[NSEG];
byte cur = 0;        /* the segment the shm name points at */
byte users[NSEG];    /* processes mapping each segment */

/* the durable write-ahead queue (files) */
byte qtype[MAXLSN + 1];
byte qord[MAXLSN + 1];
byte qlen = 0; /* last LSN handed to write(2) */
byte qdur = 0; /* last LSN fdatasync'ed */

/* PostgreSQL: the drain's ledger and stock, committed atomically */
bool lhas[NORD];
bool lref[NORD];
byte llsn[NORD]; /* the ledger row's LSN (of its DEDUCT) */
short lstock = STOCK;
byte applied_db = 0;  /* applied_lsn in the drain's table */
byte applied_pub = 0; /* applied_lsn as published to the daemon */

/* ghosts */
byte nsold = 0;          /* units held: published DEDUCTs - published REFUNDs */
byte total = STOCK;      /* stock put: STOCK + published restocks */
byte ptype[MAXLSN + 1]; /* record published at LSN L, until spilled */
byte pord[MAXLSN + 1];
byte dedrecs[NORD];      /* published DEDUCT records of o (not lost) */
byte refrecs[NORD];      /* published REFUND records of o (not lost) */
byte drained_ref[NORD];  /* REFUND records of o applied by the drain */
byte refund_oks[NORD];   /* refund calls of o that answered "refunded" */
byte deduct_oks[NORD];   /* deduct calls of o that answered HS_OK */
bool acked[NORD];        /* a synchronous deduct of o was acknowledged */
bool alive[NB + 2]; /* by pid: buyers 1..NB, admin NB + 1 */
byte deaths = 0;
byte crashes = 0;
byte stalls = 0;
byte powerloss = 0;
byte epoch = 0;

/* the buyers' scripts, chosen by init: operation and order id of op k of
 * buyer b at [(b - 1) * NOPS + k]; one script per class of scripts equal up
 * to renaming order ids and buyers */
byte sop[NB * NOPS];
byte sord[NB * NOPS];

/* temporaries used only inside one d_step: not part of the state */
hidden byte perm[18];
hidden byte k, j, bp, sp, ssrc, a0, a1, scmp, canon;
hidden byte i, found, nw, hs;
hidden short ha;
hidden byte dL, dt, dO;

/* ---- properties ---- */

/* never oversell, live: a serving segment's counter plus the units held
 * never exceeds the stock put (else a future deduct oversells). */
inline inv(g)
{
    assert(seg[g].state != S_READY || seg[g].next >= FENCED ||
           seg[g].avail + nsold <= total);
}

/* an acknowledged deduct of o has its DEDUCT record in the durable queue */
inline check_durable(o, i, found)
{
    found = 0;
    i = 1;
    do
    :: i <= qdur ->
        if
        :: qtype[i] == R_DEDUCT && qord[i] == o -> found = 1
        :: else
        fi;
        i++
    :: else -> break
    od;
    assert(found)
}

/* ---- ring append: reserve, fill, publish ---- */

inline reserve(g, L, res)
{
    d_step {
        if
        :: seg[g].next >= FENCED -> res = DOWN
        :: seg[g].next < FENCED && (seg[g].next - seg[g].spilled >= RING ||
                                    seg[g].next > MAXLSN) -> res = FULL
        :: else ->
            L = seg[g].next;
            seg[g].next++;
            seg[g].resv[L % RING] = me; /* ghost: who reserved it */
            printf("@ P%d reserves LSN %d in segment %d\n", me, L, g);
            res = GO
        fi
    }
}

/*
 * Slot ownership.  ESSAY_SEQ / SEQ_LAP_CHECK model segment.h as written:
 * the writer reads seq, fills the slot, then CAS(seq, old, L).  The
 * default is the protocol this model proposes instead (see README):
 *
 *   claim    CAS(seq, earlier lap value, CLAIMED(L, pid)); fails (undo) if
 *            seq already holds L|ABANDONED or a later lap;
 *   fill     write the record into the slot, which the writer now owns;
 *   publish  store(seq, L) with release.
 *
 * The abandoner may CAS an unclaimed slot (earlier lap value) to
 * L|ABANDONED at any time, and a CLAIMED(L, pid) slot only once pid is dead.
 * Nothing else writes a claimed slot, so no stale writer can scribble over
 * the record of a later lap.
 */
#define CLAIMED 64 /* seq = CLAIMED + L, claimer in seg.claimer[] */

#if defined(CLIENT_C_PUBLISH)
/* shmd/lib/ring.c ring_publish() as written: load seq, refuse L|ABANDONED or
 * a later lap, refuse if spilled_lsn >= L; then (FILL, a separate step)
 * memcpy the record; then CAS(seq, old, L) */
inline claim(g, L, old, t, o, res)
{
    d_step {
        old = seg[g].seq[L % RING];
        if
        :: old % ABANDONED >= L || seg[g].spilled >= L -> res = DOWN
        :: else -> res = GO
        fi
    }
}
#define FILL(t)                                                                \
    d_step {                                                                   \
        seg[g].rtype[L % RING] = t;                                            \
        seg[g].rord[L % RING] = o;                                             \
        printf("@ P%d fills the slot of LSN %d (type %d, order %d)\n", me, L, t, o) \
    }
#define PUBLISH_WON seg[g].seq[L % RING] == old
#define PUBLISH_FILL
#elif defined(ESSAY_SEQ) || defined(SEQ_LAP_CHECK)
/* read seq ("anything but L"), fill the record */
inline claim(g, L, old, t, o, res)
{
    d_step {
        old = seg[g].seq[L % RING];
        seg[g].rtype[L % RING] = t;
        seg[g].rord[L % RING] = o;
        printf("@ P%d reads seq %d for LSN %d and fills the slot (type %d, order %d)\n", me, old, L, t, o);
#ifdef SEQ_LAP_CHECK
        /* refuse L|ABANDONED and later laps (not enough: the fill above
         * may already have overwritten a later lap's record) */
        if
        :: old % ABANDONED >= L -> res = DOWN
        :: else -> res = GO
        fi
#else
        res = GO
#endif
    }
}

/* CAS(seq, old, L) with release; on success the record is committed */
#define PUBLISH_WON seg[g].seq[L % RING] == old
#define PUBLISH_FILL
#else
inline claim(g, L, old, t, o, res)
{
    d_step {
        old = seg[g].seq[L % RING];
        if
        :: old < CLAIMED && old % ABANDONED < L ->
            seg[g].seq[L % RING] = CLAIMED + L;
            seg[g].claimer[L % RING] = me;
            printf("@ P%d claims the slot of LSN %d\n", me, L);
            res = GO
        :: else -> res = DOWN
        fi
    }
}

/* fill the owned slot and store(seq, L): cannot fail */
#define PUBLISH_WON true
#define PUBLISH_FILL                                                           \
    seg[g].rtype[L % RING] = t;                                                \
    seg[g].rord[L % RING] = o;                                                 \
    seg[g].claimer[L % RING] = 0;
#endif

#ifndef FILL
#define FILL(t) skip
#endif

inline publish(g, L, old, t, o, res)
{
    d_step {
        if
        :: PUBLISH_WON ->
            PUBLISH_FILL
            seg[g].seq[L % RING] = L;
            ptype[L] = t;
            pord[L] = o;
            printf("@ P%d publishes LSN %d (type %d, order %d)\n", me, L, t, o);
            res = GO;
            if
            :: t == R_DEDUCT ->
                dedrecs[o]++;
                nsold++;
                assert(dedrecs[o] <= 1); /* one DEDUCT per order id */
                assert(nsold <= total);  /* NEVER OVERSELL */
                inv(g);
                inv(cur)
            :: t == R_REFUND ->
                refrecs[o]++;
                assert(refrecs[o] <= 1);          /* refund at most once */
                assert(refrecs[o] <= dedrecs[o]); /* only what was deducted */
                nsold--
            :: t == R_ADD -> total++
            fi
        :: else -> res = DOWN; printf("@ P%d: publishing LSN %d failed (abandoned)\n", me, L)
        fi
    }
}

/* may the abandoner take the slot of L?  (not published; unclaimed, or
 * claimed by a dead process) */
#define ABANDONABLE(g, L)                                                      \
    (seg[g].seq[(L) % RING] != (L) &&                                          \
     (seg[g].seq[(L) % RING] < CLAIMED ||                                      \
      !alive[seg[g].claimer[(L) % RING]]))

/* the recovering daemon may salvage the window qlen+1 .. next-1 (at most
 * RING - 1 LSNs) when no slot in it is held by a live claimer */
#define SALVAGE_OK(g, L) ((L) >= NEXT(g) || seg[g].seq[(L) % RING] == (L) || ABANDONABLE(g, L))
#define SALVAGE_READY(g)                                                       \
    (SALVAGE_OK(g, qlen + 1) && SALVAGE_OK(g, qlen + 2) &&                    \
     SALVAGE_OK(g, qlen + 3) && SALVAGE_OK(g, qlen + 4))

/* the spiller abandons a stalled slot: always if its reserver is dead (it
 * cannot tell, but then it must, to make progress); a live but descheduled
 * reserver is "stalled" at most STALLS times per run (a bound of the model) */
#define STALL_OK(g, L)                                                         \
    (ABANDONABLE(g, L) &&                                                      \
     (seg[g].seq[(L) % RING] >= CLAIMED || !alive[seg[g].resv[(L) % RING]] ||  \
      stalls < STALLS))
#define STALL_COUNT(g, L)                                                      \
    if                                                                         \
    :: seg[g].seq[(L) % RING] < CLAIMED && alive[seg[g].resv[(L) % RING]] ->   \
        stalls++                                                               \
    :: else                                                                    \
    fi

/* the in-index refund claim: one CAS (BROKEN_REFUND_NOCAS: load, then store) */
#ifdef BROKEN_REFUND_NOCAS
#define CLAIM_BEGIN
#define CLAIM_END
#else
#define CLAIM_BEGIN atomic {
#define CLAIM_END }
#endif

/* death while holding a claimed ring slot (only the claim protocol has one) */
#if defined(ESSAY_SEQ) || defined(SEQ_LAP_CHECK) || defined(CLIENT_C_PUBLISH)
#define DIE_CLAIMED skip
#else
#define DIE_CLAIMED DIE
#endif

#define DIE                                                                    \
    if                                                                         \
    :: deaths < DEATHS ->                                                      \
        d_step { deaths++; alive[me] = 0; users[g]--; printf("@ P%d dies\n", me) }; \
        goto dead                                                              \
    :: true                                                                    \
    fi

/*
 * Call start: a segment no longer READY (the daemon that replaced it marked
 * it DEAD) means re-attach to the one the name points at.  A call that
 * would start on a fenced segment waits for the next one instead: there it
 * could only fail (no reservation succeeds) after touching that segment's
 * own words, which nothing reads any more; the run where it does is the
 * run where it is slow, for every safety property checked here.
 */
#define SERVED(x) (seg[x].state == S_READY && seg[x].next < FENCED)
#define ATTACH                                                                 \
    if                                                                         \
    :: SERVED(g) -> skip                                                       \
    :: else -> atomic { SERVED(cur) -> users[g]--; g = cur; users[g]++ }       \
    fi

/*
 * A waiter met state word w (PENDING or REFUNDING of another process).
 * Wait until it changes; if its owner is dead, wait until the spiller has
 * passed every reserved LSN and decide from `recorded`.
 * res: AGAIN (look again) or DOWN.
 */
inline wait_owner(g, o, w, res, n, nw)
{
    if
    :: seg[g].ord[o] != w -> res = AGAIN
    :: !SERVED(g) -> res = AGAIN
    :: !alive[OWN(w)] ->
        n = NEXT(g);
        DIE;
        if
        :: seg[g].spilled + 1 >= n ->
            d_step {
                if
                :: seg[g].ord[o] == w ->
                    if
                    :: ST(w) == O_PENDING ->
                        assert(seg[g].rec_type[o] != R_REFUND);
                        if
                        :: seg[g].rec_type[o] == R_DEDUCT ->
                            nw = O_DEDUCTED;
                            seg[g].dlsn[o] = seg[g].rec_lsn[o]
                        :: else -> nw = O_FAILED
                        fi
                    :: ST(w) == O_REFUNDING ->
                        if
                        :: seg[g].rec_type[o] == R_REFUND -> nw = O_REFUNDED
                        :: seg[g].rec_type[o] == R_DEDUCT -> nw = O_DEDUCTED
                        :: seg[g].rec_type[o] == R_NONE ->
#ifdef ESSAY_RELEASE
                            nw = O_DEDUCTED
#else
                            /* claimed by hs_refund_evicted from "absent" */
                            nw = O_EMPTY
#endif
                        fi
                    fi;
                    seg[g].ord[o] = nw;
                    printf("@ P%d: owner of order %d is dead, resolved to state %d\n", me, o, nw)
                :: else
                fi
            };
            res = AGAIN
        :: !seg[g].daemon_alive -> res = DOWN
        fi
    fi
}

/* the ledger row of o is one the index of segment g no longer holds */
#define LEDGER_EVICTED(o, g) (lhas[o] && llsn[o] <= seg[g].evicted)

/* ---------------------------------------------------------------------- */

proctype buyer(byte me)
{
    byte g = 0, o, op, L, old, w, n, res, tries, nops = 0;
    bool picked = 0, viadb, checked;
#if POWERLOSS
    byte ep = 0;
again:
    {
#endif
        do
        :: !picked && nops < NOPS ->
            op = sop[(me - 1) * NOPS + nops];
            o = sord[(me - 1) * NOPS + nops];
            picked = 1;
            tries = 0
        :: !picked && nops >= NOPS -> break
        :: picked ->
attempt:
            if
            :: op == OP_DEDUCT -> goto d_begin
            :: op == OP_REFUND -> goto r_begin
            fi;

/* ---- deduct (SQL layer + hs_deduct) ---- */
d_begin:    /*
             * One step: call start (a segment no longer served means
             * re-attach), the index lookup, for an order absent from it the
             * SQL layer's ledger check (a snapshot taken after attaching to
             * g), and the claim CAS.  Merging is sound: a claim on a segment
             * fenced since can only fail later; g's evicted orders were in
             * the ledger before g existed; and an order the index holds is
             * answered by the index (the ledger may lag behind it).
             */
            atomic {
                SERVED(cur) ->
                if
                :: g != cur -> users[g]--; g = cur; users[g]++
                :: else
                fi;
                res = GO;
                w = seg[g].ord[o];
                if
                :: ST(w) == O_EMPTY || ST(w) == O_FAILED ->
                    /* not in the index: if g may have evicted it, the
                     * ledger knows it */
                    if
#ifdef BROKEN_LEDGER_ONCE
                    /* checked once per operation; the library re-attaches
                     * transparently and claims in a newer segment */
                    :: seg[g].evicted > 0 && lhas[o] && !checked ->
#else
                    :: seg[g].evicted > 0 && lhas[o] ->
#endif
                        assert(llsn[o] <= seg[g].evicted);
                        if
                        :: lref[o] -> res = ALREADY
                        :: else ->
                            res = LDUP;
                            printf("@ P%d deduct order %d: ledger says deducted (duplicate)\n", me, o);
                            assert(refund_oks[o] == 0); /* answers agree */
                            acked[o] = 1;
                            check_durable(o, i, found)
                        fi
                    :: else ->
                        seg[g].ord[o] = W(O_PENDING, me);
                        printf("@ P%d deduct order %d: PENDING in segment %d\n", me, o, g)
                    fi
                :: ST(w) == O_DEDUCTED -> res = DUPL
                :: ST(w) == O_REFUNDING && seg[g].dlsn[o] != 0 -> res = DUPL
                :: ST(w) == O_REFUNDED -> res = ALREADY
                :: ST(w) == O_PENDING -> res = WAIT
                /* claimed by hs_refund_evicted(): the order has no deduct
                 * in this index; wait for the refund's outcome */
                :: ST(w) == O_REFUNDING && seg[g].dlsn[o] == 0 -> res = WAIT
                fi;
                checked = 1
            };
            if
            :: res == WAIT ->
                wait_owner(g, o, w, res, n, nw);
                if
                :: res == DOWN -> goto done
                :: else -> goto d_begin
                fi
            :: res == DUPL -> goto d_dup
            :: res == LDUP || res == ALREADY -> goto done
            :: res == GO
            fi;
            DIE;
            /* CAS-decrement available if >= qty; sold out: FAILED */
            d_step {
                if
                :: seg[g].avail >= 1 ->
                    seg[g].avail--;
                    printf("@ P%d available -> %d\n", me, seg[g].avail);
                    res = GO
                :: else ->
                    assert(seg[g].ord[o] == W(O_PENDING, me));
                    seg[g].ord[o] = O_FAILED;
                    res = SOLDOUT
                fi
            };
            if
            :: res == SOLDOUT -> goto done
            :: else
            fi;
            DIE;
            reserve(g, L, res);
            if
            :: res != GO -> goto d_undo
            :: else
            fi;
            DIE;
            claim(g, L, old, R_DEDUCT, o, res);
            if
            :: res != GO -> goto d_undo
            :: else
            fi;
            DIE_CLAIMED;
            FILL(R_DEDUCT);
            publish(g, L, old, R_DEDUCT, o, res);
            if
            :: res != GO -> goto d_undo
            :: else
            fi;
            DIE;
            d_step {
                assert(seg[g].ord[o] == W(O_PENDING, me));
                seg[g].ord[o] = O_DEDUCTED;
                seg[g].dlsn[o] = L;
                printf("@ P%d deduct order %d: DEDUCTED (LSN %d)\n", me, o, L)
            };
            /* synchronous: wait until durable_lsn passes L */
            if
            :: seg[g].durable >= L ->
                d_step {
                    printf("@ P%d deduct order %d: acknowledged, LSN %d durable\n", me, o, L);
                    acked[o] = 1;
                    deduct_oks[o]++;
                    assert(deduct_oks[o] <= 1);
                    check_durable(o, i, found)
                };
                res = OK
            :: !seg[g].daemon_alive -> res = DOWN
            fi;
            goto done;
d_undo:     /* reservation or publication failed: undo the counter change */
            DIE;
            d_step {
                seg[g].avail++;
                inv(g);
                assert(seg[g].ord[o] == W(O_PENDING, me));
                seg[g].ord[o] = O_FAILED;
                printf("@ P%d deduct order %d: undone, FAILED\n", me, o)
            };
            goto done;
d_dup:      /* a retry of a done deduct: acknowledged once its record is durable */
#ifdef API_DUP_NOWAIT
            skip;
            d_step {
                printf("@ P%d deduct order %d: duplicate, taken as acknowledged\n", me, o);
                acked[o] = 1;
                check_durable(o, i, found)
            };
            goto done;
#else
            if
            :: seg[g].dlsn[o] != 0 && seg[g].durable >= seg[g].dlsn[o] ->
                d_step {
                    printf("@ P%d deduct order %d: duplicate, acknowledged (LSN %d durable)\n", me, o, seg[g].dlsn[o]);
                    acked[o] = 1;
                    check_durable(o, i, found)
                }
            :: !seg[g].daemon_alive -> res = DOWN
            fi;
            goto done;
#endif

/* ---- refund, in-index path (hs_refund) ---- */
r_begin:    /* call start + the claim CAS DEDUCTED -> REFUNDING(me) */
            CLAIM_BEGIN
                SERVED(cur) ->
                if
                :: g != cur -> users[g]--; g = cur; users[g]++
                :: else
                fi;
                w = seg[g].ord[o];
                if
                :: ST(w) == O_DEDUCTED ->
                    seg[g].ord[o] = W(O_REFUNDING, me);
                    printf("@ P%d refund order %d: REFUNDING in segment %d\n", me, o, g);
                    res = GO
                :: ST(w) == O_PENDING || ST(w) == O_REFUNDING -> res = WAIT
                :: ST(w) == O_REFUNDED -> res = ALREADY
                :: ST(w) == O_EMPTY || ST(w) == O_FAILED ->
                    printf("@ P%d refund order %d: not in the index\n", me, o);
                    res = NOTFOUND
                fi
            CLAIM_END;
            if
            :: res == WAIT ->
                wait_owner(g, o, w, res, n, nw);
                if
                :: res == DOWN -> goto done
                :: else -> goto r_begin
                fi
            :: res == ALREADY -> goto done
            :: res == NOTFOUND ->
                if
                :: seg[g].evicted > 0 && !viadb -> goto e_db
                :: else -> goto done
                fi
            :: res == GO
            fi;
            DIE;
#ifdef BROKEN_REFUND_ORDER
            d_step { seg[g].avail++; seg[g].raises[o]++; assert(seg[g].raises[o] <= 1); inv(g) };
            DIE;
#endif
            reserve(g, L, res);
            if
            :: res != GO -> goto r_release
            :: else
            fi;
            DIE;
            claim(g, L, old, R_REFUND, o, res);
            if
            :: res != GO -> goto r_release
            :: else
            fi;
            DIE_CLAIMED;
            FILL(R_REFUND);
            publish(g, L, old, R_REFUND, o, res);
            if
            :: res != GO -> goto r_release
            :: else
            fi;
            DIE;
            /* record first, then the counter (and REFUNDED) */
            d_step {
#ifndef BROKEN_REFUND_ORDER
                seg[g].avail++;
                seg[g].raises[o]++;
                assert(seg[g].raises[o] <= 1);
                inv(g);
#endif
                assert(seg[g].ord[o] == W(O_REFUNDING, me));
                seg[g].ord[o] = O_REFUNDED;
                printf("@ P%d refund order %d: counter raised, REFUNDED\n", me, o)
            };
            if
            :: viadb -> goto done /* the ledger commit was the answer */
            :: else
            fi;
            if
            :: seg[g].durable >= L ->
                d_step {
                    printf("@ P%d refund order %d: answered OK\n", me, o);
                    refund_oks[o]++;
                    assert(refund_oks[o] <= 1)
                };
                res = OK
            :: !seg[g].daemon_alive -> res = DOWN
            fi;
            goto done;
r_release:  /* the record did not make it: back to DEDUCTED */
            DIE;
            d_step {
#ifdef BROKEN_REFUND_ORDER
                seg[g].avail--;
#endif
                assert(seg[g].ord[o] == W(O_REFUNDING, me));
                seg[g].ord[o] = O_DEDUCTED
            };
            goto done;

/* ---- refund, DB-first path for an evicted order ---- */
e_db:       /* one transaction: lock the ledger row, mark it refunded, commit */
            skip;
            atomic {
                SERVED(cur) ->
                if
                :: g != cur -> users[g]--; g = cur; users[g]++
                :: else
                fi;
                if
                :: !lhas[o] -> res = NOTFOUND
                :: lhas[o] && lref[o] -> res = ALREADY
#ifndef BROKEN_DBFIRST_ANY
                /* a row the index still holds (not evicted from g): the
                 * NOTFOUND was stale (deducted and drained since): back to
                 * the in-index path, the transaction rolls back */
                :: lhas[o] && !lref[o] && !LEDGER_EVICTED(o, g) -> res = AGAIN
#endif
                :: else ->
                    lref[o] = 1;
                    printf("@ P%d refund order %d: ledger row marked refunded, committed (DB-first, answered OK)\n", me, o);
                    refund_oks[o]++;
                    assert(refund_oks[o] <= 1);
                    res = GO;
                    viadb = 1
                fi
            };
            if
            :: res == AGAIN -> goto r_begin
            :: res != GO -> goto done
            :: else
            fi;
            DIE;
e_begin:    /* after commit: hs_refund_evicted(); claim "absent" -> REFUNDING */
            atomic {
                SERVED(cur) ->
                if
                :: g != cur -> users[g]--; g = cur; users[g]++
                :: else
                fi;
                w = seg[g].ord[o];
                if
                :: ST(w) == O_EMPTY ->
                    seg[g].ord[o] = W(O_REFUNDING, me);
                    printf("@ P%d hs_refund_evicted order %d: REFUNDING (from absent)\n", me, o);
                    res = GO
                :: ST(w) == O_FAILED -> assert(0)
                :: ST(w) == O_DEDUCTED -> res = DUPL
                :: ST(w) == O_REFUNDED -> res = ALREADY
                :: ST(w) == O_PENDING || ST(w) == O_REFUNDING -> res = WAIT
                fi
            };
            if
            :: res == WAIT ->
                wait_owner(g, o, w, res, n, nw);
                if
                :: res == DOWN -> goto done
                :: else -> goto e_begin
                fi
            :: res == DUPL -> goto r_begin /* "use hs_refund() then" */
            :: res == ALREADY -> goto done
            :: res == GO
            fi;
            DIE;
            reserve(g, L, res);
            if
            :: res != GO -> goto e_release
            :: else
            fi;
            DIE;
            claim(g, L, old, R_REFUND, o, res);
            if
            :: res != GO -> goto e_release
            :: else
            fi;
            DIE_CLAIMED;
            FILL(R_REFUND);
            publish(g, L, old, R_REFUND, o, res);
            if
            :: res != GO -> goto e_release
            :: else
            fi;
            DIE;
            d_step {
                seg[g].avail++;
                seg[g].raises[o]++;
                assert(seg[g].raises[o] <= 1);
                inv(g);
                assert(seg[g].ord[o] == W(O_REFUNDING, me));
                seg[g].ord[o] = O_REFUNDED
            };
            goto done;
e_release:  /* not appended: the unit stays held back (undersell) */
            DIE;
            d_step { assert(seg[g].ord[o] == W(O_REFUNDING, me)); seg[g].ord[o] = O_EMPTY };
            goto done;

done:
            skip;
            d_step { L = 0; old = 0; w = 0; n = 0 };
            if
            :: (res == DOWN || res == FULL) && tries < RETRIES ->
                tries++;
                goto attempt
            :: else ->
                picked = 0;
                nops++;
                o = 0;
                op = 0
            fi;
            d_step { L = 0; old = 0; w = 0; n = 0; res = 0; viadb = 0; checked = 0 }
        od;
#if POWERLOSS
    }
    unless { ep != epoch };
    if
    :: ep != epoch ->
        /* a power loss killed this process; the application starts a
         * new one that retries the operation it had in flight */
        ep = epoch;
        alive[me] = 1;
        tries = 0;
        atomic { SERVED(cur) -> g = cur; users[g]++ };
        goto again
    :: else
    fi;
#endif
    users[g]--;
dead:
    skip
}

/* ---------------------------------------------------------------------- */

#if RESTOCK
/* an administrator restocks one unit: record first, then the counter */
proctype admin()
{
    byte g = 0, L, old, res, me = NB + 1, o = 0;
#if POWERLOSS
    byte ep = 0;
    {
#endif
        ATTACH;
        reserve(g, L, res);
        if
        :: res != GO -> goto finish
        :: else
        fi;
        claim(g, L, old, R_ADD, 0, res);
        if
        :: res != GO -> goto finish
        :: else
        fi;
        FILL(R_ADD);
        publish(g, L, old, R_ADD, 0, res);
        if
        :: res != GO -> goto finish
        :: else
        fi;
        d_step { seg[g].avail++; inv(g) };
finish:
        users[g]--
#if POWERLOSS
    }
    unless { ep != epoch };
#endif
}
#endif

/* ---------------------------------------------------------------------- */

#define DCRASH                                                                 \
    if                                                                         \
    :: crashes < CRASHES -> goto crash                                         \
    :: true                                                                    \
    fi

/* a dead segment nobody maps any more: forget its contents (keeps the
 * state space canonical; nothing can read them) */
inline clear_seg(x)
{
    seg[x].daemon_alive = 0;
    seg[x].avail = 0;
    seg[x].next = 0;
    seg[x].spilled = 0;
    seg[x].durable = 0;
    seg[x].evicted = 0;
    hs = 0;
    do
    :: hs < NORD ->
        seg[x].ord[hs] = 0;
        seg[x].rec_lsn[hs] = 0;
        seg[x].rec_type[hs] = 0;
        seg[x].dlsn[hs] = 0;
        seg[x].raises[hs] = 0;
        hs++
    :: else -> break
    od;
    hs = 0;
    do
    :: hs < RING ->
        seg[x].seq[hs] = 0;
        seg[x].claimer[hs] = 0;
        seg[x].resv[hs] = 0;
        seg[x].rtype[hs] = 0;
        seg[x].rord[hs] = 0;
        hs++
    :: else -> break
    od
}

/* build segment ng from the queue: counter = fold, order index from the
 * records after applied_lsn, evicted_lsn = applied_lsn */
inline build(ng, i, o, a) /* i, o, a: scratch */
{
    a = STOCK;
    i = 1;
    do
    :: i <= qlen ->
        if
        :: qtype[i] == R_DEDUCT -> a--
        :: qtype[i] == R_REFUND || qtype[i] == R_ADD -> a++
        :: else
        fi;
        i++
    :: else -> break
    od;
    assert(a >= 0);              /* the queue never oversold */
    assert(a + nsold == total);  /* no published record lost or invented */
    seg[ng].avail = a;
    seg[ng].evicted = applied_pub;
    o = 0;
    do
    :: o < NORD ->
        seg[ng].ord[o] = O_EMPTY;
        i = applied_pub + 1;
        do
        :: i <= qlen ->
            if
            :: qord[i] == o && qtype[i] == R_DEDUCT ->
                seg[ng].ord[o] = O_DEDUCTED;
                seg[ng].rec_lsn[o] = i;
                seg[ng].rec_type[o] = R_DEDUCT;
                seg[ng].dlsn[o] = i
            :: qord[i] == o && qtype[i] == R_REFUND ->
                seg[ng].ord[o] = O_REFUNDED;
                seg[ng].rec_lsn[o] = i;
                seg[ng].rec_type[o] = R_REFUND;
                seg[ng].dlsn[o] = i
            :: else
            fi;
            i++
        :: else -> break
        od;
        /* an acknowledged deduct survives: in the index or the ledger */
        assert(!acked[o] || seg[ng].ord[o] != O_EMPTY || lhas[o]);
        o++
    :: else -> break
    od;
    seg[ng].next = qlen + 1;
    seg[ng].spilled = qlen;
    seg[ng].durable = qdur;
    seg[ng].daemon_alive = 1;
    seg[ng].state = S_READY;
    cur = ng;
    printf("@ segment %d built from the queue (LSN 1..%d): available %d, evicted_lsn %d\n", ng, qlen, a, applied_pub);
    inv(ng)
}

proctype daemon()
{
    byte g = 0, og, L, t, o;

end_loop:
    do
    /*
     * Each branch is one step.  The spiller's write(2), the `recorded`
     * mark and the spilled_lsn store are merged (and fdatasync with the
     * durable_lsn store): nobody reads `recorded` before spilled_lsn passes
     * the record, a crash between them leaves what a crash before or after
     * leaves, and the intermediate states only delay others.
     * BROKEN_SPILL_ORDER splits the first, storing spilled_lsn first.
     */
    :: /* spill the next record: it is published (seq == L) */
        d_step {
            seg[g].spilled + 1 < NEXT(g) &&
            seg[g].seq[(seg[g].spilled + 1) % RING] == seg[g].spilled + 1 ->
            L = seg[g].spilled + 1;
            t = seg[g].rtype[L % RING];
            o = seg[g].rord[L % RING];
            assert(qlen == L - 1);
            /* the queue gets exactly what was published at L */
            assert(t == ptype[L] && o == pord[L]);
            ptype[L] = 0;
            pord[L] = 0;
            qlen = L; /* write(2) */
            qtype[L] = t;
            qord[L] = o;
            printf("@ spiller writes LSN %d (type %d, order %d)\n", L, t, o);
#ifdef BROKEN_SPILL_ORDER
            seg[g].spilled = L
        };
        DCRASH;
        d_step {
#endif
            if
            :: t == R_DEDUCT || t == R_REFUND ->
                seg[g].rec_lsn[o] = L;
                seg[g].rec_type[o] = t
            :: else
            fi;
            /* dead data until the slot's next lap: forget it */
            seg[g].rtype[L % RING] = 0;
            seg[g].rord[L % RING] = 0;
            seg[g].resv[L % RING] = 0;
            seg[g].spilled = L;
            L = 0;
            t = 0;
            o = 0
        }
    :: /* the slot is stuck (its writer stalled or died): abandon it */
        d_step {
            seg[g].spilled + 1 < NEXT(g) && STALL_OK(g, seg[g].spilled + 1) ->
            L = seg[g].spilled + 1;
            STALL_COUNT(g, L);
            seg[g].seq[L % RING] = L + ABANDONED;
            printf("@ spiller abandons LSN %d (stalled), writes a NOOP\n", L);
            seg[g].resv[L % RING] = 0;
            assert(qlen == L - 1);
            qlen = L;
            qtype[L] = R_NOOP;
            qord[L] = 0;
            seg[g].spilled = L;
            L = 0
        }
    :: /* group commit: fdatasync, then publish durable_lsn */
        d_step {
            qdur < qlen ->
            qdur = qlen;
            seg[g].durable = qdur;
            printf("@ fdatasync: durable_lsn %d\n", qdur)
        }
    :: d_step {
            og != g && seg[og].state == S_DEAD && users[og] == 0 ->
            clear_seg(og);
            og = g
        }
    :: crashes < CRASHES -> goto crash
#if POWERLOSS
    :: powerloss < POWERLOSS ->
        d_step {
            powerloss++;
            epoch++;
            printf("@ power loss: the queue keeps LSN 1..%d\n", qdur);
            /* shared memory is gone, and every process with it */
            i = 0;
            do
            :: i < NSEG -> clear_seg(i); seg[i].state = S_NONE; users[i] = 0; i++
            :: else -> break
            od;
            /* the queue keeps its durable prefix */
            i = qdur + 1;
            do
            :: i <= MAXLSN -> qtype[i] = 0; qord[i] = 0; ptype[i] = 0; pord[i] = 0; i++
            :: else -> break
            od;
            qlen = qdur;
            /* what survives: the durable prefix */
            nsold = 0;
            total = STOCK;
            o = 0;
            do
            :: o < NORD -> dedrecs[o] = 0; refrecs[o] = 0; o++
            :: else -> break
            od;
            i = 1;
            do
            :: i <= qlen ->
                if
                :: qtype[i] == R_DEDUCT -> dedrecs[qord[i]]++; nsold++
                :: qtype[i] == R_REFUND -> refrecs[qord[i]]++; nsold--
                :: qtype[i] == R_ADD -> total++
                :: else
                fi;
                i++
            :: else -> break
            od;
            o = 0;
            do
            :: o < NORD ->
                if
                :: acked[o] -> check_durable(o, i, hs)
                :: else
                fi;
                o++
            :: else -> break
            od;
            o = 0;
            L = 0;
            t = 0
        };
        g = g + 1;
        og = g;
        d_step { build(g, i, hs, ha) };
        goto end_loop
#endif
    od;

crash:
    skip;
    /*
     * The daemon process dies (shared memory and written files remain) and
     * the next one fences the segment: no reservation succeeds from now on.
     * One step: in between, the dead spiller does nothing, and what clients
     * do there they can do before the crash.
     */
    d_step {
        crashes++;
        seg[g].daemon_alive = 0;
        printf("@ daemon crash; the next daemon fences segment %d\n", g);
        L = 0;
        t = 0;
        o = 0;
        if
        :: seg[g].next < FENCED -> seg[g].next = seg[g].next + FENCED
        :: else
        fi
    };
    /*
     * Salvage every reserved LSN after the queue's last record: a
     * published slot goes to the queue, any other is CASed to
     * L|ABANDONED (a NOOP), once no live claimer holds it.  One step: the
     * slots are independent, so a writer acting between two of them acts
     * as if before or after the whole.
     */
    d_step {
        SALVAGE_READY(g) ->
        L = qlen + 1;
        do
        :: L < NEXT(g) ->
            if
            :: seg[g].seq[L % RING] == L ->
                qtype[L] = seg[g].rtype[L % RING];
                qord[L] = seg[g].rord[L % RING];
                assert(qtype[L] == ptype[L] && qord[L] == pord[L]);
                ptype[L] = 0;
                pord[L] = 0
            :: else ->
                seg[g].seq[L % RING] = L + ABANDONED;
                qtype[L] = R_NOOP;
                qord[L] = 0
            fi;
            qlen = L;
            L++
        :: else -> break
        od;
        L = 0
    };
    DCRASH;
    /* fdatasync, build the next segment, point the name at it and mark
     * the old one DEAD (clients re-attach) */
    d_step {
        qdur = qlen;
        build(g + 1, i, hs, ha);
        seg[g].state = S_DEAD;
        og = g;
        g = g + 1
    };
    goto end_loop
}

/* ---------------------------------------------------------------------- */

proctype drain()
{
end_drain:
    do
    :: /* one transaction: ledger rows + stock + applied_lsn */
        d_step {
            applied_db < qdur ->
            dL = applied_db + 1;
            dt = qtype[dL];
            dO = qord[dL];
            if
            :: dt == R_DEDUCT ->
                assert(!lhas[dO]); /* an order id is deducted once */
                lhas[dO] = 1;
                llsn[dO] = dL;
                lstock--;
                assert(lstock >= 0) /* the database never oversold */
            :: dt == R_REFUND ->
                assert(lhas[dO]);
                drained_ref[dO]++;
                assert(drained_ref[dO] <= 1);
                lref[dO] = 1;
                lstock++
            :: dt == R_ADD -> lstock++
            :: else
            fi;
            applied_db = dL;
            printf("@ drain commits LSN %d (type %d, order %d)\n", dL, dt, dO)
        }
    :: /* after commit: publish applied_lsn to the daemon */
        d_step { applied_pub < applied_db -> applied_pub = applied_db }
    :: /* daemon down: hs_queue_sync() makes what is written durable */
        d_step { !seg[cur].daemon_alive && qdur < qlen -> qdur = qlen }
    od
}

/*
 * init: choose the scripts.  Every (operation, order id) is tried for every
 * slot; a script is kept only if it is the least of its class under
 * renaming order ids and buyers, and if every refunded order id is also
 * deducted by some operation (a refund of an order nobody deducts only
 * answers "not found").
 */
init
{
    byte b;
    d_step {
        perm[0] = 0; perm[1] = 1; perm[2] = 2;
        perm[3] = 0; perm[4] = 2; perm[5] = 1;
        perm[6] = 1; perm[7] = 0; perm[8] = 2;
        perm[9] = 1; perm[10] = 2; perm[11] = 0;
        perm[12] = 2; perm[13] = 0; perm[14] = 1;
        perm[15] = 2; perm[16] = 1; perm[17] = 0
    };
    atomic {
        b = 0;
        do
        :: b < NB * NOPS ->
            if
            :: sop[b] = OP_DEDUCT
            :: sop[b] = OP_REFUND
            fi;
            if
            :: sord[b] = 0
            :: NORD > 1 -> sord[b] = 1
            :: NORD > 2 -> sord[b] = 2
            fi;
            b++
        :: else -> break
        od
    };
    d_step {
        canon = 1;
        /* every refunded order id is deducted somewhere */
        k = 0;
        do
        :: k < NB * NOPS ->
            if
            :: sop[k] == OP_REFUND ->
                found = 0;
                j = 0;
                do
                :: j < NB * NOPS ->
                    if
                    :: sop[j] == OP_DEDUCT && sord[j] == sord[k] -> found = 1
                    :: PREEVICTED && sord[k] == 0 -> found = 1
                    :: else
                    fi;
                    j++
                :: else -> break
                od;
                if
                :: !found -> canon = 0
                :: else
                fi
            :: else
            fi;
            k++
        :: else -> break
        od;
#ifdef ONLY_REFUNDS
        /* refunds only (of orders deducted before: PREEVICTED) */
        k = 0;
        do
        :: k < NB * NOPS ->
            if
            :: sop[k] == OP_DEDUCT -> canon = 0
            :: else
            fi;
            k++
        :: else -> break
        od;
#endif
        /* least of its class: no renaming gives a smaller script */
        bp = 0;
        do
        :: bp < 6 ->
            if
            :: perm[bp * 3] < NB && perm[bp * 3 + 1] < NB && (NB > 2 || perm[bp * 3 + 2] == 2) ->
                sp = 0;
                do
                :: sp < 6 ->
                    if
                    :: perm[sp * 3] < NORD && perm[sp * 3 + 1] < NORD &&
                       (NORD > 2 || perm[sp * 3 + 2] == 2) &&
                       (!PREEVICTED || perm[sp * 3] == 0) ->
                        scmp = 0;
                        k = 0;
                        do
                        :: k < NB * NOPS && scmp == 0 ->
                            ssrc = perm[bp * 3 + k / NOPS] * NOPS + k % NOPS;
                            a1 = sop[ssrc] * 4 + perm[sp * 3 + sord[ssrc]];
                            a0 = sop[k] * 4 + sord[k];
                            if
                            :: a1 < a0 -> scmp = 1
                            :: a1 > a0 -> scmp = 2
                            :: else
                            fi;
                            k++
                        :: else -> break
                        od;
                        if
                        :: scmp == 1 -> canon = 0
                        :: else
                        fi
                    :: else
                    fi;
                    sp++
                :: else -> break
                od
            :: else
            fi;
            bp++
        :: else -> break
        od
    };
end_pruned:
    canon == 1;
    d_step {
        seg[0].state = S_READY;
        seg[0].daemon_alive = 1;
        seg[0].avail = STOCK;
        seg[0].next = 1;
#if PREEVICTED
        /* a history already behind us: order 0 was deducted (LSN 1,
         * acknowledged), drained, and evicted by a restart */
        qtype[1] = R_DEDUCT;
        qord[1] = 0;
        qlen = 1;
        qdur = 1;
        lhas[0] = 1;
        llsn[0] = 1;
        lstock = STOCK - 1;
        applied_db = 1;
        applied_pub = 1;
        dedrecs[0] = 1;
        nsold = 1;
        acked[0] = 1;
        deduct_oks[0] = 1;
        seg[0].avail = STOCK - 1;
        seg[0].next = 2;
        seg[0].spilled = 1;
        seg[0].durable = 1;
        seg[0].evicted = 1;
#endif
        users[0] = NB + RESTOCK;
        b = 1;
        do
        :: b <= NB + 1 -> alive[b] = 1; b++
        :: else -> break
        od
    };
    atomic {
        b = 1;
        do
        :: b <= NB -> run buyer(b); b++
        :: else -> break
        od;
        run daemon();
#if DRAIN
        run drain();
#endif
#if RESTOCK
        run admin()
#endif
    }
}
