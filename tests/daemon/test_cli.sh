#!/usr/bin/env bash
# test_cli.sh — hotstockd's command line and its refusals, against the real
# binary: bad flags and conf lines, bad data directories, a second daemon,
# status of a stopped one, stop/start keeping every counter and order,
# files and segments of other format versions, a torn tail, damage in the
# middle of the queue, and a full disk.
#
#   bash tests/daemon/test_cli.sh        (after make; HOTSTOCKD overrides
#                                         the binary, ./shmd/hotstockd)
#
# Ends with "N passed, N failed"; exit status non-zero on any failure.
# Every daemon it starts is stopped at exit.  Waits poll with a bound.
set -u
cd "$(dirname "$0")/../.." || exit 2

BIN=${HOTSTOCKD:-./shmd/hotstockd}
BIN=$(readlink -f "$BIN")
pass=0
fail=0
TMP=$(mktemp -d /tmp/hs-cli-XXXXXX)
chmod 755 "$TMP"
started=()

cleanup() {
    for d in "${started[@]}"; do
        "$BIN" stop -D "$d" --mode immediate --timeout 10 >/dev/null 2>&1
        "$TMP/hs_drive" unlinkseg "$d" >/dev/null 2>&1
    done
    mountpoint -q "$TMP/full" && umount "$TMP/full"
    rm -rf "$TMP"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); }
# gone PID: no such process, or a zombie nobody reaped yet
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
not_ok() {
    fail=$((fail + 1))
    echo "FAIL: $*" >&2
}

# expect CODE TEXT cmd...: cmd exits with CODE and its stdout+stderr
# contains TEXT (fixed string; "" matches anything).
expect() {
    local want=$1 text=$2 out rc
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    if [[ $rc -eq $want ]] && grep -qF -- "$text" <<<"$out"; then
        ok
    else
        not_ok "$* -> exit $rc (want $want); output: ${out:-<none>}; wanted text: $text"
    fi
    LAST_OUT=$out
}

# check DESCRIPTION cmd...: cmd succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok; else not_ok "$what"; fi
}

if [[ ! -x $BIN ]]; then
    echo "no hotstockd binary at $BIN: run make"
    echo "0 passed, 1 failed"
    exit 1
fi
DRIVE=$TMP/hs_drive
# tests/daemon/hs_drive is built by the Makefile (make all), with header
# dependencies; a private copy keeps a rebuild during the run harmless.
if ! make -s tests/daemon/hs_drive >/dev/null 2>"$TMP/make.err" ||
    ! cp tests/daemon/hs_drive "$DRIVE"; then
    grep -v "recipe for target" "$TMP/make.err"
    echo "cannot build tests/daemon/hs_drive (run make first)"
    echo "0 passed, 1 failed"
    exit 1
fi

SMALL=(--sku-capacity 256 --order-capacity 16384 --ring-capacity 4096)
newdir() {
    local d
    d=$(mktemp -d "$TMP/d-XXXXXX")
    echo "$d"
}
start() { # start DIR [flags]: must succeed
    local d=$1
    shift
    started+=("$d")
    expect 0 "ready in $d" "$BIN" start -D "$d" "${SMALL[@]}" "$@"
}
stop() { expect 0 "stopped" "$BIN" stop -D "$1" "${@:2}"; }

# ---- bad flags: one line naming the setting, exit 2 ----
D=$(newdir)
expect 2 "no data directory" "$BIN" start
expect 2 "unknown command \"frobnicate\"" "$BIN" frobnicate -D "$D"
expect 2 "--sku-capacity \"abc\": not a number" "$BIN" start -D "$D" --sku-capacity abc
expect 2 "--ring-capacity \"1\": out of range" "$BIN" start -D "$D" --ring-capacity 1
expect 2 "--order-capacity \"-5\": not a number" "$BIN" start -D "$D" --order-capacity=-5
expect 2 "--queue-file-size \"10X\": unknown unit" "$BIN" start -D "$D" --queue-file-size 10X
expect 2 "--segment-size \"10X\": unknown unit" "$BIN" start -D "$D" --segment-size 10X
expect 2 "--flush-interval-ms \"0\": out of range" "$BIN" start -D "$D" --flush-interval-ms 0
expect 2 "--waiter-spin-us \"10001\": out of range" "$BIN" start -D "$D" --waiter-spin-us 10001
expect 2 "unknown option \"--bogus\"" "$BIN" start -D "$D" --bogus
expect 2 "option --json does not apply to \"start\"" "$BIN" start -D "$D" --json
expect 2 "option --sku-capacity does not apply to \"stop\"" "$BIN" stop -D "$D" --sku-capacity 8
expect 2 "--mode \"gentle\": expected smart or immediate" "$BIN" stop -D "$D" --mode gentle
expect 2 "option --timeout needs a value" "$BIN" stop -D "$D" --timeout
expect 0 "usage:" "$BIN" --help
check "no file created by refused starts" test ! -e "$D/hotstockd.lock"

