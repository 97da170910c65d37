/*-------------------------------------------------------------------------
 *
 * spiller.c
 *      The spiller thread (ring -> queue files, group commit, shadow
 *      counters) and the checkpointer thread.
 *
 * WHAT IT SHARES, WHO WRITES IT, WHICH ORDERING PROTECTS IT
 *
 * With the clients, through the segment (protocol in segment.h):
 *   ring slot seq     clients publish L (CAS, release); the spiller consumes
 *                     the slot for L only after an acquire load sees L.  A
 *                     slot reserved but not published for HS_STALL_ABANDON_MS
 *                     is taken by CAS(seq, old, L | HS_SEQ_ABANDONED) if it
 *                     is unclaimed or its claimer's pid is gone (a live
 *                     claimer is waited for): one of the writer's claim and
 *                     this CAS wins, so the record is written or undone.
 *   order.recorded    spiller, release, once a record with that order slot
 *                     is appended; before spilled_lsn passes it.
 *   spilled_lsn       spiller, release, after write(2) returned for every
 *                     record up to it: their slots may be reused (pairs with
 *                     the acquire load in the clients' reserving CAS loop).
 *   durable_lsn       spiller, release, after fdatasync; then durable_seq is
 *                     bumped (release) and the waiters of the LSNs now
 *                     durable are woken (FUTEX_WAKE_BITSET, segment.h).
 *                     Never ahead of the disk: see hsd_group_commit().
 *   spiller_sleeping  spiller, seq_cst, before it re-checks for work and
 *                     sleeps on spiller_seq; clients load it after they
 *                     publish (Dekker-style: one of the two sees the other).
 *
 * Inside the daemon:
 *   d->writer, d->shadow  the spiller's alone.  The checkpointer gets a
 *                     private copy of the shadow (hsd_ckpt_job), taken at a
 *                     point where the shadow's LSN is durable, so a
 *                     checkpoint never covers a record the disk may lose.
 *   requests          a wait-free concurrent queue from liburcu (wfcqueue):
 *                     the control thread and the main thread enqueue
 *                     checkpoint and stop requests; the spiller alone
 *                     dequeues, with the non-blocking dequeue, between two
 *                     batches.  Why this queue: the spiller is on every
 *                     synchronous client's latency path, so it must never
 *                     wait for a lock another thread holds.  cds_wfcq_enqueue
 *                     is wait-free and __cds_wfcq_dequeue_nonblocking never
 *                     sleeps (an enqueue caught half-way answers WOULDBLOCK
 *                     and is taken on the next pass).  d->req_mu orders the
 *                     producers with the stop sequence only; the spiller
 *                     never takes it.
 *   ckpt_job          spiller -> checkpointer under ckpt_mu, held only to
 *                     swap a pointer; the checkpointer writes and fsyncs
 *                     outside it, so a slow checkpoint never stalls group
 *                     commit.
 *
 * Failure policy.  A failed fdatasync ends the daemon (FATAL, abort()),
 * like PostgreSQL with data_sync_retry = off: after a failed fsync the
 * kernel may have dropped the dirty pages, so retrying could report as
 * durable what is not.  Clients see the heartbeat stop and answer
 * HS_DAEMON_DOWN ("unknown"); the next start recovers from the files and
 * the ring.  A failed write(2) (ENOSPC, EIO) is not fatal: nothing it
 * concerned is acknowledged as durable and every such record is still in
 * the ring, so the spiller publishes spill_errno (clients refuse new
 * records with HS_IO_ERROR), cuts the partial write, reopens the writer
 * and retries every HSD_WRITE_RETRY_MS (segment.h, header.spill_errno).
 * A published ring record that fails its CRC or names no valid SKU is
 * fatal too: the client that published it may be waiting for durability,
 * and only a restart can tell it "unknown" instead of a false yes.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/* Records consumed between two write(2) calls at most, so slots are freed
 * (spilled_lsn) steadily while a large backlog drains. */
#define HSD_SPILL_BATCH 4096
/* How long a group waits for its members before the spiller looks for a
 * dead writer. */
#define HSD_GROUP_PID_CHECK_MS 10
/* After a failed write(2), how often to try again. */
#define HSD_WRITE_RETRY_MS 1000

typedef struct hsd_batch_entry {
    hs_record rec;
    uint32_t order_index; /* UINT32_MAX: none */
} hsd_batch_entry;

