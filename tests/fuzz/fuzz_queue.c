/*-------------------------------------------------------------------------
 *
 * fuzz_queue.c
 *      libFuzzer target for the queue reader: the record decoder, the
 *      recovery scan (with and without cutting a torn tail) and the drain's
 *      reader (hs_queue_open/next) on a directory built from the input.
 *
 * Build and run: tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,
 * undefined).  Sanitizers catch out-of-bounds reads, leaks and undefined
 * behaviour; the target itself asserts (abort) the properties:
 *
 *   1. every record hs_qf_decode() accepts lies inside the bytes it was
 *      given, its checksum verifies when recomputed here from the format
 *      essay (CRC32C of bytes [4, total_len) stored at offset 0), and it
 *      re-encodes to exactly those bytes;
 *   2. every record the scan visits or the reader returns is such a record
 *      of the input (its encoding occurs in the input), with dense LSNs;
 *   3. the reader returns a prefix of what the scan visits (never a record
 *      the scan refused or did not reach);
 *   4. cutting the tail (cut_tail) answers like the scan without cutting,
 *      and a second scan afterwards is clean: nothing left to cut, same
 *      last LSN.
 *
 * THE INPUT is a queue directory: it is split before every occurrence of
 * the file magic "HSTKQUE1"; each piece is one queue file, named after the
 * first LSN in its header when that header is valid, else after the LSN
 * following the previous file's name (garbage before the first magic is a
 * file of its own).  The seed corpus (tests/fuzz/corpus/, made by
 * mkcorpus.c with the real writer) starts it on valid files.
 *
 * FUZZ_NO_PREFIX_CHECK=1 in the environment turns property 3 off (to look
 * for other failures past a known one).
 *
 * Single-threaded: libFuzzer calls it from one thread; the scratch
 * directory is private to the process.
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotstock.h"
#include "queue_file.h"
#include "segment.h"

#define MAX_FILES 8
#define MAX_SCANNED 4096
#define MAX_READS 100000

static char scratch[256];   /* the data directory */
static char queue_dir[300]; /* scratch/queue */

static bool prefix_check = true;
static const uint8_t *input;
static size_t input_len;

/* encodings of the records the scan visited, in order */
static uint8_t *scanned[MAX_SCANNED];
static size_t scanned_len[MAX_SCANNED];
static size_t scanned_count;
static bool scanned_overflow;

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_queue: property failed: %s: ", #cond);                           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
clear_queue_dir(void)
{
    DIR *d = opendir(queue_dir);
    struct dirent *de;
    char path[600];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", queue_dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static void
write_file(hs_lsn name, const uint8_t *p, size_t n)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%016" PRIx64 ".hsq", queue_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return; /* two pieces with one name: keep the first */
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    close(fd);
}

/* Property 1 for the record hs_qf_decode() accepted at buf[0..len). */
static void
check_decoded(const uint8_t *buf, size_t avail, const hs_record *rec, size_t len)
{
    uint8_t again[HS_QF_RECORD_MAX];
    REQUIRE(len >= HS_QF_RECORD_HEADER_SIZE && len <= avail && len % 8 == 0, "len %zu of %zu bytes",
            len, avail);
    REQUIRE(le32(buf + 4) == len, "total_len field %u, decoded len %zu", le32(buf + 4), len);
    REQUIRE(le32(buf) == hs_crc32c(0, buf + 4, len - 4), "accepted a record whose CRC fails");
    REQUIRE(rec->sku_len <= HS_SKU_MAX && rec->order_len <= HS_ORDER_ID_MAX, "string lengths");
    REQUIRE(strlen(rec->sku) <= rec->sku_len && rec->sku[rec->sku_len] == 0, "sku not terminated");
    REQUIRE(rec->order_id[rec->order_len] == 0, "order id not terminated");
    REQUIRE(rec->type >= HS_REC_DEDUCT && rec->type <= HS_REC_BUYER, "type %u", rec->type);
    size_t n = hs_qf_encode(rec, again);
    REQUIRE(n == len && memcmp(again, buf, len) == 0,
            "decoded record does not re-encode to its bytes");
}

