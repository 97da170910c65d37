/*-------------------------------------------------------------------------
 *
 * log.c
 *      hotstockd's log: timestamped lines to DIR/hotstockd.log, or to stderr
 *      in the foreground.
 *
 * Shared by every thread of the daemon.  The sink is chosen before the
 * threads start (hsd_log_open / hsd_log_to_stderr) and not changed after;
 * each line is formatted into a local buffer and written with a single
 * write(2) on an O_APPEND descriptor, so lines of different threads never
 * interleave and no lock is needed.  Format, as PostgreSQL's default:
 *
 *     2025-01-31 12:00:00.123 UTC [4242] LOG:  message
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define HSD_LOG_LINE_MAX 2048

static int hsd_log_fd_ = STDERR_FILENO; /* set before threads start */
static bool hsd_log_echo = false;       /* idem */

static const char *const hsd_level_names[] = {
    [HSD_LOG] = "LOG",
    [HSD_WARNING] = "WARNING",
    [HSD_ERROR] = "ERROR",
    [HSD_FATAL] = "FATAL",
};

int
hsd_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0)
        return -1;
    if (hsd_log_fd_ != STDERR_FILENO)
        close(hsd_log_fd_);
    hsd_log_fd_ = fd;
    return 0;
}

void
hsd_log_to_stderr(void)
{
    if (hsd_log_fd_ != STDERR_FILENO)
        close(hsd_log_fd_);
    hsd_log_fd_ = STDERR_FILENO;
}

void
hsd_log_echo_errors(bool on)
{
    hsd_log_echo = on;
}

int
hsd_log_fd(void)
{
    return hsd_log_fd_;
}

static void
hsd_vlog(hsd_log_level level, const char *fmt, va_list ap)
{
    char line[HSD_LOG_LINE_MAX];
    char msg[HSD_LOG_LINE_MAX - 64];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int saved_errno = errno;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03d UTC [%d] %s:  %s\n",
                          (int)(tv.tv_usec / 1000), (int)getpid(), hsd_level_names[level], msg);
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    (void)hs_write_all(hsd_log_fd_, line, n);
    if (hsd_log_echo && level >= HSD_ERROR && hsd_log_fd_ != STDERR_FILENO) {
        char echo[HSD_LOG_LINE_MAX];
        int m = snprintf(echo, sizeof(echo), "hotstockd: %s\n", msg);
        if (m > 0)
            (void)hs_write_all(STDERR_FILENO, echo,
                               (size_t)m < sizeof(echo) ? (size_t)m : sizeof(echo) - 1);
    }
    errno = saved_errno;
}

void
hsd_log(hsd_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hsd_vlog(level, fmt, ap);
    va_end(ap);
}

void
hsd_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hsd_vlog(HSD_FATAL, fmt, ap);
    va_end(ap);
    abort();
}
