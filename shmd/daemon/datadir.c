/*-------------------------------------------------------------------------
 *
 * datadir.c
 *      The data directory, its lock file and its pid file.
 *
 * Shares with other processes: DIR/hotstockd.lock (flock: one daemon per
 * directory; the holder writes its pid into it) and DIR/hotstockd.pid.
 * Readers (status, stop, a second start) only read them and test the
 * lock.  Below both control.c and lifecycle.c; calls no other room of
 * the daemon but the log.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

/*-------------------------------------------------------------------------
 * Data directory, lock and pid files
 *-------------------------------------------------------------------------
 */
int
hsd_check_dir(const char *dir, char *real, bool need_write)
{
    struct stat st;

    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            fprintf(stderr, "hotstockd: data directory %s does not exist\n", dir);
        else
            fprintf(stderr, "hotstockd: cannot access data directory %s: %s\n", dir,
                    strerror(errno));
        return HSD_EXIT_USAGE;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "hotstockd: data directory %s is not a directory\n", dir);
        return HSD_EXIT_USAGE;
    }
    if (realpath(dir, real) == NULL) {
        fprintf(stderr, "hotstockd: cannot resolve data directory %s: %s\n", dir, strerror(errno));
        return HSD_EXIT_USAGE;
    }
    if (strlen(real) >= sizeof(((hs_header *)0)->data_dir)) {
        fprintf(stderr, "hotstockd: data directory path %s is longer than %zu bytes\n", real,
                sizeof(((hs_header *)0)->data_dir) - 1);
        return HSD_EXIT_USAGE;
    }
    if (need_write && access(real, W_OK | X_OK) != 0) {
        fprintf(stderr, "hotstockd: data directory %s is not writable: %s\n", real,
                strerror(errno));
        return HSD_EXIT_USAGE;
    }
    return 0;
}

/* out = dir/file.  Data directory paths are shorter than 256 bytes
 * (hsd_check_dir), so every buffer of PATH_MAX + 32 bytes holds it. */
void
hsd_path(char *out, size_t outlen, const char *dir, const char *file)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, file) >= outlen)
        out[0] = '\0';
}

/* The pid written in a file, or 0. */
static pid_t
hsd_read_pid_file(const char *path)
{
    char buf[32];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (pid_t)strtol(buf, NULL, 10);
}

pid_t
hsd_read_pid(const char *real_dir)
{
    char path[PATH_MAX + 32];
    pid_t pid;

    hsd_path(path, sizeof(path), real_dir, HSD_PID_FILE);
    pid = hsd_read_pid_file(path);
    if (pid > 0)
        return pid;
    hsd_path(path, sizeof(path), real_dir, HSD_LOCK_FILE);
    return hsd_read_pid_file(path);
}

int
hsd_lock_held(const char *real_dir)
{
    char path[PATH_MAX + 32];
    int fd, rc;

    hsd_path(path, sizeof(path), real_dir, HSD_LOCK_FILE);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        rc = 0;
        flock(fd, LOCK_UN);
    } else {
        rc = errno == EWOULDBLOCK ? 1 : -1;
    }
    close(fd);
    return rc;
}

/* Replace the content of fd (the lock file) or of path with our pid.  The
 * lock file is rewritten in place, then cut, so a reader never sees it
 * empty. */
int
hsd_write_pid(int fd, const char *path)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    int own = -1, rc = 0;

    if (fd < 0) {
        own = fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
    }
    if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) != 0)
        rc = -1;
    if (own >= 0)
        close(own);
    return rc;
}
