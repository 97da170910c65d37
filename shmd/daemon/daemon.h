/*-------------------------------------------------------------------------
 *
 * daemon.h
 *      hotstockd's internal state and the functions its files share.
 *
 * One hsd_daemon per process.  Who owns what once the daemon is READY:
 *
 *   main thread    heartbeat, applied_lsn copy, checkpoint interval, signals,
 *                  the start and stop sequences        (lifecycle.c)
 *   spiller        ring -> queue files, group commit, shadow counters,
 *                  writer and shadow are its alone     (spiller.c)
 *   checkpointer   writes shadow snapshots the spiller hands it, recycles
 *                  queue files                         (checkpointer.c)
 *   control        the control socket                  (control.c)
 *   evictor        evicts drained orders from the order index, keeps
 *                  DIR/evicted.filter                  (evictor.c), and
 *                  forgets the buyers of ended sales   (buyers.c)
 *
 * Before the threads start, recovery (recovery.c) runs alone and builds the
 * writer, the shadow and the segment (segment_build.c); the threads inherit
 * them.
 *
 * Calls point one way (tests/layout/check.sh fails on a cycle):
 *
 *   hotstockd.c -> lifecycle.c -> control.c, recovery.c, spiller.c, evictor.c
 *   evictor.c -> buyers.c
 *   recovery.c -> evictor.c (the filter file at start)
 *   control.c, lifecycle.c -> datadir.c, request.c
 *   recovery.c, spiller.c -> checkpointer.c, ring_record.c
 *   recovery.c -> segment_build.c;  checkpointer.c, spiller.c -> request.c
 *   everything -> log.c, config.c; the formats; libhotstock
 *
 * Cross-thread fields are C11 atomics; each names its writer and the load
 * it pairs with.  Nothing here is in shared memory: the segment (segment.h)
 * is the only thing clients see.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_DAEMON_H
#define HOTSTOCK_DAEMON_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <urcu/wfcqueue.h>

#include "checkpoint.h"
#include "filter_file.h"
#include "hotstock.h"
#include "queue_file.h"
#include "segment.h"

/* Exit codes of the CLI. */
#define HSD_EXIT_OK 0
#define HSD_EXIT_FAILURE 1     /* the command ran and failed */
#define HSD_EXIT_USAGE 2       /* bad flag, value, conf line or data directory */
#define HSD_EXIT_NOT_RUNNING 3 /* status/checkpoint: no daemon in DIR */

/* Files in the data directory. */
#define HSD_CONF_FILE "hotstockd.conf"
#define HSD_LOCK_FILE "hotstockd.lock"
#define HSD_PID_FILE "hotstockd.pid"
#define HSD_LOG_FILE "hotstockd.log"
#define HSD_SOCKET_FILE "hotstockd.sock"

/* Default time `stop` and `checkpoint` wait for the daemon. */
#define HSD_DEFAULT_TIMEOUT_S 60

/*-------------------------------------------------------------------------
 * Settings and command line (config.c)
 *-------------------------------------------------------------------------
 */
typedef struct hsd_settings {
    uint32_t sku_capacity;          /* SKU table slots (rounded up to a power of 2) */
    uint32_t order_capacity;        /* order index slots (idem) */
    uint32_t buyer_capacity;        /* buyer table slots (idem) */
    uint32_t buyer_retention_s;     /* a sale's buyers are forgotten this long after its end */
    uint32_t ring_capacity;         /* ring slots (idem) */
    uint32_t flush_interval_ms;     /* fdatasync at least this often while data waits */
    uint64_t queue_file_size;       /* bytes per queue file before rotation */
    uint32_t checkpoint_interval_s; /* 0: only on request and at a smart stop */
    uint32_t order_retention_s;     /* drained orders stay indexed this long (evictor.c) */
    uint64_t evicted_filter_size;   /* bytes of the evicted-order filter (a new one) */
    uint32_t hot_k;                 /* entries of the hot-SKU table (hot.c); 0: off */
    uint32_t spiller_poll_us;       /* the spiller polls this long after a flush that
                                     * someone waited for (spiller.c); 0: off */
    uint32_t waiter_spin_us;        /* a lone durability waiter spins this long
                                     * (header.waiter_spin_us, ring.c); 0: off */
} hsd_settings;

