/*
 * holds.pml
 *      Promela model of holds (reservations with a time-to-live): reserve,
 *      confirm, cancel, expiry by the daemon or by a late confirm,
 *      compensation by the drain, dead-owner resolution and the daemon's
 *      crash and rebuild from the queue (hotstock.h, "Holds"), checked with
 *      SPIN (tests/model/run.sh).
 *
 * The grain of eviction.pml for the order slot: one d_step or atomic block
 * is one atomic instruction (a CAS or a store of the state word, a store of
 * a field, a CAS-decrement or fetch_add of `available`, one read of the
 * clock).  Coarser for the queue: an append (reserve an LSN, claim the ring
 * slot, fill, publish) is one step, and fails as a whole (hotstock.pml
 * checks the ring below it).  One SKU, STOCK units, qty 1, NORD orders.
 *
 * Per segment (one per daemon generation): `available`; next_lsn (a fenced
 * segment takes no record: `up`); spilled_lsn; per order slot the state
 * word (state + 16 * owner pid, moved by CAS), the deadline field,
 * deducted_lsn, `recorded` (LSN of the last record of the order the spiller
 * folded) and xid.  The queue: the records 1..qlen (type, order, xid,
 * deadline).  A clock `now`, 0..TMAX, and TTL: a hold's deadline is the
 * clock read at reserve + TTL.
 *
 * Processes:
 *   buyer    runs its script (SCENARIO, in init), one operation after the
 *            other, each retried once after HS_DAEMON_DOWN; may die between
 *            any two of its shared steps (DEATHS):
 *            reserve  claim EMPTY/FAILED -> PENDING(me); read the clock and
 *                     write the deadline field; CAS-decrement `available`
 *                     if >= 1 (else FAILED: sold out); append RESERVE (with
 *                     its xid and deadline; failing: raise, FAILED);
 *                     deducted_lsn = its LSN; store RESERVED.  With COMP its
 *                     transaction may then abort (the drain compensates).
 *            confirm  read the state word, the deadline and the clock (one
 *                     step of reads); then, as a separate step, the CAS:
 *                     before the deadline (as read) RESERVED ->
 *                     CONFIRMING(me), append CONFIRM, deducted_lsn, xid = the
 *                     confirm's (none: 0), store DEDUCTED; at or after it
 *                     RESERVED -> EXPIRING(me) and expire (below), answer
 *                     HS_HOLD_EXPIRED.  A failed CAS looks again from the
 *                     clock read.  Two-phase (OP_CONFIRM2): claim, then
 *                     commit (as above) or release CONFIRMING -> RESERVED; a
 *                     claim lost with a restarted daemon claims anew.
 *            cancel   RESERVED -> CANCELLING(me), append CANCEL, raise
 *                     `available` (after the record), store CANCELLED.
 *                     Two-phase (OP_CANCEL2) like confirm.
 *            retake   (RETAKE) hs_hold_retake: EXPIRED/CANCELLED ->
 *                     PENDING(me), CAS-decrement (sold out: back), append
 *                     DEDUCT (failing: raise, back), deducted_lsn, store
 *                     DEDUCTED.
 *            deduct   a plain deduct of an order id (deduct.c): claim
 *                     EMPTY/FAILED -> PENDING(me), deadline field 0 (not a
 *                     hold), CAS-decrement, append DEDUCT, deducted_lsn,
 *                     DEDUCTED.
 *   expiry   the daemon's expiry thread: a RESERVED hold whose deadline
 *            passed (clock read, then the CAS): RESERVED -> EXPIRING(me),
 *            append EXPIRE, raise, store EXPIRED.  A slot owned by a live
 *            process: later (its guard becomes true again when the slot
 *            moves); owned by a dead one: resolve it.  It serves the
 *            daemon of the current generation; its pid is the daemon's.
 *   daemon   the spiller (folds the next record: queue, `recorded` of its
 *            order, spilled_lsn), the clock, and CRASHES crashes: fence,
 *            salvage (every published record reaches the queue), build the
 *            next segment from the queue alone: the counter is the fold of
 *            the queue; an order is in the state its records leave it
 *            (RESERVE without a settling record: RESERVED with the
 *            record's deadline, deducted_lsn = recorded = its LSN);
 *            expiry of the holds whose deadline passed is the expiry
 *            thread's, at once.
 *   drain    (COMP) compensation: a folded RESERVE whose transaction did
 *            not commit: hs_compensate(order, xid): RESERVED by that xid
 *            -> CANCELLING(me), append CANCEL (compensation), raise,
 *            CANCELLED; owned by a live process: later; by a dead one:
 *            resolve; anything else: nothing to do.
 *   finish   when nothing else can move (SPIN's timeout: every buyer done,
 *            the clock at TMAX, everything folded, nothing to expire),
 *            checks the end state.
 *
 * Dead-owner resolution (anyone who meets a slot owned by a dead pid):
 * CAS the slot over to itself, read next_lsn, wait until spilled_lsn + 1
 * >= it (every LSN the dead owner could have reserved is folded), then
 * decide from `recorded` (LSN rule, as specified; a reserve and a deduct
 * both claim PENDING, the deadline field tells them apart):
 *   PENDING     recorded != 0 -> RESERVED if the deadline field is set,
 *               else DEDUCTED; deducted_lsn = recorded; else FAILED
 *   CONFIRMING  recorded > deducted_lsn -> DEDUCTED, deducted_lsn = recorded;
 *               else RESERVED
 *   CANCELLING  recorded > deducted_lsn -> CANCELLED; else RESERVED
 *   EXPIRING    recorded > deducted_lsn -> EXPIRED; else RESERVED
 * or (TYPED) from the type of the record at `recorded`: none -> FAILED,
 * RESERVE -> RESERVED, CONFIRM or DEDUCT -> DEDUCTED, CANCEL -> CANCELLED,
 * EXPIRE -> EXPIRED (deducted_lsn = recorded for RESERVED and DEDUCTED).
 *
 * Properties (assertions; run.sh also fails on a process blocked forever):
 *   P1 never oversell: units held (published RESERVE and DEDUCT records
 *      minus published CANCEL and EXPIRE records: confirmed and live holds)
 *      never exceed STOCK; the serving segment's `available` + units held
 *      <= STOCK at every change (so no take in flight can oversell); at the
 *      end `available` + held + leak == STOCK, where leak counts the units
 *      a process died holding back (between its decrement and its record,
 *      or between its record and its raise: undersell, allowed).
 *   P2 exactly one settlement per hold: at most one RESERVE per order, at
 *      most one CANCEL or EXPIRE, never a CONFIRM and a CANCEL/EXPIRE; the
 *      counter is raised at most once per order per segment.
 *   P3 a CONFIRM is never appended once the hold's units were handed back
 *      (its CANCEL/EXPIRE published or the counter raised for it), and
 *      the clock read that decided a successful confirm is before the
 *      deadline the reserve answered (hs_reserve's *expires_at_ms).
 *   P4 at the end (clock at TMAX, every buyer done or dead, the expiry
 *      thread idle) every hold whose deadline (its record's) passed has
 *      its settling record, and no slot is RESERVED past its deadline.
 *   P5 the index agrees with the records: whenever a slot of the serving
 *      segment is put in a settled state, by its owner, a resolver or the
 *      rebuild, the records back it (RESERVED: a RESERVE and no settling
 *      record; DEDUCTED: a CONFIRM or DEDUCT; CANCELLED: a CANCEL;
 *      EXPIRED: an EXPIRE; FAILED: no RESERVE); after a rebuild no hold
 *      with a record is missing and none is back after its settling record.
 *
 * Defaults beyond the protocol as specified (each is a finding; README):
 * a dead PENDING resolved to RESERVED gets deducted_lsn = recorded; the
 * expiry thread resolves every state owned by a dead pid (PENDING and
 * EXPIRING too); a deduct writes the deadline field (0); the RESERVE
 * record carries the very deadline the slot got; the rebuild sets
 * deducted_lsn of a RESERVED entry to its RESERVE.
 *
 * IMPL=1: the code as it landed (shmd/lib/hold.c, deduct.c, index.c,
 * refund.c, shmd/daemon/segment_build.c), whose resolver decides from an
 * LSN base in deducted_lsn instead:
 *   every owner stores deducted_lsn = the LSN of its record (RESERVE,
 *   DEDUCT, CONFIRM, and CANCEL / EXPIRE after the raise) and then, a
 *   second store, its final state; a confirm stores its xid (none: 0)
 *   before its record and puts the old one back if the record fails; a
 *   retake, after its claim EXPIRED/CANCELLED -> PENDING, sets
 *   deducted_lsn = max(recorded, deducted_lsn), never 0, and an undo puts
 *   the old one back before the state; the rebuild sets deducted_lsn =
 *   recorded for every state; the resolver (order_resolve_dead):
 *     PENDING     recorded > deducted_lsn -> RESERVED if the deadline field
 *                 is set and deducted_lsn is 0, else DEDUCTED; deducted_lsn
 *                 = recorded; else EXPIRED if deducted_lsn != 0 (a retake),
 *                 else FAILED
 *     CONFIRMING, CANCELLING, EXPIRING  recorded > deducted_lsn ->
 *                 DEDUCTED / CANCELLED / EXPIRED, deducted_lsn = recorded;
 *                 else RESERVED
 *   IMPL=1 fails (README, H8): an owner that dies between its two stores
 *   leaves recorded == deducted_lsn, read as "its record was not folded".
 *   IMPL_ONESTEP (with IMPL): as if the two stores were one step; fails
 *   only by a dead retake of a CANCELLED hold resolved to EXPIRED (H9).
 *   IMPL with TYPED: the code with the typed rule instead (the fix): passes.
 *   NO_P5: P5 unchecked, so that a run shows where a wrong state leads.
 *
 * Switches: SCENARIO (1-8, see init), STOCK, TMAX, DEATHS, CRASHES, COMP,
 * RETAKE, TYPED, IMPL, IMPL_ONESTEP, NO_P5, FULLS (appends that fail with
 * HS_QUEUE_FULL), and the variants run.sh expects to FAIL:
 *   the hold protocol as specified (or the code it will extend), where
 *   this model finds it wrong:
 *   SPEC_PENDING_NODLSN  a dead PENDING resolved to RESERVED keeps
 *                        deducted_lsn 0 (the rule names no deducted_lsn)  P5
 *   SPEC_EXPIRY_CC       the expiry thread resolves only CONFIRMING and
 *                        CANCELLING of a dead owner                        P4
 *   RETAKE without TYPED hs_hold_retake claims PENDING; the LSN rule makes a
 *                        dead retake RESERVED again                        P5
 *   API_DEDUCT_STALE_DEADLINE a deduct's FAILED -> PENDING claim leaves the
 *                        deadline field a sold-out reserve wrote; the LSN
 *                        rule takes the dead deduct for a reserve          P5
 *   API_RECORD_TIMESTAMP the RESERVE record's deadline from its own clock
 *                        read (record_init's timestamp_us), not the one the
 *                        slot's deadline came from                         P3
 *   API_INSTALL_DLSN     the rebuild sets deducted_lsn only for DEDUCTED
 *                        (hs_order_install as written), 0 for RESERVED     P5
 *   implementation mistakes, at least one per property:
 *   BROKEN_RAISE_FIRST   cancel and expiry raise before the record         P1
 *   BROKEN_EXPIRE_NOCAS  the expiry thread loads RESERVED, then stores
 *                        EXPIRING                                          P2
 *   BROKEN_COMP_CONFIRMED a CONFIRM leaves the RESERVE's xid in the slot
 *                        and hs_compensate takes DEDUCTED by that xid      P2
 *   BROKEN_CONFIRM_NOCAS confirm loads RESERVED, then stores CONFIRMING    P3
 *   BROKEN_CONFIRM_NODEADLINE confirm does not look at the clock (the
 *                        daemon expires holds "within a second")           P3
 *   BROKEN_EXPIRY_GIVEUP the expiry thread drops a hold it found claimed by
 *                        a live owner (a timer that fired once)            P4
 *   BROKEN_RESOLVE_NOWAIT the resolver decides without waiting for the
 *                        spiller                                           P5
 *   BROKEN_REBUILD_SILENT_EXPIRY the rebuild gives a hold past its deadline
 *                        back and marks it EXPIRED, without a record       P5
 * TYPED (the fix this model proposes for RETAKE) passes with every SPEC_
 * and API_ switch but API_RECORD_TIMESTAMP and SPEC_EXPIRY_CC.
 */

