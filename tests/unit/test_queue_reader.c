/*-------------------------------------------------------------------------
 *
 * test_queue_reader.c
 *      Unit tests of the drain's queue reader (shmd/format/queue_reader.c):
 *      gaps and overlaps between files refused with both file names, and a
 *      reader that follows a live writer; and of groups
 *      (HS_REC_FLAG_GROUP_MORE) through writer, recovery scan and reader.
 *
 * Each case builds a queue in a fresh temporary directory with the real
 * writer and checks exact record contents and every refusal.
 *
 *-------------------------------------------------------------------------
 */
#include "queue_test_util.h"

/* Read from from_lsn until hs_queue_next() stops returning records, which
 * must equal gen_rec() in dense LSN order.  Returns hs_queue_next()'s last
 * answer (0 or -1; -2 when a record was wrong, -3 when the open failed)
 * and the last LSN returned in *last (from_lsn - 1 when none). */
static int
read_until_stop(const char *dir, hs_lsn from_lsn, hs_lsn *last)
{
    hs_queue_reader *r;
    hs_record rec, want;
    int rc;

    *last = from_lsn - 1;
    if (hs_queue_open(dir, from_lsn, &r) != HS_OK)
        return -3;
    while ((rc = hs_queue_next(r, HS_LSN_MAX, &rec)) == 1) {
        gen_rec(*last + 1, &want);
        if (!rec_eq(&rec, &want)) {
            rc = -2;
            break;
        }
        *last = rec.lsn;
    }
    hs_queue_close(r);
    return rc;
}

/* hs_queue_open(dir, from_lsn) refuses, naming both files and `what`. */
static void
expect_open_refused(const char *dir, hs_lsn from_lsn, const char *path1, const char *path2,
                    const char *what)
{
    hs_queue_reader *r = NULL;

    CHECK_EQ(hs_queue_open(dir, from_lsn, &r), HS_IO_ERROR);
    CHECK(r == NULL);
    CHECK_CONTAINS(hs_last_error(), path1);
    CHECK_CONTAINS(hs_last_error(), path2);
    CHECK_CONTAINS(hs_last_error(), what);
    if (r != NULL)
        hs_queue_close(r);
}