# ---- bad conf lines: file:line and the setting, exit 2 ----
printf 'sku_capacity = 12x\n' >"$D/hotstockd.conf"
expect 2 "hotstockd.conf:1: sku_capacity = \"12x\": not a number" "$BIN" start -D "$D"
printf '# a comment\n\nfrobs = 1\n' >"$D/hotstockd.conf"
expect 2 "hotstockd.conf:3: unknown setting \"frobs\"" "$BIN" start -D "$D"
printf 'ring_capacity 64\n' >"$D/hotstockd.conf"
expect 2 "hotstockd.conf:1: expected \"key = value\"" "$BIN" start -D "$D"
printf 'order_capacity = 1\nflush_interval_ms = 100000 # too long\n' >"$D/hotstockd.conf"
expect 2 "hotstockd.conf:2: flush_interval_ms = \"100000\": out of range (1..10000)" \
    "$BIN" start -D "$D"
# a good conf; a flag wins over it
printf 'sku_capacity = 128   # SKUs\nflush_interval_ms = 5\ncheckpoint_interval_s = 0\nwaiter_spin_us = 0\n' \
    >"$D/hotstockd.conf"
started+=("$D")
expect 0 "ready in $D" "$BIN" start -D "$D" --sku-capacity 512 --order-capacity 1024 \
    --spiller-poll-us 50
expect 0 "\"sku_capacity\": 512" "$BIN" status -D "$D" --json
check "conf flush_interval_ms applied" grep -qF '"flush_interval_ms": 5,' <<<"$LAST_OUT"
check "conf checkpoint_interval_s applied" grep -qF '"checkpoint_interval_s": 0,' <<<"$LAST_OUT"
check "conf waiter_spin_us applied" grep -qF '"waiter_spin_us": 0}' <<<"$LAST_OUT"
check "flag spiller_poll_us applied" grep -qF '"spiller_poll_us": 50,' <<<"$LAST_OUT"
stop "$D"
rm -f "$D/hotstockd.conf"

# ---- the old name of queue_file_size still works, and says it is old ----
printf 'segment_size = 128K\n' >"$D/hotstockd.conf"
started+=("$D")
expect 0 "hotstockd.conf:1: setting \"segment_size\" is deprecated; use \"queue_file_size\"" \
    "$BIN" start -D "$D" "${SMALL[@]}"
check "the warning names the conf file" grep -qF "$D/hotstockd.conf:1:" <<<"$LAST_OUT"
expect 0 "\"queue_file_size\": 131072" "$BIN" status -D "$D" --json
stop "$D"
rm -f "$D/hotstockd.conf"
expect 0 "option --segment-size is deprecated; use --queue-file-size" \
    "$BIN" start -D "$D" "${SMALL[@]}" --segment-size 256K
expect 0 "\"queue_file_size\": 262144" "$BIN" status -D "$D" --json
stop "$D"
expect 0 "ready in $D" "$BIN" start -D "$D" "${SMALL[@]}" --queue-file-size 64K
check "the new name gives no warning" bash -c '! grep -qF deprecated <<<"$1"' _ "$LAST_OUT"
expect 0 "\"queue_file_size\": 65536" "$BIN" status -D "$D" --json
stop "$D"

# ---- bad data directories: one clear line, exit 2 ----
expect 2 "data directory $TMP/nowhere does not exist" "$BIN" start -D "$TMP/nowhere"
touch "$TMP/afile"
expect 2 "data directory $TMP/afile is not a directory" "$BIN" start -D "$TMP/afile"
RO=$(newdir)
if [[ $EUID -eq 0 ]]; then
    chmod 755 "$RO"
    expect 2 "data directory $RO is not writable" \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN" start -D "$RO"
else
    chmod 555 "$RO"
    expect 2 "data directory $RO is not writable" "$BIN" start -D "$RO"
fi
expect 2 "does not exist" "$BIN" status -D "$TMP/nowhere"

# ---- status, stop and checkpoint of a directory with no daemon ----
D=$(newdir)
expect 3 "hotstockd: not running in $D" "$BIN" status -D "$D"
expect 3 "\"running\": false" "$BIN" status -D "$D" --json
expect 3 "not running" "$BIN" checkpoint -D "$D"
expect 0 "not running in $D" "$BIN" stop -D "$D"

