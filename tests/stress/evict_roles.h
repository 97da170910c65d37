/*-------------------------------------------------------------------------
 *
 * evict_roles.h
 *      The roles of tests/stress/evict_stress.c: its workers, the drain
 *      that plays PostgreSQL, the pauser, and the end-of-run checks.
 *
 * Included once, by evict_stress.c, after its shared state and the SQL
 * layer's calls (the file would pass the 900-line limit of one .c file
 * otherwise; a test program is one .c file).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_EVICT_ROLES_H
#define HOTSTOCK_EVICT_ROLES_H
/*-------------------------------------------------------------------------
 * Workers
 *-------------------------------------------------------------------------
 */

/* Wait until the index is at most 5/8 full (see the file header).  False
 * when the run stops first, or the index stays fuller for FULL_STALL_S. */
static bool
wait_for_room(hs_client *c, bool watch_stop)
{
    double since = 0;
    hs_status st;

    for (;;) {
        hs_result r = hs_get_status(c, &st);

        if (watch_stop && atomic_load(&sh->stop))
            return false;
        if (r == HS_OK && st.order_count <= st.order_capacity / 8 * 5)
            return true;
        if (r == HS_OK)
            atomic_fetch_add_explicit(&sh->full_waits, 1, memory_order_relaxed);
        if (since == 0) {
            since = now_s();
        } else if (now_s() - since > FULL_STALL_S) {
            if (r == HS_OK)
                violation("the order index stayed %u of %u full for %.0f s: entries are not "
                          "evicted",
                          st.order_count, st.order_capacity, FULL_STALL_S);
            else
                violation("no daemon for %.0f s (%s: %s)", FULL_STALL_S, hs_result_name(r),
                          hs_last_error());
            atomic_store(&sh->stop, true);
            return false;
        }
        hsd_ctl_nap_ms(r == HS_OK ? 1 : 20);
    }
}

/* Hand out a new id once the index has room. */
static bool
new_id(hs_client *c, uint32_t *n)
{
    if (!wait_for_room(c, true))
        return false;
    *n = atomic_fetch_add(&sh->next_id, 1);
    if (*n >= opt.max_ids) {
        atomic_store(&sh->stop, true);
        return false;
    }
    return true;
}

static uint32_t
old_id(uint64_t *rng)
{
    uint32_t used = atomic_load(&sh->next_id);
    uint32_t window = (uint32_t)opt.capacity / 2; /* about what is being evicted now */

    if (used > opt.max_ids)
        used = opt.max_ids;
    if (used == 0)
        return 0;
    if (hs_test_rand(rng) % 2 == 0 && used > window)
        return used - 1 - (uint32_t)(hs_test_rand(rng) % window);
    return (uint32_t)(hs_test_rand(rng) % used);
}

static int
worker_main(int slot)
{
    hs_client *c = NULL;
    double end = now_s() + 30;
    uint64_t rng = opt.seed * 1000003u + (uint64_t)slot * 7919u +
                   atomic_fetch_add(&sh->incarnation, 1) * 104729u + 1;
    hs_result r;

    while ((r = hs_attach(opt.dir, &c)) != HS_OK) {
        if (now_s() > end || atomic_load(&sh->stop)) {
            fprintf(stderr, "worker %d: attach: %s (%s)\n", slot, hs_result_name(r),
                    hs_last_error());
            return 2;
        }
        hsd_ctl_nap_ms(20);
    }
    while (!atomic_load(&sh->stop)) {
        unsigned roll = (unsigned)(hs_test_rand(&rng) % 100);
        uint32_t n;

        if (roll < 30) {
            if (!new_id(c, &n))
                break;
            atomic_fetch_add_explicit(&sh->deduct_new, 1, memory_order_relaxed);
            /* sold out: back off a little, as a shop would */
            if (sql_deduct(c, n, true) == ANS_FALSE)
                hsd_ctl_nap_ms(1);
        } else if (roll < 40) {
            /* one of the newest ids, which other workers are inserting
             * right now: inserts of one id race */
            uint32_t used = atomic_load(&sh->next_id);
            atomic_fetch_add_explicit(&sh->deduct_retry, 1, memory_order_relaxed);
            if (used > 0 && used <= opt.max_ids)
                sql_deduct(c, used - 1 - (uint32_t)(hs_test_rand(&rng) % (used < 8 ? used : 8)),
                           false);
        } else if (roll < 50) {
            /* one the drain just applied: the evictor is about to empty it */
            uint64_t seq = atomic_load(&sh->drained_seq);
            atomic_fetch_add_explicit(&sh->deduct_retry, 1, memory_order_relaxed);
            if (seq > 0)
                sql_deduct(
                    c,
                    atomic_load(
                        &sh->drained_ring[(seq - 1 - hs_test_rand(&rng) % (seq < 256 ? seq : 256)) %
                                          256]),
                    false);
        } else if (roll < 65) {
            atomic_fetch_add_explicit(&sh->deduct_retry, 1, memory_order_relaxed);
            sql_deduct(c, old_id(&rng), false);
        } else if (roll < 85) {
            atomic_fetch_add_explicit(&sh->refunds, 1, memory_order_relaxed);
            sql_refund(c, old_id(&rng), &rng);
        } else {
            atomic_fetch_add_explicit(&sh->statuses, 1, memory_order_relaxed);
            check_status(c, old_id(&rng));
        }
        atomic_fetch_add_explicit(&sh->ops, 1, memory_order_relaxed);
    }
    hs_detach(c);
    return 0;
}

