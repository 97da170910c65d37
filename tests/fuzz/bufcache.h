/*-------------------------------------------------------------------------
 *
 * bufcache.h
 *      Forced into the shmd/format/queue_*.c files (clang -include) in the fuzz build
 *      only: its malloc/free go through bufcache.c.
 *
 * The queue reader allocates a 1 MiB read window per scan and per reader.
 * Under AddressSanitizer every such block is a fresh mmap whose shadow is
 * poisoned and released again, which made each fuzz execution cost ~8 ms
 * of kernel time.  bufcache.c keeps a few freed 1 MiB blocks for reuse;
 * every block still comes from ASan's malloc, with its redzones, so reads
 * past the end of a window are caught as before.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_FUZZ_BUFCACHE_H
#define HOTSTOCK_FUZZ_BUFCACHE_H

#include <stdlib.h>

void *fuzz_bufcache_malloc(size_t n);
void fuzz_bufcache_free(void *p);

#define malloc(n) fuzz_bufcache_malloc(n)
#define free(p) fuzz_bufcache_free(p)

#endif /* HOTSTOCK_FUZZ_BUFCACHE_H */
