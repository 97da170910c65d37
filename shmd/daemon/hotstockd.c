/*-------------------------------------------------------------------------
 *
 * hotstockd.c
 *      main() of hotstockd, the hotstock daemon: parse the command line and
 *      dispatch.  Nothing else lives here (the unit tests link every other
 *      daemon object).
 *
 * The daemon owns one data directory's shared-memory segment, spills its
 * write-ahead ring to the queue files with group commit, checkpoints,
 * recovers and answers the control socket; README.md beside this file is
 * its design note.  It allocates with jemalloc (linked with -ljemalloc, so
 * jemalloc replaces malloc for the whole process; `status` reports its
 * stats.allocated), and uses liburcu's wait-free queue for requests to the
 * spiller (spiller.c says why).
 *
 * Nothing here is shared: main() runs before any thread exists.
 *
 *-------------------------------------------------------------------------
 */
#include "daemon.h"

int
main(int argc, char **argv)
{
    hsd_cli cli;
    int rc = hsd_cli_parse(argc, argv, &cli);

    if (rc >= 0)
        return rc;
    switch (cli.command) {
    case HSD_CMD_START:
        return hsd_start(&cli);
    case HSD_CMD_STOP:
        return hsd_cli_stop(&cli);
    case HSD_CMD_STATUS:
        return hsd_cli_status(&cli);
    case HSD_CMD_CHECKPOINT:
        return hsd_cli_checkpoint(&cli);
    default:
        hsd_usage(stderr);
        return HSD_EXIT_USAGE;
    }
}
