# hotstock — one PGXS Makefile for the extension, the daemon, the client
# library and the tests.
#
#   make                build everything
#   make install        install the extension (PGXS) and bin/hotstockd
#   make demo           set up, start, run the flash-sale demo      (scripts/demo.sh)
#   make check          set up, start, run every test                (scripts/check.sh)
#   make check-fresh    make demo + make check in a fresh minbase Debian 12 root (tests/install)
#   make start|stop|status|psql   the private cluster + daemon under $(RUN_DIR)
#   make start-sharded|stop-sharded|status-sharded|psql-sharded
#                       SHARDS (4) nodes and a PL/Proxy router  (scripts/sharded.sh)
#   make demo-sharded   a sale across many SKUs through the router (scripts/demo_sharded.sh)
#   make bench | bench-sharded | crashtest | fuzz | soak   long runs, not part of check

# PG_CONFIG is resolved in one place, scripts/lib.sh (PostgreSQL 15's own
# pg_config when it is installed, else the one on PATH), for the Makefile
# and every script alike.
ifndef PG_CONFIG
PG_CONFIG := $(shell bash -c '. "$(CURDIR)/scripts/lib.sh" && echo "$$PG_CONFIG"')
endif
RUN_DIR ?= $(CURDIR)/.run
export RUN_DIR PG_CONFIG

