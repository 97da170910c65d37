/*-------------------------------------------------------------------------
 *
 * forge.h
 *      Forge a slot's state word in a mapped segment, as if a process had
 *      made the change and died (the dead-owner tests of test_client.c and
 *      test_holds.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_FORGE_H
#define HOTSTOCK_TESTS_FORGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "segment.h"

/* CAS *state from a word in state `from` to `to`; false if it was in
 * another state (or moved meanwhile). */
static inline bool
forge(_Atomic uint64_t *state, unsigned from, uint64_t to)
{
    uint64_t w = atomic_load(state);

    if (HS_STATE_OF(w) != from)
        return false;
    return atomic_compare_exchange_strong(state, &w, to);
}

#endif /* HOTSTOCK_TESTS_FORGE_H */
