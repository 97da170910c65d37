#!/usr/bin/env python3
# -------------------------------------------------------------------------
# tests/crash/harness.py — the crash and fault suite: runs a mixed load on
# a private cluster, injects each fault many times, restarts what died,
# waits for quiescence and checks "never oversell" and "exactly once".
#
#   harness.py quick|long [--faults a,b,...] [--iterations N]
#
# Run through tests/crash/run.sh, which builds the helpers first.  Faults:
#
#   daemon_kill     SIGKILL hotstockd under load (synchronous on and off)
#   client_kill     SIGKILL a libhotstock client process in mid-call
#   backend_kill    SIGKILL a backend in mid-deduct / mid-refund
#   postmaster_kill SIGKILL the postmaster (PostgreSQL crash recovery)
#   drain_kill      SIGKILL the "hotstock drain" worker in mid-batch
#   power_loss      SIGSTOP the daemon, keep only what is fdatasync'ed
#                   (queue cut after durable_lsn, segment gone), restart
#   disk_full       the queue on a small tmpfs, filled; then space returns
#                   (refunds committed meanwhile are applied by the drain)
#   corrupt_queue   bit flips, truncation, garbage and foreign files,
#                   wrong magic/version, a bad checkpoint: the daemon cuts a
#                   torn tail or refuses, as queue_file.c's essay says
#   hold_mix        holds (reserve, confirm, cancel, abandon, retake) on
#                   scarce stock with the daemon and/or a buyer SIGKILLed:
#                   holds_crash.c, which checks its own invariants (the
#                   queue follows the hold protocol, never oversold, every
#                   acknowledged answer kept, live holds back with their
#                   deadlines and expired on time); one line per iteration
#   basket_mix      baskets (deduct_basket; reserve_basket then confirm,
#                   cancel or abandon) on scarce stock with the daemon
#                   and/or a buyer SIGKILLed: basket_crash.c (every basket
#                   whole in the queue, every acknowledged answer kept,
#                   never oversold, counters equal to the queue)
#   buyer_mix       per-buyer limits (deduct, refund, reserve then confirm,
#                   cancel or abandon, for a few buyers shared by the
#                   processes) with the daemon and/or a process SIGKILLed:
#                   buyer_crash.c (every take counted in its group, no
#                   buyer ever over the limit in the queue, the counts
#                   after a restart at least what the queue holds)
#
# THE INVARIANTS (checked after every iteration, over everything the clients
# were told since the cluster was created; see check_invariants()):
#
#   never oversold   per SKU: ledger units held by unrefunded orders ==
#                    stock.sold <= put + restocks, stock.available >= 0, the
#                    daemon's available <= the table's (the gap is units held
#                    back: undersell) and equal after a clean restart
#   exactly once     every acknowledged deduction (synchronous, or any kind
#                    when no power was lost since) is in the ledger once,
#                    with its SKU and qty; no ledger row no client asked for;
#                    no order refunded twice; every acknowledged refund
#                    marked in the ledger (also one the daemon could not
#                    take at commit: the drain applies it before quiesce); a transaction that did not
#                    commit sells nothing once the drain has settled it:
#                    rolled back (also when its own undo failed or a power
#                    loss erased it) or killed before COMMIT -- the drain
#                    compensates its xid (pg_ext/settle.c)
#   quiescent        once drained, hotstock.stock == hotstock.available()
#
# Clients (crash_load.c, pq/crash_sqlload.c) log each acknowledged outcome
# after the fact, fsync-free; their headers describe the log format.
# Everything runs under $CRASH_BASE (default /tmp/hs-crash-run-$CRASH_PORT),
# cluster port $CRASH_PORT (run.sh picks a free one from 55442 on).  Quick
# mode runs every live fault on one shared cluster, long mode a cluster per
# fault.  The results are in docs/faults.md.  CRASH_BUDGET (seconds;
# default 300 in quick mode, none in long mode): no fault starts another
# iteration after it (each runs at least once).  CRASH_KEEP=1 keeps the
# cluster directories; CRASH_VERBOSE=1 prints the clients' own counts.  The
# last line printed is exactly "N passed, N failed" (one check per fault
# iteration).
# -------------------------------------------------------------------------
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PORT = int(os.environ.get("CRASH_PORT", "55442"))
BASE = os.environ.get("CRASH_BASE", f"/tmp/hs-crash-run-{PORT}")
BIN = os.path.join(BASE, "bin")
RUNAS = "postgres" if os.geteuid() == 0 else None
SKUS = ["hot", "s1", "s2", "s3"]
LOAD_SECONDS = 1.0  # load before a fault, and after recovery
CLIENT_KILLS = 5  # unthrottled clients killed per client_kill iteration
DEADLINE = float("inf")  # no new iteration (beyond a fault's first) after this
STOCK = {"hot": 1500, "s1": 200000, "s2": 200000, "s3": 200000}
PROBE_SKU = "probe"
ME = "crash/harness"

# Daemon settings for the crash clusters: small queue files (rotation and
# recycling happen under the faults) and frequent checkpoints.
# order_retention = 1: the evictor empties drained orders all through every
# fault, so retries of unknown orders meet evicted ones (answered from the
# ledger) and recovery starts from the filter's watermark.
DAEMON_CONF = "queue_file_size = 1M\ncheckpoint_interval_s = 2\norder_retention = 1\n"


def say(msg):
    print(f"{ME}: {msg}", flush=True)


def now_us():
    return int(time.time() * 1e6)


def as_pg(cmd):
    """cmd run as the PostgreSQL OS user (the segment name has its uid)."""
    if RUNAS:
        return ["runuser", "-u", RUNAS, "--"] + cmd
    return cmd


