/*
 * eviction.pml
 *      Promela model of the order index with online eviction: lock-free
 *      look-ups, inserts under a stripe lock, the `passed` counters, the
 *      evicted filter and evicted_lsn, and the daemon's evictor (segment.h,
 *      "EVICTION"; shmd/lib/index.c, shmd/daemon/evictor.c), checked with
 *      SPIN (tests/model/run.sh).
 *
 * One segment, one SKU, STOCK units, qty 1, 2 buyers, 2 order ids.  The
 * order index is NSLOT slots (2-4; 3 by default) and each id has a home
 * slot chosen by the scenario, so that ids collide, chains wrap around the
 * end of the table and a slot emptied mid-chain is reused by the other id.
 * That table (home[]) is the whole of hashing here.
 *
 * Per slot, as segment.h lays it out: the state word (state, owner pid,
 * version; every CAS compares all three; only the evictor changes the
 * version, to EMPTY(v + 1)), the key, `passed`, deducted_lsn, `recorded`.
 * Per id: its stripe lock (the holder's pid, taken by CAS, stolen from a
 * dead holder) and its bit in the evicted filter (a set that only grows;
 * up to FALSEPOS reads of an id not in it answer "maybe" anyway, a Bloom
 * filter's false positives).  One d_step/atomic block is one atomic
 * instruction (a load, a CAS, a store, a fetch_add); every atomic is
 * seq_cst (segment.h asks seq_cst of every one that eviction involves).
 *
 * Processes:
 *   buyer    runs its script (SCENARIO, in init): deducts, as the SQL layer
 *            loops around hs_deduct_checked(id, checked): first checked = 0;
 *            HS_EVICTED_CHANGED -> E = evicted_lsn, then the ledger: the
 *            id there answers "true", else call again with checked = E; and
 *            refunds: E = evicted_lsn, then hs_refund; an id the index does
 *            not hold (or holds FAILED) goes database-first: one transaction
 *            marks its ledger row if the row's LSN <= E, then
 *            hs_refund_evicted() inserts it as REFUNDING (or takes a FAILED
 *            entry over) and refunds it.  May die between any two of its
 *            shared steps (DEATHS).
 *   evictor  publishes evicted_lsn = W (= applied_lsn) before it touches a
 *            slot; then per slot: load; FAILED and DEAD go at once; an entry
 *            whose records are all <= W: filter, load again, CAS to
 *            EVICTING; then clear + EMPTY(v + 1) and -1 on `passed` from the
 *            id's home up to the slot (not for DEAD).  It picks any slot
 *            with an entry to evict: every scan order is one of the runs.
 *   background  the spiller (folds records in LSN order into `recorded` of
 *            the record's slot) and the drain (applies folded records to
 *            the ledger, publishes applied_lsn).
 *
 * Properties (assertions; run.sh also fails on a process blocked forever):
 *   P1 at most one slot holds an id in a keyed state (PENDING..REFUNDED);
 *   P2 a look-up of an id that was present when it started and stayed
 *      present (not evicted, not re-inserted: kgen unchanged) finds it;
 *   P3 at most one DEDUCT record per id over the whole run (a retry of an
 *      evicted id is answered from the ledger), at most one REFUND;
 *   P4 `passed` never goes below 0, and when the table is empty at the end
 *      every slot's `passed` is back to 0 (to what dead inserters left
 *      behind: ghost `leak`);
 *   and: the spiller folds a record only into the slot (and version) of
 *   its order; the counter never runs ahead (available + units held <=
 *   STOCK; == STOCK at the end of a run without deaths).
 *
 * Switches: SCENARIO NSLOT DEATHS FALSEPOS STOCK, and the deliberately
 * broken variants (run.sh expects each to FAIL):
 *   BROKEN_NO_STRIPE       insert without the stripe lock            (P1)
 *   BROKEN_LATE_PASSED     insert adds to `passed` after it publishes
 *                          its entry, not before it claims a slot    (P2)
 *   BROKEN_STOP_AT_EMPTY   look-up ends at an EMPTY slot whatever
 *                          `passed` says (classic linear probing)    (P2)
 *   BROKEN_FILTER_LATE     evictor sets the filter after EMPTY       (P3)
 *   BROKEN_RETAKE_NOFILTER FAILED -> PENDING skips the filter check  (P3)
 *   BROKEN_LEDGER_FIRST    SQL layer reads the ledger, then evicted_lsn
 *                          (needs FALSEPOS)                          (P3)
 *   BROKEN_EVICT_RECORDED  evictor takes `recorded` <= W for drained: a
 *                          REFUND not folded yet (spiller check)
 *   BROKEN_DECR_LOST_CAS   evictor decrements when its CAS lost      (P4)
 *   BROKEN_REFUND_E_AFTER  SQL refund reads evicted_lsn after the index
 *                          said NOT_FOUND (pg_ext/api.c hotstock_refund()
 *                          as written; README, findings)             (P3)
 */

