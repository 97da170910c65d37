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
    int sizes[1024];
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

typedef struct layout_check {
    const group_layout *g;
    hs_lsn next;
    uint64_t seen;
    bool ok;
} layout_check;

/* visit(): records must come in LSN order and equal layout_rec(). */
static int
visit_layout(const hs_record *rec, void *arg)
{
    layout_check *c = arg;
    hs_record want;

    layout_rec(c->g, rec->lsn, &want, NULL);
    if (rec->lsn != c->next || !rec_eq(rec, &want))
        c->ok = false;
    c->next = rec->lsn + 1;
    c->seen++;
    return 0;
}

/* hs_qf_scan(dir, from_lsn, cut_tail) succeeds, visits exactly
 * from_lsn..last, all equal to layout_rec(), and ends at last. */
static bool
scan_layout_opt(const char *dir, const group_layout *g, hs_lsn from_lsn, hs_lsn last, bool cut_tail,
                hs_qf_scan_result *res)
{
    layout_check c = {.g = g, .next = from_lsn, .ok = true};
    hs_qf_scan_result local;
    int rc;

    if (res == NULL)
        res = &local;
    rc = hs_qf_scan(dir, from_lsn, cut_tail, visit_layout, &c, res);
    if (rc != 0)
        fprintf(stderr, "scan: %s\n", hs_last_error());
    if (rc == 0 && (!c.ok || c.seen != last - from_lsn + 1 || res->last_lsn != last))
        fprintf(stderr, "scan_layout: ok %d, seen %" PRIu64 ", last_lsn %" PRIu64 "\n", c.ok,
                c.seen, res->last_lsn);
    return rc == 0 && c.ok && res->last_lsn == last && c.seen == last - from_lsn + 1 &&
           res->records == c.seen;
}

static bool
scan_layout(const char *dir, const group_layout *g, hs_lsn from_lsn, hs_lsn last,
            hs_qf_scan_result *res)
{
    return scan_layout_opt(dir, g, from_lsn, last, true, res);
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

    /* a group of HS_GROUP_MAX (128) records is written, and the scan takes
     * it; the 129th record of a group is refused */
    hs_test_tmpdir("qf-gmax", dir);
    g = (group_layout){.first = 1, .n = 2, .sizes = {HS_GROUP_MAX, HS_GROUP_MAX + 1}};
    w = hs_qf_writer_open(dir, 0, 1 << 20);
    CHECK(w != NULL);
    for (hs_lsn l = 1; w != NULL && l <= 2 * HS_GROUP_MAX; l++) {
        layout_rec(&g, l, &rec, NULL);
        CHECK_EQ(hs_qf_writer_append(w, &rec), 0);
    }
    if (w != NULL) {
        layout_rec(&g, 2 * HS_GROUP_MAX + 1, &rec, NULL);
        CHECK_EQ(hs_qf_writer_append(w, &rec), -1);
        CHECK_CONTAINS(hs_last_error(), "more than 128 records");
        CHECK_EQ(hs_qf_writer_last_lsn(w), 2 * HS_GROUP_MAX);
    }
    hs_qf_writer_close(w);
    {
        /* LSNs 129..256 are an open group at the end: a torn tail */
        hs_qf_scan_result res;
        CHECK(scan_layout(dir, &g, 1, HS_GROUP_MAX, &res));
        CHECK(res.tail_cut);
        CHECK_EQ(res.tail_offset, rec_offset(1, HS_GROUP_MAX + 1));
    }
    hs_test_rmrf(dir);
}

/* Rebuild dir as a queue of layout_rec(1..upto) in files of segment_bytes. */
static void
fresh_layout(const char *name, char *dir, const group_layout *g, hs_lsn upto,
             uint64_t segment_bytes)
{
    hs_test_tmpdir(name, dir);
    CHECK(write_layout(dir, g, 0, upto, segment_bytes));
}

/* The scan of a queue whose newest file ends inside the group 11..15
 * (file first..): without cut_tail it reports the group as the torn tail
 * and visits 1..10; the writer refuses to append; with cut_tail the group
 * is cut at its first record's offset; then the writer continues at 11. */
