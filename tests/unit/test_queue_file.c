/*-------------------------------------------------------------------------
 *
 * test_queue_file.c
 *      Unit tests of the on-disk queue format (shmd/format/: codec, writer,
 *      recovery scan, recycling) and CRC32C.
 *
 * Each case builds a queue in a fresh temporary directory with the real
 * writer, damages it with plain file operations where the case needs it,
 * and checks what the scan, the writer and the reader make of it: exact
 * record contents, exact byte counts cut, and the file, offset and LSN in
 * every refusal.  The last case measures the format's size and speed
 * (HS_PERF_RECORDS records, default 1,000,000; the timing bound is
 * checked only at that default).
 *
 *-------------------------------------------------------------------------
 */
#include "queue_test_util.h"

static void
test_crc32c(void)
{
    uint8_t buf[600];
    uint64_t seed = 42;
    bool ok = true;

    CHECK_EQ(hs_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(hs_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(hs_crc32c(hs_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    CHECK_EQ(hs_crc32c(0, "", 0), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)hs_test_rand(&seed);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 300; len++) {
            uint32_t want = crc32c_bitwise(buf + off, len);
            ok = ok && hs_crc32c(0, buf + off, len) == want &&
                 hs_crc32c_portable(0, buf + off, len) == want;
        }
    CHECK(ok); /* hardware and table paths agree with the bitwise definition */
}

/*-------------------------------------------------------------------------
 * Codec
 *-------------------------------------------------------------------------
 */
static void
test_codec(void)
{
    uint8_t buf[HS_QF_RECORD_MAX + 8];
    hs_record in, out;
    size_t len, dlen;
    bool ok;

    /* every type, incl. maximum-length strings and extreme values */
    for (int type = HS_REC_DEDUCT; type <= HS_REC_NOOP; type++) {
        for (int variant = 0; variant < 3; variant++) {
            memset(&in, 0, sizeof(in));
            in.lsn = variant == 2 ? UINT64_MAX - 1 : (hs_lsn)(type * 10 + variant);
            in.type = (uint8_t)type;
            in.flags = (uint8_t)(variant == 2 ? 0xff : variant);
            in.qty = variant == 0 ? 1 : variant == 1 ? -HS_STOCK_MAX : INT64_MIN;
            in.xid = variant == 2 ? UINT64_MAX : 77;
            in.timestamp_us = variant == 2 ? UINT64_MAX : 1234567;
            in.sku_len = variant == 0 ? 1 : HS_SKU_MAX;
            in.order_len = variant == 0 ? 0 : HS_ORDER_ID_MAX;
            for (int i = 0; i < in.sku_len; i++)
                in.sku[i] = (char)('a' + (i + type) % 26);
            for (int i = 0; i < in.order_len; i++)
                in.order_id[i] = (char)('A' + (i * 3 + variant) % 26);
            memset(buf, 0xee, sizeof(buf));
            len = hs_qf_encode(&in, buf);
            memset(&out, 0x5a, sizeof(out));
            CHECK(len % 8 == 0 && len <= HS_QF_RECORD_MAX);
            CHECK_EQ(hs_qf_decode(buf, len, &out, &dlen), HS_QF_OK);
            CHECK_EQ(dlen, len);
            CHECK(rec_eq(&in, &out));
        }
    }
    CHECK_EQ(len, 176); /* the largest record */

    /* typical record: 48 + "sku-42" + "order-000123456" = 69 -> 72 bytes */
    memset(&in, 0, sizeof(in));
    in.lsn = 1;
    in.type = HS_REC_DEDUCT;
    in.qty = 1;
    strcpy(in.sku, "sku-42");
    in.sku_len = 6;
    strcpy(in.order_id, "order-000123456");
    in.order_len = 15;
    len = hs_qf_encode(&in, buf);
    CHECK_EQ(len, 72);

    /* explicit little-endian layout */
    CHECK(buf[4] == 72 && buf[5] == 0 && buf[8] == 1 && buf[16] == HS_REC_DEDUCT && buf[17] == 6 &&
          buf[18] == 15 && buf[24] == 1 && memcmp(buf + 48, "sku-42", 6) == 0 &&
          memcmp(buf + 54, "order-000123456", 15) == 0 && buf[69] == 0 && buf[71] == 0);

    /* every prefix is short */
    ok = true;
    for (size_t n = 0; n < len; n++)
        ok = ok && hs_qf_decode(buf, n, &out, &dlen) == HS_QF_SHORT;
    CHECK(ok);

    /* flip every bit of the typical and of the largest record: detected */
    ok = true;
    for (int which = 0; which < 2; which++) {
        if (which == 1) {
            in.sku_len = HS_SKU_MAX;
            in.order_len = HS_ORDER_ID_MAX;
            memset(in.sku, 's', HS_SKU_MAX);
            memset(in.order_id, 'o', HS_ORDER_ID_MAX);
        }
        len = hs_qf_encode(&in, buf);
        for (size_t bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            ok = ok && hs_qf_decode(buf, len, &out, &dlen) != HS_QF_OK;
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        ok = ok && hs_qf_decode(buf, len, &out, &dlen) == HS_QF_OK;
    }
    CHECK(ok);

    /* the rule's other clauses, with a recomputed CRC so only they fail */
    in.sku_len = 6;
    in.order_len = 15;
    strcpy(in.sku, "sku-42");
    strcpy(in.order_id, "order-000123456");
    len = hs_qf_encode(&in, buf);
    {
        uint8_t b[HS_QF_RECORD_MAX];
        uint32_t crc;
#define PATCH_AND_CRC(stmt)                                                                        \
    do {                                                                                           \
        memcpy(b, buf, len);                                                                       \
        stmt;                                                                                      \
        crc = hs_crc32c(0, b + 4, len - 4);                                                        \
        b[0] = (uint8_t)crc;                                                                       \
        b[1] = (uint8_t)(crc >> 8);                                                                \
        b[2] = (uint8_t)(crc >> 16);                                                               \
        b[3] = (uint8_t)(crc >> 24);                                                               \
    } while (0)
        PATCH_AND_CRC(b[16] = 0);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[16] = 6);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[21] = 1);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[70] = 1); /* padding */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[17] = 64);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_LEN);
        PATCH_AND_CRC(b[18] = 30); /* strings no longer fit total_len */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_LEN);
        PATCH_AND_CRC(b[4] = 73);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_LEN);
        PATCH_AND_CRC(b[4] = 0; b[5] = 1); /* 256: over the maximum */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_LEN);
        PATCH_AND_CRC(b[16] = 6; b[20] = 1); /* a RESERVE with a ttl */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_OK);
        CHECK_EQ(out.ttl_ms, 1);
        PATCH_AND_CRC(b[16] = 6; b[20] = 0xff; b[21] = 0xff; b[22] = 0xff; b[23] = 0xff);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE); /* over 30 days */
        PATCH_AND_CRC(b[16] = 7); /* CONFIRM, CANCEL, EXPIRE: no ttl */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_OK);
        PATCH_AND_CRC(b[16] = 9);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_OK);
        PATCH_AND_CRC(b[16] = 9; b[20] = 5);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[16] = 10); /* a SALE with an order id */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[16] = 11); /* a BUYER: its buyer and a change of units */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_OK);
        PATCH_AND_CRC(b[16] = 11; b[20] = 1); /* a BUYER has no ttl */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[16] = 11; b[19] = 0x01); /* nor flags but GROUP_MORE */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[16] = 12);
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_BAD_TYPE);
        PATCH_AND_CRC(b[8] ^= 1); /* another LSN: valid here, rule 5 is the scan's */
        CHECK_EQ(hs_qf_decode(b, len, &out, &dlen), HS_QF_OK);
        memset(b, 0, sizeof(b));
        CHECK_EQ(hs_qf_decode(b, sizeof(b), &out, &dlen), HS_QF_ZERO);
        CHECK_EQ(hs_qf_decode(b, 47, &out, &dlen), HS_QF_SHORT);
    }