static pid_t
spawn_worker(int slot)
{
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0)
        _exit(worker_main(slot));
    return pid;
}

/*-------------------------------------------------------------------------
 * The drain (parent thread)
 *-------------------------------------------------------------------------
 */

typedef struct drain {
    hs_client *c;
    hs_queue_reader *reader;
    hs_lsn applied;
    int64_t put[MAX_SKUS];  /* sum of PUT_SKU / ADD_STOCK deltas */
    int64_t sold[MAX_SKUS]; /* units of DEDUCT records minus REFUND records */
    uint64_t last_sweep_ms;
    _Atomic bool exit;
    _Atomic bool caught_up; /* applied == durable == next - 1 at the last look */
} drain;

static int
sku_index(const char *sku)
{
    for (int i = 0; i < NSKUS; i++)
        if (strcmp(sku, skus[i]) == 0)
            return i;
    return -1;
}

static void
drain_apply(drain *d, const hs_record *rec)
{
    int si = sku_index(rec->sku);
    uint32_t n;
    id_state *s;

    if (rec->lsn != d->applied + 1)
        violation("drain: LSN %llu after %llu", (unsigned long long)rec->lsn,
                  (unsigned long long)d->applied);
    d->applied = rec->lsn;
    atomic_fetch_add_explicit(&sh->drained_records, 1, memory_order_relaxed);
    if (rec->type == HS_REC_NOOP)
        return;
    if (si < 0) {
        violation("drain: LSN %llu names unknown sku %s", (unsigned long long)rec->lsn, rec->sku);
        return;
    }
    if (rec->type == HS_REC_PUT_SKU || rec->type == HS_REC_ADD_STOCK) {
        d->put[si] += rec->qty;
        return;
    }
    n = id_parse(rec->order_id);
    if (n == UINT32_MAX || id_sku_index(n) != si || rec->qty != id_qty(n)) {
        violation("drain: LSN %llu: order %s, %lld of %s does not match the test's ids",
                  (unsigned long long)rec->lsn, rec->order_id, (long long)rec->qty, rec->sku);
        return;
    }
    s = &sh->ids[n];
    if (rec->type == HS_REC_DEDUCT) {
        d->sold[si] += rec->qty;
        if (atomic_load(&s->led_deducts) != 0)
            violation("drain: a second DEDUCT of order %s at LSN %llu (the first at %llu): "
                      "sold twice",
                      rec->order_id, (unsigned long long)rec->lsn,
                      (unsigned long long)atomic_load(&s->led_deduct_lsn));
        atomic_store(&s->led_deduct_lsn, rec->lsn);
        atomic_fetch_add(&s->led_deducts, 1);
        atomic_store(&sh->drained_ring[atomic_fetch_add(&sh->drained_seq, 1) % 256], n);
    } else if (rec->type == HS_REC_REFUND) {
        d->sold[si] -= rec->qty;
        if (atomic_load(&s->led_deducts) == 0 || atomic_load(&s->led_refunds) != 0)
            violation("drain: REFUND of order %s at LSN %llu with %u DEDUCT and %u REFUND "
                      "records before",
                      rec->order_id, (unsigned long long)rec->lsn, atomic_load(&s->led_deducts),
                      atomic_load(&s->led_refunds));
        atomic_fetch_add(&s->led_refunds, 1);
    }
}

/* hotstock_apply_ledger_refunds(): marks whose hs_refund_evicted never
 * ran (the worker was killed after its "commit"). */