/* ---- sizes ---- */
#ifndef SCENARIO
#define SCENARIO 1
#endif
#define NB 2
#ifndef NSLOT
#define NSLOT 3
#endif
#ifndef DEATHS
#define DEATHS 0
#endif
#ifndef FALSEPOS
#define FALSEPOS 0
#endif
#ifndef STOCK
#define STOCK 3 /* one more than the ids: a second deduct of an id is not stopped by sold out */
#endif
#define NOPS 2
#define NKEY 2
#define MAXLSN 8

#if NSLOT < 2 || NSLOT > 4
#error "NSLOT is 2, 3 or 4"
#endif


/* order slot states (hotstock.h enum hs_order_slot_state) */
#define EMPTY 0
#define INSERTING 1
#define PENDING 2
#define DEDUCTED 3
#define FAILED 4
#define REFUNDING 5
#define REFUNDED 6
#define DEAD 7
#define EVICTING 8
#define KEYED(x) ((x) >= PENDING && (x) <= REFUNDED)

/* record types */
#define R_DEDUCT 1
#define R_REFUND 2

/* results */
#define SEARCH 0
#define FOUND 1
#define MISS 2
#define ABSENT 3
#define GO 4
#define BUSY 5
#define AGAIN 6
#define DUPL 7
#define ALREADY 8
#define WAIT 9
#define CHANGED 10
#define SOLDOUT 11
#define NOTFOUND 12
#define FULL 13
#define OK 14
#define LDUP 15

#define OP_DEDUCT 1
#define OP_REFUND 2

/* ---- the segment ---- */
byte st[NSLOT];     /* state */
byte own[NSLOT];    /* owner pid */
byte ver[NSLOT];    /* version */
byte key[NSLOT];    /* order id (1..NKEY), 0: none */
byte passed[NSLOT];
byte dlsn[NSLOT];   /* deducted_lsn */
byte recd[NSLOT];   /* recorded: LSN of the last record the spiller folded */
byte stripe[NKEY + 1]; /* insert lock of the id's stripe: holder pid */
bool filt[NKEY + 1];   /* the evicted filter */
byte evicted = 0;      /* evicted_lsn */
short avail = STOCK;
byte home[NKEY + 1];

/* ---- the queue ---- */
byte qtype[MAXLSN + 1];
byte qkey[MAXLSN + 1];
byte qslot[MAXLSN + 1];
byte qver[MAXLSN + 1];
byte qlen = 0;
byte spilled = 0;
byte applied = 0;

/* ---- PostgreSQL: the ledger ---- */
bool lhas[NKEY + 1];
bool lref[NKEY + 1];
byte llsn[NKEY + 1];

/* ---- ghosts ---- */
byte dedrecs[NKEY + 1]; /* DEDUCT records of k */
byte refrecs[NKEY + 1]; /* REFUND records of k */
byte nsold = 0;         /* units held: DEDUCTs - REFUNDs */
byte kgen[NKEY + 1];    /* +1 whenever k enters or leaves the index */
byte leak[NSLOT];       /* `passed` increments left by dead inserters */
bool alive[NB + 1];
byte deaths = 0;
byte fps = 0;           /* false positives used */
byte nbdone = 0;

/* the buyers' scripts: op and id of op j of buyer b at [(b - 1) * NOPS + j] */
byte sop[NB * NOPS];
byte skey[NB * NOPS];

/* scratch, inside one d_step only */
hidden byte hj;

/* does slot j hold id k (P1)? */
#define HOLDS(j, k) ((KEYED(st[j]) && key[j] == (k)) -> 1 : 0)
#if NSLOT == 2
#define COUNT(k) (HOLDS(0, k) + HOLDS(1, k))
#elif NSLOT == 3
#define COUNT(k) (HOLDS(0, k) + HOLDS(1, k) + HOLDS(2, k))
#else
#define COUNT(k) (HOLDS(0, k) + HOLDS(1, k) + HOLDS(2, k) + HOLDS(3, k))
#endif
#define NEXTSLOT(x) (((x) + 1) % NSLOT)

/* the counter never runs ahead of the units held */
#define INV assert(avail + nsold <= STOCK)

/*
 * A buyer dies (DEATHS): it is gone, its stripe lock and owned slots are
 * taken over by waiters; the `passed` increments of a walk not yet
 * published with a key stay (ghost leak: nothing takes them back).
 */
