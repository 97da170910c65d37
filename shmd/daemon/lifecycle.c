/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *      hotstockd's start and stop sequences: lock file, recovery, detaching,
 *      pid file, heartbeat, signals, smart and immediate stop.
 *
 * Start:  check DIR and settings -> flock DIR/hotstockd.lock (a second
 *         daemon is refused; `start` on a running DIR says so and exits 0)
 *         -> open the log -> recover (recovery.c; single-threaded) ->
 *         detach (fork, setsid, fork; the parent waits on a pipe) -> pid
 *         file -> control, checkpointer and spiller threads -> state READY
 *         (release) -> tell the parent "ready": it exits 0 only now, and
 *         non-zero with the reason when any step failed.
 *
 * Main thread, once READY: every HS_HEARTBEAT_INTERVAL_MS it stores
 * header.heartbeat_ms (relaxed: clients only compare it with their clock),
 * copies header.applied_lsn into d->applied_lsn (acquire from the drain's
 * release; release to the spiller's acquire), and queues the interval
 * checkpoint.  Signals are blocked in every thread and taken synchronously
 * here with sigtimedwait(), so no handler runs concurrently with anything:
 * SIGTERM and SIGINT stop smart, SIGQUIT immediately.  The control thread
 * asks for a stop the same way (stop_mode, then a signal to this thread).
 *
 * Smart stop: fence next_lsn (fetch_or HS_LSN_FENCED, seq_cst: no
 * reservation succeeds after it, so no new record), let the spiller spill
 * and fdatasync every LSN reserved before the fence (it abandons a slot
 * whose writer died), state STOPPING (release), final checkpoint, state
 * DEAD (release), unlink the segment, remove the pid file, exit.  The state
 * stays READY and the heartbeat keeps beating until everything reserved is
 * durable, so clients waiting for durability get their true answer.
 * Immediate stop: exit at once, as a crash would (minus the kill): the
 * next start recovers from the checkpoint, the queue and the ring.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

static hsd_daemon hsd_the_daemon;

/*-------------------------------------------------------------------------
 * Detaching
 *-------------------------------------------------------------------------
 */

/* Tell the waiting parent (fd >= 0) one line: "ready ..." or the reason
 * the start failed; then close the pipe. */
static void
hsd_notify(int *fd, const char *msg)
{
    if (*fd < 0)
        return;
    if (write(*fd, msg, strlen(msg)) < 0) {
        /* the parent is gone: nobody to tell */
    }
    close(*fd);
    *fd = -1;
}

/*
 * Fork twice (setsid between) so the daemon is no session leader and has
 * no terminal.  In the original process: wait until the daemon reports
 * over the pipe, print the outcome and return the exit code (>= 0).  In
 * the daemon: return -1 with *notify_fd the pipe's write end.
 */
static int
hsd_detach(hsd_daemon *d, int *notify_fd)
{
    char buf[1024];
    size_t got = 0;
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) != 0) {
        hsd_log(HSD_ERROR, "cannot create a pipe: %s", strerror(errno));
        return HSD_EXIT_FAILURE;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        hsd_log(HSD_ERROR, "cannot fork: %s", strerror(errno));
        return HSD_EXIT_FAILURE;
    }
    if (pid > 0) {
        close(p[1]);
        for (;;) {
            ssize_t n = read(p[0], buf + got, sizeof(buf) - 1 - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
            if (got == sizeof(buf) - 1)
                break;
        }
        buf[got] = '\0';
        close(p[0]);
        waitpid(pid, NULL, 0);
        if (strncmp(buf, "ready ", 6) == 0) {
            printf("hotstockd: %s\n", buf + 6);
            return HSD_EXIT_OK;
        }
        if (got > 0)
            fprintf(stderr, "hotstockd: %s\n", buf);
        else
            fprintf(stderr, "hotstockd: the daemon exited while starting; see %s\n", d->log_path);
        return HSD_EXIT_FAILURE;
    }

    /* first child */
    close(p[0]);
    if (setsid() < 0)
        _exit(HSD_EXIT_FAILURE);
    pid = fork();
    if (pid < 0) {
        int fd = p[1];
        hsd_notify(&fd, "cannot fork the daemon");
        _exit(HSD_EXIT_FAILURE);
    }
    if (pid > 0)
        _exit(HSD_EXIT_OK);

    /* the daemon: no terminal; stdout and stderr into the log */
    {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
        dup2(hsd_log_fd(), STDOUT_FILENO);
        dup2(hsd_log_fd(), STDERR_FILENO);
        if (chdir("/") != 0) {
            /* harmless: every path we use is absolute */
        }
    }
    hsd_log_echo_errors(false);
    *notify_fd = p[1];
    return -1;
}

