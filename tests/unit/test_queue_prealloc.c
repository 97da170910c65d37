/*-------------------------------------------------------------------------
 *
 * test_queue_prealloc.c
 *      Unit tests of the queue files' preallocated space (shmd/format/,
 *      queue_file.c PREALLOCATED SPACE): what a writer that dies leaves,
 *      and how the scan, the reader and the next writer take it.
 *
 *-------------------------------------------------------------------------
 */
#include "queue_test_util.h"

/*-------------------------------------------------------------------------
 * Preallocated space: a writer that dies leaves zeros after its records;
 * the scan, the reader and the next writer take them as the end
 *-------------------------------------------------------------------------
 */

static void
test_prealloc(void)
{
    char dir[256], path[4200], second[4200];
    hs_qf_scan_result res;
    hs_qf_file *files;
    long long end;
    int n;

    hs_test_tmpdir("qf-prealloc", dir);
    queue_path(dir, 1, path);

    /* 100 records, and space allocated past them up to the segment's end */
    CHECK(write_records_and_die(dir, 0, 100, 1 << 20));
    end = rec_offset(1, 101);
    CHECK(hs_test_file_size(path) > end);
    CHECK_EQ(hs_test_file_size(path), 1 << 20);
    /* the scan ends there cleanly and cuts nothing; the reader reads them */
    CHECK(scan_ok(dir, 1, 100, &res));
    CHECK(!res.tail_cut);
    CHECK_EQ(hs_test_file_size(path), 1 << 20);
    CHECK(read_ok(dir, 1, 100));
    /* the next writer writes into the space, and its close cuts the rest */
    CHECK(write_records(dir, 100, 150, 1 << 20));
    CHECK_EQ(hs_test_file_size(path), rec_offset(1, 151));
    CHECK(scan_ok(dir, 1, 150, NULL));
    CHECK(read_ok(dir, 1, 150));

    /* never past the segment's end (it rotates there) */
    hs_test_rmrf(dir);
    hs_test_tmpdir("qf-prealloc", dir);
    queue_path(dir, 1, path);
    CHECK(write_records_and_die(dir, 0, 10, 4096));
    CHECK_EQ(hs_test_file_size(path), 4096);

    /* rotation: the file before the new one is cut to its records, so
     * only the newest has space after them */
    CHECK(write_records_and_die(dir, 10, 200, 4096));
    n = hs_qf_list(dir, &files);
    CHECK(n >= 3);
    for (int i = 0; i + 1 < n; i++)
        CHECK_EQ(hs_test_file_size(files[i].path),
                 rec_offset(files[i].first_lsn, files[i + 1].first_lsn));
    CHECK(hs_test_file_size(files[n - 1].path) > rec_offset(files[n - 1].first_lsn, 201));
    CHECK(scan_ok(dir, 1, 200, NULL));
    CHECK(read_ok(dir, 1, 200));

    /* zeros after the records of a file that is not the newest: refused
     * by the scan and by a reader that starts in the file after it,
     * naming the file, the offset and the LSN expected there */
    if (n >= 3) {
        char want[128];
        long long size = hs_test_file_size(files[n - 2].path);
        uint8_t zeros[64] = {0};
        snprintf(second, sizeof(second), "%s", files[n - 2].path);
        CHECK_EQ(hs_test_pwrite(second, size, zeros, sizeof(zeros)), 0);
        CHECK_EQ(hs_qf_scan(dir, 1, true, NULL, NULL, &res), -1);
        CHECK_CONTAINS(hs_last_error(), second);
        snprintf(want, sizeof(want), "zeroed bytes at offset %lld", size);
        CHECK_CONTAINS(hs_last_error(), want);
        CHECK_CONTAINS(hs_last_error(), "not the newest");
        snprintf(want, sizeof(want), "expected LSN %" PRIu64, files[n - 1].first_lsn);
        CHECK_CONTAINS(hs_last_error(), want);
        {
            hs_queue_reader *r;
            CHECK_EQ(hs_queue_open(dir, files[n - 1].first_lsn, &r), HS_IO_ERROR);
            CHECK_CONTAINS(hs_last_error(), second);
            CHECK_CONTAINS(hs_last_error(), "zeroed bytes");
        }
        CHECK_EQ(hs_test_file_size(second), size + 64);
    }
    free(files);
    hs_test_rmrf(dir);
}

int
main(void)
{
    test_prealloc();
    return hs_test_done();
}
