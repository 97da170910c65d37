/*-------------------------------------------------------------------------
 *
 * test_waits.c
 *      Unit tests of durability waits against a real hotstockd: the two
 *      spin settings (waiter_spin_us reaches clients through the header,
 *      0 turns a spin off), a waiter killed inside its wait, which
 *      must leave nothing that makes the spiller flush at once, and a
 *      flush that wakes only the waiters of what it made durable.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "client_check.h"
#include "daemon_ctl.h"
#include "hotstock.h"
#include "segment.h"

/* CPU time of the calling thread, in microseconds. */
static double
thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/*
 * waiter_spin_us and spiller_poll_us: the daemon's settings reach the
 * clients through the header, and 0 turns the spins off.  Checked with
 * the spiller stopped (SIGSTOP), so that a wait cannot end early: a lone
 * waiter that spins burns CPU for waiter_spin_us (300 us by default)
 * before it sleeps; one that does not costs one futex sleep of its 2 ms
 * timeout, 20-80 us of CPU on a virtual machine, whatever the disk and
 * the machine's load.  The least of three waits is judged.
 */
static void
test_spin_settings(void)
{
    static const char *const off[] = {"--waiter-spin-us", "0", "--spiller-poll-us", "0", NULL};
    hsd_ctl d = {0}, dd = {0};
    hs_client *c = NULL;
    char real[4096];
    hs_header *h = NULL;
    hs_lsn lsn;
    double cpu = 0;

    if (!client_test_start(&d, "client-nospin", &c, off))
        return;
    if (CHECK(realpath(d.dir, real) != NULL) && CHECK_R(hs_segment_map(real, &h), HS_OK)) {
        CHECK_EQ(h->waiter_spin_us, 0);
        hs_segment_unmap(h);
    }
    CHECK_R(hs_put_sku(c, S("spin"), 100, NULL), HS_OK);
    if (CHECK_EQ(hsd_ctl_pause(&d), 0)) {
        CHECK_R(hs_deduct(c, S("spin"), 1, S("spin-1"), 0, &lsn), HS_OK);
        for (int i = 0; i < 3; i++) {
            double t0 = thread_cpu_us();
            CHECK_R(hs_wait_durable(c, lsn, 2), HS_DAEMON_DOWN); /* timed out */
            t0 = thread_cpu_us() - t0;
            if (i == 0 || t0 < cpu)
                cpu = t0;
        }
        hsd_ctl_resume(&d);
        if (!CHECK(cpu < 150))
            fprintf(stderr, "    a 2 ms wait with waiter_spin_us 0 took %.0f us of CPU\n", cpu);
        CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    }
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);

    /* the defaults: 300 us in the header for every client */
    if (!client_test_start(&dd, "client-spin", &c, NULL))
        return;
    if (CHECK(realpath(dd.dir, real) != NULL) && CHECK_R(hs_segment_map(real, &h), HS_OK)) {
        CHECK_EQ(h->waiter_spin_us, 300);
        hs_segment_unmap(h);
    }
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&dd), 0);
    hs_test_rmrf(dd.dir);
}

/*
 * A client killed inside a durability wait leaves nothing that makes the
 * spiller flush at once: afterwards an asynchronous record waits for the
 * flush interval (2 s here), as before the wait.  (sync_waiters, the
 * spin's hint, did make it flush every record at once, for the rest of
 * the segment's life.)
 */
static void
test_killed_waiter(void)
{
    static const char *const flags[] = {"--flush-interval-ms", "2000", "--checkpoint-interval-s",
                                        "0", NULL};
    hsd_ctl d = {0};
    hs_client *c = NULL;
    char real[4096];
    hs_header *h = NULL;
    hs_lsn lsn = 0, mine;
    pid_t child;
    double t0;

    if (!client_test_start(&d, "client-killed-waiter", &c, flags))
        return;
    if (!CHECK(realpath(d.dir, real) != NULL) || !CHECK_R(hs_segment_map(real, &h), HS_OK))
        goto out;
    CHECK_R(hs_put_sku(c, S("kw"), 100, NULL), HS_OK);
    if (!CHECK_EQ(hsd_ctl_pause(&d), 0))
        goto out;
    child = fork();
    if (child == 0) {
        hs_client *cc;
        hs_lsn l;
        if (hs_attach(d.dir, &cc) != HS_OK ||
            hs_deduct(cc, S("kw"), 1, S("kw-child"), 0, &l) != HS_OK)
            _exit(1);
        hs_wait_durable(cc, l, -1); /* the spiller is stopped: waits */
        _exit(2);
    }
    /* the child is inside its wait once it counts as a waiter */
    t0 = hs_test_seconds();
    while (atomic_load(&h->sync_waiters) == 0 && hs_test_seconds() - t0 < 10)
        hsd_ctl_nap_ms(1);
    CHECK_EQ(atomic_load(&h->sync_waiters), 1);
    lsn = atomic_load(&h->next_lsn) - 1;
    CHECK(child > 0 && kill(child, SIGKILL) == 0);
    CHECK(child > 0 && waitpid(child, NULL, 0) == child);
    hsd_ctl_resume(&d);
    /* its record is flushed at once all the same */
    CHECK_R(hs_wait_durable(c, lsn, 1000), HS_OK);

    CHECK_R(hs_deduct(c, S("kw"), 1, S("kw-async"), 0, &mine), HS_OK);
    hsd_ctl_nap_ms(300);
    if (!CHECK(atomic_load(&h->durable_lsn) < mine))
        fprintf(stderr, "    an asynchronous record was flushed within 300 ms of a 2000 ms "
                        "interval after a waiter was killed\n");
    CHECK_R(hs_wait_durable(c, mine, 5000), HS_OK);
    CHECK_EQ(avail(c, "kw"), 98);
out:
    if (h != NULL)
        hs_segment_unmap(h);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
}

