/*-------------------------------------------------------------------------
 *
 * queue_writer.c
 *      The queue format's one writer (the spiller's) and recycling.
 *
 * Writes the format described at the top of queue_file.c: writes encoded
 * records at the end of the newest file's records, into space allocated
 * ahead (PREALLOCATED SPACE there), rotates at queue_file_size (never
 * inside a group: a group lies in one file), fdatasyncs (the caller owns
 * the policy: spiller.c), and removes drained files.
 *
 * Linked by hotstockd and by tools that forge queues for tests; never by
 * libhotstock or the extension (tests/layout/check.sh checks hotstock.so).
 * Not thread-safe: one thread owns a writer.
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

int
hs_qf_recycle(const char *dir, hs_lsn upto)
{
    char qdir[PATH_MAX];
    hs_qf_file *files;
    int n, removed = 0;

    if (qf_queue_dir(dir, qdir, sizeof(qdir)) != 0)
        return -1;
    n = hs_qf_list(dir, &files);
    if (n < 0)
        return -1;
    for (int i = 0; i + 1 < n; i++) {
        if (files[i + 1].first_lsn == 0 || files[i + 1].first_lsn - 1 > upto)
            break;
        if (unlink(files[i].path) != 0 && errno != ENOENT) {
            hs_set_error("cannot remove queue file %s: %s", files[i].path, strerror(errno));
            free(files);
            return -1;
        }
        removed++;
    }
    free(files);
    if (removed > 0 && qf_fsync_dir(qdir) != 0)
        return -1;
    return removed;
}

/*-------------------------------------------------------------------------
 * Writer
 *-------------------------------------------------------------------------
 */
struct hs_qf_writer {
    char qdir[PATH_MAX];
    char path[PATH_MAX]; /* current file */
    int fd;              /* current file */
    uint64_t file_bytes; /* its records' end, including what is buffered */
    uint64_t alloc_end;  /* its size: records, then preallocated zeros */
    uint64_t segment_bytes;
    hs_lsn last_lsn;      /* last LSN appended (buffered or written) */
    int group_len;        /* records of the open group appended (0: none open,
                           * i.e. last_lsn had no HS_REC_FLAG_GROUP_MORE) */
    bool dirty;           /* current file written since the last sync */
    bool dir_dirty;       /* a file was created since the last sync */
    bool failed;          /* a write or sync failed: the writer refuses work */
    bool sync_failed;     /* an fdatasync failed (see hs_qf_writer_sync_failed) */
    bool prealloc_failed; /* posix_fallocate failed: not again in this file */
    int *pending;         /* older files written since the last sync */
    int npending, cap_pending;
    uint8_t *buf;
    size_t len;
};

/* Create the file whose first record is first_lsn and write its header;
 * it becomes the current file. */
static int
qf_writer_create(hs_qf_writer *w, hs_lsn first_lsn)
{
    uint8_t hdr[HS_QF_HEADER_SIZE];

    qf_file_path(w->path, sizeof(w->path), w->qdir, first_lsn);
    w->fd = open(w->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        hs_set_error("cannot create queue file %s: %s", w->path, strerror(errno));
        return -1;
    }
    w->dir_dirty = true;
    hs_qf_encode_header(hdr, first_lsn);
    if (hs_pwrite_all(w->fd, hdr, sizeof(hdr), 0) != 0) {
        hs_set_error("cannot write the header of queue file %s: %s", w->path, strerror(errno));
        return -1;
    }
    w->dirty = true;
    w->file_bytes = HS_QF_HEADER_SIZE;
    w->alloc_end = HS_QF_HEADER_SIZE;
    w->prealloc_failed = false;
    return 0;
}

/*
 * Cut the current file to its records, dropping the space allocated past
 * them (queue_file.c, PREALLOCATED SPACE), and with sync make that
 * durable: before a newer file is created, so that only the newest file
 * ends in zeros.  Without sync (a clean close) a crash may leave the
 * zeros, which is fine in the newest file.  A failed fdatasync also sets
 * sync_failed.
 */
