/*-------------------------------------------------------------------------
 *
 * module.c
 *      Module init: load checks, GUCs, shared memory, callbacks, the drain.
 *
 * Owns _PG_init and the shared-memory hooks that allocate
 * HotstockDrainShared (see hotstock_ext.h) and starts.c's struct.  Runs in the postmaster while
 * preloading; shares nothing at run time.
 *
 * The top of the extension's call graph: it calls guc.c, xact.c, starts.c and
 * drain.c, and nothing calls it.  Must not hold any logic of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

PG_MODULE_MAGIC;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void _PG_init(void);
static void hotstock_shmem_request(void);
static void hotstock_shmem_startup(void);

/*
 * Module load callback.  Refuses unless preloaded: the drain worker and
 * the shared memory can only be set up by the postmaster.
 */
void
_PG_init(void)
{
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock must be loaded via shared_preload_libraries"),
                        errhint("Add hotstock to shared_preload_libraries in postgresql.conf and "
                                "restart the server.")));

    hotstock_define_gucs();

    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = hotstock_shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = hotstock_shmem_startup;

    RegisterXactCallback(hotstock_xact_callback, NULL);
    RegisterSubXactCallback(hotstock_subxact_callback, NULL);

    hotstock_drain_register();
}

/* Ask for the drain's report struct. */
static void
hotstock_shmem_request(void)
{
    if (prev_shmem_request_hook)
        prev_shmem_request_hook();
    RequestAddinShmemSpace(MAXALIGN(sizeof(HotstockDrainShared)));
    hotstock_starts_request();
}

/* Create or attach the drain's report struct; number this start
 * (starts.c). */
static void
hotstock_shmem_startup(void)
{
    bool found;

    if (prev_shmem_startup_hook)
        prev_shmem_startup_hook();

    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    hotstock_drain_shared = ShmemInitStruct("hotstock drain", sizeof(HotstockDrainShared), &found);
    if (!found) {
        memset(hotstock_drain_shared, 0, sizeof(HotstockDrainShared));
        SpinLockInit(&hotstock_drain_shared->mutex);
    }
    hotstock_starts_startup();
    LWLockRelease(AddinShmemInitLock);
}