#undef PATCH_AND_CRC

    /* file header */
    {
        uint8_t h[HS_QF_HEADER_SIZE];
        char why[200];
        hs_lsn first = 0;
        uint32_t crc;

        hs_qf_encode_header(h, 12345);
        CHECK(hs_qf_check_header(h, sizeof(h), &first, why, sizeof(why)));
        CHECK_EQ(first, 12345);
        CHECK(!hs_qf_check_header(h, 63, &first, why, sizeof(why)));
        CHECK_CONTAINS(why, "short header");
        h[0] ^= 1;
        CHECK(!hs_qf_check_header(h, sizeof(h), &first, why, sizeof(why)));
        CHECK_CONTAINS(why, "bad magic");
        h[0] ^= 1;
        h[8] = 3; /* version 3 with a correct CRC */
        crc = hs_crc32c(0, h, 60);
        h[60] = (uint8_t)crc, h[61] = (uint8_t)(crc >> 8), h[62] = (uint8_t)(crc >> 16),
        h[63] = (uint8_t)(crc >> 24);
        CHECK(!hs_qf_check_header(h, sizeof(h), &first, why, sizeof(why)));
        CHECK_CONTAINS(why, "format version 3");
        hs_qf_encode_header(h, 12345);
        h[20] ^= 0x10;
        CHECK(!hs_qf_check_header(h, sizeof(h), &first, why, sizeof(why)));
        CHECK_CONTAINS(why, "checksum");
    }
}

/* SALE (type 10): the sale configuration in qty, xid, ttl_ms and the
 * paused flag round-trips; a SALE with an order id, a negative qty, a flag
 * but PAUSED, a limit over INT32_MAX or no SKU is refused. */
