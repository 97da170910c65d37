/*
 * compensation.pml
 *      Promela model of xid-aware compensation: a deduct made inside a
 *      PostgreSQL transaction carries its xid; the drain settles it by the
 *      transaction's fate and gives the units of one that did not commit
 *      back, exactly once, racing the transaction's own undo, a user's
 *      refund, online eviction and a daemon crash.  Checked with SPIN
 *      (tests/model/run.sh).
 *
 * A coarser grain than hotstock.pml and eviction.pml, which check the
 * steps below it: an index operation on one order (probe + CAS) is one
 * step, a record append is one step (published and durable: no power
 * loss here), each PostgreSQL transaction is one step.  Per order o:
 *
 *   index     state EMPTY (absent: never there, or evicted), DEDUCTED,
 *             REFUNDING(owner), REFUNDED; the xid its DEDUCT carried;
 *             deducted_lsn; the LSN of its last record.  The counter
 *             `available`.  evicted_lsn.
 *   queue     DEDUCT(o, xid) and REFUND(o) records.
 *   ledger    row of o: LSN of its DEDUCT, xid (set while unsettled),
 *             refunded_at (lref), refund_lsn (lrefl).
 *   PostgreSQL the transaction of o's deduct, xid o + 1: in the proc array
 *             (running or prepared) and its commit-log entry (committed,
 *             or nothing: aborted once out of the proc array).  A commit
 *             sets the commit log, then leaves the proc array (two steps,
 *             as PostgreSQL does); an abort leaves it (one step).
 *
 * Processes:
 *   tx(o)    BEGIN; deduct o (with its xid); then COMMIT, or ROLLBACK (the
 *            abort callback undoes: hs_refund, in the index only; NOT_FOUND
 *            or a daemon crash leaves it to the drain), or killed (no
 *            undo), or PREPARE TRANSACTION and later COMMIT PREPARED or
 *            ROLLBACK PREPARED (no undo: "the drain owns the fate").
 *   user     (USER=1) hotstock.refund(order 0) at any time: E =
 *            evicted_lsn, then in the index (claim DEDUCTED -> REFUNDING,
 *            REFUND, counter, REFUNDED), or for an order the index does not
 *            know database-first: one transaction marks the ledger row (row
 *            lock) if its LSN <= E, then hs_refund_evicted(checked = E)
 *            (insert REFUNDING, REFUND, counter, REFUNDED).
 *   daemon   the evictor (evicted_lsn = applied_lsn; an order whose records
 *            are all <= it goes into the filter, the filter file with its
 *            `evicted` = evicted_lsn is made durable, the order leaves the
 *            index) and CRASHES crashes: the next daemon (recovery.c) takes
 *            the counter from the queue, leaves out of the index the orders
 *            the filter file holds with every record <= its `evicted`,
 *            indexes every other order from its records (state, xid), and
 *            sets evicted_lsn = the file's `evicted`; in-flight claims are
 *            lost.
 *   drain    applies records one per transaction (a DEDUCT's row keeps its
 *            xid unless the transaction committed by then), and settles
 *            unsettled rows (settle.c): fate = in the proc array? running
 *            or prepared: later; else committed in the commit log? settle;
 *            else aborted: hs_compensate(o, xid) -- CAS DEDUCTED ->
 *            REFUNDING only if the slot's xid matches, REFUND flagged
 *            compensation, counter, REFUNDED; REFUNDED: settle; REFUNDING
 *            of a live owner: later; NOT_FOUND: database-first in the
 *            settle transaction (row lock; mark refunded if it was not;
 *            clear xid), after the commit hs_refund_evicted() if it
 *            marked it.  Its sweep retries rows refunded in the ledger
 *            whose REFUND it never applied (hotstock_apply_ledger_refunds;
 *            its grace period is not modelled: any time).  The drain is one
 *            process: batches, settling and the sweep never overlap.
 *
 * hs_refund_evicted(checked): after its claim of an absent id, if the
 * filter holds the id and evicted_lsn > checked (the evicted_lsn its
 * caller read before it read the ledger), it claims nothing and answers
 * HS_EVICTED_CHANGED; the caller reads evicted_lsn again, then the row:
 * its REFUND drained means the units are back already.  This is a change
 * this model proposes (README, findings); without it two callers for one
 * ledger mark refund twice once online eviction forgets the first one.
 *
 * Properties (assertions):
 *   C1 at most one REFUND record per order (the units of an aborted
 *      transaction never come back twice, whoever races);
 *   C2 compensation (its REFUND record, its database-first mark) acts only
 *      on a transaction that is out of the proc array and not committed:
 *      a committed deduction is never compensated, a prepared one never
 *      before ROLLBACK PREPARED;
 *   C3 the counter never runs ahead of the units held;
 *   C4 at the end (everything done, drained and settled): available +
 *      units held == STOCK; every order of a transaction that did not
 *      commit has its REFUND (exactly once, by C1); an order of a committed
 *      transaction nobody refunded has none; the ledger agrees.
 *
 * Switches: NORD (1-2), USER (0-1), CRASHES (0-1), PREPARE (0-1: allow
 * PREPARE TRANSACTION), and the deliberately broken variants (run.sh
 * expects each to FAIL):
 *   BROKEN_FATE_ORDER   fate reads the commit log before the proc array (C2)
 *   BROKEN_PREPARED_ABORTED the fate takes "prepared" as aborted     (C2)
 *   BROKEN_COMP_BLIND   database-first compensation marks the row and
 *                       returns the units even when it was refunded (C1)
 *   BROKEN_SETTLE_ON_DOWN the row is settled although the compensation's
 *                       REFUND did not make it (daemon crash)      (C4)
 *   BROKEN_REFUND_EVICTED_UNCHECKED hs_refund_evicted() inserts an absent
 *                       id whatever was evicted since its caller read the
 *                       ledger (shmd/lib/refund.c today)          (C1)
 */

