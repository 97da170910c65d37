/*-------------------------------------------------------------------------
 *
 * queue_reader.c
 *      The drain's queue reader (hs_queue_* in hotstock.h).
 *
 * Reads records past a position while the spiller appends, and follows
 * into the next file; it judges bytes with the scan of queue_scan.c and
 * never writes a queue file (hs_queue_sync() only fdatasyncs them).
 *
 * Shares the files with the daemon's spiller, which appends and may cut a
 * torn tail: reads use pread(2), never mmap, so a truncation cannot fault
 * the reading process.  A reader is owned by one thread.
 *
 *-------------------------------------------------------------------------
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue_internal.h"

/*-------------------------------------------------------------------------
 * Reader (hotstock.h), for the drain
 *
 * The reader judges the bytes at its position only after it has looked at
 * the directory (the survey): if a newer file existed before it read, the
 * current file was complete when read, so an invalid record is corruption.
 * An invalid record at the end of the newest file is "not written yet"
 * unless the caller promised it durable through `upto`: a finite upto says
 * every LSN <= upto was fdatasync'ed (durable_lsn, or hs_queue_sync()), so
 * an invalid record there is corruption; HS_LSN_MAX promises nothing.
 *
 * The reader never probes past an invalid record the way the recovery scan
 * does: while the spiller appends, a pread(2) may see a later page of a
 * write before an earlier one, so "invalid, then valid" is normal for a
 * moment.  An invalid record that stays is judged by the daemon's scan.
 * Cached bytes are dropped whenever the reader finds nothing valid, so it
 * never judges stale bytes twice (the daemon may cut them and write anew).
 *
 * Between files the reader holds the scan's rule (no gap, no overlap),
 * from the file before the one it opens in onwards; nothing is skipped:
 *
 *   - at open, that previous file must be whole and end right before the
 *     opened file's first LSN (qf_reader_check_previous);
 *   - every survey refuses a file that starts after the current file's
 *     first LSN but at or before the last LSN read from it (an overlap: a
 *     copy of a file renamed, or a file left over from elsewhere), and at
 *     the clean end of a file, a newer file that does not start at the next
 *     LSN (a gap).
 *
 * Both name the two files and the LSN.  Neither can refuse a healthy
 * directory: the writer names a file after the LSN that follows the last
 * one written, recycling removes only files wholly before the reader's
 * (hs_qf_recycle), and the one file the daemon removes without recycling
 * (an empty newest file after a crash, before it appends to the file
 * before again) is gone before any LSN it would overlap is written.
 * Files before the previous one are the recovery scan's to judge.
 *
 * Groups (HS_REC_FLAG_GROUP_MORE) are all-or-nothing for the reader too.
 * Before it returns the first record of a group (or the first it reads
 * of one), hs_queue_next() reads ahead to the group's last record: only
 * when that lies whole in the file, with every member valid, and is <=
 * upto, does it return the group's records (one per call).  A group cut
 * by the end of what is written is judged like an invalid record at the
 * group's first record: "not written yet" at the end of the newest file
 * and beyond what was promised durable, corruption otherwise (a newer
 * file exists: the writer never rotates inside a group).  So whatever
 * upto, also HS_LSN_MAX, the reader never returns part of a group that
 * does not lie whole in the file, and never part of one that ends past
 * upto (a finite upto from durable_lsn or hs_queue_sync() is always a
 * group's end, so for those callers this holds back nothing).
 *-------------------------------------------------------------------------
 */
struct hs_queue_reader {
    char dir[PATH_MAX]; /* the data directory */
    char qdir[PATH_MAX];
    char path[PATH_MAX]; /* current file */
    int fd;
    hs_lsn file_first; /* its first LSN (its name) */
    bool header_ok;    /* its header was checked */
    uint64_t pos;      /* offset of the next record */
    hs_lsn expected;   /* LSN of the next record */
    hs_lsn from_lsn;
    hs_lsn group_end; /* last LSN of the group `expected` is in, once that
                       * group was seen whole in the file; 0: none yet */
    qf_window win;
};

/* What the directory holds beyond the reader's current file. */
typedef struct qf_survey {
    bool newer;        /* a file newer than the current one exists */
    bool next_exists;  /* a file starts at `expected` */
    hs_lsn next_first; /* lowest first LSN above the current file's; 0: none */
    hs_lsn inside;     /* lowest first LSN in (file_first, expected); 0: none */
} qf_survey;