static void
expect_group_cut(const char *dir, const group_layout *g, hs_lsn first, long long size)
{
    char path[4200];
    hs_qf_scan_result res;
    long long group_off = rec_offset(first, 11);

    queue_path(dir, first, path);
    CHECK_EQ(hs_test_file_size(path), size);
    CHECK(scan_layout_opt(dir, g, 1, 10, false, &res));
    CHECK(!res.tail_cut);
    CHECK_CONTAINS(res.tail_path, path);
    CHECK_EQ(res.tail_offset, group_off);
    CHECK_EQ(res.tail_bytes, size - group_off);
    CHECK_EQ(res.first_lsn, 1);
    CHECK_EQ(hs_test_file_size(path), size);
    for (hs_lsn last = 10; last <= 12; last++) {
        CHECK(hs_qf_writer_open(dir, last, 1 << 20) == NULL);
        CHECK_CONTAINS(hs_last_error(), "torn tail");
    }
    CHECK(scan_layout(dir, g, 1, 10, &res));
    CHECK(res.tail_cut);
    CHECK_EQ(res.tail_offset, group_off);
    CHECK_EQ(res.tail_bytes, size - group_off);
    CHECK_EQ(hs_test_file_size(path), group_off);
    CHECK(write_layout(dir, g, 10, 20, 1 << 20));
    CHECK(scan_layout(dir, g, 1, 20, &res));
    CHECK(!res.tail_cut);
}