static void
test_sale_codec(void)
{
    uint8_t buf[HS_QF_RECORD_MAX];
    hs_record in, out, bad[10];
    size_t len, dlen;

    for (int v = 0; v < 3; v++) {
        if (v == 0)
            sale_rec(5, "sku-42", UINT64_C(1700000000000), UINT64_C(1700003600000), 3, true, &in);
        else if (v == 1)
            sale_rec(6, "s", INT64_MAX, UINT64_MAX, INT32_MAX, false, &in);
        else
            sale_rec(7, "sku-42", 0, 0, 0, false, &in);
        len = hs_qf_encode(&in, buf);
        memset(&out, 0x5a, sizeof(out));
        CHECK_EQ(hs_qf_decode(buf, len, &out, &dlen), HS_QF_OK);
        CHECK_EQ(dlen, len);
        CHECK(rec_eq(&in, &out));
    }
    /* the layout: type 10, flags 0x04, limit at 20, starts_at at 24, ends_at at 32 */
    sale_rec(5, "sku-42", UINT64_C(0x0102030405), UINT64_C(0x0a0b0c0d0e), 0x112233, true, &in);
    len = hs_qf_encode(&in, buf);
    CHECK(len == 56 && buf[16] == 10 && buf[17] == 6 && buf[18] == 0 && buf[19] == 0x04);
    CHECK(buf[20] == 0x33 && buf[21] == 0x22 && buf[22] == 0x11 && buf[23] == 0);
    CHECK(buf[24] == 0x05 && buf[28] == 0x01 && buf[29] == 0 && buf[32] == 0x0e && buf[36] == 0x0a);

    for (int i = 0; i < 10; i++)
        sale_rec(5, "sku-42", 1000, 2000, 3, false, &bad[i]);
    strcpy(bad[0].order_id, "o"), bad[0].order_len = 1;
    bad[1].qty = -1;
    bad[2].qty = INT64_MIN;
    bad[3].flags = HS_REC_FLAG_COMPENSATION;
    bad[4].flags = HS_REC_FLAG_GROUP_MORE | HS_REC_FLAG_PAUSED;
    bad[5].flags = 0x80;
    bad[6].ttl_ms = (uint32_t)INT32_MAX + 1;
    bad[7].ttl_ms = UINT32_MAX;
    bad[8].sku[0] = '\0', bad[8].sku_len = 0;
    bad[9].flags = 0x08 | HS_REC_FLAG_PAUSED;
    for (int i = 0; i < 10; i++) {
        len = hs_qf_encode(&bad[i], buf);
        CHECK_EQ(hs_qf_decode(buf, len, &out, &dlen), HS_QF_BAD_TYPE);
    }
}

/*-------------------------------------------------------------------------
 * Writer, scan, reader on good queues
 *-------------------------------------------------------------------------
 */
static void
test_round_trip(void)
{
    char dir[256], path[4200];
    hs_qf_scan_result res;
    hs_qf_file *files;
    hs_qf_writer *w;
    hs_record r;
    int n;

    hs_test_tmpdir("qf-rt", dir);

    /* empty: no directory yet */
    CHECK_EQ(hs_qf_scan(dir, 1, true, visit_seq, NULL, &res), 0);
    CHECK_EQ(res.last_lsn, 0);
    CHECK_EQ(hs_qf_list(dir, &files), 0);
    {
        hs_queue_reader *rd;
        CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_NOT_FOUND);
    }

    CHECK(write_records(dir, 0, 1000, 1 << 20));
    CHECK(scan_ok(dir, 1, 1000, &res));
    CHECK_EQ(res.first_lsn, 1);
    CHECK(!res.tail_cut);
    CHECK(scan_ok(dir, 600, 1000, NULL));
    CHECK(read_ok(dir, 1, 1000));
    CHECK(read_ok(dir, 0, 1000));
    CHECK(read_ok(dir, 777, 1000));
    n = hs_qf_list(dir, &files);
    CHECK_EQ(n, 1);
    free(files);
    queue_path(dir, 1, path);
    CHECK_EQ(hs_test_file_size(path), rec_offset(1, 1001));

    /* continue the same file */
    CHECK(write_records(dir, 1000, 1500, 1 << 20));
    CHECK(scan_ok(dir, 1, 1500, NULL));
    n = hs_qf_list(dir, &files);
    CHECK_EQ(n, 1);
    free(files);

    /* a visit that stops the scan returns its value */
    {
        hs_qf_scan_result r2;
        CHECK_EQ(hs_qf_scan(dir, 1, true, stop_at_3, NULL, &r2), 7);
        CHECK_EQ(r2.last_lsn, 3);
    }

    /* the writer refuses what would break the format */
    w = hs_qf_writer_open(dir, 1400, 1 << 20); /* the queue holds up to 1500 */
    CHECK(w == NULL);
    CHECK_CONTAINS(hs_last_error(), "ends at LSN 1500");
    w = hs_qf_writer_open(dir, 1600, 1 << 20); /* a gap */
    CHECK(w == NULL);
    w = hs_qf_writer_open(dir, 1500, 1 << 20);
    CHECK(w != NULL);
    if (w != NULL) {
        gen_rec(1502, &r);
        CHECK_EQ(hs_qf_writer_append(w, &r), -1); /* not dense */
        CHECK_CONTAINS(hs_last_error(), "LSN 1502 after LSN 1500");
        gen_rec(1501, &r);
        r.type = 10;
        CHECK_EQ(hs_qf_writer_append(w, &r), -1);
        gen_rec(1501, &r);
        CHECK_EQ(hs_qf_writer_append(w, &r), 0);
        CHECK_EQ(hs_qf_writer_write(w), 0); /* written, not synced: readable */
        CHECK(read_ok(dir, 1490, 1501));
        hs_qf_writer_close(w);
    }
    CHECK(scan_ok(dir, 1, 1501, NULL));

    /* an empty queue continued from a later LSN starts its file there */
    {
        char dir2[256];
        hs_test_tmpdir("qf-rt2", dir2);
        CHECK(write_records(dir2, 41, 50, 1 << 20));
        queue_path(dir2, 42, path);
        CHECK(hs_test_file_size(path) > 0);
        CHECK(scan_ok(dir2, 42, 50, &res));
        CHECK_EQ(res.first_lsn, 42);
        hs_test_rmrf(dir2);
    }
    hs_test_rmrf(dir);
}

