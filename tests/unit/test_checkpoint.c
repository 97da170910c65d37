/*-------------------------------------------------------------------------
 *
 * test_checkpoint.c
 *      Unit tests of the shadow counters and the checkpoint file
 *      (shmd/checkpoint.c).
 *
 * The fold is checked against a plain recomputation over a random record
 * stream; recovery (checkpoint + replay of the queue after it, through the
 * real queue writer and scan) against the fold of everything; and every
 * kind of damaged checkpoint must be refused with a message naming the
 * file.  SALE records are part of the stream: the sale configurations
 * fold, save (format version 3) and load like the counters; a version-1
 * file, built here byte by byte, still loads (sale configurations zero).
 * The buyers' counts have their own test (test_checkpoint_buyers.c).
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include "checkpoint.h"
#include "checkpoint_check.h"
#include "queue_file.h"
#include "segment.h"
#include "util.h"

#define NAMES 300

static char names[NAMES][HS_SKU_MAX + 1];
static size_t name_lens[NAMES];

/* Distinct SKU names of every length 1..63: "<i>." then letters, and "Z". */
static void
make_names(void)
{
    uint64_t seed = 11;

    strcpy(names[0], "Z");
    name_lens[0] = 1;
    for (int i = 1; i < NAMES; i++) {
        size_t len =
            i < HS_SKU_MAX ? (size_t)i + 1 : 1 + (size_t)(hs_test_rand(&seed) % HS_SKU_MAX);
        int n = snprintf(names[i], sizeof(names[i]), "%d.", i);
        for (size_t k = (size_t)n; k < len; k++)
            names[i][k] = (char)('a' + (i + k) % 26);
        if (len < (size_t)n)
            len = (size_t)n;
        names[i][len] = '\0';
        name_lens[i] = len;
    }
}

/* Random record number lsn of a stream over the NAMES SKUs. */
static void
random_rec(uint64_t *seed, hs_lsn lsn, hs_record *r, int *name)
{
    memset(r, 0, sizeof(*r));
    r->lsn = lsn;
    r->type = (uint8_t)(1 + hs_test_rand(seed) % 5);
    *name = (int)(hs_test_rand(seed) % NAMES);
    if (hs_test_rand(seed) % 8 == 0)
        r->type = HS_REC_SALE;
    switch (r->type) {
    case HS_REC_SALE:
        r->qty = (int64_t)(hs_test_rand(seed) >> 1); /* starts_at: 0..2^63-1 */
        r->xid = hs_test_rand(seed) % 3 == 0 ? 0 : hs_test_rand(seed);
        r->ttl_ms = (uint32_t)(hs_test_rand(seed) % 3 == 0 ? 0 : hs_test_rand(seed) >> 33);
        r->flags = hs_test_rand(seed) % 2 ? HS_REC_FLAG_PAUSED : 0;
        break;
    case HS_REC_DEDUCT:
    case HS_REC_REFUND:
        r->qty = 1 + (int64_t)(hs_test_rand(seed) % HS_QTY_MAX);
        snprintf(r->order_id, sizeof(r->order_id), "o%" PRIu64, lsn);
        break;
    case HS_REC_PUT_SKU:
    case HS_REC_ADD_STOCK:
        r->qty = (int64_t)(hs_test_rand(seed) % 2000001) - 1000000;
        break;
    case HS_REC_NOOP:
        *name = -1;
        return;
    }
    memcpy(r->sku, names[*name], name_lens[*name]);
    r->sku_len = (uint8_t)name_lens[*name];
    r->order_len = (uint8_t)strlen(r->order_id);
}

/* The straightforward recomputation: a flat array by name index. */
typedef struct model {
    int64_t available[NAMES];
    bool exists[NAMES];
    hs_sale sale[NAMES];
} model;

