/*-------------------------------------------------------------------------
 *
 * checkpoint_check.h
 *      What the checkpoint tests share: comparing two shadows (counters,
 *      sale configurations, buyers' counts), and refusing a damaged file
 *      (expect_refused, put_crc after a patch, patch_byte).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_CHECKPOINT_CHECK_H
#define HOTSTOCK_TESTS_CHECKPOINT_CHECK_H

#include <string.h>

#include "checkpoint.h"
#include "test.h"
#include "util.h"

static bool
sales_equal(const hs_sale *a, const hs_sale *b)
{
    return a->starts_at_ms == b->starts_at_ms && a->ends_at_ms == b->ends_at_ms &&
           a->per_buyer_limit == b->per_buyer_limit && a->paused == b->paused;
}

static bool
shadows_equal(hs_shadow *a, hs_shadow *b)
{
    if (a->count != b->count || a->lsn != b->lsn)
        return false;
    for (uint32_t i = 0; i < a->capacity; i++) {
        hs_shadow_sku *e = &a->slots[i], *f;
        if (e->sku_len == 0)
            continue;
        f = hs_shadow_get(b, e->sku, e->sku_len, false);
        if (f == NULL || f->available != e->available || !sales_equal(&f->sale, &e->sale) ||
            f->buyers_since != e->buyers_since)
            return false;
    }
    if (a->buyer_count != b->buyer_count)
        return false;
    for (uint32_t i = 0; i < a->buyer_capacity; i++) {
        hs_shadow_buyer *e = &a->buyers[i], *f;
        if (e->buyer_len == 0)
            continue;
        f = hs_shadow_buyer_get(b, e->sku, e->sku_len, e->buyer, e->buyer_len, false);
        if (f == NULL || f->units != e->units)
            return false;
    }
    return true;
}

static void
expect_refused(const char *dir, const char *path, const char *what)
{
    hs_shadow t;
    CHECK_EQ(hs_shadow_init(&t, 8), 0);
    t.lsn = 77;
    CHECK_EQ(hs_checkpoint_load(dir, &t), -1);
    CHECK_CONTAINS(hs_last_error(), path);
    CHECK_CONTAINS(hs_last_error(), what);
    CHECK_EQ(t.count, 0);
    CHECK_EQ(t.lsn, 77);
    hs_shadow_free(&t);
}

static void
put_crc(const char *path)
{
    long long size = hs_test_file_size(path);
    uint8_t *buf = malloc((size_t)size);
    uint32_t crc;
    hs_test_pread(path, 0, buf, (size_t)size);
    crc = hs_crc32c(0, buf, (size_t)size - 4);
    buf[size - 4] = (uint8_t)crc;
    buf[size - 3] = (uint8_t)(crc >> 8);
    buf[size - 2] = (uint8_t)(crc >> 16);
    buf[size - 1] = (uint8_t)(crc >> 24);
    hs_test_pwrite(path, 0, buf, (size_t)size);
    free(buf);
}

/* Write one byte at off of path and put a correct checksum: only the
 * entry rules can refuse it then. */
static void
patch_byte(const char *path, long long off, uint8_t v)
{
    hs_test_pwrite(path, off, &v, 1);
    put_crc(path);
}

#endif /* HOTSTOCK_TESTS_CHECKPOINT_CHECK_H */
