/*-------------------------------------------------------------------------
 *
 * daemon_ctl.h
 *      Start, stop, kill and wait for a real hotstockd from a C test.
 *
 * The daemon runs in the foreground as a child of the test, so the test
 * knows its pid, can SIGKILL/SIGSTOP it and reaps it at once (a zombie
 * would still look alive to kill(pid, 0)).  Its output goes to
 * DIR/daemon.out.  The binary is $HOTSTOCKD, else ./shmd/hotstockd.
 *
 * Every wait here polls a state with a bound; none sleeps a fixed time.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_DAEMON_CTL_H
#define HOTSTOCK_TESTS_DAEMON_CTL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hotstock.h"

#define HSD_CTL_MAX_FLAGS 24

typedef struct hsd_ctl {
    char dir[512];
    const char *flags[HSD_CTL_MAX_FLAGS]; /* extra "--flag", "value" pairs */
    int nflags;
    pid_t pid; /* 0 when not running */
} hsd_ctl;

static inline const char *
hsd_ctl_binary(void)
{
    const char *b = getenv("HOTSTOCKD");
    return b && *b ? b : "./shmd/hotstockd";
}

static inline double
hsd_ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void
hsd_ctl_nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Add "--name value" to the command line of later starts. */
static inline void
hsd_ctl_flag(hsd_ctl *d, const char *name, const char *value)
{
    if (d->nflags + 2 <= HSD_CTL_MAX_FLAGS) {
        d->flags[d->nflags++] = name;
        d->flags[d->nflags++] = value;
    }
}

/* fork+exec `hotstockd start -D dir --foreground flags...`.  0, or -1. */
static inline int
hsd_ctl_spawn(hsd_ctl *d)
{
    const char *argv[HSD_CTL_MAX_FLAGS + 8];
    char out[600];
    int n = 0;
    pid_t pid;

    argv[n++] = hsd_ctl_binary();
    argv[n++] = "start";
    argv[n++] = "-D";
    argv[n++] = d->dir;
    argv[n++] = "--foreground";
    for (int i = 0; i < d->nflags; i++)
        argv[n++] = d->flags[i];
    argv[n] = NULL;
    snprintf(out, sizeof(out), "%s/daemon.out", d->dir);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    return 0;
}

/* Has our daemon child exited?  Reaps it if so. */
static inline bool
hsd_ctl_exited(hsd_ctl *d)
{
    int status;

    if (d->pid <= 0)
        return true;
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
        d->pid = 0;
        return true;
    }
    return false;
}

/* Copy the last lines of DIR/daemon.out to stderr. */
static inline void
hsd_ctl_show_output(const hsd_ctl *d)
{
    char path[600], buf[4096];
    FILE *f;
    long size;

    snprintf(path, sizeof(path), "%s/daemon.out", d->dir);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
    size = (long)fread(buf, 1, sizeof(buf) - 1, f);
    buf[size > 0 ? size : 0] = '\0';
    fclose(f);
    fprintf(stderr, "--- %s (tail) ---\n%s--- end ---\n", path, buf);
}

/* Poll hs_attach() until it works (a fresh handle in *out, or detached at
 * once when out is NULL), at most timeout_s.  0, or -1 (message on stderr,
 * with the tail of daemon.out). */
static inline int
hsd_ctl_wait_ready(hsd_ctl *d, double timeout_s, hs_client **out)
{
    double end = hsd_ctl_now() + timeout_s;
    hs_client *c = NULL;
    hs_result r = HS_DAEMON_DOWN;

    while (hsd_ctl_now() < end) {
        r = hs_attach(d->dir, &c);
        if (r == HS_OK) {
            /* The segment of the daemon we started, not one left behind by
             * a killed predecessor that is still being salvaged. */
            hs_status st;
            if (d->pid > 0 && (hs_get_status(c, &st) != HS_OK || st.daemon_pid != d->pid)) {
                hs_detach(c);
                c = NULL;
                r = HS_DAEMON_DOWN;
                if (hsd_ctl_exited(d))
                    break;
                hsd_ctl_nap_ms(20);
                continue;
            }
            if (out != NULL)
                *out = c;
            else
                hs_detach(c);
            return 0;
        }
        if (hsd_ctl_exited(d))
            break;
        hsd_ctl_nap_ms(20);
    }
    fprintf(stderr, "hotstockd in %s not ready after %.0f s (%s: %s)\n", d->dir, timeout_s,
            hs_result_name(r), hs_last_error());
    hsd_ctl_show_output(d);
    return -1;
}