static void
drain_sweep(drain *d, bool all)
{
    uint32_t used = atomic_load(&sh->next_id);
    /* read before the marks, as the drain's sweep does */
    hs_lsn checked = hs_evicted_lsn(d->c);
    uint64_t now = now_ms();

    if (used > opt.max_ids)
        used = opt.max_ids;
    for (uint32_t n = 0; n < used; n++) {
        id_state *s = &sh->ids[n];
        char id[24];
        size_t len;
        hs_lsn lsn;
        hs_result r;

        if (!atomic_load(&s->led_marked) || atomic_load(&s->led_refunds) != 0)
            continue;
        if (!all && atomic_load(&s->marked_ms) + SWEEP_GRACE_MS > now)
            continue;
        len = id_name(n, id);
        r = hs_refund_evicted(d->c, id_sku(n), strlen(id_sku(n)), id_qty(n), id, len, checked,
                              &lsn);
        if (r == HS_EVICTED_CHANGED)
            continue; /* maybe applied meanwhile: the next sweep looks again */
        if (r == HS_OK) {
            atomic_fetch_add_explicit(&sh->refund_swept, 1, memory_order_relaxed);
            refunded_now(s, id, "the sweep's hs_refund_evicted");
        } else if (r == HS_DUPLICATE) {
            violation("order %s: marked refunded in the ledger but the index holds it as "
                      "deducted (sweep)",
                      id);
        } else if (r != HS_ALREADY_REFUNDED && !retryable(r)) {
            violation("order %s: the sweep's hs_refund_evicted answered %s", id, hs_result_name(r));
        }
    }
}

/* One batch: read up to the durable LSN, apply, then publish. */
static void
drain_step(drain *d)
{
    hs_status st;
    hs_record rec;
    hs_result r = hs_get_status(d->c, &st);
    int got;

    if (r != HS_OK) {
        hsd_ctl_nap_ms(10);
        return;
    }
    if (d->reader == NULL) {
        r = hs_queue_open(opt.dir, d->applied + 1, &d->reader);
        if (r != HS_OK) {
            d->reader = NULL;
            if (r != HS_NOT_FOUND)
                violation("drain: cannot open the queue at LSN %llu: %s (%s)",
                          (unsigned long long)d->applied + 1, hs_result_name(r), hs_last_error());
            hsd_ctl_nap_ms(2);
            return;
        }
    }
    while ((got = hs_queue_next(d->reader, st.durable_lsn, &rec)) == 1)
        drain_apply(d, &rec);
    if (got < 0) {
        violation("drain: the queue is damaged: %s", hs_last_error());
        hsd_ctl_nap_ms(100);
        return;
    }
    /* Every ledger store above is seq_cst: a worker that sees an evicted
     * LSN covering these records sees them. */
    r = hs_publish_applied(d->c, d->applied);
    atomic_fetch_add_explicit(&sh->drain_batches, 1, memory_order_relaxed);
    atomic_store(&d->caught_up,
                 r == HS_OK && d->applied == st.durable_lsn && st.durable_lsn + 1 == st.next_lsn);
    if (now_ms() - d->last_sweep_ms >= 500) {
        drain_sweep(d, false);
        d->last_sweep_ms = now_ms();
    }
    hs_kick(d->c);
    hsd_ctl_nap_ms(1);
}

static void *
drain_main(void *arg)
{
    drain *d = arg;

    while (!atomic_load(&d->exit))
        drain_step(d);
    return NULL;
}

/* Wait until the drain applied everything there is (bounded). */
static bool
drain_catch_up(drain *d, double timeout_s)
{
    double end = now_s() + timeout_s;
    int seen = 0;

    while (now_s() < end) {
        if (atomic_load(&d->caught_up) && ++seen >= 3)
            return true;
        hsd_ctl_nap_ms(20);
    }
    return false;
}

/*-------------------------------------------------------------------------
 * The pauser (parent thread): SIGSTOP a random worker for 1..pause_ms ms,
 * again and again.  A process stopped anywhere widens every window of the
 * protocol (between a look-up and the load of the slot it found, between
 * a claim and the filter check, holding a stripe lock) to milliseconds, in
 * which the evictor empties and clients reuse slots.
 *-------------------------------------------------------------------------
 */

static _Atomic bool pauser_exit;