# ---- the extension (PGXS) ----
# pg_ext/ is split by job (see pg_ext/README.md); every .c there is one
# object of hotstock.so, which links the client library and the queue
# reader (shmd/libhotstock.a) and nothing of the daemon or the writers
# (tests/layout/check.sh checks that with nm).
MODULE_big = hotstock
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard pg_ext/*.c)))
PGFILEDESC = "hotstock - flash-sale stock deduction"
MODULEDIR = extension
DATA = pg_ext/hotstock.control $(sort $(wildcard pg_ext/hotstock--*.sql))
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
# The drain writes into one database (hotstock.drain_database), so the
# regression tests run there, in the running cluster (--use-existing; the
# tests CREATE EXTENSION IF NOT EXISTS themselves).
REGRESS_OPTS = --use-existing
# Automatic header dependencies: -MF names the file after the target, so
# the gcc object (x.o.d) and PGXS's clang bitcode (x.bc.d) do not share one.
DEPFLAGS = -MMD -MP -MF $@.d
PG_CPPFLAGS = -Ishmd/include
PG_CFLAGS = -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
            -Wno-missing-field-initializers -Wno-cast-function-type
SHLIB_LINK = shmd/libhotstock.a -lpthread
EXTRA_CLEAN = shmd/*/*.o shmd/*.a shmd/hotstockd $(TEST_BINS) $(PQ_BINS) tests/*/*.o \
              pg_ext/*.d shmd/*/*.d tests/*/*.d tests/*/*/*.d

# The targets users run are scripts (see the end of this file): they need
# no PGXS, and PGXS's own `check` (which says "not supported") must not
# stand beside ours.  So PGXS is read only when something is built.
SCRIPT_GOALS = demo check check-fresh start stop status psql bench crashtest fuzz soak \
               start-sharded stop-sharded status-sharded psql-sharded demo-sharded bench-sharded
ifneq ($(MAKECMDGOALS),)
ifeq ($(filter-out $(SCRIPT_GOALS),$(MAKECMDGOALS)),)
ONLY_SCRIPTS := 1
endif
endif

# Before scripts/setup.sh has installed PostgreSQL 15's server headers there
# is no pg_config, hence no PGXS: `make demo` and `make check` still work
# (they run setup.sh first); the build targets say what to do.
ifdef ONLY_SCRIPTS
else ifneq ($(shell command -v $(PG_CONFIG) 2>/dev/null),)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
else
.DEFAULT_GOAL := all
all install installcheck: pg-config-missing
.PHONY: pg-config-missing
pg-config-missing:
	@echo "make: $(PG_CONFIG) not found: PostgreSQL 15's server headers are not installed yet; run 'make demo' or 'make check' (they install them), or 'bash scripts/setup.sh'" >&2; exit 2
endif
CONTRIB_TESTDB = $(or $(PGDATABASE),hotstock)
# PGXS fixes CPPFLAGS with :=, so the extension's objects get DEPFLAGS here,
# where $@ is theirs.
$(OBJS): override CPPFLAGS += $(DEPFLAGS)

# ---- shmd: the client library, the formats, the daemon (C11, -Werror) ----
#   shmd/include/   the one public header (hotstock.h)
#   shmd/lib/       libhotstock: attach, deduct, refund, wait, status
#   shmd/format/    on-disk formats: readers (in libhotstock) and writers
#   shmd/daemon/    hotstockd
# Each room sees only the headers of the rooms below it.
SHMD_CFLAGS = -std=gnu11 -O2 -g -fPIC -pthread -Wall -Wextra -Werror \
              -Wno-unused-parameter -D_GNU_SOURCE $(SHMD_EXTRA_CFLAGS)
INC_LIB = -Ishmd/include -Ishmd/lib
INC_FORMAT = $(INC_LIB) -Ishmd/format
INC_DAEMON = $(INC_FORMAT) -Ishmd/daemon

LIB_SRCS = $(sort $(wildcard shmd/lib/*.c))
# the writers of the on-disk formats: the daemon's (and tools') only
FORMAT_WRITER_SRCS = $(sort $(wildcard shmd/format/*_writer.c shmd/format/*_write.c))
FORMAT_READER_SRCS = $(filter-out $(FORMAT_WRITER_SRCS),$(sort $(wildcard shmd/format/*.c)))
DAEMON_SRCS = $(sort $(wildcard shmd/daemon/*.c))
LIB_OBJS = $(LIB_SRCS:.c=.o) $(FORMAT_READER_SRCS:.c=.o)
WRITER_OBJS = $(FORMAT_WRITER_SRCS:.c=.o)
DAEMON_OBJS = $(DAEMON_SRCS:.c=.o)
DAEMON_MAIN_OBJ = shmd/daemon/hotstockd.o
DAEMON_LIBS = -lurcu -lurcu-common -ljemalloc -lpthread

shmd/lib/%.o: shmd/lib/%.c
	$(CC) $(SHMD_CFLAGS) $(INC_LIB) $(DEPFLAGS) -c -o $@ $<
shmd/format/%.o: shmd/format/%.c
	$(CC) $(SHMD_CFLAGS) $(INC_FORMAT) $(DEPFLAGS) -c -o $@ $<
shmd/daemon/%.o: shmd/daemon/%.c
	$(CC) $(SHMD_CFLAGS) $(INC_DAEMON) $(DEPFLAGS) -c -o $@ $<

# libhotstock: what a backend or any C program links (client + readers)
shmd/libhotstock.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# the format writers, linked by the daemon and the tools that forge files
shmd/libhotstock_writer.a: $(WRITER_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

shmd/hotstockd: $(DAEMON_OBJS) shmd/libhotstock_writer.a shmd/libhotstock.a
	$(CC) $(SHMD_CFLAGS) -o $@ $(DAEMON_OBJS) shmd/libhotstock_writer.a shmd/libhotstock.a \
	    $(DAEMON_LIBS)

$(shlib): shmd/libhotstock.a

# ---- C test programs: every tests/<dir>/test_*.c (unit), and the
# stress, crash, daemon-CLI and bench programs, is one program ----
TEST_SRCS = $(wildcard tests/unit/test_*.c tests/stress/*.c tests/crash/*.c \
                       tests/daemon/*.c tests/bench/*.c)
TEST_BINS = $(TEST_SRCS:.c=)
TEST_CFLAGS = $(SHMD_CFLAGS) $(INC_DAEMON) -Itests

tests/%: tests/%.c shmd/libhotstock.a shmd/libhotstock_writer.a $(DAEMON_OBJS)
	$(CC) $(TEST_CFLAGS) $(DEPFLAGS) -o $@ $< $(filter-out $(DAEMON_MAIN_OBJ),$(DAEMON_OBJS)) \
	    shmd/libhotstock_writer.a shmd/libhotstock.a $(DAEMON_LIBS) $(TEST_LDFLAGS)

# writes records while hs_queue_sync() syncs
tests/unit/test_queue_sync: TEST_LDFLAGS = -Wl,--wrap=fdatasync

# the crash suite's libpq client (its own flags: it links libpq, not us)
PQ_BINS = tests/crash/pq/crash_sqlload
tests/crash/pq/crash_sqlload: tests/crash/pq/crash_sqlload.c
	$(CC) -std=gnu11 -O2 -g -pthread -Wall -Wextra -Werror $(DEPFLAGS) \
	    -I$(shell $(PG_CONFIG) --includedir) -o $@ $< -L$(shell $(PG_CONFIG) --libdir) -lpq

all: shmd/libhotstock.a shmd/libhotstock_writer.a shmd/hotstockd $(TEST_BINS) $(PQ_BINS)

# automatic header dependencies of every object and program above
-include $(wildcard pg_ext/*.d shmd/*/*.d tests/*/*.d tests/*/*/*.d)

install: install-daemon
install-daemon: shmd/hotstockd
	$(INSTALL_PROGRAM) shmd/hotstockd '$(DESTDIR)$(bindir)/hotstockd'

# ---- what users run (scripts/ does the work; see README.md) ----
.PHONY: demo demo-holds check check-fresh start stop status psql bench bench-holds crashtest fuzz soak unit install-daemon \
        start-sharded stop-sharded status-sharded psql-sharded demo-sharded bench-sharded
demo:
	@bash scripts/demo.sh
demo-holds:
	@bash scripts/demo_holds.sh
# PGXS defines a `check` of its own; ours replaces it only where both are
# read (`make all check`), with make's warning about it.
ifneq ($(or $(ONLY_SCRIPTS),$(filter check,$(MAKECMDGOALS)),$(if $(PGXS),,none)),)
check:
	@bash scripts/check.sh
endif
check-fresh:
	@bash tests/install/run.sh
start:
	@bash scripts/cluster.sh start
stop:
	@bash scripts/cluster.sh stop
status:
	@bash scripts/cluster.sh status
psql:
	@bash scripts/cluster.sh psql
# SHARDS (default 4), SHARD_PORT (55500) and SHARDED_RUN_DIR reach the
# script from make's command line or the environment.
start-sharded:
	@bash scripts/sharded.sh start
stop-sharded:
	@bash scripts/sharded.sh stop
status-sharded:
	@bash scripts/sharded.sh status
psql-sharded:
	@bash scripts/sharded.sh psql
demo-sharded:
	@bash scripts/demo_sharded.sh
bench-sharded:
	@bash tests/bench/sharded.sh
unit: all
	@bash tests/run_unit.sh
bench:
	@bash tests/bench/run.sh
bench-holds: tests/bench/holdsbench
	@./tests/bench/holdsbench
crashtest:
	@bash tests/crash/run.sh long
fuzz:
	@bash tests/fuzz/run.sh
soak:
	@bash tests/soak/run.sh long