/*-------------------------------------------------------------------------
 * Serving
 *-------------------------------------------------------------------------
 */

static void
hsd_heartbeat(hsd_daemon *d)
{
    /* relaxed: clients only compare it with their own monotonic clock */
    atomic_store_explicit(&d->seg->heartbeat_ms, hs_now_monotonic_ms(), memory_order_relaxed);
}

/* Copy the drain's applied_lsn (never past durable_lsn, never backwards). */
static void
hsd_copy_applied(hsd_daemon *d)
{
    /* pairs with the drain's release store after its commit */
    hs_lsn a = atomic_load_explicit(&d->seg->applied_lsn, memory_order_acquire);
    hs_lsn durable = atomic_load_explicit(&d->seg->durable_lsn, memory_order_acquire);
    hs_lsn prev = atomic_load_explicit(&d->applied_lsn, memory_order_relaxed);

    if (a > durable)
        a = durable;
    if (a > prev)
        /* pairs with the spiller's acquire load for the next checkpoint */
        atomic_store_explicit(&d->applied_lsn, a, memory_order_release);
}

static void
hsd_remove_runtime_files(hsd_daemon *d)
{
    char path[PATH_MAX + 32];

    hsd_path(path, sizeof(path), d->dir, HSD_PID_FILE);
    unlink(path);
}

/* Exit now, as a crash would: no checkpoint, the segment left as it is
 * (clients see the heartbeat stop; the next start fences and salvages). */
static _Noreturn void
hsd_exit_immediate(hsd_daemon *d)
{
    char path[PATH_MAX + 32];

    hsd_log(HSD_LOG, "immediate stop: exiting without checkpoint; the next start recovers "
                     "from the queue and the ring");
    hsd_path(path, sizeof(path), d->dir, HSD_SOCKET_FILE);
    unlink(path);
    hsd_remove_runtime_files(d);
    _exit(HSD_EXIT_OK);
}

/* Retire the segment: DEAD, wake every durability waiter so it sees it,
 * remove the name. */
static void
hsd_retire_segment(hsd_daemon *d)
{
    if (d->seg == NULL)
        return;
    /* pairs with the clients' acquire load of state on every call */
    atomic_store_explicit(&d->seg->state, HS_SEGMENT_DEAD, memory_order_release);
    atomic_fetch_add_explicit(&d->seg->durable_seq, 1, memory_order_release);
    hs_futex_wake_all(&d->seg->durable_seq);
    if (hs_segment_unlink(d->dir) != 0)
        hsd_log(HSD_WARNING, "%s", hs_last_error());
    hs_segment_unmap(d->seg);
    d->seg = NULL;
}