static void
test_overlap_and_gap(void)
{
    char dir[256], dir2[256], stray[4200], other[4200], part[200];
    const hs_lsn last = 1000;
    hs_qf_file *files;
    hs_lsn got;
    int n;

    hs_test_tmpdir("qf-ovl", dir);
    CHECK(write_records(dir, 0, last, 8192));
    n = hs_qf_list(dir, &files);
    if (!CHECK(n >= 6)) {
        free(files);
        hs_test_rmrf(dir);
        return;
    }
    const hs_qf_file *a = &files[1], *b = &files[2], *c = &files[3], *z = &files[n - 1];

    /* a healthy directory of many files: read from anywhere */
    CHECK(scan_ok(dir, 1, last, NULL));
    CHECK(read_ok(dir, 1, last));
    CHECK(read_ok(dir, a->first_lsn, last));
    CHECK(read_ok(dir, a->first_lsn + 1, last));
    CHECK(read_ok(dir, b->first_lsn, last));
    CHECK(read_ok(dir, z->first_lsn + 1, last));
    /* ... also with a file being prepared under another name, and with an
     * empty newest file (a crash right after it was created) */
    snprintf(other, sizeof(other), "%s/queue/%016" PRIx64 ".hsq.tmp", dir, a->first_lsn + 2);
    CHECK_EQ(hs_test_copy_file(a->path, other), 0);
    queue_path(dir, last + 1, stray);
    CHECK_EQ(hs_test_pwrite(stray, 0, "", 0), 0);
    CHECK(read_ok(dir, 1, last));
    CHECK(read_ok(dir, a->first_lsn + 1, last));
    CHECK(read_ok(dir, last + 1, last));
    unlink(stray);
    unlink(other);

    /* 1. a copy of file a, named inside a's LSN range */
    queue_path(dir, a->first_lsn + 2, stray);
    CHECK_EQ(hs_test_copy_file(a->path, stray), 0);
    expect_refused(dir, stray, 0, b->first_lsn, "starts at LSN");
    /* the reader returns a's records, then refuses before file b */
    CHECK_EQ(read_until_stop(dir, 1, &got), -1);
    CHECK_EQ(got, b->first_lsn - 1);
    CHECK_CONTAINS(hs_last_error(), a->path);
    CHECK_CONTAINS(hs_last_error(), stray);
    snprintf(part, sizeof(part), "overlap at LSN %" PRIu64, a->first_lsn + 2);
    CHECK_CONTAINS(hs_last_error(), part);
    CHECK_EQ(read_until_stop(dir, a->first_lsn + 1, &got), -1);
    CHECK_EQ(got, b->first_lsn - 1);
    CHECK_CONTAINS(hs_last_error(), part);
    /* opened inside the stray file, or right after it: refused */
    expect_open_refused(dir, a->first_lsn + 5, a->path, stray, part);
    expect_open_refused(dir, b->first_lsn, stray, b->path, "name says");
    unlink(stray);

    /* 2. a left-over file with a header of its own, inside a's range */
    hs_test_tmpdir("qf-ovl2", dir2);
    CHECK(write_records(dir2, a->first_lsn + 2, a->first_lsn + 6, 8192));
    queue_path(dir2, a->first_lsn + 3, other);
    queue_path(dir, a->first_lsn + 3, stray);
    CHECK_EQ(hs_test_copy_file(other, stray), 0);
    hs_test_rmrf(dir2);
    snprintf(part, sizeof(part), "overlap at LSN %" PRIu64, a->first_lsn + 3);
    CHECK_EQ(read_until_stop(dir, 1, &got), -1);
    CHECK_EQ(got, b->first_lsn - 1);
    CHECK_CONTAINS(hs_last_error(), a->path);
    CHECK_CONTAINS(hs_last_error(), stray);
    CHECK_CONTAINS(hs_last_error(), part);
    expect_open_refused(dir, a->first_lsn + 4, a->path, stray, part);
    unlink(stray);

    /* 3. a copy of the newest file, named inside its range */
    queue_path(dir, z->first_lsn + 1, stray);
    CHECK_EQ(hs_test_copy_file(z->path, stray), 0);
    snprintf(part, sizeof(part), "overlap at LSN %" PRIu64, z->first_lsn + 1);
    CHECK_EQ(read_until_stop(dir, 1, &got), -1);
    CHECK_EQ(got, last);
    CHECK_CONTAINS(hs_last_error(), z->path);
    CHECK_CONTAINS(hs_last_error(), stray);
    CHECK_CONTAINS(hs_last_error(), part);
    unlink(stray);
    CHECK(scan_ok(dir, 1, last, NULL));
    CHECK(read_ok(dir, 1, last));

    /* 4. a gap: file b missing */
    snprintf(other, sizeof(other), "%s.saved", b->path);
    CHECK_EQ(rename(b->path, other), 0);
    expect_refused(dir, c->path, 0, b->first_lsn, "starts at LSN");
    snprintf(part, sizeof(part), "LSNs %" PRIu64 "..%" PRIu64 " are missing", b->first_lsn,
             c->first_lsn - 1);
    CHECK_EQ(read_until_stop(dir, 1, &got), -1);
    CHECK_EQ(got, b->first_lsn - 1);
    CHECK_CONTAINS(hs_last_error(), a->path);
    CHECK_CONTAINS(hs_last_error(), c->path);
    CHECK_CONTAINS(hs_last_error(), part);
    /* opened after the gap: refused too, not read on */
    expect_open_refused(dir, c->first_lsn, a->path, c->path, part);
    expect_open_refused(dir, c->first_lsn + 2, a->path, c->path, part);
    CHECK_EQ(rename(other, b->path), 0);
    CHECK(scan_ok(dir, 1, last, NULL));
    CHECK(read_ok(dir, c->first_lsn, last));

    /* 5. recycled files are no gap: read from the first file left, and
     * from inside it */
    CHECK_EQ(hs_qf_recycle(dir, b->first_lsn - 1), 2);
    CHECK(scan_ok(dir, b->first_lsn, last, NULL));
    CHECK(read_ok(dir, b->first_lsn, last));
    CHECK(read_ok(dir, b->first_lsn + 1, last));
    CHECK(read_ok(dir, c->first_lsn + 3, last));
    CHECK_EQ(read_until_stop(dir, a->first_lsn, &got), -3);
    CHECK_CONTAINS(hs_last_error(), "was recycled");

    free(files);
    hs_test_rmrf(dir);
}