typedef struct hsd_spiller {
    hsd_daemon *d;
    hs_header *h;
    hs_ring_slot *ring;
    uint32_t mask;
    hs_lsn next;   /* next LSN to consume */
    hs_lsn synced; /* last LSN fdatasync'ed (== durable_lsn) */
    uint64_t last_sync_ms;
    hs_lsn stall_lsn; /* a reserved, unpublished slot (or a group's start) being watched */
    bool group_wait;  /* the group at stall_lsn waits for members: poll, do not spin */
    uint64_t stall_since_ms;
    uint64_t stall_logged_ms; /* last warning about a live claimer that stalls */
    hsd_request *checkpoints; /* waiting for the next durable point */
    hsd_request *stop;
    bool requests_blocked;  /* an enqueue was caught half-way */
    hsd_batch_entry *batch; /* HSD_SPILL_BATCH entries */
    uint32_t nbatch;
    hs_lsn disk_last; /* after a failed write: last LSN found whole on disk */
    hs_lsn ckpt_lsn;  /* LSN and applied LSN of the last snapshot handed over */
    hs_lsn ckpt_applied;
    uint64_t retry_at_ms; /* writer NULL: when to try again */
    uint64_t spin_until_ns; /* idle: poll for work until then, then sleep */
} hsd_spiller;

/* Take every request that is fully enqueued; never blocks. */
static void
hsd_spiller_take_requests(hsd_spiller *sp)
{
    hsd_daemon *d = sp->d;

    sp->requests_blocked = false;
    for (;;) {
        struct cds_wfcq_node *node = __cds_wfcq_dequeue_nonblocking(&d->req_head, &d->req_tail);
        hsd_request *req;

        if (node == NULL)
            return;
        if (node == CDS_WFCQ_WOULDBLOCK) {
            sp->requests_blocked = true;
            return;
        }
        req = (hsd_request *)node;
        if (req->kind == HSD_REQ_STOP && sp->stop == NULL) {
            sp->stop = req;
            hsd_log(HSD_LOG, "spiller: stopping after LSN %" PRIu64, req->stop_lsn);
        } else if (req->kind == HSD_REQ_CHECKPOINT && req->if_changed &&
                   sp->next - 1 == sp->ckpt_lsn &&
                   atomic_load_explicit(&d->applied_lsn, memory_order_acquire) ==
                       sp->ckpt_applied) {
            /* an interval checkpoint with nothing new to save */
            hsd_request_complete(req, 0, sp->ckpt_lsn, NULL);
        } else if (req->kind == HSD_REQ_CHECKPOINT) {
            req->next = sp->checkpoints;
            sp->checkpoints = req;
        } else {
            hsd_request_complete(req, -1, 0, "a stop is already in progress");
        }
    }
}

/*-------------------------------------------------------------------------
 * Consuming the ring
 *-------------------------------------------------------------------------
 */

/* Take the record for lsn as the next one of the batch. */
static void
hsd_batch_add(hsd_spiller *sp, const hs_record *rec, uint32_t order_index)
{
    hsd_batch_entry *e = &sp->batch[sp->nbatch++];

    e->rec = *rec;
    e->order_index = order_index;
}

static void
hsd_batch_add_noop(hsd_spiller *sp, hs_lsn lsn)
{
    hs_record rec;

    memset(&rec, 0, sizeof(rec));
    rec.lsn = lsn;
    rec.type = HS_REC_NOOP;
    rec.timestamp_us = hs_now_unix_us();
    hsd_batch_add(sp, &rec, UINT32_MAX);
}

/*
 * The slot of lsn is reserved but not published (seq, maybe claimed and
 * being filled).  Watch it; once it stalled for HS_STALL_ABANDON_MS
 * without a live claimer, abandon it (CAS).  0: wait for it; 1: published
 * or abandoned by someone meanwhile (look again); 2: abandoned now.
 */
static int
hsd_slot_stall(hsd_spiller *sp, hs_lsn lsn, hs_ring_slot *slot, uint64_t seq, uint64_t now_ms)
{
    if (sp->stall_lsn != lsn) {
        sp->stall_lsn = lsn;
        sp->stall_since_ms = now_ms;
        sp->group_wait = false;
        return 0;
    }
    /* An unclaimed slot gets HS_STALL_ABANDON_MS (its writer may be slow
     * to claim it); a claimed one is abandoned as soon as its claimer is
     * gone (it can never publish), looked at after HSD_GROUP_PID_CHECK_MS:
     * the members of a group whose writer died go in milliseconds each. */
    if (now_ms - sp->stall_since_ms <
        (hs_seq_is_claim(seq) ? HSD_GROUP_PID_CHECK_MS : HS_STALL_ABANDON_MS))
        return 0;
    /* A live claimer owns the slot: it will publish (it may be
     * descheduled, or stopped by a debugger); wait for it. */
    if (hs_seq_is_claim(seq) && !hs_pid_gone(hs_seq_claimer(seq))) {
        if (now_ms - sp->stall_logged_ms >= 10000) {
            sp->stall_logged_ms = now_ms;
            hsd_log(HSD_WARNING,
                    "ring slot for LSN %" PRIu64 " has been claimed by live process %d "
                    "for %" PRIu64 " ms without being published; waiting for it",
                    lsn, (int)hs_seq_claimer(seq), now_ms - sp->stall_since_ms);
        }
        return 0;
    }
    if (!atomic_compare_exchange_strong_explicit(&slot->seq, &seq, lsn | HS_SEQ_ABANDONED,
                                                 memory_order_seq_cst, memory_order_acquire))
        return 1; /* published meanwhile: take it */
    atomic_fetch_add_explicit(&sp->h->abandoned_records, 1, memory_order_relaxed);
    hsd_log(HSD_WARNING,
            "ring slot for LSN %" PRIu64 " was reserved but not published for %d ms "
            "(its writer stalled or died before it claimed the slot, or died "
            "filling it): abandoned, NOOP written",
            lsn, HS_STALL_ABANDON_MS);
    return 2;
}

