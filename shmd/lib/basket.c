/*-------------------------------------------------------------------------
 *
 * basket.c
 *      Baskets: hs_deduct_basket() takes every line or none.
 *
 * Against other buyers: the basket's SKUs are locked together (the lock
 * bit of `available` and the slot's locker word, see counter.c) while the
 * lines are checked and taken.  Against a crash: the lines go to the
 * queue as one group of consecutive LSNs (ring.c, append_group()), which
 * the spiller and a recovering daemon write whole or as NOOPs only.
 *
 * Line i of an n-line basket B is the order "B" 0x1f "iinn" in the index,
 * with its own state machine (deduct.c's); line 0 is claimed first and
 * serialises two callers of the same basket.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

/* See hotstock.h. */
size_t
hs_basket_line_id(const char *order_id, size_t order_len, int i, int n, char *out)
{
    if (order_len > HS_BASKET_ID_MAX)
        order_len = HS_BASKET_ID_MAX;
    memcpy(out, order_id, order_len);
    out[order_len] = HS_BASKET_SEP;
    out[order_len + 1] = (char)('0' + (i / 10) % 10);
    out[order_len + 2] = (char)('0' + i % 10);
    out[order_len + 3] = (char)('0' + (n / 10) % 10);
    out[order_len + 4] = (char)('0' + n % 10);
    out[order_len + 5] = '\0';
    return order_len + 5;
}

/* See hotstock.h. */
hs_result
hs_basket_find(hs_client *c, const char *order_id, size_t order_len, int *n)
{
    char id[HS_ORDER_ID_MAX + 1];

    *n = 0;
    if (c == NULL || !valid_len(order_id, order_len, HS_BASKET_ID_MAX)) {
        hs_set_error("hs_basket_find: the basket id must be 1..%d bytes", HS_BASKET_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    for (int k = 1; k <= HS_BASKET_MAX; k++) {
        hs_order_status_code st;
        size_t len = hs_basket_line_id(order_id, order_len, 0, k, id);
        hs_result r = hs_order_status(c, id, len, &st, NULL, NULL);

        if (r == HS_OK) {
            *n = k;
            return HS_OK;
        }
        if (r != HS_NOT_FOUND)
            return r;
    }
    hs_set_error("no basket %.*s in the order index", (int)order_len, order_id);
    return HS_NOT_FOUND;
}

/* PLACEHOLDER (branch only): replaced by the real take before this lands. */
hs_result
hs_deduct_basket(hs_client *c, const char *order_id, size_t order_len, int n,
                 const char *const skus[], const size_t sku_lens[], const int32_t qtys[],
                 uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn)
{
    (void)c; (void)order_id; (void)order_len; (void)n; (void)skus; (void)sku_lens; (void)qtys;
    (void)xid; (void)evicted_checked; (void)lsn;
    hs_set_error("hs_deduct_basket: not built yet");
    return HS_BAD_ARGUMENT;
}