/*
 * Look at the directory (see the note above the reader).  A file that
 * starts after the current file's first LSN but before `expected` starts
 * inside LSNs the reader has already read from the current file: an
 * overlap, which sv->inside reports for the caller to refuse.  0 / -1.
 */
static int
qf_reader_survey(hs_queue_reader *r, qf_survey *sv)
{
    struct dirent *de;
    DIR *d;

    memset(sv, 0, sizeof(*sv));
    d = opendir(r->qdir);
    if (d == NULL) {
        hs_set_error("cannot open queue directory %s: %s", r->qdir, strerror(errno));
        return -1;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        hs_lsn lsn;
        if (!qf_parse_name(de->d_name, &lsn) || lsn <= r->file_first)
            continue;
        sv->newer = true;
        if (sv->next_first == 0 || lsn < sv->next_first)
            sv->next_first = lsn;
        if (lsn == r->expected)
            sv->next_exists = true;
        else if (lsn < r->expected && (sv->inside == 0 || lsn < sv->inside))
            sv->inside = lsn;
    }
    if (errno != 0) {
        hs_set_error("cannot read queue directory %s: %s", r->qdir, strerror(errno));
        closedir(d);
        return -1;
    }
    closedir(d);
    return 0;
}

static int
qf_reader_open_file(hs_queue_reader *r, hs_lsn first_lsn)
{
    int fd;

    qf_file_path(r->path, sizeof(r->path), r->qdir, first_lsn);
    fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        hs_set_error("cannot open queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->file_first = first_lsn;
    r->header_ok = false;
    r->pos = 0;
    qf_window_reset(&r->win, fd);
    return 0;
}

/*
 * The daemon's recovery removes a newest file that holds no record (a crash
 * right after its creation) and then appends to the file before it; a
 * reader that had already entered the removed file would wait in it for
 * ever.  So when the current file is gone (no link left), find the file
 * that holds `expected` now and read on from there, skipping what was
 * read.  1 moved, 0 not removed, -1 (recycled past the reader, I/O error).
 */
static int
qf_reader_relocate_if_removed(hs_queue_reader *r)
{
    hs_qf_file *files;
    struct stat sb;
    int n, i, rc = -1;

    if (fstat(r->fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (sb.st_nlink > 0)
        return 0;
    n = hs_qf_list(r->dir, &files);
    if (n < 0)
        return -1;
    for (i = n - 1; i >= 0 && files[i].first_lsn > r->expected; i--)
        ;
    if (i < 0) {
        hs_set_error("queue file %s was removed and no file holds LSN %" PRIu64
                     " any more: it was recycled",
                     r->path, r->expected);
    } else if (qf_reader_open_file(r, files[i].first_lsn) == 0) {
        if (r->from_lsn < r->expected)
            r->from_lsn = r->expected;
        r->expected = files[i].first_lsn;
        r->group_end = 0;
        rc = 1;
    }
    free(files);
    return rc;
}

/*
 * At open: the file before the one the reader opens in (prev) must be
 * whole and end exactly at the LSN before the opened file's first, as the
 * recovery scan requires of a file that is not the newest.  Otherwise the
 * opened file lies inside prev's LSNs (an overlap: a copied or left-over
 * file) or after a gap, and reading on from it would skip what the scan
 * refuses.  Called with r->fd open on the opened file; borrows r->win.
 * 0 (also when prev was recycled since the listing), -1 with an error
 * naming both files.
 */
static int
qf_reader_check_previous(hs_queue_reader *r, const hs_qf_file *prev)
{
    qf_file_state st;
    qf_file_end end;
    struct stat sb;
    int fd;

    fd = open(prev->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0; /* recycled: wholly before the opened file */
        hs_set_error("cannot open queue file %s: %s", prev->path, strerror(errno));
        return -1;
    }
    end = qf_scan_file(&r->win, fd, prev->path, prev->first_lsn, HS_LSN_MAX, NULL, NULL, &st);
    close(fd);
    qf_window_reset(&r->win, r->fd);
    if (end == QF_END_CLEAN && st.next_lsn == r->file_first)
        return 0;

    /* The one legitimate exception: after a crash right after a rotation
     * the daemon removes the empty newest file (the opened one) and then
     * appends to prev again.  It removes before it appends, so a file
     * still linked now was there during the whole scan of prev. */
    if (fstat(r->fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (sb.st_nlink == 0)
        return 0; /* hs_queue_next() relocates */

    if (end == QF_END_CLEAN && st.next_lsn > r->file_first)
        hs_set_error("queue file %s starts at LSN %" PRIu64 ", inside LSNs %" PRIu64 "..%" PRIu64
                     " of queue file %s: the files overlap at LSN %" PRIu64,
                     r->path, r->file_first, prev->first_lsn, st.next_lsn - 1, prev->path,
                     r->file_first);
    else if (end == QF_END_CLEAN)
        hs_set_error("queue file %s ends at offset %" PRIu64 " after LSN %" PRIu64
                     ", but the next queue file %s starts at LSN %" PRIu64 ": LSNs %" PRIu64
                     "..%" PRIu64 " are missing (a gap)",
                     prev->path, st.size, st.next_lsn - 1, r->path, r->file_first, st.next_lsn,
                     r->file_first - 1);
    else if (end == QF_END_ZEROS) {
        char zeros[160];
        qf_describe_zeros(&st, zeros, sizeof(zeros));
        hs_set_error("queue file %s: %s, in the file before queue file %s, where the reader "
                     "starts",
                     prev->path, zeros, r->path);
    } else if (end == QF_END_TORN) {
        char torn[320];
        qf_describe_torn(&st, torn, sizeof(torn));
        hs_set_error("queue file %s: %s, in the file before queue file %s, where the reader "
                     "starts",
                     prev->path, torn, r->path);
    } else if (end == QF_END_TORN_HEADER)
        hs_set_error("queue file %s: missing header at offset 0, expected LSN %" PRIu64
                     ", in the file before queue file %s, where the reader starts",
                     prev->path, prev->first_lsn, r->path);
    else {
        /* qf_scan_file() named prev, the offset and the LSN (an error
         * text is at most 1024 bytes, segment.c) */
        char detail[1024];
        snprintf(detail, sizeof(detail), "%s", hs_last_error());
        hs_set_error("%s, in the file before queue file %s, where the reader starts", detail,
                     r->path);
    }
    return -1;
}

/* See hotstock.h.  from_lsn 0 reads from LSN 1.  HS_NOT_FOUND only when
 * there is no queue file at all: a from_lsn past the end of the queue opens
 * in the newest file, and hs_queue_next() returns 0 until it is written.
 * HS_IO_ERROR also when the file before the one holding from_lsn does not
 * end right before it (qf_reader_check_previous): continuity is checked
 * from that file on, files before it are the recovery scan's to judge. */
hs_result
hs_queue_open(const char *dir, hs_lsn from_lsn, hs_queue_reader **out)
{
    hs_queue_reader *r;
    hs_qf_file *files;
    int n, i;

    *out = NULL;
    if (from_lsn == 0)
        from_lsn = 1;
    n = hs_qf_list(dir, &files);
    if (n < 0)
        return HS_IO_ERROR;
    if (n == 0) {
        hs_set_error("no queue file in %s/%s yet", dir, HS_QF_SUBDIR);
        return HS_NOT_FOUND;
    }
    if (from_lsn < files[0].first_lsn) {
        hs_set_error("LSN %" PRIu64
                     " was recycled: the oldest queue file %s starts at LSN %" PRIu64,
                     from_lsn, files[0].path, files[0].first_lsn);
        free(files);
        return HS_IO_ERROR;
    }
    for (i = n - 1; files[i].first_lsn > from_lsn; i--)
        ;
    r = calloc(1, sizeof(*r));
    if (r == NULL || qf_window_init(&r->win, QF_READ_BUF_SIZE) != 0) {
        hs_set_error("out of memory opening the queue reader");
        free(r);
        free(files);
        return HS_IO_ERROR;
    }
    r->fd = -1;
    r->from_lsn = from_lsn;
    r->expected = files[i].first_lsn;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    if (qf_queue_dir(dir, r->qdir, sizeof(r->qdir)) != 0 ||
        qf_reader_open_file(r, files[i].first_lsn) != 0 ||
        (i > 0 && qf_reader_check_previous(r, &files[i - 1]) != 0)) {
        free(files);
        hs_queue_close(r);
        return HS_IO_ERROR;
    }
    free(files);
    *out = r;
    return HS_OK;
}

/* Where the bytes after a group's first records stop being its members. */
typedef struct qf_group_cut {
    uint64_t off;            /* offset of the first missing member */
    hs_lsn lsn;              /* its LSN */
    hs_qf_decode_result why; /* what is there (HS_QF_SHORT also at end of file) */
    bool eof;                /* the file ends at off */
} qf_group_cut;

/*
 * The record at r->pos (LSN r->expected, len bytes) has
 * HS_REC_FLAG_GROUP_MORE and its group was not seen whole yet: read ahead
 * to the group's last member (borrowing the window: the caller's record
 * is decoded already).  1: the group lies whole in the file and ends at
 * or before upto, r->group_end is set; 0: its end is past upto (nothing
 * read past upto); 2: the bytes after it end or turn invalid before its
 * last member, *cut says where; -1: corruption (a member with the wrong
 * LSN, a group longer than QF_GROUP_MAX) or a read error.
 */
static int
qf_reader_group_end(hs_queue_reader *r, size_t len, hs_lsn upto, qf_group_cut *cut)
{
    uint64_t pos = r->pos + len;
    hs_lsn lsn = r->expected + 1;

    for (int n = 1;; n++) {
        const uint8_t *p;
        ssize_t avail;
        hs_record m;
        size_t mlen;
        hs_qf_decode_result d;

        if (lsn - 1 >= upto)
            return 0; /* member lsn - 1 is at upto and says "more" */
        avail = qf_window_get(&r->win, pos, HS_QF_RECORD_MAX, &p);
        if (avail < 0) {
            hs_set_error("cannot read queue file %s at offset %" PRIu64 ": %s", r->path, pos,
                         strerror(errno));
            return -1;
        }
        d = avail == 0 ? HS_QF_SHORT : hs_qf_decode(p, (size_t)avail, &m, &mlen);
        if (d != HS_QF_OK) {
            cut->off = pos;
            cut->lsn = lsn;
            cut->why = d;
            cut->eof = avail == 0;
            return 2;
        }
        if (m.lsn != lsn) {
            hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                         ", expected LSN %" PRIu64,
                         r->path, pos, m.lsn, lsn);
            return -1;
        }
        if (n == QF_GROUP_MAX) {
            hs_set_error("queue file %s: record at offset %" PRIu64 ", LSN %" PRIu64
                         ", would be record %d of the group that starts at offset %" PRIu64
                         ", LSN %" PRIu64 " (a group has at most %d)",
                         r->path, pos, lsn, QF_GROUP_MAX + 1, r->pos, r->expected, QF_GROUP_MAX);
            return -1;
        }
        if (!(m.flags & HS_REC_FLAG_GROUP_MORE)) {
            r->group_end = lsn;
            return 1;
        }
        pos += mlen;
        lsn++;
    }
}

/* See hotstock.h and the note above the reader. */
int
hs_queue_next(hs_queue_reader *r, hs_lsn upto, hs_record *rec)
{
    bool surveyed = false, reread = false, resurveyed = false;
    qf_survey sv = {.newer = false};
    char why[160] = "";

    for (;;) {
        const uint8_t *p;
        ssize_t avail;
        size_t len;
        hs_qf_decode_result d = HS_QF_OK;
        qf_group_cut cut = {.off = 0};
        bool promised, group_cut = false;

        if (r->header_ok && r->expected >= r->from_lsn && r->expected > upto)
            return 0;
        avail =
            qf_window_get(&r->win, r->pos, r->header_ok ? HS_QF_RECORD_MAX : HS_QF_HEADER_SIZE, &p);
        if (avail < 0) {
            hs_set_error("cannot read queue file %s at offset %" PRIu64 ": %s", r->path, r->pos,
                         strerror(errno));
            return -1;
        }
        if (!r->header_ok) {
            hs_lsn hdr_lsn;
            if (hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why))) {
                if (hdr_lsn != r->file_first) {
                    hs_set_error("queue file %s: header says first LSN %" PRIu64
                                 " but the name says %" PRIu64 " (offset 0, expected LSN %" PRIu64
                                 ")",
                                 r->path, hdr_lsn, r->file_first, r->expected);
                    return -1;
                }
                r->header_ok = true;
                r->pos = HS_QF_HEADER_SIZE;
                continue;
            }
        } else if (avail > 0) {
            d = hs_qf_decode(p, (size_t)avail, rec, &len);
            if (d == HS_QF_OK) {
                if (rec->lsn != r->expected) {
                    hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                                 ", expected LSN %" PRIu64,
                                 r->path, r->pos, rec->lsn, r->expected);
                    return -1;
                }
                if ((rec->flags & HS_REC_FLAG_GROUP_MORE) && r->expected > r->group_end) {
                    int g = qf_reader_group_end(r, len, upto, &cut);
                    if (g < 0)
                        return -1;
                    if (g == 0)
                        return 0;
                    group_cut = g == 2;
                }
                if (!group_cut) {
                    if (r->expected <= r->group_end && r->group_end > upto)
                        return 0; /* a smaller upto than when the group was seen */
                    r->pos += len;
                    r->expected++;
                    if (rec->lsn < r->from_lsn)
                        continue;
                    return 1;
                }
            }
        }

        /* No valid header or record at pos (maybe not written yet).  The
         * bytes may be stale: the window keeps what followed the last
         * record it read, the zeros of preallocated space included, and
         * the spiller may have written since.  Read once more before
         * asking the directory, which costs more than a read. */
        if (!reread) {
            reread = true;
            qf_window_drop(&r->win, QF_REREAD_SIZE);
            continue;
        }
        /* Judge only bytes read after a survey of the directory. */
        if (!surveyed) {
            int moved = qf_reader_relocate_if_removed(r);
            if (moved < 0)
                return -1;
            if (moved > 0)
                continue;
            if (qf_reader_survey(r, &sv) != 0)
                return -1;
            if (sv.inside != 0) {
                /* Every LSN before `expected` was read from the current
                 * file before the survey, so the other file cannot be one
                 * the daemon is about to remove (it removes before it
                 * writes those LSNs anew): a copied or left-over file. */
                char other[PATH_MAX];
                qf_file_path(other, sizeof(other), r->qdir, sv.inside);
                hs_set_error("queue file %s starts at LSN %" PRIu64 ", inside LSNs %" PRIu64
                             "..%" PRIu64 " of queue file %s: the files overlap at LSN %" PRIu64,
                             other, sv.inside, r->file_first, r->expected - 1, r->path, sv.inside);
                return -1;
            }
            surveyed = true;
            r->win.len = 0; /* re-read from the file */
            continue;
        }
        r->win.len = 0; /* the next call re-reads too */
        if (r->header_ok && avail == 0 && sv.next_exists && !group_cut) {
            /* clean end of a complete file: follow into the next one */
            if (qf_reader_open_file(r, r->expected) != 0)
                return -1;
            surveyed = false;
            continue;
        }
        promised = upto != HS_LSN_MAX && (group_cut ? cut.lsn : r->expected) <= upto;
        if (!sv.newer && !promised)
            return 0;
        if (sv.newer && !resurveyed) {
            /* Before calling it damage, make sure the newer file is still
             * there: after a crash right after a rotation the daemon
             * removes the empty newest file, then writes the file before
             * it again (allocating zeros first), and the bytes just read
             * may be of that moment. */
            resurveyed = true;
            surveyed = false;
            continue;
        }
        if (group_cut) {
            hs_set_error("queue file %s: group of LSN %" PRIu64 ".. at offset %" PRIu64
                         " cut at offset %" PRIu64 " (%s), expected LSN %" PRIu64 " (%s)",
                         r->path, r->expected, r->pos, cut.off,
                         cut.eof ? "end of file" : hs_qf_decode_result_name(cut.why), cut.lsn,
                         sv.newer ? "a newer file exists" : "the LSN was reported durable");
        } else if (!r->header_ok) {
            hs_set_error("queue file %s: %s at offset 0, expected LSN %" PRIu64 " (%s)", r->path,
                         why, r->expected,
                         sv.newer ? "a newer file exists" : "the LSN was reported durable");
        } else if (avail == 0 && sv.newer) {
            /* no overlap and no file at `expected`: next_first > expected */
            char other[PATH_MAX];
            qf_file_path(other, sizeof(other), r->qdir, sv.next_first);
            hs_set_error("queue file %s ends at offset %" PRIu64 " after LSN %" PRIu64
                         ", but the next queue file %s starts at LSN %" PRIu64 ": LSNs %" PRIu64
                         "..%" PRIu64 " are missing (a gap)",
                         r->path, r->pos, r->expected - 1, other, sv.next_first, r->expected,
                         sv.next_first - 1);
        } else if (avail == 0) {
            hs_set_error("queue file %s: ends at offset %" PRIu64 " but LSN %" PRIu64
                         " is not there nor in a file of its own (the LSN was reported durable)",
                         r->path, r->pos, r->expected);
        } else {
            hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64 " (%s)",
                         r->path, hs_qf_decode_result_name(d), r->pos, r->expected,
                         sv.newer ? "a newer file exists" : "the LSN was reported durable");
        }
        return -1;
    }
}