/*
 * A group of n records starts at lsn (its first member is published, so
 * its writer had claimed every member: it claims all before it fills
 * any).  1: every member is published, take them; -1: a member was
 * abandoned, or is claimed by a process that is gone (it died between two
 * publications: abandoned here at once, no stall limit), NOOP them all;
 * 0: wait (sp->group_wait set: a live writer is filling the rest, or a
 * member is unclaimed, which only a writer that lost a claim and is
 * abandoning its own slots leaves, for at most HS_STALL_ABANDON_MS).
 * Members are waited for until each is published or abandoned either way:
 * no slot may be passed while someone may still store into it.  The pids
 * are looked at only once the group waited HSD_GROUP_PID_CHECK_MS (a
 * writer fills its members within microseconds).
 */
static int
hsd_group_ready(hsd_spiller *sp, hs_lsn lsn, unsigned n, uint64_t now_ms)
{
    bool dead = false, waiting = false;
    bool stalled = sp->stall_lsn == lsn;
    uint64_t waited = stalled ? now_ms - sp->stall_since_ms : 0;

    for (unsigned i = 1; i < n; i++) {
        hs_lsn m = lsn + i;
        hs_ring_slot *slot = &sp->ring[m & sp->mask];
        /* pairs with the writer's publishing store (release) */
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);

        if (seq == m) {
            if (slot->rec.group_size != n || slot->rec.group_pos != i) {
                hsd_log(HSD_WARNING,
                        "ring slot for LSN %" PRIu64 " is place %u of a group of %u, "
                        "expected place %u of %u from LSN %" PRIu64 ": the group is "
                        "written as NOOPs",
                        m, slot->rec.group_pos, slot->rec.group_size, i, n, lsn);
                dead = true;
            }
            continue;
        }
        if (seq == (m | HS_SEQ_ABANDONED)) {
            dead = true;
            continue;
        }
        if (hs_seq_is_claim(seq)) {
            if (waited >= HSD_GROUP_PID_CHECK_MS && hs_pid_gone(hs_seq_claimer(seq))) {
                if (atomic_compare_exchange_strong_explicit(&slot->seq, &seq,
                                                            m | HS_SEQ_ABANDONED,
                                                            memory_order_seq_cst,
                                                            memory_order_acquire))
                    atomic_fetch_add_explicit(&sp->h->abandoned_records, 1,
                                              memory_order_relaxed);
                dead = true; /* abandoned (by us, or by nobody else: it cannot be published) */
                continue;
            }
            waiting = true;
            continue;
        }
        /* unclaimed */
        if (waited >= HS_STALL_ABANDON_MS &&
            atomic_compare_exchange_strong_explicit(&slot->seq, &seq, m | HS_SEQ_ABANDONED,
                                                    memory_order_seq_cst, memory_order_acquire)) {
            atomic_fetch_add_explicit(&sp->h->abandoned_records, 1, memory_order_relaxed);
            dead = true;
            continue;
        }
        if (seq == m || seq == (m | HS_SEQ_ABANDONED)) {
            i--; /* published or abandoned meanwhile: look again */
            continue;
        }
        waiting = true;
    }
    sp->group_wait = waiting;
    if (waiting) {
        if (!stalled) {
            sp->stall_lsn = lsn;
            sp->stall_since_ms = now_ms;
        }
        return 0;
    }
    return dead ? -1 : 1;
}

/* Take the published record of lsn into the batch (fatal when damaged). */
static void
hsd_batch_take(hsd_spiller *sp, hs_lsn lsn, const hs_ring_record *rr)
{
    hs_record rec;
    uint32_t crc = sp->ring[lsn & sp->mask].crc;
    char why[256];

    if (hs_ring_record_crc(rr) != crc)
        hsd_fatal("ring slot for LSN %" PRIu64 " fails its CRC (stored 0x%08x, computed "
                  "0x%08x): shared memory is corrupted; stopping so that recovery "
                  "decides (the record is not acknowledged as durable)",
                  lsn, crc, hs_ring_record_crc(rr));
    if (hsd_ring_to_record(sp->h, rr, lsn, &rec, why, sizeof(why)) != 0)
        hsd_fatal("ring slot for LSN %" PRIu64 " is not a valid record: %s; stopping so "
                  "that recovery decides (the record is not acknowledged as durable)",
                  lsn, why);
    if (rr->order_index != UINT32_MAX && rr->order_index >= sp->h->order_capacity)
        hsd_fatal("ring record LSN %" PRIu64 " names order slot %u (capacity %u)", lsn,
                  rr->order_index, sp->h->order_capacity);
    hsd_batch_add(sp, &rec, rr->order_index);
}