#ifndef NORD
#define NORD 2
#endif
#ifndef USER
#define USER 1
#endif
#ifndef CRASHES
#define CRASHES 0
#endif
#ifndef PREPARE
#define PREPARE 1
#endif
#define STOCK 2
#define MAXLSN 8

#define EMPTY 0
#define DEDUCTED 3
#define REFUNDING 5
#define REFUNDED 6

#define R_DEDUCT 1
#define R_REFUND 2

/* results */
#define GO 1
#define ALREADY 2
#define NOTFOUND 3
#define BUSY 4
#define DOWN 5
#define MISMATCH 6
#define LATER 7
#define SETTLE 8
#define ABORTED 9
#define DUPL 10
#define AGAIN 11
#define CHANGED 12

#define DRAIN_PID (NORD + 2)
#define USER_PID (NORD + 1)

/* ---- the daemon's segment ---- */
byte ist[NORD];  /* index state */
byte iown[NORD]; /* owner pid of REFUNDING */
byte ixid[NORD]; /* xid of its DEDUCT (0: none, e.g. hs_refund_evicted's entry) */
byte idlsn[NORD]; /* deducted_lsn */
byte ilast[NORD]; /* LSN of its last record */
short avail = STOCK;
byte evicted = 0;
byte gen = 0; /* daemon generation: a crash voids claims made before it */

/* ---- the queue (every record durable) ---- */
byte qtype[MAXLSN + 1];
byte qord[MAXLSN + 1];
byte qxid[MAXLSN + 1];
byte qlen = 0;