#if DEATHS == 0
#define DIE skip
#else
#define DIE                                                                    \
    if                                                                         \
    :: deaths < DEATHS ->                                                      \
        d_step {                                                               \
            deaths++;                                                          \
            alive[me] = 0;                                                     \
            hj = incat;                                                        \
            do                                                                 \
            :: inc > 0 -> leak[hj]++; inc--; hj = NEXTSLOT(hj)                 \
            :: else -> break                                                   \
            od;                                                                \
            hj = 0;                                                            \
            nbdone++;                                                          \
            printf("@ P%d dies\n", me)                                         \
        };                                                                     \
        goto dead                                                              \
    :: true                                                                    \
    fi
#endif

/* the stripe lock of id k (a CAS from 0, or from a dead holder's pid) */
#ifdef BROKEN_NO_STRIPE
#define LOCK(k) skip
#define UNLOCK(k)
#else
#define LOCK(k) atomic { (stripe[k] == 0 || !alive[stripe[k]]) -> stripe[k] = me }
#define UNLOCK(k) stripe[k] = 0;
#endif

/*
 * LOOKUP of id k (no lock): from home(k), per slot: load the state word;
 * INSERTING: wait until it changes (or CAS a dead owner's to DEAD); a keyed
 * state holding k: found; otherwise (another id, EMPTY, DEAD, EVICTING)
 * load `passed`: 0 means absent, else the next slot.  res = FOUND (s, v)
 * or ABSENT.
 *
 * The load of the state word, the read of the key and order_still()'s
 * re-check (version unchanged, state still keyed) are one step here: the
 * key is written only while INSERTING and cleared only by the evictor's
 * EMPTY(v + 1) store, so a key read between a load of keyed(v) and a
 * successful re-check of v is the key of that entry all along (a failed
 * re-check loads the state again).  That is what the re-check is for; the
 * model takes the snapshot it gives.
 *
 * Ghost p2in/p2g: was k present (in a keyed state) when the look-up
 * started, and kgen then (P2).
 */
inline lookup(k, s, v, res)
{
    d_step {
        i = home[k];
        n = 0;
        res = SEARCH;
        p2in = (COUNT(k) > 0);
        p2g = kgen[k]
    };
    do
    :: res == SEARCH ->
        d_step {
            ws = st[i];
            wo = own[i];
            wv = ver[i];
            if
            :: ws == INSERTING -> res = WAIT
            :: KEYED(ws) && key[i] == k -> res = FOUND; s = i; v = wv
            :: else -> res = MISS /* another id, EMPTY, DEAD, EVICTING */
            fi
        };
        if
        :: res == WAIT ->
            /* the key is not written yet, and may be k: wait until the
             * word changes, or make a dead inserter's slot DEAD */
            if
            :: atomic { !(st[i] == ws && own[i] == wo && ver[i] == wv) -> res = SEARCH }
            :: atomic {
                   st[i] == ws && own[i] == wo && ver[i] == wv && !alive[wo] ->
                   st[i] = DEAD;
                   own[i] = 0;
                   res = SEARCH;
                   printf("@ P%d: inserter P%d of slot %d is dead: DEAD\n", me, wo, i)
               }
            fi
        :: res == MISS ->
            d_step {
#ifdef BROKEN_STOP_AT_EMPTY
                if
                :: passed[i] == 0 || n + 1 == NSLOT || ws == EMPTY ->
#else
                if
                :: passed[i] == 0 || n + 1 == NSLOT ->
#endif
                    res = ABSENT;
                    printf("@ P%d: id %d is not in the index\n", me, k);
                    /* P2: present all along means found */
                    assert(!p2in || kgen[k] != p2g)
                :: else ->
                    i = NEXTSLOT(i);
                    n++;
                    res = SEARCH
                fi
            }
        :: else
        fi
    :: else -> break
    od;
    atomic { i = 0; n = 0; ws = 0; wo = 0; wv = 0; p2in = 0; p2g = 0 }
}

/*
 * A waiter met (ws, wo) of a live or dead owner at s, version v.  Wait
 * until the word changes, or, the owner being dead, until the spiller
 * folded every record, then settle it from `recorded` (take-over and
 * decision in one step, as in hotstock.pml).
 */
