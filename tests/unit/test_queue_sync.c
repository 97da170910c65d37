/*-------------------------------------------------------------------------
 *
 * test_queue_sync.c
 *      Unit test of hs_queue_sync() (shmd/format/queue_reader.c), the
 *      drain's durable bound while the daemon is down, against a daemon
 *      that starts and writes during its fdatasync.
 *
 *-------------------------------------------------------------------------
 */
#include "queue_test_util.h"

/*
 * fdatasync(2), wrapped for this program (Makefile: -Wl,--wrap=fdatasync).
 * Armed, it first writes gen_rec(from .. to) into the newest file of dir
 * without syncing them, as a daemon that has just started would while the
 * drain's hs_queue_sync() runs, then syncs.
 */
int __real_fdatasync(int fd);
static struct {
    bool armed;
    const char *dir;
    hs_lsn from, to;
} sync_hook;

int
__wrap_fdatasync(int fd)
{
    if (sync_hook.armed) {
        hs_qf_writer *w = hs_qf_writer_open(sync_hook.dir, sync_hook.from - 1, 1 << 20);
        hs_record r;

        sync_hook.armed = false;
        for (hs_lsn l = sync_hook.from; w != NULL && l <= sync_hook.to; l++) {
            gen_rec(l, &r);
            if (hs_qf_writer_append(w, &r) != 0)
                break;
        }
        if (w == NULL || hs_qf_writer_write(w) != 0)
            fprintf(stderr, "sync hook: %s\n", hs_last_error());
        hs_qf_writer_close(w);
    }
    return __real_fdatasync(fd);
}

/*
 * hs_queue_sync() while a daemon that just started writes records into the
 * newest file's preallocated zeros: what it counts must have been there
 * before it synced, never records written during its fdatasync.
 */
static void
test_sync_while_written(void)
{
    char dir[256];
    hs_queue_reader *r;
    hs_lsn durable;

    hs_test_tmpdir("qr-sync", dir);
    CHECK(write_records_and_die(dir, 0, 100, 1 << 20));
    if (!CHECK_EQ(hs_queue_open(dir, 1, &r), HS_OK))
        return;
    sync_hook.dir = dir;
    sync_hook.from = 101;
    sync_hook.to = 150;
    sync_hook.armed = true;
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK(!sync_hook.armed); /* the hook ran */
    CHECK_EQ(durable, 100);
    /* once synced, they count */
    CHECK_EQ(hs_queue_sync(r, &durable), HS_OK);
    CHECK_EQ(durable, 150);
    hs_queue_close(r);
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_sync_while_written();
    return hs_test_done();
}