static void
model_apply(model *m, const hs_record *r, int name)
{
    if (name < 0)
        return;
    m->exists[name] = true;
    if (r->type == HS_REC_SALE) {
        m->sale[name].starts_at_ms = (uint64_t)r->qty;
        m->sale[name].ends_at_ms = r->xid;
        m->sale[name].per_buyer_limit = (int32_t)r->ttl_ms;
        m->sale[name].paused = (r->flags & HS_REC_FLAG_PAUSED) != 0;
    } else if (r->type == HS_REC_DEDUCT)
        m->available[name] -= r->qty;
    else
        m->available[name] += r->qty;
}

static bool
shadow_equals_model(hs_shadow *s, const model *m)
{
    uint32_t n = 0;
    for (int i = 0; i < NAMES; i++) {
        hs_shadow_sku *e = hs_shadow_get(s, names[i], name_lens[i], false);
        if (m->exists[i] != (e != NULL))
            return false;
        if (e != NULL && (e->available != m->available[i] || !sales_equal(&e->sale, &m->sale[i])))
            return false;
        n += m->exists[i];
    }
    return n == s->count;
}

/*-------------------------------------------------------------------------
 * Cases
 *-------------------------------------------------------------------------
 */
static void
test_shadow_table(void)
{
    hs_shadow s;
    hs_shadow_sku *e;
    hs_record r;
    bool ok = true;

    CHECK_EQ(hs_shadow_init(&s, 3), 0);
    CHECK_EQ(s.capacity, 16);
    /* grows past 3/4 full, keeps every entry */
    for (int i = 0; i < NAMES; i++) {
        e = hs_shadow_get(&s, names[i], name_lens[i], true);
        ok = ok && e != NULL && e->available == 0;
        if (e != NULL)
            e->available = i * 10;
        ok = ok && (uint64_t)s.count * 4 <= (uint64_t)s.capacity * 3;
    }
    CHECK(ok);
    CHECK_EQ(s.count, NAMES);
    ok = true;
    for (int i = 0; i < NAMES; i++) {
        e = hs_shadow_get(&s, names[i], name_lens[i], false);
        ok = ok && e != NULL && e->available == i * 10 && e->sku_len == name_lens[i];
    }
    CHECK(ok);
    CHECK(hs_shadow_get(&s, "absent", 6, false) == NULL);
    CHECK(hs_shadow_get(&s, "", 0, true) == NULL);
    {
        char big[HS_SKU_MAX + 2];
        memset(big, 'x', sizeof(big));
        CHECK(hs_shadow_get(&s, big, HS_SKU_MAX + 1, true) == NULL);
        CHECK(hs_shadow_get(&s, big, HS_SKU_MAX, true) != NULL);
    }
    CHECK_EQ(s.count, NAMES + 1);

    /* fold: LSN must be the next one; a failure changes nothing */
    s.lsn = 10;
    memset(&r, 0, sizeof(r));
    r.lsn = 12;
    r.type = HS_REC_DEDUCT;
    r.qty = 5;
    memcpy(r.sku, names[0], name_lens[0]);
    r.sku_len = (uint8_t)name_lens[0];
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    CHECK_CONTAINS(hs_last_error(), "LSN 12 after LSN 10");
    r.lsn = 10;
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    r.lsn = 11;
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(hs_shadow_get(&s, names[0], name_lens[0], false)->available, -5);
    CHECK_EQ(s.lsn, 11);
    r.lsn = 12;
    r.type = HS_REC_NOOP;
    r.qty = 99;
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(hs_shadow_get(&s, names[0], name_lens[0], false)->available, -5);
    CHECK_EQ(s.lsn, 12);
    /* overflow refused, nothing changed */
    r.lsn = 13;
    r.type = HS_REC_ADD_STOCK;
    r.qty = INT64_MAX;
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    r.lsn = 14;
    r.qty = 100;
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    CHECK_CONTAINS(hs_last_error(), "overflows");
    CHECK_EQ(s.lsn, 13);
    CHECK_EQ(hs_shadow_get(&s, names[0], name_lens[0], false)->available, INT64_MAX - 5);
    /* a record without SKU */
    r.sku_len = 0;
    r.qty = 1;
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    CHECK_EQ(s.lsn, 13);
    hs_shadow_free(&s);
}