/*
 * Collect the published slots from sp->next on, in LSN order, up to the
 * first unpublished one or HSD_SPILL_BATCH records, into sp->batch (a
 * slot stalled for HS_STALL_ABANDON_MS is abandoned and becomes a NOOP).
 * A group (a basket's records) is taken whole once every member is
 * published, or turned into NOOPs whole when one was abandoned: the queue
 * holds whole groups only, and a batch never ends inside one.
 * Nothing is written or folded yet, and sp->next does not move: the slots
 * stay ours until spilled_lsn passes them, so a failed write can retry.
 */
static void
hsd_collect_batch(hsd_spiller *sp, uint64_t now_ms)
{
    /* pairs with the clients' reserving CAS (acq_rel): LSNs below it exist */
    hs_lsn end = atomic_load_explicit(&sp->h->next_lsn, memory_order_acquire) & ~HS_LSN_FENCED;
    hs_lsn lsn = sp->next;

    sp->nbatch = 0;
    while (lsn < end && sp->nbatch < HSD_SPILL_BATCH) {
        hs_ring_slot *slot = &sp->ring[lsn & sp->mask];
        /* pairs with the writer's publishing CAS (release) */
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);

        if (seq == lsn) {
            hs_ring_record rr;
            unsigned n;
            int ready;

            memcpy(&rr, &slot->rec, sizeof(rr));
            n = rr.group_size;
            if (n > 1 && (hs_ring_record_crc(&rr) != slot->crc || n > HS_GROUP_MAX ||
                          lsn + n > end))
                hsd_fatal("ring slot for LSN %" PRIu64 " starts a group of %u records that "
                          "fails its CRC or does not fit what was reserved (next LSN %" PRIu64
                          "): shared memory is corrupted; stopping so that recovery decides",
                          lsn, n, end);
            if (n <= 1) {
                hsd_batch_take(sp, lsn, &rr);
                lsn++;
                continue;
            }
            if (rr.group_pos != 0) {
                /* a later member whose group start was abandoned */
                hsd_log(HSD_WARNING,
                        "ring slot for LSN %" PRIu64 " is place %u of a group whose start "
                        "was abandoned: NOOP written",
                        lsn, rr.group_pos);
                hsd_batch_add_noop(sp, lsn);
                lsn++;
                continue;
            }
            if (sp->nbatch + n > HSD_SPILL_BATCH)
                break; /* the whole group goes into the next batch */
            ready = hsd_group_ready(sp, lsn, n, now_ms);
            if (ready == 0)
                break;
            for (unsigned i = 0; i < n; i++) {
                if (ready > 0) {
                    memcpy(&rr, &sp->ring[(lsn + i) & sp->mask].rec, sizeof(rr));
                    hsd_batch_take(sp, lsn + i, &rr);
                } else {
                    hsd_batch_add_noop(sp, lsn + i);
                }
            }
            if (ready < 0)
                hsd_log(HSD_WARNING,
                        "the group of %u records at LSN %" PRIu64 " lost a member: written as "
                        "NOOPs (its writer held its units back)",
                        n, lsn);
            lsn += n;
        } else if (seq == (lsn | HS_SEQ_ABANDONED)) {
            hsd_batch_add_noop(sp, lsn);
            lsn++;
        } else {
            /* reserved, not yet published (maybe claimed and being filled) */
            int st = hsd_slot_stall(sp, lsn, slot, seq, now_ms);

            if (st == 0)
                break;
            if (st == 2) {
                hsd_batch_add_noop(sp, lsn);
                lsn++;
            }
        }
    }
}

/*
 * A write(2) of the queue failed (ENOSPC, EIO...).  Publish spill_errno so
 * clients refuse new records with HS_IO_ERROR (nothing published is
 * dropped: those slots stay unspilled in the ring), drop the writer (its
 * failure is sticky, its file may end in a partial record) and retry from
 * hsd_spiller_reopen().
 */
static void
hsd_write_failed(hsd_spiller *sp, int err, const char *what)
{
    hsd_daemon *d = sp->d;

    if (err == 0)
        err = EIO;
    if (atomic_load_explicit(&sp->h->spill_errno, memory_order_relaxed) == 0)
        hsd_log(HSD_ERROR,
                "%s; refusing new records (clients get HS_IO_ERROR) and retrying every %d ms; "
                "nothing published is dropped",
                what, HSD_WRITE_RETRY_MS);
    /* pairs with the clients' acquire load before they reserve or wait */
    atomic_store_explicit(&sp->h->spill_errno, err, memory_order_release);
    hs_qf_writer_close(d->writer);
    d->writer = NULL;
    sp->retry_at_ms = hs_now_monotonic_ms() + HSD_WRITE_RETRY_MS;
}