/*
 * See hotstock.h.  The valid records are counted first and the files
 * fdatasync'ed after: every byte counted was in the page cache when the
 * fdatasync began, so it is on disk when it returns.  (Not the other way
 * round: a daemon that just started may write records into a file's
 * preallocated zeros after an fdatasync, below the size seen before it.)
 * durable_upto is then the last LSN of the valid, consecutive records from
 * the reader's position on that ends a group (a record without
 * HS_REC_FLAG_GROUP_MORE): a group cut by the end of the records, or by
 * the end of a file, is not counted.  When there are none it is the
 * reader's last LSN (which is inside a group when the caller stopped
 * reading in one; hs_queue_next() saw that group whole before it
 * returned any of it).  Damage stops the count there and is reported by
 * hs_queue_next(), not here.
 */
hs_result
hs_queue_sync(hs_queue_reader *r, hs_lsn *durable_upto)
{
    hs_qf_file *files = NULL;
    int *fds = NULL;
    hs_lsn expected = r->expected, counted = r->expected - 1;
    hs_result res = HS_IO_ERROR;
    qf_window w;
    bool group_open; /* the last record counted has HS_REC_FLAG_GROUP_MORE */
    int n, first = -1;

    *durable_upto = r->expected - 1;
    n = hs_qf_list(r->dir, &files);
    if (n < 0)
        return HS_IO_ERROR;
    fds = malloc((size_t)(n > 0 ? n : 1) * sizeof(*fds));
    if (fds == NULL) {
        hs_set_error("out of memory syncing the queue");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        fds[i] = -1;
        if (files[i].first_lsn < r->file_first)
            continue;
        if (first < 0)
            first = i;
        fds[i] = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) {
            hs_set_error("cannot open queue file %s: %s", files[i].path, strerror(errno));
            goto done;
        }
    }

    /* Count the valid records, the reader's window borrowed (it is
     * invalidated after). */
    w = r->win;
    group_open = false;
    for (int i = first; first >= 0 && files[first].first_lsn == r->file_first && i < n; i++) {
        uint64_t pos;
        hs_lsn hdr_lsn;
        char why[160];
        const uint8_t *p;
        ssize_t avail;

        if (i > first && files[i].first_lsn != expected)
            break;
        pos = i == first && r->header_ok ? r->pos : 0;
        qf_window_reset(&w, fds[i]);
        if (pos == 0) {
            avail = qf_window_get(&w, 0, HS_QF_HEADER_SIZE, &p);
            if (avail < HS_QF_HEADER_SIZE ||
                !hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why)) ||
                hdr_lsn != files[i].first_lsn)
                break;
            pos = HS_QF_HEADER_SIZE;
        }
        for (;;) {
            hs_record rec;
            size_t len;
            avail = qf_window_get(&w, pos, HS_QF_RECORD_MAX, &p);
            if (avail <= 0 || hs_qf_decode(p, (size_t)avail, &rec, &len) != HS_QF_OK ||
                rec.lsn != expected)
                break;
            group_open = (rec.flags & HS_REC_FLAG_GROUP_MORE) != 0;
            if (!group_open)
                counted = expected;
            expected++;
            pos += len;
        }
        if (group_open || qf_window_get(&w, pos, 1, &p) != 0)
            break; /* not the end of the file (a group never spans files):
                    * nothing after it counts */
    }
    r->win.len = 0;

    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && fdatasync(fds[i]) != 0) {
            hs_set_error("cannot fdatasync queue file %s: %s", files[i].path, strerror(errno));
            goto done;
        }
    }
    if (qf_fsync_dir(r->qdir) != 0)
        goto done;
    *durable_upto = counted;
    res = HS_OK;

done:
    for (int i = 0; fds != NULL && i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    free(files);
    return res;
}

/* Free the reader.  NULL is allowed. */
void
hs_queue_close(hs_queue_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->win.buf);
    free(r);
}
