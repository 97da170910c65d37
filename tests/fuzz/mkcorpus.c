/*-------------------------------------------------------------------------
 *
 * mkcorpus.c
 *      Write the seed corpus of fuzz_queue: queue directories of several
 *      shapes made by the real writer (hs_qf_writer), each flattened into
 *      one input (its files concatenated in LSN order, which fuzz_queue
 *      splits again at every file magic).
 *
 *   mkcorpus OUTDIR
 *
 * Shapes: one record; a mixed file with the longest strings; three files
 * (rotation); a queue that starts at LSN 101 (older files recycled); a file
 * holding only its header; a torn tail (last record cut in half); a newest
 * file with a zeroed header; a newest file with zeros after its records
 * (the writer's preallocated space, as a killed daemon leaves it).  Deterministic: the same inputs every run
 * except the header's informational creation time, which is zeroed.
 *
 * Single-threaded, no shared state.
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotstock.h"
#include "queue_file.h"
#include "segment.h"

static void
die(const char *what)
{
    fprintf(stderr, "mkcorpus: %s: %s\n", what, hs_last_error());
    exit(1);
}

static void
fill(hs_record *rec, hs_lsn lsn, int kind, int longest)
{
    static const char *skus[] = {"sku-hot", "sku-a", "b"};
    memset(rec, 0, sizeof(*rec));
    rec->lsn = lsn;
    rec->timestamp_us = 1700000000000000ULL + lsn;
    rec->type = (uint8_t)(1 + kind % 5);
    if (longest) {
        memset(rec->sku, 'S', HS_SKU_MAX);
        rec->sku_len = HS_SKU_MAX;
    } else {
        rec->sku_len = (uint8_t)strlen(skus[lsn % 3]);
        memcpy(rec->sku, skus[lsn % 3], rec->sku_len);
    }
    switch (rec->type) {
    case HS_REC_DEDUCT:
    case HS_REC_REFUND:
        rec->qty = 1 + (int64_t)(lsn % 3);
        rec->xid = lsn % 2 ? 0 : 700 + lsn;
        if (longest) {
            memset(rec->order_id, 'O', HS_ORDER_ID_MAX);
            rec->order_len = HS_ORDER_ID_MAX;
        } else {
            rec->order_len =
                (uint8_t)snprintf(rec->order_id, sizeof(rec->order_id), "order-%06" PRIu64, lsn);
        }
        break;
    case HS_REC_PUT_SKU:
        rec->qty = 100;
        break;
    case HS_REC_ADD_STOCK:
        rec->qty = lsn % 2 ? 5 : -3;
        break;
    default: /* noop: no strings */
        rec->sku_len = 0;
        rec->sku[0] = 0;
        break;
    }
}

/* Write records first..last to a fresh queue in dir. */
static void
write_queue(const char *dir, hs_lsn first, hs_lsn last, uint64_t segment_bytes, int longest)
{
    char q[4096];
    snprintf(q, sizeof(q), "%s/%s", dir, HS_QF_SUBDIR);
    mkdir(dir, 0700);
    mkdir(q, 0700);
    hs_qf_writer *w = hs_qf_writer_open(dir, first - 1, segment_bytes);
    if (!w)
        die("writer open");
    for (hs_lsn lsn = first; lsn <= last; lsn++) {
        hs_record rec;
        fill(&rec, lsn, (int)lsn, longest && lsn % 4 == 0);
        if (hs_qf_writer_append(w, &rec) != 0)
            die("append");
    }
    if (hs_qf_writer_write(w) != 0 || hs_qf_writer_sync(w) != 0)
        die("flush");
    hs_qf_writer_close(w);
}

/* Concatenate dir's queue files into out; zero the creation times (bytes
 * 24..31 of each header) and re-seal the header CRC.  `tear`: drop that
 * many bytes from the end; `zero_last_header`: zero the newest header;
 * `zeros`: then add that many zero bytes. */
static void
flatten(const char *dir, const char *out, size_t tear, int zero_last_header, size_t zeros)
{
    hs_qf_file *files;
    int n = hs_qf_list(dir, &files);
    if (n < 0)
        die("list");
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    size_t last_start = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i].path, "rb");
        if (!f)
            die(files[i].path);
        size_t start = len;
        len += fread(buf + len, 1, cap - len, f);
        fclose(f);
        if (len - start >= HS_QF_HEADER_SIZE) {
            memset(buf + start + 24, 0, 8);
            uint32_t crc = hs_crc32c(0, buf + start, 60);
            for (int k = 0; k < 4; k++)
                buf[start + 60 + k] = (uint8_t)(crc >> (8 * k));
        }
        last_start = start;
    }
    if (zero_last_header && n > 0)
        memset(buf + last_start, 0, HS_QF_HEADER_SIZE);
    len = tear < len ? len - tear : 0;
    memset(buf + len, 0, zeros);
    len += zeros;
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "mkcorpus: write %s: %s\n", out, strerror(errno));
        exit(1);
    }
    free(buf);
    free(files);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkcorpus OUTDIR\n");
        return 2;
    }
    char tmpl[] = "/tmp/hsmkcorpus.XXXXXX";
    char *tmp = mkdtemp(tmpl);
    if (!tmp) {
        perror("mkcorpus: mkdtemp");
        return 1;
    }
    mkdir(argv[1], 0755);
    struct {
        const char *name;
        hs_lsn first, last;
        uint64_t segment_bytes;
        int longest;
        size_t tear;
        int zero_last_header;
        size_t zeros;
    } shapes[] = {
        {"one_record", 1, 1, 0, 0, 0, 0},
        {"mixed_longest", 1, 24, 0, 1, 0, 0},
        {"three_files", 1, 30, 700, 0, 0, 0},
        {"starts_at_101", 101, 112, 0, 0, 0, 0},
        {"header_only", 1, 0, 0, 0, 0, 0},
        {"torn_tail", 1, 10, 0, 0, 37, 0},
        {"zeroed_newest_header", 1, 20, 600, 0, 0, 1},
        {"preallocated_tail", 1, 10, 0, 0, 0, 0, 4096},
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        char dir[4096], out[4096];
        snprintf(dir, sizeof(dir), "%s/%s", tmp, shapes[i].name);
        snprintf(out, sizeof(out), "%s/%s", argv[1], shapes[i].name);
        if (shapes[i].last >= shapes[i].first) {
            write_queue(dir, shapes[i].first, shapes[i].last, shapes[i].segment_bytes,
                        shapes[i].longest);
        } else {
            /* a header and nothing else */
            char q[4096], path[4200];
            uint8_t hdr[HS_QF_HEADER_SIZE];
            snprintf(q, sizeof(q), "%s/%s", dir, HS_QF_SUBDIR);
            mkdir(dir, 0700);
            mkdir(q, 0700);
            snprintf(path, sizeof(path), "%s/%016" PRIx64 ".hsq", q, shapes[i].first);
            hs_qf_encode_header(hdr, shapes[i].first);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(hdr, 1, sizeof(hdr), f) != sizeof(hdr) || fclose(f) != 0)
                die(path);
        }
        flatten(dir, out, shapes[i].tear, shapes[i].zero_last_header, shapes[i].zeros);
    }
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "mkcorpus: could not remove %s\n", tmp);
    return 0;
}