static int
hsd_stop_smart(hsd_daemon *d)
{
    uint64_t t0 = hs_now_monotonic_ms();
    hsd_request stop;
    hs_lsn prev, durable;
    char error[512];
    int rc = HSD_EXIT_OK;

    hsd_log(HSD_LOG, "smart stop: refusing new records, spilling and syncing every record "
                     "reserved so far");
    /* the hot thread (it only reads and ages the sketch), the expirer (it
     * appends EXPIRE records), then the evictor: it commits its filter
     * file and leaves the index */
    hsd_hot_stop(d);
    hsd_expirer_stop(d);
    hsd_evictor_stop(d);
    /* no reservation succeeds after this; seq_cst orders it before the
     * spiller's loads of the slots below the fenced value.  The state stays
     * READY while the spiller drains, so a client waiting for durability
     * gets its answer rather than "daemon down". */
    prev = atomic_fetch_or_explicit(&d->seg->next_lsn, HS_LSN_FENCED, memory_order_seq_cst);

    memset(&stop, 0, sizeof(stop));
    stop.kind = HSD_REQ_STOP;
    stop.stop_lsn = (prev & ~HS_LSN_FENCED) - 1;
    if (hsd_request_submit(d, &stop) != 0)
        hsd_fatal("smart stop: the spiller takes no requests");
    /* keep beating while the spiller drains (it may wait up to
     * HS_STALL_ABANDON_MS for a writer that died mid-record) */
    while (atomic_load_explicit(&stop.done, memory_order_acquire) == 0) {
        hsd_heartbeat(d);
        hs_futex_wait(&stop.done, 0, HS_HEARTBEAT_INTERVAL_MS);
    }
    pthread_join(d->spiller_thread, NULL);
    d->spiller_running = false;
    /* everything reserved is durable: no new work.  Pairs with the
     * clients' acquire load at the start of every call. */
    atomic_store_explicit(&d->seg->state, HS_SEGMENT_STOPPING, memory_order_release);
    hsd_requests_close(d);
    hsd_checkpointer_stop(d);

    /* the spiller is gone: the shadow is ours.  Final checkpoint. */
    hsd_copy_applied(d);
    durable = atomic_load_explicit(&d->seg->durable_lsn, memory_order_acquire);
    d->shadow.applied_lsn = atomic_load_explicit(&d->applied_lsn, memory_order_acquire);
    d->shadow.generation = d->generation;
    if (d->shadow.lsn != durable)
        hsd_fatal("smart stop: shadow LSN %" PRIu64 " differs from durable LSN %" PRIu64,
                  d->shadow.lsn, durable);
    if (hsd_checkpoint_now(d, &d->shadow, error, sizeof(error)) != 0) {
        hsd_log(HSD_ERROR,
                "smart stop: %s (the queue holds every record: the next start "
                "replays it)",
                error);
        rc = HSD_EXIT_FAILURE;
    }

    hsd_control_stop(d);
    hsd_expirer_free(d);
    hsd_retire_segment(d);
    hs_qf_writer_close(d->writer);
    d->writer = NULL;
    hsd_remove_runtime_files(d);
    hsd_log(HSD_LOG, "stopped in %" PRIu64 " ms: durable LSN %" PRIu64 ", checkpoint at it",
            hs_now_monotonic_ms() - t0, durable);
    return rc;
}