inline wait_owner(s, v)
{
    if
    :: atomic { !(st[s] == ws && own[s] == wo && ver[s] == v) -> skip }
    :: d_step {
           st[s] == ws && own[s] == wo && ver[s] == v && !alive[wo] && spilled == qlen ->
           if
           :: ws == PENDING && recd[s] != 0 -> st[s] = DEDUCTED; dlsn[s] = recd[s]
           :: ws == PENDING && recd[s] == 0 -> st[s] = FAILED
           :: ws == REFUNDING && recd[s] > dlsn[s] -> st[s] = REFUNDED
           :: ws == REFUNDING && recd[s] <= dlsn[s] && dlsn[s] != 0 -> st[s] = DEDUCTED
           :: ws == REFUNDING && recd[s] <= dlsn[s] && dlsn[s] == 0 -> st[s] = FAILED
           fi;
           own[s] = 0;
           printf("@ P%d: owner P%d of slot %d is dead, settled to state %d\n", me, wo, s, st[s])
       }
    fi
}

proctype buyer(byte me)
{
    byte op, k, s, v, i, n, ws, wo, wv, res, L, checked, E, nops = 0;
    byte inc, incat; /* ghost: this walk's `passed` increments, from slot incat */
    byte newst;      /* PENDING (deduct) or REFUNDING (hs_refund_evicted) */
    bool p2in, fb;
    byte p2g;

    do
    :: nops < NOPS && sop[(me - 1) * NOPS + nops] != 0 ->
        op = sop[(me - 1) * NOPS + nops];
        k = skey[(me - 1) * NOPS + nops];
        checked = 0;
        if
        :: op == OP_DEDUCT -> goto d_call
        :: op == OP_REFUND -> goto r_begin
        fi;

/* ---- deduct: the SQL layer's loop around hs_deduct_checked(k, checked) ---- */
d_call:
        newst = PENDING;
        LOCK(k);
        DIE;
ins_lookup: /* under the stripe lock: look up, insert if absent */
        lookup(k, s, v, res);
        if
        :: res == FOUND ->
            d_step { UNLOCK(k) skip };
            if
            :: newst == PENDING -> goto d_found
            :: else -> goto e_found
            fi
        :: else
        fi;
        i = home[k];
        n = 0;
        incat = i;
ins_walk:   /* claim the first EMPTY slot; +1 to `passed` of every other */
        atomic {
            if
            :: st[i] == EMPTY ->
                st[i] = INSERTING;
                own[i] = me;
                s = i;
                v = ver[i];
                res = GO;
                printf("@ P%d claims slot %d (version %d) for id %d\n", me, i, v, k)
            :: else -> res = BUSY
            fi
        };
        if
        :: res == GO -> goto ins_claimed
        :: else
        fi;
#ifndef BROKEN_LATE_PASSED
        d_step { passed[i]++; inc++ };
#endif
        d_step { i = NEXTSLOT(i); n++ };
        DIE;
        if
        :: n < NSLOT -> goto ins_walk
        :: else
        fi;
        /* table full: take the increments back, fail */
        do
        :: inc > 0 -> d_step { assert(passed[incat] > 0); passed[incat]--; inc--; incat = NEXTSLOT(incat) }
        :: else -> break
        od;
        atomic { UNLOCK(k) res = FULL; printf("@ P%d: table full\n", me) };
        goto done;
ins_claimed:
        DIE;
        /* write the key, then store PENDING(me, v) (or REFUNDING) with
         * release; unlock */
        d_step {
            key[s] = k;
            dlsn[s] = 0;
            recd[s] = 0;
            st[s] = newst;
            own[s] = me;
            kgen[k]++;
            assert(COUNT(k) == 1); /* P1: no second entry of k */
            UNLOCK(k)
            printf("@ P%d: id %d inserted at slot %d (version %d), state %d\n", me, k, s, v, newst)
        };
#ifdef BROKEN_LATE_PASSED
        /* the increments after the publication */
        n = incat;
        do
        :: n != s -> d_step { passed[n]++; n = NEXTSLOT(n) }
        :: else -> break
        od;
        n = 0;
#endif
        inc = 0; /* the entry owns them now: the evictor takes them back */
        incat = 0;
        if
        :: newst == PENDING -> goto d_mine
        :: else -> goto r_apply
        fi;

d_found:    /* k is at slot s, version v (found, not inserted) */
        atomic {
            ws = st[s];
            wo = own[s];
            if
            :: ver[s] != v || ws == EVICTING -> res = AGAIN /* evicted since */
            :: ver[s] == v && (ws == DEDUCTED || ws == REFUNDING) -> res = DUPL
            :: ver[s] == v && ws == REFUNDED -> res = ALREADY
            :: ver[s] == v && ws == FAILED ->
                /* a retry after a failed attempt: CAS FAILED(v) -> PENDING(me, v) */
                st[s] = PENDING;
                own[s] = me;
                res = GO;
                printf("@ P%d deduct id %d: FAILED -> PENDING at slot %d\n", me, k, s)
            :: ver[s] == v && ws == PENDING -> res = WAIT
            fi
        };
        if
        :: res == AGAIN -> goto d_call
        :: res == WAIT -> wait_owner(s, v); goto d_found
        :: res == DUPL || res == ALREADY -> goto done
        :: res == GO
#ifdef BROKEN_RETAKE_NOFILTER
            ; goto d_take
#endif
        fi;
d_mine:     /* PENDING(me, v) at s: was k evicted?  The filter, after the claim */
        atomic {
            if
            :: fb = filt[k]
            :: !filt[k] && fps < FALSEPOS -> fb = 1; fps++
            fi
        };
        d_step {
            if
            :: fb && evicted > checked ->
                st[s] = FAILED;
                own[s] = 0;
                res = CHANGED;
                printf("@ P%d deduct id %d: maybe evicted (evicted_lsn %d > checked %d): FAILED, HS_EVICTED_CHANGED\n", me, k, evicted, checked)
            :: else -> res = GO
            fi;
            fb = 0
        };
        if
        :: res == CHANGED -> goto d_changed
        :: else
        fi;
d_take:
        DIE;
        d_step {
            if
            :: avail >= 1 -> avail--; res = GO
            :: else -> st[s] = FAILED; own[s] = 0; res = SOLDOUT
            fi
        };
        if
        :: res == SOLDOUT -> goto done
        :: else
        fi;
        DIE;
        d_step {
            assert(st[s] == PENDING && own[s] == me && ver[s] == v);
            qlen++;
            assert(qlen <= MAXLSN);
            L = qlen;
            qtype[L] = R_DEDUCT;
            qkey[L] = k;
            qslot[L] = s;
            qver[L] = v;
            dedrecs[k]++;
            nsold++;
            printf("@ P%d deduct id %d: DEDUCT at LSN %d\n", me, k, L);
            assert(dedrecs[k] <= 1); /* P3: one deduction per id, ever */
            INV
        };
        DIE;
        d_step { dlsn[s] = L; st[s] = DEDUCTED; own[s] = 0; L = 0 };
        res = OK;
        goto done;

d_changed:  /* HS_EVICTED_CHANGED: E = evicted_lsn, then the ledger */
        skip;
#ifdef BROKEN_LEDGER_FIRST
        atomic {
            if
            :: lhas[k] && lref[k] -> res = ALREADY
            :: lhas[k] && !lref[k] -> res = LDUP
            :: else -> res = GO
            fi
        };
        d_step { E = evicted };
#else
        d_step { E = evicted };
        atomic {
            if
            :: lhas[k] && lref[k] -> res = ALREADY
            :: lhas[k] && !lref[k] -> res = LDUP
            :: else -> res = GO
            fi
        };
#endif
        if
        :: res == LDUP ->
            /* "retry: true", answered from the ledger */
            assert(dedrecs[k] == 1);
            printf("@ P%d deduct id %d: the ledger has it (true)\n", me, k);
            goto done
        :: res == ALREADY -> goto done
        :: else -> checked = E; E = 0; goto d_call
        fi;

/* ---- refund: hs_refund, or database-first + hs_refund_evicted ---- */
r_begin:    /*
             * E = evicted_lsn BEFORE the index look-up: a ledger row at or
             * below it was drained before the look-up started, so an index
             * that does not hold its order evicted it (P2).  Read after the
             * NOT_FOUND (BROKEN_REFUND_E_AFTER, pg_ext/api.c as it is), E
             * may cover an order deducted and drained after a look-up that
             * ran before its deduct: the order is in the index and both
             * refund paths succeed.
             */
#ifndef BROKEN_REFUND_E_AFTER
        atomic { E = evicted };
#endif
        lookup(k, s, v, res);
        if
        :: res == ABSENT -> goto r_db
        :: else
        fi;
r_found:
        atomic {
            ws = st[s];
            wo = own[s];
            if
            :: ver[s] != v || ws == EVICTING -> res = AGAIN
            :: ver[s] == v && ws == DEDUCTED ->
                /* CAS DEDUCTED(v) -> REFUNDING(me, v) */
                st[s] = REFUNDING;
                own[s] = me;
                res = GO;
                printf("@ P%d refund id %d: REFUNDING at slot %d\n", me, k, s)
            :: ver[s] == v && ws == REFUNDED -> res = ALREADY
            :: ver[s] == v && ws == FAILED -> res = NOTFOUND
            :: ver[s] == v && (ws == PENDING || ws == REFUNDING) -> res = WAIT
            fi
        };
        if
        :: res == AGAIN -> goto r_begin
        :: res == WAIT -> wait_owner(s, v); goto r_found
        :: res == ALREADY -> goto done
        :: res == NOTFOUND -> goto r_db
        :: res == GO -> goto r_apply
        fi;
r_db:       /* one transaction: the ledger row, only if evicted (LSN <= E) */
#ifdef BROKEN_REFUND_E_AFTER
        atomic { E = evicted };
#else
        skip;
#endif
        atomic {
            if
            :: lhas[k] && !lref[k] && llsn[k] <= E ->
                lref[k] = 1;
                res = GO;
                printf("@ P%d refund id %d: ledger row marked refunded (database-first, evicted_lsn %d)\n", me, k, E)
            :: lhas[k] && !lref[k] && llsn[k] > E ->
                /* drained after E: the index should hold it; look again */
                res = AGAIN
            :: else -> res = NOTFOUND
            fi;
            E = 0
        };
        if
        :: res == AGAIN -> goto r_begin
        :: res != GO -> goto done
        :: else
        fi;
        DIE;
        /* after the commit: hs_refund_evicted(), an insert as REFUNDING */
        newst = REFUNDING;
        LOCK(k);
        DIE;
        goto ins_lookup;
e_found:    /* hs_refund_evicted found k at s, version v */
        atomic {
            ws = st[s];
            wo = own[s];
            if
            :: ver[s] != v || ws == EVICTING -> res = AGAIN
            :: ver[s] == v && ws == REFUNDED -> res = ALREADY
            :: ver[s] == v && ws == DEDUCTED -> res = DUPL /* "use hs_refund()" */
            :: ver[s] == v && ws == FAILED ->
                /* FAILED(v) -> PENDING(me, v) -> (fields) REFUNDING(me, v) */
                st[s] = PENDING;
                own[s] = me;
                res = GO;
                printf("@ P%d hs_refund_evicted id %d: FAILED -> PENDING at slot %d\n", me, k, s)
            :: ver[s] == v && (ws == PENDING || ws == REFUNDING) -> res = WAIT
            fi
        };
        if
        :: res == AGAIN ->
            LOCK(k);
            goto ins_lookup
        :: res == WAIT -> wait_owner(s, v); goto e_found
        :: res == ALREADY -> goto done
        :: res == DUPL -> goto done /* "use hs_refund()": a warning */
        :: res == GO
        fi;
        DIE;
        d_step { dlsn[s] = 0; st[s] = REFUNDING };
r_apply:    /* REFUNDING(me, v) at s: the record, then the counter, then REFUNDED */
        DIE;
        d_step {
            assert(st[s] == REFUNDING && own[s] == me && ver[s] == v);
            qlen++;
            assert(qlen <= MAXLSN);
            L = qlen;
            qtype[L] = R_REFUND;
            qkey[L] = k;
            qslot[L] = s;
            qver[L] = v;
            refrecs[k]++;
            nsold--;
            printf("@ P%d refund id %d: REFUND at LSN %d\n", me, k, L);
            assert(refrecs[k] <= 1);          /* refund at most once */
            assert(refrecs[k] <= dedrecs[k]); /* only what was deducted */
            L = 0
        };
        DIE;
        d_step { avail++; INV };
        DIE;
        d_step { st[s] = REFUNDED; own[s] = 0 };
        res = OK;
        goto done;

done:
        atomic {
            nops++;
            op = 0; k = 0; s = 0; v = 0; res = 0; checked = 0; E = 0; newst = 0;
            ws = 0; wo = 0
        }
    :: else -> break
    od;
    atomic { nbdone++ };
dead:
    skip
}

