/*-------------------------------------------------------------------------
 *
 * syncprobe.c
 *      What one small write plus fdatasync costs on this disk, three ways:
 *      appended to a growing file, overwriting a file written in full
 *      before (PostgreSQL's pre-zeroed WAL segments, and pg_test_fsync),
 *      and into a posix_fallocate'd file (hotstockd's queue files, which
 *      its writer allocates ahead of their records).
 *
 * Design note: the bench's single-client rows compare a synchronous deduct
 * (one fdatasync of the spiller's write) with PostgreSQL's own commit (one
 * fdatasync of a WAL overwrite).  An append grows the file, so its
 * fdatasync must also make the new size durable (on ext4 a journal commit);
 * an overwrite, or a write into allocated space, flushes data only.  This
 * program measures the three on the disk under DIR, for machine.txt.
 *
 *   syncprobe DIR [N]
 *
 * N writes of 512 bytes (default 1000) per way, each followed by fdatasync,
 * in a scratch file DIR/syncprobe.tmp (removed).  Prints key=value lines:
 * append_us, overwrite_us, fallocate_us (mean microseconds per
 * write + fdatasync).  Exit 1 on an I/O error, naming the call.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROBE_WRITE 512

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
fail(const char *what, const char *path)
{
    fprintf(stderr, "syncprobe: %s %s: %s\n", what, path, strerror(errno));
    return -1;
}

/* Mean microseconds per write + fdatasync, or -1.  way: 0 append, 1
 * overwrite of a file written and synced in full first, 2 into a
 * posix_fallocate'd file. */
static double
probe(const char *path, int way, int n)
{
    char buf[PROBE_WRITE];
    off_t size = (off_t)n * PROBE_WRITE;
    double t0;
    int fd;

    memset(buf, 'x', sizeof(buf));
    (void)unlink(path);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (way == 0 ? O_APPEND : 0), 0600);
    if (fd < 0)
        return fail("cannot create", path);
    if (way == 1) {
        char zero[8192];

        memset(zero, 0, sizeof(zero));
        for (off_t off = 0; off < size; off += (off_t)sizeof(zero))
            if (pwrite(fd, zero, sizeof(zero), off) != (ssize_t)sizeof(zero))
                return fail("cannot zero-fill", path);
        if (fsync(fd) != 0)
            return fail("cannot fsync", path);
    } else if (way == 2) {
        int err = posix_fallocate(fd, 0, size);

        if (err != 0) {
            errno = err;
            return fail("cannot posix_fallocate", path);
        }
        if (fsync(fd) != 0)
            return fail("cannot fsync", path);
    }
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        ssize_t w = way == 0 ? write(fd, buf, sizeof(buf))
                             : pwrite(fd, buf, sizeof(buf), (off_t)i * PROBE_WRITE);

        if (w != (ssize_t)sizeof(buf))
            return fail("cannot write", path);
        if (fdatasync(fd) != 0)
            return fail("cannot fdatasync", path);
    }
    t0 = (now_s() - t0) / n * 1e6;
    close(fd);
    (void)unlink(path);
    return t0;
}

int
main(int argc, char **argv)
{
    static const char *const names[3] = {"append_us", "overwrite_us", "fallocate_us"};
    char path[PATH_MAX];
    int n = argc > 2 ? atoi(argv[2]) : 1000;

    if (argc < 2 || argc > 3 || n <= 0) {
        fprintf(stderr, "usage: syncprobe DIR [N]\n");
        return 2;
    }
    if (snprintf(path, sizeof(path), "%s/syncprobe.tmp", argv[1]) >= (int)sizeof(path)) {
        fprintf(stderr, "syncprobe: directory name too long: %s\n", argv[1]);
        return 2;
    }
    for (int way = 0; way < 3; way++) {
        double us = probe(path, way, n);

        if (us < 0) {
            (void)unlink(path);
            return 1;
        }
        printf("%s=%.0f\n", names[way], us);
    }
    return 0;
}
