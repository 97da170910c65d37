/*-------------------------------------------------------------------------
 *
 * control.c
 *      The control socket DIR/hotstockd.sock: the daemon's side (one control
 *      thread) and the CLI's side (status, stop, checkpoint).
 *
 * Protocol: the client connects, sends one line, reads the reply until the
 * daemon closes the connection.
 *
 *     status            human-readable status, "key: value" lines
 *     status json       the same as one JSON object
 *     checkpoint        "ok checkpoint_lsn=N" once durable, or "error ..."
 *     stop smart        "ok stopping pid N"; the daemon then drains, syncs,
 *                       checkpoints and exits
 *     stop immediate    "ok stopping pid N immediately"; it exits at once
 *     anything else     "error unknown command ..."
 *
 * The socket is created mode 0600 (the daemon runs with umask 077) and a
 * peer of another uid (other than root) is refused (SO_PEERCRED).
 *
 * What it shares: the control thread reads the segment header's positions
 * with acquire loads (each is published with release by its writer, see
 * segment.h) and the daemon's stats (relaxed counters: a status is a
 * snapshot, not a consistent cut).  It hands checkpoint requests to the
 * spiller through the request queue (spiller.c) and a stop to the main
 * thread through d->stop_mode (release) plus a signal.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "daemon.h"

#define HSD_CONTROL_LINE_MAX 256
#define HSD_STATUS_MAX 8192
/* How long the control thread waits for a checkpoint before it answers
 * (the CLI's default timeout is longer). */
#define HSD_CONTROL_WAIT_MS 30000

/*
 * The socket address of real_dir.  A path too long for sun_path goes
 * through /proc/self/fd/N of an O_PATH descriptor of the directory, which
 * the caller closes (*dirfd) after bind/connect.  0, or -1 with errno.
 */
static int
hsd_socket_addr(const char *real_dir, struct sockaddr_un *addr, int *dirfd)
{
    *dirfd = -1;
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (strlen(real_dir) + 1 + strlen(HSD_SOCKET_FILE) < sizeof(addr->sun_path)) {
        snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/%s", real_dir, HSD_SOCKET_FILE);
        return 0;
    }
    *dirfd = open(real_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0)
        return -1;
    snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", *dirfd,
             HSD_SOCKET_FILE);
    return 0;
}

/*-------------------------------------------------------------------------
 * Status
 *-------------------------------------------------------------------------
 */
typedef struct hsd_buf {
    char *p;
    size_t len, cap;
} hsd_buf;

static void __attribute__((format(printf, 2, 3))) hsd_buf_printf(hsd_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->len >= b->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap - 1;
}

/* s as a JSON string body (quotes and control characters escaped). */
static void
hsd_buf_json_string(hsd_buf *b, const char *s)
{
    hsd_buf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            hsd_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            hsd_buf_printf(b, "\\u%04x", c);
        else
            hsd_buf_printf(b, "%c", c);
    }
    hsd_buf_printf(b, "\"");
}

/* jemalloc's stats.allocated (bytes the daemon has allocated), or 0. */
static uint64_t
hsd_jemalloc_allocated(void)
{
    uint64_t epoch = 1;
    size_t allocated = 0, sz = sizeof(epoch);

    /* refresh jemalloc's cached statistics first */
    if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0)
        return 0;
    sz = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