/* ---- PostgreSQL ---- */
bool xrun[NORD + 1];   /* in the proc array (running or prepared), by xid */
bool xcommit[NORD + 1]; /* committed in the commit log */
bool xprep[NORD + 1];  /* ghost: prepared */
bool lhas[NORD];
byte llsn[NORD];
byte lxid[NORD];  /* the row's xid: set while unsettled */
bool lref[NORD];  /* refunded_at */
bool lrefl[NORD]; /* refund_lsn: its REFUND was drained */
bool filt[NORD];  /* the evicted filter (its file: made durable before an eviction) */
byte edur = 0;    /* `evicted` of the filter file: the evicted_lsn a restart keeps */
byte applied = 0;

/* ---- ghosts ---- */
byte refrecs[NORD];
byte nsold = 0;
bool deducted[NORD];  /* its DEDUCT record exists */
bool urefunded[NORD]; /* a user refund answered true */
byte crashes = 0;
byte ndone = 0;

/* the counter never runs ahead (C3) */
#define INV assert(avail + nsold <= STOCK)

/* an order's transaction can no longer commit: out of the proc array and
 * not committed (C2) */
#define DOOMED(x) (!xrun[x] && !xcommit[x])

/* append a REFUND of o (by pid me, in generation g): one step with the
 * claim check; res DOWN if a crash voided the claim.  doomed: the REFUND
 * of a compensation or of the transaction's own undo, which must come only
 * once the transaction can no longer commit (C2) */
inline append_refund(o, doomed, res)
{
    d_step {
        if
        :: gen == g && ist[o] == REFUNDING && iown[o] == me ->
            qlen++;
            assert(qlen <= MAXLSN);
            qtype[qlen] = R_REFUND;
            qord[qlen] = o;
            qxid[qlen] = 0;
            ilast[o] = qlen;
            refrecs[o]++;
            nsold--;
            printf("@ P%d: REFUND of order %d at LSN %d\n", me, o, qlen);
            assert(refrecs[o] <= 1);            /* C1: units back at most once */
            assert(!doomed || DOOMED(o + 1));   /* C2 */
            res = GO
        :: else -> res = DOWN
        fi
    }
}

/* raise the counter and store REFUNDED (the owner; voided by a crash:
 * the next daemon's counter is the fold of the queue) */
inline raise_refunded(o)
{
    d_step {
        if
        :: gen == g && ist[o] == REFUNDING && iown[o] == me ->
            avail++;
            INV;
            ist[o] = REFUNDED;
            iown[o] = 0
        :: else
        fi
    }
}

/*
 * hs_refund_evicted(o) by pid me, for a caller that read evicted_lsn =
 * checked before it read the ledger row: insert "absent" -> REFUNDING, or
 * the answer.  res GO (claimed), ALREADY, DUPL (DEDUCTED: "use
 * hs_refund()"), BUSY (REFUNDING of another: wait), CHANGED: the id may
 * have been evicted after the caller's ledger read (filter, evicted_lsn >
 * checked): nothing claimed, the caller reads the ledger again (its REFUND
 * drained: done).  The claim and the filter check are one step here
 * (eviction.pml has them apart, for the deduct).
 * BROKEN_REFUND_EVICTED_UNCHECKED: no check (shmd/lib/refund.c today).
 */
inline refund_evicted_claim(o, checked, res)
{
    atomic {
        g = gen;
        if
#ifndef BROKEN_REFUND_EVICTED_UNCHECKED
        :: ist[o] == EMPTY && filt[o] && evicted > checked -> res = CHANGED
        :: ist[o] == EMPTY && !(filt[o] && evicted > checked) ->
#else
        :: ist[o] == EMPTY ->
#endif
            ist[o] = REFUNDING;
            iown[o] = me;
            ixid[o] = 0;
            idlsn[o] = 0;
            res = GO;
            printf("@ P%d: hs_refund_evicted order %d: REFUNDING (inserted)\n", me, o)
        :: ist[o] == REFUNDED -> res = ALREADY
        :: ist[o] == DEDUCTED -> res = DUPL
        :: ist[o] == REFUNDING -> res = BUSY
        fi
    }
}