static int
qf_writer_cut(hs_qf_writer *w, bool sync)
{
    if (w->alloc_end > w->file_bytes) {
        if (ftruncate(w->fd, (off_t)w->file_bytes) != 0) {
            hs_set_error("cannot cut queue file %s to its records at offset %" PRIu64 ": %s",
                         w->path, w->file_bytes, strerror(errno));
            w->failed = true;
            return -1;
        }
        w->alloc_end = w->file_bytes;
        if (sync) {
            if (fdatasync(w->fd) != 0) {
                hs_set_error("cannot fdatasync queue file %s after cutting it at offset %" PRIu64
                             ": %s",
                             w->path, w->file_bytes, strerror(errno));
                w->failed = true;
                w->sync_failed = true;
                return -1;
            }
            w->dirty = false;
        }
    }
    return 0;
}

/* The newest file w has open is of an older format version: never append
 * to it (queue_file.c, VERSIONS).  With records, start the next file now,
 * once zeros after them are cut (an older build's torn tail the scan kept
 * as the end of its records); empty (a header only), replace it by one of
 * this version. */
static int
qf_writer_upgrade(hs_qf_writer *w, const hs_qf_file *f, hs_lsn next_lsn)
{
    uint8_t hdr[12];

    if (pread(w->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
        hs_set_error("cannot read the header of queue file %s: %s", f->path, strerror(errno));
        return -1;
    }
    if (hs_get_u32(hdr + 8) == HS_QF_FORMAT_VERSION)
        return 0;
    if (next_lsn != f->first_lsn && qf_writer_cut(w, true) != 0)
        return -1;
    close(w->fd);
    w->fd = -1;
    if (next_lsn == f->first_lsn && unlink(f->path) != 0) {
        hs_set_error("cannot remove the empty old-version queue file %s: %s", f->path,
                     strerror(errno));
        return -1;
    }
    return qf_writer_create(w, w->last_lsn + 1);
}

/* See queue_file.h.  Creates DIR/queue (0700) when missing.  Refuses to
 * append where the result would break the format: after a torn tail that
 * hs_qf_scan() has not cut yet, or when the newest file does not end at
 * last_lsn (a gap or an overlap the scan would refuse later). */
hs_qf_writer *
hs_qf_writer_open(const char *dir, hs_lsn last_lsn, uint64_t segment_bytes)
{
    hs_qf_writer *w;
    hs_qf_file *files = NULL;
    qf_window win = {.buf = NULL};
    qf_file_state st;
    int n;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        hs_set_error("out of memory opening the queue writer");
        return NULL;
    }
    w->fd = -1;
    w->segment_bytes = segment_bytes ? segment_bytes : QF_DEFAULT_SEGMENT_BYTES;
    w->last_lsn = last_lsn;
    w->buf = malloc(QF_WRITE_BUF_SIZE);
    if (w->buf == NULL) {
        hs_set_error("out of memory for the queue write buffer");
        goto fail;
    }
    if (qf_queue_dir(dir, w->qdir, sizeof(w->qdir)) != 0)
        goto fail;
    if (mkdir(w->qdir, 0700) == 0) {
        if (qf_fsync_dir(dir) != 0)
            goto fail;
    } else if (errno != EEXIST) {
        hs_set_error("cannot create queue directory %s: %s", w->qdir, strerror(errno));
        goto fail;
    }

    n = hs_qf_list(dir, &files);
    if (n < 0)
        goto fail;
    if (n == 0) {
        if (qf_writer_create(w, last_lsn + 1) != 0)
            goto fail;
    } else {
        const hs_qf_file *f = &files[n - 1];
        qf_file_end end;

        snprintf(w->path, sizeof(w->path), "%s", f->path);
        w->fd = open(f->path, O_RDWR | O_CLOEXEC);
        if (w->fd < 0) {
            hs_set_error("cannot open queue file %s: %s", f->path, strerror(errno));
            goto fail;
        }
        if (qf_window_init(&win, QF_READ_BUF_SIZE) != 0)
            goto fail;
        end = qf_scan_file(&win, w->fd, f->path, f->first_lsn, HS_LSN_MAX, NULL, NULL, &st);
        if (end == QF_END_ERROR)
            goto fail;
        if (end != QF_END_CLEAN && end != QF_END_ZEROS) {
            hs_set_error("queue file %s: torn tail at offset %" PRIu64 ", expected LSN %" PRIu64
                         ": run the recovery scan (hs_qf_scan with cut_tail) before writing",
                         f->path, end == QF_END_TORN ? st.bad_off : 0, st.next_lsn);
            goto fail;
        }
        if (st.next_lsn - 1 != last_lsn) {
            hs_set_error("queue file %s ends at LSN %" PRIu64 " (offset %" PRIu64
                         "), but the writer was asked to continue after LSN %" PRIu64,
                         f->path, st.next_lsn - 1, st.end, last_lsn);
            goto fail;
        }
        w->file_bytes = st.end;
        w->alloc_end = st.size;
        if (qf_writer_upgrade(w, f, st.next_lsn) != 0)
            goto fail;
    }
    free(win.buf);
    free(files);
    return w;

fail:
    free(win.buf);
    free(files);
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w);
    return NULL;
}