/* A RESERVE round-trips with its ttl; a newest file of format version 1
 * is read, and never appended to: the writer starts a new file (or
 * replaces an empty one). */
static void
test_versions(void)
{
    char dir[256];
    hs_qf_file *files;
    hs_qf_writer *w;
    hs_record r, out;
    uint8_t buf[HS_QF_RECORD_MAX], hdr[64];
    size_t len, dlen;
    uint32_t crc;
    int n;

    gen_rec(1, &r);
    r.type = HS_REC_RESERVE;
    r.ttl_ms = 900000;
    len = hs_qf_encode(&r, buf);
    CHECK_EQ(hs_qf_decode(buf, len, &out, &dlen), HS_QF_OK);
    CHECK(rec_eq(&r, &out));

    hs_test_tmpdir("qf-ver", dir);
    CHECK(write_records(dir, 0, 10, 1 << 20));
    n = hs_qf_list(dir, &files);
    CHECK_EQ(n, 1);
    hs_test_pread(files[0].path, 0, hdr, 64);
    CHECK_EQ(hdr[8], HS_QF_FORMAT_VERSION);
    hdr[8] = 1; /* as an older build wrote it */
    crc = hs_crc32c(0, hdr, 60);
    hdr[60] = (uint8_t)crc, hdr[61] = (uint8_t)(crc >> 8), hdr[62] = (uint8_t)(crc >> 16),
    hdr[63] = (uint8_t)(crc >> 24);
    hs_test_pwrite(files[0].path, 0, hdr, 64);
    /* and zeros after its records, as an older build's power loss could
     * leave them (the size grown, the data not written) */
    {
        uint8_t zeros[256] = {0};
        hs_test_pwrite(files[0].path, (size_t)rec_offset(1, 11), zeros, sizeof(zeros));
    }
    CHECK(scan_ok(dir, 1, 10, NULL)); /* version 1 is read */
    w = hs_qf_writer_open(dir, 10, 1 << 20);
    CHECK(w != NULL);
    if (w != NULL)
        hs_qf_writer_close(w);
    /* the version-1 file was cut to its records before the next began */
    CHECK_EQ(hs_test_file_size(files[0].path), rec_offset(1, 11));
    free(files);
    n = hs_qf_list(dir, &files);
    CHECK_EQ(n, 2); /* a new file for LSN 11 on: version 2 */
    if (n == 2) {
        CHECK_EQ(files[1].first_lsn, 11);
        hs_test_pread(files[1].path, 0, hdr, 64);
        CHECK_EQ(hdr[8], HS_QF_FORMAT_VERSION);
    }
    free(files);
    CHECK(write_records(dir, 10, 20, 1 << 20));
    CHECK(scan_ok(dir, 1, 20, NULL));
    hs_test_rmrf(dir);
}