# ---- one daemon per directory; start is idempotent ----
start "$D"
PID=$(cat "$D/hotstockd.pid")
check "pid file names a live process" kill -0 "$PID"
expect 0 "already running in $D (pid $PID)" "$BIN" start -D "$D" "${SMALL[@]}"
expect 0 "already running in $D (pid $PID)" "$BIN" start -D "$D" --foreground
check "the lock is held (flock -n fails)" test "$(flock -n "$D/hotstockd.lock" true; echo $?)" = 1
check "still the same daemon" test "$(cat "$D/hotstockd.pid")" = "$PID"
expect 0 "state:              READY" "$BIN" status -D "$D"
expect 0 "\"pid\": $PID, \"generation\": 1, \"state\": \"READY\"" "$BIN" status -D "$D" --json
check "status --json names the log" grep -qF "\"log\": \"$D/hotstockd.log\"" <<<"$LAST_OUT"
check "status --json has jemalloc stats" grep -qE '"jemalloc_allocated": [1-9]' <<<"$LAST_OUT"
expect 0 "checkpoint done, checkpoint_lsn=0" "$BIN" checkpoint -D "$D"
check "control socket is mode 0600" test "$(stat -c %a "$D/hotstockd.sock")" = 600
SEG=$("$DRIVE" segname "$D")
check "segment is mode 0600" test -n "$SEG" -a "$(stat -c %a "$SEG" 2>/dev/null)" = 600
check "log file is mode 0600" test "$(stat -c %a "$D/hotstockd.log")" = 600

# ---- smart stop, then start: identical counters and orders ----
expect 0 "deducted" "$DRIVE" load "$D" 12 3000 7
"$DRIVE" dump "$D" 12 3000 7 >"$TMP/before"
check "dump before" test -s "$TMP/before"
stop "$D"
check "pid file removed" test ! -e "$D/hotstockd.pid"
check "socket removed" test ! -e "$D/hotstockd.sock"
check "segment removed" test ! -e "$SEG"
check "process gone" gone "$PID"
start "$D"
check "generation 2 after a restart" grep -qF "generation 2" <<<"$LAST_OUT"
"$DRIVE" dump "$D" 12 3000 7 >"$TMP/after"
check "counters and orders identical after stop smart + start" cmp -s "$TMP/before" "$TMP/after"
# immediate stop (no checkpoint): the same after recovery
expect 0 "stopped immediately" "$BIN" stop -D "$D" --mode immediate
start "$D"
"$DRIVE" dump "$D" 12 3000 7 >"$TMP/after"
check "counters and orders identical after stop immediate + start" cmp -s "$TMP/before" "$TMP/after"
# SIGKILL: the same
kill -9 "$(cat "$D/hotstockd.pid")"
for _ in $(seq 1 250); do flock -n "$D/hotstockd.lock" true && break; sleep 0.02; done
start "$D"
"$DRIVE" dump "$D" 12 3000 7 >"$TMP/after"
check "counters and orders identical after SIGKILL + start" cmp -s "$TMP/before" "$TMP/after"
stop "$D"