def run(cmd, timeout=60, env=None, check=False):
    """Run cmd from /; (returncode, stdout, stderr); 124 on timeout."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env, text=True, cwd="/")
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout}s: {' '.join(cmd)}"
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return p.returncode, p.stdout, p.stderr


def wait_until(what, fn, timeout, interval=0.1):
    """Poll fn() until it returns a true value; raise after timeout."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - polled: report the last one
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what}: not reached in {timeout}s (last: {last})")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def proc_children(ppid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == ppid:
                kids.append(int(d))
        except (OSError, ValueError):
            pass
    return kids


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -------------------------------------------------------------------------
# The cluster (scripts/cluster.sh) and the tools
# -------------------------------------------------------------------------
class Cluster:
    def __init__(self, name):
        self.name = name
        self.run_dir = os.path.join(BASE, name)
        self.hs_dir = os.path.join(self.run_dir, "hotstock")
        self.pg_dir = os.path.join(self.run_dir, "pg")
        self.log_dir = os.path.join(self.run_dir, "logs")
        self.env = None

    def script_env(self):
        env = dict(os.environ)
        env["RUN_DIR"] = self.run_dir
        env["HOTSTOCK_PORT"] = str(PORT)
        env["HOTSTOCKD"] = os.path.join(BIN, "hotstockd")
        return env

    def cluster_sh(self, *args, timeout=180):
        # a snapshot taken by run.sh (scripts/ may change during a long run)
        scripts = os.environ.get("CRASH_SCRIPTS", os.path.join(REPO, "scripts"))
        rc, out, err = run(["bash", os.path.join(scripts, "cluster.sh")] + list(args),
                           timeout=timeout, env=self.script_env())
        return rc, out + err

    def create(self):
        """A fresh cluster: remove any leftover, write the daemon's conf, start."""
        self.destroy()
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(self.hs_dir, exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.hs_dir, "hotstockd.conf"), "w") as f:
            f.write(DAEMON_CONF)
        if RUNAS:
            for d in (self.run_dir, self.hs_dir, self.log_dir):
                shutil.chown(d, RUNAS, RUNAS)
            shutil.chown(os.path.join(self.hs_dir, "hotstockd.conf"), RUNAS, RUNAS)
            os.chmod(self.run_dir, 0o700)
            os.chmod(self.hs_dir, 0o700)
        # A segment named after this path may be left by an earlier run of
        # this suite that was stopped without cleaning up (its daemon killed):
        # a new daemon would rightly refuse to start beside it (its queue
        # files are gone).  This cluster is new: remove it.
        tool(["unlink", self.hs_dir])
        self.start()

    def start(self):
        rc, out = self.cluster_sh("start")
        if rc != 0:
            raise RuntimeError(f"cluster.sh start failed ({rc}): {out.strip()[-1500:]}")
        self.load_env()
        wait_until("PostgreSQL answers", lambda: self.try_sql("SELECT 1") == [["1"]], 60)

    def stop(self):
        return self.cluster_sh("stop")

    def destroy(self):
        if os.path.isdir(self.run_dir):
            if os.path.exists(os.path.join(self.pg_dir, "postmaster.pid")) or \
                    os.path.exists(os.path.join(self.hs_dir, "hotstockd.pid")):
                self.cluster_sh("stop", timeout=120)
            run(["umount", os.path.join(self.hs_dir, "queue")])
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def load_env(self):
        env = dict(os.environ)
        with open(os.path.join(self.run_dir, "env")) as f:
            for line in f:
                m = re.match(r"export (\w+)='?([^']*)'?$", line.strip())
                if m and m.group(1) != "PATH":
                    env[m.group(1)] = m.group(2)
        self.env = env

    def sql(self, query, timeout=60):
        rc, out, err = run(["psql", "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-c", query], timeout=timeout, env=self.env)
        if rc != 0:
            raise RuntimeError(f"psql: {err.strip()[-600:]}")
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def try_sql(self, query, timeout=20):
        try:
            return self.sql(query, timeout)
        except Exception:  # noqa: BLE001
            return None

    def daemon_pid(self):
        try:
            with open(os.path.join(self.hs_dir, "hotstockd.pid")) as f:
                pid = int(f.read().split()[0])
            return pid if pid_alive(pid) else None
        except (OSError, ValueError, IndexError):
            return None

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.pg_dir, "postmaster.pid")) as f:
                pid = int(f.readline())
            return pid if pid_alive(pid) else None
        except (OSError, ValueError):
            return None

    def header(self):
        return tool_header(self.hs_dir)

    def daemon_log_tail(self, n=5):
        try:
            with open(os.path.join(self.hs_dir, "hotstockd.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def pg_ready(self):
        return self.try_sql("SELECT 1", timeout=10) == [["1"]]

    def drain_pid(self):
        rows = self.try_sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'hotstock drain'")
        return int(rows[0][0]) if rows else None

    def status(self):
        # the drain's work still owed: deductions whose fate it has not
        # settled, committed refunds waiting for it, and database-first
        # refunds of evicted orders whose units it has yet to return
        rows = self.sql("SELECT daemon_up, last_lsn, durable_lsn, applied_lsn, "
                        "unsettled_orders + pending_refunds + (SELECT count(*) FROM "
                        "hotstock.ledger WHERE refunded_at IS NOT NULL AND refund_lsn IS NULL) "
                        "FROM hotstock.status")
        up, last, durable, applied, unsettled = rows[0]
        return (up == "t", int(last or 0), int(durable or 0), int(applied or 0),
                int(unsettled or 0))


def tool(args, timeout=60):
    return run(as_pg([os.path.join(BIN, "crash_tool")] + args), timeout=timeout)


def tool_header(hs_dir):
    rc, out, err = tool(["header", hs_dir])
    h = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        h[k] = v
    for k in list(h):
        if k != "result":
            try:
                h[k] = int(h[k])
            except ValueError:
                pass
    return h


# -------------------------------------------------------------------------
# Load: libhotstock clients (crash_load) and SQL clients (crash_sqlload)
# -------------------------------------------------------------------------
LOADS = []  # every Load started: killed on the way out if still running


class Load:
    def __init__(self, cluster, iteration, c_clients=1, sql_clients=1, c_rate=150, sql_rate=40):
        LOADS.append(self)
        self.cluster = cluster
        self.stop_file = os.path.join(cluster.log_dir, "stop")
        self.procs = []  # (kind, client id, Popen)
        self.iteration = iteration
        self.next_id = iteration * 10 + 1
        self.c_rate = c_rate
        self.sql_rate = sql_rate
        if os.path.exists(self.stop_file):
            os.unlink(self.stop_file)
        for _ in range(c_clients):
            self.start_c()
        for _ in range(sql_clients):
            self.start_sql()

    def _out(self, kind, cid):
        path = os.path.join(self.cluster.log_dir, f"{kind}{cid}.out")
        f = open(path, "w")
        if RUNAS:
            shutil.chown(path, RUNAS, RUNAS)
        return f

    def start_c(self, rate=None, threads=4):
        cid = self.next_id
        self.next_id += 1
        log = os.path.join(self.cluster.log_dir, f"c{cid}.log")
        open(log, "a").close()
        if RUNAS:
            shutil.chown(log, RUNAS, RUNAS)
        cmd = as_pg([os.path.join(BIN, "crash_load"), "-D", self.cluster.hs_dir, "-o", log,
                     "-c", str(cid), "-t", str(threads),
                     "-r", str(self.c_rate if rate is None else rate), "-S", self.stop_file,
                     "-s", "600"] + SKUS)
        p = subprocess.Popen(cmd, stdout=self._out("c", cid), stderr=subprocess.STDOUT, cwd="/")
        self.procs.append(("c", cid, p))
        return p

    def start_sql(self):
        cid = self.next_id
        self.next_id += 1
        log = os.path.join(self.cluster.log_dir, f"q{cid}.log")
        cmd = [os.path.join(BIN, "crash_sqlload"), "-o", log, "-c", str(cid), "-t", "4",
               "-r", str(self.sql_rate), "-S", self.stop_file, "-s", "600"] + SKUS
        p = subprocess.Popen(cmd, stdout=self._out("q", cid), stderr=subprocess.STDOUT,
                             env=self.cluster.env, cwd="/")
        self.procs.append(("q", cid, p))
        return p

    def c_pids(self):
        """pids of the running crash_load programs (children of runuser)."""
        pids = []
        for kind, _, p in self.procs:
            if kind == "c" and p.poll() is None:
                kids = [p.pid] + (proc_children(p.pid) if RUNAS else [])
                pids.extend(k for k in kids if "crash_load" in cmdline(k) and
                            "runuser" not in cmdline(k))
        return pids

    def acks(self):
        n = 0
        for f in os.listdir(self.cluster.log_dir):
            if f.endswith(".log"):
                n += os.path.getsize(os.path.join(self.cluster.log_dir, f))
        return n

    def wait_progress(self, timeout=20, min_seconds=0.0):
        """Wait until the clients logged something new (the service works),
        and at least min_seconds."""
        start, t0 = self.acks(), time.time()
        wait_until("clients make progress", lambda: self.acks() > start + 2000, timeout)
        left = min_seconds - (time.time() - t0)
        if left > 0:
            time.sleep(left)

    def stop(self, timeout=60):
        """Ask every client to stop (they retry their unknown orders for a
        bounded time first); returns the clients that had to be killed."""
        with open(self.stop_file, "w"):
            pass
        hung = []
        end = time.time() + timeout
        for kind, cid, p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                hung.append(f"{kind}{cid}")
                for k in ([p.pid] + (proc_children(p.pid) if RUNAS else [])):
                    try:
                        os.kill(k, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.wait()
        return hung

    def kill_all(self):
        """Power loss: every client dies at once."""
        for kind, _, p in self.procs:
            pids = [p.pid] + (proc_children(p.pid) if RUNAS and kind == "c" else [])
            for k in pids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _, _, p in self.procs:
            p.wait()

    def summaries(self):
        out = []
        for kind, cid, _ in self.procs:
            try:
                with open(os.path.join(self.cluster.log_dir, f"{kind}{cid}.out")) as f:
                    out.append(f.read().strip())
            except OSError:
                pass
        return out


# -------------------------------------------------------------------------
# The invariant checker
# -------------------------------------------------------------------------
ORDER_RE = re.compile(r"^([cq])(\d+)\.(\d+)\.(\d+)\.(\d+)\.(\d+)$")


def parse_logs(log_dir):
    ev = {"D": {}, "S": set(), "R": {}, "RF": set(), "TR": set(), "U": set(), "X": {}, "RW": 0,
          "TX": set(), "V": [], "TA": {}, "A": {}, "A_sync": {}, "A_async": [], "XT": {}}
    for name in sorted(os.listdir(log_dir)):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(log_dir, name), errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 7:
                    continue  # a line cut by a power loss kill
                kind, ts, order, sku, qty, sync, result = parts
                ts, qty, sync = int(ts), int(qty), sync == "1"
                if kind == "D":
                    ev["D"].setdefault(order, []).append((ts, sync, result, sku, qty))
                elif kind == "S":
                    ev["S"].add(order)
                elif kind == "R":
                    ev["R"].setdefault(order, []).append((ts, sync, sku, qty))
                    if result == "true_deferred":  # the drain must apply it
                        ev["RW"] += 1
                elif kind == "RF":
                    ev["RF"].add(order)
                elif kind == "TR":
                    ev["TR"].add(order)
                elif kind == "U":
                    ev["U"].add(order)
                elif kind == "X":
                    ev["X"][order] = result
                    ev["XT"][order] = ts
                elif kind == "TX":
                    ev["TX"].add(order)
                elif kind == "V":
                    ev["V"].append(f"{name}: {order} {sku} {qty}: {result}")
                elif kind == "TA":
                    ev["TA"][sku] = ev["TA"].get(sku, 0) + qty
                elif kind == "A":
                    ev["A"][sku] = ev["A"].get(sku, 0) + qty
                    if sync:
                        ev["A_sync"][sku] = ev["A_sync"].get(sku, 0) + qty
                    else:
                        ev["A_async"].append((ts, sku, qty))
    return ev


class Scenario:
    """One cluster's history: what was put, when power was lost."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.loads = 0  # load generations started (their client ids differ)
        self.seen = {}  # cumulative figures already charged to a fault
        self.powerloss_us = []  # times after which unsynced acks may be gone
        self.known_failures = set()

    def setup_skus(self):
        for sku in SKUS:
            self.cluster.sql(f"SELECT hotstock.put_sku('{sku}', {STOCK[sku]})")
        self.cluster.sql(f"SELECT hotstock.put_sku('{PROBE_SKU}', 1000000)")

    def lossy(self, ts, sync):
        """May an acknowledgement at ts be gone (unsynchronous, power lost after)?"""
        return (not sync) and any(ts <= p for p in self.powerloss_us)


def quiesce(cluster, timeout=90):
    """Wait until everything written is durable and drained, the drain has
    settled every deduction by its transaction's fate (compensating those
    that did not commit) and applied every committed refund (also those the
    daemon could not take at commit); their REFUND records drained too."""
    def done():
        up, last, durable, applied, unsettled = cluster.status()
        return up and last == durable == applied and last > 0 and unsettled == 0
    return wait_until("quiescence (last_lsn == durable_lsn == applied_lsn, 0 unsettled orders, "
                      "0 pending refunds, 0 refunds of evicted orders owed)",
                      done, timeout, 0.2)


def check_invariants(sc, stats):
    """All the invariants of the header, over the cluster's whole history.
    Returns a list of failure strings; fills stats (held-back units etc.)."""
    c = sc.cluster
    fails = []
    ev = parse_logs(c.log_dir)
    ledger = {}
    dup_rows = 0
    for order, sku, qty, lsn, refunded, refund_lsn in c.sql(
            "SELECT order_id, sku, qty, lsn, refunded_at IS NOT NULL, coalesce(refund_lsn, 0) "
            "FROM hotstock.ledger"):
        if order in ledger:
            dup_rows += 1
        ledger[order] = (sku, int(qty), int(lsn), refunded == "t", int(refund_lsn))
    stock = {sku: (int(a), int(s)) for sku, a, s in
             c.sql("SELECT sku, available, sold FROM hotstock.stock")}
    skulist = ",".join(f"'{s}'" for s in SKUS)
    daemon = {sku: int(a) for sku, a in
              c.sql(f"SELECT s, hotstock.available(s) FROM unnest(array[{skulist}]) s")}

    if dup_rows:
        fails.append(f"ledger holds {dup_rows} orders more than once")
    for v in ev["V"]:
        fails.append(f"client saw a protocol violation: {v}")

    # exactly once: acknowledged deductions are in the ledger, as asked
    missing = lossy_missing = 0
    examples = []
    for order, acks in ev["D"].items():
        sync = any(a[1] for a in acks)
        if order not in ledger:
            if all(sc.lossy(a[0], a[1]) for a in acks):
                lossy_missing += 1
            else:
                missing += 1
                examples.append(f"{order} (sync={int(sync)}, acked {len(acks)}x)")
        elif ledger[order][0] != acks[0][3] or ledger[order][1] != acks[0][4]:
            fails.append(f"order {order}: ledger has {ledger[order][:2]}, client asked "
                         f"{acks[0][3]} x{acks[0][4]}")
    if missing:
        fails.append(f"{missing} acknowledged deductions missing from the ledger, e.g. "
                     + ", ".join(examples[:3]))
    stats["lost_unsynced_deducts"] = lossy_missing

    # no phantom: each ledger row is an order some client asked for, with its
    # SKU and qty (they are written in the order id)
    for order, (sku, qty, _, refunded, _) in ledger.items():
        m = ORDER_RE.match(order)
        if not m:
            if not order.startswith("probe-"):
                fails.append(f"ledger row for an order no client made: {order}")
            continue
        want_sku, want_qty = SKUS[int(m.group(5))], int(m.group(6))
        if sku != want_sku or qty != want_qty:
            fails.append(f"ledger row {order}: {sku} x{qty}, the order was {want_sku} x{want_qty}")

    # refunds: at most once, acknowledged ones marked, none out of nowhere
    for order, acks in ev["R"].items():
        if len(acks) > 1:
            fails.append(f"order {order} refunded {len(acks)} times (acknowledged)")
        row = ledger.get(order)
        if row is None or not row[3]:
            if all(sc.lossy(a[0], a[1]) for a in acks) or \
                    (row is None and order in ev["D"] and
                     all(sc.lossy(a[0], a[1]) for a in ev["D"][order])):
                continue
            fails.append(f"acknowledged refund of {order} not in the ledger "
                         f"({'no row' if row is None else 'row not refunded'})")
    # a transaction that did not commit sells nothing: a ROLLBACK's own undo,
    # or, where that failed (warned), was erased by a power loss, or never
    # ran (the connection died inside the transaction), the drain's
    # compensation of its xid -- settled before quiesce() returned
    for order, (sku, qty, lsn, refunded, _) in ledger.items():
        if refunded and order not in ev["TR"] and order in ev["D"]:
            fails.append(f"order {order} was sold (acknowledged) and is refunded in the ledger "
                         "though no refund was asked")
        if order in ev["X"] and order not in ev["D"] and not refunded:
            how = " (its undo warned)" if ev["X"][order].endswith("_warned") else ""
            fails.append(f"order {order}: its transaction was rolled back{how}, yet it is sold "
                         "after the drain settled it")
        if order in ev["TX"] and order not in ev["X"] and order not in ev["D"] and not refunded:
            fails.append(f"order {order}: its transaction died before COMMIT, yet it is sold "
                         "after the drain settled it")
        if order in ev["S"] and order not in ev["D"] and not refunded:
            fails.append(f"order {order} was answered 'no' (sold out) yet it is sold")
    stats["acked_sales"] = len(ev["D"])
    stats["acked_refunds"] = len(ev["R"])
    stats["crashed_txn_compensated"] = sum(
        1 for o in ev["TX"] if o not in ev["X"] and o not in ev["D"] and o in ledger
        and ledger[o][3])
    stats["refunds_deferred"] = ev["RW"]

    # counters: the ledger, the stock table and the daemon agree; nothing oversold
    held_total = 0
    for sku in SKUS:
        if sku not in stock:
            fails.append(f"no hotstock.stock row for {sku}")
            continue
        available, sold = stock[sku]
        held_sold = sum(q for (s, q, _, r, _) in ledger.values() if s == sku and not r)
        supply = available + sold  # put + restocks applied
        if sold != held_sold:
            fails.append(f"{sku}: stock.sold {sold} but unrefunded ledger rows hold {held_sold}")
        if available < 0:
            fails.append(f"{sku}: OVERSOLD: stock.available {available} < 0")
        restock_min = ev["A_sync"].get(sku, 0) + sum(
            q for ts, s, q in ev["A_async"] if s == sku and not sc.lossy(ts, False))
        restock_max = ev["TA"].get(sku, 0)
        if not (STOCK[sku] + restock_min <= supply <= STOCK[sku] + restock_max):
            fails.append(f"{sku}: available + sold = {supply}, outside put {STOCK[sku]} + "
                         f"restocks [{restock_min}, {restock_max}]")
        # client view: the orders clients were told are sold (and not refunded
        # since, by an acknowledged refund or one whose answer was lost)
        # never hold more than the supply.  Unsynchronous sales a power loss
        # erased are left out: their units went back to stock and may have
        # been sold again, which is what synchronous = off allows (counted
        # as "unsynchronous deductions lost").
        told = sum(a[0][4] for o, a in ev["D"].items()
                   if a[0][3] == sku and o not in ev["R"] and not (o in ledger and ledger[o][3])
                   and (o in ledger or not all(sc.lossy(x[0], x[1]) for x in a)))
        if told > STOCK[sku] + restock_max:
            fails.append(f"{sku}: OVERSOLD: clients were told {told} units sold of "
                         f"{STOCK[sku] + restock_max}")
        d = daemon.get(sku)
        if d is None:
            fails.append(f"{sku}: hotstock.available() has no answer")
            continue
        if d > available:
            fails.append(f"{sku}: daemon available {d} > table available {available}: "
                         "units the drain counts as sold would be sold again")
        held_total += max(0, available - d)
    stats["held_back"] = held_total
    return fails


def held_back(c):
    skulist = ",".join(f"'{s}'" for s in SKUS)
    rows = c.sql(f"SELECT s.sku, s.available - hotstock.available(s.sku) FROM hotstock.stock s "
                 f"WHERE s.sku IN ({skulist})")
    return sum(int(d) for _, d in rows)


def clean_restart_daemon(c):
    """Stop the daemon cleanly (smart) and start it again from disk."""
    rc, out, err = run(as_pg([os.path.join(BIN, "hotstockd"), "stop", "-D", c.hs_dir,
                              "--mode", "smart"]), timeout=60)
    if rc != 0:
        raise RuntimeError(f"hotstockd stop (smart) exited {rc}: {(out + err).strip()}")
    wait_until("daemon gone", lambda: c.daemon_pid() is None, 30)
    c.start()


# -------------------------------------------------------------------------
# Live faults
# -------------------------------------------------------------------------
def kill_postmaster_tree(c):
    pm = c.postmaster_pid()
    if not pm:
        return
    kids = proc_children(pm)
    os.kill(pm, signal.SIGKILL)
    end = time.time() + 10
    while time.time() < end and any(pid_alive(k) for k in kids):
        time.sleep(0.05)
    for k in kids:
        if pid_alive(k) and "postgres" in cmdline(k):
            say(f"    postmaster child {k} ({cmdline(k).strip()}) still there after 10 s: SIGKILL")
            os.kill(k, signal.SIGKILL)
    wait_until("postmaster children gone", lambda: not any(pid_alive(k) for k in kids), 10)


def fault_daemon_kill(c, load, it, note):
    pid = c.daemon_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until("daemon dead", lambda: not pid_alive(pid), 10)
    if it % 2 == 1:
        time.sleep(0.5)  # let the clients meet the dead daemon for a while
    c.start()


def fault_client_kill(c, load, it, note):
    """SIGKILL libhotstock clients in mid-call: the regular client once, and
    a few unthrottled ones (always inside a call) right after they start."""
    pids = load.c_pids()
    if not pids:
        raise RuntimeError("no crash_load process to kill")
    os.kill(pids[0], signal.SIGKILL)
    load.start_c()  # the application comes back with a new process
    kills = 1
    for _ in range(CLIENT_KILLS):
        victim = load.start_c(rate=0, threads=2)
        wait_until("victim runs", lambda: [k for k in ([victim.pid] + proc_children(victim.pid))
                                           if "crash_load" in cmdline(k) and
                                           "runuser" not in cmdline(k)], 10, 0.01)
        time.sleep(0.15 + random.random() * 0.2)
        for k in [victim.pid] + proc_children(victim.pid):
            if "crash_load" in cmdline(k) and "runuser" not in cmdline(k):
                os.kill(k, signal.SIGKILL)
                kills += 1
        victim.wait()
    note.append(f"{kills} clients killed")


def pick_backend(c, function):
    """A crash_sqlload backend running hotstock.<function> right now (or,
    failing that within 6 s, the other function; then any): (pid, what)."""
    for fn, seconds in ((function, 6), ("refund" if function == "deduct" else "deduct", 3)):
        q = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_sqlload' "
             f"AND state = 'active' AND query LIKE '%hotstock.{fn}%' LIMIT 1")
        end = time.time() + seconds
        while time.time() < end:
            rows = c.try_sql(q, timeout=5)
            if rows:
                return int(rows[0][0]), f"mid-{fn}"
    rows = c.try_sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_sqlload' "
                     "LIMIT 1")
    return (int(rows[0][0]), "idle backend") if rows else (None, None)


def wait_pg_back(c, old_drain=None):
    wait_until("PostgreSQL back after crash recovery", c.pg_ready, 60, 0.2)
    wait_until("drain worker back", lambda: c.drain_pid() not in (None, old_drain), 60, 0.2)


def fault_backend_kill(c, load, it, note):
    function = "deduct" if it % 2 == 0 else "refund"
    pid, what = pick_backend(c, function)
    if pid is None:
        raise RuntimeError("no crash_sqlload backend found")
    drain = c.drain_pid()
    os.kill(pid, signal.SIGKILL)
    note.append(what)
    wait_pg_back(c, drain)


def fault_postmaster_kill(c, load, it, note):
    kill_postmaster_tree(c)
    c.start()
    wait_pg_back(c)


def fault_drain_kill(c, load, it, note):
    drain = wait_until("drain worker running", c.drain_pid, 30)
    # mid-batch: wait until there is something to drain
    try:
        wait_until("drain has work", lambda: (lambda s: s[1] > s[3])(c.status()), 5, 0.01)
        note.append("mid-batch")
    except TimeoutError:
        note.append("drain idle")
    os.kill(drain, signal.SIGKILL)
    wait_pg_back(c, drain)


def fault_power_loss(sc, c, load, it, note, fails):
    dpid = c.daemon_pid()
    pm = c.postmaster_pid()
    if pm:
        os.kill(pm, signal.SIGSTOP)  # first: a stopped postmaster forks no more children
    kids = proc_children(pm) if pm else []
    # The machine stops at once: the daemon and every PostgreSQL process of
    # this cluster freeze together, so none of them (the drain above all,
    # which syncs the queue files itself when it finds the daemon silent)
    # acts between the moment durable_lsn is read and the cut.
    os.kill(dpid, signal.SIGSTOP)
    for p in kids:
        try:
            os.kill(p, signal.SIGSTOP)
        except ProcessLookupError:
            pass  # exited by itself meanwhile
    h = c.header()
    durable, checkpoint = h.get("durable_lsn", 0), h.get("checkpoint_lsn", 0)
    load.kill_all()
    cut_us = now_us()  # the applications die with the machine
    for p in kids + ([pm] if pm else []):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kill_postmaster_tree(c)
    wait_until("postmaster children gone", lambda: not any(pid_alive(k) for k in kids), 10)
    os.kill(dpid, signal.SIGKILL)
    os.kill(dpid, signal.SIGCONT)
    wait_until("daemon dead", lambda: not pid_alive(dpid), 10)
    sc.powerloss_us.append(cut_us)
    with open(os.path.join(c.log_dir, "powerloss"), "a") as f:
        f.write(f"{cut_us}\n")  # for a post-mortem check of a kept cluster
    if checkpoint > durable:
        fails.append(f"checkpoint_lsn {checkpoint} > durable_lsn {durable} at the power loss")
    # the lost bytes read as zeros (the file was allocated ahead of its
    # records) or are gone (a file that grew as it was written): both
    mode = "zero" if it % 2 == 0 else "truncate"
    rc, out, err = tool(["powercut", c.hs_dir, str(durable), mode])
    if rc != 0:
        raise RuntimeError(f"powercut failed: {err.strip()}")
    note.append(f"cut after LSN {durable} (next was {h.get('next_lsn')})")
    tool(["unlink", c.hs_dir])
    # the stale pid file of the dead daemon stays, as after a real power loss
    c.start()
    wait_pg_back(c)
    # Records the power loss erased (LSN > durable_lsn, written before the
    # cut) must not be in the tables.  LSNs after durable_lsn are given out
    # again from the restart on (the drain's own compensations and late
    # refunds come at once), so a row's record time tells them apart.
    erased = int(c.sql(
        f"SELECT count(*) FROM hotstock.ledger WHERE lsn > {durable} AND "
        f"deducted_at < to_timestamp({cut_us} / 1e6)")[0][0])
    if erased:
        fails.append(f"{erased} deductions after durable_lsn {durable} and before the power "
                     "loss are in the ledger: records that a power loss erased were applied")
    return None


# -------------------------------------------------------------------------
# One live scenario: a cluster, N iterations of one fault
# -------------------------------------------------------------------------
class Phases:
    """Where an iteration's time goes (printed with its result)."""

    def __init__(self):
        self.t = time.time()
        self.parts = []

    def mark(self, name):
        now = time.time()
        self.parts.append(f"{name} {now - self.t:.1f}")
        self.t = now

    def __str__(self):
        return " ".join(self.parts)


class Result:
    def __init__(self, fault):
        self.fault = fault
        self.iterations = 0
        self.failed = 0
        self.held = 0
        self.returned = 0
        self.notes = {}
        self.values = {}
        self.sums = {}
        self.failures = []

    def note(self, text, value=None):
        """Count a note; with a value, keep the label's total (or, for
        cumulative figures, the last value)."""
        m = re.match(r"^(\d+) (.*)$", text)
        if value is None and m:
            label = m.group(2)
            self.sums[label] = self.sums.get(label, 0) + int(m.group(1))
        elif value is None:
            self.notes[text] = self.notes.get(text, 0) + 1
        else:
            self.values[text] = value

    def notes_text(self):
        parts = [f"{k} x{v}" if v > 1 else k for k, v in sorted(self.notes.items())]
        parts += [f"{v} {k}" for k, v in sorted(self.sums.items())]
        parts += [f"{k}: {v}" for k, v in sorted(self.values.items()) if v]
        return "; ".join(parts)


def live_iteration(sc, fault, it, res):
    """One iteration of one fault on sc's cluster: load, fault, recovery,
    quiescence, invariants, clean restart."""
    c = sc.cluster
    note = []
    fails = []
    t0 = time.time()
    ph = Phases()
    sc.loads += 1
    load = Load(c, sc.loads)
    try:
        load.wait_progress(min_seconds=LOAD_SECONDS)
        ph.mark("load")
        if fault == "daemon_kill":
            fault_daemon_kill(c, load, it, note)
        elif fault == "client_kill":
            fault_client_kill(c, load, it, note)
        elif fault == "backend_kill":
            fault_backend_kill(c, load, it, note)
        elif fault == "postmaster_kill":
            fault_postmaster_kill(c, load, it, note)
        elif fault == "drain_kill":
            fault_drain_kill(c, load, it, note)
        elif fault == "power_loss":
            fault_power_loss(sc, c, load, it, note, fails)
            sc.loads += 1
            load = Load(c, sc.loads)  # the applications come back
        elif fault == "disk_full":
            disk_full_fault(c, load, it, note, fails)
        ph.mark("fault")
        load.wait_progress(30, min_seconds=LOAD_SECONDS)  # service is back
        ph.mark("resume")
    except Exception as e:  # noqa: BLE001 - a fault the system did not survive
        fails.append(f"recovery: {e}")
    hung = load.stop()
    ph.mark("stop")
    if hung:
        fails.append(f"clients hung (killed after the bound): {', '.join(hung)}")
    stats = {}
    try:
        quiesce(c)
        ph.mark("drain")
        fails += check_invariants(sc, stats)
        ph.mark("check")
        held = stats.get("held_back", 0)
        clean_restart_daemon(c)
        quiesce(c)
        after = held_back(c)
        ph.mark("restart")
        if after != 0:
            fails.append(f"{after} units still held back after a clean restart ({held} before)")
        res.held += held
        res.returned += held - after
        # cumulative over the cluster's history: charge the increase
        for key, label in (("acked_sales", "acknowledged sales checked"),
                           ("acked_refunds", "acknowledged refunds checked"),
                           ("crashed_txn_compensated",
                            "transactions killed before COMMIT, compensated by the drain"),
                           ("refunds_deferred",
                            "refunds the daemon could not take at commit, applied by the drain"),
                           ("lost_unsynced_deducts", "unsynchronous deductions lost")):
            delta = stats.get(key, 0) - sc.seen.get(key, 0)
            sc.seen[key] = stats.get(key, 0)
            if delta > 0:
                res.note(f"{delta} {label}")
    except Exception as e:  # noqa: BLE001
        fails.append(f"check: {e}")
    new = [f for f in fails if f not in sc.known_failures]
    sc.known_failures.update(fails)
    res.iterations += 1
    for n in note:
        if not n.startswith("cut after"):
            res.note(n)
    if new:
        res.failed += 1
        res.failures.extend(f"it {it}: {f}" for f in new)
        say(f"{fault} #{it}: FAILED ({time.time() - t0:.1f}s: {ph})")
        for f in new[:10]:
            say(f"    {f}")
        say(f"    daemon log: {c.daemon_log_tail(3).strip()}")
    else:
        say(f"{fault} #{it}: ok ({time.time() - t0:.1f}s: {ph}; {'; '.join(note)}"
            f"{'; ' if note else ''}held back {stats.get('held_back', '?')})")
    if os.environ.get("CRASH_VERBOSE"):
        for line in load.summaries():
            if line:
                say(f"    {line}")


def live_group(name, plan, results):
    """Run plan [(fault, iterations, Result)] on one cluster, in order."""
    c = Cluster(name)
    say(f"{name}: creating cluster in {c.run_dir}")
    try:
        c.create()
        sc = Scenario(c)
        sc.setup_skus()
    except Exception as e:  # noqa: BLE001
        for fault, _, res in plan:
            res.failed += 1
            res.iterations = max(res.iterations, 1)
            res.failures.append(f"cluster: {e}")
        say(f"{name}: could not create the cluster: {e}")
        c.destroy()
        return
    failed = False
    try:
        for fault, iterations, res in plan:
            tmpfs = None
            try:
                if fault == "disk_full":
                    tmpfs = disk_full_setup(c)
                for it in range(iterations):
                    if it > 0 and time.time() > DEADLINE:
                        res.note(f"{iterations - it} iterations skipped (time budget)")
                        break
                    live_iteration(sc, fault, it, res)
            except Exception as e:  # noqa: BLE001 - the fault could not run at all
                res.failed += 1
                res.iterations = max(res.iterations, 1)
                res.failures.append(f"scenario: {e}")
                say(f"{fault}: could not run: {e}")
            finally:
                if tmpfs:
                    disk_full_teardown(c)
            failed = failed or res.failed > 0
    finally:
        c.stop()
        if not failed and not os.environ.get("CRASH_KEEP"):
            c.destroy()
        else:
            say(f"{name}: kept {c.run_dir} for inspection")


# -------------------------------------------------------------------------
# Disk full
# -------------------------------------------------------------------------
TMPFS_SIZE = "24m"


def disk_full_setup(c):
    """Move the queue onto a small tmpfs (everything stopped meanwhile)."""
    qdir = os.path.join(c.hs_dir, "queue")
    c.stop()
    saved = qdir + ".saved"
    os.rename(qdir, saved)
    os.mkdir(qdir)
    run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "hs-crash-full", qdir],
        check=True)
    if RUNAS:
        shutil.chown(qdir, RUNAS, RUNAS)
    for f in os.listdir(saved):
        shutil.copy2(os.path.join(saved, f), os.path.join(qdir, f))
        if RUNAS:
            shutil.chown(os.path.join(qdir, f), RUNAS, RUNAS)
    shutil.rmtree(saved)
    c.start()
    return qdir