/*
 * After a failed write: cut the partial record the failed write may have
 * left (the recovery scan, on the newest file's tail), make every record
 * already on disk durable, and open a new writer after them.  Records of
 * the failed batch that did reach the disk whole are not written again
 * (sp->disk_last).  0 when writing can go on; -1 to retry later.
 */
static int
hsd_spiller_reopen(hsd_spiller *sp)
{
    hsd_daemon *d = sp->d;
    hs_qf_scan_result res;
    hs_lsn spilled = sp->next - 1;

    if (hs_qf_scan(d->dir, HS_LSN_MAX, true, NULL, NULL, &res) != 0) {
        hsd_log(HSD_WARNING, "queue rescan after a failed write: %s", hs_last_error());
        return -1;
    }
    if (res.tail_cut)
        hsd_log(HSD_LOG,
                "cut the partial write from queue file %s at offset %" PRIu64 " (%" PRIu64
                " bytes)",
                res.tail_path, res.tail_offset, res.tail_bytes);
    if (res.last_lsn < spilled)
        hsd_fatal("the queue ends at LSN %" PRIu64 " after a failed write, but LSN %" PRIu64
                  " was written before: queue files lost data",
                  res.last_lsn, spilled);
    /* what the failed writer wrote but never synced is synced here */
    if (hsd_sync_queue_files(d->dir) != 0)
        hsd_fatal("fdatasync of the queue failed after a write error; durable LSN stays %" PRIu64,
                  sp->synced);
    d->writer = hs_qf_writer_open(d->dir, res.last_lsn, d->settings.queue_file_size);
    if (d->writer == NULL) {
        hsd_log(HSD_WARNING, "cannot reopen the queue writer: %s", hs_last_error());
        return -1;
    }
    sp->disk_last = res.last_lsn;
    hsd_log(HSD_LOG, "queue writer reopened after LSN %" PRIu64 "; retrying the spill",
            res.last_lsn);
    return 0;
}

/*
 * Write the collected batch: append what is not on disk yet, write(2);
 * then fold every record into the shadow, mark its order slot `recorded`,
 * and store spilled_lsn.  Returns the number of LSNs spilled (0 after a
 * write failure: see hsd_write_failed()).
 */
static uint32_t
hsd_write_batch(hsd_spiller *sp)
{
    hsd_daemon *d = sp->d;
    uint32_t n = sp->nbatch;

    for (uint32_t i = 0; i < n; i++) {
        const hs_record *rec = &sp->batch[i].rec;

        if (rec->lsn <= sp->disk_last)
            continue; /* written whole before a failed write */
        if (hs_qf_writer_append(d->writer, rec) != 0) {
            /* a rotation's fdatasync: fatal like any other (see
             * hsd_group_commit) */
            if (hs_qf_writer_sync_failed(d->writer))
                hsd_fatal("fdatasync of the queue failed, durable LSN stays %" PRIu64 ": %s",
                          sp->synced, hs_last_error());
            hsd_write_failed(sp, errno, hs_last_error());
            return 0;
        }
    }
    if (hs_qf_writer_write(d->writer) != 0) {
        hsd_write_failed(sp, errno, hs_last_error());
        return 0;
    }
    if (atomic_load_explicit(&sp->h->spill_errno, memory_order_relaxed) != 0) {
        hsd_log(HSD_LOG, "writing the queue works again (LSN %" PRIu64 ")",
                sp->batch[n - 1].rec.lsn);
        atomic_store_explicit(&sp->h->spill_errno, 0, memory_order_release);
    }

    for (uint32_t i = 0; i < n; i++) {
        const hsd_batch_entry *e = &sp->batch[i];

        if (hs_shadow_fold(&d->shadow, &e->rec) != 0)
            hsd_fatal("cannot fold LSN %" PRIu64 " into the shadow counters: %s", e->rec.lsn,
                      hs_last_error());
        if (e->order_index != UINT32_MAX) {
            hs_order_slot *o = &hs_order_table(sp->h)[e->order_index];

            /* pairs with the acquire load of a waiter that found the
             * order's owner dead (segment.h), after spilled_lsn below */
            atomic_store_explicit(&o->recorded, HS_RECORDED_WORD(e->rec.lsn, e->rec.type),
                                  memory_order_release);
            /* A new hold: the expirer's from now on.  Its slot is owned
             * (PENDING) by the reserver or by whoever settles it, never
             * evicted meanwhile, so the version read here is the hold's. */
            if (e->rec.type == HS_REC_RESERVE)
                hsd_expirer_add(d, e->rec.timestamp_us / 1000 + e->rec.ttl_ms, e->order_index,
                                HS_VER_OF(atomic_load(&o->state)));
        }
    }
    sp->next += n;
    /* the slots up to it are free again; pairs with the acquire load in
     * the clients' reserving CAS loop */
    atomic_store_explicit(&sp->h->spilled_lsn, sp->next - 1, memory_order_release);
    atomic_fetch_add_explicit(&d->stats.records_spilled, n, memory_order_relaxed);
    return n;
}