/* ---- sizes ---- */
#ifndef SCENARIO
#define SCENARIO 1
#endif
#ifndef STOCK
#define STOCK 1
#endif
#ifndef TMAX
#define TMAX 1
#endif
#define TTL 1
#ifndef DEATHS
#define DEATHS 0
#endif
#ifndef CRASHES
#define CRASHES 0
#endif
#ifndef COMP
#define COMP 0
#endif
#ifndef RETAKE
#define RETAKE 0
#endif
#ifndef TYPED
#define TYPED 0
#endif
#ifndef IMPL
#define IMPL 0
#endif
#ifndef FULLS
#define FULLS 0
#endif
#ifndef RETRIES
#define RETRIES 1
#endif
#define MAXLSN 8
#define NSEG (CRASHES + 1)

#if SCENARIO == 3 || SCENARIO == 6 || SCENARIO == 7
#define NORD 2
#else
#define NORD 1
#endif
#if SCENARIO == 5
#define NB 3
#else
#define NB 2
#endif
#define NOPS 2

/* pids: buyers 1..NB, the drain NB + 1, the daemon of generation g NB + 2 + g */
#define DRAIN_PID (NB + 1)
#define DPID(g) (NB + 2 + (g))
#define NPID (NB + 3 + CRASHES)

/* order slot states (hotstock.h enum hs_order_slot_state) */
#define EMPTY 0
#define PENDING 2
#define DEDUCTED 3
#define FAILED 4
#define RESERVED 9
#define CONFIRMING 10
#define CANCELLING 11
#define EXPIRING 12
#define CANCELLED 13
#define EXPIRED 14
#define ST(w) ((w) % 16)
#define OWN(w) ((w) / 16)
#define W(s, p) ((s) + 16 * (p))
#define OWNED(s) ((s) == PENDING || ((s) >= CONFIRMING && (s) <= EXPIRING))

/* record types (hotstock.h enum hs_record_type) */
#define R_NONE 0
#define R_DEDUCT 1
#define R_RESERVE 6
#define R_CONFIRM 7
#define R_CANCEL 8
#define R_EXPIRE 9