/* A SALE record at lsn for sku (hs_sale_configure / hs_sale_pause). */
static void
sale_rec(hs_lsn lsn, const char *sku, int64_t starts_at_ms, uint64_t ends_at_ms, uint32_t limit,
         bool paused, hs_record *r)
{
    memset(r, 0, sizeof(*r));
    r->lsn = lsn;
    r->type = HS_REC_SALE;
    r->flags = paused ? HS_REC_FLAG_PAUSED : 0;
    r->qty = starts_at_ms;
    r->xid = ends_at_ms;
    r->ttl_ms = limit;
    r->sku_len = (uint8_t)strlen(sku);
    memcpy(r->sku, sku, r->sku_len);
}

static bool
sale_is(const hs_shadow_sku *e, uint64_t starts_at_ms, uint64_t ends_at_ms, int32_t limit,
        bool paused)
{
    return e != NULL && e->sale.starts_at_ms == starts_at_ms && e->sale.ends_at_ms == ends_at_ms &&
           e->sale.per_buyer_limit == limit && e->sale.paused == paused;
}

/* SALE records set their SKU's sale configuration (the last one wins),
 * create the SKU when absent, and never change a counter. */
static void
test_sale_fold(void)
{
    hs_shadow s;
    hs_record r;

    CHECK_EQ(hs_shadow_init(&s, 4), 0);
    memset(&r, 0, sizeof(r));
    r.lsn = 1;
    r.type = HS_REC_PUT_SKU;
    r.qty = 10;
    strcpy(r.sku, "a");
    r.sku_len = 1;
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK(sale_is(hs_shadow_get(&s, "a", 1, false), 0, 0, 0, false)); /* never configured */
    sale_rec(2, "a", 1000, 2000, 3, true, &r);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK(sale_is(hs_shadow_get(&s, "a", 1, false), 1000, 2000, 3, true));
    CHECK_EQ(hs_shadow_get(&s, "a", 1, false)->available, 10);
    sale_rec(3, "b", INT64_MAX, UINT64_MAX, INT32_MAX, false, &r);
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(s.count, 2);
    CHECK(sale_is(hs_shadow_get(&s, "b", 1, false), INT64_MAX, UINT64_MAX, INT32_MAX, false));
    CHECK_EQ(hs_shadow_get(&s, "b", 1, false)->available, 0);
    memset(&r, 0, sizeof(r));
    r.lsn = 4;
    r.type = HS_REC_DEDUCT;
    r.flags = HS_REC_FLAG_PAUSED; /* means nothing on a DEDUCT */
    r.qty = 4;
    strcpy(r.sku, "a");
    r.sku_len = 1;
    strcpy(r.order_id, "o1");
    r.order_len = 2;
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK_EQ(hs_shadow_get(&s, "a", 1, false)->available, 6);
    CHECK(sale_is(hs_shadow_get(&s, "a", 1, false), 1000, 2000, 3, true));
    sale_rec(5, "a", 0, 0, 0, false, &r); /* the last one wins, zero included */
    CHECK_EQ(hs_shadow_fold(&s, &r), 0);
    CHECK(sale_is(hs_shadow_get(&s, "a", 1, false), 0, 0, 0, false));
    CHECK_EQ(hs_shadow_get(&s, "a", 1, false)->available, 6);
    CHECK_EQ(s.lsn, 5);
    /* what hs_sale cannot hold is refused, nothing changed */
    sale_rec(6, "b", -1, 5, 1, true, &r);
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    CHECK_CONTAINS(hs_last_error(), "LSN 6");
    sale_rec(6, "b", 1, 5, (uint32_t)INT32_MAX + 1, true, &r);
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    sale_rec(6, "", 1, 5, 1, true, &r);
    CHECK_EQ(hs_shadow_fold(&s, &r), -1);
    CHECK_EQ(s.lsn, 5);
    CHECK_EQ(s.count, 2);
    CHECK(sale_is(hs_shadow_get(&s, "b", 1, false), INT64_MAX, UINT64_MAX, INT32_MAX, false));
    /* the configuration moves with its entry when the table grows */
    for (int i = 0; i < NAMES; i++)
        hs_shadow_get(&s, names[i], name_lens[i], true);
    CHECK_EQ(s.count, NAMES + 2);
    CHECK(s.capacity > 4 * 16);
    CHECK(sale_is(hs_shadow_get(&s, "b", 1, false), INT64_MAX, UINT64_MAX, INT32_MAX, false));
    hs_shadow_free(&s);
}