static void
test_group_scan(void)
{
    char dir[256], dir2[256], path[4200], other[4200], stray[4200];
    /* 1..10 single, 11..15 a group, 16 single, 17..20 a group */
    const group_layout g = {.first = 11, .n = 3, .sizes = {5, 1, 4}};
    /* 1 single, 2..4 a group */
    const group_layout g3 = {.first = 2, .n = 1, .sizes = {3}};
    hs_qf_scan_result res;
    hs_record rec;
    uint8_t buf[HS_QF_RECORD_MAX];

    /* whole groups: every member visited, in LSN order, also from inside
     * a group on */
    fresh_layout("qf-gscan", dir, &g, 20, 1 << 20);
    queue_path(dir, 1, path);
    CHECK(scan_layout(dir, &g, 1, 20, &res));
    CHECK(!res.tail_cut);
    CHECK_EQ(res.first_lsn, 1);
    CHECK(scan_layout(dir, &g, 13, 20, &res));
    CHECK(scan_layout(dir, &g, 15, 20, &res));
    CHECK(scan_layout(dir, &g, 20, 20, &res));
    hs_test_rmrf(dir);
    /* a visit that stops inside a group returns its value there */
    fresh_layout("qf-gstop", dir, &g3, 6, 1 << 20);
    CHECK_EQ(hs_qf_scan(dir, 1, true, stop_at_3, NULL, &res), 7);
    CHECK_EQ(res.last_lsn, 3);
    CHECK_EQ(res.records, 3);
    hs_test_rmrf(dir);

    /* 1. the newest file ends in the middle of the group's third record */
    fresh_layout("qf-gcut1", dir, &g, 15, 1 << 20);
    queue_path(dir, 1, path);
    CHECK_EQ(truncate(path, rec_offset(1, 13) + 20), 0);
    expect_group_cut(dir, &g, 1, rec_offset(1, 13) + 20);
    hs_test_rmrf(dir);

    /* 2. ... right after the group's second record: every byte valid, the
     * group incomplete */
    fresh_layout("qf-gcut2", dir, &g, 12, 1 << 20);
    expect_group_cut(dir, &g, 1, rec_offset(1, 13));
    hs_test_rmrf(dir);

    /* 3. ... with garbage after the group's fourth record */
    fresh_layout("qf-gcut3", dir, &g, 14, 1 << 20);
    queue_path(dir, 1, path);
    memset(buf, 0x5a, sizeof(buf));
    CHECK_EQ(hs_test_pwrite(path, rec_offset(1, 15), buf, 100), 0);
    expect_group_cut(dir, &g, 1, rec_offset(1, 15) + 100);
    hs_test_rmrf(dir);

    /* 4. the newest file holds nothing but the partial group: cut down to
     * its header; the previous file is whole */
    fresh_layout("qf-gcut4", dir, &g, 12, (uint64_t)rec_offset(1, 11));
    queue_path(dir, 11, path);
    CHECK_EQ(hs_test_file_size(path), rec_offset(11, 13));
    CHECK(scan_layout(dir, &g, 1, 10, &res));
    CHECK(res.tail_cut);
    CHECK_EQ(res.tail_offset, HS_QF_HEADER_SIZE);
    CHECK_EQ(hs_test_file_size(path), HS_QF_HEADER_SIZE);
    CHECK(write_layout(dir, &g, 10, 20, 1 << 20));
    CHECK(scan_layout(dir, &g, 1, 20, NULL));
    hs_test_rmrf(dir);

    /* 5. a group cut by the end of a file that is not the newest:
     * corruption, nothing cut, whatever ends the file */
    for (int how = 0; how < 2; how++) {
        char part[200];
        fresh_layout("qf-gmid", dir, &g, 12, 1 << 20);
        queue_path(dir, 1, path);
        if (how == 1)
            CHECK_EQ(truncate(path, rec_offset(1, 12) + 20), 0);
        hs_test_tmpdir("qf-gmid2", dir2);
        CHECK(write_records(dir2, 12, 20, 1 << 20));
        queue_path(dir2, 13, other);
        queue_path(dir, 13, stray);
        CHECK_EQ(hs_test_copy_file(other, stray), 0);
        hs_test_rmrf(dir2);
        expect_refused(dir, path, rec_offset(1, 11), 11,
                       "group cut by the end of a file that is not the newest");
        /* the reader returns what is before the group, then refuses */
        {
            hs_lsn got;
            CHECK_EQ(read_until_stop(dir, 1, &got), -1);
            CHECK_EQ(got, 10);
            CHECK_CONTAINS(hs_last_error(), path);
            CHECK_CONTAINS(hs_last_error(), "group of LSN 11.. at offset");
            CHECK_CONTAINS(hs_last_error(), "a newer file exists");
        }
        snprintf(part, sizeof(part), "cut at offset %lld (%s)",
                 how ? rec_offset(1, 12) : rec_offset(1, 13),
                 how ? "partial record" : "end of file");
        CHECK_CONTAINS(hs_last_error(), part);
        /* a reader opened in the next file refuses too */
        {
            hs_queue_reader *r = NULL;
            CHECK_EQ(hs_queue_open(dir, 13, &r), HS_IO_ERROR);
            CHECK_CONTAINS(hs_last_error(), path);
            CHECK_CONTAINS(hs_last_error(), stray);
            CHECK_CONTAINS(hs_last_error(), "group of LSN 11.. at offset");
            hs_queue_close(r);
        }
        hs_test_rmrf(dir);
    }

    /* 6. a group of HS_GROUP_MAX + 1 records (forged: the writer refuses it) */
    hs_test_tmpdir("qf-g129", dir);
    queue_path(dir, 1, path);
    hs_qf_writer_close(hs_qf_writer_open(dir, 0, 1 << 20));
    for (hs_lsn l = 1; l <= HS_GROUP_MAX + 2; l++) {
        size_t len;
        gen_rec(l, &rec);
        rec.flags |= l < HS_GROUP_MAX + 1 ? HS_REC_FLAG_GROUP_MORE : 0;
        len = hs_qf_encode(&rec, buf);
        CHECK_EQ(hs_test_pwrite(path, rec_offset(1, l), buf, len), 0);
    }
    expect_refused(dir, path, rec_offset(1, HS_GROUP_MAX + 1), HS_GROUP_MAX + 1, "at most 128");
    hs_test_rmrf(dir);
}

/* Append layout_rec(lsn) to the file at path by hand; only the first
 * `part` bytes of it when part > 0. */
static void
append_member(const char *path, const group_layout *g, hs_lsn lsn, size_t part)
{
    uint8_t buf[HS_QF_RECORD_MAX];
    hs_record rec;
    size_t len;

    layout_rec(g, lsn, &rec, NULL);
    len = hs_qf_encode(&rec, buf);
    CHECK_EQ(hs_test_pwrite(path, hs_test_file_size(path), buf, part ? part : len), 0);
}

/* hs_queue_next(r, upto) returns layout_rec(from..to) in order.  */
static bool
next_layout(hs_queue_reader *r, const group_layout *g, hs_lsn upto, hs_lsn from, hs_lsn to)
{
    hs_record rec, want;
    bool ok = true;

    for (hs_lsn l = from; ok && l <= to; l++) {
        layout_rec(g, l, &want, NULL);
        ok = hs_queue_next(r, upto, &rec) == 1 && rec_eq(&rec, &want);
    }
    if (!ok)
        fprintf(stderr, "next_layout: %s\n", hs_last_error());
    return ok;
}

