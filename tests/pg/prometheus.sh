#!/usr/bin/env bash
# tests/pg/prometheus.sh — packaging/prometheus/hotstock-queries.yaml against
# a real cluster.
#
# Every query of the file runs through psql as hotstock_app (the role the
# file tells exporters to use): its columns must be the metrics the file
# declares, in order, each usage LABEL, GAUGE or COUNTER with a
# description, every non-label value a number (or NULL).  Then the values
# must be the views': a SKU with deductions, sold-out attempts and a
# refund shows the counts of hotstock.sku_stats in hotstock_sku, a SKU
# hammered with attempts shows in hotstock_hot_sku with the rank of
# hotstock.hot_skus, hotstock_status says the daemon is up and counts the
# SKUs hotstock.status counts.
#
# When postgres_exporter is there ($POSTGRES_EXPORTER, else
# prometheus-postgres-exporter or postgres_exporter on PATH; Debian 12's
# package prometheus-postgres-exporter), it also runs the real exporter
# with the file and checks those values in its /metrics.  It is not part
# of the CI's packages (a Go daemon for one check: what breaks a query
# file is its SQL and its columns, which the psql part covers), so there
# the exporter part says "skipped".
#
# Environment as in lib.bash.  Prints `N passed, N failed`; a few seconds.
set -uo pipefail
. "$(dirname "$0")/lib.bash"

QUERIES=$REPO/packaging/prometheus/hotstock-queries.yaml
SKU=prom-$RUN_ID
HOT=promhot-$RUN_ID

cluster_start || {
    fail "cluster start"
    finish
}
q "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS hotstock" >/dev/null
check "the query file exists" test -f "$QUERIES"

# a SKU with every kind we can make here: 3 deducts, 2 sold out, 1 refund
q "SELECT hotstock.put_sku('$SKU', 3)" >/dev/null
q "SELECT count(hotstock.deduct('$SKU', 1, '$SKU-' || g)) FROM generate_series(1, 5) g" >/dev/null
q "SELECT hotstock.refund('$SKU-1')" >/dev/null
# a hot SKU: 5,000 sold-out attempts, then the daemon's next tick
q "SELECT hotstock.put_sku('$HOT', 0)" >/dev/null
q "SELECT count(hotstock.deduct('$HOT', 1, '$HOT-' || g)) FROM generate_series(1, 5000) g" >/dev/null
hot_ranked() { [ "$(q "SELECT count(*) FROM hotstock.hot_skus WHERE sku = '$HOT'")" = 1 ]; }
check "$HOT is in hotstock.hot_skus within 10 s" wait_for 10 hot_ranked

# The psql part, and the exporter's when there is one: python3 prints one
# "ok LABEL" or "FAILED LABEL" line per check.
EXPORTER=${POSTGRES_EXPORTER:-$(command -v prometheus-postgres-exporter || command -v postgres_exporter || true)}
while read -r verdict label; do
    case $verdict in
        ok) pass "$label" ;;
        FAILED) fail "$label" ;;
        *) say "$verdict $label" ;;
    esac