/*
 * The evictor (shmd/daemon/evictor.c): publish evicted_lsn = W (W <=
 * applied_lsn; here W = applied_lsn) before touching a slot; then per slot
 * (mark): load the state word; FAILED or DEAD: CAS from it to EVICTING at
 * once; an entry whose every record is at or below W (DEDUCTED:
 * deducted_lsn <= W; REFUNDED: its REFUND folded and applied,
 * deducted_lsn < recorded <= W): its id into the filter, and later (evict,
 * after the filter file is durable) load again and, if still of that
 * version and drained, CAS from that word to EVICTING.  A lost CAS skips.
 * Then clear + EMPTY(v + 1), and -1 on `passed` of the slots from the id's
 * home up to the slot (not for DEAD: its key may be half written).  The
 * slot is any slot with such an entry: a pass scans in order and marks all
 * before it evicts any, and every such order is one of the runs here.
 */
#ifdef BROKEN_EVICT_RECORDED
#define DRAINED(x) ((st[x] == DEDUCTED || st[x] == REFUNDED) && recd[x] <= W)
#else
#define DRAINED(x)                                                             \
    ((st[x] == DEDUCTED && dlsn[x] <= W) ||                                    \
     (st[x] == REFUNDED && recd[x] > dlsn[x] && recd[x] <= W))