def disk_full_teardown(c):
    qdir = os.path.join(c.hs_dir, "queue")
    filler = os.path.join(qdir, "filler")
    if os.path.exists(filler):
        os.unlink(filler)
    c.stop()
    run(["umount", qdir])


def probe(c, n):
    """One deduction through libhotstock: its result name and message."""
    rc, out, err = tool(["probe", c.hs_dir, PROBE_SKU, f"probe-{n}-{now_us()}"])
    return out.strip() + err.strip()


def short(msg):
    """A message for the table: one line, paths and source locations out."""
    msg = re.sub(r"LOCATION:.*", "", " ".join(msg.split()))
    msg = re.sub(r"/\S+/hotstock\b", "DIR", msg)
    return msg.strip()[:150]


class DiskFiller(threading.Thread):
    """Keep the filesystem of path full with one file: unbuffered writes
    until ENOSPC, again every 5 ms until stopped, so that space the daemon
    frees (queue files the drain applied, recycled) is taken back at once."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.halt = threading.Event()
        self.full = threading.Event()  # set once the first fill hit ENOSPC

    def run(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            while not self.halt.is_set():
                for size in (1 << 20, 4096, 512):
                    chunk = b"\xa5" * size
                    try:
                        while True:
                            os.write(fd, chunk)
                    except OSError:
                        pass
                self.full.set()
                self.halt.wait(0.005)
        finally:
            os.close(fd)

    def stop(self):
        self.halt.set()
        self.join()
        if os.path.exists(self.path):
            os.unlink(self.path)


def disk_full_fault(c, load, it, note, fails):
    qdir = os.path.join(c.hs_dir, "queue")
    filler = DiskFiller(os.path.join(qdir, "filler"))
    filler.start()
    if not filler.full.wait(30):
        fails.append("disk full: the filler did not fill the queue filesystem in 30 s")
    # The writer allocates its newest file up to 1 MiB ahead of its records
    # (shmd/format/queue_file.c, PREALLOCATED SPACE), and records written
    # into that space need no more of the disk.  Use it up: 20,000
    # durable deductions take more than 1 MiB.  The deduction whose record
    # cannot be written keeps waiting in SQL (hotstock.deduct waits through
    # the daemon's write errors: the record is published and will be
    # written), so the statement runs beside the checks and ends once space
    # returns; statement_timeout bounds it should psql be killed.
    fill = subprocess.Popen(["psql", "-X", "-tA", "-c",
                             f"SELECT count(hotstock.deduct('{PROBE_SKU}', 1, "
                             f"'probe-fill-{it}-{now_us()}-' || g)) "
                             "FROM generate_series(1, 20000) g"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(c.env, PGOPTIONS="-c statement_timeout=120s"), cwd="/")
    try:
        disk_full_while_filled(c, it, note, fails)
    finally:
        try:
            filler.stop()
        finally:
            try:
                fill.wait(60)
            except subprocess.TimeoutExpired:
                fill.kill()
                fill.wait()
                fails.append("disk full: the statement that used up the allocated space did "
                             "not end within 60 s of space returning")
    try:
        wait_until("spill_errno cleared", lambda: c.header().get("spill_errno") == 0, 30, 0.05)
        answer = wait_until("a deduction succeeds again",
                            lambda: (lambda a: a if a.startswith("ok") else None)(probe(c, it)),
                            30, 0.2)
    except TimeoutError as e:
        fails.append(f"disk full: service did not resume once space returned: {e}")


def disk_full_while_filled(c, it, note, fails):
    try:
        h = wait_until("spill_errno published", lambda: (lambda h: h if h.get("spill_errno") else None)
                       (c.header()), 20, 0.05)
        note.append(f"spill_errno {h['spill_errno']}")
    except TimeoutError:
        fails.append("disk full: header.spill_errno never became non-zero while the queue "
                     "filesystem was full")
    # a deduction while the disk is full must fail with a clear error
    answer = probe(c, it)
    if not answer.startswith("io_error"):
        fails.append(f"disk full: a deduction answered '{answer[:200]}', expected io_error")
    else:
        note.append("hs_deduct -> " + short(answer))
    rc, out, err = run(["psql", "-X", "-tA", "-v", "VERBOSITY=verbose", "-c",
                        f"SELECT hotstock.deduct('{PROBE_SKU}', 1, 'probe-sql-{it}-{now_us()}')"],
                       timeout=30, env=c.env)
    if rc == 0:
        fails.append(f"disk full: SQL deduct answered {out.strip()} instead of an error")
    else:
        note.append("SQL deduct -> " + short(err))
    time.sleep(1.0)  # the load meets the full disk for a while


# -------------------------------------------------------------------------
# Corrupt queue files (a scratch directory per case, no PostgreSQL)
# -------------------------------------------------------------------------
CORRUPTIONS = [
    # name, does the daemon start (True) or refuse (False)
    ("bitflip_last_record", True),
    ("bitflip_middle_of_newest", False),
    ("bitflip_older_file", False),
    ("truncate_newest_mid_record", True),
    ("truncate_older_file", False),
    ("garbage_newest_file", False),
    ("stray_file_inside_range", False),
    ("wrong_magic", False),
    ("wrong_version", False),
    ("zeroed_header_with_records", False),
    ("empty_newest_file", True),
    ("zero_tail_newest", True),
    ("bitflip_checkpoint", False),
]


def layout(d):
    rc, out, err = tool(["layout", d])
    files, recs = [], []
    for line in out.splitlines():
        p = line.split("\t")
        if p[0] == "file":
            files.append({"path": p[1], "first": int(p[2]), "size": int(p[3]), "recs": []})
        elif p[0] == "rec":
            r = {"path": p[1], "off": int(p[2]), "len": int(p[3]), "lsn": int(p[4]),
                 "type": p[5], "sku": p[6], "delta": int(p[7])}
            files[-1]["recs"].append(r)
            recs.append(r)
    return files, recs


def fold(recs, upto):
    acc = {}
    for r in recs:
        if r["lsn"] <= upto and r["sku"] != "-":
            acc[r["sku"]] = acc.get(r["sku"], 0) + r["delta"]
    return acc


def flip_bit(path, off, rng):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))


def write_as_pg(path, data):
    with open(path, "wb") as f:
        f.write(data)
    if RUNAS:
        shutil.chown(path, RUNAS, RUNAS)


def run_daemon_foreground(d, timeout=20):
    """Start hotstockd on d in the foreground; return ('started', proc, out)
    once READY, or ('exited', returncode, out)."""
    outp = os.path.join(d, "foreground.out")
    f = open(outp, "w")
    p = subprocess.Popen(as_pg([os.path.join(BIN, "hotstockd"), "start", "-D", d,
                                "--foreground"]), stdout=f, stderr=subprocess.STDOUT, cwd="/")
    end = time.time() + timeout
    while time.time() < end:
        rc = p.poll()
        if rc is not None:
            f.close()
            return "exited", rc, open(outp, errors="replace").read() + daemon_log(d)
        if tool_header(d).get("state") == 2:
            return "started", p, ""
        time.sleep(0.05)
    p.kill()
    p.wait()
    return "hung", None, open(outp, errors="replace").read() + daemon_log(d)


def daemon_log(d):
    try:
        with open(os.path.join(d, "hotstockd.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def stop_daemon(d, p):
    rc, out, err = run(as_pg([os.path.join(BIN, "hotstockd"), "stop", "-D", d]), timeout=60)
    try:
        prc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        prc = p.wait()
    return rc, prc


def corrupt_case(base, it, res):
    name, starts = CORRUPTIONS[it % len(CORRUPTIONS)]
    rng = random.Random(it * 7919 + 17)
    d = os.path.join(base, f"{it:03d}-{name}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(base, exist_ok=True)
    if RUNAS:
        shutil.chown(base, RUNAS, RUNAS)
    rc, out, err = tool(["mkqueue", d, str(400 + rng.randrange(200)), "4096", str(it + 1)])
    if rc != 0:
        return [f"mkqueue: {err.strip()}"], name
    files, recs = layout(d)
    last = recs[-1]["lsn"]
    newest, older = files[-1], files[:-1]
    fails = []
    expect_upto = last  # records the daemon must have folded when it starts
    bad_path = None
    bad_lsn = None  # refused cases: the reader must return nothing from this LSN on

    if name == "bitflip_last_record":
        r = newest["recs"][-1]
        flip_bit(r["path"], r["off"] + rng.randrange(r["len"]), rng)
        expect_upto, bad_path = r["lsn"] - 1, r["path"]
    elif name == "bitflip_middle_of_newest":
        r = newest["recs"][rng.randrange(len(newest["recs"]) - 1)]
        flip_bit(r["path"], r["off"] + rng.randrange(r["len"]), rng)
        bad_path, bad_lsn = r["path"], r["lsn"]
    elif name == "bitflip_older_file":
        f = older[rng.randrange(len(older))]
        r = f["recs"][rng.randrange(len(f["recs"]))]
        flip_bit(r["path"], r["off"] + rng.randrange(r["len"]), rng)
        bad_path, bad_lsn = r["path"], r["lsn"]
    elif name == "truncate_newest_mid_record":
        r = newest["recs"][rng.randrange(len(newest["recs"]))]
        cut = r["off"] + 1 + rng.randrange(r["len"] - 1)
        os.truncate(r["path"], cut)
        expect_upto, bad_path = r["lsn"] - 1, r["path"]
    elif name == "truncate_older_file":
        f = older[rng.randrange(len(older))]
        r = f["recs"][rng.randrange(len(f["recs"]))]
        os.truncate(r["path"], r["off"] + rng.randrange(r["len"]))
        bad_path, bad_lsn = r["path"], r["lsn"]
    elif name == "garbage_newest_file":
        bad_path = os.path.join(d, "queue", f"{last + 1:016x}.hsq")
        write_as_pg(bad_path, bytes(rng.randrange(1, 256) for _ in range(64 + rng.randrange(400))))
        bad_lsn = last + 1
    elif name == "stray_file_inside_range":
        f = files[rng.randrange(len(files))]
        lsn = f["recs"][1]["lsn"]  # inside f's range, after its first record
        bad_path = os.path.join(d, "queue", f"{lsn:016x}.hsq")
        with open(f["path"], "rb") as src:
            write_as_pg(bad_path, src.read())
        bad_lsn = f["recs"][-1]["lsn"] + 1  # the reader must not go on past f
    elif name == "wrong_magic":
        f = files[rng.randrange(len(files))]
        with open(f["path"], "r+b") as fh:
            fh.write(b"HSTKQUE9")
        bad_path, bad_lsn = f["path"], f["first"]
    elif name == "wrong_version":
        f = files[rng.randrange(len(files))]
        rc, out, err = tool(["setversion", f["path"], "next"])
        if rc != 0:
            return [f"setversion: {err.strip()}"], name
        bad_path, bad_lsn = f["path"], f["first"]
    elif name == "zeroed_header_with_records":
        with open(newest["path"], "r+b") as fh:
            fh.write(bytes(64))
        bad_path, bad_lsn = newest["path"], newest["first"]
    elif name == "empty_newest_file":
        write_as_pg(os.path.join(d, "queue", f"{last + 1:016x}.hsq"), b"")
    elif name == "zero_tail_newest":
        with open(newest["path"], "ab") as fh:
            fh.write(bytes(8 * (1 + rng.randrange(40))))
    elif name == "bitflip_checkpoint":
        state, p, out = run_daemon_foreground(d)
        if state != "started":
            return [f"pristine queue: daemon {state} ({p}): {out.strip()[-300:]}"], name
        stop_daemon(d, p)
        ck = os.path.join(d, "checkpoint")
        if not os.path.exists(ck):
            return ["no checkpoint file after a clean stop"], name
        flip_bit(ck, rng.randrange(os.path.getsize(ck)), rng)
        bad_path = ck

    # the drain's reader must not return anything past a corruption
    if not starts and name != "bitflip_checkpoint":
        rc, out, err = tool(["readq", d, "1"])
        m = re.match(r"read\t(\d+)\t(\d+)\t(-?\d+)", out)
        if m and bad_lsn is not None and int(m.group(2)) >= bad_lsn:
            fails.append(f"queue reader returned LSN {m.group(2)} at or past the corruption at "
                         f"LSN {bad_lsn} ({os.path.basename(bad_path)}): {out.strip()[:300]}")
        elif rc >= 128 or rc < 0:
            fails.append(f"queue reader crashed (exit {rc})")

    state, p, out = run_daemon_foreground(d)
    if state == "hung":
        fails.append(f"daemon neither started nor exited in 20 s: {out.strip()[-300:]}")
    elif state == "exited":
        rc = p
        if rc < 0 or rc >= 128:
            fails.append(f"daemon CRASHED (exit {rc}) on {name}: {out.strip()[-300:]}")
        elif starts:
            fails.append(f"daemon refused a queue it should recover (exit {rc}): "
                         f"{out.strip()[-300:]}")
        elif bad_path and os.path.basename(bad_path) not in out:
            fails.append(f"daemon refused (exit {rc}) without naming {os.path.basename(bad_path)}: "
                         f"{out.strip()[-300:]}")
        else:
            res.note(f"refused (exit {rc})")
    else:
        try:
            if not starts:
                fails.append(f"daemon STARTED on a corrupt queue ({name}, "
                             f"{os.path.basename(bad_path or '')})")
            want = fold(recs, expect_upto)
            rc, out, err = tool(["counters", d] + sorted(want))
            got = {}
            for line in out.splitlines():
                k, _, v = line.partition("\t")
                got[k] = int(v) if v.lstrip("-").isdigit() else v
            if got != want:
                fails.append(f"counters after recovery {got}, the valid records fold to {want} "
                             f"(records up to LSN {expect_upto})")
            said = (daemon_log(d) + open(os.path.join(d, "foreground.out"),
                                          errors="replace").read()).lower()
            if starts and expect_upto < last and "torn" not in said and "cut" not in said:
                fails.append("a torn tail was cut without a log line saying so")
            if starts:
                res.note("recovered" + (" (tail cut)" if expect_upto < last else ""))
        finally:
            rc, prc = stop_daemon(d, p)
            if prc != 0:
                fails.append(f"daemon exited {prc} at a clean stop after recovery")
    if not fails and not os.environ.get("CRASH_KEEP"):
        shutil.rmtree(d, ignore_errors=True)
    return fails, name


def program_scenario(prog, label, iterations, res):
    """A crash program (holds_crash.c, basket_crash.c, buyer_crash.c): ITERATIONS
    iterations against its own daemon; it checks its own invariants and
    prints one line per iteration."""
    env = dict(os.environ, HOTSTOCKD=os.path.join(BIN, "hotstockd"))
    try:
        p = subprocess.run([os.path.join(BIN, prog), str(iterations)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60 + 20 * iterations)
        out = p.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += f"\n{prog}: timed out"
    seen = 0
    for line in out.splitlines():
        m = re.match(r"^iteration (\d+) \((\w+)\): (ok|FAILED: (.*?)) \(", line)
        if m:
            seen += 1
            res.iterations += 1
            res.note(m.group(2))
            if m.group(3) != "ok":
                res.failed += 1
                res.failures.append(f"it {m.group(1)} {m.group(2)}: {m.group(4)}")
        say(f"{label}: {line}")
    if seen != iterations:
        res.iterations += 1
        res.failed += 1
        res.failures.append(f"{prog} ran {seen} of {iterations} iterations")


def corrupt_scenario(iterations, res):
    base = os.path.join(BASE, "corrupt")
    shutil.rmtree(base, ignore_errors=True)
    for it in range(iterations):
        if it >= len(CORRUPTIONS) and time.time() > DEADLINE:
            res.note(f"{iterations - it} iterations skipped (time budget)")
            break
        t0 = time.time()
        try:
            fails, name = corrupt_case(base, it, res)
        except Exception as e:  # noqa: BLE001
            fails, name = [f"harness: {e}"], CORRUPTIONS[it % len(CORRUPTIONS)][0]
        res.iterations += 1
        if fails:
            res.failed += 1
            res.failures.extend(f"it {it} {name}: {f}" for f in fails)
            say(f"corrupt_queue #{it} {name}: FAILED ({time.time() - t0:.1f}s)")
            for f in fails:
                say(f"    {f}")
        else:
            say(f"corrupt_queue #{it} {name}: ok ({time.time() - t0:.1f}s)")
    if res.failed == 0 and not os.environ.get("CRASH_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


# -------------------------------------------------------------------------
# main
# -------------------------------------------------------------------------
FAULTS = ["daemon_kill", "client_kill", "backend_kill", "postmaster_kill", "drain_kill",
          "power_loss", "disk_full", "corrupt_queue", "hold_mix", "basket_mix", "buyer_mix"]
QUICK = {"daemon_kill": 3, "client_kill": 2, "backend_kill": 2, "postmaster_kill": 2,
         "drain_kill": 2, "power_loss": 2, "disk_full": 2, "corrupt_queue": 13, "hold_mix": 3,
         "basket_mix": 3, "buyer_mix": 3}
LONG = {"daemon_kill": 40, "client_kill": 20, "backend_kill": 30, "postmaster_kill": 20,
        "drain_kill": 20, "power_loss": 30, "disk_full": 10, "corrupt_queue": 130,
        "hold_mix": 30, "basket_mix": 30, "buyer_mix": 30}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["quick", "long"])
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--iterations", type=int, default=0)
    args = ap.parse_args()
    counts = QUICK if args.mode == "quick" else LONG
    faults = [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in FAULTS:
            say(f"unknown fault {f}; known: {', '.join(FAULTS)}")
            return 2
    os.makedirs(BASE, exist_ok=True)
    global LOAD_SECONDS, DEADLINE
    LOAD_SECONDS = 1.0 if args.mode == "quick" else 2.0
    budget = float(os.environ.get("CRASH_BUDGET", "300" if args.mode == "quick" else "0"))
    if budget > 0:
        DEADLINE = time.time() + budget

    def terminate(signum, frame):
        raise SystemExit(f"{ME}: signal {signum}: stopping (clusters are stopped on the way out)")
    signal.signal(signal.SIGTERM, terminate)
    results = {f: Result(f) for f in faults}
    t0 = time.time()
    live = [(f, args.iterations or counts[f], results[f]) for f in faults
            if f not in ("corrupt_queue", "hold_mix", "basket_mix", "buyer_mix")]
    interrupted = None
    try:
        if live:
            if args.mode == "quick":
                # one cluster for every live fault (their checks are
                # cumulative; a failure is charged to the iteration that
                # first shows it)
                live_group("live", live, results)
            else:
                for item in live:
                    live_group(item[0], [item], results)
        if "corrupt_queue" in faults:
            corrupt_scenario(args.iterations or counts["corrupt_queue"],
                             results["corrupt_queue"])
        if "hold_mix" in faults:
            program_scenario("holds_crash", "hold_mix", args.iterations or counts["hold_mix"],
                             results["hold_mix"])
        if "basket_mix" in faults:
            program_scenario("basket_crash", "basket_mix",
                             args.iterations or counts["basket_mix"], results["basket_mix"])
        if "buyer_mix" in faults:
            program_scenario("buyer_crash", "buyer_mix",
                             args.iterations or counts["buyer_mix"], results["buyer_mix"])
    except SystemExit as e:
        interrupted = str(e)
    finally:
        for load in LOADS:
            if any(p.poll() is None for _, _, p in load.procs):
                load.kill_all()
    results = [results[f] for f in faults]

    print()
    print(f"{'fault':<18} {'iterations':>10} {'failed':>7} {'held back':>10} {'returned':>9}  notes")
    for r in results:
        notes = r.notes_text()
        print(f"{r.fault:<18} {r.iterations:>10} {r.failed:>7} {r.held:>10} {r.returned:>9}  "
              f"{notes}")
    for r in results:
        for f in r.failures[:20]:
            print(f"  {r.fault}: {f}")
    passed = sum(r.iterations - r.failed for r in results)
    failed = sum(r.failed for r in results)
    if interrupted:
        say(f"interrupted: {interrupted}")
        failed += 1
    say(f"{time.time() - t0:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