/* Property 2: rec's encoding occurs in the input.  Returns it (malloc'd). */
static uint8_t *
encoding_in_input(const hs_record *rec, size_t *len)
{
    uint8_t *enc = malloc(HS_QF_RECORD_MAX);
    *len = hs_qf_encode(rec, enc);
    REQUIRE(memmem(input, input_len, enc, *len) != NULL,
            "record LSN %" PRIu64 " returned that is not a valid record of the input", rec->lsn);
    return enc;
}

static hs_lsn scan_prev;

static int
scan_visit(const hs_record *rec, void *arg)
{
    size_t len;
    (void)arg;
    REQUIRE(scan_prev == 0 || rec->lsn == scan_prev + 1, "scan LSN %" PRIu64 " after %" PRIu64,
            rec->lsn, scan_prev);
    scan_prev = rec->lsn;
    uint8_t *enc = encoding_in_input(rec, &len);
    if (scanned_count < MAX_SCANNED) {
        scanned[scanned_count] = enc;
        scanned_len[scanned_count++] = len;
    } else {
        scanned_overflow = true;
        free(enc);
    }
    return 0;
}

static void
free_scanned(void)
{
    for (size_t i = 0; i < scanned_count; i++)
        free(scanned[i]);
    scanned_count = 0;
    scanned_overflow = false;
}

static void
decode_everywhere(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy: any read past it is caught by ASan */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    for (size_t off = 0; off < size; off += 8) {
        hs_record rec;
        size_t len = 0;
        if (hs_qf_decode(buf + off, size - off, &rec, &len) == HS_QF_OK)
            check_decoded(buf + off, size - off, &rec, len);
    }
    hs_lsn first;
    char why[256];
    if (hs_qf_check_header(buf, size, &first, why, sizeof(why)))
        REQUIRE(first >= 1 && le32(buf + 60) == hs_crc32c(0, buf, 60), "accepted a bad header");
    else
        REQUIRE(strlen(why) > 0, "refused a header without saying why");
    free(buf);
}

/* Split the input into queue files (see the top of this file). */
static void
build_directory(const uint8_t *data, size_t size)
{
    static const uint8_t magic[8] = {'H', 'S', 'T', 'K', 'Q', 'U', 'E', '1'};
    size_t starts[MAX_FILES + 1];
    int n = 0;

    clear_queue_dir();
    if (size == 0)
        return;
    starts[n++] = 0;
    for (size_t off = 1; off + 8 <= size && n < MAX_FILES; off++)
        if (memcmp(data + off, magic, 8) == 0)
            starts[n++] = off;
    starts[n] = size;
    hs_lsn name = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = data + starts[i];
        size_t len = starts[i + 1] - starts[i];
        hs_lsn first;
        char why[256];
        if (hs_qf_check_header(p, len, &first, why, sizeof(why)) && first > name)
            name = first;
        else
            name = name + 1;
        write_file(name, p, len);
    }
}