/* after HS_EVICTED_CHANGED: evicted_lsn, then the ledger row; its REFUND
 * drained means someone else returned the units (res ALREADY) */
inline recheck_ledger(o, checked, res)
{
    d_step { checked = evicted };
    d_step {
        if
        :: lrefl[o] -> res = ALREADY
        :: else -> res = AGAIN
        fi
    }
}

/* ---------------------------------------------------------------------- */

proctype tx(byte o)
{
    byte me = o + 1, x = o + 1, g, res, L;

    /* BEGIN; hotstock.deduct(sku, 1, o): claim, counter, DEDUCT(xid), DEDUCTED */
    d_step {
        assert(ist[o] == EMPTY && avail >= 1);
        g = gen;
        xrun[x] = 1;
        avail--;
        qlen++;
        L = qlen;
        qtype[L] = R_DEDUCT;
        qord[L] = o;
        qxid[L] = x;
        ist[o] = DEDUCTED;
        ixid[o] = x;
        idlsn[o] = L;
        ilast[o] = L;
        deducted[o] = 1;
        nsold++;
        INV;
        printf("@ P%d: transaction %d deducts order %d (LSN %d)\n", me, x, o, L);
        L = 0
    };
    if
    :: /* COMMIT: the commit log first, then out of the proc array */
        d_step { xcommit[x] = 1; printf("@ P%d: transaction %d commits (commit log)\n", me, x) };
        d_step { xrun[x] = 0 }
    :: /* killed before its abort callback: aborted, nothing undone */
        d_step { xrun[x] = 0; printf("@ P%d: backend of transaction %d killed\n", me, x) }
    :: /* ROLLBACK: aborted, then the abort callback's undo (hs_refund) */
        d_step { xrun[x] = 0; printf("@ P%d: transaction %d rolls back\n", me, x) };
undo:
        atomic {
            g = gen;
            if
            :: ist[o] == DEDUCTED ->
                ist[o] = REFUNDING;
                iown[o] = me;
                res = GO;
                printf("@ P%d: undo of order %d: REFUNDING\n", me, o)
            :: ist[o] == REFUNDING -> res = BUSY /* another refund: wait for it */
            :: ist[o] == REFUNDED -> res = ALREADY
            :: ist[o] == EMPTY -> res = NOTFOUND /* evicted: a WARNING, the drain does it */
            fi
        };
        if
        :: res == BUSY -> (ist[o] != REFUNDING || gen != g); goto undo
        :: res == GO ->
            append_refund(o, 1, res);
            if
            :: res == GO -> raise_refunded(o)
            :: else /* the daemon crashed: a WARNING, the drain does it */
            fi
        :: else
        fi
#if PREPARE
    :: /* PREPARE TRANSACTION: stays in the proc array; the drain owns the
        * fate from here on */
        d_step { xprep[x] = 1; printf("@ P%d: transaction %d prepared\n", me, x) };
        if
        :: d_step { xcommit[x] = 1; printf("@ P%d: COMMIT PREPARED %d\n", me, x) };
           d_step { xrun[x] = 0; xprep[x] = 0 }
        :: d_step { xrun[x] = 0; xprep[x] = 0; printf("@ P%d: ROLLBACK PREPARED %d\n", me, x) }
        fi
#endif
    fi;
    d_step { g = 0; res = 0; ndone++ }
}

/* ---------------------------------------------------------------------- */

