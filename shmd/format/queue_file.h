/*-------------------------------------------------------------------------
 *
 * queue_file.h
 *      The on-disk write-ahead queue: record codec, segment-file writer and
 *      the scanner recovery uses.  The format itself is described at the
 *      top of queue_file.c.
 *
 * Queue files live in DIR/queue/, named by the LSN of their first record
 * ("%016llx.hsq"), and hold consecutive LSNs: file k+1 starts right after
 * the last record of file k.  Only the daemon's spiller writes them; the
 * drain and tools read them (hs_queue_* in hotstock.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_QUEUE_FILE_H
#define HOTSTOCK_QUEUE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hotstock.h"

/* "HSTKQUE1" little-endian; the format version is separate from the
 * shared-memory layout version. */
#define HS_QF_MAGIC UINT64_C(0x314555514B545348)
#define HS_QF_FORMAT_VERSION 2
/* The oldest format version this build reads (see queue_file.c, VERSIONS). */
#define HS_QF_FORMAT_VERSION_MIN 1
#define HS_QF_HEADER_SIZE 64
#define HS_QF_RECORD_HEADER_SIZE 48
/* largest encoded record: header + both strings, padded to 8 */
#define HS_QF_RECORD_MAX (HS_QF_RECORD_HEADER_SIZE + HS_SKU_MAX + HS_ORDER_ID_MAX + 8)
#define HS_QF_SUBDIR "queue"

/* Encode rec into buf (HS_QF_RECORD_MAX bytes at least); returns its length. */
size_t hs_qf_encode(const hs_record *rec, uint8_t *buf);

typedef enum hs_qf_decode_result {
    HS_QF_OK = 0,
    HS_QF_SHORT,   /* fewer bytes than the record claims (or than a header) */
    HS_QF_ZERO,    /* an all-zero header: the clean end of written data */
    HS_QF_BAD_LEN, /* length field or string lengths out of bounds */
    HS_QF_BAD_CRC, /* checksum mismatch */
    HS_QF_BAD_TYPE /* unknown record type, fields its type does not allow (rule 4)
                    * or non-zero padding */
} hs_qf_decode_result;

/* Decode the record at buf[0..avail).  On HS_QF_OK fills *rec and *len. */
hs_qf_decode_result hs_qf_decode(const uint8_t *buf, size_t avail, hs_record *rec, size_t *len);
const char *hs_qf_decode_result_name(hs_qf_decode_result r);

/* Encode / check a file header. check returns false and fills why[] for a
 * bad magic, another format version or a bad header checksum. */
void hs_qf_encode_header(uint8_t *buf, hs_lsn first_lsn);
bool hs_qf_check_header(const uint8_t *buf, size_t avail, hs_lsn *first_lsn, char *why,
                        size_t whylen);

/*-------------------------------------------------------------------------
 * Writer (the spiller's).  Not thread-safe: one thread owns it.
 *-------------------------------------------------------------------------
 */
typedef struct hs_qf_writer hs_qf_writer;

/*
 * Open for appending after `last_lsn` (the last record already in the queue,
 * 0 for an empty queue).  Continues in the newest file if it ends at
 * last_lsn, else starts a new file.  segment_bytes: rotate to a new file
 * once a file has reached this size (at the next group boundary).  NULL
 * and hs_last_error() on failure.
 */
hs_qf_writer *hs_qf_writer_open(const char *dir, hs_lsn last_lsn, uint64_t segment_bytes);

/* Append an encoded record (buffered).  Its LSN must be last_lsn + 1.
 * Rotates to a new file only after a record without
 * HS_REC_FLAG_GROUP_MORE, so a group never spans files; the caller hands
 * over whole groups before hs_qf_writer_sync(), as a partial group at
 * the end of the queue is a torn tail to every reader.
 * Returns 0, or -1 with hs_last_error() set (write failure, or a record
 * readers would refuse: queue_file.c VALIDITY rule 4; nothing appended).
 * A rotation syncs the file it leaves: when that fdatasync failed,
 * hs_qf_writer_sync_failed() says so, and the caller treats it as a
 * failed hs_qf_writer_sync(). */
int hs_qf_writer_append(hs_qf_writer *w, const hs_record *rec);

/* write(2) everything buffered (survives a process crash).  0 / -1. */
int hs_qf_writer_write(hs_qf_writer *w);

/* fdatasync every file written since the last sync (and the directory when
 * a file was created).  0 / -1; the caller treats -1 as fatal. */
int hs_qf_writer_sync(hs_qf_writer *w);

/* Did an fdatasync of this writer fail (in a rotation)?  The kernel may
 * have dropped the pages it could not write, and a later fdatasync would
 * not say so: the caller must not go on (as for hs_qf_writer_sync()). */
bool hs_qf_writer_sync_failed(const hs_qf_writer *w);

hs_lsn hs_qf_writer_last_lsn(const hs_qf_writer *w);
void hs_qf_writer_close(hs_qf_writer *w);

/*-------------------------------------------------------------------------
 * Files and recovery scan
 *-------------------------------------------------------------------------
 */
typedef struct hs_qf_file {
    hs_lsn first_lsn;
    char path[4096];
} hs_qf_file;

/* List the files in DIR/queue sorted by first LSN.  Returns the count (>= 0) and a
 * malloc'd array in *files (caller frees), or -1 and hs_last_error(). */
int hs_qf_list(const char *dir, hs_qf_file **files);

typedef int (*hs_qf_visit)(const hs_record *rec, void *arg);

typedef struct hs_qf_scan_result {
    hs_lsn first_lsn;     /* first LSN present in the queue (0: empty) */
    hs_lsn last_lsn;      /* last valid LSN: a group's last, unless visit() stopped */
    uint64_t records;     /* records visited (LSN >= from_lsn) */
    bool tail_cut;        /* a torn tail was cut from the newest file */
    char tail_path[4096]; /* which file, when cut */
    uint64_t tail_offset; /* where it was cut */
    uint64_t tail_bytes;  /* how many bytes were removed */
} hs_qf_scan_result;

/*
 * Recovery scan: check every file header and every record's CRC and LSN
 * continuity from the first file on, calling visit() for each record with
 * LSN >= from_lsn (stops with its value if it returns non-zero).  The
 * records of a group (HS_REC_FLAG_GROUP_MORE) are visited only once its
 * last record was read, so visit() never sees part of a group.
 * A torn tail in the newest file (a partial or invalid record with no valid
 * record after it, or a group the file's end cuts: then from the group's
 * first record on) is truncated away when cut_tail is true, and reported;
 * last_lsn is then the LSN before it.
 * Any other damage returns -1 with hs_last_error() naming file, offset and
 * the LSN expected there; nothing is skipped.  Returns 0 on success.
 */
int hs_qf_scan(const char *dir, hs_lsn from_lsn, bool cut_tail, hs_qf_visit visit, void *arg,
               hs_qf_scan_result *res);

/* Remove files whose records all have LSN <= upto (never the newest file).
 * Returns how many were removed, or -1. */
int hs_qf_recycle(const char *dir, hs_lsn upto);

#endif /* HOTSTOCK_QUEUE_FILE_H */