/* voluntary_ctxt_switches of process pid (/proc), -1 when unreadable */
static long
voluntary_switches(pid_t pid)
{
    char path[64], line[256];
    long n = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

/*
 * A flush wakes only the waiters of the LSNs it made durable: a waiter for
 * an LSN far ahead sleeps through 64 flushes of other records (it wakes for
 * its 10 ms poll, and for the two flushes whose LSN shares its bit, one in
 * 32).  Woken by every flush, it slept again 64 times.  The daemon's
 * directory is on /dev/shm, so that 64 flushes take a few milliseconds
 * whatever the disk.
 */
static void
test_wake_only_durable(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    char real[4096];
    hs_header *h = NULL;
    hs_lsn far, lsn;
    pid_t child;
    int status = 0;
    long before, after;
    double t0, ms;

    signal(SIGPIPE, SIG_IGN);
    snprintf(d.dir, sizeof(d.dir), "/dev/shm/hs-test-wake-XXXXXX");
    if (!CHECK(mkdtemp(d.dir) != NULL))
        return;
    hsd_ctl_flag(&d, "--flush-interval-ms", "20");
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0))
        goto rm;
    if (!CHECK(realpath(d.dir, real) != NULL) || !CHECK_R(hs_segment_map(real, &h), HS_OK))
        goto out;
    CHECK_R(hs_put_sku(c, S("wk"), 1000, NULL), HS_OK);
    CHECK_R(hs_wait_durable(c, atomic_load(&h->next_lsn) - 1, 5000), HS_OK);
    far = atomic_load(&h->next_lsn) + 500;
    child = fork();
    if (child == 0) {
        hs_client *cc;
        if (hs_attach(d.dir, &cc) != HS_OK)
            _exit(1);
        hs_wait_durable(cc, far, 5000); /* never comes: times out */
        _exit(2);
    }
    /* asleep in its wait: counted as a waiter, past its spin */
    t0 = hs_test_seconds();
    while (atomic_load(&h->sync_waiters) == 0 && hs_test_seconds() - t0 < 10)
        hsd_ctl_nap_ms(1);
    hsd_ctl_nap_ms(20);
    CHECK_EQ(atomic_load(&h->sync_waiters), 1);
    before = voluntary_switches(child);
    t0 = hs_test_seconds();
    for (int i = 0; i < 64; i++) {
        char id[32];
        snprintf(id, sizeof(id), "wk-%d", i);
        CHECK_R(hs_deduct(c, S("wk"), 1, id, strlen(id), 0, &lsn), HS_OK);
        CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    }
    ms = (hs_test_seconds() - t0) * 1000;
    after = voluntary_switches(child);
    if (!CHECK(before >= 0 && after - before <= 8 + (long)(ms / 10)))
        fprintf(stderr, "    a waiter for a later LSN slept %ld times during 64 flushes "
                        "(%.1f ms)\n", after - before, ms);
    /* still inside its wait (it times out after 5 s), then killed */
    CHECK(child > 0 && waitpid(child, &status, WNOHANG) == 0);
    CHECK(child > 0 && kill(child, SIGKILL) == 0);
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFSIGNALED(status));
out:
    if (h != NULL)
        hs_segment_unmap(h);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
rm:
    hs_test_rmrf(d.dir);
}

int
main(void)
{
    test_spin_settings();
    test_killed_waiter();
    test_wake_only_durable();
    return hs_test_done();
}