typedef enum hsd_command {
    HSD_CMD_NONE = 0,
    HSD_CMD_START,
    HSD_CMD_STOP,
    HSD_CMD_STATUS,
    HSD_CMD_CHECKPOINT,
    HSD_CMD_HELP
} hsd_command;

typedef enum hsd_stop_mode {
    HSD_STOP_NONE = 0,
    HSD_STOP_SMART = 1,    /* drain, fdatasync, checkpoint, remove the segment */
    HSD_STOP_IMMEDIATE = 2 /* exit now; the next start recovers as after a crash */
} hsd_stop_mode;

#define HSD_MAX_FLAG_SETTINGS 32

typedef struct hsd_cli {
    hsd_command command;
    const char *dir; /* -D as given; NULL if absent */
    bool foreground;
    bool json;
    hsd_stop_mode stop_mode;
    int timeout_s;
    int nsettings; /* settings given as flags, applied after the conf file */
    struct {
        const char *key; /* canonical name, e.g. "sku_capacity" */
        const char *value;
    } settings[HSD_MAX_FLAG_SETTINGS];
} hsd_cli;

/* Parse argv.  Returns -1 when the caller should go on with *cli, else an
 * exit code (usage printed for --help, one error line on stderr for a bad
 * flag or value: HSD_EXIT_USAGE). */
int hsd_cli_parse(int argc, char **argv, hsd_cli *cli);
void hsd_usage(FILE *out);

/* Defaults, then real_dir/hotstockd.conf (when present), then the flags in
 * cli.  0, or HSD_EXIT_USAGE after one line on stderr naming the setting
 * (and the conf file line). */
int hsd_settings_load(const hsd_cli *cli, const char *real_dir, hsd_settings *out);

/* Round v up to a power of two (v >= 1, v <= 2^31). */
uint32_t hsd_pow2_ceil(uint32_t v);

/*-------------------------------------------------------------------------
 * Log (log.c).  Thread-safe: each line is one write(2) to an O_APPEND fd.
 *-------------------------------------------------------------------------
 */
typedef enum hsd_log_level { HSD_LOG, HSD_WARNING, HSD_ERROR, HSD_FATAL } hsd_log_level;

/* Log to path (created 0600, appended).  0, or -1 with errno. */
int hsd_log_open(const char *path);
/* Log to stderr (foreground). */
void hsd_log_to_stderr(void);
/* While on, ERROR and FATAL lines also go to stderr as "hotstockd: msg"
 * (a daemon that has not detached yet: the operator sees why it failed). */