static void
test_fold_matches_model(void)
{
    static model m;
    hs_shadow s;
    hs_record r;
    uint64_t seed = 2024;
    int name;
    bool ok = true;

    memset(&m, 0, sizeof(m));
    CHECK_EQ(hs_shadow_init(&s, 0), 0);
    for (hs_lsn l = 1; l <= 200000; l++) {
        random_rec(&seed, l, &r, &name);
        ok = ok && hs_shadow_fold(&s, &r) == 0;
        model_apply(&m, &r, name);
    }
    CHECK(ok);
    CHECK_EQ(s.lsn, 200000);
    CHECK(s.count > NAMES / 2);
    CHECK(shadow_equals_model(&s, &m));
    hs_shadow_free(&s);
}

static void
test_write_load(void)
{
    char dir[256], path[300], tmp[320];
    hs_shadow s, t;
    uint64_t seed = 3;

    hs_test_tmpdir("ckpt", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    CHECK_EQ(hs_shadow_init(&t, 8), 0);
    CHECK_EQ(hs_checkpoint_load(dir, &t), 0); /* none yet */

    /* empty shadow */
    CHECK_EQ(hs_shadow_init(&s, 8), 0);
    s.lsn = 0;
    CHECK_EQ(hs_checkpoint_write(dir, &s), 0);
    CHECK_EQ(hs_test_file_size(path), 68);
    CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
    CHECK_EQ(t.count, 0);

    /* every name, values of every sign and size; every other SKU with a
     * sale configuration, the extremes included */
    for (int i = 0; i < NAMES; i++) {
        hs_shadow_sku *e = hs_shadow_get(&s, names[i], name_lens[i], true);
        e->available = (int64_t)hs_test_rand(&seed);
        if (i % 2 == 0)
            continue;
        e->sale.starts_at_ms = i == 1 ? INT64_MAX : hs_test_rand(&seed) >> 1;
        e->sale.ends_at_ms = i == 1 ? UINT64_MAX : hs_test_rand(&seed);
        e->sale.per_buyer_limit = i == 1 ? INT32_MAX : (int32_t)(hs_test_rand(&seed) >> 33);
        e->sale.paused = i % 4 == 1;
    }
    s.lsn = 123456789;
    s.applied_lsn = 123000000;
    s.generation = 42;
    CHECK_EQ(hs_checkpoint_write(dir, &s), 0);
    CHECK_EQ(hs_test_file_size(path), 64 + 104 * NAMES + 4);
    {
        /* the entry layout, read back byte by byte: the first entry's SKU
         * is found in the file and its sale fields at their offsets */
        uint8_t hdr[64], ent[104];
        bool found = false;
        hs_test_pread(path, 0, hdr, 64);
        CHECK_EQ(hs_get_u32(hdr + 8), 3);
        for (int k = 0; k < NAMES && !found; k++) {
            hs_shadow_sku *e;
            hs_test_pread(path, 64 + 104 * k, ent, 104);
            e = hs_shadow_get(&s, (const char *)ent + 16, ent[8], false);
            if (e == NULL || e->sale.per_buyer_limit == 0)
                continue;
            found = (int64_t)hs_get_u64(ent) == e->available && ent[9] == e->sale.paused &&
                    ent[10] == 0 && ent[11] == 0 &&
                    hs_get_u32(ent + 12) == (uint32_t)e->sale.per_buyer_limit &&
                    hs_get_u64(ent + 80) == e->sale.starts_at_ms &&
                    hs_get_u64(ent + 88) == e->sale.ends_at_ms;
            CHECK(found);
        }
        CHECK(found);
    }
    CHECK_EQ(hs_test_file_size(tmp), -1);
    CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
    CHECK(shadows_equal(&s, &t));
    CHECK(shadows_equal(&t, &s));
    CHECK_EQ(t.lsn, 123456789);
    CHECK_EQ(t.applied_lsn, 123000000);
    CHECK_EQ(t.generation, 42);
    /* loading replaces what t held */
    {
        hs_shadow u;
        CHECK_EQ(hs_shadow_init(&u, 8), 0);
        hs_shadow_get(&u, "stale-sku", 9, true);
        CHECK_EQ(hs_checkpoint_load(dir, &u), 1);
        CHECK(hs_shadow_get(&u, "stale-sku", 9, false) == NULL);
        CHECK(shadows_equal(&s, &u));
        hs_shadow_free(&u);
    }

    /* a sale configuration the format cannot hold: refused, the file kept */
    {
        hs_shadow_sku *e = hs_shadow_get(&s, names[2], name_lens[2], false);
        e->sale.per_buyer_limit = -1;
        CHECK_EQ(hs_checkpoint_write(dir, &s), -1);
        CHECK_CONTAINS(hs_last_error(), "cannot be saved");
        e->sale.per_buyer_limit = 0;
        e->sale.starts_at_ms = (uint64_t)INT64_MAX + 1;
        CHECK_EQ(hs_checkpoint_write(dir, &s), -1);
        e->sale.starts_at_ms = 0;
        CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
        CHECK(shadows_equal(&s, &t));
    }

    /* a directory that does not exist */
    CHECK_EQ(hs_checkpoint_write("/nonexistent/hotstock", &s), -1);
    CHECK_CONTAINS(hs_last_error(), "/nonexistent/hotstock/checkpoint.tmp");

    hs_shadow_free(&s);
    hs_shadow_free(&t);
    hs_test_rmrf(dir);
}

/* Load must fail with a message naming the file and `what`; t is empty. */
static void
test_refused(void)
{
    const int E = CKPT_ENTRY_SIZE_V3;
    char dir[256], path[300], saved[320];
    hs_shadow s;
    uint8_t junk[1000];
    uint64_t seed = 8;
    long long size;
    bool ok = true;

    hs_test_tmpdir("ckpt-bad", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE);
    snprintf(saved, sizeof(saved), "%s.saved", path);
    CHECK_EQ(hs_shadow_init(&s, 8), 0);
    for (int i = 0; i < 20; i++) {
        hs_shadow_sku *e = hs_shadow_get(&s, names[i], name_lens[i], true);
        e->available = i;
        e->sale = (hs_sale){.starts_at_ms = 1000u * (unsigned)i,
                            .ends_at_ms = 5000,
                            .per_buyer_limit = i,
                            .paused = i % 2};
    }
    s.lsn = 500;
    CHECK_EQ(hs_checkpoint_write(dir, &s), 0);
    CHECK_EQ(hs_test_copy_file(path, saved), 0);
    size = hs_test_file_size(path);

    /* torn: every shorter length is refused */
    for (long long len = 0; len < size; len += (len < 80 ? 1 : 37)) {
        hs_shadow t;
        hs_test_copy_file(saved, path);
        truncate(path, len);
        hs_shadow_init(&t, 8);
        ok = ok && hs_checkpoint_load(dir, &t) == -1 && strstr(hs_last_error(), path) != NULL &&
             t.count == 0;
        hs_shadow_free(&t);
    }
    CHECK(ok);
    hs_test_copy_file(saved, path);
    truncate(path, 30);
    expect_refused(dir, path, "short");
    hs_test_copy_file(saved, path);
    truncate(path, size - E); /* an entry short */
    expect_refused(dir, path, "torn or truncated");
    hs_test_copy_file(saved, path);
    truncate(path, size - 24); /* the size of version-2 entries for the same count */
    expect_refused(dir, path, "torn or truncated");

    /* one flipped bit anywhere: refused */
    ok = true;
    for (long long bit = 0; bit < size * 8; bit += 3) {
        hs_shadow t;
        hs_test_copy_file(saved, path);
        hs_test_flip_bit(path, bit / 8, (int)(bit % 8));
        hs_shadow_init(&t, 8);
        ok = ok && hs_checkpoint_load(dir, &t) == -1 && strstr(hs_last_error(), path) != NULL;
        hs_shadow_free(&t);
    }
    CHECK(ok);
    hs_test_copy_file(saved, path);
    hs_test_flip_bit(path, 64 + E * 3 + 2, 1);
    expect_refused(dir, path, "checksum mismatch");

    /* garbage */
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)hs_test_rand(&seed);
    unlink(path);
    hs_test_pwrite(path, 0, junk, sizeof(junk));
    expect_refused(dir, path, "bad magic");

    /* a format version this build does not read, checksum correct */
    hs_test_copy_file(saved, path);
    patch_byte(path, 8, 4);
    expect_refused(dir, path, "format version 4, this build reads versions 1 to 3");
    hs_test_copy_file(saved, path);
    patch_byte(path, 8, 0);
    expect_refused(dir, path, "format version 0, this build reads versions 1 to 3");

    /* bad entries with a correct checksum */
    hs_test_copy_file(saved, path);
    patch_byte(path, 64 + E * 2 + 8, 0); /* sku_len 0 */
    expect_refused(dir, path, "SKU length 0");
    hs_test_copy_file(saved, path);
    {
        uint8_t entry[CKPT_ENTRY_SIZE_V3];
        hs_test_pread(path, 64, entry, sizeof(entry));
        hs_test_pwrite(path, 64 + E * 5, entry, sizeof(entry)); /* the same SKU twice */
        put_crc(path);
        expect_refused(dir, path, "a second time");
    }
    {
        /* sale fields: flag bits but 0x01, reserved bytes, a limit over
         * INT32_MAX, a starts_at over INT64_MAX, bytes after the SKU */
        static const struct {
            int at;
            uint8_t v;
            const char *what;
        } bad[] = {{9, 0x02, "sale flag bits"},  {9, 0x81, "sale flag bits"},
                   {10, 1, "non-zero reserved"}, {11, 0x40, "non-zero reserved"},
                   {15, 0x80, "out of range"},   {87, 0x80, "out of range"},
                   {16 + 63, 1, "after its SKU"}};
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            hs_test_copy_file(saved, path);
            patch_byte(path, 64 + E * 4 + bad[k].at, bad[k].v);
            expect_refused(dir, path, bad[k].what);
            CHECK_CONTAINS(hs_last_error(), "entry 4 at offset 480");
        }
        /* and their neighbours are fine: paused, the largest limit and starts_at */
        hs_test_copy_file(saved, path);
        patch_byte(path, 64 + E * 4 + 9, 0x01);
        patch_byte(path, 64 + E * 4 + 15, 0x7f);
        patch_byte(path, 64 + E * 4 + 87, 0x7f);
        {
            hs_shadow t;
            int big = 0;
            hs_shadow_init(&t, 8);
            CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
            CHECK_EQ(t.count, 20);
            for (uint32_t i = 0; i < t.capacity; i++) {
                hs_shadow_sku *e = &t.slots[i];
                if (e->sku_len != 0 && e->sale.per_buyer_limit >= 0x7f000000)
                    big += e->sale.paused && e->sale.starts_at_ms >> 56 == 0x7f;
            }
            CHECK_EQ(big, 1);
            hs_shadow_free(&t);
        }
    }

    /* and the intact file still loads */
    hs_test_copy_file(saved, path);
    {
        hs_shadow t;
        hs_shadow_init(&t, 8);
        CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
        CHECK(shadows_equal(&s, &t));
        hs_shadow_free(&t);
    }
    hs_shadow_free(&s);
    hs_test_rmrf(dir);
}

