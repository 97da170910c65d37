/*-------------------------------------------------------------------------
 *
 * hotstock_ext.h
 *      Internal interface between the two halves of the hotstock extension:
 *      hotstock.c (GUCs, SQL functions, transaction callbacks) and drain.c
 *      (the "hotstock drain" background worker).
 *
 * Shared between them, per process:
 *  - the GUC variables (defined in hotstock.c);
 *  - hotstock_writer, the flag the write guard trigger checks.  Only C code
 *    of this extension sets it, around its own SPI statements, and resets it
 *    in PG_FINALLY; SQL cannot reach it.
 *
 * Shared between processes (PostgreSQL shared memory, allocated through
 * shmem_request_hook / shmem_startup_hook in hotstock.c):
 *  - HotstockDrainShared: what the drain last did, for hotstock.status.
 *    Written by the drain only, read by any backend; every field is read and
 *    written under its spinlock (a few loads and stores, never a call).
 *
 * The client API of the daemon's segment is shmd/hotstock.h (libhotstock);
 * nothing in pg_ext/ knows the segment layout.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_EXT_HOTSTOCK_H
#define PG_EXT_HOTSTOCK_H

#include "datatype/timestamp.h"
#include "storage/spin.h"

#include "hotstock.h"

/*
 * SQLSTATEs of our own, class "HS" (documented in pg_ext/README.md).
 * Standard codes are used where one fits: 22023, 22001, 42704, 42501,
 * 55000, 58030, 0A000.
 */
#define ERRCODE_HOTSTOCK_DAEMON_DOWN MAKE_SQLSTATE('H', 'S', '0', '0', '1')
#define ERRCODE_HOTSTOCK_QUEUE_FULL MAKE_SQLSTATE('H', 'S', '0', '0', '2')
#define ERRCODE_HOTSTOCK_TABLE_FULL MAKE_SQLSTATE('H', 'S', '0', '0', '3')
#define ERRCODE_HOTSTOCK_ORDER_MISMATCH MAKE_SQLSTATE('H', 'S', '0', '0', '4')
#define ERRCODE_HOTSTOCK_ORDER_REFUNDED MAKE_SQLSTATE('H', 'S', '0', '0', '5')
#define ERRCODE_HOTSTOCK_VERSION_MISMATCH MAKE_SQLSTATE('H', 'S', '0', '0', '6')
#define ERRCODE_HOTSTOCK_QUEUE_CORRUPT MAKE_SQLSTATE('H', 'S', '0', '0', '7')

/* GUC variables (hotstock.c) */
extern char *hotstock_data_directory;
extern bool hotstock_synchronous;
extern int hotstock_drain_batch_size;
extern int hotstock_drain_naptime;
extern char *hotstock_drain_database;

/*
 * Who may write the extension's tables right now in this process.  The
 * guard trigger (hotstock_guard) refuses every write while this is
 * HS_WRITER_NONE; HS_WRITER_REFUND allows only UPDATE of hotstock.ledger
 * (the database-first refund of an evicted order).
 */
typedef enum HotstockWriter {
    HS_WRITER_NONE = 0,
    HS_WRITER_DRAIN,
    HS_WRITER_REFUND
} HotstockWriter;

extern HotstockWriter hotstock_writer;

/*
 * The drain's report, in PostgreSQL shared memory.  Written by the drain
 * (one process), read by hotstock.status_info(); all under mutex.
 */
typedef struct HotstockDrainShared {
    slock_t mutex;
    int pid;                   /* drain's pid, 0 when not running */
    hs_lsn applied_lsn;        /* last LSN committed by the drain */
    TimestampTz caught_up_at;  /* last time nothing durable was left */
    TimestampTz last_batch_at; /* commit time of the last batch */
    uint64 records_applied;    /* since the drain started */
    double last_rate;          /* records/s of the last full batch */
    char last_error[256];      /* last problem logged, "" if none */
} HotstockDrainShared;

extern HotstockDrainShared *hotstock_drain_shared;

/* hotstock.c */
extern void hotstock_raise(hs_result r, const char *what) pg_attribute_noreturn();
extern TimestampTz hotstock_unix_us_to_timestamptz(uint64 unix_us);

/* drain.c */
extern void hotstock_drain_register(void);
extern PGDLLEXPORT void hotstock_drain_main(Datum main_arg) pg_attribute_noreturn();

#endif /* PG_EXT_HOTSTOCK_H */
