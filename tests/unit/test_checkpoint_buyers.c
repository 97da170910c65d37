/*-------------------------------------------------------------------------
 *
 * test_checkpoint_buyers.c
 *      Unit tests of the shadow's buyers' counts (per-buyer limits,
 *      shmd/format/checkpoint_buyer.c) and their part of the checkpoint
 *      file: a take's BUYER record adds, a give-back subtracts unless its
 *      take came before the SKU's last FORGET, a FORGET drops the SKU's
 *      buyers; the counts save and load, and damaged buyer entries are
 *      refused with the entry named.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include "checkpoint.h"
#include "checkpoint_check.h"
#include "util.h"

/* A BUYER record of sku "bs" at lsn: buyer (NULL: a FORGET), qty, xid. */
static hs_record
buyer_rec(hs_lsn lsn, const char *buyer, int64_t qty, uint64_t xid)
{
    hs_record r;

    memset(&r, 0, sizeof(r));
    r.lsn = lsn;
    r.type = HS_REC_BUYER;
    r.sku_len = 2;
    memcpy(r.sku, "bs", 2);
    if (buyer != NULL) {
        r.order_len = (uint8_t)strlen(buyer);
        memcpy(r.order_id, buyer, r.order_len);
    }
    r.qty = qty;
    r.xid = xid;
    return r;
}

static int64_t
units_of(hs_shadow *s, const char *buyer)
{
    hs_shadow_buyer *b = hs_shadow_buyer_get(s, "bs", 2, buyer, strlen(buyer), false);
    return b == NULL ? -1 : b->units;
}

static void
test_buyers(void)
{
    char dir[256], path[300], saved[320];
    hs_shadow s, t;
    hs_record r;
    hs_lsn lsn = 0;
    long long size;

    hs_test_tmpdir("ckpt-buyers", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE);
    snprintf(saved, sizeof(saved), "%s.saved", path);
    CHECK_EQ(hs_shadow_init(&s, 8), 0);
    /* takes add, give-backs subtract, never below zero */
    r = buyer_rec(++lsn, "x", 2, 0);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    r = buyer_rec(++lsn, "y", 1, 0);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    r = buyer_rec(++lsn, "x", -1, 1);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(units_of(&s, "x"), 1);
    CHECK_EQ(units_of(&s, "y"), 1);
    CHECK_EQ(hs_shadow_get(&s, "bs", 2, false)->available, 0); /* no counter change */
    r = buyer_rec(++lsn, "x", -5, 1);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(units_of(&s, "x"), 0);
    /* a give-back whose take is unknown (xid 0) counts nothing */
    r = buyer_rec(++lsn, "y", -1, 0);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(units_of(&s, "y"), 1);
    /* FORGET: every buyer of the SKU gone; a give-back of an older take
     * counts nothing and creates nothing; a new take counts from zero */
    r = buyer_rec(++lsn, NULL, 0, 0);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(s.buyer_count, 0);
    CHECK_EQ(hs_shadow_get(&s, "bs", 2, false)->buyers_since, lsn);
    r = buyer_rec(++lsn, "y", -1, 2);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(units_of(&s, "y"), -1);
    r = buyer_rec(++lsn, "y", 1, 0);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    lsn++;
    r = buyer_rec(lsn, "y", -1, lsn - 1);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(units_of(&s, "y"), 0);
    /* many buyers: the table grows */
    for (int i = 0; i < 500; i++) {
        char b[16];
        snprintf(b, sizeof(b), "b%d", i);
        r = buyer_rec(++lsn, b, 1 + i % 3, 0);
        CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    }
    CHECK_EQ(s.buyer_count, 501);
    CHECK_EQ(units_of(&s, "b499"), 2);

    /* saved and loaded whole */
    CHECK_EQ(hs_checkpoint_write(dir, &s), 0);
    CHECK_EQ(hs_test_file_size(path), 64 + 104 * 1 + 144 * 501 + 4);
    CHECK_EQ(hs_shadow_init(&t, 8), 0);
    CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
    CHECK(shadows_equal(&s, &t));
    CHECK(shadows_equal(&t, &s));
    hs_shadow_free(&t);
    /* a deep copy is equal and independent */
    CHECK_EQ(hs_shadow_copy(&s, &t), 0);
    CHECK(shadows_equal(&s, &t));
    hs_shadow_buyer_get(&t, "bs", 2, "b0", 2, false)->units = 99;
    CHECK_EQ(units_of(&s, "b0"), 1);
    hs_shadow_free(&t);

    /* damaged buyer entries: refused, naming the entry */
    CHECK_EQ(hs_test_copy_file(path, saved), 0);
    size = hs_test_file_size(path);
    {
        static const struct {
            long long at;
            uint8_t v;
        } bad[] = {{8, 0}, {9, 0}, {9, 64}, {10, 1}, {7, 0x80}, {80 + 63, 'q'}, {16, 'Q'}};
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            hs_test_copy_file(saved, path);
            patch_byte(path, 64 + 104 + 144 * 3 + bad[k].at, bad[k].v);
            expect_refused(dir, path, "buyer entry 3 at offset");
        }
    }
    {
        uint8_t entry[CKPT_BUYER_SIZE];
        hs_test_copy_file(saved, path);
        hs_test_pread(path, 64 + 104, entry, sizeof(entry));
        hs_test_pwrite(path, 64 + 104 + 144 * 7, entry, sizeof(entry)); /* named twice */
        put_crc(path);
        expect_refused(dir, path, "buyer entry 7 at offset");
    }
    hs_test_copy_file(saved, path);
    truncate(path, size - 144);
    expect_refused(dir, path, "torn or truncated");
    hs_shadow_free(&s);
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_buyers();
    return hs_test_done();
}
