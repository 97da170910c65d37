/*-------------------------------------------------------------------------
 *
 * client_check.h
 *      What the tests against a real hotstockd share: S() for a string and
 *      its length, CHECK_R (a result check that names both results),
 *      avail() (a SKU's units, -1 with the reason on stderr), and
 *      client_test_start() (the test's own daemon, started and attached).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_CLIENT_CHECK_H
#define HOTSTOCK_TESTS_CLIENT_CHECK_H

#include <string.h>

#include <signal.h>
#include <unistd.h>

#include "daemon_ctl.h"
#include "hotstock.h"
#include "test.h"

#define S(str) (str), strlen(str)

/* A result check that names both results. */
#define CHECK_R(expr, want)                                                                        \
    ({                                                                                             \
        hs_result got_ = (expr);                                                                   \
        bool ok_ = hs_test_check_(got_ == (want), __FILE__, __LINE__, #expr " == " #want);         \
        if (!ok_)                                                                                  \
            fprintf(stderr, "    got %s (%s)\n", hs_result_name(got_), hs_last_error());           \
        ok_;                                                                                       \
    })

static inline int64_t
avail(hs_client *c, const char *sku)
{
    int64_t a = -1;
    hs_result r = hs_available(c, S(sku), &a);

    if (r != HS_OK)
        fprintf(stderr, "hs_available(%s): %s (%s)\n", sku, hs_result_name(r), hs_last_error());
    return a;
}

/*
 * The test's own daemon: the binary there, a fresh directory named by tag,
 * --flush-interval-ms 20 and the extra flags (NULL-terminated name, value
 * pairs), started, *c attached.  false after a failed CHECK (the daemon,
 * if any, killed): the test then ends with hs_test_done().
 */
static inline bool
client_test_start(hsd_ctl *d, const char *tag, hs_client **c, const char *const flags[])
{
    signal(SIGPIPE, SIG_IGN);
    if (access(hsd_ctl_binary(), X_OK) != 0) {
        fprintf(stderr, "no daemon binary at %s (set HOTSTOCKD)\n", hsd_ctl_binary());
        CHECK(0);
        return false;
    }
    hs_test_tmpdir(tag, d->dir);
    hsd_ctl_flag(d, "--flush-interval-ms", "20");
    for (int i = 0; flags != NULL && flags[i] != NULL; i += 2)
        hsd_ctl_flag(d, flags[i], flags[i + 1]);
    if (!CHECK_EQ(hsd_ctl_start(d, c), 0)) {
        hsd_ctl_kill(d);
        return false;
    }
    return true;
}

#endif /* HOTSTOCK_TESTS_CLIENT_CHECK_H */
