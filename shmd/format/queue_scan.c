/*-------------------------------------------------------------------------
 *
 * queue_scan.c
 *      The queue reader's core: read windows, one file's scan, the recovery scan.
 *
 * One reader of the queue format, shared by the daemon (recovery, the
 * spiller after a failed write) and, through queue_reader.c, the drain:
 * the validity rule of queue_file.c is implemented here once.  It writes
 * nothing, except that hs_qf_scan() with cut_tail removes a torn tail
 * (only the daemon asks for that, before any writer is open).
 *
 * Shares nothing in memory: every call works on the files alone.  Must not
 * know the shared-memory segment.
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
 * A read window over one file
 *
 * pread(2) into a private buffer, never mmap: a reader may run while the
 * daemon cuts a torn tail, and a mapping read past a truncation would
 * SIGBUS the reading process (a PostgreSQL backend).
 *-------------------------------------------------------------------------
 */
int
qf_window_init(qf_window *w, size_t cap)
{
    w->fd = -1;
    w->cap = cap;
    w->off = 0;
    w->len = 0;
    w->next_read = 0;
    w->buf = malloc(cap);
    if (w->buf == NULL) {
        hs_set_error("out of memory for a %zu-byte read buffer", cap);
        return -1;
    }
    return 0;
}

void
qf_window_reset(qf_window *w, int fd)
{
    w->fd = fd;
    w->off = 0;
    w->len = 0;
    w->next_read = 0;
}

void
qf_window_drop(qf_window *w, size_t size)
{
    w->len = 0;
    w->next_read = size;
}

/*
 * Point *p at file offset pos and return how many bytes from there are in
 * the window (all the file has, up to the window's size); reads from the
 * file when fewer than `need` bytes are cached.  0 at end of file; -1 on a
 * read error (errno set).
 */