#endif
#define EV_LOAD(x)                                                             \
    atomic {                                                                   \
        (DRAINED(x) || st[x] == FAILED || st[x] == DEAD) ->                    \
        s = x;                                                                 \
        ws = st[x];                                                            \
        wo = own[x];                                                           \
        wv = ver[x];                                                           \
        k = key[x];                                                            \
        what = (ws == FAILED -> 2 : (ws == DEAD -> 3 : 1))                     \
    }

#if NSLOT == 2
#define ALL_EMPTY (st[0] == EMPTY && st[1] == EMPTY)
#elif NSLOT == 3
#define ALL_EMPTY (st[0] == EMPTY && st[1] == EMPTY && st[2] == EMPTY)
#else
#define ALL_EMPTY (st[0] == EMPTY && st[1] == EMPTY && st[2] == EMPTY && st[3] == EMPTY)
#endif

proctype evictor()
{
    byte s, k, j, W, ws, wo, wv, what; /* what: 1 drained, 2 FAILED, 3 DEAD */
    bool finished = 0;

end_ev:
    do
    :: /* a pass starts: evicted_lsn = W, before any slot is touched */
       d_step {
           W < applied ->
           W = applied;
           assert(W >= evicted);
           evicted = W;
           printf("@ evictor: evicted_lsn %d\n", W)
       }
    :: /* load the state word and the fields of a slot to evict */
       if
       :: EV_LOAD(0)
       :: EV_LOAD(1)
#if NSLOT > 2
       :: EV_LOAD(2)
#endif
#if NSLOT > 3
       :: EV_LOAD(3)
#endif
       fi;
#ifndef BROKEN_FILTER_LATE
       if
       :: what == 1 ->
           d_step { filt[k] = 1 };
           /* evict phase (after the filter is durable): load again; still
            * this version and drained, the CAS is from this word */
           d_step {
               if
               :: ver[s] == wv && DRAINED(s) -> ws = st[s]; wo = own[s]
               :: else -> what = 0
               fi
           }
       :: else
       fi;
#endif
       d_step {
           if
           :: what != 0 && st[s] == ws && own[s] == wo && ver[s] == wv ->
               st[s] = EVICTING;
               if
               :: what != 3 -> kgen[k]++
               :: else
               fi;
               printf("@ evictor: slot %d (id %d, state %d, version %d) EVICTING\n", s, k, ws, wv)
           :: what != 0 && !(st[s] == ws && own[s] == wo && ver[s] == wv) ->
#ifndef BROKEN_DECR_LOST_CAS
               what = 0;
#endif
               printf("@ evictor: slot %d changed, skipped\n", s)
           :: what == 0 -> printf("@ evictor: slot %d no longer evictable, skipped\n", s)
           fi
       };
       if
       :: what != 0 && st[s] == EVICTING && ver[s] == wv ->
           d_step {
               key[s] = 0;
               dlsn[s] = 0;
               recd[s] = 0;
               own[s] = 0;
               st[s] = EMPTY;
               ver[s]++;
               printf("@ evictor: slot %d EMPTY (version %d)\n", s, ver[s])
           }
       :: else
       fi;
#ifdef BROKEN_FILTER_LATE
       if
       :: what == 1 -> d_step { filt[k] = 1 }
       :: else
       fi;
#endif
       if
       :: what == 1 || what == 2 ->
           j = home[k];
           do
           :: j != s ->
               d_step {
                   assert(passed[j] > 0); /* P4: never below 0 */
                   passed[j]--;
                   j = NEXTSLOT(j)
               }
           :: else -> break
           od
       :: else
       fi;
       atomic { s = 0; k = 0; j = 0; ws = 0; wo = 0; wv = 0; what = 0 }
    :: /* the end: every buyer done, everything drained, the table empty:
        * `passed` is back to what dead inserters left (P4) */
       d_step {
           !finished && nbdone == NB && applied == qlen && ALL_EMPTY ->
           finished = 1;
           hj = 0;
           do
           :: hj < NSLOT -> assert(passed[hj] == leak[hj]); hj++
           :: else -> break
           od;
           hj = 0;
           assert(deaths > 0 || avail + nsold == STOCK);
           printf("@ end: table empty, `passed` back to 0\n")
       }
    od
}

