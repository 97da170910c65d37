/*-------------------------------------------------------------------------
 *
 * hs_drive.c
 *      A small client for tests/daemon/test_cli.sh: load a daemon through
 *      libhotstock, dump its counters and orders, and forge files and
 *      segments of other format versions.
 *
 *   hs_drive load DIR NSKU NORDERS SEED   put NSKU SKUs "sku-<i>" (stock 50
 *                                         each), deduct NORDERS orders
 *                                         "ord-<seed>-<j>" (qty 1..3, some
 *                                         sell out), refund every 7th one;
 *                                         every record waited durable
 *   hs_drive dump DIR NSKU NORDERS SEED   one line per SKU (available) and
 *                                         per order (state), to diff
 *   hs_drive qversion FILE V              set a queue file's format version
 *                                         to V (header CRC made valid)
 *   hs_drive cversion FILE V              same for a checkpoint file
 *   hs_drive fakeseg DIR V                create DIR's shm segment with
 *                                         layout version V (nothing else)
 *   hs_drive segname DIR                  the path of DIR's shm segment
 *   hs_drive unlinkseg DIR                remove DIR's shm segment
 *
 * It shares the segment with the daemon only through libhotstock (load,
 * dump); fakeseg writes a segment of its own while no daemon runs.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotstock.h"
#include "segment.h"

static int
die(const char *what, hs_result r)
{
    fprintf(stderr, "hs_drive: %s: %s (%s)\n", what, hs_result_name(r), hs_last_error());
    return 1;
}

static hs_client *
attach(const char *dir)
{
    hs_client *c = NULL;
    hs_result r = hs_attach(dir, &c);

    if (r != HS_OK) {
        die("attach", r);
        exit(1);
    }
    return c;
}

static int
cmd_load(const char *dir, int nsku, int norders, int seed)
{
    hs_client *c = attach(dir);
    char sku[64], order[64];
    hs_lsn lsn;
    hs_result r;
    int ok = 0, sold_out = 0, refunded = 0;

    for (int i = 0; i < nsku; i++) {
        snprintf(sku, sizeof(sku), "sku-%d", i);
        r = hs_put_sku(c, sku, strlen(sku), 50, &lsn);
        if (r != HS_OK)
            return die("put_sku", r);
        if ((r = hs_wait_durable(c, lsn, 10000)) != HS_OK)
            return die("wait_durable", r);
    }
    for (int j = 0; j < norders; j++) {
        int qty = 1 + (j * 7 + seed) % 3;
        int32_t got_qty;

        snprintf(sku, sizeof(sku), "sku-%d", (j * 13 + seed) % nsku);
        snprintf(order, sizeof(order), "ord-%d-%d", seed, j);
        r = hs_deduct(c, sku, strlen(sku), qty, order, strlen(order), 0, &lsn);
        if (r == HS_SOLD_OUT) {
            sold_out++;
            continue;
        }
        if (r != HS_OK)
            return die("deduct", r);
        if ((r = hs_wait_durable(c, lsn, 10000)) != HS_OK)
            return die("wait_durable", r);
        ok++;
        if (j % 7 == 0) {
            r = hs_refund(c, order, strlen(order), &lsn, &got_qty, NULL);
            if (r != HS_OK)
                return die("refund", r);
            if ((r = hs_wait_durable(c, lsn, 10000)) != HS_OK)
                return die("wait_durable", r);
            refunded++;
        }
    }
    printf("deducted %d, sold out %d, refunded %d\n", ok, sold_out, refunded);
    hs_detach(c);
    return 0;
}

static int
cmd_dump(const char *dir, int nsku, int norders, int seed)
{
    hs_client *c = attach(dir);
    char sku[64], order[64];

    for (int i = 0; i < nsku; i++) {
        int64_t available;
        hs_result r;

        snprintf(sku, sizeof(sku), "sku-%d", i);
        r = hs_available(c, sku, strlen(sku), &available);
        if (r != HS_OK)
            return die("available", r);
        printf("%s %" PRId64 "\n", sku, available);
    }
    for (int j = 0; j < norders; j++) {
        hs_order_status_code state = HS_ORDER_STATUS_UNKNOWN;
        hs_result r;

        snprintf(order, sizeof(order), "ord-%d-%d", seed, j);
        r = hs_order_status(c, order, strlen(order), &state, NULL, NULL);
        printf("%s %s %d\n", order, hs_result_name(r), (int)state);
    }
    hs_detach(c);
    return 0;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Rewrite the u32 version at offset 8 of path and its CRC32C: over [0,60)
 * at 60 for a queue file header, over the whole file but its last 4 bytes
 * for a checkpoint. */
static int
cmd_version(const char *path, uint32_t version, bool checkpoint)
{
    struct stat sb;
    uint8_t *buf;
    int fd = open(path, O_RDWR);

    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size < 64) {
        fprintf(stderr, "hs_drive: %s: %s\n", path, strerror(errno));
        return 1;
    }
    buf = malloc((size_t)sb.st_size);
    if (buf == NULL || pread(fd, buf, (size_t)sb.st_size, 0) != sb.st_size)
        return 1;
    put_u32(buf + 8, version);
    if (checkpoint)
        put_u32(buf + sb.st_size - 4, hs_crc32c(0, buf, (size_t)sb.st_size - 4));
    else
        put_u32(buf + 60, hs_crc32c(0, buf, 60));
    if (pwrite(fd, buf, (size_t)sb.st_size, 0) != sb.st_size)
        return 1;
    close(fd);
    free(buf);
    return 0;
}

static int
cmd_fakeseg(const char *dir, uint32_t version)
{
    char real[PATH_MAX], name[128];
    hs_header *h;
    int fd;

    if (realpath(dir, real) == NULL)
        return 1;
    hs_segment_name(real, name, sizeof(name));
    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(hs_header)) != 0) {
        fprintf(stderr, "hs_drive: shm_open %s: %s\n", name, strerror(errno));
        return 1;
    }
    h = mmap(NULL, sizeof(hs_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return 1;
    h->magic = HS_SEGMENT_MAGIC;
    h->layout_version = version;
    h->header_size = sizeof(hs_header);
    h->total_size = sizeof(hs_header);
    munmap(h, sizeof(hs_header));
    close(fd);
    printf("/dev/shm%s\n", name);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "load") == 0)
        return cmd_load(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 6 && strcmp(argv[1], "dump") == 0)
        return cmd_dump(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "qversion") == 0)
        return cmd_version(argv[2], (uint32_t)atoi(argv[3]), false);
    if (argc == 4 && strcmp(argv[1], "cversion") == 0)
        return cmd_version(argv[2], (uint32_t)atoi(argv[3]), true);
    if (argc == 4 && strcmp(argv[1], "fakeseg") == 0)
        return cmd_fakeseg(argv[2], (uint32_t)atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "segname") == 0) {
        char real[PATH_MAX], name[128];
        if (realpath(argv[2], real) == NULL)
            return 1;
        hs_segment_name(real, name, sizeof(name));
        printf("/dev/shm%s\n", name);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "unlinkseg") == 0) {
        char real[PATH_MAX];
        if (realpath(argv[2], real) == NULL)
            return 1;
        return hs_segment_unlink(real) == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: hs_drive load|dump DIR NSKU NORDERS SEED | qversion|cversion FILE V"
                    " | fakeseg DIR V | segname DIR | unlinkseg DIR\n");
    return 2;
}