static void
test_rotation_and_recycling(void)
{
    char dir[256];
    hs_qf_file *files;
    hs_queue_reader *rd;
    hs_qf_scan_result res;
    const hs_lsn last = 20000;
    int n, expect_removed = 0;

    hs_test_tmpdir("qf-rot", dir);
    CHECK(write_records(dir, 0, 7000, 4096));
    CHECK(write_records(dir, 7000, last, 4096)); /* reopen: continues the newest file */
    n = hs_qf_list(dir, &files);
    CHECK(n > 200);
    {
        bool ok = files[0].first_lsn == 1;
        for (int i = 1; i < n; i++) {
            long long size = hs_test_file_size(files[i - 1].path);
            /* a file rotates at the first record after it reached 4096 */
            ok = ok && files[i].first_lsn > files[i - 1].first_lsn && size >= 4096 &&
                 size < 4096 + HS_QF_RECORD_MAX &&
                 size == rec_offset(files[i - 1].first_lsn, files[i].first_lsn);
        }
        CHECK(ok);
    }
    CHECK(scan_ok(dir, 1, last, &res));
    CHECK(read_ok(dir, 1, last));
    CHECK(read_ok(dir, 12345, last));
    CHECK(read_ok(dir, files[n / 2].first_lsn, last));

    /* recycle up to 10000: exactly the files whose last LSN <= 10000 */
    for (int i = 0; i + 1 < n; i++)
        if (files[i + 1].first_lsn - 1 <= 10000)
            expect_removed++;
    CHECK_EQ(hs_qf_recycle(dir, 10000), expect_removed);
    CHECK_EQ(hs_qf_recycle(dir, 10000), 0);
    free(files);
    n = hs_qf_list(dir, &files);
    CHECK(files[0].first_lsn <= 10001 && files[0].first_lsn > 10001 - 100);
    CHECK(scan_ok(dir, files[0].first_lsn, last, &res));
    CHECK_EQ(res.first_lsn, files[0].first_lsn);
    CHECK(read_ok(dir, 10001, last));
    CHECK_EQ(hs_queue_open(dir, 5000, &rd), HS_IO_ERROR);
    CHECK_CONTAINS(hs_last_error(), "LSN 5000 was recycled");
    free(files);

    /* never the newest file */
    CHECK(hs_qf_recycle(dir, HS_LSN_MAX) > 0);
    n = hs_qf_list(dir, &files);
    CHECK_EQ(n, 1);
    CHECK(scan_ok(dir, files[0].first_lsn, last, NULL));
    CHECK(write_records(dir, last, last + 10, 4096));
    CHECK(scan_ok(dir, files[0].first_lsn, last + 10, NULL));
    free(files);
    hs_test_rmrf(dir);
}

/*-------------------------------------------------------------------------
 * Torn tails: cut exactly, then appending continues cleanly
 *-------------------------------------------------------------------------
 */