#if USER
/* hotstock.refund(order 0) from another session */
proctype user()
{
    byte me = USER_PID, o = 0, g, res, E;

u_begin:
    /* evicted_lsn before the look-up (see eviction.pml), then hs_refund */
    atomic {
        E = evicted;
        g = gen;
        if
        :: ist[o] == DEDUCTED ->
            ist[o] = REFUNDING;
            iown[o] = me;
            res = GO;
            printf("@ P%d: user refund of order %d: REFUNDING\n", me, o)
        :: ist[o] == REFUNDING -> res = BUSY
        :: ist[o] == REFUNDED -> res = ALREADY
        :: ist[o] == EMPTY -> res = NOTFOUND
        fi
    };
    if
    :: res == BUSY -> (ist[o] != REFUNDING || gen != g); goto u_begin
    :: res == GO ->
        append_refund(o, 0, res);
        if
        :: res == GO -> raise_refunded(o); urefunded[o] = 1
        :: else
        fi;
        goto u_end
    :: res == NOTFOUND -> skip
    :: else -> goto u_end
    fi;
    /* database-first: one transaction marks the row (row lock) */
    atomic {
        if
        :: lhas[o] && !lref[o] && llsn[o] <= E ->
            lref[o] = 1;
            urefunded[o] = 1;
            res = GO;
            printf("@ P%d: user refund of order %d: ledger row marked (database-first)\n", me, o)
        :: lhas[o] && !lref[o] && llsn[o] > E -> res = AGAIN
        :: else -> res = NOTFOUND
        fi
    };
    if
    :: res == AGAIN -> goto u_begin
    :: res != GO -> goto u_end
    :: else
    fi;
    /* after the commit: hs_refund_evicted(checked = E) */
u_evicted:
    refund_evicted_claim(o, E, res);
    if
    :: res == BUSY -> (ist[o] != REFUNDING || gen != g); goto u_evicted
    :: res == CHANGED ->
        recheck_ledger(o, E, res);
        if
        :: res == AGAIN -> goto u_evicted
        :: else
        fi
    :: res == GO ->
        append_refund(o, 0, res);
        if
        :: res == GO -> raise_refunded(o)
        :: else /* a WARNING: the drain's sweep returns the units */
        fi
    :: else
    fi;
u_end:
    atomic { g = 0; res = 0; E = 0; ndone++ }
}
#endif

/* ---------------------------------------------------------------------- */

/* the evictor, and the daemon's crash and the next daemon's build */

/* evict order x: every record of it at or below evicted_lsn */
#define EVICT(x)                                                               \
    d_step {                                                                   \
        ((ist[x] == DEDUCTED && idlsn[x] <= evicted) ||                        \
         (ist[x] == REFUNDED && ilast[x] <= evicted)) ->                       \
        filt[x] = 1;                                                           \
        edur = evicted;                                                        \
        ist[x] = EMPTY;                                                        \
        ixid[x] = 0;                                                           \
        idlsn[x] = 0;                                                          \
        ilast[x] = 0;                                                          \
        printf("@ evictor: order %d evicted\n", x)                             \
    }

proctype daemon()
{
    byte o, i;

end_daemon:
    do
    :: d_step { evicted < applied -> evicted = applied; printf("@ evictor: evicted_lsn %d\n", evicted) }
    :: EVICT(0)
#if NORD > 1
    :: EVICT(1)
#endif
    :: d_step {
           crashes < CRASHES ->
           crashes++;
           gen++;
           /* the next daemon (recovery.c): counter from the queue; an order
            * the filter file holds with its last record <= its `evicted`
            * stays evicted, every other order is indexed from its records
            * (state and xid); evicted_lsn = the file's `evicted` */
           avail = STOCK;
           i = 1;
           do
           :: i <= qlen ->
               if
               :: qtype[i] == R_DEDUCT -> avail--
               :: qtype[i] == R_REFUND -> avail++
               fi;
               i++
           :: else -> break
           od;
           assert(avail + nsold == STOCK);
           o = 0;
           do
           :: o < NORD ->
               ist[o] = EMPTY;
               iown[o] = 0;
               ixid[o] = 0;
               idlsn[o] = 0;
               ilast[o] = 0;
               i = 1;
               do
               :: i <= qlen ->
                   if
                   :: qord[i] == o && qtype[i] == R_DEDUCT ->
                       ist[o] = DEDUCTED; ixid[o] = qxid[i]; idlsn[o] = i; ilast[o] = i
                   :: qord[i] == o && qtype[i] == R_REFUND ->
                       ist[o] = REFUNDED; ilast[o] = i
                   :: else
                   fi;
                   i++
               :: else -> break
               od;
               if
               :: ist[o] != EMPTY && filt[o] && ilast[o] <= edur ->
                   ist[o] = EMPTY; ixid[o] = 0; idlsn[o] = 0; ilast[o] = 0
               :: else
               fi;
               o++
           :: else -> break
           od;
           evicted = edur;
           printf("@ daemon crash; the next daemon rebuilds: available %d, evicted_lsn %d\n", avail, evicted);
           o = 0;
           i = 0
       }
    od
}