static void *
pauser_main(void *arg)
{
    uint64_t rng = opt.seed * 31337u + 7;

    (void)arg;
    while (!atomic_load(&pauser_exit)) {
        pid_t pid = atomic_load(&workers[hs_test_rand(&rng) % (uint64_t)opt.procs]);

        if (pid > 0 && kill(pid, SIGSTOP) == 0) {
            hsd_ctl_nap_ms(1 + (int)(hs_test_rand(&rng) % (uint64_t)opt.pause_ms));
            kill(pid, SIGCONT);
            atomic_fetch_add_explicit(&sh->pauses, 1, memory_order_relaxed);
        }
        hsd_ctl_nap_ms((int)(hs_test_rand(&rng) % 3));
    }
    for (int p = 0; p < opt.procs; p++)
        if (atomic_load(&workers[p]) > 0)
            kill(atomic_load(&workers[p]), SIGCONT);
    return NULL;
}

/*-------------------------------------------------------------------------
 * Main
 *-------------------------------------------------------------------------
 */

static void
usage(void)
{
    fprintf(stderr,
            "usage: evict_stress [--dir DIR] [--procs P] [--seconds S] [--capacity N] "
            "[--stock S] [--restock U] [--filter-size BYTES] [--kill-workers MS] [--kill-daemon K] "
            "[--seed N] [--keep]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'D'},
                                             {"procs", required_argument, NULL, 'p'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"capacity", required_argument, NULL, 'c'},
                                             {"stock", required_argument, NULL, 'S'},
                                             {"restock", required_argument, NULL, 'R'},
                                             {"filter-size", required_argument, NULL, 'f'},
                                             {"kill-workers", required_argument, NULL, 'w'},
                                             {"kill-daemon", required_argument, NULL, 'k'},
                                             {"pause", required_argument, NULL, 'P'},
                                             {"seed", required_argument, NULL, 'r'},
                                             {"keep", no_argument, NULL, 'K'},
                                             {NULL, 0, NULL, 0}};
    int ch;

    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'D':
            snprintf(opt.dir, sizeof(opt.dir), "%s", optarg);
            break;
        case 'p':
            opt.procs = atoi(optarg);
            break;
        case 's':
            opt.seconds = atoi(optarg);
            break;
        case 'c':
            opt.capacity = atoi(optarg);
            break;
        case 'S':
            opt.stock = atoll(optarg);
            break;
        case 'R':
            opt.restock = atoll(optarg);
            break;
        case 'f':
            opt.filter_size = optarg;
            break;
        case 'w':
            opt.kill_workers_ms = atoi(optarg);
            break;
        case 'k':
            opt.kill_daemon = atoi(optarg);
            break;
        case 'P':
            opt.pause_ms = atoi(optarg);
            break;
        case 'r':
            opt.seed = (uint64_t)atoll(optarg);
            break;
        case 'K':
            opt.keep = true;
            break;
        default:
            usage();
        }
    }
    if (opt.procs < 1 || opt.procs > MAX_PROCS || opt.seconds < 1 || opt.capacity < 64 ||
        opt.stock < 1 || opt.restock < 0 || opt.kill_workers_ms < 0 || opt.kill_daemon < 0 ||
        opt.pause_ms < 0)
        usage();
}

/* After the load: every id's retry answers what its ledger says. */
static long
verify_retries(hs_client *c, const char *when)
{
    uint32_t used = atomic_load(&sh->next_id);
    long bad = 0;

    if (used > opt.max_ids)
        used = opt.max_ids;
    for (uint32_t n = 0; n < used; n++) {
        id_state *s = &sh->ids[n];
        bool deducted = atomic_load(&s->led_deducts) > 0;
        bool refunded = atomic_load(&s->led_refunds) > 0 || atomic_load(&s->led_marked);
        answer a;

        if (!deducted)
            continue; /* a retry would deduct it now: not a check */
        /* a retry of an evicted id leaves a FAILED entry until the next
         * pass: a burst of them fills a small index */
        if (!wait_for_room(c, false))
            return bad + 1;
        a = sql_deduct(c, n, false);
        if ((refunded && a != ANS_ALREADY_REFUNDED) || (!refunded && a != ANS_TRUE_RETRY)) {
            if (bad++ < MAX_PRINTED)
                fprintf(stderr, "%s: retry of o%u (%s) answered %d\n", when, n,
                        refunded ? "refunded" : "deducted", (int)a);
        }
    }
    return bad;
}

/*
 * With no client working and nothing left for the evictor to do (every
 * record drained), read the segment itself (segment.h):
 *  - no order id in two slots, and every key hashes to its slot's hash;
 *  - each slot's `passed` equals the number of keyed entries whose probe
 *    path runs over it (at least that when killed processes may have left
 *    increments behind);
 *  - order_count equals the keyed entries (without kills);
 *  - every id with a DEDUCT record is in the index or in the filter: an id
 *    in neither could be sold again.
 * Returns the number of breaches (printed).
 */