/* the spiller (fold in LSN order) and the drain (apply, publish applied_lsn) */
proctype background()
{
    byte L;

end_bg:
    do
    :: d_step {
           spilled < qlen ->
           L = spilled + 1;
           /* the record's slot still holds its order: nothing of it was
            * evicted before all its records were folded */
           assert(ver[qslot[L]] == qver[L] && key[qslot[L]] == qkey[L] && KEYED(st[qslot[L]]));
           recd[qslot[L]] = L;
           spilled = L;
           qslot[L] = 0; /* dead data from here on */
           qver[L] = 0;
           L = 0
       }
    :: d_step {
           applied < spilled ->
           L = applied + 1;
           if
           :: qtype[L] == R_DEDUCT ->
               assert(!lhas[qkey[L]]);
               lhas[qkey[L]] = 1;
               llsn[qkey[L]] = L
           :: qtype[L] == R_REFUND ->
               assert(lhas[qkey[L]]);
               lref[qkey[L]] = 1
           fi;
           applied = L;
           printf("@ drain applies LSN %d (type %d, id %d)\n", L, qtype[L], qkey[L]);
           qtype[L] = 0; /* dead data from here on */
           qkey[L] = 0;
           L = 0
       }
    od
}

#define SCRIPT(b, j, o, kk) sop[((b) - 1) * NOPS + (j)] = o; skey[((b) - 1) * NOPS + (j)] = kk