/*
 * hsd_group_commit: the one place that decides when records become
 * durable, and the contract between acknowledgement and durability.
 *
 *   - durable_lsn is stored only after hs_qf_writer_sync() (fdatasync of
 *     every queue file written, and of the directory when a file was
 *     created) returned 0 for every record up to it.  A client with
 *     hotstock.synchronous = on acknowledges a deduction only once
 *     durable_lsn >= its LSN: an acknowledged synchronous deduction
 *     survives power loss.
 *   - A client with synchronous = off acknowledges once its record is
 *     published in the ring.  It survives a crash of the daemon or of the
 *     client (the next daemon salvages the ring), not power loss: at most
 *     flush_interval_ms of such records may be lost then.
 *   - We flush at once while a client waits or asked for it without
 *     waiting (flush_wanted > the synced LSN: group commit, every record
 *     spilled by then rides on the same fdatasync), otherwise
 *     flush_interval_ms after the previous flush, and whenever a checkpoint
 *     or a stop needs a durable point.
 *   - A failed fdatasync is FATAL: the daemon aborts and never stores a
 *     durable_lsn past it.  Waiters see the heartbeat stop and answer
 *     HS_DAEMON_DOWN, which means "unknown" (hotstock.h).  While write(2)
 *     fails (spill_errno set) nothing new is written, so nothing is synced
 *     or acknowledged; waiters answer HS_IO_ERROR, also "unknown".
 *
 * Returns true when it flushed for someone who waits or asked (not for
 * the interval, nor only for a checkpoint or a stop).
 */
static bool
hsd_group_commit(hsd_spiller *sp, bool force, uint64_t now_ms)
{
    hsd_daemon *d = sp->d;
    hs_lsn upto = sp->next - 1;
    uint64_t t0, us;
    bool wanted;

    if (upto == sp->synced || d->writer == NULL)
        return false;
    wanted = atomic_load_explicit(&sp->h->flush_wanted, memory_order_acquire) > sp->synced;
    if (!force && !wanted && now_ms - sp->last_sync_ms < d->settings.flush_interval_ms)
        return false;

    t0 = hs_now_unix_us();
    if (hs_qf_writer_sync(d->writer) != 0)
        hsd_fatal("fdatasync of the queue failed, durable LSN stays %" PRIu64 ": %s", sp->synced,
                  hs_last_error());
    us = hs_now_unix_us() - t0;
    /* pairs with the waiters' acquire load of durable_lsn */
    atomic_store_explicit(&sp->h->durable_lsn, upto, memory_order_release);
    atomic_fetch_add_explicit(&sp->h->durable_seq, 1, memory_order_release);
    /* only the waiters of what became durable (segment.h) */
    hs_futex_wake_bits(&sp->h->durable_seq, hs_durable_bits(sp->synced, upto));
    sp->synced = upto;
    sp->last_sync_ms = hs_now_monotonic_ms();
    atomic_store_explicit(&sp->h->last_flush_unix_ms, (t0 + us) / 1000, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->stats.flushes, 1, memory_order_relaxed);
    atomic_store_explicit(&d->stats.last_flush_us, us, memory_order_relaxed);
    if (us > atomic_load_explicit(&d->stats.max_flush_us, memory_order_relaxed))
        atomic_store_explicit(&d->stats.max_flush_us, us, memory_order_relaxed);
    return wanted;
}

/*-------------------------------------------------------------------------
 * Checkpoints
 *-------------------------------------------------------------------------
 */

/* Hand a snapshot of the shadow, taken at a durable point, to the
 * checkpointer with the requests waiting for it. */
