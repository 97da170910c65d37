/*-------------------------------------------------------------------------
 *
 * test.h
 *      The tiny harness of hotstock's C tests.
 *
 * Every CHECK counts one pass or one failure; a failure prints file:line,
 * the condition and (for the _EQ forms) both values to stderr, and the test
 * goes on.  main() ends with `return hs_test_done();`, which prints exactly
 * "N passed, N failed" on stdout and returns non-zero on any failure, the
 * line tests/run_unit.sh sums.  A check inside a loop of a million rounds
 * should be a single CHECK of an accumulated result, so counts stay
 * meaningful.
 *
 * Also: temporary directories removed at the end, and small file helpers.
 * Single-threaded use only (the counters are plain ints).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TEST_H
#define HOTSTOCK_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int hs_test_passed_;
static int hs_test_failed_;

static inline bool
hs_test_check_(bool ok, const char *file, int line, const char *what)
{
    if (ok) {
        hs_test_passed_++;
    } else {
        hs_test_failed_++;
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what);
    }
    return ok;
}

/* CHECK(cond): evaluates to cond, so a test can stop a branch on failure. */
#define CHECK(cond) hs_test_check_(!!(cond), __FILE__, __LINE__, #cond)

/* CHECK_EQ(a, b): integer equality, printing both values on failure. */
#define CHECK_EQ(a, b)                                                                             \
    ({                                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        bool ok_ = hs_test_check_(a_ == b_, __FILE__, __LINE__, #a " == " #b);                     \
        if (!ok_)                                                                                  \
            fprintf(stderr, "    %lld != %lld\n", a_, b_);                                         \
        ok_;                                                                                       \
    })

/* CHECK_CONTAINS(text, part): text contains part (e.g. an error message). */
#define CHECK_CONTAINS(text, part)                                                                 \
    ({                                                                                             \
        const char *t_ = (text), *p_ = (part);                                                     \
        bool ok_ = hs_test_check_(t_ != NULL && strstr(t_, p_) != NULL, __FILE__, __LINE__,        \
                                  #text " contains \"" #part "\"");                                \
        if (!ok_)                                                                                  \
            fprintf(stderr, "    text: %s\n    part: %s\n", t_ ? t_ : "(null)", p_);               \
        ok_;                                                                                       \
    })

/* Print the final line and return main()'s exit status. */
static inline int
hs_test_done(void)
{
    printf("%d passed, %d failed\n", hs_test_passed_, hs_test_failed_);
    fflush(stdout);
    return hs_test_failed_ ? 1 : 0;
}

/* A pid that is certainly gone: a child that exited and was reaped. */
static inline pid_t
hs_test_gone_pid(void)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

/* Seconds on the monotonic clock, for measurements. */
static inline double
hs_test_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: reproducible pseudo-random numbers from a seed. */
static inline uint64_t
hs_test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

static inline int
hs_test_rm_one_(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf path (no error if absent). */
static inline void
hs_test_rmrf(const char *path)
{
    nftw(path, hs_test_rm_one_, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make a fresh directory under $TMPDIR (or /tmp) named after tag, into out
 * (at least 256 bytes).  Exits on failure: a test without one is void. */
static inline void
hs_test_tmpdir(const char *tag, char *out)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, 256, "%s/hs-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (mkdtemp(out) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", out, strerror(errno));
        exit(2);
    }
}

/* Size of a file, -1 if absent. */
static inline long long
hs_test_file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* Write len bytes at offset (O_CREAT; does not truncate).  0 / -1. */
static inline int
hs_test_pwrite(const char *path, long long offset, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = pwrite(fd, data, len, (off_t)offset);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* Read len bytes at offset.  0 / -1. */
static inline int
hs_test_pread(const char *path, long long offset, void *data, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, data, len, (off_t)offset);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* XOR one bit of a file in place.  0 / -1. */
static inline int
hs_test_flip_bit(const char *path, long long offset, int bit)
{
    unsigned char c;
    if (hs_test_pread(path, offset, &c, 1) != 0)
        return -1;
    c ^= (unsigned char)(1u << bit);
    return hs_test_pwrite(path, offset, &c, 1);
}

/* Copy a file (small files: tests).  0 / -1. */
static inline int
hs_test_copy_file(const char *from, const char *to)
{
    long long size = hs_test_file_size(from);
    int rc = -1;
    if (size < 0)
        return -1;
    char *buf = malloc((size_t)size + 1);
    if (buf != NULL && hs_test_pread(from, 0, buf, (size_t)size) == 0) {
        unlink(to);
        rc = hs_test_pwrite(to, 0, buf, (size_t)size);
    }
    free(buf);
    return rc;
}

#endif /* HOTSTOCK_TEST_H */