static void
test_torn_tail(void)
{
    char dir[256], path[4200];
    hs_qf_scan_result res;
    long long size, cut_at;
    uint8_t garbage[300];
    uint64_t seed = 7;

    hs_test_tmpdir("qf-torn", dir);
    queue_path(dir, 1, path);

    /* 1. truncated mid-record */
    CHECK(write_records(dir, 0, 100, 1 << 20));
    size = hs_test_file_size(path);
    cut_at = rec_offset(1, 100);
    CHECK_EQ(truncate(path, cut_at + 30), 0);
    /* without cut_tail: reported, file untouched */
    CHECK_EQ(hs_qf_scan(dir, 1, false, NULL, NULL, &res), 0);
    CHECK(!res.tail_cut);
    CHECK_EQ(res.tail_offset, cut_at);
    CHECK_EQ(res.tail_bytes, 30);
    CHECK_EQ(hs_test_file_size(path), cut_at + 30);
    /* the writer refuses to append after an uncut torn tail */
    CHECK(hs_qf_writer_open(dir, 99, 1 << 20) == NULL);
    CHECK_CONTAINS(hs_last_error(), "torn tail");
    /* the reader sees nothing past 99 */
    CHECK(read_ok(dir, 1, 99));
    /* cut */
    CHECK(scan_ok(dir, 1, 99, &res));
    CHECK(res.tail_cut);
    CHECK_CONTAINS(res.tail_path, path);
    CHECK_EQ(res.tail_offset, cut_at);
    CHECK_EQ(res.tail_bytes, 30);
    CHECK_EQ(hs_test_file_size(path), cut_at);
    CHECK(size > cut_at + 30);
    /* appending continues cleanly in the same file */
    CHECK(write_records(dir, 99, 200, 1 << 20));
    CHECK(scan_ok(dir, 1, 200, &res));
    CHECK(!res.tail_cut);
    CHECK(read_ok(dir, 1, 200));

    /* 2. random garbage appended */
    size = hs_test_file_size(path);
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (uint8_t)hs_test_rand(&seed);
    CHECK_EQ(hs_test_pwrite(path, size, garbage, sizeof(garbage)), 0);
    CHECK(scan_ok(dir, 1, 200, &res));
    CHECK(res.tail_cut);
    CHECK_EQ(res.tail_offset, size);
    CHECK_EQ(res.tail_bytes, sizeof(garbage));
    CHECK_EQ(hs_test_file_size(path), size);
    CHECK(write_records(dir, 200, 250, 1 << 20));
    CHECK(scan_ok(dir, 1, 250, NULL));

    /* 3. zeros after the last record (the writer's preallocated space, or
     * a file extended before its data reached disk): the records end
     * there cleanly, and the zeros stay for the writer to write into */
    size = hs_test_file_size(path);
    memset(garbage, 0, sizeof(garbage));
    CHECK_EQ(hs_test_pwrite(path, size, garbage, 200), 0);
    CHECK(scan_ok(dir, 1, 250, &res));
    CHECK(!res.tail_cut);
    CHECK_EQ(res.tail_bytes, 0);
    CHECK_EQ(hs_test_file_size(path), size + 200);
    CHECK(read_ok(dir, 1, 250));

    /* 3b. part of a record written into those zeros, the rest of them
     * still zero (a crash in the middle of a write): a torn tail, cut
     * with the zeros after it */
    {
        uint8_t enc[HS_QF_RECORD_MAX];
        hs_record r;
        gen_rec(251, &r);
        hs_qf_encode(&r, enc);
        CHECK_EQ(hs_test_pwrite(path, size + 8, enc + 8, 16), 0);
    }
    CHECK(scan_ok(dir, 1, 250, &res));
    CHECK(res.tail_cut);
    CHECK_EQ(res.tail_offset, size);
    CHECK_EQ(res.tail_bytes, 200);
    CHECK_EQ(hs_test_file_size(path), size);

    /* 4. the last record with a damaged CRC and nothing after: torn */
    cut_at = rec_offset(1, 250);
    CHECK_EQ(hs_test_flip_bit(path, cut_at + 50, 3), 0);
    CHECK(scan_ok(dir, 1, 249, &res));
    CHECK_EQ(res.tail_offset, cut_at);
    CHECK_EQ(res.tail_bytes, rec_len(250));
    CHECK(write_records(dir, 249, 300, 1 << 20));
    CHECK(scan_ok(dir, 1, 300, NULL));
    hs_test_rmrf(dir);

    /* 5. torn file creation: the newest file with a short or zeroed header */
    hs_test_tmpdir("qf-torn2", dir);
    CHECK(write_records(dir, 0, 400, 4096));
    {
        hs_qf_file *files;
        int n = hs_qf_list(dir, &files);
        char next[4200];
        hs_lsn last_first = files[n - 1].first_lsn;
        uint8_t zeros[64] = {0};

        /* what a crash right after rotation leaves: file 401 of 20 bytes */
        queue_path(dir, 401, next);
        CHECK_EQ(hs_test_pwrite(next, 0, "HSTKQUE1garbage-half", 20), 0);
        CHECK(scan_ok(dir, 1, 400, &res));
        CHECK(res.tail_cut);
        CHECK_EQ(res.tail_offset, 0);
        CHECK_EQ(res.tail_bytes, 20);
        CHECK_EQ(hs_test_file_size(next), -1);
        /* ... or 64 zero bytes */
        CHECK_EQ(hs_test_pwrite(next, 0, zeros, sizeof(zeros)), 0);
        CHECK(scan_ok(dir, 1, 400, &res));
        CHECK(res.tail_cut);
        CHECK_EQ(hs_test_file_size(next), -1);
        /* ... or 0 bytes */
        CHECK_EQ(hs_test_pwrite(next, 0, zeros, 0), 0);
        CHECK_EQ(hs_test_file_size(next), 0);
        CHECK(scan_ok(dir, 1, 400, &res));
        CHECK(res.tail_cut);
        CHECK_EQ(hs_test_file_size(next), -1);
        /* a header-only newest file is simply empty: continued */
        CHECK(write_records(dir, 400, 450, 4096));
        CHECK(scan_ok(dir, 1, 450, NULL));
        CHECK(read_ok(dir, last_first, 450));
        free(files);
    }
    hs_test_rmrf(dir);
}