ssize_t
qf_window_get(qf_window *w, uint64_t pos, size_t need, const uint8_t **p)
{
    size_t got = 0, want = w->cap;

    if (pos >= w->off && pos + need <= w->off + w->len) {
        *p = w->buf + (pos - w->off);
        return (ssize_t)(w->off + w->len - pos);
    }
    if (w->next_read != 0 && w->next_read < want)
        want = w->next_read > need ? w->next_read : need;
    w->next_read = 0;
    while (got < want) {
        ssize_t n = pread(w->fd, w->buf + got, want - got, (off_t)(pos + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->len = 0;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    w->off = pos;
    w->len = got;
    *p = w->buf;
    return (ssize_t)got;
}

/*
 * Is there a record passing rules 1-4 at an 8-byte-aligned offset >= from?
 * 1 (its offset in *found), 0, -1 on a read error.
 */
int
qf_find_valid(qf_window *w, uint64_t from, uint64_t *found)
{
    hs_record rec;
    size_t len;

    for (uint64_t off = (from + 7) & ~UINT64_C(7);; off += 8) {
        const uint8_t *p;
        ssize_t avail = qf_window_get(w, off, HS_QF_RECORD_MAX, &p);
        if (avail < 0)
            return -1;
        if (avail < HS_QF_RECORD_HEADER_SIZE)
            return 0;
        if (hs_qf_decode(p, (size_t)avail, &rec, &len) == HS_QF_OK) {
            *found = off;
            return 1;
        }
    }
}

/*
 * Are the bytes from `from` to the end of the file all zero (the writer's
 * preallocated space, queue_file.c)?  1, 0, -1 on a read error.  1 also
 * when `from` is at the end.
 */
int
qf_zeros_to_end(qf_window *w, uint64_t from)
{
    for (uint64_t off = from;;) {
        const uint8_t *p;
        ssize_t avail = qf_window_get(w, off, 1, &p);
        if (avail < 0)
            return -1;
        if (avail == 0)
            return 1;
        if (!all_zero(p, (size_t)avail))
            return 0;
        off += (uint64_t)avail;
    }
}

/*-------------------------------------------------------------------------
 * Scanning one file (the recovery scan and the writer's open)
 *
 * Records are judged one by one, but taken a group at a time
 * (HS_REC_FLAG_GROUP_MORE, queue_file.c GROUPS): the members of a group
 * are held back until its last member was read, so visit() never sees
 * part of a group, and a file that ends inside a group ends in a torn
 * tail that starts at the group's first member.
 *-------------------------------------------------------------------------
 */

/* The group being read. */
typedef struct qf_group {
    int n;          /* members read (0: none open) */
    uint64_t off;   /* offset of its first member */
    hs_lsn first;   /* LSN of its first member */
    int kept;       /* members held for visit() (those with LSN >= from_lsn) */
    hs_record *rec; /* QF_GROUP_MAX records; NULL when nothing is visited */
} qf_group;

/* Visit the held members of the group that just ended, in LSN order.
 * false when visit() stopped (st->visit_rc, st->next_lsn after it). */
static bool
qf_visit_group(qf_group *g, hs_qf_visit visit, void *arg, qf_file_state *st)
{
    for (int i = 0; i < g->kept; i++) {
        st->records++;
        st->visit_rc = visit(&g->rec[i], arg);
        if (st->visit_rc != 0) {
            st->next_lsn = g->rec[i].lsn + 1;
            return false;
        }
    }
    return true;
}

/* The records of a file whose header was checked, from offset pos on.
 * See qf_scan_file(). */
static qf_file_end
qf_scan_records(qf_window *w, const char *path, hs_lsn from_lsn, hs_qf_visit visit, void *arg,
                qf_file_state *st, qf_group *g)
{
    uint64_t pos = HS_QF_HEADER_SIZE, found;
    hs_lsn expected = st->next_lsn; /* the next record's LSN */
    qf_file_end end;
    hs_record rec;
    int v;

    for (;;) {
        hs_qf_decode_result d;
        const uint8_t *p;
        ssize_t avail;
        size_t len;
        hs_record *into;

        avail = qf_window_get(w, pos, HS_QF_RECORD_MAX, &p);
        if (avail < 0)
            goto read_error;
        if (avail == 0) {
            end = QF_END_CLEAN;
            st->why = HS_QF_SHORT; /* if a group is open: the file ends in it */
            break;
        }
        /* a group member is decoded straight into its place in g->rec */
        into = g->n > 0 && g->rec != NULL && g->kept < QF_GROUP_MAX ? &g->rec[g->kept] : &rec;
        d = hs_qf_decode(p, (size_t)avail, into, &len);
        if (d != HS_QF_OK) {
            /* Zeros from here to the end: the records end here
             * (PREALLOCATED SPACE).  Tested by the first byte, not by
             * HS_QF_ZERO: a run of fewer than 48 zero bytes decodes as
             * HS_QF_SHORT. */
            v = p[0] == 0 ? qf_zeros_to_end(w, pos) : 0;
            if (v < 0)
                goto read_error;
            if (v == 1) {
                end = QF_END_ZEROS;
                st->why = HS_QF_ZERO; /* if a group is open: the zeros cut it */
                break;
            }
            v = qf_find_valid(w, pos + 8, &found);
            if (v < 0)
                goto read_error;
            if (v == 1) {
                hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                             ", with a valid record after it at offset %" PRIu64,
                             path, hs_qf_decode_result_name(d), pos, expected, found);
                return QF_END_ERROR;
            }
            st->bad_off = pos;
            st->why = d;
            end = QF_END_TORN;
            break;
        }
        if (into->lsn != expected) {
            hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                         ", expected LSN %" PRIu64,
                         path, pos, into->lsn, expected);
            return QF_END_ERROR;
        }
        if (g->n == QF_GROUP_MAX) {
            hs_set_error("queue file %s: record at offset %" PRIu64 ", LSN %" PRIu64
                         ", would be record %d of the group that starts at offset %" PRIu64
                         ", LSN %" PRIu64 " (a group has at most %d)",
                         path, pos, expected, QF_GROUP_MAX + 1, g->off, g->first, QF_GROUP_MAX);
            return QF_END_ERROR;
        }
        if (g->n == 0 && (into->flags & HS_REC_FLAG_GROUP_MORE)) {
            g->off = pos;
            g->first = expected;
            g->kept = 0;
        }
        if (g->n > 0 || (into->flags & HS_REC_FLAG_GROUP_MORE)) {
            g->n++;
            if (expected >= from_lsn && g->rec != NULL) {
                if (into == &rec)
                    g->rec[g->kept] = rec;
                g->kept++;
            }
        }
        pos += len;
        expected++;
        if (into->flags & HS_REC_FLAG_GROUP_MORE)
            continue;

        /* the record ends its group (or is a group of its own) */
        if (st->first_seen == 0)
            st->first_seen = g->n > 0 ? g->first : into->lsn;
        if (g->n > 0) {
            g->n = 0;
            if (!qf_visit_group(g, visit, arg, st))
                return QF_END_STOPPED;
        } else if (into->lsn >= from_lsn && visit != NULL) {
            st->records++;
            st->visit_rc = visit(into, arg);
            if (st->visit_rc != 0) {
                st->next_lsn = into->lsn + 1;
                return QF_END_STOPPED;
            }
        }
        st->next_lsn = expected;
    }

    if (g->n > 0) {
        /* the file ends inside a group: the group is the torn tail */
        st->group_cut = true;
        st->cut_off = end == QF_END_TORN ? st->bad_off : pos;
        st->cut_lsn = expected;
        st->bad_off = g->off;
        end = QF_END_TORN;
    } else if (end != QF_END_TORN) {
        st->end = pos;
    }
    return end;

read_error:
    hs_set_error("cannot read queue file %s: %s", path, strerror(errno));
    return QF_END_ERROR;
}

/*
 * Scan the file at path (open as fd), which must start at first_lsn, and
 * call visit() for every record with LSN >= from_lsn, a group's records
 * only once its last was read.  Classifies its end; the caller decides
 * what a torn end means (only the newest file may have one).
 */
qf_file_end
qf_scan_file(qf_window *w, int fd, const char *path, hs_lsn first_lsn, hs_lsn from_lsn,
             hs_qf_visit visit, void *arg, qf_file_state *st)
{
    char why[160];
    struct stat sb;
    const uint8_t *p;
    ssize_t avail;
    hs_lsn hdr_lsn;
    uint64_t found;
    qf_group g = {.n = 0};
    qf_file_end end;
    int v;

    memset(st, 0, sizeof(*st));
    st->next_lsn = first_lsn;
    qf_window_reset(w, fd);
    if (fstat(fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", path, strerror(errno));
        return QF_END_ERROR;
    }
    st->size = (uint64_t)sb.st_size;

    avail = qf_window_get(w, 0, HS_QF_HEADER_SIZE, &p);
    if (avail < 0)
        goto read_error;
    if (!hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why))) {
        if (avail < HS_QF_HEADER_SIZE || all_zero(p, HS_QF_HEADER_SIZE)) {
            v = qf_find_valid(w, HS_QF_HEADER_SIZE, &found);
            if (v < 0)
                goto read_error;
            if (v == 0)
                return QF_END_TORN_HEADER;
        }
        hs_set_error("queue file %s: %s at offset 0, expected LSN %" PRIu64, path, why, first_lsn);
        return QF_END_ERROR;
    }
    if (hdr_lsn != first_lsn) {
        hs_set_error("queue file %s: header says first LSN %" PRIu64 " but the name says %" PRIu64
                     " (offset 0, expected LSN %" PRIu64 ")",
                     path, hdr_lsn, first_lsn, first_lsn);
        return QF_END_ERROR;
    }

    if (visit != NULL) {
        g.rec = malloc(QF_GROUP_MAX * sizeof(*g.rec));
        if (g.rec == NULL) {
            hs_set_error("out of memory scanning queue file %s", path);
            return QF_END_ERROR;
        }
    }
    end = qf_scan_records(w, path, from_lsn, visit, arg, st, &g);
    free(g.rec);
    return end;

read_error:
    hs_set_error("cannot read queue file %s: %s", path, strerror(errno));
    return QF_END_ERROR;
}

