/*-------------------------------------------------------------------------
 *
 * takebench.c
 *      CPU cost of one take through libhotstock, from several processes
 *      on ONE SKU: sold-out attempts (the bulk of a flash sale once the
 *      stock is gone) and asynchronous deductions (no durability wait).
 *      Made to compare two builds (e.g. with and without statistics): it
 *      uses only calls every build has.
 *
 *   takebench [-p PROCS] [-n TAKES] [-r ROUNDS]
 *
 * Starts a private daemon ($HOTSTOCKD, else ./shmd/hotstockd) in a
 * temporary directory.  Each round: PROCS processes (default 2) each make
 * TAKES (default 200000) sold-out attempts on SKU `gone` (stock 0), then
 * TAKES deductions of SKU `many` with fresh order ids.  Prints, per round
 * and kind, the CPU nanoseconds per take of the taking processes (user +
 * system, getrusage: the figure that stays meaningful on a busy machine)
 * and takes per second by wall clock; then the median of the rounds.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "daemon_ctl.h"
#include "hotstock.h"

#define MAX_ROUNDS 32

typedef struct result {
    _Atomic uint64_t cpu_ns;
    _Atomic uint64_t bad;
} result;

static uint64_t
cpu_ns(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* One kind, one round: PROCS processes of TAKES takes each.  Returns CPU
 * ns per take, *rate = takes per wall second. */
static double
run(const char *dir, bool sold_out, int procs, int takes, int round, result *res, double *rate)
{
    double t0 = hs_test_seconds();
    pid_t pids[64];

    atomic_store(&res->cpu_ns, 0);
    atomic_store(&res->bad, 0);
    for (int p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            hs_client *c = NULL;
            uint64_t c0;

            if (hs_attach(dir, &c) != HS_OK)
                _exit(3);
            c0 = cpu_ns();
            for (int k = 0; k < takes; k++) {
                char id[48];
                hs_lsn lsn;
                hs_result r;

                snprintf(id, sizeof(id), "%c%d-%d-%d", sold_out ? 's' : 'd', round, p, k);
                do
                    r = hs_deduct(c, sold_out ? "gone" : "many", 4, 1, id, strlen(id), 0, &lsn);
                while (r == HS_QUEUE_FULL);
                if (r != (sold_out ? HS_SOLD_OUT : HS_OK))
                    atomic_fetch_add(&res->bad, 1);
            }
            atomic_fetch_add(&res->cpu_ns, cpu_ns() - c0);
            hs_detach(c);
            _exit(0);
        }
    }
    for (int p = 0; p < procs; p++)
        waitpid(pids[p], NULL, 0);
    *rate = (double)procs * takes / (hs_test_seconds() - t0);
    return (double)atomic_load(&res->cpu_ns) / ((double)procs * takes);
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    int procs = 2, takes = 200000, rounds = 5, opt;
    double ns[2][MAX_ROUNDS];
    hsd_ctl d = {0};
    hs_client *c = NULL;
    result *res =
        mmap(NULL, sizeof(result), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    while ((opt = getopt(argc, argv, "p:n:r:")) != -1) {
        if (opt == 'p')
            procs = atoi(optarg);
        else if (opt == 'n')
            takes = atoi(optarg);
        else if (opt == 'r')
            rounds = atoi(optarg);
        else {
            fprintf(stderr, "usage: takebench [-p PROCS] [-n TAKES] [-r ROUNDS]\n");
            return 2;
        }
    }
    if (procs < 1 || procs > 64 || rounds < 1 || rounds > MAX_ROUNDS || takes < 1) {
        fprintf(stderr, "takebench: -p 1..64, -r 1..%d, -n >= 1\n", MAX_ROUNDS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    hs_test_tmpdir("takebench", d.dir);
    hsd_ctl_flag(&d, "--order-capacity", "4194304");
    if (hsd_ctl_start(&d, &c) != 0) {
        hsd_ctl_kill(&d);
        return 1;
    }
    hs_put_sku(c, "gone", 4, 0, NULL);
    hs_put_sku(c, "many", 4, 1000000000, NULL);
    for (int r = 0; r < rounds; r++) {
        double rate_s, rate_d;

        ns[0][r] = run(d.dir, true, procs, takes, r, res, &rate_s);
        if (atomic_load(&res->bad) != 0)
            fprintf(stderr, "takebench: %lu sold-out attempts did not answer sold out\n",
                    (unsigned long)atomic_load(&res->bad));
        ns[1][r] = run(d.dir, false, procs, takes, r, res, &rate_d);
        if (atomic_load(&res->bad) != 0)
            fprintf(stderr, "takebench: %lu deductions failed\n",
                    (unsigned long)atomic_load(&res->bad));
        printf("round %d: sold out %.0f ns/take (%.0f/s), deduct %.0f ns/take (%.0f/s)\n", r + 1,
               ns[0][r], rate_s, ns[1][r], rate_d);
    }
    qsort(ns[0], rounds, sizeof(double), cmp);
    qsort(ns[1], rounds, sizeof(double), cmp);
    printf("median of %d rounds, %d processes: sold out %.0f ns/take, deduct %.0f ns/take\n",
           rounds, procs, ns[0][rounds / 2], ns[1][rounds / 2]);
    hs_detach(c);
    hsd_ctl_stop(&d);
    hs_test_rmrf(d.dir);
    return 0;
}