/*-------------------------------------------------------------------------
 * The live reader: the drain reading while the spiller appends
 *-------------------------------------------------------------------------
 */
static void
test_live_reader(void)
{
    char dir[256], path[4200];
    hs_queue_reader *rd;
    hs_record rec, want;
    uint8_t buf[HS_QF_RECORD_MAX];
    hs_lsn durable;
    long long size;
    size_t len;

    hs_test_tmpdir("qf-live", dir);
    queue_path(dir, 1, path);
    CHECK(write_records(dir, 0, 10, 1 << 20));
    CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
    for (hs_lsn l = 1; l <= 10; l++)
        CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 1);
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);

    /* half of record 11 is on disk */
    gen_rec(11, &want);
    len = hs_qf_encode(&want, buf);
    size = hs_test_file_size(path);
    CHECK_EQ(hs_test_pwrite(path, size, buf, 30), 0);
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
    CHECK_EQ(hs_queue_next(rd, 10, &rec), 0);
    CHECK_EQ(hs_queue_sync(rd, &durable), HS_OK);
    CHECK_EQ(durable, 10);
    /* the rest arrives */
    CHECK_EQ(hs_test_pwrite(path, size + 30, buf + 30, len - 30), 0);
    CHECK_EQ(hs_queue_next(rd, 10, &rec), 0); /* beyond upto */
    CHECK_EQ(hs_queue_sync(rd, &durable), HS_OK);
    CHECK_EQ(durable, 11);
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 1);
    CHECK(rec_eq(&rec, &want));
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
    hs_queue_close(rd);

    /* promised durable but partial: corruption */
    CHECK(scan_ok(dir, 1, 11, NULL));
    gen_rec(12, &want);
    len = hs_qf_encode(&want, buf);
    size = hs_test_file_size(path);
    CHECK_EQ(hs_test_pwrite(path, size, buf, len - 8), 0);
    CHECK_EQ(hs_queue_open(dir, 12, &rd), HS_OK);
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
    CHECK_EQ(hs_queue_next(rd, 12, &rec), -1);
    CHECK_CONTAINS(hs_last_error(), "reported durable");
    CHECK_EQ(hs_test_pwrite(path, size + len - 8, buf + len - 8, 8), 0);
    CHECK_EQ(hs_queue_next(rd, 12, &rec), 1);
    CHECK(rec_eq(&rec, &want));
    hs_queue_close(rd);
    hs_test_rmrf(dir);

    /* a crash right after a rotation left an empty newest file 11, and
     * readers entered it; the restarted daemon removes it and appends to
     * file 1 again: the readers find their records there */
    hs_test_tmpdir("qf-live3", dir);
    CHECK(write_records(dir, 0, 10, 1 << 20));
    {
        char empty[4200];
        hs_queue_reader *rd2;
        hs_qf_scan_result res;
        hs_qf_writer *w;

        queue_path(dir, 11, empty);
        CHECK_EQ(hs_test_pwrite(empty, 0, "", 0), 0);
        CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
        CHECK_EQ(hs_queue_open(dir, 11, &rd2), HS_OK);
        for (hs_lsn l = 1; l <= 10; l++)
            CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 1);
        CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
        CHECK_EQ(hs_queue_next(rd2, HS_LSN_MAX, &rec), 0);
        CHECK(scan_ok(dir, 1, 10, &res));
        CHECK(res.tail_cut);
        CHECK_EQ(hs_test_file_size(empty), -1);
        w = hs_qf_writer_open(dir, 10, 1 << 20);
        CHECK(w != NULL);
        for (hs_lsn l = 11; w != NULL && l <= 15; l++) {
            gen_rec(l, &rec);
            CHECK_EQ(hs_qf_writer_append(w, &rec), 0);
        }
        CHECK_EQ(hs_qf_writer_write(w), 0);
        hs_qf_writer_close(w);
        for (hs_lsn l = 11; l <= 15; l++) {
            gen_rec(l, &want);
            CHECK(hs_queue_next(rd, HS_LSN_MAX, &rec) == 1 && rec_eq(&rec, &want));
            CHECK(hs_queue_next(rd2, HS_LSN_MAX, &rec) == 1 && rec_eq(&rec, &want));
        }
        CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
        CHECK_EQ(hs_queue_next(rd2, HS_LSN_MAX, &rec), 0);
        hs_queue_close(rd);
        hs_queue_close(rd2);
    }
    hs_test_rmrf(dir);

    /* interleaved with a writer rotating every 1 KiB: the reader follows
     * into every new file, also one that has only its header yet */
    hs_test_tmpdir("qf-live2", dir);
    {
        hs_qf_writer *w = hs_qf_writer_open(dir, 0, 1024);
        hs_lsn next_write = 1, next_read = 1;
        uint64_t seed = 5;
        bool ok = w != NULL;
        int rc;

        CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
        while (ok && next_write <= 5000) {
            int batch = (int)(hs_test_rand(&seed) % 40);
            for (int i = 0; ok && i < batch && next_write <= 5000; i++) {
                gen_rec(next_write++, &rec);
                ok = hs_qf_writer_append(w, &rec) == 0;
            }
            ok = ok && hs_qf_writer_write(w) == 0;
            if (hs_test_rand(&seed) % 4 == 0)
                ok = ok && hs_qf_writer_sync(w) == 0;
            while (ok && (rc = hs_queue_next(rd, next_write - 1, &rec)) == 1) {
                gen_rec(next_read++, &want);
                ok = rec_eq(&rec, &want);
            }
            ok = ok && rc == 0 && next_read == next_write;
            /* hs_queue_sync agrees with what was written */
            if (hs_test_rand(&seed) % 8 == 0)
                ok = ok && hs_queue_sync(rd, &durable) == HS_OK && durable == next_write - 1;
        }
        CHECK(ok);
        CHECK_EQ(next_read, 5001);
        hs_qf_writer_close(w);
        hs_queue_close(rd);
        {
            hs_qf_file *files;
            int n = hs_qf_list(dir, &files);
            CHECK(n > 100);
            free(files);
        }
        CHECK(scan_ok(dir, 1, 5000, NULL));
    }
    hs_test_rmrf(dir);
}