static void
hsd_spiller_checkpoint(hsd_spiller *sp)
{
    hsd_daemon *d = sp->d;
    hsd_ckpt_job *job, *superseded;
    hs_lsn applied;

    job = calloc(1, sizeof(*job));
    if (job == NULL || hs_shadow_copy(&d->shadow, &job->shadow) != 0) {
        free(job);
        for (hsd_request *r = sp->checkpoints, *next; r != NULL; r = next) {
            next = r->next;
            hsd_request_complete(r, -1, 0, "out of memory for the checkpoint snapshot");
        }
        sp->checkpoints = NULL;
        hsd_log(HSD_WARNING, "checkpoint skipped: out of memory for the snapshot");
        return;
    }
    /* pairs with the main thread's release store of its copy */
    applied = atomic_load_explicit(&d->applied_lsn, memory_order_acquire);
    job->shadow.applied_lsn = applied < sp->synced ? applied : sp->synced;
    job->shadow.generation = d->generation;
    sp->ckpt_lsn = job->shadow.lsn;
    sp->ckpt_applied = applied;
    job->requests = sp->checkpoints;
    sp->checkpoints = NULL;

    pthread_mutex_lock(&d->ckpt_mu);
    superseded = d->ckpt_job;
    if (superseded != NULL) {
        /* not started yet: the newer snapshot serves its requests too */
        hsd_request *tail = superseded->requests;
        if (tail != NULL) {
            while (tail->next != NULL)
                tail = tail->next;
            tail->next = job->requests;
            job->requests = superseded->requests;
        }
    }
    d->ckpt_job = job;
    pthread_cond_signal(&d->ckpt_cv);
    pthread_mutex_unlock(&d->ckpt_mu);
    if (superseded != NULL) {
        hs_shadow_free(&superseded->shadow);
        free(superseded);
    }
}

/*-------------------------------------------------------------------------
 * The spiller thread
 *-------------------------------------------------------------------------
 */

/* Is there anything to do right now?  Called after spiller_sleeping was
 * set, so a publisher that did not see the flag is visible here; and by
 * spiller_spin() before it is set, as a mere poll. */
static bool
hsd_spiller_has_work(hsd_spiller *sp)
{
    hsd_daemon *d = sp->d;
    hs_ring_slot *slot = &sp->ring[sp->next & sp->mask];
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);

    if (d->writer == NULL)
        return !cds_wfcq_empty(&d->req_head, &d->req_tail);
    if (seq == (sp->next | HS_SEQ_ABANDONED))
        return true;
    /* a published group start whose members are awaited is polled (see
     * hsd_spiller_timeout), not spun on */
    if (seq == sp->next && !(sp->group_wait && sp->stall_lsn == sp->next))
        return true;
    if (sp->synced != sp->next - 1 &&
        atomic_load_explicit(&sp->h->flush_wanted, memory_order_seq_cst) > sp->synced)
        return true;
    return !cds_wfcq_empty(&d->req_head, &d->req_tail);
}

/* Poll for work until spin_until_ns, set spiller_poll_us after a flush
 * that someone waited for.  True when there is some.  Why: a lone
 * synchronous client sends its next record one round trip after its
 * flush, and waking a sleeping thread costs tens of microseconds on a
 * virtual machine, as much as a fast fdatasync.  Not after a write or an
 * interval flush that nobody waits for: asynchronous records gain nothing
 * from a prompt spiller, and on a busy machine the poll takes CPU from the
 * backends (8 clients, synchronous off: 10-30 % fewer deducts/s when it
 * polled after every write).  Never while a group's members are awaited:
 * has_work() does not see them arrive, and their publishers, seeing
 * spiller_sleeping 0, would not wake the sleep that follows the poll (the
 * group would wait for its 1 ms timeout).  Each round yields the CPU to
 * any thread that wants it (the clients about to publish the next
 * records, on a machine of few cores); with none, sched_yield returns at
 * once. */
static bool
spiller_spin(hsd_spiller *sp)
{
    if (sp->d->settings.spiller_poll_us == 0 || (sp->group_wait && sp->stall_lsn == sp->next))
        return false;
    for (unsigned i = 1;; i++) {
        if (hsd_spiller_has_work(sp))
            return true;
        if (i % 16 == 0 && hs_now_monotonic_ns() >= sp->spin_until_ns)
            return false;
        sched_yield();
    }
}

/* How long to sleep when idle, in ms (0: do not sleep). */
static int
hsd_spiller_timeout(hsd_spiller *sp, uint64_t now_ms)
{
    hsd_daemon *d = sp->d;
    uint64_t t = d->settings.flush_interval_ms;

    if (sp->synced != sp->next - 1) {
        uint64_t due = sp->last_sync_ms + d->settings.flush_interval_ms;
        t = due > now_ms ? due - now_ms : 0;
    }
    if (sp->stall_lsn == sp->next && sp->group_wait)
        t = 1;
    else if (sp->stall_lsn == sp->next) {
        /* a claimed slot: its claimer's pid is looked at every few ms */
        uint64_t seq = atomic_load_explicit(&sp->ring[sp->next & sp->mask].seq,
                                            memory_order_relaxed);
        uint64_t due = sp->stall_since_ms +
                       (hs_seq_is_claim(seq) ? HSD_GROUP_PID_CHECK_MS : HS_STALL_ABANDON_MS);
        uint64_t s = due > now_ms ? due - now_ms : 0;
        if (s == 0 && hs_seq_is_claim(seq))
            s = HSD_GROUP_PID_CHECK_MS; /* a live claimer: look again later */
        if (s < t)
            t = s;
        if (t == 0)
            t = 1;
    }
    if (sp->requests_blocked && t > 1)
        t = 1;
    if (d->writer == NULL)
        t = sp->retry_at_ms > now_ms ? sp->retry_at_ms - now_ms : 1;
    return (int)t;
}