done < <(PSQL=$PSQL QUERIES=$QUERIES SKU=$SKU HOT=$HOT EXPORTER=$EXPORTER python3 - <<'PY' 2>&1
import csv, io, json, os, socket, subprocess, sys, time, urllib.request

try:
    import yaml
except ImportError:
    print("FAILED python3-yaml is installed (scripts/setup.sh installs it)")
    sys.exit(0)

psql, sku, hot = os.environ["PSQL"], os.environ["SKU"], os.environ["HOT"]

def verdict(ok, label):
    print(("ok " if ok else "FAILED ") + label, flush=True)
    return ok

def run(sql, role=None):
    """Rows of sql (a list of dicts, column order kept in the header)."""
    cmds = [psql, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1"]
    if role:
        cmds += ["-c", "SET ROLE " + role]
    out = subprocess.run(cmds + ["-c", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    r = list(csv.reader(io.StringIO(out.stdout)))
    return r[0], [dict(zip(r[0], row)) for row in r[1:]]

def number(v):
    if v == "":
        return True  # NULL: the exporter reports NaN
    try:
        float(v)
        return True
    except ValueError:
        return False

with open(os.environ["QUERIES"]) as f:
    spec = yaml.safe_load(f)
verdict(set(spec) == {"hotstock_status", "hotstock_sku", "hotstock_hot_sku"},
        "namespaces hotstock_status, hotstock_sku, hotstock_hot_sku")
results = {}
for ns, entry in spec.items():
    metrics = [(name, m) for item in entry["metrics"] for name, m in item.items()]
    verdict(all(m.get("usage") in ("LABEL", "GAUGE", "COUNTER") and m.get("description")
                for _, m in metrics), f"{ns}: every metric has a usage and a description")
    try:
        cols, rows = run(entry["query"], role="hotstock_app")
    except RuntimeError as e:
        verdict(False, f"{ns}: the query runs as hotstock_app ({e})")
        continue
    verdict(True, f"{ns}: the query runs as hotstock_app ({len(rows)} rows)")
    verdict(cols == [n for n, _ in metrics], f"{ns}: columns are the metrics, in order")
    values = [n for n, m in metrics if m.get("usage") != "LABEL"]
    verdict(all(number(r[c]) for r in rows for c in values), f"{ns}: every value is a number")
    results[ns] = rows

def one(rows, key, want):
    got = [r for r in rows if r.get(key) == want]
    return got[0] if len(got) == 1 else None

# the values are the views'
_, view = run(f"SELECT * FROM hotstock.sku_stats WHERE sku = '{sku}'")
row = one(results.get("hotstock_sku", []), "sku", sku)
verdict(row is not None and len(view) == 1, f"hotstock_sku has {sku}")
if row is not None and view:
    v = view[0]
    same = all(int(row[c]) == int(v[c]) for c in
               ("deducts", "sold_out_attempts", "refunds", "reserves", "expiries", "limit_refusals"))
    verdict(same and (row["deducts"], row["sold_out_attempts"], row["refunds"]) == ("3", "2", "1"),
            f"hotstock_sku counts = hotstock.sku_stats: deducts 3, sold out 2, refunds 1 "
            f"(got {row['deducts']}, {row['sold_out_attempts']}, {row['refunds']})")
    _, ts = run(f"SELECT extract(epoch FROM last_deduct_at) AS l, extract(epoch FROM stats_reset) AS r "
                f"FROM hotstock.sku_stats WHERE sku = '{sku}'")
    verdict(abs(float(row["last_deduct_seconds"]) - float(ts[0]["l"])) < 1e-3 and
            abs(float(row["stats_reset_seconds"]) - float(ts[0]["r"])) < 1e-3,
            "hotstock_sku times = the view's, in unix seconds")
_, status = run("SELECT daemon_up::integer AS up, sku_count FROM hotstock.status")
st = results.get("hotstock_status", [])
verdict(len(st) == 1 and st[0]["daemon_up"] == "1" and st[0]["sku_count"] == status[0]["sku_count"],
        "hotstock_status: daemon up, sku_count = hotstock.status's")
_, hv = run(f"SELECT rank FROM hotstock.hot_skus WHERE sku = '{hot}'")
hr = one(results.get("hotstock_hot_sku", []), "sku", hot)
# the daemon may publish between the two reads: ranks of one SKU move little
verdict(hr is not None and hv and abs(int(hr["rank"]) - int(hv[0]["rank"])) <= 1,
        f"hotstock_hot_sku has {hot} with the view's rank")

exporter = os.environ.get("EXPORTER")
if not exporter:
    print("skipped: the real exporter (no prometheus-postgres-exporter here)")
    sys.exit(0)
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
env = dict(os.environ)
env["DATA_SOURCE_NAME"] = (f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} "
                           f"user={os.environ['PGUSER']} dbname={os.environ['PGDATABASE']} "
                           "sslmode=disable")
proc = subprocess.Popen([exporter, f"--web.listen-address=127.0.0.1:{port}",
                         f"--extend.query-path={os.environ['QUERIES']}",
                         "--disable-default-metrics", "--disable-settings-metrics"],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    text = ""
    for _ in range(100):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            break
        except OSError:
            time.sleep(0.1)
    verdict(bool(text), f"{exporter} serves /metrics")
    samples = {}
    for line in text.splitlines():
        if line.startswith("hotstock_") and " " in line:
            name, val = line.rsplit(" ", 1)
            samples[name] = val
    def sample(metric, label=None):
        for name, val in samples.items():
            if name.split("{")[0] == metric and (label is None or f'sku="{label}"' in name):
                return float(val)
        return None
    verdict(sample("hotstock_status_daemon_up") == 1.0, "exporter: hotstock_status_daemon_up 1")
    verdict((sample("hotstock_sku_deducts", sku), sample("hotstock_sku_sold_out_attempts", sku),
             sample("hotstock_sku_refunds", sku)) == (3.0, 2.0, 1.0),
            f"exporter: hotstock_sku_deducts/sold_out_attempts/refunds of {sku} = 3, 2, 1")
    verdict(sample("hotstock_hot_sku_rank", hot) is not None, f"exporter: hotstock_hot_sku_rank of {hot}")
finally:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
PY
)
finish