static void
hsd_status(hsd_daemon *d, bool json, hsd_buf *b)
{
    hs_header *h = d->seg;
    /* each pairs with its writer's release store (segment.h) */
    uint32_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    hs_lsn next = atomic_load_explicit(&h->next_lsn, memory_order_acquire);
    hs_lsn spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_acquire);
    hs_lsn durable = atomic_load_explicit(&h->durable_lsn, memory_order_acquire);
    hs_lsn applied = atomic_load_explicit(&h->applied_lsn, memory_order_acquire);
    hs_lsn ckpt = atomic_load_explicit(&h->checkpoint_lsn, memory_order_acquire);
    uint32_t skus = atomic_load_explicit(&h->sku_count, memory_order_relaxed);
    uint32_t orders = atomic_load_explicit(&h->order_count, memory_order_relaxed);
    uint64_t abandoned = atomic_load_explicit(&h->abandoned_records, memory_order_relaxed);
    uint64_t last_flush = atomic_load_explicit(&h->last_flush_unix_ms, memory_order_relaxed);
    uint64_t hb = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    uint64_t now_mono = hs_now_monotonic_ms(), now_ms = hs_now_unix_us() / 1000;
    hs_lsn reserved = (next & ~HS_LSN_FENCED) - 1;
    uint64_t ring_used = reserved > spilled ? reserved - spilled : 0;
    double ring_pct = 100.0 * (double)ring_used / (double)h->ring_capacity;
    uint64_t flush_age = now_ms > last_flush ? now_ms - last_flush : 0;
    uint64_t hb_age = now_mono > hb ? now_mono - hb : 0;
    uint64_t uptime_s = (now_ms - d->started_unix_ms) / 1000;
    uint64_t allocated = hsd_jemalloc_allocated();
    hsd_stats *st = &d->stats;
    uint64_t records_spilled = atomic_load_explicit(&st->records_spilled, memory_order_relaxed);
    uint64_t flushes = atomic_load_explicit(&st->flushes, memory_order_relaxed);
    uint64_t last_flush_us = atomic_load_explicit(&st->last_flush_us, memory_order_relaxed);
    uint64_t max_flush_us = atomic_load_explicit(&st->max_flush_us, memory_order_relaxed);
    uint64_t checkpoints = atomic_load_explicit(&st->checkpoints, memory_order_relaxed);
    uint64_t recycled = atomic_load_explicit(&st->files_recycled, memory_order_relaxed);
    int spill_errno = atomic_load_explicit(&h->spill_errno, memory_order_acquire);
    /* the evictor's: seq_cst (segment.h), statistics relaxed */
    hs_lsn evicted = atomic_load(&h->evicted_lsn);
    uint64_t evictions = atomic_load_explicit(&h->evictions, memory_order_relaxed);
    uint64_t evict_passes = atomic_load_explicit(&h->evict_passes, memory_order_relaxed);
    uint64_t filter_ids = atomic_load_explicit(&h->filter_ids, memory_order_relaxed);
    uint64_t filter_bytes = (uint64_t)h->filter_blocks * sizeof(hs_filter_block);
    hs_lsn filter_lsn = atomic_load_explicit(&d->filter_lsn, memory_order_acquire);
    uint32_t buyers = atomic_load_explicit(&h->buyer_count, memory_order_relaxed);
    uint64_t forgotten = atomic_load_explicit(&h->buyers_forgotten, memory_order_relaxed);

    if (json) {
        hsd_buf_printf(b, "{\"running\": true, \"dir\": ");
        hsd_buf_json_string(b, d->dir);
        hsd_buf_printf(b,
                       ", \"buyer_count\": %u, \"buyer_capacity\": %u, \"buyers_forgotten\": %" PRIu64
                       ", \"buyer_retention\": %u",
                       buyers, h->buyer_capacity, forgotten, d->settings.buyer_retention_s);
        hsd_buf_printf(
            b,
            ", \"pid\": %d, \"generation\": %" PRIu64 ", \"state\": \"%s\", \"fenced\": %s"
            ", \"next_lsn\": %" PRIu64 ", \"spilled_lsn\": %" PRIu64 ", \"durable_lsn\": %" PRIu64
            ", \"applied_lsn\": %" PRIu64 ", \"checkpoint_lsn\": %" PRIu64
            ", \"evicted_lsn\": %" PRIu64 ", \"evictions\": %" PRIu64
            ", \"evict_passes\": %" PRIu64 ", \"filter_ids\": %" PRIu64
            ", \"filter_bytes\": %" PRIu64 ", \"filter_lsn\": %" PRIu64 ", \"filter_legacy\": %s"
            ", \"sku_count\": %u, \"sku_capacity\": %u"
            ", \"order_count\": %u, \"order_capacity\": %u, \"ring_used\": %" PRIu64
            ", \"ring_capacity\": %u, \"ring_fill_pct\": %.1f, \"last_flush_unix_ms\": %" PRIu64
            ", \"last_flush_age_ms\": %" PRIu64 ", \"last_flush_us\": %" PRIu64
            ", \"max_flush_us\": %" PRIu64 ", \"flushes\": %" PRIu64
            ", \"records_spilled\": %" PRIu64 ", \"abandoned_records\": %" PRIu64
            ", \"checkpoints\": %" PRIu64 ", \"files_recycled\": %" PRIu64
            ", \"heartbeat_age_ms\": %" PRIu64 ", \"spill_errno\": %d, \"uptime_s\": %" PRIu64
            ", \"recovery_ms\": %" PRIu64 ", \"recovery_cpu_ms\": %" PRIu64
            ", \"recovered_records\": %" PRIu64 ", \"salvaged_records\": %" PRIu64
            ", \"jemalloc_allocated\": %" PRIu64
            ", \"settings\": {\"flush_interval_ms\": %u, \"queue_file_size\": %" PRIu64
            ", \"checkpoint_interval_s\": %u, \"order_retention\": %u"
            ", \"spiller_poll_us\": %u, \"waiter_spin_us\": %u}, \"log\": ",
            (int)h->daemon_pid, h->generation, hs_segment_state_name(state),
            (next & HS_LSN_FENCED) ? "true" : "false", next & ~HS_LSN_FENCED, spilled, durable,
            applied, ckpt, evicted, evictions, evict_passes, filter_ids, filter_bytes, filter_lsn,
            h->filter_legacy ? "true" : "false", skus, h->sku_capacity, orders, h->order_capacity,
            ring_used, h->ring_capacity, ring_pct, last_flush, flush_age, last_flush_us,
            max_flush_us, flushes, records_spilled, abandoned, checkpoints, recycled, hb_age,
            spill_errno, uptime_s, d->recovery_ms, d->recovery_cpu_ms, d->recovered_records,
            d->salvaged_records, allocated, d->settings.flush_interval_ms, d->settings.queue_file_size,
            d->settings.checkpoint_interval_s, d->settings.order_retention_s,
            d->settings.spiller_poll_us, d->settings.waiter_spin_us);
        hsd_buf_json_string(b, d->log_path);
        hsd_buf_printf(b, "}\n");
        return;
    }

    hsd_buf_printf(b, "hotstockd running in %s (pid %d)\n", d->dir, (int)h->daemon_pid);
    hsd_buf_printf(b, "generation:         %" PRIu64 "\n", h->generation);
    hsd_buf_printf(b, "state:              %s%s\n", hs_segment_state_name(state),
                   (next & HS_LSN_FENCED) ? " (fenced)" : "");
    hsd_buf_printf(b, "next_lsn:           %" PRIu64 "\n", next & ~HS_LSN_FENCED);
    hsd_buf_printf(b, "spilled_lsn:        %" PRIu64 "\n", spilled);
    hsd_buf_printf(b, "durable_lsn:        %" PRIu64 "\n", durable);
    hsd_buf_printf(b, "applied_lsn:        %" PRIu64 "\n", applied);
    hsd_buf_printf(b, "checkpoint_lsn:     %" PRIu64 "\n", ckpt);
    hsd_buf_printf(b, "evicted_lsn:        %" PRIu64 "\n", evicted);
    hsd_buf_printf(b, "skus:               %u of %u\n", skus, h->sku_capacity);
    hsd_buf_printf(b, "orders:             %u of %u (%" PRIu64 " evicted in %" PRIu64
                      " passes, retention %u s)\n",
                   orders, h->order_capacity, evictions, evict_passes, d->settings.order_retention_s);
    hsd_buf_printf(b, "buyers:             %u of %u (%" PRIu64 " forgotten, retention %u s)\n",
                   buyers, h->buyer_capacity, forgotten, d->settings.buyer_retention_s);
    hsd_buf_printf(b, "evicted_filter:     %" PRIu64 " ids in %" PRIu64 " MiB, durable to LSN %" PRIu64
                      "%s\n",
                   filter_ids, filter_bytes >> 20, filter_lsn, h->filter_legacy ? " (legacy)" : "");
    hsd_buf_printf(b, "ring:               %" PRIu64 " of %u slots in use (%.1f%%)\n", ring_used,
                   h->ring_capacity, ring_pct);
    hsd_buf_printf(b,
                   "last_flush:         %" PRIu64 " ms ago, took %" PRIu64 " us (max %" PRIu64
                   " us, %" PRIu64 " flushes)\n",
                   flush_age, last_flush_us, max_flush_us, flushes);
    hsd_buf_printf(b, "records_spilled:    %" PRIu64 "\n", records_spilled);
    hsd_buf_printf(b, "abandoned_records:  %" PRIu64 "\n", abandoned);
    hsd_buf_printf(b, "checkpoints:        %" PRIu64 " (%" PRIu64 " queue files recycled)\n",
                   checkpoints, recycled);
    hsd_buf_printf(b, "heartbeat_age_ms:   %" PRIu64 "\n", hb_age);
    if (spill_errno != 0)
        hsd_buf_printf(b, "spill_error:        %s\n", strerror(spill_errno));
    hsd_buf_printf(b,
                   "recovery:           %" PRIu64 " records replayed, %" PRIu64
                   " salvaged, %" PRIu64 " ms (%" PRIu64 " ms of CPU)\n",
                   d->recovered_records, d->salvaged_records, d->recovery_ms, d->recovery_cpu_ms);
    hsd_buf_printf(b, "uptime_s:           %" PRIu64 "\n", uptime_s);
    hsd_buf_printf(b, "jemalloc_allocated: %" PRIu64 " bytes\n", allocated);
    hsd_buf_printf(b, "log:                %s\n", d->log_path);
}

