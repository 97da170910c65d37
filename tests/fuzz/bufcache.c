/*-------------------------------------------------------------------------
 *
 * bufcache.c
 *      A tiny free list of 1 MiB blocks for the fuzz build of the queue
 *      reader (see bufcache.h for why).
 *
 * Single-threaded, like the fuzz target: libFuzzer runs inputs on one
 * thread, and nothing else calls into queue_file.c.
 *
 *-------------------------------------------------------------------------
 */
#include <malloc.h>
#include <stdlib.h>

#define BUFCACHE_BLOCK (1024 * 1024) /* QF_READ_BUF_SIZE in queue_file.c */
#define BUFCACHE_KEEP 8

static void *pool[BUFCACHE_KEEP];
static int pooled;

/* Like malloc(3); a 1 MiB request may get a recycled block (contents
 * unspecified, as from malloc). */
void *
fuzz_bufcache_malloc(size_t n)
{
    if (n == BUFCACHE_BLOCK && pooled > 0)
        return pool[--pooled];
    return malloc(n);
}

/* Like free(3); keeps up to BUFCACHE_KEEP blocks of exactly 1 MiB. */
void
fuzz_bufcache_free(void *p)
{
    if (p != NULL && pooled < BUFCACHE_KEEP && malloc_usable_size(p) == BUFCACHE_BLOCK) {
        pool[pooled++] = p;
        return;
    }
    free(p);
}