static long
audit_segment(const char *when, bool exact)
{
    char real[PATH_MAX];
    hs_header *h = NULL;
    hs_order_slot *table;
    uint32_t cap, used = atomic_load(&sh->next_id), keyed = 0, entries = 0;
    uint32_t *expect;
    uint8_t *indexed;
    long bad = 0;
    hs_result r;

    if (realpath(opt.dir, real) == NULL || (r = hs_segment_map(real, &h)) != HS_OK) {
        fprintf(stderr, "%s: cannot map the segment of %s\n", when, opt.dir);
        return 1;
    }
    if (used > opt.max_ids)
        used = opt.max_ids;
    cap = h->order_capacity;
    table = hs_order_table(h);
    expect = calloc(cap, sizeof(*expect));
    indexed = calloc(opt.max_ids, 1);
    for (uint32_t k = 0; k < cap; k++) {
        hs_order_slot *o = &table[k];
        unsigned state = HS_STATE_OF(atomic_load(&o->state));
        char id[HS_ORDER_ID_MAX + 1];
        uint32_t n;

        if (state < HS_INDEX_PENDING || state > HS_INDEX_REFUNDED)
            continue;
        keyed++;
        memcpy(id, o->order_id, o->order_len);
        id[o->order_len] = '\0';
        n = id_parse(id);
        if (n == UINT32_MAX || o->hash != hs_hash(id, o->order_len)) {
            if (bad++ < MAX_PRINTED)
                fprintf(stderr, "%s: slot %u holds a damaged key \"%s\"\n", when, k, id);
            continue;
        }
        if (indexed[n] && bad++ < MAX_PRINTED)
            fprintf(stderr, "%s: order %s is in two slots (one is %u)\n", when, id, k);
        indexed[n] = 1;
        entries += state != HS_INDEX_FAILED;
        for (uint32_t i = hs_order_home(h, o->hash); i != k; i = (i + 1) & (cap - 1))
            expect[i]++;
    }
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t passed = atomic_load(&table[i].passed);

        if ((exact ? passed != expect[i] : passed < expect[i]) && bad++ < MAX_PRINTED)
            fprintf(stderr, "%s: slot %u: passed %u, %u entries pass over it\n", when, i, passed,
                    expect[i]);
    }
    if (exact && atomic_load(&h->order_count) != keyed && bad++ < MAX_PRINTED)
        fprintf(stderr, "%s: order_count %u, %u keyed slots\n", when, atomic_load(&h->order_count),
                keyed);
    for (uint32_t n = 0; n < used; n++) {
        char id[24];
        size_t len;

        if (atomic_load(&sh->ids[n].led_deducts) == 0 || indexed[n])
            continue;
        len = id_name(n, id);
        if (!hs_filter_maybe(h, hs_hash(id, len)) && bad++ < MAX_PRINTED)
            fprintf(stderr,
                    "%s: order %s has a DEDUCT record but is neither in the index nor "
                    "in the filter\n",
                    when, id);
    }
    printf("  audit %s: %u keyed slots (%u not FAILED) of %u, %ld breaches\n", when, keyed, entries,
           cap, bad);
    free(expect);
    free(indexed);
    hs_segment_unmap(h);
    return bad;
}

/* Wait until the evictor has nothing left to do: order_count unchanged
 * for a second (passes run at least every 100 ms). */
static bool
wait_quiet(hs_client *c)
{
    double end = now_s() + 30, since = now_s();
    uint32_t last = UINT32_MAX;
    hs_status st;

    while (now_s() < end) {
        if (hs_get_status(c, &st) != HS_OK) {
            hsd_ctl_nap_ms(20);
            continue;
        }
        if (st.order_count != last) {
            last = st.order_count;
            since = now_s();
        } else if (now_s() - since >= 1.0) {
            return true;
        }
        hsd_ctl_nap_ms(20);
    }
    return false;
}

static int64_t
available_of(hs_client *c, int si)
{
    int64_t a = -1;

    for (int i = 0; i < 500; i++) {
        hs_result r = hs_available(c, skus[si], strlen(skus[si]), &a);
        if (r == HS_OK)
            return a;
        hsd_ctl_nap_ms(20);
    }
    return -1;
}

#endif /* HOTSTOCK_EVICT_ROLES_H */