/*
 * A version-1 checkpoint (80-byte entries, no sale configuration), built
 * here byte by byte as the previous build wrote it: it loads with the same
 * counters and positions, every sale configuration zero.  Its own rules
 * still hold: bytes 9-15 of an entry are reserved zeros, and the size must
 * match 80-byte entries.
 */
static void
write_v1(const char *path, const hs_shadow *s)
{
    size_t size = 64 + (size_t)s->count * CKPT_ENTRY_SIZE_V1 + 4;
    uint8_t *buf = calloc(1, size), *p = buf + 64;

    hs_put_u64(buf, HS_CKPT_MAGIC);
    hs_put_u32(buf + 8, 1);
    hs_put_u32(buf + 12, 64);
    hs_put_u64(buf + 16, s->lsn);
    hs_put_u64(buf + 24, s->applied_lsn);
    hs_put_u64(buf + 32, s->generation);
    hs_put_u64(buf + 40, s->count);
    hs_put_u64(buf + 48, UINT64_C(1700000000000000));
    for (uint32_t i = 0; i < s->capacity; i++) {
        const hs_shadow_sku *e = &s->slots[i];
        if (e->sku_len == 0)
            continue;
        hs_put_u64(p, (uint64_t)e->available);
        p[8] = e->sku_len;
        memcpy(p + 16, e->sku, e->sku_len);
        p += CKPT_ENTRY_SIZE_V1;
    }
    hs_put_u32(p, hs_crc32c(0, buf, size - 4));
    unlink(path);
    hs_test_pwrite(path, 0, buf, size);
    free(buf);
}

