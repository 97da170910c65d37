/*-------------------------------------------------------------------------
 *
 * request.c
 *      Requests to the spiller (checkpoint, stop): submit, wait, complete.
 *
 * Shares with the spiller, the control thread and the main thread the
 * wait-free request queue in hsd_daemon (liburcu wfcqueue; spiller.c says
 * why) and each request's `done` word: the completer CASes PENDING ->
 * DONE (acq_rel, pairs with the requester's acquire load) and wakes it; a
 * requester that gives up CASes PENDING -> ABANDONED and the completer
 * frees the request.  Below control.c, lifecycle.c, the spiller and the
 * checkpointer; calls none of them.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/*-------------------------------------------------------------------------
 * Requests
 *-------------------------------------------------------------------------
 */
void
hsd_requests_init(hsd_daemon *d)
{
    __cds_wfcq_init(&d->req_head, &d->req_tail);
    pthread_mutex_init(&d->req_mu, NULL);
    d->accepting_requests = true;
}

/* Wake the spiller if it sleeps (or is about to): it re-reads everything. */
static void
hsd_spiller_kick(hs_header *h)
{
    atomic_fetch_add_explicit(&h->spiller_seq, 1, memory_order_release);
    hs_futex_wake_all(&h->spiller_seq);
}

int
hsd_request_submit(hsd_daemon *d, hsd_request *req)
{
    cds_wfcq_node_init(&req->node);
    atomic_store_explicit(&req->done, HSD_REQ_PENDING, memory_order_relaxed);
    req->result = 0;
    req->lsn = 0;
    req->error[0] = '\0';
    req->next = NULL;

    pthread_mutex_lock(&d->req_mu);
    if (!d->accepting_requests) {
        pthread_mutex_unlock(&d->req_mu);
        return -1;
    }
    cds_wfcq_enqueue(&d->req_head, &d->req_tail, &req->node);
    pthread_mutex_unlock(&d->req_mu);
    hsd_spiller_kick(d->seg);
    return 0;
}

int
hsd_request_wait(hsd_request *req)
{
    /* pairs with the CAS in hsd_request_complete() */
    while (atomic_load_explicit(&req->done, memory_order_acquire) == HSD_REQ_PENDING)
        hs_futex_wait(&req->done, HSD_REQ_PENDING, 1000);
    return req->result;
}

int
hsd_request_wait_for(hsd_request *req, int timeout_ms, hs_lsn *lsn, char *error, size_t errlen)
{
    uint64_t end = hs_now_monotonic_ms() + (uint64_t)timeout_ms;
    uint32_t expected = HSD_REQ_PENDING;
    int result;

    while (atomic_load_explicit(&req->done, memory_order_acquire) == HSD_REQ_PENDING) {
        uint64_t now = hs_now_monotonic_ms();
        if (now >= end)
            break;
        hs_futex_wait(&req->done, HSD_REQ_PENDING, (int)(end - now < 1000 ? end - now : 1000));
    }
    /* give it up, unless the completer got there first */
    if (atomic_compare_exchange_strong_explicit(&req->done, &expected, HSD_REQ_ABANDONED,
                                                memory_order_acq_rel, memory_order_acquire))
        return -2;
    result = req->result;
    *lsn = req->lsn;
    snprintf(error, errlen, "%s", req->error);
    free(req);
    return result;
}

void
hsd_request_complete(hsd_request *req, int result, hs_lsn lsn, const char *error)
{
    uint32_t expected = HSD_REQ_PENDING;

    req->result = result;
    req->lsn = lsn;
    snprintf(req->error, sizeof(req->error), "%s", error ? error : "");
    /* publishes the fields above to the requester's acquire load */
    if (!atomic_compare_exchange_strong_explicit(&req->done, &expected, HSD_REQ_DONE,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        free(req); /* abandoned by its requester: ours now */
        return;
    }
    hs_futex_wake_all(&req->done);
}

void
hsd_requests_close(hsd_daemon *d)
{
    struct cds_wfcq_node *node;

    pthread_mutex_lock(&d->req_mu);
    d->accepting_requests = false;
    pthread_mutex_unlock(&d->req_mu);
    /* no producer and no spiller any more: a blocking dequeue is safe */
    while ((node = __cds_wfcq_dequeue_blocking(&d->req_head, &d->req_tail)) != NULL)
        hsd_request_complete((hsd_request *)node, -1, 0, "the daemon is stopping");
}