/* The main loop; returns when a smart stop is asked for. */
static void
hsd_main_loop(hsd_daemon *d, const sigset_t *signals)
{
    uint64_t interval_ms = (uint64_t)d->settings.checkpoint_interval_s * 1000;
    uint64_t next_ckpt = hs_now_monotonic_ms() + interval_ms;
    hsd_request interval_req;
    bool interval_pending = false;

    memset(&interval_req, 0, sizeof(interval_req));
    for (;;) {
        struct timespec ts = {0, HS_HEARTBEAT_INTERVAL_MS * 1000000L};
        int sig = sigtimedwait(signals, NULL, &ts);
        uint64_t now;
        int mode;

        if (sig == SIGTERM || sig == SIGINT) {
            int none = HSD_STOP_NONE;
            atomic_compare_exchange_strong_explicit(&d->stop_mode, &none, HSD_STOP_SMART,
                                                    memory_order_acq_rel, memory_order_acquire);
        } else if (sig == SIGQUIT) {
            atomic_store_explicit(&d->stop_mode, HSD_STOP_IMMEDIATE, memory_order_release);
        } else if (sig == SIGHUP) {
            hsd_log(HSD_LOG, "SIGHUP ignored: settings are read at start only");
        }

        hsd_heartbeat(d);
        hsd_copy_applied(d);

        now = hs_now_monotonic_ms();
        if (interval_pending &&
            atomic_load_explicit(&interval_req.done, memory_order_acquire) != HSD_REQ_PENDING) {
            interval_pending = false;
            if (interval_req.result != 0)
                hsd_log(HSD_WARNING, "interval checkpoint failed: %s", interval_req.error);
        }
        if (interval_ms > 0 && now >= next_ckpt && !interval_pending) {
            interval_req.kind = HSD_REQ_CHECKPOINT;
            interval_req.if_changed = true;
            if (hsd_request_submit(d, &interval_req) == 0)
                interval_pending = true;
            next_ckpt = now + interval_ms;
        }

        /* pairs with the release store of the control thread */
        mode = atomic_load_explicit(&d->stop_mode, memory_order_acquire);
        if (mode == HSD_STOP_IMMEDIATE)
            hsd_exit_immediate(d);
        if (mode == HSD_STOP_SMART) {
            /* the interval request must be done before its memory goes */
            if (interval_pending)
                hsd_request_wait(&interval_req);
            return;
        }
    }
}

/* Everything after recovery (in the daemon process).  Returns the exit
 * code; *notify_fd gets "ready ..." or the reason of a failure. */