/*
 * Allocate the current file ahead of its records, QF_PREALLOC_BYTES at a
 * time but not past segment_bytes, where it rotates, so that the writes
 * and fdatasyncs that follow overwrite blocks already in the file instead
 * of growing it (queue_file.c, PREALLOCATED SPACE).  Best effort: the
 * group that may end past segment_bytes, and any write where the file
 * system cannot allocate (no space left), extend the file as they are
 * written, and a full disk shows at the write; after a failure, no
 * further attempt until the next file.
 */
static void
qf_writer_prealloc(hs_qf_writer *w)
{
    uint64_t want = w->file_bytes + QF_PREALLOC_BYTES;
    struct stat sb;

    if (want > w->segment_bytes)
        want = w->segment_bytes;
    if (w->prealloc_failed || want <= w->file_bytes)
        return;
    if (posix_fallocate(w->fd, (off_t)w->alloc_end, (off_t)(want - w->alloc_end)) == 0) {
        w->alloc_end = want;
        return;
    }
    w->prealloc_failed = true;
    /* it may have allocated part of it */
    if (fstat(w->fd, &sb) == 0 && (uint64_t)sb.st_size > w->alloc_end)
        w->alloc_end = (uint64_t)sb.st_size;
}

/* See queue_file.h.  The writer's own failure is sticky: after any -1 it
 * refuses every further call, as the file may end in a partial write. */
int
hs_qf_writer_write(hs_qf_writer *w)
{
    if (w->failed) {
        hs_set_error("queue writer failed before; it must be reopened after recovery");
        return -1;
    }
    if (w->len == 0)
        return 0;
    if (w->file_bytes > w->alloc_end)
        qf_writer_prealloc(w);
    if (hs_pwrite_all(w->fd, w->buf, w->len, w->file_bytes - w->len) != 0) {
        hs_set_error("cannot write %zu bytes to queue file %s at offset %" PRIu64 ": %s", w->len,
                     w->path, w->file_bytes - w->len, strerror(errno));
        w->failed = true;
        return -1;
    }
    if (w->file_bytes > w->alloc_end)
        w->alloc_end = w->file_bytes;
    w->len = 0;
    w->dirty = true;
    return 0;
}

/* Close the current file after writing its buffer; it stays on the pending
 * list until the next sync when it has unsynced data.  Space allocated
 * past its records is cut off and the file synced first: only the newest
 * file may end in zeros, so a file next to a newer one is whole. */
static int
qf_writer_rotate(hs_qf_writer *w, hs_lsn next_lsn)
{
    if (hs_qf_writer_write(w) != 0 || qf_writer_cut(w, true) != 0)
        return -1;
    if (w->dirty) {
        if (w->npending == w->cap_pending) {
            int cap = w->cap_pending ? w->cap_pending * 2 : 8;
            int *grown = realloc(w->pending, (size_t)cap * sizeof(int));
            if (grown == NULL) {
                hs_set_error("out of memory rotating queue file %s", w->path);
                w->failed = true;
                return -1;
            }
            w->pending = grown;
            w->cap_pending = cap;
        }
        w->pending[w->npending++] = w->fd;
    } else {
        close(w->fd);
    }
    w->fd = -1;
    w->dirty = false;
    if (qf_writer_create(w, next_lsn) != 0) {
        w->failed = true;
        return -1;
    }
    return 0;
}

/* See queue_file.h.  Also -1 (nothing appended) for a record that cannot
 * be encoded (oversized strings) or that readers would refuse (unknown
 * type, fields its type does not allow: rule 4), or that would make a
 * group longer than QF_GROUP_MAX.  Rotates only between groups, so the
 * records of a group always lie in one file (a file may grow past
 * segment_bytes by up to one group). */