static void
check_reader(hs_lsn from, bool compare)
{
    hs_queue_reader *r = NULL;
    hs_result res = hs_queue_open(scratch, from, &r);
    if (res != HS_OK) {
        REQUIRE(r == NULL, "failed open left a reader");
        return;
    }
    hs_record rec;
    hs_lsn prev = 0;
    size_t i = 0;
    int got = 0;
    for (int k = 0; k < MAX_READS && (got = hs_queue_next(r, HS_LSN_MAX, &rec)) == 1; k++, i++) {
        size_t len;
        REQUIRE(prev == 0 || rec.lsn == prev + 1, "reader LSN %" PRIu64 " after %" PRIu64, rec.lsn,
                prev);
        REQUIRE(rec.lsn >= from, "reader returned LSN %" PRIu64 " below from %" PRIu64, rec.lsn,
                from);
        prev = rec.lsn;
        uint8_t *enc = encoding_in_input(&rec, &len);
        if (compare && prefix_check && !scanned_overflow) {
            REQUIRE(i < scanned_count,
                    "reader returned LSN %" PRIu64 " beyond the %zu records the scan accepted",
                    rec.lsn, scanned_count);
            REQUIRE(scanned_len[i] == len && memcmp(scanned[i], enc, len) == 0,
                    "reader record %zu (LSN %" PRIu64 ") differs from the scan's", i, rec.lsn);
        }
        free(enc);
    }
    REQUIRE(got == 0 || got == -1 || got == 1, "hs_queue_next returned %d", got);
    if (got == -1)
        REQUIRE(strlen(hs_last_error()) > 0, "corruption reported without a message");
    hs_queue_close(r);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = getenv("FUZZ_SCRATCH");
    const char *np = getenv("FUZZ_NO_PREFIX_CHECK");
    prefix_check = !(np && np[0] == '1');
    snprintf(scratch, sizeof(scratch), "%s/hsfuzz.XXXXXX", base ? base : "/dev/shm");
    if (!mkdtemp(scratch)) {
        snprintf(scratch, sizeof(scratch), "/tmp/hsfuzz.XXXXXX");
        if (!mkdtemp(scratch)) {
            perror("fuzz_queue: mkdtemp");
            exit(1);
        }
    }
    snprintf(queue_dir, sizeof(queue_dir), "%s/%s", scratch, HS_QF_SUBDIR);
    mkdir(queue_dir, 0700);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input = data;
    input_len = size;

    decode_everywhere(data, size);
    build_directory(data, size);

    hs_qf_file *files = NULL;
    int nfiles = hs_qf_list(scratch, &files);
    REQUIRE(nfiles >= 0, "listing the scratch directory failed: %s", hs_last_error());
    hs_lsn first = nfiles > 0 ? files[0].first_lsn : 1;
    free(files);

    /* the recovery scan, not cutting */
    hs_qf_scan_result r1, r2, r3;
    scan_prev = 0;
    int rc1 = hs_qf_scan(scratch, 0, false, scan_visit, NULL, &r1);
    REQUIRE(rc1 == 0 || rc1 == -1, "scan returned %d", rc1);
    REQUIRE(r1.records == scanned_count || scanned_overflow,
            "scan counted %" PRIu64 ", visited %zu", r1.records, scanned_count);
    REQUIRE(!r1.tail_cut, "scan without cut_tail cut the tail");

    /* the drain's reader, on the same files: a prefix of the scan */
    check_reader(first, true);
    check_reader(first + (size ? data[size - 1] % 4 : 0), false);
    free_scanned();

    /* cutting answers the same, and leaves a clean queue */
    scan_prev = 0;
    int rc2 = hs_qf_scan(scratch, 0, true, NULL, NULL, &r2);
    REQUIRE(rc2 == rc1, "scan with cut_tail returned %d, without %d", rc2, rc1);
    if (rc1 == 0) {
        REQUIRE(r2.last_lsn == r1.last_lsn, "last LSN %" PRIu64 " with cut, %" PRIu64 " without",
                r2.last_lsn, r1.last_lsn);
        REQUIRE(r2.tail_cut == (r1.tail_path[0] != 0), "a torn tail was %s",
                r2.tail_cut ? "cut but not reported" : "reported but not cut");
        int rc3 = hs_qf_scan(scratch, 0, false, NULL, NULL, &r3);
        REQUIRE(rc3 == 0, "scan after the cut failed: %s", hs_last_error());
        REQUIRE(r3.tail_path[0] == 0, "torn tail left after the cut in %s at %" PRIu64,
                r3.tail_path, r3.tail_offset);
        if (r3.first_lsn != 0)
            REQUIRE(r3.last_lsn == r2.last_lsn,
                    "last LSN %" PRIu64 " after the cut, %" PRIu64 " before", r3.last_lsn,
                    r2.last_lsn);
        check_reader(first, false);
    }
    return 0;
}