# ---- other format versions: refused, naming both versions ----
FIRST=$(ls "$D"/queue/*.hsq | head -1)
cp "$FIRST" "$TMP/first.bak"
"$DRIVE" qversion "$FIRST" 7
expect 1 "format version 7, this build reads versions 1 to 2" "$BIN" start -D "$D" "${SMALL[@]}"
check "the refusal names the queue file" grep -qF "$FIRST" <<<"$LAST_OUT"
cp "$TMP/first.bak" "$FIRST"

cp "$D/checkpoint" "$TMP/checkpoint.bak"
"$DRIVE" cversion "$D/checkpoint" 9
expect 1 "has format version 9, this build reads versions 1 to 3" "$BIN" start -D "$D" "${SMALL[@]}"
cp "$TMP/checkpoint.bak" "$D/checkpoint"

"$DRIVE" fakeseg "$D" 99 >/dev/null
LAYOUT=$(awk '/^#define HS_SEGMENT_LAYOUT_VERSION/ { print $3 }' shmd/lib/segment.h)
expect 1 "has layout version 99, this build speaks $LAYOUT" "$BIN" start -D "$D" "${SMALL[@]}"
check "the refusal says what to do" grep -qF "stop every client and daemon of that version" <<<"$LAST_OUT"
"$DRIVE" unlinkseg "$D"
check "no daemon left by the refusals" test "$(flock -n "$D/hotstockd.lock" true; echo $?)" = 0

# ---- a torn tail is cut, with a log line; nothing acknowledged is lost ----
LASTQ=$(ls "$D"/queue/*.hsq | tail -1)
SIZE=$(stat -c %s "$LASTQ")
# the first 40 bytes of a record header that was being written
printf '\x58\x4a\x11\x07\x48\x00\x00\x00\x99\x99\x00\x00\x00\x00\x00\x00\x01\x06\x0f\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >>"$LASTQ"
start "$D"
check "the log says where the tail was cut" \
    grep -qE "cut a torn tail from queue file $LASTQ at offset $SIZE: 40 bytes removed" \
    "$D/hotstockd.log"
check "the file is back to its size" test "$(stat -c %s "$LASTQ")" = "$SIZE"
"$DRIVE" dump "$D" 12 3000 7 >"$TMP/after"
check "counters and orders identical after a torn tail" cmp -s "$TMP/before" "$TMP/after"
stop "$D"

# ---- damage in the middle is refused with file, offset and LSN ----
D2=$(newdir)
start "$D2" --queue-file-size 64K
expect 0 "deducted" "$DRIVE" load "$D2" 200 3000 8
stop "$D2"
NFILES=$(ls "$D2"/queue/*.hsq | wc -l)
check "several queue files ($NFILES)" test "$NFILES" -ge 3
MID=$(ls "$D2"/queue/*.hsq | head -2 | tail -1)
MIDLSN=$((16#$(basename "$MID" .hsq)))
cp "$MID" "$TMP/mid.bak"
# flip a bit in the qty of the file's second record (offset 64 + its length + 24)
LEN1=$(od -An -tu4 -j 68 -N 4 "$MID" | tr -d ' ')
OFF=$((64 + LEN1 + 24))
python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
f.write(bytes([b[0] ^ 1])); f.close()" "$MID" "$OFF"
expect 1 "queue file $MID: checksum mismatch at offset $((64 + LEN1)), expected LSN $((MIDLSN + 1))" \
    "$BIN" start -D "$D2" "${SMALL[@]}"
check "the refusal says a valid record follows" grep -qF "with a valid record after it" <<<"$LAST_OUT"
cp "$TMP/mid.bak" "$MID"
start "$D2"
stop "$D2"

# ---- a full disk: writes fail, clients are refused, nothing is lost ----
# (needs root to mount a small tmpfs; skipped, and said so, otherwise)
FULL=$TMP/full
mkdir -p "$FULL"
if [[ $EUID -eq 0 ]] && mount -t tmpfs -o size=3M tmpfs "$FULL" 2>/dev/null; then
    D3=$FULL/d
    mkdir "$D3" "$FULL/big"
    # the default 32 MiB filter file does not fit: refused, naming it
    expect 1 "cannot allocate 33558528 bytes for $FULL/big/evicted.filter.tmp: No space left on device" \
        "$BIN" start -D "$FULL/big"
    check "no filter file is left behind" test ! -e "$FULL/big/evicted.filter.tmp"
    rm -rf "$FULL/big"
    printf 'evicted_filter_size = 64K\n' >"$D3/hotstockd.conf"
    start "$D3" --queue-file-size 256K
    dd if=/dev/zero of="$FULL/filler" bs=1K count=2900 status=none 2>/dev/null
    "$DRIVE" load "$D3" 200 3000 9 >"$TMP/load.out" 2>&1
    check "the load is refused with io_error once the disk is full" \
        grep -qF "io_error" "$TMP/load.out"
    expect 0 "spill_error:        No space left on device" "$BIN" status -D "$D3"
    check "the log says what failed and that it retries" \
        grep -qF "No space left on device; refusing new records" "$D3/hotstockd.log"
    rm -f "$FULL/filler"
    for _ in $(seq 1 250); do
        "$BIN" status -D "$D3" | grep -qF spill_error || break
        sleep 0.02
    done
    expect 0 "durable_lsn" "$BIN" status -D "$D3"
    check "writing resumes once there is space" bash -c '! grep -qF spill_error <<<"$1"' _ "$LAST_OUT"
    check "the log says so" grep -qF "writing the queue works again" "$D3/hotstockd.log"
    "$DRIVE" dump "$D3" 200 3000 9 >"$TMP/full.before"
    stop "$D3"
    start "$D3"
    "$DRIVE" dump "$D3" 200 3000 9 >"$TMP/full.after"
    check "counters and orders identical after the full disk and a restart" \
        cmp -s "$TMP/full.before" "$TMP/full.after"
    stop "$D3"
    umount "$FULL"
else
    echo "skipped: the full-disk case (needs root to mount a tmpfs)"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