/* See queue_internal.h. */
void
qf_describe_torn(const qf_file_state *st, char *out, size_t outlen)
{
    if (!st->group_cut)
        snprintf(out, outlen, "%s at offset %" PRIu64 ", expected LSN %" PRIu64,
                 hs_qf_decode_result_name(st->why), st->bad_off, st->next_lsn);
    else
        snprintf(out, outlen,
                 "group of LSN %" PRIu64 ".. at offset %" PRIu64 " cut at offset %" PRIu64
                 " (%s), expected LSN %" PRIu64,
                 st->next_lsn, st->bad_off, st->cut_off,
                 st->cut_off == st->size ? "end of file" : hs_qf_decode_result_name(st->why),
                 st->cut_lsn);
}

/* See queue_internal.h. */
void
qf_describe_zeros(const qf_file_state *st, char *out, size_t outlen)
{
    snprintf(out, outlen,
             "zeroed bytes at offset %" PRIu64 " to its end (offset %" PRIu64
             "), expected LSN %" PRIu64,
             st->end, st->size, st->next_lsn);
}

/*-------------------------------------------------------------------------
 * Recovery scan and recycling
 *-------------------------------------------------------------------------
 */

/* See queue_file.h.  When a torn tail is found with cut_tail false, res
 * still describes it (tail_path, tail_offset, tail_bytes) with tail_cut
 * false, and the scan ends there.  res->last_lsn is the LSN before the
 * queue's continuation point even when the queue holds no record (e.g. a
 * lone file named 101 with no record: 100). */
