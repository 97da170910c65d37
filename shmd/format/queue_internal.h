/*-------------------------------------------------------------------------
 *
 * queue_internal.h
 *      What the queue format's files share: sizes, read windows, one-file scan.
 *
 * Internal to shmd/format: queue_file.c (codec, names), queue_scan.c,
 * queue_reader.c and queue_writer.c.  Symbols are hidden: hotstock.so
 * does not export them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_QUEUE_INTERNAL_H
#define HOTSTOCK_QUEUE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue_file.h"
#include "util.h"

#define HS_INTERNAL __attribute__((visibility("hidden")))

#define QF_WRITE_BUF_SIZE (256 * 1024)                /* the writer's buffer */
#define QF_READ_BUF_SIZE (1024 * 1024)                /* a reader's window */
/* A re-read of bytes the window held stale (queue_reader.c): where the
 * records end, so most of a full window would be zeros. */
#define QF_REREAD_SIZE (64 * 1024)
#define QF_NAME_LEN 20                                /* "%016llx.hsq" */
#define QF_DEFAULT_SEGMENT_BYTES (UINT64_C(64) << 20) /* segment_bytes 0 */
/* How far the writer allocates ahead of its records (queue_file.c,
 * PREALLOCATED SPACE); never more than segment_bytes at a time. */
#define QF_PREALLOC_BYTES (UINT64_C(1) << 20)
#define QF_RECORD_LEN(sku_len, order_len)                                                          \
    ((size_t)(HS_QF_RECORD_HEADER_SIZE + (sku_len) + (order_len) + 7) & ~(size_t)7)
#define QF_RECORD_LEN_MAX QF_RECORD_LEN(HS_SKU_MAX, HS_ORDER_ID_MAX)
/* The most records one group (HS_REC_FLAG_GROUP_MORE) may hold: a basket's
 * HS_BASKET_MAX lines, each after its buyer's BUYER record.  A longer
 * group is corruption (queue_file.c, GROUPS). */
#define QF_GROUP_MAX HS_GROUP_MAX

_Static_assert(QF_RECORD_LEN_MAX <= HS_QF_RECORD_MAX, "HS_QF_RECORD_MAX too small");

/*-------------------------------------------------------------------------
 * A read window over one file
 *
 * pread(2) into a private buffer, never mmap: a reader may run while the
 * daemon cuts a torn tail, and a mapping read past a truncation would
 * SIGBUS the reading process (a PostgreSQL backend).
 *-------------------------------------------------------------------------
 */
typedef struct qf_window {
    int fd;
    uint8_t *buf;
    size_t cap;
    uint64_t off;     /* file offset of buf[0] */
    size_t len;       /* bytes valid in buf */
    size_t next_read; /* bytes the next read asks for; 0: cap */
} qf_window;

/*-------------------------------------------------------------------------
 * Scanning one file (the recovery scan and the writer's open)
 *-------------------------------------------------------------------------
 */
typedef enum qf_file_end {
    QF_END_CLEAN,       /* every byte after the header is a valid record,
                         * and the last one ends its group */
    QF_END_ZEROS,       /* as QF_END_CLEAN up to st.end, and zero bytes
                         * from there to the end of the file: the writer's
                         * preallocated space (only the newest file may
                         * have it) */
    QF_END_TORN,        /* invalid record at st.bad_off, no valid record after
                         * it; or (st.group_cut) a group from st.bad_off on
                         * that the file's end or such a record cuts */
    QF_END_TORN_HEADER, /* short or zeroed header, no valid record after it */
    QF_END_ERROR,       /* corruption or I/O error, hs_last_error() set */
    QF_END_STOPPED      /* visit() returned st.visit_rc != 0 */
} qf_file_end;

typedef struct qf_file_state {
    uint64_t size;           /* file size at the scan */
    uint64_t end;            /* QF_END_CLEAN, QF_END_ZEROS: offset after the
                              * last record (where the next one goes) */
    uint64_t bad_off;        /* QF_END_TORN: where the torn tail starts (the
                              * torn record, or the cut group's first) */
    hs_lsn next_lsn;         /* LSN after the last whole group (the LSN
                              * expected at bad_off); QF_END_STOPPED: after
                              * the record visit() stopped at */
    hs_lsn first_seen;       /* first record's LSN (of a whole group), 0 if none */
    uint64_t records;        /* records visited */
    hs_qf_decode_result why; /* QF_END_TORN: what was wrong at cut_off
                              * (HS_QF_SHORT when the file ends in a group) */
    bool group_cut;          /* QF_END_TORN: the tail is a group cut short */
    uint64_t cut_off;        /* group_cut: offset of the invalid record that
                              * cuts it, or the file's size when it ends
                              * after a valid record */
    hs_lsn cut_lsn;          /* group_cut: the LSN expected at cut_off */
    int visit_rc;
} qf_file_state;

/* Is p[0..n) all zero bytes? */
HS_INTERNAL bool all_zero(const uint8_t *p, size_t n);
/* Rule 4 of the validity rule (queue_file.c) for a record's type, flags,
 * ttl_ms, qty and string lengths: true when a record may carry them. */
HS_INTERNAL bool qf_fields_ok(uint8_t type, unsigned sku_len, unsigned order_len, uint8_t flags,
                              uint32_t ttl_ms, int64_t qty);
/* DIR/queue into out; 0, or -1 with hs_last_error(). */
HS_INTERNAL int qf_queue_dir(const char *dir, char *out, size_t outlen);
/* Path of the file whose first record is first_lsn. */
HS_INTERNAL void qf_file_path(char *out, size_t outlen, const char *qdir, hs_lsn first_lsn);
/* Parse a queue file name ("%016llx.hsq"); false if it is not one. */
HS_INTERNAL bool qf_parse_name(const char *name, hs_lsn *lsn);
/* fsync a directory; -1 with an error naming it. */
HS_INTERNAL int qf_fsync_dir(const char *path);
HS_INTERNAL int qf_window_init(qf_window *w, size_t cap);
/* Forget what the window holds; the next read asks for `size` bytes (at
 * least what its caller needs), then reads go back to the full window. */
HS_INTERNAL void qf_window_drop(qf_window *w, size_t size);
HS_INTERNAL void qf_window_reset(qf_window *w, int fd);
HS_INTERNAL ssize_t qf_window_get(qf_window *w, uint64_t pos, size_t need, const uint8_t **p);
HS_INTERNAL int qf_find_valid(qf_window *w, uint64_t from, uint64_t *found);
HS_INTERNAL int qf_zeros_to_end(qf_window *w, uint64_t from);
/* What is wrong at the torn end st describes, for messages: "partial
 * record at offset 640, expected LSN 9", or for a cut group "group of LSN
 * 7.. at offset 512 cut by the end of the file at offset 640, expected LSN 9". */
HS_INTERNAL void qf_describe_torn(const qf_file_state *st, char *out, size_t outlen);
/* The same for QF_END_ZEROS (zeros where a file that is not the newest
 * must end): "zeroed bytes at offset ... to its end ...". */
HS_INTERNAL void qf_describe_zeros(const qf_file_state *st, char *out, size_t outlen);
HS_INTERNAL qf_file_end qf_scan_file(qf_window *w, int fd, const char *path, hs_lsn first_lsn,
                                     hs_lsn from_lsn, hs_qf_visit visit, void *arg,
                                     qf_file_state *st);

#endif /* HOTSTOCK_QUEUE_INTERNAL_H */