/* Start and wait until it serves.  0, or -1. */
static inline int
hsd_ctl_start(hsd_ctl *d, hs_client **out)
{
    if (hsd_ctl_spawn(d) != 0)
        return -1;
    return hsd_ctl_wait_ready(d, 30, out);
}

/* Wait (bounded) for our child to exit.  0, or -1 when it did not. */
static inline int
hsd_ctl_reap(hsd_ctl *d, double timeout_s)
{
    double end = hsd_ctl_now() + timeout_s;

    while (!hsd_ctl_exited(d)) {
        if (hsd_ctl_now() > end)
            return -1;
        hsd_ctl_nap_ms(5);
    }
    return 0;
}

/* Run `hotstockd <command> -D dir` (output to DIR/daemon.out), wait for it
 * at most timeout_s.  Its exit status, or -1. */
static inline int
hsd_ctl_command(hsd_ctl *d, const char *command, double timeout_s)
{
    char out[600];
    double end = hsd_ctl_now() + timeout_s;
    int status = 0;
    pid_t pid, got;

    snprintf(out, sizeof(out), "%s/daemon.out", d->dir);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(hsd_ctl_binary(), hsd_ctl_binary(), command, "-D", d->dir, (char *)NULL);
        _exit(127);
    }
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && hsd_ctl_now() < end)
        hsd_ctl_nap_ms(5);
    if (got != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* `hotstockd stop -D dir`, then wait for the child to exit.  A daemon that
 * does not exit within 60 s is killed and -1 returned. */
static inline int
hsd_ctl_stop(hsd_ctl *d)
{
    int rc;

    if (d->pid <= 0)
        return 0;
    rc = hsd_ctl_command(d, "stop", 60);
    if (hsd_ctl_reap(d, 60) != 0) {
        fprintf(stderr, "hotstockd %d did not stop (stop exit %d): killing it\n", (int)d->pid, rc);
        kill(d->pid, SIGKILL);
        hsd_ctl_reap(d, 10);
        return -1;
    }
    if (rc != 0)
        fprintf(stderr, "hotstockd stop -D %s exited with %d\n", d->dir, rc);
    return rc == 0 ? 0 : -1;
}

/* SIGSTOP, and wait until every thread of it has stopped (a signal is
 * delivered asynchronously: the spiller could still run for a moment).
 * 0, or -1 when it did not stop within 5 s. */
static inline int
hsd_ctl_pause(hsd_ctl *d)
{
    double end = hsd_ctl_now() + 5;
    int status;

    if (d->pid <= 0 || kill(d->pid, SIGSTOP) != 0)
        return -1;
    while (hsd_ctl_now() < end) {
        pid_t got = waitpid(d->pid, &status, WNOHANG | WUNTRACED);
        if (got == d->pid && WIFSTOPPED(status))
            return 0;
        if (got == d->pid) { /* exited */
            d->pid = 0;
            return -1;
        }
        hsd_ctl_nap_ms(1);
    }
    return -1;
}

static inline void
hsd_ctl_resume(hsd_ctl *d)
{
    if (d->pid > 0)
        kill(d->pid, SIGCONT);
}

/* SIGKILL and reap. */
static inline void
hsd_ctl_kill(hsd_ctl *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    hsd_ctl_reap(d, 10);
}

#endif /* HOTSTOCK_TESTS_DAEMON_CTL_H */