/* results */
#define GO 0
#define OK 1
#define DUPL 2
#define SOLDOUT 3
#define NOTFOUND 4
#define DOWN 5
#define FULL 6
#define WAIT 7
#define AGAIN 8
#define GONE 9 /* HS_HOLD_EXPIRED, HS_HOLD_CANCELLED, HS_NOT_HELD */
#define LATE 10

#define OP_RESERVE 1
#define OP_CONFIRM 2
#define OP_CANCEL 3
#define OP_CONFIRM2 4 /* two-phase: claim, then commit or release */
#define OP_CANCEL2 5
#define OP_RETAKE 6
#define OP_DEDUCT 7 /* a plain deduct (hs_deduct_checked) */

typedef Seg {
    bool up;        /* served: not fenced, its daemon alive */
    byte avail;     /* hs_sku_slot.available */
    byte next;      /* next_lsn */
    byte spilled;   /* spilled_lsn */
    byte w[NORD];   /* state word: state + 16 * owner */
    byte dl[NORD];  /* deadline field */
    byte dlsn[NORD]; /* deducted_lsn */
    byte rec[NORD]; /* `recorded` */
    byte xid[NORD]; /* xid of the record that settled it (RESERVE, CONFIRM) */
};

Seg seg[NSEG];
byte cur = 0;
byte now = 0; /* the clock */

/* the queue: records 1..qlen (a record published in a segment reaches it:
 * the spiller or the salvage puts it there) */
byte rtype[MAXLSN + 1];
byte rord[MAXLSN + 1];
byte rxid[MAXLSN + 1];
byte rdl[MAXLSN + 1];
byte qlen = 0;

bool alive[NPID];
bool xab[NPID]; /* the transaction of pid's reserve did not commit */
byte deaths = 0;
byte crashes = 0;
byte fulls = 0;
byte ndone = 0; /* buyers done or dead */

/* the buyers' scripts: op k of buyer b at [(b - 1) * NOPS + k] (0: none) */
byte sop[NB * NOPS];
byte sord[NB * NOPS];

/* ---- ghosts ---- */
byte held = 0;     /* units held: RESERVE + DEDUCT - CANCEL - EXPIRE records */
byte nres[NORD];   /* RESERVE records of o */
byte nconf[NORD];  /* CONFIRM records */
byte ncan[NORD];   /* CANCEL records */
byte nexp[NORD];   /* EXPIRE records */
byte nded[NORD];   /* DEDUCT records (a deduct or a retake) */
byte resl[NORD];   /* LSN of o's RESERVE */
byte gdl[NORD];    /* the deadline hs_reserve answered (the slot's field) */
bool gback[NORD];  /* o's units were handed back (record or raise) */
byte raises[NSEG * NORD]; /* counter raises for o in segment g */
byte leak[NSEG];   /* units held back in segment g by processes that died */

#define SETTLED(o) (nconf[o] + ncan[o] + nexp[o] > 0)

/* named results of the longer checks, so that a violation reads as its
 * name (hidden: not part of the state) */
hidden byte p5_index_agrees_with_records;
hidden byte p4_hold_settled_after_deadline;
hidden byte p4_not_reserved_after_deadline;

/* NO_P5: P5 not checked, so that a run shows where a wrong state leads
 * (a unit handed back twice, a sale of a returned unit) */
#ifdef NO_P5
#define P5_ASSERT skip
#else
#define P5_ASSERT assert(p5_index_agrees_with_records)
#endif

/* P1, live: a serving segment's counter never runs ahead of the units held */
#define INV(g) assert(!seg[g].up || seg[g].avail + held <= STOCK)

/* P5: the records back state s of order o */
#define BACKED(o, s)                                                           \
    (((s) != RESERVED || (nres[o] == 1 && !SETTLED(o) && nded[o] == 0)) &&    \
     ((s) != DEDUCTED || nconf[o] + nded[o] == 1) &&                           \
     ((s) != CANCELLED || (ncan[o] == 1 && nded[o] == 0)) &&                   \
     ((s) != EXPIRED || (nexp[o] == 1 && nded[o] == 0)) &&                     \
     ((s) != FAILED || nres[o] + nded[o] == 0) &&                              \
     ((s) != EMPTY || nres[o] + nded[o] == 0))

/* store settled state s (no owner) into o's slot of g, which we own */
inline settle(g, o, s)
{
    assert(OWN(seg[g].w[o]) == me);
    seg[g].w[o] = s;
    p5_index_agrees_with_records = (g != cur || BACKED(o, s));
    P5_ASSERT;
    printf("@ P%d: order %d -> state %d in segment %d\n", me, o, s, g)
}

/*
 * Append a record of type rt for order o in segment g, carrying xid x and
 * deadline d (RESERVE); tc: the clock read that decided a confirm.  One
 * step: res GO (LSN L), DOWN (fenced: the daemon is gone), FULL (queue
 * full: MAXLSN, or one of FULLS failures anywhere).
 */
inline append(g, rt, o, x, d, tc, L, res)
{
    atomic {
        if
        :: !seg[g].up -> res = DOWN
        :: seg[g].up && seg[g].next > MAXLSN -> res = FULL
        :: seg[g].up && seg[g].next <= MAXLSN && fulls < FULLS -> fulls++; res = FULL
        :: seg[g].up && seg[g].next <= MAXLSN ->
            L = seg[g].next;
            seg[g].next++;
            rtype[L] = rt;
            rord[L] = o;
            rxid[L] = x;
            rdl[L] = d;
            printf("@ P%d appends LSN %d: type %d, order %d (deadline %d)\n", me, L, rt, o, d);
            if
            :: rt == R_RESERVE ->
                nres[o]++;
                resl[o] = L;
                gdl[o] = seg[g].dl[o];
                held++;
                assert(nres[o] <= 1);   /* P2: one hold per order */
                assert(held <= STOCK)   /* P1: NEVER OVERSELL */
            :: rt == R_DEDUCT ->
                /* a plain deduct, or a retake of a hold that ended */
                assert(nded[o] == 0 && (nres[o] == 0 || ncan[o] + nexp[o] == 1));
                nded[o]++;
                held++;
                assert(held <= STOCK)   /* P1 */
            :: rt == R_CONFIRM ->
                assert(!gback[o]);      /* P3: no sale of returned units */
                assert(tc < gdl[o]);    /* P3: decided before the deadline */
                assert(nres[o] == 1 && nconf[o] == 0 && ncan[o] + nexp[o] == 0); /* P2 */
                nconf[o]++
            :: rt == R_CANCEL || rt == R_EXPIRE ->
                assert(nconf[o] == 0 && ncan[o] + nexp[o] == 0 && nded[o] == 0); /* P2 */
                if
                :: rt == R_CANCEL -> ncan[o]++
                :: else -> nexp[o]++
                fi;
                held--;
                gback[o] = 1
            fi;
            INV(g);
            res = GO
        fi
    }
}

/* raise `available` by 1 for o's hold (fetch_add) */
inline raise(g, o)
{
    d_step {
        seg[g].avail++;
        raises[g * NORD + o]++;
        gback[o] = 1;
        assert(raises[g * NORD + o] <= 1); /* P2: units given back once */
        INV(g);
        printf("@ P%d raises available -> %d (order %d)\n", me, seg[g].avail, o)
    }
}