/*-------------------------------------------------------------------------
 * Groups: all-or-nothing runs of records (HS_REC_FLAG_GROUP_MORE)
 *-------------------------------------------------------------------------
 */

/* Where the groups are: LSNs from `first` on are cut into runs of sizes[0],
 * sizes[1], ... (1: a single record); other LSNs are single records. */
typedef struct group_layout {
    hs_lsn first;
    int n;
    int sizes[64];
} group_layout;

/* gen_rec(lsn), with HS_REC_FLAG_GROUP_MORE on every member of a run but
 * its last.  Sets *end (if not NULL) to the LSN of its run's last member. */
static void
layout_rec(const group_layout *g, hs_lsn lsn, hs_record *r, hs_lsn *end)
{
    hs_lsn start = g->first;

    gen_rec(lsn, r);
    if (end != NULL)
        *end = lsn;
    for (int i = 0; i < g->n && lsn >= g->first; i++) {
        if (lsn < start + (hs_lsn)g->sizes[i]) {
            if (lsn + 1 < start + (hs_lsn)g->sizes[i])
                r->flags |= HS_REC_FLAG_GROUP_MORE;
            if (end != NULL)
                *end = start + (hs_lsn)g->sizes[i] - 1;
            return;
        }
        start += (hs_lsn)g->sizes[i];
    }
}

