/*-------------------------------------------------------------------------
 *
 * crash_tool.c
 *      Low-level helpers of the crash suite: read a segment header, cut the
 *      queue the way a power loss would, build and inspect queue files.
 *
 *   crash_tool header DIR            the segment header as key=value lines
 *                                    (maps it directly: works while the
 *                                    daemon is stopped or dead)
 *   crash_tool powercut DIR LSN [zero|truncate]
 *                                    drop every queue record after LSN:
 *                                    in the file holding it, zero the bytes
 *                                    after it (default: the file keeps the
 *                                    size the writer allocated ahead, and
 *                                    a power loss leaves those blocks
 *                                    zero) or cut them off (a file that
 *                                    grew as it was written); delete the
 *                                    files that start after it
 *   crash_tool unlink DIR            remove the shm segment of DIR
 *   crash_tool mkqueue DIR N BYTES SEED
 *                                    write a consistent queue of N records
 *                                    (files rotated at BYTES) with the writer
 *   crash_tool layout DIR            every file and record: offsets, LSNs,
 *                                    types and deltas (decoded here)
 *   crash_tool setversion FILE V     rewrite a queue file header with format
 *                                    version V and a valid header checksum;
 *                                    V = next: the version after this
 *                                    build's (one it cannot read)
 *   crash_tool counters DIR SKU...   hs_available() of each SKU via a client
 *   crash_tool readq DIR FROM        read the queue with hs_queue_open/next
 *                                    and check every record returned
 *   crash_tool probe DIR SKU ORDER   deduct 1 unit (and wait until durable):
 *                                    prints the result name and message
 *
 * It shares the segment with a daemon only in `header` (read-only, plain
 * acquire loads of the published words) and `counters` (through
 * libhotstock).  The queue commands must run while no daemon writes DIR.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotstock.h"
#include "queue_file.h"
#include "segment.h"

static int
fail(const char *what)
{
    fprintf(stderr, "crash_tool: %s: %s\n", what, hs_last_error());
    return 1;
}

static int
read_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        fprintf(stderr, "crash_tool: open %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *len = (size_t)sb.st_size;
    *buf = malloc(*len ? *len : 1);
    size_t done = 0;
    while (done < *len) {
        ssize_t n = read(fd, *buf + done, *len - done);
        if (n <= 0) {
            fprintf(stderr, "crash_tool: read %s: %s\n", path, n ? strerror(errno) : "short");
            close(fd);
            free(*buf);
            return -1;
        }
        done += (size_t)n;
    }
    close(fd);
    return 0;
}

static int
cmd_header(const char *dir)
{
    char real[PATH_MAX];
    hs_header *h;
    if (!realpath(dir, real)) {
        fprintf(stderr, "crash_tool: realpath %s: %s\n", dir, strerror(errno));
        return 1;
    }
    hs_result r = hs_segment_map(real, &h);
    if (r != HS_OK) {
        printf("mapped=0\nresult=%s\n", hs_result_name(r));
        return 3;
    }
    uint64_t next = atomic_load_explicit(&h->next_lsn, memory_order_acquire);
    uint64_t now = hs_now_monotonic_ms();
    uint64_t hb = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    printf("mapped=1\n");
    printf("generation=%llu\n", (unsigned long long)h->generation);
    printf("daemon_pid=%d\n", h->daemon_pid);
    printf("state=%u\n", atomic_load_explicit(&h->state, memory_order_acquire));
    printf("fenced=%d\n", (next & HS_LSN_FENCED) != 0);
    printf("next_lsn=%llu\n", (unsigned long long)(next & ~HS_LSN_FENCED));
    printf("spilled_lsn=%llu\n",
           (unsigned long long)atomic_load_explicit(&h->spilled_lsn, memory_order_acquire));
    printf("durable_lsn=%llu\n",
           (unsigned long long)atomic_load_explicit(&h->durable_lsn, memory_order_acquire));
    printf("applied_lsn=%llu\n",
           (unsigned long long)atomic_load_explicit(&h->applied_lsn, memory_order_acquire));
    printf("checkpoint_lsn=%llu\n",
           (unsigned long long)atomic_load_explicit(&h->checkpoint_lsn, memory_order_acquire));
    printf("evicted_lsn=%llu\n", (unsigned long long)h->evicted_lsn);
    printf("spill_errno=%d\n", atomic_load_explicit(&h->spill_errno, memory_order_acquire));
    printf("heartbeat_age_ms=%llu\n", (unsigned long long)(now > hb ? now - hb : 0));
    printf("abandoned_records=%llu\n",
           (unsigned long long)atomic_load_explicit(&h->abandoned_records, memory_order_relaxed));
    hs_segment_unmap(h);
    return 0;
}

/*
 * Find the byte offset just past the last record with LSN <= upto in the
 * file (records decoded one by one from the header on).  Returns the
 * offset; *last gets the last LSN kept.
 */