static void
test_group_reader(void)
{
    char dir[256], path[4200];
    /* 1..10 single, 11..15 a group, 16 single, 17..20 a group */
    const group_layout g = {.first = 11, .n = 3, .sizes = {5, 1, 4}};
    hs_queue_reader *r;
    hs_record rec;
    hs_lsn durable;
    size_t len13;

    /* the newest file ends after the group's second record: every byte is
     * valid, the group incomplete */
    fresh_layout("qf-gread", dir, &g, 12, 1 << 20);
    queue_path(dir, 1, path);
    CHECK_EQ(hs_queue_open(dir, 1, &r), HS_OK);
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 10);
    CHECK(next_layout(r, &g, HS_LSN_MAX, 1, 10));
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0); /* not the group's first */
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0);
    CHECK_EQ(hs_queue_next(r, 12, &rec), 0); /* upto inside the group */
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 10);
    /* half of the third record arrives: still nothing */
    len13 = rec_len(13);
    append_member(path, &g, 13, 20);
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0);
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 10);
    /* promised durable through 15, but cut at 13: corruption */
    CHECK_EQ(hs_queue_next(r, 15, &rec), -1);
    CHECK_CONTAINS(hs_last_error(), "group of LSN 11.. at offset");
    CHECK_CONTAINS(hs_last_error(), "reported durable");
    /* the rest of the group arrives */
    CHECK_EQ(truncate(path, rec_offset(1, 13)), 0);
    append_member(path, &g, 13, 0);
    CHECK_EQ(hs_test_file_size(path), rec_offset(1, 13) + (long long)len13);
    append_member(path, &g, 14, 0);
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0);
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 10);
    append_member(path, &g, 15, 0);
    append_member(path, &g, 16, 0);
    append_member(path, &g, 17, 0);
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 16);
    CHECK_EQ(hs_queue_next(r, 14, &rec), 0); /* upto inside the group */
    CHECK(next_layout(r, &g, HS_LSN_MAX, 11, 12));
    /* stopped inside a group: the sync counts from there */
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 16);
    CHECK(next_layout(r, &g, durable, 13, 16));
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0);
    hs_queue_close(r);
    /* a reader opened inside the group */
    CHECK_EQ(hs_queue_open(dir, 13, &r), HS_OK);
    CHECK(next_layout(r, &g, 16, 13, 16));
    CHECK_EQ(hs_queue_next(r, HS_LSN_MAX, &rec), 0);
    hs_queue_close(r);
    hs_test_rmrf(dir);
}

/* The live reader with groups: the writer writes in batches that end
 * anywhere, also inside a group, and rotates every 1 KiB; the reader
 * returns exactly the records up to the last whole group, with upto
 * HS_LSN_MAX, and hs_queue_sync agrees. */
static void
test_group_live(void)
{
    static group_layout g = {.first = 1};
    char dir[256];
    hs_queue_reader *rd;
    hs_qf_writer *w;
    hs_record rec, want;
    hs_lsn last = 0, next_write = 1, next_read = 1, durable;
    uint64_t seed = 11;
    bool ok;
    int rc = 0, partial = 0;

    while (g.n < 1024 && last < 2500) {
        int size = hs_test_rand(&seed) % 2 ? 1 : 2 + (int)(hs_test_rand(&seed) % 7);
        g.sizes[g.n++] = size;
        last += (hs_lsn)size;
    }
    hs_test_tmpdir("qf-glive", dir);
    w = hs_qf_writer_open(dir, 0, 1024);
    ok = w != NULL && hs_queue_open(dir, 1, &rd) == HS_OK;
    while (ok && next_write <= last) {
        int batch = (int)(hs_test_rand(&seed) % 12);
        hs_lsn whole;

        for (int i = 0; ok && i < batch && next_write <= last; i++) {
            layout_rec(&g, next_write++, &rec, NULL);
            ok = hs_qf_writer_append(w, &rec) == 0;
        }
        ok = ok && hs_qf_writer_write(w) == 0;
        /* the last LSN written that ends a group */
        for (whole = next_write - 1; whole > 0; whole--) {
            layout_rec(&g, whole, &rec, NULL);
            if (!(rec.flags & HS_REC_FLAG_GROUP_MORE))
                break;
        }
        partial += whole != next_write - 1;
        while (ok && (rc = hs_queue_next(rd, HS_LSN_MAX, &rec)) == 1) {
            layout_rec(&g, next_read++, &want, NULL);
            ok = rec_eq(&rec, &want);
        }
        ok = ok && rc == 0 && next_read == whole + 1;
        if (hs_test_rand(&seed) % 8 == 0)
            ok = ok && hs_queue_sync(rd, &durable) == HS_OK && durable == whole;
        if (!ok)
            fprintf(stderr,
                    "group_live: wrote to %" PRIu64 ", whole to %" PRIu64 ", read to %" PRIu64
                    ", rc %d: %s\n",
                    next_write - 1, whole, next_read - 1, rc, hs_last_error());
    }
    CHECK(ok);
    CHECK_EQ(next_read, last + 1);
    CHECK(partial > 20); /* batches did end inside groups */
    hs_qf_writer_close(w);
    hs_queue_close(rd);
    CHECK(scan_layout(dir, &g, 1, last, NULL));
    hs_test_rmrf(dir);
}