/* IMPL: an owner's store of deducted_lsn = L (its record), a step of its
 * own before the state's */
#ifndef IMPL_ONESTEP
#define STORE_DLSN                                                             \
    d_step {                                                                   \
        seg[g].dlsn[o] = L;                                                    \
        printf("@ P%d: order %d deducted_lsn = %d\n", me, o, L)                \
    }
#else
/* IMPL_ONESTEP: as if the two stores were one (they are not): the store
 * goes with the state's, in SETTLE_OWN */
#define STORE_DLSN pendl = L
#endif
/* the owner's store of its final state (with IMPL_ONESTEP its deducted_lsn
 * too) */
#define SETTLE_OWN(s)                                                          \
    d_step {                                                                   \
        if                                                                     \
        :: pendl != 0 -> seg[g].dlsn[o] = pendl; pendl = 0                     \
        :: else                                                                \
        fi;                                                                    \
        settle(g, o, s)                                                        \
    }

/* a buyer may die here (the drain and the daemon's threads do not); the
 * test of the budget is in the step that spends it, so that DEATHS bounds
 * the deaths of a run (a guard of its own let every buyer pass it before
 * the first death was counted) */
#define DIE                                                                    \
    if                                                                         \
    :: d_step {                                                                \
            me <= NB && deaths < DEATHS;                                       \
            deaths++;                                                          \
            alive[me] = 0;                                                     \
            xab[me] = xab[me] || inres;                                        \
            leak[g] = leak[g] + owe;                                           \
            printf("@ P%d dies\n", me)                                         \
        };                                                                     \
        goto dead                                                              \
    :: true                                                                    \
    fi

#define SERVED(x) (seg[x].up)

/*
 * Dead-owner resolution of o's slot in g, met as word w (owned by a dead
 * pid): take it over (CAS to our pid), read next_lsn, wait until the
 * spiller folded every LSN below it, decide from `recorded`.  Ends with
 * the slot moved (or lost to someone else, or the segment gone): the
 * caller looks again.
 */
inline resolve(g, o, w, n, nw)
{
    d_step {
        if
        :: seg[g].w[o] == w && SERVED(g) ->
            seg[g].w[o] = W(ST(w), me);
            n = seg[g].next;
            printf("@ P%d: owner %d of order %d is dead (state %d): taken over\n", me, OWN(w), o, ST(w))
        :: else -> n = 0
        fi
    };
    if
    :: n != 0 ->
        DIE;
        if
#ifdef BROKEN_RESOLVE_NOWAIT
        :: true ->
#else
        :: seg[g].spilled + 1 >= n ->
#endif
        d_step {
            printf("@ P%d decides from recorded %d (type %d), deducted_lsn %d, deadline field %d\n",
                   me, seg[g].rec[o], rtype[seg[g].rec[o]], seg[g].dlsn[o], seg[g].dl[o]);
#if TYPED
            if
            :: rtype[seg[g].rec[o]] == R_NONE -> nw = FAILED
            :: rtype[seg[g].rec[o]] == R_RESERVE -> nw = RESERVED; seg[g].dlsn[o] = seg[g].rec[o]
            :: rtype[seg[g].rec[o]] == R_CONFIRM || rtype[seg[g].rec[o]] == R_DEDUCT ->
                nw = DEDUCTED; seg[g].dlsn[o] = seg[g].rec[o]
            :: rtype[seg[g].rec[o]] == R_CANCEL -> nw = CANCELLED
            :: rtype[seg[g].rec[o]] == R_EXPIRE -> nw = EXPIRED
            fi;
#if IMPL
            /* the code's deducted_lsn: the record that settled the state */
            if
            :: seg[g].rec[o] != 0 -> seg[g].dlsn[o] = seg[g].rec[o]
            :: else
            fi;
#endif
#elif IMPL
            /* order_resolve_dead() in index.c as written: the LSN base
             * deducted_lsn ("recorded > deducted_lsn": the dead owner's
             * record was folded) */
            if
            :: ST(w) == PENDING ->
                if
                :: seg[g].rec[o] > seg[g].dlsn[o] ->
                    /* a reserve (deadline set, no base) or a deduct/retake */
                    nw = (seg[g].dl[o] != 0 && seg[g].dlsn[o] == 0 -> RESERVED : DEDUCTED);
                    seg[g].dlsn[o] = seg[g].rec[o]
                :: seg[g].rec[o] <= seg[g].dlsn[o] && seg[g].dlsn[o] != 0 ->
                    nw = EXPIRED /* "a retake that took nothing" */
                :: seg[g].rec[o] <= seg[g].dlsn[o] && seg[g].dlsn[o] == 0 -> nw = FAILED
                fi
            :: else ->
                if
                :: seg[g].rec[o] <= seg[g].dlsn[o] -> nw = RESERVED
                :: else ->
                    seg[g].dlsn[o] = seg[g].rec[o];
                    if
                    :: ST(w) == CONFIRMING -> nw = DEDUCTED
                    :: ST(w) == CANCELLING -> nw = CANCELLED
                    :: ST(w) == EXPIRING -> nw = EXPIRED
                    fi
                fi
            fi;
#ifndef IMPL_ONESTEP
            /* index.c: deducted_lsn (above), then, a second store, the
             * state: the resolver may die in between too */
            printf("@ P%d: order %d deducted_lsn = %d, deciding %d\n", me, o, seg[g].dlsn[o], nw)
        };
        DIE;
        d_step {
#endif
#else
            if
            :: ST(w) == PENDING ->
                if
                :: seg[g].rec[o] != 0 && seg[g].dl[o] != 0 ->
                    /* a reserve: the deadline field is set */
                    nw = RESERVED;
#ifndef SPEC_PENDING_NODLSN
                    seg[g].dlsn[o] = seg[g].rec[o]
#endif
                :: seg[g].rec[o] != 0 && seg[g].dl[o] == 0 ->
                    /* a deduct */
                    nw = DEDUCTED;
                    seg[g].dlsn[o] = seg[g].rec[o]
                :: else -> nw = FAILED
                fi
            :: ST(w) == CONFIRMING ->
                if
                :: seg[g].rec[o] > seg[g].dlsn[o] -> nw = DEDUCTED; seg[g].dlsn[o] = seg[g].rec[o]
                :: else -> nw = RESERVED
                fi
            :: ST(w) == CANCELLING ->
                if
                :: seg[g].rec[o] > seg[g].dlsn[o] -> nw = CANCELLED
                :: else -> nw = RESERVED
                fi
            :: ST(w) == EXPIRING ->
                if
                :: seg[g].rec[o] > seg[g].dlsn[o] -> nw = EXPIRED
                :: else -> nw = RESERVED
                fi
            fi;
#endif
            settle(g, o, nw);
            nw = 0
        }
        :: !SERVED(g) /* the daemon is gone: look again in the next segment */
        fi
    :: else
    fi;
    n = 0
}

/* a slot owned by another: wait until it moves, or resolve a dead owner */
inline wait_owner(g, o, w, n, nw)
{
    if
    :: seg[g].w[o] != w
    :: !SERVED(g)
    :: !alive[OWN(w)] -> resolve(g, o, w, n, nw)
    fi
}

/* call start: re-attach to the segment the name points at */
#define ATTACH atomic { SERVED(cur) -> g = cur }

/* ---------------------------------------------------------------------- */

