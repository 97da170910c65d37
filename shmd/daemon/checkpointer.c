/*-------------------------------------------------------------------------
 *
 * checkpointer.c
 *      The checkpointer thread, a checkpoint now, and syncing the queue files.
 *
 * Shares with the spiller the hand-off slot d->ckpt_job under ckpt_mu,
 * held only to swap a pointer: the spiller hands over a private copy of
 * its shadow taken at a durable point, and the checkpointer writes and
 * fsyncs it outside the lock (so a slow checkpoint never stalls group
 * commit), stores checkpoint_lsn in the segment (release) and recycles
 * queue files.  Recovery and the stop sequence call hsd_checkpoint_now()
 * directly while no spiller runs.  Below the spiller and recovery; calls
 * neither.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/*-------------------------------------------------------------------------
 * Checkpoints
 *-------------------------------------------------------------------------
 */

int
hsd_checkpoint_now(hsd_daemon *d, const hs_shadow *shadow, char *error, size_t errlen)
{
    uint64_t t0 = hs_now_monotonic_ms();
    hs_lsn upto;
    int removed;

    if (hs_checkpoint_write(d->dir, shadow) != 0) {
        snprintf(error, errlen, "checkpoint at LSN %" PRIu64 " failed: %s", shadow->lsn,
                 hs_last_error());
        hsd_log(HSD_WARNING, "%s", error);
        return -1;
    }
    if (d->seg != NULL) {
        hs_lsn prev = atomic_load_explicit(&d->seg->checkpoint_lsn, memory_order_relaxed);
        if (shadow->lsn > prev)
            atomic_store_explicit(&d->seg->checkpoint_lsn, shadow->lsn, memory_order_release);
    }
    /* Files wholly <= min(checkpoint, applied, filter) are needed neither
     * for the counters (in the checkpoint) nor by the drain (applied) nor
     * for the order index (rebuilt from the records after the filter's
     * durable watermark only; acquire: pairs with the evictor's release). */
    upto = shadow->lsn < shadow->applied_lsn ? shadow->lsn : shadow->applied_lsn;
    {
        hs_lsn filter = atomic_load_explicit(&d->filter_lsn, memory_order_acquire);
        if (filter < upto)
            upto = filter;
    }
    removed = hs_qf_recycle(d->dir, upto);
    if (removed < 0) {
        hsd_log(HSD_WARNING, "recycling queue files up to LSN %" PRIu64 " failed: %s", upto,
                hs_last_error());
        removed = 0;
    }
    atomic_fetch_add_explicit(&d->stats.checkpoints, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->stats.files_recycled, (uint64_t)removed, memory_order_relaxed);
    atomic_store_explicit(&d->stats.last_checkpoint_unix_ms, hs_now_unix_us() / 1000,
                          memory_order_relaxed);
    hsd_log(HSD_LOG,
            "checkpoint at LSN %" PRIu64 " (applied LSN %" PRIu64 ", %u SKUs) in %" PRIu64
            " ms; %d queue files recycled",
            shadow->lsn, shadow->applied_lsn, shadow->count, hs_now_monotonic_ms() - t0, removed);
    return 0;
}

static void *
hsd_checkpointer_main(void *arg)
{
    hsd_daemon *d = arg;

    for (;;) {
        hsd_ckpt_job *job;
        char error[512] = "";
        int rc;

        pthread_mutex_lock(&d->ckpt_mu);
        while (d->ckpt_job == NULL && !d->ckpt_exit)
            pthread_cond_wait(&d->ckpt_cv, &d->ckpt_mu);
        job = d->ckpt_job;
        d->ckpt_job = NULL;
        pthread_mutex_unlock(&d->ckpt_mu);
        if (job == NULL)
            return NULL; /* asked to exit and nothing left */

        rc = hsd_checkpoint_now(d, &job->shadow, error, sizeof(error));
        for (hsd_request *r = job->requests, *next; r != NULL; r = next) {
            next = r->next;
            hsd_request_complete(r, rc, job->shadow.lsn, error);
        }
        hs_shadow_free(&job->shadow);
        free(job);
    }
}

int
hsd_checkpointer_start(hsd_daemon *d)
{
    int rc;

    pthread_mutex_init(&d->ckpt_mu, NULL);
    pthread_cond_init(&d->ckpt_cv, NULL);
    d->ckpt_job = NULL;
    d->ckpt_exit = false;
    rc = pthread_create(&d->checkpointer_thread, NULL, hsd_checkpointer_main, d);
    if (rc != 0) {
        hsd_log(HSD_ERROR, "cannot start the checkpointer thread: %s", strerror(rc));
        return -1;
    }
    d->checkpointer_running = true;
    return 0;
}

void
hsd_checkpointer_stop(hsd_daemon *d)
{
    if (!d->checkpointer_running)
        return;
    pthread_mutex_lock(&d->ckpt_mu);
    d->ckpt_exit = true;
    pthread_cond_signal(&d->ckpt_cv);
    pthread_mutex_unlock(&d->ckpt_mu);
    pthread_join(d->checkpointer_thread, NULL);
    d->checkpointer_running = false;
}

/*-------------------------------------------------------------------------
 * Queue files
 *-------------------------------------------------------------------------
 */

/* fdatasync every queue file and the queue directory: the previous daemon
 * (or a writer that failed) may have left records written but not synced. */
int
hsd_sync_queue_files(const char *dir)
{
    hs_qf_file *files;
    char qdir[PATH_MAX + 16];
    int n, fd;

    n = hs_qf_list(dir, &files);
    if (n < 0) {
        hsd_log(HSD_ERROR, "%s", hs_last_error());
        return -1;
    }
    for (int i = 0; i < n; i++) {
        fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fdatasync(fd) != 0) {
            hsd_log(HSD_ERROR, "cannot fdatasync queue file %s: %s", files[i].path,
                    strerror(errno));
            if (fd >= 0)
                close(fd);
            free(files);
            return -1;
        }
        close(fd);
    }
    free(files);
    snprintf(qdir, sizeof(qdir), "%s/%s", dir, HS_QF_SUBDIR);
    fd = open(qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0) {
            hsd_log(HSD_ERROR, "cannot fsync directory %s: %s", qdir, strerror(errno));
            close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}