static void
test_load_version1(void)
{
    char dir[256], path[300];
    hs_shadow s, t;
    uint64_t seed = 5;
    bool ok = true;

    hs_test_tmpdir("ckpt-v1", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE);
    CHECK_EQ(hs_shadow_init(&s, 8), 0);
    CHECK_EQ(hs_shadow_init(&t, 8), 0);
    for (int i = 0; i < NAMES; i++)
        hs_shadow_get(&s, names[i], name_lens[i], true)->available = (int64_t)hs_test_rand(&seed);
    s.lsn = 9001;
    s.applied_lsn = 8000;
    s.generation = 7;
    write_v1(path, &s);
    CHECK_EQ(hs_test_file_size(path), 64 + 80 * NAMES + 4);
    /* t held sale configurations before: the load replaces them with zeros */
    hs_shadow_get(&t, names[1], name_lens[1], true)->sale.paused = true;
    CHECK_EQ(hs_checkpoint_load(dir, &t), 1);
    CHECK(shadows_equal(&s, &t)); /* counters, and all sale configurations zero */
    CHECK(shadows_equal(&t, &s));
    CHECK_EQ(t.lsn, 9001);
    CHECK_EQ(t.applied_lsn, 8000);
    CHECK_EQ(t.generation, 7);
    for (uint32_t i = 0; i < t.capacity; i++) {
        const hs_sale *z = &t.slots[i].sale;
        ok = ok && z->starts_at_ms == 0 && z->ends_at_ms == 0 && z->per_buyer_limit == 0 &&
             !z->paused;
    }
    CHECK(ok);

    /* written again, it is version 3 and loads the same */
    CHECK_EQ(hs_checkpoint_write(dir, &t), 0);
    CHECK_EQ(hs_test_file_size(path), 64 + 104 * NAMES + 4);
    {
        hs_shadow u;
        CHECK_EQ(hs_shadow_init(&u, 8), 0);
        CHECK_EQ(hs_checkpoint_load(dir, &u), 1);
        CHECK(shadows_equal(&s, &u));
        hs_shadow_free(&u);
    }

    /* version-1 rules: byte 9 (a flag in version 2) or 12 (the limit) is
     * reserved there; a version-2 size is torn for version 1 */
    write_v1(path, &s);
    patch_byte(path, 64 + 80 * 7 + 9, 0x01);
    expect_refused(dir, path, "non-zero reserved bytes");
    CHECK_CONTAINS(hs_last_error(), "format version 1");
    write_v1(path, &s);
    patch_byte(path, 64 + 80 * 7 + 12, 0x05);
    expect_refused(dir, path, "non-zero reserved bytes");
    write_v1(path, &s);
    {
        uint8_t pad[16 * NAMES] = {0};
        hs_test_pwrite(path, 64 + 80 * NAMES + 4, pad, sizeof(pad));
        put_crc(path);
        expect_refused(dir, path, "torn or truncated");
    }
    hs_shadow_free(&s);
    hs_shadow_free(&t);
    hs_test_rmrf(dir);
}

