# hotstock — one PGXS Makefile for the extension, the daemon, the client
# library and the tests.
#
#   make                build everything
#   make install        install the extension (PGXS) and bin/hotstockd
#   make demo           set up, start, run the flash-sale demo      (scripts/demo.sh)
#   make check          set up, start, run every test                (scripts/check.sh)
#   make check-fresh    make demo + make check in a fresh minbase Debian 12 root (tests/install)
#   make start|stop|status|psql   the private cluster + daemon under $(RUN_DIR)
#   make bench | crashtest | fuzz   long runs, not part of check

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
RUN_DIR ?= $(CURDIR)/.run
export RUN_DIR PG_CONFIG

# ---- the extension (PGXS) ----
MODULE_big = hotstock
OBJS = pg_ext/hotstock.o pg_ext/drain.o
PGFILEDESC = "hotstock - flash-sale stock deduction"
MODULEDIR = extension
DATA = pg_ext/hotstock.control pg_ext/hotstock--1.0.sql
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
# The drain writes into one database (hotstock.drain_database), so the
# regression tests run there, in the running cluster (--use-existing; the
# tests CREATE EXTENSION IF NOT EXISTS themselves).
REGRESS_OPTS = --use-existing
PG_CPPFLAGS = -Ishmd
PG_CFLAGS = -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
            -Wno-missing-field-initializers -Wno-cast-function-type
SHLIB_LINK = shmd/libhotstock.a -lpthread
EXTRA_CLEAN = shmd/*.o shmd/libhotstock.a shmd/hotstockd $(TEST_BINS) tests/*/*.o

# Before scripts/setup.sh has installed PostgreSQL 15's server headers there
# is no pg_config, hence no PGXS: `make demo` and `make check` still work
# (they run setup.sh first); the build targets say what to do.
ifneq ($(shell command -v $(PG_CONFIG) 2>/dev/null),)
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

# ---- shmd: libhotstock + hotstockd (own flags: C11, -Werror) ----
SHMD_CFLAGS = -std=gnu11 -O2 -g -fPIC -pthread -Wall -Wextra -Werror \
              -Wno-unused-parameter -D_GNU_SOURCE $(SHMD_EXTRA_CFLAGS)
LIB_SRCS = shmd/segment.c shmd/queue_file.c shmd/checkpoint.c shmd/client.c
LIB_OBJS = $(LIB_SRCS:.c=.o)
DAEMON_SRCS = $(filter-out $(LIB_SRCS),$(wildcard shmd/*.c))
DAEMON_OBJS = $(DAEMON_SRCS:.c=.o)
DAEMON_LIBS = -lurcu -lurcu-common -ljemalloc -lpthread

shmd/%.o: shmd/%.c $(wildcard shmd/*.h)
	$(CC) $(SHMD_CFLAGS) -c -o $@ $<

shmd/libhotstock.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

shmd/hotstockd: $(DAEMON_OBJS) shmd/libhotstock.a
	$(CC) $(SHMD_CFLAGS) -o $@ $(DAEMON_OBJS) shmd/libhotstock.a $(DAEMON_LIBS)

$(shlib): shmd/libhotstock.a

# ---- C tests: every tests/<dir>/test_*.c is one program ----
TEST_SRCS = $(wildcard tests/unit/test_*.c tests/stress/*.c tests/crash/*.c)
TEST_BINS = $(TEST_SRCS:.c=)
TEST_CFLAGS = $(SHMD_CFLAGS) -Ishmd -Itests

tests/%: tests/%.c shmd/libhotstock.a $(DAEMON_OBJS) $(wildcard tests/*.h) $(wildcard shmd/*.h)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(filter-out shmd/hotstockd.o,$(DAEMON_OBJS)) \
	    shmd/libhotstock.a $(DAEMON_LIBS)

all: shmd/libhotstock.a shmd/hotstockd $(TEST_BINS)

install: install-daemon
install-daemon: shmd/hotstockd
	$(INSTALL_PROGRAM) shmd/hotstockd '$(DESTDIR)$(bindir)/hotstockd'

# ---- what users run (scripts/ does the work; see README.md) ----
.PHONY: demo check check-fresh start stop status psql bench crashtest fuzz unit install-daemon
demo:
	@bash scripts/demo.sh
check:
	@bash scripts/check.sh
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
unit: all
	@bash tests/run_unit.sh
bench:
	@bash tests/bench/run.sh
crashtest:
	@bash tests/crash/run.sh long
fuzz:
	@bash tests/fuzz/run.sh