void hsd_log_echo_errors(bool on);
/* The fd the log writes to (stderr of a detached daemon is pointed at it). */
int hsd_log_fd(void);
void hsd_log(hsd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Log a FATAL line and abort(): the daemon must not go on (a failed
 * fdatasync, a corrupted ring).  Clients then see the heartbeat stop. */
_Noreturn void hsd_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*-------------------------------------------------------------------------
 * Daemon state
 *-------------------------------------------------------------------------
 */
typedef enum hsd_request_kind {
    HSD_REQ_CHECKPOINT = 1, /* checkpoint now; done when durable (or failed) */
    HSD_REQ_STOP = 2        /* spill and sync through stop_lsn, then exit the spiller */
} hsd_request_kind;

/*
 * A request to the spiller.  The requester owns the memory until `done`
 * leaves HSD_REQ_PENDING: hsd_request_wait() blocks for that.  Whoever
 * completes it (spiller, checkpointer, or the stop sequence for leftovers)
 * sets result, lsn and error, then CASes done PENDING -> DONE (acq_rel,
 * pairs with the requester's acquire load) and wakes it.  A requester that
 * stops waiting (hsd_request_wait_for() timing out, heap requests only)
 * CASes PENDING -> ABANDONED instead, and the completer then frees it: of
 * the two CASes exactly one wins, so the memory has one owner at a time.
 */
enum { HSD_REQ_PENDING = 0, HSD_REQ_DONE = 1, HSD_REQ_ABANDONED = 2 };

typedef struct hsd_request {
    struct cds_wfcq_node node; /* first: the queue links it */
    hsd_request_kind kind;
    bool if_changed;       /* CHECKPOINT: skip when nothing changed since the last */
    hs_lsn stop_lsn;       /* STOP: last reserved LSN of the fenced segment */
    _Atomic uint32_t done; /* futex word, HSD_REQ_* */
    int result;            /* 0 ok, -1 failed (error says why) */
    hs_lsn lsn;            /* CHECKPOINT: LSN of the checkpoint written */
    char error[512];
    struct hsd_request *next; /* checkpointer: requests served by one job */
} hsd_request;

/* A shadow snapshot on its way to the checkpointer (spiller.c). */
typedef struct hsd_ckpt_job {
    hs_shadow shadow;      /* a private copy, freed by the checkpointer */
    hsd_request *requests; /* to complete when written (may be NULL) */
} hsd_ckpt_job;

/* Counters for status; relaxed atomics, each written by one thread. */
typedef struct hsd_stats {
    _Atomic uint64_t records_spilled;         /* spiller */
    _Atomic uint64_t flushes;                 /* spiller: fdatasync calls */
    _Atomic uint64_t last_flush_us;           /* spiller: duration of the last one */
    _Atomic uint64_t max_flush_us;            /* spiller */
    _Atomic uint64_t checkpoints;             /* checkpointer */
    _Atomic uint64_t last_checkpoint_unix_ms; /* checkpointer */
    _Atomic uint64_t files_recycled;          /* checkpointer */
    _Atomic uint64_t filter_commits;          /* evictor: durable filter watermarks */
    _Atomic uint64_t holds_expired;           /* expirer */
    _Atomic uint64_t expiry_delay_ms_sum;     /* expirer: sum of (expired at - deadline) */
} hsd_stats;

typedef struct hsd_expirer hsd_expirer;
typedef struct hsd_hot hsd_hot;

typedef struct hsd_daemon {
    /* fixed before the threads start */
    hsd_settings settings;
    char dir[PATH_MAX];      /* realpath of the data directory */
    char log_path[PATH_MAX]; /* "stderr" in the foreground */
    bool foreground;
    int lock_fd;
    pthread_t main_thread;
    hs_header *seg;      /* the segment this daemon serves */
    uint64_t generation; /* == seg->generation */
    uint64_t started_unix_ms;
    uint64_t recovery_ms;       /* recovery wall time */
    uint64_t recovery_cpu_ms;   /* recovery CPU time, every thread */
    uint64_t recovered_records; /* queue records replayed */
    uint64_t salvaged_records;  /* ring records appended from an old segment */

    /* the spiller's alone once it runs (recovery's before) */
    hs_qf_writer *writer;
    hs_shadow shadow;

    /* main thread copies header.applied_lsn here (release), clamped to
     * durable_lsn and never lowered; the spiller loads it (acquire) into
     * each checkpoint, the checkpointer recycles up to min(it, checkpoint). */
    _Atomic uint64_t applied_lsn;

    /* hsd_stop_mode; control thread or signal handling in main stores
     * (release), main loop loads (acquire). */
    _Atomic int stop_mode;

    /* Requests to the spiller: a wait-free queue (spiller.c explains why).
     * req_mu serialises producers with the stop sequence only: the spiller
     * never takes it. */
    struct __cds_wfcq_head req_head;
    struct cds_wfcq_tail req_tail;
    pthread_mutex_t req_mu;
    bool accepting_requests; /* under req_mu */

    /* spiller -> checkpointer hand-off, under ckpt_mu */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    hsd_ckpt_job *ckpt_job; /* pending, not started; a newer one supersedes it */
    bool ckpt_exit;

    /* the evictor's once it runs (recovery's before): DIR/evicted.filter
     * and its dirty pages (one bit per 4 kB page of the filter) */
    hs_filter_file *filter_file;
    uint64_t *filter_dirty;
    hs_filter_block *filter_bits; /* recovery's copy of the file's bits, until the build */
    /* the durable watermark of the filter (evictor, release; checkpointer
     * and recovery, acquire): queue files are kept back to it */
    _Atomic uint64_t filter_lsn;
    pthread_mutex_t evict_mu; /* with evict_cv: wakes the evictor to exit */
    pthread_cond_t evict_cv;
    bool evict_exit; /* under evict_mu */

    /* the expirer's heap of live holds (expirer.c; its own lock) */
    hsd_expirer *expirer;
    /* the hot thread's state (hot.c), NULL when it does not run */
    hsd_hot *hot;

    pthread_t spiller_thread, checkpointer_thread, control_thread, evictor_thread,
        expirer_thread;
    bool spiller_running, checkpointer_running, control_running, evictor_running,
        expirer_running;
    int control_fd;
    _Atomic bool control_exit; /* main (release) -> control loop (acquire) */

    hsd_stats stats;
} hsd_daemon;

/*-------------------------------------------------------------------------
 * datadir.c: the data directory, lock and pid files
 *-------------------------------------------------------------------------
 */
/* Check that dir is an existing, writable directory and resolve it into
 * real (PATH_MAX bytes).  0, or HSD_EXIT_USAGE after one line on stderr. */
int hsd_check_dir(const char *dir, char *real, bool need_write);

/* pid recorded in real_dir's pid file, else in its lock file, else 0. */
pid_t hsd_read_pid(const char *real_dir);

/* Is real_dir's lock held by a live daemon?  1 yes, 0 no, -1 error. */
int hsd_lock_held(const char *real_dir);

/* out = dir/file.  Data directory paths are shorter than 256 bytes
 * (hsd_check_dir), so every buffer of PATH_MAX + 32 bytes holds it. */
void hsd_path(char *out, size_t outlen, const char *dir, const char *file);

/* Replace the content of fd (the lock file) or of path with our pid.  0 /
 * -1 with errno. */
int hsd_write_pid(int fd, const char *path);

/*-------------------------------------------------------------------------
 * lifecycle.c: the start and stop sequences
 *-------------------------------------------------------------------------
 */
/* `hotstockd start`: validate, lock, recover, detach, serve until stopped.
 * Returns the process exit code. */
int hsd_start(const hsd_cli *cli);

/*-------------------------------------------------------------------------
 * recovery.c
 *-------------------------------------------------------------------------
 */
/* Fence and salvage an old segment, load the checkpoint, replay the queue,
 * make it all durable, checkpoint, and build the new segment (left in state
 * STARTING).  Fills d->seg, d->writer, d->shadow, d->generation and the
 * recovery figures.  0, or -1 after an ERROR log line saying why. */
int hsd_recover(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * request.c: requests to the spiller
 *-------------------------------------------------------------------------
 */
void hsd_requests_init(hsd_daemon *d);
/* Queue req for the spiller and wake it.  0, or -1 when the daemon no
 * longer takes requests (stopping): req is then untouched. */
int hsd_request_submit(hsd_daemon *d, hsd_request *req);
/* Block until req is done; returns req->result. */
int hsd_request_wait(hsd_request *req);
/* Wait at most timeout_ms for req, which must come from malloc().  When it
 * is done in time: copies its lsn and error out, frees it, returns its
 * result.  Else -2, and req is abandoned (its completer frees it). */
int hsd_request_wait_for(hsd_request *req, int timeout_ms, hs_lsn *lsn, char *error, size_t errlen);
/* Mark req done (see hsd_request). */
void hsd_request_complete(hsd_request *req, int result, hs_lsn lsn, const char *error);
/* Stop accepting requests and fail every queued one (spiller gone). */
void hsd_requests_close(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * ring_record.c
 *-------------------------------------------------------------------------
 */
/* Convert the ring record rr of segment h, published for lsn, into a queue
 * record (the SKU name copied from h's SKU table).  0, or -1 with why[]
 * when rr cannot be a record a client published (bad type, SKU slot,
 * length or qty). */
int hsd_ring_to_record(hs_header *h, const hs_ring_record *rr, hs_lsn lsn, hs_record *out,
                       char *why, size_t whylen);

/*-------------------------------------------------------------------------
 * spiller.c: the spiller thread
 *-------------------------------------------------------------------------
 */
int hsd_spiller_start(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * evictor.c: online eviction of the order index, the filter file
 *-------------------------------------------------------------------------
 */
/* Recovery, step 2: open DIR/evicted.filter, or create it (a new one; or,
 * for a directory whose orders up to `applied` were evicted by restarts
 * before it had a filter, a legacy one).  Sets d->filter_file and
 * d->filter_lsn; *meta is its header.  0, or -1 after an ERROR line. */
int hsd_filter_open(hsd_daemon *d, bool had_history, hs_lsn applied, hs_filter_meta *meta);

/* Recovery, step 3: was the order with this hash and last record LSN
 * evicted (filter_file.h, `evicted`)?  Then it is not indexed. */
bool hsd_filter_evicted(hsd_daemon *d, uint64_t hash, hs_lsn last);

/* Recovery, step 8: copy the filter's bits into the new segment h.  0 / -1. */
int hsd_filter_load(hsd_daemon *d, hs_header *h);

/* The evictor thread (once the segment is READY).  0 / -1. */
int hsd_evictor_start(hsd_daemon *d);
void hsd_evictor_stop(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * buyers.c: forgetting the buyers of ended sales (on the evictor thread)
 *-------------------------------------------------------------------------
 */
typedef struct hsd_buyer_sweep {
    hs_client *client; /* attached at the first sweep with buyers */
    uint32_t *skus;    /* SKU slots to forget this sweep */
    uint8_t *seen;     /* a bit per SKU slot */
} hsd_buyer_sweep;
/* Forget the buyers of every SKU whose sale ended buyer_retention ago. */
void hsd_buyers_sweep(hsd_daemon *d, hsd_buyer_sweep *sw);
void hsd_buyers_sweep_end(hsd_buyer_sweep *sw);

/*-------------------------------------------------------------------------
 * expirer.c: the expiry of holds
 *-------------------------------------------------------------------------
 */
/* The empty heap, before recovery (0, or -1 out of memory). */
int hsd_expirer_init(hsd_daemon *d);
/* Add a live hold (order slot and its version) due at deadline_ms (unix
 * ms).  Thread-safe: the spiller after it folded a RESERVE, recovery for
 * the holds it installed. */
void hsd_expirer_add(hsd_daemon *d, uint64_t deadline_ms, uint32_t slot, uint32_t version);
/* Holds waiting for their deadline. */
uint64_t hsd_expirer_holds(hsd_daemon *d);
/* Start the thread (segment READY); stop it (before the ring is fenced);
 * free the heap (after the spiller and the control thread are joined). */
int hsd_expirer_start(hsd_daemon *d);
void hsd_expirer_stop(hsd_daemon *d);
void hsd_expirer_free(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * hot.c: the hot thread (the top hot_k SKUs by recent take attempts)
 *-------------------------------------------------------------------------
 */
/* Start it once the segment is READY (nothing when hot_k is 0); stop and
 * free it.  0 / -1. */
int hsd_hot_start(hsd_daemon *d);
void hsd_hot_stop(hsd_daemon *d);

/*-------------------------------------------------------------------------
 * checkpointer.c: the checkpointer thread, checkpoints, queue file sync
 *-------------------------------------------------------------------------
 */
int hsd_checkpointer_start(hsd_daemon *d);
/* Let the checkpointer finish the job it has, then join it. */
void hsd_checkpointer_stop(hsd_daemon *d);

/* Write d->shadow as a checkpoint (caller owns the shadow: recovery, or the
 * stop sequence after the spiller exited), store checkpoint_lsn when a
 * segment exists, recycle.  0, or -1 with the reason in error. */
int hsd_checkpoint_now(hsd_daemon *d, const hs_shadow *shadow, char *error, size_t errlen);

/* fdatasync every file in real_dir/queue and the directory.  0, or -1
 * after an ERROR line. */
int hsd_sync_queue_files(const char *dir);

/*-------------------------------------------------------------------------
 * control.c: the control socket, server and client
 *-------------------------------------------------------------------------
 */
int hsd_control_start(hsd_daemon *d);
void hsd_control_stop(hsd_daemon *d);

/* Send one command line to the daemon of real_dir and read its whole reply
 * into reply (NUL-terminated).  0; 1 when nobody listens (not running);
 * -1 on another error (reply holds the reason). */
int hsd_control_call(const char *real_dir, const char *command, char *reply, size_t replylen,
                     int timeout_s);

/* The CLI commands that talk to a running daemon; they return exit codes. */
int hsd_cli_status(const hsd_cli *cli);
int hsd_cli_stop(const hsd_cli *cli);
int hsd_cli_checkpoint(const hsd_cli *cli);

#endif /* HOTSTOCK_DAEMON_H */