/* visit(): fold into the shadow passed as arg. */
static int
visit_fold(const hs_record *rec, void *arg)
{
    return hs_shadow_fold(arg, rec) == 0 ? 0 : -2;
}

/*
 * Recovery: the stream goes through the real queue; checkpoints are taken
 * at several points; load + replay of the queue after the checkpoint must
 * equal the fold of everything, whichever checkpoint is the last.
 */
static void
test_checkpoint_replay(void)
{
    const hs_lsn total = 50000;
    const hs_lsn cuts[] = {0, 1, 777, 25000, 49999, 50000};
    char dir[256];
    static model m;
    hs_shadow all, part;
    hs_qf_writer *w;
    hs_record r;
    uint64_t seed = 77;
    int name;
    bool ok = true;

    memset(&m, 0, sizeof(m));
    hs_test_tmpdir("ckpt-replay", dir);
    CHECK_EQ(hs_shadow_init(&all, 16), 0);
    w = hs_qf_writer_open(dir, 0, 64 * 1024);
    CHECK(w != NULL);
    for (hs_lsn l = 1; w != NULL && l <= total; l++) {
        random_rec(&seed, l, &r, &name);
        ok = ok && hs_qf_writer_append(w, &r) == 0 && hs_shadow_fold(&all, &r) == 0;
        model_apply(&m, &r, name);
    }
    ok = ok && w != NULL && hs_qf_writer_sync(w) == 0;
    hs_qf_writer_close(w);
    CHECK(ok);
    CHECK(shadow_equals_model(&all, &m));

    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        hs_shadow loaded;
        hs_qf_scan_result res;

        /* the daemon: fold the first cuts[c] records, checkpoint */
        CHECK_EQ(hs_shadow_init(&part, 4), 0);
        CHECK_EQ(hs_qf_scan(dir, 1, false, NULL, NULL, &res), 0);
        {
            /* fold 1..cut via the scan, stopping after the cut */
            hs_queue_reader *rd;
            hs_record rec;
            ok = hs_queue_open(dir, 1, &rd) == HS_OK;
            for (hs_lsn l = 1; ok && l <= cuts[c]; l++)
                ok = hs_queue_next(rd, HS_LSN_MAX, &rec) == 1 && hs_shadow_fold(&part, &rec) == 0;
            hs_queue_close(rd);
            CHECK(ok);
        }
        part.applied_lsn = cuts[c] / 2;
        part.generation = c;
        CHECK_EQ(hs_checkpoint_write(dir, &part), 0);
        hs_shadow_free(&part);

        /* restart: load, replay the rest from the queue */
        CHECK_EQ(hs_shadow_init(&loaded, 16), 0);
        CHECK_EQ(hs_checkpoint_load(dir, &loaded), 1);
        CHECK_EQ(loaded.lsn, cuts[c]);
        CHECK_EQ(loaded.generation, c);
        CHECK_EQ(hs_qf_scan(dir, loaded.lsn + 1, true, visit_fold, &loaded, &res), 0);
        CHECK_EQ(res.records, total - cuts[c]);
        CHECK(shadows_equal(&loaded, &all));
        CHECK(shadow_equals_model(&loaded, &m));
        hs_shadow_free(&loaded);
    }
    hs_shadow_free(&all);
    hs_test_rmrf(dir);
}


int
main(void)
{
    make_names();
    {
        bool distinct = true;
        for (int i = 0; i < NAMES; i++)
            for (int j = 0; j < i; j++)
                distinct = distinct && !(name_lens[i] == name_lens[j] &&
                                         memcmp(names[i], names[j], name_lens[i]) == 0);
        CHECK(distinct); /* the test's own premise */
    }
    test_shadow_table();
    test_sale_fold();
    test_fold_matches_model();
    test_write_load();
    test_refused();
    test_load_version1();
    test_checkpoint_replay();
    return hs_test_done();
}