int
hs_qf_writer_append(hs_qf_writer *w, const hs_record *rec)
{
    size_t n;

    if (w->failed) {
        hs_set_error("queue writer failed before; it must be reopened after recovery");
        return -1;
    }
    if (rec->lsn != w->last_lsn + 1) {
        hs_set_error("queue append of LSN %" PRIu64 " after LSN %" PRIu64 " (must be dense)",
                     rec->lsn, w->last_lsn);
        return -1;
    }
    if (rec->sku_len > HS_SKU_MAX || rec->order_len > HS_ORDER_ID_MAX ||
        !qf_fields_ok(rec->type, rec->sku_len, rec->order_len, rec->flags,
                      rec->type == HS_REC_RESERVE || rec->type == HS_REC_SALE ? rec->ttl_ms : 0,
                      rec->qty)) {
        hs_set_error("queue append of LSN %" PRIu64 ": bad record (type %u, sku_len %u, "
                     "order_len %u, flags 0x%02x, ttl_ms %u, qty %" PRId64 ")",
                     rec->lsn, rec->type, rec->sku_len, rec->order_len, rec->flags, rec->ttl_ms,
                     rec->qty);
        return -1;
    }
    if (w->group_len >= QF_GROUP_MAX) {
        hs_set_error("queue append of LSN %" PRIu64 ": the group that starts at LSN %" PRIu64
                     " would have more than %d records",
                     rec->lsn, rec->lsn - (hs_lsn)w->group_len, QF_GROUP_MAX);
        return -1;
    }
    if (w->group_len == 0 && w->file_bytes >= w->segment_bytes &&
        qf_writer_rotate(w, rec->lsn) != 0)
        return -1;
    if (w->len + HS_QF_RECORD_MAX > QF_WRITE_BUF_SIZE && hs_qf_writer_write(w) != 0)
        return -1;
    n = hs_qf_encode(rec, w->buf + w->len);
    w->len += n;
    w->file_bytes += n;
    w->last_lsn = rec->lsn;
    w->group_len = (rec->flags & HS_REC_FLAG_GROUP_MORE) ? w->group_len + 1 : 0;
    return 0;
}

/* See queue_file.h.  Writes the buffer first, so on 0 every record
 * appended so far is durable. */
int
hs_qf_writer_sync(hs_qf_writer *w)
{
    if (hs_qf_writer_write(w) != 0)
        return -1;
    for (int i = 0; i < w->npending; i++) {
        if (fdatasync(w->pending[i]) != 0) {
            hs_set_error("cannot fdatasync a queue file before %s: %s", w->path, strerror(errno));
            w->failed = true;
            w->sync_failed = true;
            return -1;
        }
        close(w->pending[i]);
        w->pending[i] = -1;
    }
    w->npending = 0;
    if (w->dirty) {
        if (fdatasync(w->fd) != 0) {
            hs_set_error("cannot fdatasync queue file %s: %s", w->path, strerror(errno));
            w->failed = true;
            w->sync_failed = true;
            return -1;
        }
        w->dirty = false;
    }
    if (w->dir_dirty) {
        if (qf_fsync_dir(w->qdir) != 0) {
            w->failed = true;
            return -1;
        }
        w->dir_dirty = false;
    }
    return 0;
}

bool
hs_qf_writer_sync_failed(const hs_qf_writer *w)
{
    return w->sync_failed;
}

hs_lsn
hs_qf_writer_last_lsn(const hs_qf_writer *w)
{
    return w->last_lsn;
}

/* Write what is buffered and cut the space allocated past it (best
 * effort, no sync: call hs_qf_writer_sync() first for durability), and
 * free the writer.  NULL is allowed. */
void
hs_qf_writer_close(hs_qf_writer *w)
{
    if (w == NULL)
        return;
    if (!w->failed && w->fd >= 0 && hs_qf_writer_write(w) == 0)
        (void)qf_writer_cut(w, false);
    for (int i = 0; i < w->npending; i++)
        close(w->pending[i]);
    if (w->fd >= 0)
        close(w->fd);
    free(w->pending);
    free(w->buf);
    free(w);
}