int
hs_qf_scan(const char *dir, hs_lsn from_lsn, bool cut_tail, hs_qf_visit visit, void *arg,
           hs_qf_scan_result *res)
{
    char qdir[PATH_MAX];
    hs_qf_file *files = NULL;
    qf_window w = {.buf = NULL};
    qf_file_state st;
    hs_lsn expected;
    int n, rc = -1;

    memset(res, 0, sizeof(*res));
    if (qf_queue_dir(dir, qdir, sizeof(qdir)) != 0)
        return -1;
    n = hs_qf_list(dir, &files);
    if (n <= 0)
        return n;
    if (qf_window_init(&w, QF_READ_BUF_SIZE) != 0)
        goto done;

    expected = files[0].first_lsn;
    for (int i = 0; i < n; i++) {
        const char *path = files[i].path;
        bool newest = i == n - 1;
        qf_file_end end;
        int fd;

        if (files[i].first_lsn != expected) {
            hs_set_error("queue file %s: starts at LSN %" PRIu64 " but LSN %" PRIu64
                         " was expected at offset 0 (previous file %s)",
                         path, files[i].first_lsn, expected, files[i - 1].path);
            goto done;
        }
        fd = open(path, (newest && cut_tail ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0) {
            hs_set_error("cannot open queue file %s: %s", path, strerror(errno));
            goto done;
        }
        end = qf_scan_file(&w, fd, path, files[i].first_lsn, from_lsn, visit, arg, &st);
        res->records += st.records;
        if (res->first_lsn == 0)
            res->first_lsn = st.first_seen;
        res->last_lsn = st.next_lsn - 1;

        if (end == QF_END_ZEROS && !newest) {
            char zeros[160];
            qf_describe_zeros(&st, zeros, sizeof(zeros));
            hs_set_error("queue file %s: %s, in a file that is not the newest", path, zeros);
            end = QF_END_ERROR;
        }
        if ((end == QF_END_TORN || end == QF_END_TORN_HEADER) && !newest) {
            char torn[320];
            qf_describe_torn(&st, torn, sizeof(torn));
            if (end == QF_END_TORN && st.group_cut)
                hs_set_error("queue file %s: group cut by the end of a file that is not the "
                             "newest: %s",
                             path, torn);
            else if (end == QF_END_TORN)
                hs_set_error("queue file %s: %s, in a file that is not the newest", path, torn);
            else
                hs_set_error("queue file %s: missing header at offset 0, expected LSN %" PRIu64
                             ", in a file that is not the newest",
                             path, expected);
            end = QF_END_ERROR;
        }
        if (end == QF_END_TORN) {
            snprintf(res->tail_path, sizeof(res->tail_path), "%s", path);
            res->tail_offset = st.bad_off;
            res->tail_bytes = st.size - st.bad_off;
            if (cut_tail) {
                if (ftruncate(fd, (off_t)st.bad_off) != 0 || fsync(fd) != 0) {
                    hs_set_error("cannot cut the torn tail of queue file %s at offset %" PRIu64
                                 ": %s",
                                 path, st.bad_off, strerror(errno));
                    end = QF_END_ERROR;
                } else {
                    res->tail_cut = true;
                }
            }
        } else if (end == QF_END_TORN_HEADER) {
            snprintf(res->tail_path, sizeof(res->tail_path), "%s", path);
            res->tail_offset = 0;
            res->tail_bytes = st.size;
            if (cut_tail) {
                if (unlink(path) != 0) {
                    hs_set_error("cannot remove queue file %s with a torn header: %s", path,
                                 strerror(errno));
                    end = QF_END_ERROR;
                } else if (qf_fsync_dir(qdir) != 0) {
                    end = QF_END_ERROR;
                } else {
                    res->tail_cut = true;
                }
            }
        }
        close(fd);
        if (end == QF_END_ERROR)
            goto done;
        if (end == QF_END_STOPPED) {
            rc = st.visit_rc;
            goto done;
        }
        expected = st.next_lsn;
    }
    rc = 0;

done:
    free(w.buf);
    free(files);
    return rc;
}

/* See queue_file.h.  Files are removed oldest first, and the directory is
 * fsync'ed when any was. */