proctype buyer(byte me)
{
    byte k = 0, op, o, g, w, n, nw, L, t, res, tries, prev;
    byte prevl = 0, hadx = 0; /* IMPL: a retake's old deducted_lsn, a confirm's old xid */
    byte pendl = 0;           /* IMPL_ONESTEP: deducted_lsn to store with the state */
    bool owe = 0;
    bool inres = 0; /* in a reserve: a death aborts its transaction */

    do
    :: k < NOPS && sop[(me - 1) * NOPS + k] != 0 ->
        d_step { op = sop[(me - 1) * NOPS + k]; o = sord[(me - 1) * NOPS + k]; tries = 0 };
attempt:
        if
        :: op == OP_RESERVE -> inres = 1; goto r_begin
        :: op == OP_CONFIRM || op == OP_CONFIRM2 -> goto c_begin
        :: op == OP_CANCEL || op == OP_CANCEL2 -> goto x_begin
        :: op == OP_RETAKE -> goto t_begin
        :: op == OP_DEDUCT -> goto d_begin
        fi;

/* ---- reserve ---- */
r_begin:
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            if
            :: ST(w) == EMPTY || ST(w) == FAILED ->
                seg[g].w[o] = W(PENDING, me);
                seg[g].xid[o] = me;
                printf("@ P%d reserve order %d: PENDING in segment %d\n", me, o, g);
                res = GO
            :: OWNED(ST(w)) -> res = WAIT
            :: ST(w) == RESERVED || ST(w) == DEDUCTED -> res = DUPL
            :: ST(w) == CANCELLED || ST(w) == EXPIRED -> res = GONE
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto r_begin
        :: res != GO -> goto done
        :: else
        fi;
        DIE;
        /* read the clock, write the deadline field */
        d_step {
            t = now + TTL;
            seg[g].dl[o] = t;
            printf("@ P%d reserve order %d: deadline field %d (clock %d read)\n", me, o, t, now)
        };
        DIE;
        /* CAS-decrement if >= 1; sold out: FAILED */
        d_step {
            if
            :: seg[g].avail >= 1 ->
                seg[g].avail--;
                owe = 1;
                res = GO
            :: else ->
                settle(g, o, FAILED);
                res = SOLDOUT
            fi
        };
        if
        :: res == SOLDOUT -> goto done
        :: else
        fi;
        DIE;
#ifdef API_RECORD_TIMESTAMP
        /* the record's timestamp is its own clock read (record_init) */
        append(g, R_RESERVE, o, me, now + TTL, 0, L, res);
#else
        append(g, R_RESERVE, o, me, t, 0, L, res);
#endif
        t = 0;
        if
        :: res == GO -> owe = 0
        :: else ->
            /* undo: raise, FAILED */
            DIE;
            d_step { seg[g].avail++; owe = 0; INV(g); settle(g, o, FAILED) };
            goto done
        fi;
        DIE;
#if IMPL
        /* deduct.c: deducted_lsn, then (a second store) RESERVED */
        STORE_DLSN;
        DIE;
        SETTLE_OWN(RESERVED);
#else
        d_step {
            seg[g].dlsn[o] = L;
            settle(g, o, RESERVED)
        };
#endif
        res = OK;
#if COMP
        /* its transaction may roll back (or be killed): the drain
         * compensates the hold */
        if
        :: xab[me] = 1
        :: skip
        fi;
#endif
        goto done;

/* ---- confirm (and the expiry of a late one) ---- */
c_begin:
        /* the reads: state word, deadline, clock */
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            t = now;
            if
#ifdef BROKEN_CONFIRM_NODEADLINE
            :: ST(w) == RESERVED -> res = GO
#else
            :: ST(w) == RESERVED && t < seg[g].dl[o] -> res = GO
            :: ST(w) == RESERVED && t >= seg[g].dl[o] -> res = LATE
#endif
            :: OWNED(ST(w)) -> res = WAIT
            :: ST(w) == DEDUCTED -> res = DUPL
            :: ST(w) == CANCELLED || ST(w) == EXPIRED -> res = GONE
            :: ST(w) == EMPTY || ST(w) == FAILED -> res = NOTFOUND
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto c_begin
        :: res == GO || res == LATE
        :: else -> goto done
        fi;
        DIE;
        /* the CAS */
        d_step {
            if
#ifdef BROKEN_CONFIRM_NOCAS
            :: res == GO -> /* a store of what the load decided */
#else
            :: seg[g].w[o] == w && res == GO ->
#endif
                seg[g].w[o] = W(CONFIRMING, me);
                printf("@ P%d confirm order %d: CONFIRMING (clock %d read)\n", me, o, t)
            :: seg[g].w[o] == w && res == LATE ->
                seg[g].w[o] = W(EXPIRING, me);
                printf("@ P%d confirm order %d: late (clock %d read): EXPIRING\n", me, o, t)
            :: else -> res = AGAIN
            fi
        };
        if
        :: res == AGAIN -> goto c_begin
        :: res == LATE -> goto e_append
        :: else
        fi;
        DIE;
        if
        :: op == OP_CONFIRM2 ->
            /* two-phase: the transaction goes on; later commit or release */
            if
            :: skip
            :: d_step { settle(g, o, RESERVED) }; goto done
            fi;
            DIE;
            if
            :: !SERVED(g) ->
                /* the claim was lost with the daemon: claim anew */
                op = OP_CONFIRM;
                goto c_begin
            :: else
            fi
        :: else
        fi;
#if IMPL
        /* hold.c confirm_apply(): the CONFIRM's xid (none) before the record */
        d_step { hadx = seg[g].xid[o]; seg[g].xid[o] = 0 };
        DIE;
#endif
        append(g, R_CONFIRM, o, 0, 0, t, L, res);
        if
        :: res != GO ->
            /* not confirmed: release */
            DIE;
#if IMPL
            d_step { seg[g].xid[o] = hadx; settle(g, o, RESERVED) };
#else
            d_step { settle(g, o, RESERVED) };
#endif
            goto done
        :: else
        fi;
        DIE;
#if IMPL
        /* deducted_lsn, then (a second store) DEDUCTED */
        STORE_DLSN;
        DIE;
        SETTLE_OWN(DEDUCTED);
#else
        d_step {
            seg[g].dlsn[o] = L;
#ifndef BROKEN_COMP_CONFIRMED
            seg[g].xid[o] = 0; /* the CONFIRM's xid: none */
#endif
            settle(g, o, DEDUCTED)
        };
#endif
        res = OK;
        goto done;

/* ---- a late confirm expires the hold itself (EXPIRING(me)) ---- */
e_append:
        DIE;
        append(g, R_EXPIRE, o, 0, 0, 0, L, res);
        if
        :: res != GO ->
            DIE;
            d_step { settle(g, o, RESERVED) };
            goto done
        :: else
        fi;
        owe = 1;
        DIE;
        raise(g, o);
        owe = 0;
        DIE;
#if IMPL
        /* refund_apply(): deducted_lsn = the EXPIRE, then EXPIRED */
        STORE_DLSN;
        DIE;
#endif
        SETTLE_OWN(EXPIRED);
        res = GONE;
        goto done;

/* ---- cancel ---- */
x_begin:
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            if
            :: ST(w) == RESERVED ->
                seg[g].w[o] = W(CANCELLING, me);
                printf("@ P%d cancel order %d: CANCELLING\n", me, o);
                res = GO
            :: OWNED(ST(w)) -> res = WAIT
            :: ST(w) == DEDUCTED -> res = GONE /* HS_NOT_HELD: refund it */
            :: ST(w) == CANCELLED -> res = DUPL
            :: ST(w) == EXPIRED -> res = GONE
            :: ST(w) == EMPTY || ST(w) == FAILED -> res = NOTFOUND
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto x_begin
        :: res != GO -> goto done
        :: else
        fi;
        DIE;
        if
        :: op == OP_CANCEL2 ->
            if
            :: skip
            :: d_step { settle(g, o, RESERVED) }; goto done
            fi;
            DIE;
            if
            :: !SERVED(g) -> op = OP_CANCEL; goto x_begin
            :: else
            fi
        :: else
        fi;
#ifdef BROKEN_RAISE_FIRST
        raise(g, o);
        owe = 1; /* (inverted: a unit given back without its record) */
        DIE;
#endif
        append(g, R_CANCEL, o, 0, 0, 0, L, res);
        if
        :: res != GO ->
            DIE;
            d_step {
#ifdef BROKEN_RAISE_FIRST
                seg[g].avail--;
                owe = 0;
#endif
                settle(g, o, RESERVED)
            };
            goto done
        :: else
        fi;
#ifndef BROKEN_RAISE_FIRST
        owe = 1;
        DIE;
        raise(g, o);
#endif
        owe = 0;
        DIE;
#if IMPL
        /* refund_apply(): deducted_lsn = the CANCEL, then CANCELLED */
        STORE_DLSN;
        DIE;
#endif
        SETTLE_OWN(CANCELLED);
        res = OK;
        goto done;

/* ---- plain deduct (hs_deduct_checked) of an order id ---- */
d_begin:
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            if
            :: ST(w) == EMPTY || ST(w) == FAILED ->
                seg[g].w[o] = W(PENDING, me);
                seg[g].xid[o] = me;
                printf("@ P%d deduct order %d: PENDING in segment %d\n", me, o, g);
                res = GO
            :: OWNED(ST(w)) -> res = WAIT
            :: else -> res = GONE /* HS_DUPLICATE, or HS_ORDER_MISMATCH (a hold) */
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto d_begin
        :: res != GO -> goto done
        :: else
        fi;
        DIE;
#ifndef API_DEDUCT_STALE_DEADLINE
        /* not a hold: the deadline field says so (a FAILED reserve may
         * have left one) */
        d_step { seg[g].dl[o] = 0 };
        DIE;
#endif
        d_step {
            if
            :: seg[g].avail >= 1 ->
                seg[g].avail--;
                owe = 1;
                res = GO
            :: else ->
                settle(g, o, FAILED);
                res = SOLDOUT
            fi
        };
        if
        :: res == SOLDOUT -> goto done
        :: else
        fi;
        DIE;
        append(g, R_DEDUCT, o, me, 0, 0, L, res);
        if
        :: res == GO -> owe = 0
        :: else ->
            DIE;
            d_step { seg[g].avail++; owe = 0; INV(g); settle(g, o, FAILED) };
            goto done
        fi;
        DIE;
#if IMPL
        STORE_DLSN;
        DIE;
        SETTLE_OWN(DEDUCTED);
#else
        d_step {
            seg[g].dlsn[o] = L;
            settle(g, o, DEDUCTED)
        };
#endif
        res = OK;
        goto done;

/* ---- retake (hs_hold_retake) ---- */
t_begin:
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            if
            :: ST(w) == EXPIRED || ST(w) == CANCELLED ->
                prev = ST(w);
                seg[g].w[o] = W(PENDING, me);
                printf("@ P%d retake order %d: PENDING\n", me, o);
                res = GO
            :: OWNED(ST(w)) -> res = WAIT
            :: ST(w) == DEDUCTED -> res = DUPL
            :: else -> res = GONE /* RESERVED: confirm it; unknown: not found */
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto t_begin
        :: res != GO -> goto done
        :: else
        fi;
        DIE;
#if IMPL
        /* deduct.c: after the claim, the LSN base: deducted_lsn =
         * max(recorded, deducted_lsn), never 0 (the old one kept for an
         * undo); the retake's xid (before the counter) */
        d_step {
            prevl = seg[g].dlsn[o];
            seg[g].dlsn[o] = (seg[g].rec[o] > prevl -> seg[g].rec[o] : (prevl != 0 -> prevl : 1));
            seg[g].xid[o] = me;
            printf("@ P%d retake order %d: base deducted_lsn %d (recorded %d)\n", me, o, seg[g].dlsn[o], seg[g].rec[o])
        };
        DIE;
        d_step {
            if
            :: seg[g].avail >= 1 ->
                seg[g].avail--;
                owe = 1;
                res = GO
            :: else -> res = SOLDOUT
            fi
        };
        if
        :: res == SOLDOUT ->
            /* take_undo(): deducted_lsn back, then the state */
            d_step { seg[g].dlsn[o] = prevl };
            DIE;
            d_step { settle(g, o, prev) };
            goto done
        :: else
        fi;
#else
        d_step {
            if
            :: seg[g].avail >= 1 ->
                seg[g].avail--;
                owe = 1;
                res = GO
            :: else ->
                settle(g, o, prev);
                res = SOLDOUT
            fi
        };
#endif
        if
        :: res == SOLDOUT -> goto done
        :: else
        fi;
        DIE;
        append(g, R_DEDUCT, o, me, 0, 0, L, res);
        if
        :: res == GO -> owe = 0
        :: else ->
            DIE;
#if IMPL
            d_step { seg[g].avail++; owe = 0; INV(g); seg[g].dlsn[o] = prevl };
            DIE;
            d_step { settle(g, o, prev) };
#else
            d_step { seg[g].avail++; owe = 0; INV(g); settle(g, o, prev) };
#endif
            goto done
        fi;
        DIE;
#if IMPL
        STORE_DLSN;
        DIE;
        SETTLE_OWN(DEDUCTED);
#else
        d_step {
            seg[g].dlsn[o] = L;
            seg[g].xid[o] = me;
            settle(g, o, DEDUCTED)
        };
#endif
        res = OK;
        goto done;

done:
        if
        :: res == DOWN && tries < RETRIES -> tries++; goto attempt
        :: else
        fi;
        d_step { k++; op = 0; o = 0; g = 0; w = 0; L = 0; t = 0; res = 0; tries = 0; prev = 0; prevl = 0; hadx = 0; pendl = 0; inres = 0 }
    :: else -> break
    od;
    ndone++;
    goto finished;
dead:
    ndone++;
finished:
    skip
}