/* Append layout_rec(last + 1 .. upto) with the real writer (upto may end
 * inside a group), write(2) and sync. */
static bool
write_layout(const char *dir, const group_layout *g, hs_lsn last, hs_lsn upto,
             uint64_t segment_bytes)
{
    hs_qf_writer *w = hs_qf_writer_open(dir, last, segment_bytes);
    bool ok = w != NULL;
    hs_record r;

    if (!ok)
        fprintf(stderr, "writer_open: %s\n", hs_last_error());
    for (hs_lsn l = last + 1; ok && l <= upto; l++) {
        layout_rec(g, l, &r, NULL);
        ok = hs_qf_writer_append(w, &r) == 0;
    }
    ok = ok && hs_qf_writer_sync(w) == 0;
    hs_qf_writer_close(w);
    return ok;
}

static void
test_group_rotation(void)
{
    char dir[256];
    group_layout g = {.first = 3, .n = 40};
    hs_qf_file *files;
    hs_qf_writer *w;
    hs_record rec;
    hs_lsn last = 2, end;
    int n, groups5 = 0;

    /* two five-record groups, then a single record, and so on; 256-byte
     * files: a file is full after two or three records, so nearly every
     * group would be split if the writer rotated on size alone (27 files,
     * 13 of them starting at a group) */
    for (int i = 0; i < g.n; i++) {
        g.sizes[i] = i % 3 == 2 ? 1 : 5;
        last += (hs_lsn)g.sizes[i];
    }
    hs_test_tmpdir("qf-grot", dir);
    CHECK(write_layout(dir, &g, 0, last, 256));
    n = hs_qf_list(dir, &files);
    CHECK(n >= 27);
    for (int i = 0; i < n; i++) {
        /* every file starts right after a group's end */
        layout_rec(&g, files[i].first_lsn - 1, &rec, NULL);
        CHECK(files[i].first_lsn == 1 || !(rec.flags & HS_REC_FLAG_GROUP_MORE));
        layout_rec(&g, files[i].first_lsn, &rec, &end);
        if (end - files[i].first_lsn == 4)
            groups5++;
        /* and holds that group whole */
        CHECK(i + 1 == n || files[i + 1].first_lsn > end);
    }
    CHECK(groups5 >= 13); /* files did start at a five-record group */
    free(files);
    hs_test_rmrf(dir);

    /* a group of QF_GROUP_MAX (65) records is written; a 66th is refused */
    hs_test_tmpdir("qf-gmax", dir);
    w = hs_qf_writer_open(dir, 0, 1 << 20);
    CHECK(w != NULL);
    for (hs_lsn l = 1; w != NULL && l <= 65; l++) {
        gen_rec(l, &rec);
        rec.flags |= l < 65 ? HS_REC_FLAG_GROUP_MORE : 0;
        CHECK_EQ(hs_qf_writer_append(w, &rec), 0);
    }
    for (hs_lsn l = 66; w != NULL && l <= 131; l++) {
        gen_rec(l, &rec);
        rec.flags |= HS_REC_FLAG_GROUP_MORE;
        if (l < 131)
            CHECK_EQ(hs_qf_writer_append(w, &rec), 0);
    }
    if (w != NULL) {
        CHECK_EQ(hs_qf_writer_append(w, &rec), -1);
        CHECK_CONTAINS(hs_last_error(), "more than 65 records");
        CHECK_EQ(hs_qf_writer_last_lsn(w), 130);
    }
    hs_qf_writer_close(w);
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_overlap_and_gap();
    test_live_reader();
    test_group_rotation();
    return hs_test_done();
}
