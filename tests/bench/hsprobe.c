/*-------------------------------------------------------------------------
 *
 * hsprobe.c
 *      The benchmark's window on a running hotstockd: status, readiness
 *      after a restart, and the size of the shared slots.
 *
 * Design note: a read-only client of the segment.  It shares the segment
 * with the daemon, the PostgreSQL backends and the drain, and writes
 * nothing in it: hs_attach(), hs_get_status() and hs_detach() through
 * libhotstock, and for prefault a mapping of its own (hs_segment_map) that
 * only asks the kernel to allocate the pages.  The slot sizes come from
 * segment.h's structs (fixed at 128 bytes by static assertions there);
 * nothing else of the layout is used.  It must run as the daemon's OS user: the segment's name
 *carries that user's uid.
 *
 *   hsprobe status DIR
 *       hs_get_status() as key=value lines; exit 1 when no daemon serves DIR.
 *   hsprobe wait-ready DIR MIN_GENERATION TIMEOUT_MS
 *       attach every millisecond until a READY segment of generation >=
 *       MIN_GENERATION answers; prints waited_ms and generation.  Exit 1 on
 *       timeout.  Used to time a daemon restart: a killed daemon's old
 *       segment still looks alive for a few seconds (its heartbeat is
 *       fresh), so the generation tells the new one apart.
 *   hsprobe prefault DIR
 *       allocate every page of DIR's segment now (MADV_POPULATE_WRITE
 *       through a mapping of its own; it writes nothing), so that the
 *       cells measure the steady state and not the kernel clearing the
 *       order index page by page as new order ids land on it.  Best
 *       effort: prints what it did; exit 1 only when there is no segment.
 *   hsprobe sizes
 *       bytes per SKU slot, per order slot and per ring slot.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hotstock.h"
#include "segment.h"

/* Milliseconds on CLOCK_MONOTONIC (own copy: the bench does not depend on
 * segment.c's helpers being exported). */
static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
print_status(const hs_status *s)
{
    printf("generation=%" PRIu64 "\n", s->generation);
    printf("daemon_pid=%d\n", (int)s->daemon_pid);
    printf("state=%u\n", s->state);
    printf("next_lsn=%" PRIu64 "\n", s->next_lsn);
    printf("spilled_lsn=%" PRIu64 "\n", s->spilled_lsn);
    printf("durable_lsn=%" PRIu64 "\n", s->durable_lsn);
    printf("applied_lsn=%" PRIu64 "\n", s->applied_lsn);
    printf("checkpoint_lsn=%" PRIu64 "\n", s->checkpoint_lsn);
    printf("evicted_lsn=%" PRIu64 "\n", s->evicted_lsn);
    printf("sku_count=%u\n", s->sku_count);
    printf("sku_capacity=%u\n", s->sku_capacity);
    printf("order_count=%u\n", s->order_count);
    printf("order_capacity=%u\n", s->order_capacity);
    printf("ring_used=%u\n", s->ring_used);
    printf("ring_capacity=%u\n", s->ring_capacity);
    printf("heartbeat_age_ms=%" PRIu64 "\n", s->heartbeat_age_ms);
    printf("abandoned_records=%" PRIu64 "\n", s->abandoned_records);
}

/* status DIR: 0 printed, 1 no daemon (message on stderr). */
static int
cmd_status(const char *dir)
{
    hs_client *c;
    hs_status s;
    hs_result r = hs_attach(dir, &c);
    if (r != HS_OK) {
        fprintf(stderr, "hsprobe: attach %s: %s (%s)\n", dir, hs_result_name(r), hs_last_error());
        return 1;
    }
    r = hs_get_status(c, &s);
    if (r != HS_OK) {
        fprintf(stderr, "hsprobe: status %s: %s (%s)\n", dir, hs_result_name(r), hs_last_error());
        hs_detach(c);
        return 1;
    }
    print_status(&s);
    hs_detach(c);
    return 0;
}

/* wait-ready DIR MIN_GEN TIMEOUT_MS: 0 when a READY segment of generation
 * >= min_gen answered, 1 on timeout. */
static int
cmd_wait_ready(const char *dir, uint64_t min_gen, double timeout_ms)
{
    double start = now_ms();
    const char *last = "no attempt";
    for (;;) {
        hs_client *c;
        hs_status s;
        hs_result r = hs_attach(dir, &c);
        if (r == HS_OK) {
            r = hs_get_status(c, &s);
            hs_detach(c);
            if (r == HS_OK && s.generation >= min_gen && s.state == HS_SEGMENT_READY) {
                printf("waited_ms=%.1f\ngeneration=%" PRIu64 "\n", now_ms() - start, s.generation);
                return 0;
            }
            last = r == HS_OK ? "old generation" : hs_result_name(r);
        } else {
            last = hs_result_name(r);
        }
        if (now_ms() - start > timeout_ms) {
            fprintf(stderr,
                    "hsprobe: no READY segment of generation >= %" PRIu64
                    " for %s after %.0f ms (last: %s)\n",
                    min_gen, dir, timeout_ms, last);
            return 1;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* prefault DIR: 0 when the segment was mapped (populated or not), 1 when
 * there is none. */
static int
cmd_prefault(const char *dir)
{
    char real[PATH_MAX];
    hs_header *h;
    double start = now_ms();
    if (realpath(dir, real) == NULL) {
        fprintf(stderr, "hsprobe: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    hs_result r = hs_segment_map(real, &h);
    if (r != HS_OK) {
        fprintf(stderr, "hsprobe: map the segment of %s: %s (%s)\n", real, hs_result_name(r),
                hs_last_error());
        return 1;
    }
#ifdef MADV_POPULATE_WRITE
    if (madvise(h, h->total_size, MADV_POPULATE_WRITE) != 0)
        printf("prefault=failed (%s)\n", strerror(errno));
    else
        printf("prefault=%" PRIu64 " bytes in %.0f ms\n", h->total_size, now_ms() - start);
#else
    printf("prefault=unsupported (no MADV_POPULATE_WRITE)\n");
#endif
    hs_segment_unmap(h);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "status") == 0)
        return cmd_status(argv[2]);
    if (argc == 5 && strcmp(argv[1], "wait-ready") == 0)
        return cmd_wait_ready(argv[2], strtoull(argv[3], NULL, 10), atof(argv[4]));
    if (argc == 3 && strcmp(argv[1], "prefault") == 0)
        return cmd_prefault(argv[2]);
    if (argc == 2 && strcmp(argv[1], "sizes") == 0) {
        printf("sku_slot_bytes=%zu\norder_slot_bytes=%zu\nring_slot_bytes=%zu\n",
               sizeof(hs_sku_slot), sizeof(hs_order_slot), sizeof(hs_ring_slot));
        return 0;
    }
    fprintf(stderr, "usage: hsprobe status DIR | wait-ready DIR MIN_GENERATION TIMEOUT_MS | "
                    "prefault DIR | sizes\n");
    return 2;
}