/* ---------------------------------------------------------------------- */

proctype drain()
{
    byte me = DRAIN_PID, L, o, x, g, res, E;
    bool marked, finished = 0;

end_drain:
    do
    :: /* one batch transaction: the next record into the ledger */
        d_step {
            applied < qlen ->
            L = applied + 1;
            o = qord[L];
            if
            :: qtype[L] == R_DEDUCT ->
                assert(!lhas[o]);
                lhas[o] = 1;
                llsn[o] = L;
                /* the xid stays unless its transaction committed by now */
                if
                :: xrun[qxid[L]] || !xcommit[qxid[L]] -> lxid[o] = qxid[L]
                :: else -> lxid[o] = 0
                fi
            :: qtype[L] == R_REFUND ->
                assert(lhas[o]);
                lref[o] = 1;
                lrefl[o] = 1
            fi;
            applied = L;
            printf("@ drain applies LSN %d (type %d, order %d)\n", L, qtype[L], o);
            L = 0;
            o = 0
        }
    :: /* settle a row whose xid is set (evicted_lsn read first) */
        atomic {
            if
            :: lxid[0] != 0 -> o = 0
            :: NORD > 1 && lxid[NORD - 1] != 0 -> o = NORD - 1
            fi;
            x = lxid[o];
            E = evicted
        };
        /* the fate: in the proc array (running or prepared)?  then the
         * commit log.  BROKEN_FATE_ORDER: the other way round */
#ifdef BROKEN_FATE_ORDER
        d_step { if :: xcommit[x] -> res = SETTLE :: else -> res = ABORTED fi };
        d_step { if :: xrun[x] -> res = LATER :: else fi };
#else
        d_step {
            if
#ifdef BROKEN_PREPARED_ABORTED
            :: xrun[x] && !xprep[x] -> res = LATER
            :: !xrun[x] || xprep[x] -> res = ABORTED
#else
            :: xrun[x] -> res = LATER
            :: else -> res = ABORTED
#endif
            fi
        };
        if
        :: res == ABORTED -> d_step { if :: xcommit[x] -> res = SETTLE :: else fi }
        :: else
        fi;
#endif
        if
        :: res == ABORTED ->
            /* hs_compensate(o, x) */
            atomic {
                g = gen;
                if
                :: ist[o] == DEDUCTED && ixid[o] == x ->
                    ist[o] = REFUNDING;
                    iown[o] = me;
                    res = GO;
                    printf("@ drain: hs_compensate order %d (xid %d): REFUNDING\n", o, x)
                :: ist[o] == DEDUCTED && ixid[o] != x -> res = MISMATCH /* not reached here */
                :: ist[o] == REFUNDED -> res = ALREADY
                :: ist[o] == REFUNDING -> res = BUSY
                :: ist[o] == EMPTY -> res = NOTFOUND
                fi
            };
            if
            :: res == GO ->
                append_refund(o, 1, res);
                if
                :: res == GO -> raise_refunded(o); res = SETTLE
#ifdef BROKEN_SETTLE_ON_DOWN
                :: else -> res = SETTLE
#else
                :: else -> res = LATER /* crashed: the next pass */
#endif
                fi
            :: res == ALREADY || res == MISMATCH -> res = SETTLE
            :: res == BUSY -> res = LATER
            :: res == NOTFOUND ->
                /* evicted: database-first, in the settle transaction */
                atomic {
                    if
                    :: lxid[o] == x ->
#ifdef BROKEN_COMP_BLIND
                        marked = 1;
#else
                        marked = !lref[o];
#endif
                        assert(DOOMED(x)); /* C2 */
                        lref[o] = 1;
                        lxid[o] = 0;
                        printf("@ drain: order %d evicted: ledger row marked refunded (marked %d)\n", o, marked)
                    :: else -> marked = 0
                    fi
                };
                if
                :: marked ->
                    /* after the commit: hs_refund_evicted() */
d_evicted:          refund_evicted_claim(o, E, res);
                    if
                    :: res == BUSY -> (ist[o] != REFUNDING || gen != g); goto d_evicted
                    :: res == CHANGED ->
                        recheck_ledger(o, E, res);
                        if
                        :: res == AGAIN -> goto d_evicted
                        :: else
                        fi
                    :: res == GO ->
                        append_refund(o, 1, res);
                        if
                        :: res == GO -> raise_refunded(o)
                        :: else /* left to the sweep */
                        fi
                    :: else
                    fi
                :: else
                fi;
                res = LATER /* settled already */
            fi
        :: else
        fi;
        if
        :: res == SETTLE -> d_step { if :: lxid[o] == x -> lxid[o] = 0 :: else fi }
        :: else
        fi;
        d_step { o = 0; x = 0; g = 0; res = 0; marked = 0; E = 0 }
    :: /* the sweep: a row refunded in the ledger whose REFUND it never
        * applied (no grace period here: any time); evicted_lsn read with
        * the row, not after it */
        atomic {
            if
            :: lref[0] && !lrefl[0] -> o = 0
            :: NORD > 1 && lref[NORD - 1] && !lrefl[NORD - 1] -> o = NORD - 1
            fi;
            E = evicted
        };
s_evicted:
        refund_evicted_claim(o, E, res);
        if
        :: res == BUSY -> (ist[o] != REFUNDING || gen != g); goto s_evicted
        :: res == CHANGED ->
            recheck_ledger(o, E, res);
            if
            :: res == AGAIN -> goto s_evicted
            :: else
            fi
        :: res == GO ->
            append_refund(o, 0, res);
            if
            :: res == GO -> raise_refunded(o)
            :: else
            fi
        :: else
        fi;
        d_step { o = 0; g = 0; res = 0; E = 0 }
    :: /* the end: all done, drained, settled, swept */
        d_step {
            !finished && ndone == NORD + USER && applied == qlen && lxid[0] == 0 &&
            lxid[NORD - 1] == 0 && !(lref[0] && !lrefl[0]) && !(lref[NORD - 1] && !lrefl[NORD - 1]) ->
            finished = 1;
            assert(avail + nsold == STOCK); /* C4 */
            o = 0;
            do
            :: o < NORD ->
                x = o + 1;
                /* did not commit: its units are back (once, by C1) */
                assert(!deducted[o] || xcommit[x] || refrecs[o] == 1);
                /* committed and nobody refunded it: its units stay sold */
                assert(!xcommit[x] || urefunded[o] || refrecs[o] == 0);
                /* a refund answered true: its units are back */
                assert(!urefunded[o] || refrecs[o] == 1);
                /* the ledger agrees */
                assert(lrefl[o] == (refrecs[o] == 1) && (lref[o] || refrecs[o] == 0));
                o++
            :: else -> break
            od;
            o = 0;
            x = 0;
            printf("@ end: every order settled\n")
        }
    od
}

init
{
    atomic {
        byte o = 0;
        do
        :: o < NORD -> run tx(o); o++
        :: else -> break
        od;
#if USER
        run user();
#endif
        run daemon();
        run drain()
    }
}