static size_t
cut_offset(const uint8_t *buf, size_t len, hs_lsn upto, hs_lsn *last)
{
    size_t off = HS_QF_HEADER_SIZE;
    *last = 0;
    if (len < HS_QF_HEADER_SIZE)
        return len;
    while (off < len) {
        hs_record rec;
        size_t rlen;
        if (hs_qf_decode(buf + off, len - off, &rec, &rlen) != HS_QF_OK)
            break;
        if (rec.lsn > upto)
            break;
        *last = rec.lsn;
        off += rlen;
    }
    return off;
}

static int
cmd_powercut(const char *dir, hs_lsn upto, bool truncate_it)
{
    hs_qf_file *files;
    int n = hs_qf_list(dir, &files);
    if (n < 0)
        return fail("list queue");
    for (int i = 0; i < n; i++) {
        const char *path = files[i].path;
        if (files[i].first_lsn > upto) {
            if (unlink(path) != 0) {
                fprintf(stderr, "crash_tool: unlink %s: %s\n", path, strerror(errno));
                return 1;
            }
            printf("deleted %s\n", path);
            continue;
        }
        uint8_t *buf;
        size_t len;
        hs_lsn last;
        if (read_file(path, &buf, &len) != 0)
            return 1;
        size_t off = cut_offset(buf, len, upto, &last);
        free(buf);
        if (off < len && truncate_it) {
            if (truncate(path, (off_t)off) != 0) {
                fprintf(stderr, "crash_tool: truncate %s: %s\n", path, strerror(errno));
                return 1;
            }
            printf("truncated %s at %zu (was %zu bytes, last lsn kept %llu)\n", path, off, len,
                   (unsigned long long)last);
        } else if (off < len) {
            uint8_t *zeros = calloc(1, len - off);
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (zeros == NULL || fd < 0 || hs_pwrite_all(fd, zeros, len - off, off) != 0) {
                fprintf(stderr, "crash_tool: zero %s from offset %zu: %s\n", path, off,
                        zeros == NULL ? "out of memory" : strerror(errno));
                return 1;
            }
            free(zeros);
            close(fd);
            printf("zeroed %s from offset %zu to its end at %zu (last lsn kept %llu)\n", path, off,
                   len, (unsigned long long)last);
        }
    }
    free(files);
    sync();
    return 0;
}