/* ---------------------------------------------------------------------- */

/* may the expiry thread expire o now (a clock read and the state word) */
#define EXPIRABLE(o) (ST(seg[cur].w[o]) == RESERVED && now >= seg[cur].dl[o] && !gaveup[o])
/* a slot it resolves: owned by a dead pid */
#ifdef SPEC_EXPIRY_CC
#define RESOLVABLE(o)                                                          \
    ((ST(seg[cur].w[o]) == CONFIRMING || ST(seg[cur].w[o]) == CANCELLING) &&  \
     !alive[OWN(seg[cur].w[o])])
#else
#define RESOLVABLE(o) (OWNED(ST(seg[cur].w[o])) && !alive[OWN(seg[cur].w[o])])
#endif
#define GIVEUP(o)                                                              \
    ((ST(seg[cur].w[o]) == CONFIRMING || ST(seg[cur].w[o]) == CANCELLING) &&  \
     alive[OWN(seg[cur].w[o])] && now >= seg[cur].dl[o] && !gaveup[o])

proctype expiry()
{
    byte me, g, o, w, n, nw, L, res, gen = 0;
    bool owe = 0, inres = 0; /* never set: the daemon does not die alone */
    bool gaveup[NORD];

end_expiry:
    do
    :: /* a hold past its deadline: clock read and CAS RESERVED -> EXPIRING */
#ifdef BROKEN_EXPIRE_NOCAS
        atomic {
            SERVED(cur) &&
            (EXPIRABLE(0) || (NORD > 1 && EXPIRABLE(NORD - 1))) ->
            if
            :: EXPIRABLE(0) -> o = 0
            :: NORD > 1 && EXPIRABLE(NORD - 1) -> o = NORD - 1
            fi;
            g = cur;
            me = DPID(g)
        };
        /* the store of a load's decision */
        d_step {
            seg[g].w[o] = W(EXPIRING, me);
            printf("@ expiry: order %d EXPIRING\n", o)
        };
#else
        atomic {
            SERVED(cur) &&
            (EXPIRABLE(0) || (NORD > 1 && EXPIRABLE(NORD - 1))) ->
            if
            :: EXPIRABLE(0) -> o = 0
            :: NORD > 1 && EXPIRABLE(NORD - 1) -> o = NORD - 1
            fi;
            g = cur;
            me = DPID(g);
            seg[g].w[o] = W(EXPIRING, me);
            printf("@ expiry: order %d EXPIRING (clock %d, deadline %d)\n", o, now, seg[g].dl[o])
        };
#endif
#ifdef BROKEN_RAISE_FIRST
        raise(g, o);
#endif
        append(g, R_EXPIRE, o, 0, 0, 0, L, res);
        if
        :: res == GO ->
#ifndef BROKEN_RAISE_FIRST
            raise(g, o);
#endif
#if IMPL
            d_step { seg[g].dlsn[o] = L; settle(g, o, EXPIRED) }
#else
            d_step { settle(g, o, EXPIRED) }
#endif
        :: res == FULL ->
            d_step {
#ifdef BROKEN_RAISE_FIRST
                seg[g].avail--;
#endif
                settle(g, o, RESERVED)
            }
        :: res == DOWN /* the daemon crashed: this thread is gone */
        fi;
        d_step { o = 0; g = 0; L = 0; res = 0; me = 0 }
    :: /* a slot owned by a dead pid */
        atomic {
            SERVED(cur) &&
            (RESOLVABLE(0) || (NORD > 1 && RESOLVABLE(NORD - 1))) ->
            if
            :: RESOLVABLE(0) -> o = 0
            :: NORD > 1 && RESOLVABLE(NORD - 1) -> o = NORD - 1
            fi;
            g = cur;
            me = DPID(g);
            w = seg[g].w[o]
        };
        resolve(g, o, w, n, nw);
        d_step { o = 0; g = 0; w = 0; me = 0 }
#ifdef BROKEN_EXPIRY_GIVEUP
    :: /* found claimed by a live owner after its deadline: dropped */
        d_step {
            SERVED(cur) && (GIVEUP(0) || (NORD > 1 && GIVEUP(NORD - 1))) ->
            if
            :: GIVEUP(0) -> gaveup[0] = 1
            :: else -> gaveup[NORD - 1] = 1
            fi;
            printf("@ expiry: a claimed hold dropped from the timer list\n")
        }
#endif
    :: /* a new daemon: a new thread, its own timer list */
        d_step {
            gen != cur ->
            gen = cur;
            gaveup[0] = 0;
            gaveup[NORD - 1] = 0
        }
    od;
dead:
    skip
}