init
{
    byte b;

    d_step {
#if SCENARIO == 1
        /* a retry racing the original, its drain and its eviction; both
         * ids home at the last slot: the second one wraps to slot 0 */
        home[1] = NSLOT - 1;
        home[2] = NSLOT - 1;
        SCRIPT(1, 0, OP_DEDUCT, 1);
        SCRIPT(1, 1, OP_DEDUCT, 2);
        SCRIPT(2, 0, OP_DEDUCT, 2);
#elif SCENARIO == 2
        /* refunds racing: in the index, database-first after an eviction,
         * hs_refund_evicted's insert */
        home[1] = 0;
        home[2] = 0;
        SCRIPT(1, 0, OP_DEDUCT, 1);
        SCRIPT(1, 1, OP_REFUND, 1);
        SCRIPT(2, 0, OP_REFUND, 1);
#elif SCENARIO == 3
        /* look-ups of an id in a chain while the other one is evicted and
         * its retry inserts a FAILED entry (HS_EVICTED_CHANGED) */
        home[1] = NSLOT - 1;
        home[2] = NSLOT - 1;
        SCRIPT(1, 0, OP_DEDUCT, 2);
        SCRIPT(1, 1, OP_REFUND, 2);
        SCRIPT(2, 0, OP_DEDUCT, 1);
        SCRIPT(2, 1, OP_DEDUCT, 1);
#elif SCENARIO == 4
        /* three deducts of one id: a retry meets the FAILED entry another
         * retry left (HS_EVICTED_CHANGED) and takes it over */
        home[1] = NSLOT - 1;
        home[2] = NSLOT - 1;
        SCRIPT(1, 0, OP_DEDUCT, 1);
        SCRIPT(1, 1, OP_DEDUCT, 1);
        SCRIPT(2, 0, OP_DEDUCT, 1);
#elif SCENARIO == 5
        /* a retry leaves a FAILED entry of an evicted id (HS_EVICTED_CHANGED),
         * and a refund of it goes database-first and takes that entry over
         * (FAILED -> PENDING -> REFUNDING) */
        home[1] = NSLOT - 1;
        home[2] = NSLOT - 1;
        SCRIPT(1, 0, OP_DEDUCT, 1);
        SCRIPT(1, 1, OP_REFUND, 1);
        SCRIPT(2, 0, OP_DEDUCT, 1);
#elif SCENARIO == 6
        /* scenario 2 while another id is deducted, evicted and its slot
         * reused; both ids home at slot 0 */
        home[1] = 0;
        home[2] = 0;
        SCRIPT(1, 0, OP_DEDUCT, 1);
        SCRIPT(1, 1, OP_REFUND, 1);
        SCRIPT(2, 0, OP_DEDUCT, 2);
        SCRIPT(2, 1, OP_REFUND, 1);
#else
#error "unknown SCENARIO"
#endif
        b = 1;
        do
        :: b <= NB -> alive[b] = 1; b++
        :: else -> break
        od
    };
    atomic {
        b = 1;
        do
        :: b <= NB -> run buyer(b); b++
        :: else -> break
        od;
        run evictor();
        run background()
    }
}
