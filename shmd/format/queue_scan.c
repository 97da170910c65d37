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
    size_t got = 0;

    if (pos >= w->off && pos + need <= w->off + w->len) {
        *p = w->buf + (pos - w->off);
        return (ssize_t)(w->off + w->len - pos);
    }
    while (got < w->cap) {
        ssize_t n = pread(w->fd, w->buf + got, w->cap - got, (off_t)(pos + got));
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

/*-------------------------------------------------------------------------
 * Scanning one file (the recovery scan and the writer's open)
 *-------------------------------------------------------------------------
 */
/*
 * Scan the file at path (open as fd), which must start at first_lsn, and
 * call visit() for every record with LSN >= from_lsn.  Classifies its end;
 * the caller decides what a torn end means (only the newest file may have
 * one).
 */
qf_file_end
qf_scan_file(qf_window *w, int fd, const char *path, hs_lsn first_lsn, hs_lsn from_lsn,
             hs_qf_visit visit, void *arg, qf_file_state *st)
{
    char why[160];
    struct stat sb;
    const uint8_t *p;
    ssize_t avail;
    hs_record rec;
    hs_lsn hdr_lsn;
    uint64_t pos, found;
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

    pos = HS_QF_HEADER_SIZE;
    for (;;) {
        hs_qf_decode_result d;
        size_t len;

        avail = qf_window_get(w, pos, HS_QF_RECORD_MAX, &p);
        if (avail < 0)
            goto read_error;
        if (avail == 0)
            return QF_END_CLEAN;
        d = hs_qf_decode(p, (size_t)avail, &rec, &len);
        if (d != HS_QF_OK) {
            v = qf_find_valid(w, pos + 8, &found);
            if (v < 0)
                goto read_error;
            if (v == 1) {
                hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                             ", with a valid record after it at offset %" PRIu64,
                             path, hs_qf_decode_result_name(d), pos, st->next_lsn, found);
                return QF_END_ERROR;
            }
            st->bad_off = pos;
            st->why = d;
            return QF_END_TORN;
        }
        if (rec.lsn != st->next_lsn) {
            hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                         ", expected LSN %" PRIu64,
                         path, pos, rec.lsn, st->next_lsn);
            return QF_END_ERROR;
        }
        if (st->first_seen == 0)
            st->first_seen = rec.lsn;
        if (rec.lsn >= from_lsn && visit != NULL) {
            st->records++;
            st->visit_rc = visit(&rec, arg);
            if (st->visit_rc != 0) {
                st->next_lsn++;
                return QF_END_STOPPED;
            }
        }
        pos += len;
        st->next_lsn++;
    }

read_error:
    hs_set_error("cannot read queue file %s: %s", path, strerror(errno));
    return QF_END_ERROR;
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

        if ((end == QF_END_TORN || end == QF_END_TORN_HEADER) && !newest) {
            if (end == QF_END_TORN)
                hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                             ", in a file that is not the newest",
                             path, hs_qf_decode_result_name(st.why), st.bad_off, st.next_lsn);
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