/*-------------------------------------------------------------------------
 * The control thread
 *-------------------------------------------------------------------------
 */

/* Read one line (without its newline) from c; false on error or EOF
 * before any byte. */
static bool
hsd_read_line(int c, char *line, size_t len)
{
    size_t got = 0;

    while (got < len - 1) {
        ssize_t n = read(c, line + got, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (line[got] == '\n')
            break;
        got++;
    }
    line[got] = '\0';
    if (got > 0 && line[got - 1] == '\r')
        line[--got] = '\0';
    return got > 0;
}

static void
hsd_control_handle(hsd_daemon *d, int c)
{
    char line[HSD_CONTROL_LINE_MAX];
    char reply[HSD_STATUS_MAX];
    hsd_buf b = {reply, 0, sizeof(reply)};
    struct ucred cred;
    socklen_t credlen = sizeof(cred);
    int stop = HSD_STOP_NONE;

    reply[0] = '\0';
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 && cred.uid != 0 &&
        cred.uid != geteuid()) {
        hsd_buf_printf(&b, "error permission denied\n");
        hs_write_all(c, reply, b.len);
        return;
    }
    if (!hsd_read_line(c, line, sizeof(line)))
        return;

    if (strcmp(line, "status") == 0 || strcmp(line, "status json") == 0) {
        hsd_status(d, line[6] != '\0', &b);
    } else if (strcmp(line, "checkpoint") == 0) {
        /* on the heap: if the spiller cannot serve it in time (a disk that
         * fails writes), we answer and go on serving status */
        hsd_request *req = calloc(1, sizeof(*req));
        char error[512];
        hs_lsn lsn = 0;
        int rc;

        if (req == NULL) {
            hsd_buf_printf(&b, "error out of memory\n");
        } else {
            req->kind = HSD_REQ_CHECKPOINT;
            if (hsd_request_submit(d, req) != 0) {
                free(req);
                hsd_buf_printf(&b, "error the daemon is stopping\n");
            } else if ((rc = hsd_request_wait_for(req, HSD_CONTROL_WAIT_MS, &lsn, error,
                                                  sizeof(error))) == -2) {
                hsd_buf_printf(&b, "error no checkpoint within %d s (it stays queued; see %s)\n",
                               HSD_CONTROL_WAIT_MS / 1000, d->log_path);
            } else if (rc != 0) {
                hsd_buf_printf(&b, "error %s\n", error);
            } else {
                hsd_buf_printf(&b, "ok checkpoint_lsn=%" PRIu64 "\n", lsn);
            }
        }
    } else if (strcmp(line, "stop smart") == 0) {
        hsd_buf_printf(&b, "ok stopping pid %d\n", (int)getpid());
        stop = HSD_STOP_SMART;
    } else if (strcmp(line, "stop immediate") == 0) {
        hsd_buf_printf(&b, "ok stopping pid %d immediately\n", (int)getpid());
        stop = HSD_STOP_IMMEDIATE;
    } else {
        hsd_buf_printf(&b, "error unknown command \"%.64s\"\n", line);
    }
    hs_write_all(c, reply, b.len);

    if (stop != HSD_STOP_NONE) {
        hsd_log(HSD_LOG, "%s stop requested over the control socket",
                stop == HSD_STOP_SMART ? "smart" : "immediate");
        if (stop == HSD_STOP_IMMEDIATE) {
            atomic_store_explicit(&d->stop_mode, HSD_STOP_IMMEDIATE, memory_order_release);
        } else {
            int none = HSD_STOP_NONE;
            atomic_compare_exchange_strong_explicit(&d->stop_mode, &none, HSD_STOP_SMART,
                                                    memory_order_acq_rel, memory_order_acquire);
        }
        /* wake the main thread's sigtimedwait() */
        pthread_kill(d->main_thread, stop == HSD_STOP_SMART ? SIGTERM : SIGQUIT);
    }
}