/* ---------------------------------------------------------------------- */

/* build segment ng from the queue (records 1..qlen) */
inline build(ng, i, o, a)
{
    a = STOCK;
    o = 0;
    do
    :: o < NORD ->
        seg[ng].w[o] = EMPTY;
        seg[ng].dl[o] = 0;
        seg[ng].dlsn[o] = 0;
        seg[ng].rec[o] = 0;
        seg[ng].xid[o] = 0;
        o++
    :: else -> break
    od;
    i = 1;
    do
    :: i <= qlen ->
        o = rord[i];
        if
        :: rtype[i] == R_RESERVE ->
            a--;
            seg[ng].w[o] = RESERVED;
            seg[ng].dl[o] = rdl[i];
            seg[ng].dlsn[o] = i;
            seg[ng].xid[o] = rxid[i]
        :: rtype[i] == R_DEDUCT ->
            a--;
            seg[ng].w[o] = DEDUCTED;
            seg[ng].dlsn[o] = i;
            seg[ng].xid[o] = rxid[i]
        :: rtype[i] == R_CONFIRM ->
            seg[ng].w[o] = DEDUCTED;
            seg[ng].dlsn[o] = i;
            seg[ng].xid[o] = rxid[i]
        :: rtype[i] == R_CANCEL ->
            a++;
            seg[ng].w[o] = CANCELLED
        :: rtype[i] == R_EXPIRE ->
            a++;
            seg[ng].w[o] = EXPIRED
        fi;
        seg[ng].rec[o] = i;
        i++
    :: else -> break
    od;
    o = 0;
    do
    :: o < NORD ->
#if IMPL
        /* hs_order_install: deducted_lsn = recorded for every state but
         * REFUNDED and FAILED (none here) */
        if
        :: seg[ng].w[o] != EMPTY -> seg[ng].dlsn[o] = seg[ng].rec[o]
        :: else
        fi;
#endif
#ifdef API_INSTALL_DLSN
        /* hs_order_install: deducted_lsn = recorded only for DEDUCTED */
        if
        :: seg[ng].w[o] != DEDUCTED -> seg[ng].dlsn[o] = 0
        :: else
        fi;
#endif
#ifdef BROKEN_REBUILD_SILENT_EXPIRY
        if
        :: seg[ng].w[o] == RESERVED && seg[ng].dl[o] <= now ->
            seg[ng].w[o] = EXPIRED;
            a++
        :: else
        fi;
#endif
        /* P5: the rebuilt entry is what its records say, none lost */
        printf("@ rebuilt order %d: state %d, deadline %d, deducted_lsn %d, recorded %d\n",
               o, seg[ng].w[o], seg[ng].dl[o], seg[ng].dlsn[o], seg[ng].rec[o]);
        p5_index_agrees_with_records = BACKED(o, seg[ng].w[o]);
        P5_ASSERT;
        o++
    :: else -> break
    od;
    assert(a + held == STOCK); /* no record lost, none invented */
    seg[ng].avail = a;
    seg[ng].next = qlen + 1;
    seg[ng].spilled = qlen;
    seg[ng].up = 1;
    cur = ng;
    alive[DPID(ng)] = 1;
    printf("@ segment %d built from the queue (LSN 1..%d): available %d\n", ng, qlen, a);
    INV(ng)
}