/* SALE records through the real writer, the recovery scan and the reader;
 * the writer refuses, appending nothing, a record readers would refuse. */
static int
visit_sale(const hs_record *rec, void *arg)
{
    hs_record *seen = arg;
    seen[rec->lsn - 1] = *rec;
    return 0;
}

static void
test_sale_records(void)
{
    char dir[256];
    hs_record recs[4], seen[4], bad, rec;
    hs_qf_scan_result res;
    hs_queue_reader *rd;
    hs_qf_writer *w;

    hs_test_tmpdir("qf-sale", dir);
    sale_rec(1, "sku-1", UINT64_C(1700000000000), UINT64_C(1700003600000), 2, false, &recs[0]);
    gen_rec(2, &recs[1]); /* a PUT_SKU */
    sale_rec(3, "sku-1", 0, UINT64_C(1700007200000), 0, true, &recs[2]);
    sale_rec(4, "sku-2", INT64_MAX, UINT64_MAX, INT32_MAX, true, &recs[3]);
    w = hs_qf_writer_open(dir, 0, 1 << 20);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(hs_qf_writer_append(w, &recs[i]), 0);
        if (i == 1) {
            sale_rec(3, "sku-1", 1, 2, 3, false, &bad);
            bad.flags = HS_REC_FLAG_GROUP_MORE;
            CHECK_EQ(hs_qf_writer_append(w, &bad), -1);
            CHECK_CONTAINS(hs_last_error(), "bad record (type 10");
            sale_rec(3, "sku-1", 1, 2, 3, false, &bad);
            bad.qty = -5;
            CHECK_EQ(hs_qf_writer_append(w, &bad), -1);
            gen_rec(3, &bad);
            bad.type = HS_REC_RESERVE; /* a RESERVE without its ttl */
            CHECK_EQ(hs_qf_writer_append(w, &bad), -1);
            bad.type = 11;
            CHECK_EQ(hs_qf_writer_append(w, &bad), -1);
        }
    }
    CHECK_EQ(hs_qf_writer_sync(w), 0);
    CHECK_EQ(hs_qf_writer_last_lsn(w), 4);
    hs_qf_writer_close(w);

    memset(seen, 0, sizeof(seen));
    CHECK_EQ(hs_qf_scan(dir, 1, true, visit_sale, seen, &res), 0);
    CHECK_EQ(res.last_lsn, 4);
    CHECK(!res.tail_cut);
    for (int i = 0; i < 4; i++)
        CHECK(rec_eq(&seen[i], &recs[i]));
    CHECK_EQ(hs_queue_open(dir, 1, &rd), HS_OK);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 1);
        CHECK(rec_eq(&rec, &recs[i]));
    }
    CHECK_EQ(hs_queue_next(rd, HS_LSN_MAX, &rec), 0);
    hs_queue_close(rd);
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_overlap_and_gap();
    test_sale_records();
    test_live_reader();
    test_group_rotation();
    test_group_scan();
    test_group_reader();
    test_group_live();
    return hs_test_done();
}