static void *
hsd_control_main(void *arg)
{
    hsd_daemon *d = arg;

    /* pairs with the release store in hsd_control_stop() */
    while (!atomic_load_explicit(&d->control_exit, memory_order_acquire)) {
        struct pollfd pfd = {.fd = d->control_fd, .events = POLLIN};
        struct timeval tv = {2, 0};
        int c;

        if (poll(&pfd, 1, 200) <= 0)
            continue;
        c = accept4(d->control_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        hsd_control_handle(d, c);
        close(c);
    }
    return NULL;
}

int
hsd_control_start(hsd_daemon *d)
{
    struct sockaddr_un addr;
    char path[PATH_MAX + 32];
    int dirfd, fd, rc;

    snprintf(path, sizeof(path), "%s/%s", d->dir, HSD_SOCKET_FILE);
    if (hsd_socket_addr(d->dir, &addr, &dirfd) != 0) {
        hsd_log(HSD_ERROR, "cannot open %s for its control socket: %s", d->dir, strerror(errno));
        return -1;
    }
    unlink(path); /* a stale socket of a daemon that died: we hold the lock */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || chmod(path, 0600) != 0 ||
        listen(fd, 16) != 0) {
        hsd_log(HSD_ERROR, "cannot create the control socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        if (dirfd >= 0)
            close(dirfd);
        return -1;
    }
    if (dirfd >= 0)
        close(dirfd);
    d->control_fd = fd;
    atomic_store_explicit(&d->control_exit, false, memory_order_relaxed);
    rc = pthread_create(&d->control_thread, NULL, hsd_control_main, d);
    if (rc != 0) {
        hsd_log(HSD_ERROR, "cannot start the control thread: %s", strerror(rc));
        close(fd);
        unlink(path);
        return -1;
    }
    d->control_running = true;
    return 0;
}

void
hsd_control_stop(hsd_daemon *d)
{
    char path[PATH_MAX + 32];

    if (!d->control_running)
        return;
    atomic_store_explicit(&d->control_exit, true, memory_order_release);
    /* wakes the thread's poll() at once (the listening socket reports an
     * error); it then sees control_exit */
    shutdown(d->control_fd, SHUT_RDWR);
    pthread_join(d->control_thread, NULL);
    d->control_running = false;
    close(d->control_fd);
    d->control_fd = -1;
    snprintf(path, sizeof(path), "%s/%s", d->dir, HSD_SOCKET_FILE);
    unlink(path);
}

/*-------------------------------------------------------------------------
 * The CLI's side
 *-------------------------------------------------------------------------
 */
int
hsd_control_call(const char *real_dir, const char *command, char *reply, size_t replylen,
                 int timeout_s)
{
    struct sockaddr_un addr;
    struct timeval tv = {timeout_s, 0};
    size_t got = 0;
    int dirfd, fd, rc;

    reply[0] = '\0';
    if (hsd_socket_addr(real_dir, &addr, &dirfd) != 0) {
        snprintf(reply, replylen, "cannot open %s: %s", real_dir, strerror(errno));
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(reply, replylen, "cannot create a socket: %s", strerror(errno));
        if (dirfd >= 0)
            close(dirfd);
        return -1;
    }
    rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (dirfd >= 0)
        close(dirfd);
    if (rc != 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return 1;
        snprintf(reply, replylen, "cannot connect to %s/%s: %s", real_dir, HSD_SOCKET_FILE,
                 strerror(e));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (hs_write_all(fd, command, strlen(command)) != 0 || hs_write_all(fd, "\n", 1) != 0) {
        snprintf(reply, replylen, "cannot send to %s/%s: %s", real_dir, HSD_SOCKET_FILE,
                 strerror(errno));
        close(fd);
        return -1;
    }
    while (got < replylen - 1) {
        ssize_t n = read(fd, reply + got, replylen - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(reply, replylen, "no answer from %s/%s within %d s: %s", real_dir,
                     HSD_SOCKET_FILE, timeout_s, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    reply[got] = '\0';
    close(fd);
    return 0;
}

/* Print the "not running" answer; returns HSD_EXIT_NOT_RUNNING, or
 * HSD_EXIT_FAILURE when a daemon holds the lock but does not answer. */
static int
hsd_not_answering(const char *real_dir, bool json)
{
    if (hsd_lock_held(real_dir) == 1) {
        fprintf(stderr,
                "hotstockd: a daemon (pid %d) holds %s/%s but its control socket does not "
                "answer (still recovering?)\n",
                (int)hsd_read_pid(real_dir), real_dir, HSD_LOCK_FILE);
        return HSD_EXIT_FAILURE;
    }
    if (json) {
        char text[2 * PATH_MAX];
        hsd_buf b = {text, 0, sizeof(text)};

        hsd_buf_printf(&b, "{\"running\": false, \"dir\": ");
        hsd_buf_json_string(&b, real_dir);
        hsd_buf_printf(&b, "}\n");
        fputs(text, stdout);
    } else {
        printf("hotstockd: not running in %s\n", real_dir);
    }
    return HSD_EXIT_NOT_RUNNING;
}

int
hsd_cli_status(const hsd_cli *cli)
{
    char real[PATH_MAX], reply[HSD_STATUS_MAX];
    int rc;

    rc = hsd_check_dir(cli->dir, real, false);
    if (rc != 0)
        return rc;
    rc = hsd_control_call(real, cli->json ? "status json" : "status", reply, sizeof(reply),
                          cli->timeout_s);
    if (rc == 1)
        return hsd_not_answering(real, cli->json);
    if (rc < 0) {
        fprintf(stderr, "hotstockd: %s\n", reply);
        return HSD_EXIT_FAILURE;
    }
    fputs(reply, stdout);
    return HSD_EXIT_OK;
}

int
hsd_cli_checkpoint(const hsd_cli *cli)
{
    char real[PATH_MAX], reply[1024];
    int rc;

    rc = hsd_check_dir(cli->dir, real, false);
    if (rc != 0)
        return rc;
    rc = hsd_control_call(real, "checkpoint", reply, sizeof(reply), cli->timeout_s);
    if (rc == 1)
        return hsd_not_answering(real, false);
    if (rc < 0 || strncmp(reply, "ok ", 3) != 0) {
        reply[strcspn(reply, "\n")] = '\0';
        fprintf(stderr, "hotstockd: checkpoint failed: %s\n",
                strncmp(reply, "error ", 6) == 0 ? reply + 6 : reply);
        return HSD_EXIT_FAILURE;
    }
    printf("hotstockd: checkpoint done, %s", reply + 3);
    return HSD_EXIT_OK;
}

/*
 * Ask for a stop over the socket (or, when the socket does not answer but
 * a daemon holds the lock, with SIGTERM / SIGQUIT to the pid it recorded),
 * then wait up to cli->timeout_s for the lock to be released: that happens
 * only when the process is gone.  Stopping a DIR with no daemon is not an
 * error (like start on a running one).
 */
int
hsd_cli_stop(const hsd_cli *cli)
{
    bool immediate = cli->stop_mode == HSD_STOP_IMMEDIATE;
    char real[PATH_MAX], reply[1024];
    uint64_t deadline;
    pid_t pid;
    int rc;

    rc = hsd_check_dir(cli->dir, real, false);
    if (rc != 0)
        return rc;
    pid = hsd_read_pid(real);
    rc = hsd_control_call(real, immediate ? "stop immediate" : "stop smart", reply, sizeof(reply),
                          cli->timeout_s);
    if (rc != 0) {
        int held = hsd_lock_held(real);

        if (held == 0) {
            printf("hotstockd: not running in %s\n", real);
            return HSD_EXIT_OK;
        }
        if (pid <= 0) {
            fprintf(stderr, "hotstockd: %s/%s is locked but names no pid: %s\n", real,
                    HSD_LOCK_FILE, rc < 0 ? reply : "no control socket");
            return HSD_EXIT_FAILURE;
        }
        if (kill(pid, immediate ? SIGQUIT : SIGTERM) != 0) {
            fprintf(stderr, "hotstockd: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
            return HSD_EXIT_FAILURE;
        }
        fprintf(stderr, "hotstockd: the control socket does not answer; sent %s to pid %d\n",
                immediate ? "SIGQUIT" : "SIGTERM", (int)pid);
    } else if (strncmp(reply, "ok ", 3) != 0) {
        reply[strcspn(reply, "\n")] = '\0';
        fprintf(stderr, "hotstockd: stop refused: %s\n", reply);
        return HSD_EXIT_FAILURE;
    }

    deadline = hs_now_monotonic_ms() + (uint64_t)cli->timeout_s * 1000;
    while (hsd_lock_held(real) == 1) {
        struct timespec ts = {0, 20 * 1000000L};

        if (hs_now_monotonic_ms() > deadline) {
            fprintf(stderr,
                    "hotstockd: pid %d did not stop within %d s (see %s/%s); it is still "
                    "running\n",
                    (int)pid, cli->timeout_s, real, HSD_LOG_FILE);
            return HSD_EXIT_FAILURE;
        }
        nanosleep(&ts, NULL);
    }
    printf("hotstockd: stopped%s in %s (pid %d)\n", immediate ? " immediately" : "", real,
           (int)pid);
    return HSD_EXIT_OK;
}