proctype daemon()
{
    byte L, o, i, a, ng;

end_daemon:
    do
    :: /* the spiller folds the next record */
        d_step {
            seg[cur].up && seg[cur].spilled + 1 < seg[cur].next ->
            L = seg[cur].spilled + 1;
            o = rord[L];
            seg[cur].rec[o] = L;
            seg[cur].spilled = L;
            qlen = L;
            printf("@ spiller folds LSN %d (type %d, order %d)\n", L, rtype[L], o);
            L = 0;
            o = 0
        }
    :: /* the clock */
        d_step { now < TMAX -> now++; printf("@ clock %d\n", now) }
    :: /* crash: the next daemon fences, salvages (every published record
        * reaches the queue) and builds the next segment from the queue.
        * Only while something can still happen (a buyer runs, or the
        * clock goes on), so that the end state is reached without it. */
        d_step {
            crashes < CRASHES && (ndone < NB || now < TMAX) ->
            crashes++;
            printf("@ daemon crash: segment %d fenced\n", cur);
            seg[cur].up = 0;
            alive[DPID(cur)] = 0;
            qlen = seg[cur].next - 1;
            ng = cur + 1;
            build(ng, i, o, a);
            i = 0;
            o = 0;
            a = 0;
            ng = 0
        }
    od
}

/* ---------------------------------------------------------------------- */

#if COMP
/* the drain's compensation of holds whose transaction did not commit */
#define COMPENSABLE(o) (nres[o] == 1 && resl[o] <= qlen && xab[rxid[resl[o]]] && !compdone[o])

proctype drain()
{
    byte me = DRAIN_PID, o, g, w, n, nw, L, x, res;
    bool owe = 0, inres = 0;
    bool compdone[NORD];

end_drain:
    do
    :: atomic {
           COMPENSABLE(0) || (NORD > 1 && COMPENSABLE(NORD - 1)) ->
           if
           :: COMPENSABLE(0) -> o = 0
           :: NORD > 1 && COMPENSABLE(NORD - 1) -> o = NORD - 1
           fi;
           x = rxid[resl[o]]
       };
c_comp:
        /* hs_compensate(o, x) */
        atomic {
            SERVED(cur) ->
            g = cur;
            w = seg[g].w[o];
            if
            :: ST(w) == RESERVED && seg[g].xid[o] == x ->
                seg[g].w[o] = W(CANCELLING, me);
                printf("@ drain: hs_compensate order %d (xid %d): CANCELLING\n", o, x);
                res = GO
#ifdef BROKEN_COMP_CONFIRMED
            :: ST(w) == DEDUCTED && seg[g].xid[o] == x ->
                seg[g].w[o] = W(CANCELLING, me);
                printf("@ drain: hs_compensate order %d (xid %d): DEDUCTED -> CANCELLING\n", o, x);
                res = GO
#endif
            :: OWNED(ST(w)) -> res = WAIT
            :: else -> res = DUPL /* settled, or another xid's: nothing to do */
            fi
        };
        if
        :: res == WAIT -> wait_owner(g, o, w, n, nw); goto c_comp
        :: res == GO ->
            append(g, R_CANCEL, o, 0, 0, 0, L, res);
            if
            :: res == GO ->
                raise(g, o);
#if IMPL
                d_step { seg[g].dlsn[o] = L; settle(g, o, CANCELLED) }
#else
                d_step { settle(g, o, CANCELLED) }
#endif
            :: res == FULL -> d_step { settle(g, o, RESERVED) }; goto c_comp
            :: res == DOWN -> goto c_comp /* the next daemon's segment */
            fi
        :: else
        fi;
        d_step { compdone[o] = 1; o = 0; g = 0; w = 0; L = 0; x = 0; res = 0 }
    od;
dead:
    skip
}
#endif

/* ---------------------------------------------------------------------- */

/* the end: nothing else can move */
proctype finish()
{
    byte o;

    timeout;
    d_step {
        assert(ndone == NB);
        assert(seg[cur].avail + held + leak[cur] == STOCK); /* P1 */
        o = 0;
        do
        :: o < NORD ->
            /* P4: a hold past its deadline is settled */
            p4_hold_settled_after_deadline = (nres[o] == 0 || SETTLED(o) || rdl[resl[o]] > now);
            assert(p4_hold_settled_after_deadline);
            p4_not_reserved_after_deadline = (ST(seg[cur].w[o]) != RESERVED || seg[cur].dl[o] > now);
            assert(p4_not_reserved_after_deadline);
            /* P5 */
            p5_index_agrees_with_records = (OWNED(ST(seg[cur].w[o])) || BACKED(o, ST(seg[cur].w[o])));
            P5_ASSERT;
            o++
        :: else -> break
        od;
        printf("@ end: clock %d, available %d, held %d, leak %d\n", now, seg[cur].avail, held, leak[cur])
    }
}

#define SCRIPT(b, j, op, o) sop[((b) - 1) * NOPS + (j)] = op; sord[((b) - 1) * NOPS + (j)] = o

init
{
    byte b;

    d_step {
#if SCENARIO == 1
        /* one hold: its confirm races a cancel and the expiry */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_CONFIRM, 0);
        SCRIPT(2, 0, OP_CANCEL, 0);
#elif SCENARIO == 2
        /* the same, both settlers two-phase (claim, then commit or release) */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_CONFIRM2, 0);
        SCRIPT(2, 0, OP_CANCEL2, 0);
#elif SCENARIO == 3
        /* two holds for one unit: the second gets it once the first is
         * cancelled or expired */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_CONFIRM, 0);
        SCRIPT(2, 0, OP_RESERVE, 1);
        SCRIPT(2, 1, OP_CONFIRM, 1);
#elif SCENARIO == 4
        /* a retake after the hold ended, racing a confirm */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_RETAKE, 0);
        SCRIPT(2, 0, OP_CONFIRM, 0);
#elif SCENARIO == 5
        /* three settlers: a two-phase confirm, a confirm and a cancel */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_CONFIRM2, 0);
        SCRIPT(2, 0, OP_CONFIRM, 0);
        SCRIPT(3, 0, OP_CANCEL, 0);
#elif SCENARIO == 6
        /* scenario 3 with a cancel of the first hold */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_CANCEL, 0);
        SCRIPT(2, 0, OP_RESERVE, 1);
        SCRIPT(2, 1, OP_CONFIRM2, 1);
#elif SCENARIO == 7
        /* a reserve of order 0 sold out (FAILED, its deadline field
         * written), then a plain deduct of the same order id once the
         * other hold has ended */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_DEDUCT, 0);
        SCRIPT(2, 0, OP_RESERVE, 1);
#elif SCENARIO == 8
        /* a retake after a cancel (or the expiry) of the hold */
        SCRIPT(1, 0, OP_RESERVE, 0);
        SCRIPT(1, 1, OP_RETAKE, 0);
        SCRIPT(2, 0, OP_CANCEL, 0);
#else
#error "unknown SCENARIO"
#endif
        b = 1;
        do
        :: b <= NB -> alive[b] = 1; b++
        :: else -> break
        od;
        alive[DRAIN_PID] = 1;
        alive[DPID(0)] = 1;
        seg[0].up = 1;
        seg[0].avail = STOCK;
        seg[0].next = 1
    };
    atomic {
        b = 1;
        do
        :: b <= NB -> run buyer(b); b++
        :: else -> break
        od;
        run daemon();
        run expiry();
#if COMP
        run drain();
#endif
        run finish()
    }
}
