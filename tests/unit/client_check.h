/*-------------------------------------------------------------------------
 *
 * client_check.h
 *      What the tests against a real hotstockd share: S() for a string and
 *      its length, CHECK_R (a result check that names both results), and
 *      avail() (a SKU's units, -1 with the reason on stderr).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_CLIENT_CHECK_H
#define HOTSTOCK_TESTS_CLIENT_CHECK_H

#include <string.h>

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

#endif /* HOTSTOCK_TESTS_CLIENT_CHECK_H */