static int
hsd_serve(hsd_daemon *d, int *notify_fd)
{
    char path[PATH_MAX + 32], msg[2 * PATH_MAX + 256];
    sigset_t signals;
    int rc;

    d->main_thread = pthread_self();
    /* immutable header field, written before READY publishes it */
    d->seg->daemon_pid = (int32_t)getpid();
    if (hsd_write_pid(d->lock_fd, NULL) != 0)
        hsd_log(HSD_WARNING, "cannot write the pid into %s/%s: %s", d->dir, HSD_LOCK_FILE,
                strerror(errno));
    hsd_path(path, sizeof(path), d->dir, HSD_PID_FILE);
    if (hsd_write_pid(-1, path) != 0) {
        snprintf(msg, sizeof(msg), "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }

    /* every thread inherits this mask: only sigtimedwait() here takes them */
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGQUIT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    hsd_requests_init(d);
    if (hsd_control_start(d) != 0) {
        snprintf(msg, sizeof(msg), "cannot start the control socket; see %s", d->log_path);
        goto fail;
    }
    if (hsd_checkpointer_start(d) != 0 || hsd_spiller_start(d) != 0) {
        snprintf(msg, sizeof(msg), "cannot start the daemon's threads; see %s", d->log_path);
        goto fail;
    }

    hsd_heartbeat(d);
    /* publishes every field recovery wrote; pairs with the clients'
     * acquire load of state */
    atomic_store_explicit(&d->seg->state, HS_SEGMENT_READY, memory_order_release);
    if (hsd_evictor_start(d) != 0 || hsd_expirer_start(d) != 0 || hsd_hot_start(d) != 0) {
        snprintf(msg, sizeof(msg), "cannot start the evictor, expirer or hot thread; see %s",
                 d->log_path);
        goto fail;
    }
    hsd_log(HSD_LOG,
            "ready: generation %" PRIu64 ", next LSN %" PRIu64 ", %u SKUs, %u orders; recovery "
            "took %" PRIu64 " ms for %" PRIu64 " records",
            d->generation, atomic_load(&d->seg->next_lsn), atomic_load(&d->seg->sku_count),
            atomic_load(&d->seg->order_count), d->recovery_ms, d->recovered_records);
    snprintf(msg, sizeof(msg),
             "ready ready in %s (pid %d, generation %" PRIu64 "; recovered %" PRIu64
             " records, salvaged %" PRIu64 ", in %" PRIu64 " ms)",
             d->dir, (int)getpid(), d->generation, d->recovered_records, d->salvaged_records,
             d->recovery_ms);
    hsd_notify(notify_fd, msg);
    if (d->foreground)
        fprintf(stderr, "hotstockd: %s\n", msg + 6);

    hsd_main_loop(d, &signals);
    rc = hsd_stop_smart(d);
    return rc;

fail:
    hsd_log(HSD_ERROR, "%s", msg);
    hsd_notify(notify_fd, msg);
    if (d->spiller_running || d->checkpointer_running || d->evictor_running ||
        d->expirer_running)
        _exit(HSD_EXIT_FAILURE); /* threads cannot be unwound: as a crash */
    if (d->control_running)
        hsd_control_stop(d);
    hsd_retire_segment(d);
    hsd_remove_runtime_files(d);
    return HSD_EXIT_FAILURE;
}

int
hsd_start(const hsd_cli *cli)
{
    hsd_daemon *d = &hsd_the_daemon;
    char path[PATH_MAX + 32];
    int notify_fd = -1;
    int rc;

    memset(d, 0, sizeof(*d));
    d->lock_fd = -1;
    d->control_fd = -1;
    d->foreground = cli->foreground;
    d->started_unix_ms = hs_now_unix_us() / 1000;

    rc = hsd_check_dir(cli->dir, d->dir, true);
    if (rc != 0)
        return rc;
    rc = hsd_settings_load(cli, d->dir, &d->settings);
    if (rc != 0)
        return rc;
    umask(077); /* segment, queue, checkpoint, log, socket: owner only */

    hsd_path(path, sizeof(path), d->dir, HSD_LOCK_FILE);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        fprintf(stderr, "hotstockd: cannot create %s: %s (is the data directory writable?)\n", path,
                strerror(errno));
        return HSD_EXIT_USAGE;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            printf("hotstockd: already running in %s (pid %d)\n", d->dir,
                   (int)hsd_read_pid(d->dir));
            return HSD_EXIT_OK;
        }
        fprintf(stderr, "hotstockd: cannot lock %s: %s\n", path, strerror(errno));
        return HSD_EXIT_FAILURE;
    }
    hsd_write_pid(d->lock_fd, NULL);

    if (d->foreground) {
        hsd_log_to_stderr();
        snprintf(d->log_path, sizeof(d->log_path), "stderr");
    } else {
        hsd_path(d->log_path, sizeof(d->log_path), d->dir, HSD_LOG_FILE);
        if (hsd_log_open(d->log_path) != 0) {
            fprintf(stderr, "hotstockd: cannot open the log %s: %s\n", d->log_path,
                    strerror(errno));
            return HSD_EXIT_FAILURE;
        }
        hsd_log_echo_errors(true);
    }
    hsd_log(HSD_LOG,
            "hotstockd starting in %s (pid %d): sku_capacity %u, order_capacity %u, "
            "ring_capacity %u, flush_interval_ms %u, queue_file_size %" PRIu64
            ", checkpoint_interval_s %u, spiller_poll_us %u, waiter_spin_us %u",
            d->dir, (int)getpid(), hsd_pow2_ceil(d->settings.sku_capacity),
            hsd_pow2_ceil(d->settings.order_capacity), hsd_pow2_ceil(d->settings.ring_capacity),
            d->settings.flush_interval_ms, d->settings.queue_file_size,
            d->settings.checkpoint_interval_s, d->settings.spiller_poll_us,
            d->settings.waiter_spin_us);

    if (hsd_expirer_init(d) != 0 || hsd_recover(d) != 0) {
        if (!d->foreground)
            fprintf(stderr, "hotstockd: start failed; see %s\n", d->log_path);
        return HSD_EXIT_FAILURE;
    }
    if (!d->foreground) {
        rc = hsd_detach(d, &notify_fd);
        if (rc >= 0)
            return rc; /* the original process */
    }
    return hsd_serve(d, &notify_fd);
}
