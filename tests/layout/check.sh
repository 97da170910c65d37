#!/usr/bin/env bash
# tests/layout/check.sh — the layout rules of the tree, checked on what
# `make all` built (run it after make; it builds nothing).
#
#   (a) no call circles: the file-level call graph of shmd/ and pg_ext/
#       (an undefined symbol in A.o that B.o defines is an edge A -> B,
#       read with nm) and the include graph of their own headers have no
#       cycle; a cycle is printed file by file.
#   (b) hotstock.so holds no daemon-only or format-writer symbol: the list
#       is every global symbol the objects of shmd/daemon/ and of
#       shmd/libhotstock_writer.a define (not a hand-kept list).
#   (c) shmd/hotstockd links the format writers and the client library: it
#       defines symbols of every writer object and of libhotstock.a.
#   (d) no .c file in the tree has 900 lines or more.
#
# Prints one line per failure and ends with "N passed, N failed"; the exit
# status is non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2

if ! command -v nm >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
    echo "layout: needs nm (binutils) and python3"
    echo "0 passed, 1 failed"
    exit 1
fi

python3 - <<'EOF'
import glob, os, re, subprocess, sys

passed = failed = 0


def ok():
    global passed
    passed += 1


def fail(msg):
    global failed
    failed += 1
    print("FAIL: " + msg)


def nm(path, *flags):
    """(defined global symbols, undefined symbols) of an object or binary"""
    out = subprocess.run(["nm", *flags, path], capture_output=True, text=True)
    if out.returncode != 0:
        return None, None
    defined, undefined = set(), set()
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRGSVWi":
            defined.add(f[2])
        elif len(f) == 2 and f[0] in ("U", "w"):
            undefined.add(f[1])
    return defined, undefined


def cycles(edges):
    """every elementary cycle found by a DFS, each once (as a node list)"""
    found, seen_sets = [], set()
    color = {}

    def dfs(n, stack):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                key = frozenset(cyc)
                if key not in seen_sets:
                    seen_sets.add(key)
                    found.append(cyc)
            elif color.get(m) is None:
                dfs(m, stack)
        stack.pop()
        color[n] = 2

    for n in sorted(edges):
        if color.get(n) is None:
            dfs(n, [])
    return found


# ---- (a) call graph from nm, one graph per program -------------------------
lib_objs = sorted(glob.glob("shmd/lib/*.o") + glob.glob("shmd/format/*.o"))
groups = {
    "the daemon": sorted(glob.glob("shmd/daemon/*.o")) + lib_objs,
    "the extension": sorted(glob.glob("pg_ext/*.o")) + lib_objs,
}
if not glob.glob("shmd/daemon/*.o") or not glob.glob("pg_ext/*.o") or not lib_objs:
    fail("no objects under shmd/ or pg_ext/: run make all first")
for what, objs in groups.items():
    definer, uses = {}, {}
    for o in objs:
        d, u = nm(o)
        if d is None:
            fail(f"nm {o} failed")
            continue
        uses[o] = u
        for s in d:
            definer.setdefault(s, o)
    edges = {}
    for o, u in uses.items():
        for s in u:
            t = definer.get(s)
            if t is not None and t != o:
                edges.setdefault(o, {}).setdefault(t, []).append(s)
    cyc = cycles({a: set(b) for a, b in edges.items()})
    if cyc:
        for c in cyc:
            steps = []
            for a, b in zip(c, c[1:]):
                steps.append(f"{a} -({', '.join(sorted(edges[a][b])[:3])})-> {b}")
            fail(f"call cycle in {what}: " + "; ".join(steps))
    else:
        ok()

# ---- (a) include graph of our own headers ----------------------------------
sources = sorted(glob.glob("shmd/*/*.[ch]") + glob.glob("pg_ext/*.[ch]"))
by_name = {}
for p in sources:
    if p.endswith(".h"):
        by_name.setdefault(os.path.basename(p), p)
inc = {}
for p in sources:
    for line in open(p, errors="replace"):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if m and os.path.basename(m.group(1)) in by_name:
            t = by_name[os.path.basename(m.group(1))]
            if t != p:
                inc.setdefault(p, set()).add(t)
cyc = cycles(inc)
if cyc:
    for c in cyc:
        fail("include cycle: " + " -> ".join(c))
else:
    ok()

# ---- (b) hotstock.so holds no daemon-only or writer symbol -----------------
writer_objs = []
if os.path.exists("shmd/libhotstock_writer.a"):
    names = subprocess.run(["ar", "t", "shmd/libhotstock_writer.a"], capture_output=True,
                           text=True).stdout.split()
    writer_objs = [p for n in names for p in glob.glob("shmd/format/" + n)]
if not writer_objs:
    fail("shmd/libhotstock_writer.a is missing or empty: run make all first")
forbidden = {}
for o in sorted(glob.glob("shmd/daemon/*.o")) + writer_objs:
    d, _ = nm(o)
    for s in d or ():
        if s != "main":
            forbidden[s] = o
so_defined, _ = nm("hotstock.so", "--defined-only") if os.path.exists("hotstock.so") else (None, None)
if so_defined is None:
    fail("no hotstock.so: run make all first")
else:
    leaked = sorted(s for s in so_defined if s in forbidden)
    if leaked:
        for s in leaked:
            fail(f"hotstock.so contains {s} (defined by {forbidden[s]}: daemon or format writer only)")
    elif not forbidden:
        fail("found no daemon or writer symbols to check hotstock.so against")
    else:
        ok()

# ---- (c) the daemon links the writers and the library ----------------------
d_defined, _ = nm("shmd/hotstockd") if os.path.exists("shmd/hotstockd") else (None, None)
if d_defined is None:
    fail("no shmd/hotstockd: run make all first")
else:
    bad = False
    for o in writer_objs:
        d, _ = nm(o)
        if not d or not (d & d_defined):
            fail(f"shmd/hotstockd does not link the format writer {o}")
            bad = True
    lib_syms = set()
    for o in lib_objs:
        d, _ = nm(o)
        lib_syms |= d or set()
    if not (lib_syms & d_defined):
        fail("shmd/hotstockd does not link the client library (shmd/libhotstock.a)")
        bad = True
    if not bad:
        ok()

# ---- (d) no .c file of 900 lines or more ----------------------------------
# (git may not be installed, or the tree may be a copy without .git: then
# every .c file below the top, outside hidden folders)
try:
    listed = subprocess.run(["git", "ls-files", "*.c"], capture_output=True, text=True)
except OSError:
    listed = None
cfiles = listed.stdout.split() if listed and listed.returncode == 0 and listed.stdout else \
    [p for p in glob.glob("**/*.c", recursive=True) if not p.startswith(".")]
big = []
for p in sorted(cfiles):
    if os.path.exists(p):
        n = sum(1 for _ in open(p, errors="replace"))
        if n >= 900:
            big.append((p, n))
for p, n in big:
    fail(f"{p} has {n} lines (the limit is 899: split it by job)")
if not big:
    ok()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