static void *
hsd_spiller_main(void *arg)
{
    hsd_spiller *sp = arg;
    hsd_daemon *d = sp->d;

    hsd_log(HSD_LOG, "spiller: running from LSN %" PRIu64 ", flush interval %u ms", sp->next,
            d->settings.flush_interval_ms);
    for (;;) {
        uint64_t now_ms = hs_now_monotonic_ms();
        uint32_t n;
        int timeout;
        uint32_t seq0;

        hsd_spiller_take_requests(sp);
        n = 0;
        if (d->writer == NULL && now_ms >= sp->retry_at_ms && hsd_spiller_reopen(sp) != 0)
            sp->retry_at_ms = now_ms + HSD_WRITE_RETRY_MS;
        if (d->writer != NULL) {
            hsd_collect_batch(sp, now_ms);
            if (sp->nbatch > 0)
                n = hsd_write_batch(sp);
        }

        if (hsd_group_commit(sp, sp->checkpoints != NULL || sp->stop != NULL, now_ms))
            sp->spin_until_ns =
                hs_now_monotonic_ns() + (uint64_t)d->settings.spiller_poll_us * 1000;
        if (sp->checkpoints != NULL && sp->synced == sp->next - 1)
            hsd_spiller_checkpoint(sp);

        if (sp->stop != NULL && sp->next > sp->stop->stop_lsn && sp->synced == sp->next - 1) {
            hsd_log(HSD_LOG, "spiller: stopped at durable LSN %" PRIu64, sp->synced);
            hsd_request_complete(sp->stop, 0, sp->synced, NULL);
            free(sp->batch);
            free(sp);
            return NULL;
        }
        if (n == HSD_SPILL_BATCH)
            continue;
        if (n > 0 && hsd_spiller_has_work(sp))
            continue;
        /* busy a moment ago: poll before sleeping (spiller_poll_us).
         * spiller_sleeping stays 0, so publishers skip the wake-up; the
         * re-check below still covers a record published after the spin
         * (a group's members are never polled for: spiller_spin()). */
        if (spiller_spin(sp))
            continue;

        /* idle: announce the sleep, re-check, sleep on spiller_seq */
        seq0 = atomic_load_explicit(&sp->h->spiller_seq, memory_order_acquire);
        atomic_store_explicit(&sp->h->spiller_sleeping, 1, memory_order_seq_cst);
        /* store-load: the re-check below must not be ordered before the
         * flag.  Pairs with the publishers' seq_cst CAS of a slot (or of
         * flush_wanted) followed by their seq_cst load of the flag: either
         * we see their record or they see us asleep and wake us. */
        atomic_thread_fence(memory_order_seq_cst);
        if (!hsd_spiller_has_work(sp)) {
            timeout = hsd_spiller_timeout(sp, hs_now_monotonic_ms());
            if (timeout > 0)
                hs_futex_wait(&sp->h->spiller_seq, seq0, timeout);
        }
        atomic_store_explicit(&sp->h->spiller_sleeping, 0, memory_order_relaxed);
    }
}

int
hsd_spiller_start(hsd_daemon *d)
{
    hsd_spiller *sp = calloc(1, sizeof(*sp));
    int rc;

    if (sp == NULL) {
        hsd_log(HSD_ERROR, "out of memory starting the spiller");
        return -1;
    }
    sp->batch = malloc(HSD_SPILL_BATCH * sizeof(hsd_batch_entry));
    if (sp->batch == NULL) {
        hsd_log(HSD_ERROR, "out of memory starting the spiller");
        free(sp);
        return -1;
    }
    sp->d = d;
    sp->h = d->seg;
    sp->ring = hs_ring(d->seg);
    sp->mask = d->seg->ring_capacity - 1;
    sp->synced = atomic_load_explicit(&d->seg->durable_lsn, memory_order_relaxed);
    sp->next = sp->synced + 1;
    /* recovery checkpointed exactly this state */
    sp->ckpt_lsn = sp->synced;
    sp->ckpt_applied = atomic_load_explicit(&d->applied_lsn, memory_order_relaxed);
    sp->last_sync_ms = hs_now_monotonic_ms();
    rc = pthread_create(&d->spiller_thread, NULL, hsd_spiller_main, sp);
    if (rc != 0) {
        hsd_log(HSD_ERROR, "cannot start the spiller thread: %s", strerror(rc));
        free(sp->batch);
        free(sp);
        return -1;
    }
    d->spiller_running = true;
    return 0;
}