static void
test_corruption(void)
{
    char dir[256], path[4200];
    hs_qf_file *files;
    bool ok;
    int n;

    /* a bit flip anywhere in a record with valid records after it */
    hs_test_tmpdir("qf-bad", dir);
    queue_path(dir, 1, path);
    CHECK(write_records(dir, 0, 3, 1 << 20));
    {
        long long off = rec_offset(1, 2);
        size_t len = rec_len(2);
        char part[64];
        hs_qf_scan_result res;

        ok = true;
        snprintf(part, sizeof(part), "offset %lld, expected LSN 2", off);
        for (size_t bit = 0; bit < len * 8; bit++) {
            hs_test_flip_bit(path, off + (long long)(bit / 8), (int)(bit % 8));
            ok = ok && hs_qf_scan(dir, 1, true, NULL, NULL, &res) == -1 &&
                 strstr(hs_last_error(), path) != NULL && strstr(hs_last_error(), part) != NULL &&
                 !res.tail_cut;
            hs_test_flip_bit(path, off + (long long)(bit / 8), (int)(bit % 8));
        }
        CHECK(ok);
        CHECK(scan_ok(dir, 1, 3, NULL));
    }
    hs_test_rmrf(dir);

    hs_test_tmpdir("qf-bad2", dir);
    CHECK(write_records(dir, 0, 3000, 8192));
    n = hs_qf_list(dir, &files);
    CHECK(n > 10);

    /* middle of the newest file */
    {
        const hs_qf_file *f = &files[n - 1];
        hs_lsn lsn = f->first_lsn + 3;
        long long off = rec_offset(f->first_lsn, lsn);
        CHECK_EQ(hs_test_flip_bit(f->path, off + 20, 0), 0);
        expect_refused(dir, f->path, off, lsn, "valid record after it");
        /* the reader: never past it; -1 once the LSN is promised durable */
        {
            hs_queue_reader *rd;
            hs_record rec;
            int rc = 1;
            CHECK_EQ(hs_queue_open(dir, lsn - 1, &rd), HS_OK);
            CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 1);
            CHECK_EQ(rec.lsn, lsn - 1);
            CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
            CHECK_EQ(hs_queue_next(rd, lsn - 1, &rec), 0);
            rc = hs_queue_next(rd, lsn, &rec);
            CHECK_EQ(rc, -1);
            CHECK_CONTAINS(hs_last_error(), f->path);
            {
                char part[64];
                snprintf(part, sizeof(part), "offset %lld, expected LSN %" PRIu64, off, lsn);
                CHECK_CONTAINS(hs_last_error(), part);
            }
            CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0); /* still not past it */
            hs_queue_close(rd);
        }
        CHECK_EQ(hs_test_flip_bit(f->path, off + 20, 0), 0);
    }

    /* the last record of an older file: torn-looking, but not the newest */
    {
        const hs_qf_file *f = &files[n / 2];
        hs_lsn lsn = files[n / 2 + 1].first_lsn - 1;
        long long off = rec_offset(f->first_lsn, lsn);
        CHECK_EQ(hs_test_flip_bit(f->path, off + 12, 5), 0);
        expect_refused(dir, f->path, off, lsn, "not the newest");
        {
            /* the reader refuses it too: a newer file exists */
            hs_queue_reader *rd;
            hs_record rec;
            CHECK_EQ(hs_queue_open(dir, lsn, &rd), HS_OK);
            CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), -1);
            CHECK_CONTAINS(hs_last_error(), "a newer file exists");
            CHECK_CONTAINS(hs_last_error(), f->path);
            hs_queue_close(rd);
        }
        CHECK_EQ(hs_test_flip_bit(f->path, off + 12, 5), 0);
        /* ... and truncated there */
        CHECK_EQ(truncate(f->path, off + 10), 0);
        expect_refused(dir, f->path, off, lsn, "partial record");
        CHECK(hs_qf_writer_open(dir, 0, 8192) == NULL); /* the newest file ends at 3000 */
        CHECK(hs_test_file_size(f->path) == off + 10);
        hs_test_rmrf(dir);
        free(files);
    }

    /* headers: wrong magic, wrong version, garbage file, name mismatch */
    hs_test_tmpdir("qf-bad3", dir);
    CHECK(write_records(dir, 0, 1000, 8192));
    n = hs_qf_list(dir, &files);
    {
        const hs_qf_file *f = &files[1];
        uint8_t h[64], saved[64];
        uint32_t crc;
        uint64_t seed = 99;

        hs_test_pread(f->path, 0, saved, 64);
        CHECK_EQ(hs_test_flip_bit(f->path, 3, 1), 0);
        expect_refused(dir, f->path, 0, f->first_lsn, "bad magic");

        memcpy(h, saved, 64);
        h[8] = 3;
        crc = hs_crc32c(0, h, 60);
        h[60] = (uint8_t)crc, h[61] = (uint8_t)(crc >> 8), h[62] = (uint8_t)(crc >> 16),
        h[63] = (uint8_t)(crc >> 24);
        hs_test_pwrite(f->path, 0, h, 64);
        expect_refused(dir, f->path, 0, f->first_lsn, "format version 3, this build reads");

        hs_qf_encode_header(h, f->first_lsn + 1);
        hs_test_pwrite(f->path, 0, h, 64);
        expect_refused(dir, f->path, 0, f->first_lsn, "name says");

        /* the newest file's header is damaged: refused too, never cut */
        hs_test_pwrite(f->path, 0, saved, 64);
        CHECK(scan_ok(dir, 1, 1000, NULL));
        {
            const hs_qf_file *l = &files[n - 1];
            uint8_t s2[64];
            hs_test_pread(l->path, 0, s2, 64);
            CHECK_EQ(hs_test_flip_bit(l->path, 40, 0), 0);
            expect_refused(dir, l->path, 0, l->first_lsn, "header checksum");
            hs_test_pwrite(l->path, 0, s2, 64);
        }

        /* a garbage file in the place of file 2 */
        {
            uint8_t junk[4096];
            char junkpath[4200];
            for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t)hs_test_rand(&seed);
            snprintf(junkpath, sizeof(junkpath), "%s.saved", f->path);
            CHECK_EQ(rename(f->path, junkpath), 0);
            CHECK_EQ(hs_test_pwrite(f->path, 0, junk, sizeof(junk)), 0);
            expect_refused(dir, f->path, 0, f->first_lsn, "bad magic");
            unlink(f->path);

            /* a gap: file 2 missing */
            expect_refused(dir, files[2].path, 0, f->first_lsn, "starts at LSN");
            {
                hs_queue_reader *rd;
                hs_record rec;
                int rc = 1;
                CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
                for (hs_lsn l = 1; rc == 1 && l < f->first_lsn; l++)
                    rc = hs_queue_next(rd, HS_LSN_MAX, &rec);
                CHECK_EQ(rc, 1);
                CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), -1);
                CHECK_CONTAINS(hs_last_error(), "a gap");
                hs_queue_close(rd);
            }
            CHECK_EQ(rename(junkpath, f->path), 0);
            CHECK(scan_ok(dir, 1, 1000, NULL));
        }

        /* a CRC-valid record with the wrong LSN */
        {
            uint8_t rb[HS_QF_RECORD_MAX];
            hs_record r;
            long long off = rec_offset(f->first_lsn, f->first_lsn + 2);
            gen_rec(f->first_lsn + 2, &r);
            r.lsn += 5;
            size_t len = hs_qf_encode(&r, rb);
            hs_test_pwrite(f->path, off, rb, len);
            expect_refused(dir, f->path, off, f->first_lsn + 2, "has LSN");
            gen_rec(f->first_lsn + 2, &r);
            hs_qf_encode(&r, rb);
            hs_test_pwrite(f->path, off, rb, len);
            CHECK(scan_ok(dir, 1, 1000, NULL));
        }
    }
    free(files);
    hs_test_rmrf(dir);
}