static int
cmd_unlink(const char *dir)
{
    char real[PATH_MAX];
    if (!realpath(dir, real)) {
        fprintf(stderr, "crash_tool: realpath %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (hs_segment_unlink(real) != 0)
        printf("no segment\n");
    return 0;
}

static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/*
 * A consistent history of n records: three SKUs put at 1000 units, then
 * deductions (unique order ids), refunds of earlier deductions, restocks
 * and the odd noop.
 */
static int
cmd_mkqueue(const char *dir, uint64_t n, uint64_t segment_bytes, uint64_t seed)
{
    static const char *skus[] = {"k-hot", "k-a", "k-b"};
    char qdir[PATH_MAX];
    snprintf(qdir, sizeof(qdir), "%s/%s", dir, HS_QF_SUBDIR);
    mkdir(dir, 0700);
    mkdir(qdir, 0700);
    hs_qf_writer *w = hs_qf_writer_open(dir, 0, segment_bytes);
    if (!w)
        return fail("writer open");
    uint64_t s = seed * 2654435761u + 1;
    /* deducted orders not refunded yet: (sku, qty) by order number */
    struct {
        uint64_t no;
        int sku;
        int64_t qty;
    } *open_orders = calloc(n + 1, sizeof(*open_orders));
    uint64_t nopen = 0, deducted = 0;
    for (uint64_t lsn = 1; lsn <= n; lsn++) {
        hs_record rec;
        memset(&rec, 0, sizeof(rec));
        rec.lsn = lsn;
        rec.timestamp_us = 1700000000000000ULL + lsn;
        uint64_t r = rng_next(&s) % 100;
        int sku = (int)(rng_next(&s) % 3);
        if (lsn <= 3) {
            rec.type = HS_REC_PUT_SKU;
            sku = (int)(lsn - 1);
            rec.qty = 1000;
        } else if (r < 65) {
            rec.type = HS_REC_DEDUCT;
            rec.qty = 1 + (int64_t)(rng_next(&s) % 3);
            rec.xid = r < 20 ? 1000 + lsn : 0;
            open_orders[nopen].no = ++deducted;
            open_orders[nopen].sku = sku;
            open_orders[nopen].qty = rec.qty;
            nopen++;
            snprintf(rec.order_id, sizeof(rec.order_id), "o%llu", (unsigned long long)deducted);
        } else if (r < 85 && nopen > 0) {
            uint64_t k = rng_next(&s) % nopen;
            rec.type = HS_REC_REFUND;
            sku = open_orders[k].sku;
            rec.qty = open_orders[k].qty;
            snprintf(rec.order_id, sizeof(rec.order_id), "o%llu",
                     (unsigned long long)open_orders[k].no);
            open_orders[k] = open_orders[--nopen];
        } else if (r < 95) {
            rec.type = HS_REC_ADD_STOCK;
            rec.qty = 1 + (int64_t)(rng_next(&s) % 10);
        } else {
            rec.type = HS_REC_NOOP;
            sku = -1;
        }
        if (sku >= 0) {
            rec.sku_len = (uint8_t)strlen(skus[sku]);
            memcpy(rec.sku, skus[sku], rec.sku_len);
        }
        rec.order_len = (uint8_t)strlen(rec.order_id);
        if (hs_qf_writer_append(w, &rec) != 0)
            return fail("writer append");
    }
    free(open_orders);
    if (hs_qf_writer_write(w) != 0 || hs_qf_writer_sync(w) != 0)
        return fail("writer flush");
    hs_qf_writer_close(w);
    return 0;
}

static const char *
type_name(int t)
{
    switch (t) {
    case HS_REC_DEDUCT:
        return "deduct";
    case HS_REC_REFUND:
        return "refund";
    case HS_REC_PUT_SKU:
        return "put_sku";
    case HS_REC_ADD_STOCK:
        return "add_stock";
    case HS_REC_NOOP:
        return "noop";
    case HS_REC_RESERVE:
        return "reserve";
    case HS_REC_CONFIRM:
        return "confirm";
    case HS_REC_CANCEL:
        return "cancel";
    case HS_REC_EXPIRE:
        return "expire";
    case HS_REC_SALE:
        return "sale";
    case HS_REC_BUYER:
        return "buyer";
    default:
        return "?";
    }
}

/* delta the record applies to its SKU's available */
static long long
record_delta(const hs_record *rec)
{
    switch (rec->type) {
    case HS_REC_DEDUCT:
    case HS_REC_RESERVE:
        return -rec->qty;
    case HS_REC_REFUND:
    case HS_REC_PUT_SKU:
    case HS_REC_ADD_STOCK:
    case HS_REC_CANCEL:
    case HS_REC_EXPIRE:
        return rec->qty;
    default: /* CONFIRM, NOOP, SALE (its qty is starts_at), BUYER: no counter change */
        return 0;
    }
}

static int
cmd_layout(const char *dir)
{
    hs_qf_file *files;
    int n = hs_qf_list(dir, &files);
    if (n < 0)
        return fail("list queue");
    for (int i = 0; i < n; i++) {
        uint8_t *buf;
        size_t len;
        if (read_file(files[i].path, &buf, &len) != 0)
            return 1;
        hs_lsn first = 0;
        char why[256] = "";
        bool ok = hs_qf_check_header(buf, len, &first, why, sizeof(why));
        printf("file\t%s\t%llu\t%zu\t%s\n", files[i].path, (unsigned long long)files[i].first_lsn,
               len, ok ? "ok" : why);
        size_t off = HS_QF_HEADER_SIZE;
        while (ok && off < len) {
            hs_record rec;
            size_t rlen = 0;
            hs_qf_decode_result d = hs_qf_decode(buf + off, len - off, &rec, &rlen);
            if (d != HS_QF_OK) {
                printf("end\t%s\t%zu\t%s\n", files[i].path, off, hs_qf_decode_result_name(d));
                break;
            }
            printf("rec\t%s\t%zu\t%zu\t%llu\t%s\t%s\t%lld\t%s\n", files[i].path, off, rlen,
                   (unsigned long long)rec.lsn, type_name(rec.type), rec.sku[0] ? rec.sku : "-",
                   record_delta(&rec), rec.order_id[0] ? rec.order_id : "-");
            off += rlen;
        }
        if (ok && off >= len)
            printf("end\t%s\t%zu\teof\n", files[i].path, off);
        free(buf);
    }
    free(files);
    return 0;
}

static int
cmd_setversion(const char *path, uint32_t version)
{
    uint8_t *buf;
    size_t len;
    if (read_file(path, &buf, &len) != 0)
        return 1;
    hs_lsn first;
    char why[256];
    if (!hs_qf_check_header(buf, len, &first, why, sizeof(why))) {
        fprintf(stderr, "crash_tool: %s: header already bad: %s\n", path, why);
        return 1;
    }
    /* Build a valid header, then patch the version and recompute the header
     * checksum as the format essay defines it (see queue_file.c). */
    uint8_t hdr[HS_QF_HEADER_SIZE];
    hs_qf_encode_header(hdr, first);
    uint32_t v = version;
    memcpy(hdr + 8, &v, 4); /* format version follows the 8-byte magic */
    uint32_t crc = hs_crc32c(0, hdr, HS_QF_HEADER_SIZE - 4);
    memcpy(hdr + HS_QF_HEADER_SIZE - 4, &crc, 4);
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
        fprintf(stderr, "crash_tool: write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fsync(fd);
    close(fd);
    free(buf);
    return 0;
}

static int
cmd_counters(const char *dir, int nsku, char **sku)
{
    hs_client *c;
    hs_result r = hs_attach(dir, &c);
    if (r != HS_OK) {
        fprintf(stderr, "crash_tool: attach %s: %s: %s\n", dir, hs_result_name(r), hs_last_error());
        return 1;
    }
    for (int i = 0; i < nsku; i++) {
        int64_t available = 0;
        r = hs_available(c, sku[i], strlen(sku[i]), &available);
        if (r == HS_OK)
            printf("%s\t%lld\n", sku[i], (long long)available);
        else
            printf("%s\t%s\n", sku[i], hs_result_name(r));
    }
    hs_detach(c);
    return 0;
}

static int
cmd_readq(const char *dir, hs_lsn from)
{
    hs_queue_reader *r;
    hs_result res = hs_queue_open(dir, from, &r);
    if (res != HS_OK) {
        printf("open\t%s\t%s\n", hs_result_name(res), hs_last_error());
        return 0;
    }
    hs_record rec;
    uint64_t count = 0;
    hs_lsn last = 0, expect = from;
    int got;
    while ((got = hs_queue_next(r, HS_LSN_MAX, &rec)) == 1) {
        if (rec.lsn != expect) {
            printf("violation\tlsn %llu returned where %llu was expected\n",
                   (unsigned long long)rec.lsn, (unsigned long long)expect);
            hs_queue_close(r);
            return 4;
        }
        expect++;
        last = rec.lsn;
        count++;
    }
    printf("read\t%llu\t%llu\t%d\t%s\n", (unsigned long long)count, (unsigned long long)last, got,
           got < 0 ? hs_last_error() : "");
    hs_queue_close(r);
    return 0;
}

static int
cmd_probe(const char *dir, const char *sku, const char *order_id)
{
    hs_client *c = NULL;
    hs_lsn lsn = 0;
    hs_result r = hs_attach(dir, &c);
    if (r == HS_OK) {
        r = hs_deduct(c, sku, strlen(sku), 1, order_id, strlen(order_id), 0, &lsn);
        if (r == HS_OK)
            r = hs_wait_durable(c, lsn, 5000);
    }
    printf("%s\t%s\n", hs_result_name(r), r == HS_OK ? "" : hs_last_error());
    if (c)
        hs_detach(c);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "header") == 0)
        return cmd_header(argv[2]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "powercut") == 0 &&
        (argc == 4 || strcmp(argv[4], "zero") == 0 || strcmp(argv[4], "truncate") == 0))
        return cmd_powercut(argv[2], strtoull(argv[3], NULL, 10),
                            argc == 5 && strcmp(argv[4], "truncate") == 0);
    if (argc == 3 && strcmp(argv[1], "unlink") == 0)
        return cmd_unlink(argv[2]);
    if (argc == 6 && strcmp(argv[1], "mkqueue") == 0)
        return cmd_mkqueue(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10),
                           strtoull(argv[5], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "layout") == 0)
        return cmd_layout(argv[2]);
    if (argc == 4 && strcmp(argv[1], "setversion") == 0)
        return cmd_setversion(argv[2], strcmp(argv[3], "next") == 0
                                           ? HS_QF_FORMAT_VERSION + 1
                                           : (uint32_t)strtoul(argv[3], NULL, 10));
    if (argc >= 4 && strcmp(argv[1], "counters") == 0)
        return cmd_counters(argv[2], argc - 3, argv + 3);
    if (argc == 5 && strcmp(argv[1], "probe") == 0)
        return cmd_probe(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "readq") == 0)
        return cmd_readq(argv[2], strtoull(argv[3], NULL, 10));
    fprintf(stderr, "usage: crash_tool header|powercut|unlink|mkqueue|layout|setversion|counters|"
                    "readq|probe ... (see the top of tests/crash/crash_tool.c)\n");
    return 2;
}