/*-------------------------------------------------------------------------
 * Size and speed
 *-------------------------------------------------------------------------
 */
typedef struct perf_sum {
    uint64_t n;
    int64_t qty;
} perf_sum;

static int
visit_count(const hs_record *rec, void *arg)
{
    perf_sum *s = arg;
    s->n++;
    s->qty += rec->qty;
    return 0;
}

static void
test_perf(void)
{
    char dir[256];
    const char *env = getenv("HS_PERF_RECORDS");
    uint64_t count = env ? strtoull(env, NULL, 10) : 1000000;
    hs_qf_writer *w;
    hs_qf_file *files;
    hs_qf_scan_result res;
    hs_queue_reader *rd;
    perf_sum sum = {0};
    long long bytes = 0;
    double t0, t_write, t_scan, t_read;
    hs_record rec;
    uint64_t got = 0;
    bool ok = true;
    int n;

    if (under_valgrind() && env == NULL)
        count = 20000;
    hs_test_tmpdir("qf-perf", dir);
    memset(&rec, 0, sizeof(rec));
    rec.type = HS_REC_DEDUCT;
    rec.qty = 1;
    strcpy(rec.sku, "sku-42");
    rec.sku_len = 6;
    rec.order_len = 15;

    t0 = hs_test_seconds();
    w = hs_qf_writer_open(dir, 0, 64 << 20);
    ok = w != NULL;
    for (uint64_t l = 1; ok && l <= count; l++) {
        rec.lsn = l;
        rec.xid = l;
        rec.timestamp_us = UINT64_C(1700000000000000) + l;
        snprintf(rec.order_id, sizeof(rec.order_id), "order-%09" PRIu64, 123456 + l % 1000000);
        ok = hs_qf_writer_append(w, &rec) == 0;
        if (l % 1024 == 0)
            ok = ok && hs_qf_writer_write(w) == 0;
    }
    ok = ok && hs_qf_writer_sync(w) == 0;
    hs_qf_writer_close(w);
    t_write = hs_test_seconds() - t0;
    CHECK(ok);

    n = hs_qf_list(dir, &files);
    for (int i = 0; i < n; i++)
        bytes += hs_test_file_size(files[i].path);
    free(files);

    t0 = hs_test_seconds();
    CHECK_EQ(hs_qf_scan(dir, 1, true, visit_count, &sum, &res), 0);
    t_scan = hs_test_seconds() - t0;
    CHECK_EQ(sum.n, count);
    CHECK_EQ(sum.qty, count);
    CHECK_EQ(res.last_lsn, count);

    t0 = hs_test_seconds();
    CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
    while (hs_queue_next(rd, HS_LSN_MAX, &rec) == 1)
        got++;
    hs_queue_close(rd);
    t_read = hs_test_seconds() - t0;
    CHECK_EQ(got, count);

    printf("perf: %" PRIu64 " records (sku \"sku-42\", order_id \"order-000123456\"): "
           "%.2f bytes/record in %d file(s); append+write+sync %.3f s (%.0f records/s); "
           "recovery scan %.3f s; hs_queue_next %.3f s\n",
           count, (double)bytes / (double)count, n, t_write, (double)count / t_write, t_scan,
           t_read);
    if (count == 1000000 && !under_valgrind())
        CHECK(t_scan < 1.0); /* recovery reads 1M records well under a second */
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_crc32c();
    test_codec();
    test_sale_codec();
    test_round_trip();
    test_versions();
    test_rotation_and_recycling();
    test_torn_tail();
    test_corruption();
    test_perf();
    return hs_test_done();
}
