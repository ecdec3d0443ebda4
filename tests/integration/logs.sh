#!/usr/bin/env bash
# tests/integration/logs.sh — FILE-API §7 (logs/) on a real mount (docs/LOGS.md): `>>`
# creates and appends, `cat`, sizes and offsets; the refusals (EPERM for a write off the end,
# truncate, `>` of a non-empty log, rename, mkdir; EFBIG over 128 KiB; EINVAL for the
# reserved name and bad xattr values); 8 appenders x 1,000 records on the embedded node with
# every record whole and each appender's order kept; `tail -f` showing a new record (a
# bounded wait; the latency is noted, not asserted); `.follow/` streaming from the end,
# poll() and SIGINT; sealing and retention by bytes and by time dropping whole old segments
# with offsets unchanged and ESPIPE below user.first_offset; kill -9 and restart (snapshots
# every 256 KiB of log, so restore and replay both run) keeping every byte; rm. Then three
# nodes (tools/cluster up 3, snapshots every 256 KiB of log, so the restarted node below
# catches up from a snapshot): 3 appenders on each mount into one log, every record whole and
# in order, read the same from every mount, and `tail -f` on one mount seeing a record
# appended on another; `.follow/` on one mount streaming records appended on the two
# others, and kill -9 of the log's shard leader during appends losing nothing acknowledged.
# Every wait is bounded; lib.sh's trap unmounts and kills everything under $T.
# Ports (cluster part): $CLUSTER_BASE_PORT (3 from it) when set, else 3 free ones at random.
. "$(dirname "$0")/lib.sh"
CL="$QI_ROOT/tools/cluster"

# ---- helpers in Python: appenders, the checker, exact-errno probes, follow with poll
cat >"$T/lg.py" <<'EOF'
import errno, os, select, signal, sys, time, zlib

def rec(w, i):
    n = 20 + (i * 7 + len(w) * 13) % 180
    body = "".join(chr(97 + (i + j) % 26) for j in range(n))
    line = "%s %d %d %s" % (w, i, n, body)
    return ("%s %08x\n" % (line, zlib.crc32(line.encode()))).encode()

def append(path, w, n):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(int(n)):
        r = rec(w, i)
        if os.write(fd, r) != len(r):
            print("short write"); sys.exit(1)
    os.close(fd)

def check(path, writers, n):
    """every line a whole record; each writer's records 0..n-1, in order"""
    data = open(path, "rb").read()
    if not data.endswith(b"\n"):
        print("BAD does not end with a newline"); return 1
    nxt = {w: 0 for w in writers.split(",")}
    for k, line in enumerate(data[:-1].split(b"\n")):
        parts = line.decode().split(" ")
        if len(parts) != 5 or parts[0] not in nxt:
            print("BAD line %d: %r" % (k, line[:80])); return 1
        w, i, ln, body, crc = parts
        if ("%08x" % zlib.crc32(" ".join(parts[:4]).encode())) != crc or len(body) != int(ln):
            print("BAD torn or mixed record at line %d: %r" % (k, line[:80])); return 1
        if int(i) != nxt[w]:
            print("BAD %s: record %s where %d was next" % (w, i, nxt[w])); return 1
        nxt[w] += 1
    short = [w for w in nxt if nxt[w] != int(n)]
    if short:
        print("BAD missing records of %s" % short); return 1
    print("OK %d records, %d bytes" % (sum(nxt.values()), len(data)))
    return 0

def append_acked(path, w, n, ack):
    """appends until n records or the first error; ack gets: acknowledged count, error or ok"""
    done, err = 0, "ok"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        for i in range(int(n)):
            r = rec(w, i)
            if os.write(fd, r) != len(r):
                err = "short"; break
            done += 1
            time.sleep(0.002)
        os.close(fd)
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
    open(ack, "w").write("%d %s\n" % (done, err))

def check_acked(path, acks):
    """every line a whole record in its writer's order; writer w (from ack files w:FILE) has
    records 0..k-1 with acknowledged <= k <= acknowledged + 1 (one write may have failed
    after it committed)"""
    data = open(path, "rb").read()
    want = {}
    for a in acks.split(","):
        w, f = a.split(":", 1)
        want[w] = int(open(f).read().split()[0])
    nxt = {w: 0 for w in want}
    for k, line in enumerate(data[:-1].split(b"\n") if data else []):
        parts = line.decode().split(" ")
        if len(parts) != 5 or parts[0] not in nxt:
            print("BAD line %d: %r" % (k, line[:80])); return 1
        w, i, ln, body, crc = parts
        if ("%08x" % zlib.crc32(" ".join(parts[:4]).encode())) != crc or len(body) != int(ln):
            print("BAD torn record at line %d" % k); return 1
        if int(i) != nxt[w]:
            print("BAD %s: record %s where %d was next (duplicate or lost)" % (w, i, nxt[w])); return 1
        nxt[w] += 1
    bad = ["%s has %d, acknowledged %d" % (w, nxt[w], want[w]) for w in want
           if not (want[w] <= nxt[w] <= want[w] + 1)]
    if bad:
        print("BAD " + "; ".join(bad)); return 1
    print("OK " + " ".join("%s=%d/%d" % (w, nxt[w], want[w]) for w in sorted(want)))
    return 0

def mkrecs(path, w, order, cut=""):
    """a hand-made log: writer w's records in order (comma list); cut=N drops byte N"""
    data = b"".join(rec(w, int(i)) for i in order.split(","))
    if cut:
        data = data[:int(cut)] + data[int(cut) + 1:]
    open(path, "wb").write(data)

def errname(f):
    try:
        r = f()
        return "OK" if r is None else "OK %s" % r
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def pwrite(path, off, text):
    def f():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, text.encode(), int(off))
        finally:
            os.close(fd)
    print(errname(f))

def bigwrite(path, n):
    def f():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, b"x" * int(n))
        finally:
            os.close(fd)
    print(errname(f))

def bigwrites(path, n, count):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for _ in range(int(count)):
            os.write(fd, b"x" * int(n))
    finally:
        os.close(fd)

def readat(path, off, n):
    def f():
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, int(n), int(off)).decode(errors="replace").replace("\n", "|")
        finally:
            os.close(fd)
    print(errname(f))

def follow_poll(path, log, ready):
    """poll() on a follow file: not readable at first; once readable, read and log; 3 times"""
    fd = os.open(path, os.O_RDONLY)
    p = select.poll()
    p.register(fd, select.POLLIN)
    first = p.poll(0)
    open(ready, "w").write("idle\n" if not first else "busy\n")
    with open(log, "ab") as out:
        for _ in range(3):
            if not p.poll(20000):
                out.write(b"TIMEOUT\n"); return
            out.write(os.read(fd, 65536)); out.flush()

def follow_nb(path):
    def f():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.read(fd, 100)
        finally:
            os.close(fd)
    print(errname(f))

def setfl(fd, on, off):
    import fcntl
    fcntl.fcntl(fd, fcntl.F_SETFL, (fcntl.fcntl(fd, fcntl.F_GETFL) | on) & ~off)

def follow_setnb(path):
    """a follow file opened blocking, then O_NONBLOCK set with fcntl: the read's flags count"""
    def alarm(s, f):
        raise TimeoutError
    signal.signal(signal.SIGALRM, alarm)
    def f():
        fd = os.open(path, os.O_RDONLY)
        setfl(fd, os.O_NONBLOCK, 0)
        signal.alarm(10)
        try:
            return os.read(fd, 100)
        except TimeoutError:
            return "BLOCKED"
        finally:
            signal.alarm(0)
            os.close(fd)
    print(errname(f))

def append_cleared(path, off, text):
    """opened O_APPEND, O_APPEND cleared with fcntl, then a pwrite at off"""
    def f():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            setfl(fd, 0, os.O_APPEND)
            return os.pwrite(fd, text.encode(), int(off))
        finally:
            os.close(fd)
    print(errname(f))

def held_read(path, go, out):
    """opens path, reads to its end, then for each of go.1 and go.2 (waited for, 120 s
    each) reads again from there and appends the outcome to out: OK <bytes> or the errno"""
    fd = os.open(path, os.O_RDONLY)
    while os.read(fd, 65536):
        pass
    with open(out, "a") as o:
        o.write("ready\n")
    for k in (1, 2):
        t = time.time()
        while not os.path.exists("%s.%d" % (go, k)) and time.time() - t < 120:
            time.sleep(0.1)
        def f():
            return os.read(fd, 65536).decode(errors="replace").replace("\n", "|")
        with open(out, "a") as o:
            o.write(errname(f) + "\n")
    os.close(fd)

def fstat_after_rm(path):
    """an open descriptor of a log that is then removed: fstat and a pread at 0"""
    def f():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.unlink(path)
            st = os.fstat(fd)
            return "nlink=%d size=%d pread=%d" % (st.st_nlink, st.st_size, len(os.pread(fd, 100, 0)))
        finally:
            os.close(fd)
    print(errname(f))

def fill(path, sizes):
    """appends records of each size (comma list) in turn until ENOSPC; prints the count"""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    n, err = 0, "none"
    for size in sizes.split(","):
        try:
            for _ in range(4000):
                os.write(fd, os.urandom(int(size))); n += 1   # lz4 cannot shrink it
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
            if err != "ENOSPC":
                break
    os.close(fd)
    print("%s %d" % (err, n))

def data_files(d):
    """bytes on disk of the regular files under d, but the space reserve"""
    t = 0
    for root, _, files in os.walk(d):
        for f in files:
            if f != "reserve":
                try:
                    t += os.lstat(os.path.join(root, f)).st_blocks * 512
                except OSError:
                    pass
    print(t)

def xattr_create(path, name, value):
    print(errname(lambda: os.setxattr(path, name, value.encode(), os.XATTR_CREATE)))

def mtime_ns(path):
    print(os.stat(path).st_mtime_ns)

def slots(path):
    """writers of one log get their own kernel inodes (docs/LOGS.md "One kernel inode per
    writer"), seen by the O_APPEND position: the kernel puts an O_APPEND write at its inode's
    idea of the end, which the other writer's append does not move; st_ino stays the log's
    through every descriptor, the path and readdir"""
    a = os.open(path, os.O_WRONLY | os.O_APPEND)
    b = os.open(path, os.O_WRONLY | os.O_APPEND)
    r = os.open(path, os.O_RDONLY)
    size0 = os.stat(path).st_size
    inos = {os.fstat(f).st_ino for f in (a, b, r)} | {os.stat(path).st_ino}
    inos |= {e.inode() for e in os.scandir(os.path.dirname(path)) if e.name == os.path.basename(path)}
    os.write(a, b"slot-a\n")
    os.write(b, b"slot-b\n")
    pa, pb = os.lseek(a, 0, os.SEEK_CUR), os.lseek(b, 0, os.SEEK_CUR)
    got = b""
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        got += c
    for f in (a, b, r):
        os.close(f)
    if len(inos) != 1:
        print("BAD st_ino differs: %s" % sorted(inos)); return
    if pb != size0 + 7:
        print("SHARED b's append position %d (end %d): one inode" % (pb, size0 + 14)); return
    if pa != size0 + 7 or not got.endswith(b"slot-a\nslot-b\n") or len(got) != size0 + 14:
        print("BAD positions %d %d, read %r" % (pa, pb, got[-20:])); return
    print("OK distinct inodes, st_ino %d" % inos.pop())

def writers(path, w, n, k):
    """k descriptors kept open on one log, n rounds of one record through each"""
    fds = [os.open(path, os.O_WRONLY | os.O_APPEND) for _ in range(int(k))]
    for i in range(int(n)):
        for j, f in enumerate(fds):
            r = rec("%s%d" % (w, j), i)
            if os.write(f, r) != len(r):
                print("short write"); sys.exit(1)
    for f in fds:
        os.close(f)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "check":
    sys.exit(check(*args))
if cmd == "check-acked":
    sys.exit(check_acked(*args))
globals()[cmd.replace("-", "_")](*args)
EOF
LG="$PY $T/lg.py"
lg() { timeout -k 2 60 $LG "$@" 2>&1; }

# ---- the checkers themselves, on hand-made logs: clean ones pass, each fault is caught
ck() { $LG mkrecs "$T/ck" z "$@" && $LG check "$T/ck" z 3 >/dev/null; }
cka() { echo "3 EIO" >"$T/ck.ack" && $LG mkrecs "$T/ck" z "$@" && $LG check-acked "$T/ck" "z:$T/ck.ack" >/dev/null; }
checke checker-accepts-clean 'ck 0,1,2 && cka 0,1,2 && cka 0,1,2,3'
checke checker-finds-lost-reordered-torn '! ck 0,2 && ! ck 1,0,2 && ! ck 0,1,2 30 && ! ck 0,1,2,2'
checke checker-finds-unacknowledged-loss-and-extra '! cka 0,1 && ! cka 0,1,2,3,4 && ! cka 0,1,1,2'

mkdir -p "$T/n1"
export DATA_DIR=$T/n1/data
must_start n1 --snapshot-bytes 262144
L=$MNT/logs

# ---- basics
echo one >>"$L/app" && echo two >>"$L/app" && ok append-creates || not_ok append-creates
check cat-gives-records [ "$(cat "$L/app")" = $'one\ntwo' ]
check size-is-end [ "$(stat -c %s "$L/app")" = 8 ]
check ls-lists-log [ "$(ls "$L")" = app ]
touch "$L/empty" && check touch-creates [ "$(stat -c %s "$L/empty")" = 0 ]
: >"$L/empty" && ok truncate-of-empty-is-a-no-op || not_ok truncate-of-empty-is-a-no-op
check tail-c-by-offset [ "$(tail -c +5 "$L/app")" = two ]
expect_errno excl-create-existing EEXIST excl "$L/app" lit:x

# ---- refusals
checke write-off-the-end-eperm '[ "$(lg pwrite "$L/app" 2 x)" = EPERM ]'
checke write-past-the-end-eperm '[ "$(lg pwrite "$L/app" 100 x)" = EPERM ]'
checke write-at-the-end-ok '[ "$(lg pwrite "$L/app" 8 $'"'"'three\n'"'"')" = OK ]'
checke fcntl-cleared-append-pwrite-eperm '[ "$(lg append-cleared "$L/app" 0 x)" = EPERM ]'
expect_errno truncate-eperm EPERM truncate "$L/app" 0
checke redirect-over-nonempty-eperm '! (echo x >"$L/app") 2>/dev/null'
check redirect-left-log [ "$(cat "$L/app")" = $'one\ntwo\nthree' ]
expect_errno rename-eperm EPERM rename "$L/app" "$L/other"
expect_errno mkdir-eperm EPERM mkdir "$L/dir"
expect_errno create-follow-einval "EINVAL|EISDIR|EEXIST" write "$L/.follow" lit:x
checke record-over-128k-efbig '[ "$(lg bigwrite "$L/app" 131073)" = EFBIG ]'
checke record-of-128k-ok '[ "$(lg bigwrite "$L/app" 131072)" = "OK 131072" ]'
expect_errno bad-segment-bytes EINVAL setx "$L/app" user.segment_bytes 100
expect_errno bad-retention EINVAL setx "$L/app" user.retention_bytes abc
expect_errno first-offset-read-only EPERM setx "$L/app" user.first_offset 5
checke xattr-create-existing-eexist '[ "$(lg xattr-create "$L/app" user.retention_bytes 5)" = EEXIST ]'
m0=$(lg mtime-ns "$L/app")
sleep 0.2
setfattr -n user.retention_seconds -v 0 "$L/app"
check setfattr-keeps-mtime [ "$(lg mtime-ns "$L/app")" = "$m0" ]
rm "$L/app" && checke rm-removes '[ ! -e "$L/app" ] && [ "$(ls "$L")" = empty ]' || not_ok rm-removes
check rm-removes-segment-files [ "$(find "$DATA/logs" -type f | wc -l)" = 0 ]
echo hello >>"$L/fst"
checke fstat-after-rm-nlink-0-then-eof '[ "$(lg fstat-after-rm "$L/fst")" = "OK nlink=0 size=6 pread=0" ]' ||
    note "got: $(lg fstat-after-rm "$L/fst" 2>&1)"

# ---- 8 appenders x 1,000 records, concurrently
t0=$(now_ms)
pids=""
for w in a1 a2 a3 a4 a5 a6 a7 a8; do lg append "$L/many" $w 1000 >"$T/app.$w" & pids="$pids $!"; done
fails=0
for p in $pids; do wait "$p" || fails=$((fails + 1)); done
note "8,000 appends by 8 processes in $(( $(now_ms) - t0 )) ms"
check appenders-succeed [ "$fails" = 0 ]
out=$(lg check "$L/many" a1,a2,a3,a4,a5,a6,a7,a8 1000)
checke records-whole-and-ordered '[[ $out == OK* ]]' || note "$out"

# ---- tail -f sees a new record (GNU tail polls the size every second)
echo start >>"$L/tailed"
tail -n +1 -f "$L/tailed" >"$T/tail.out" 2>&1 &
tp=$!
wait_for 10 grep -q start "$T/tail.out"
t0=$(now_ms)
echo "marker-$t0" >>"$L/tailed"
if wait_for 10 grep -q "marker-$t0" "$T/tail.out"; then
    ok tail-f-sees-record; note "tail -f showed the record after $(( $(now_ms) - t0 )) ms"
else
    not_ok tail-f-sees-record "$(cat "$T/tail.out")"
fi
kill "$tp" 2>/dev/null; wait "$tp" 2>/dev/null

# ---- writers of one log on their own kernel inodes; stat, ls -i, cat, cmp, tail -f and -F
echo first >>"$L/sl"
out=$(lg slots "$L/sl")
checke slots-distinct-inodes-same-st-ino '[[ $out == OK* ]]' || note "$out"
check slots-ls-i-is-stat-ino [ "$(ls -i "$L" | awk '$2 == "sl" { print $1 }')" = "$(stat -c %i "$L/sl")" ]
check slots-records-in-order [ "$(cat "$L/sl")" = $'first\nslot-a\nslot-b' ]
: >"$L/slw"
tail -n +1 -f "$L/slw" >"$T/sltail.out" 2>"$T/sltail.err" &
tp=$!
tail -n +1 -F "$L/slw" >"$T/sltailF.out" 2>"$T/sltailF.err" &   # by name: stats it again
tpF=$!
lg writers "$L/slw" s 50 4 >"$T/slw.out"
check slots-writers-succeed [ ! -s "$T/slw.out" ]
out=$(lg check "$L/slw" s0,s1,s2,s3 50)
checke slots-writers-records-whole-and-ordered '[[ $out == OK* ]]' || note "$out"
tail_has_all() { [[ $(lg check "$T/sltail.out" s0,s1,s2,s3 50) == OK* ]]; }
checke slots-tail-f-sees-all-writers 'wait_for 15 tail_has_all' ||
    note "tail -f: $(lg check "$T/sltail.out" s0,s1,s2,s3 50)"
tailF_has_all() { [[ $(lg check "$T/sltailF.out" s0,s1,s2,s3 50) == OK* ]]; }
checke slots-tail-F-same-file 'wait_for 15 tailF_has_all && ! grep -q . "$T/sltailF.err"' ||
    note "tail -F: $(lg check "$T/sltailF.out" s0,s1,s2,s3 50); stderr: $(head -2 "$T/sltailF.err")"
kill "$tp" "$tpF" 2>/dev/null; wait "$tp" "$tpF" 2>/dev/null
# two opens each, different read sizes (cmp of a file with itself returns 0 unread)
checke slots-cat-cmp-tail-c 'cmp -s <(cat "$L/slw") <(dd if="$L/slw" bs=7 status=none) &&
    cmp -s <(cat "$L/slw") <(tail -c +1 "$L/slw")'
checke slots-stat-ino-after-close '[ "$(stat -c %i "$L/slw")" = "$(ls -i "$L" | awk '"'"'$2 == "slw" { print $1 }'"'"')" ]'

# ---- .follow: from the end, streaming, poll, O_NONBLOCK, SIGINT, removal ends it
echo before >>"$L/fol"
$FSOP exec-sigdfl cat "$L/.follow/fol" >"$T/follow.out" 2>&1 &
fp=$!
sleep 0.5
for i in 1 2 3; do echo "rec$i" >>"$L/fol"; done
checke follow-streams-from-end 'wait_for 10 grep -q rec3 "$T/follow.out" && [ "$(cat "$T/follow.out")" = $'"'"'rec1\nrec2\nrec3'"'"' ]' ||
    note "got: $(cat "$T/follow.out")"
checke follow-blocks-between 'pid_alive $fp'
kill -INT "$fp"
checke follow-sigint-ends-read 'wait_for 5 pid_gone $fp'
wait "$fp" 2>/dev/null
checke follow-nonblock-eagain '[ "$(lg follow-nb "$L/.follow/fol")" = EAGAIN ]'
checke follow-fcntl-nonblock-eagain '[ "$(lg follow-setnb "$L/.follow/fol")" = EAGAIN ]'
expect_errno follow-of-missing-log ENOENT read "$L/.follow/nope"
check follow-dir-lists-nothing [ -z "$(ls -A "$L/.follow")" ]
lg follow-poll "$L/.follow/fol" "$T/poll.out" "$T/poll.ready" &
pp=$!
wait_for 10 test -s "$T/poll.ready"
check poll-not-ready-at-end [ "$(cat "$T/poll.ready")" = idle ]
for i in 1 2 3; do echo "p$i" >>"$L/fol"; sleep 0.3; done
checke poll-wakes-per-record 'wait_for 20 pid_gone $pp && [ "$(cat "$T/poll.out")" = $'"'"'p1\np2\np3'"'"' ]' ||
    note "got: $(cat "$T/poll.out")"
$FSOP exec-sigdfl cat "$L/.follow/fol" >"$T/follow2.out" 2>&1 &
fp=$!
sleep 0.5
rm "$L/fol"
checke follow-ends-at-rm 'wait_for 10 pid_gone $fp'

# ---- sealing and retention: offsets never move
seg_files() { find "$DATA/logs" -name '*.lz4' | wc -l; }
no_seg_files() { [ "$(seg_files)" = 0 ]; }
touch "$L/ret"
setfattr -n user.segment_bytes -v 4096 "$L/ret"
for i in $(seq 0 99); do printf 'r%03d%0507d\n' "$i" 0 >>"$L/ret"; done   # 512-byte records
check size-after-100-records [ "$(stat -c %s "$L/ret")" = 51200 ]
n0=$(seg_files)
retdir=$(dirname "$(find "$DATA/logs" -name '*.lz4' | head -n 1)")
checke sealed-segments-compressed '[ "$n0" -ge 10 ] && [ "$(du -sb "$retdir" | cut -f1)" -lt 51200 ]' ||
    note "$n0 sealed files, $(du -sb "$retdir" | cut -f1) bytes"
check cat-across-segments [ "$(cat "$L/ret" | md5sum)" = "$(for i in $(seq 0 99); do printf 'r%03d%0507d\n' "$i" 0; done | md5sum)" ]
setfattr -n user.retention_bytes -v 8192 "$L/ret"
first=$(getfattr --absolute-names --only-values -n user.first_offset "$L/ret")
checke retention-bytes-drops-old-segments '[ "$first" -gt 0 ] && [ $((51200 - first)) -ge 8192 ] && [ "$(seg_files)" -lt "$n0" ]' ||
    note "first_offset $first, $(seg_files) sealed files"
check offsets-stable-after-retention [ "$(lg readat "$L/ret" $((first / 512 * 512 + 512)) 4)" = "OK r$(printf %03d $((first / 512 + 1)))" ]
check size-unchanged-by-retention [ "$(stat -c %s "$L/ret")" = 51200 ]
expect_errno read-below-first-offset-espipe ESPIPE read "$L/ret"
check tail-from-first-offset [ "$(tail -c +$((first + 1)) "$L/ret" | wc -c)" = $((51200 - first)) ]
echo more >>"$L/ret"
check append-continues-at-end [ "$(lg readat "$L/ret" 51200 5)" = "OK more|" ]
setfattr -n user.retention_bytes -v 0 "$L/ret"
setfattr -n user.retention_seconds -v 1 "$L/ret"
checke retention-seconds-drops-by-sweep 'wait_for 15 no_seg_files' || note "$(seg_files) sealed files left"
check retention-seconds-keeps-active [ "$(lg readat "$L/ret" 51200 5)" = "OK more|" ]

# ---- kill -9 and restart: every byte back (snapshot restore + WAL replay)
sum_many=$(md5sum <"$L/many")
sum_ret=$(tail -c +$(( $(getfattr --absolute-names --only-values -n user.first_offset "$L/ret") + 1 )) "$L/ret" | md5sum)
crash_node "$MNT" "$NPID"
must_start n1 --snapshot-bytes 262144
check restart-keeps-log [ "$(md5sum <"$L/many")" = "$sum_many" ]
check restart-keeps-retained [ "$(tail -c +$(( $(getfattr --absolute-names --only-values -n user.first_offset "$L/ret") + 1 )) "$L/ret" | md5sum)" = "$sum_ret" ]
out=$(lg check "$L/many" a1,a2,a3,a4,a5,a6,a7,a8 1000)
checke restart-records-whole '[[ $out == OK* ]]' || note "$out"
echo after >>"$L/many" && ok append-after-restart || not_ok append-after-restart
stop_node "$MNT" "$NPID" || note "unmount of n1 failed"

# ---- a full data disk (an 8 MiB tmpfs): segment files count in the node's space
# accounting, appends stop with ENOSPC, and lowering user.retention_bytes (a freeing
# command) still works and drops the old segment files
FD=$T/ldisk
mkdir -p "$FD"
if mount -t tmpfs -o size=8m tmpfs "$FD" 2>/dev/null; then
    mkdir "$FD/data"
    DATA_DIR=$FD/data
    must_start n2
    touch "$MNT/logs/full"
    setfattr -n user.segment_bytes -v 65536 "$MNT/logs/full"
    out=$(lg fill "$MNT/logs/full" 65536,4096,64,1)
    checke full-disk-append-enospc '[ "${out%% *}" = ENOSPC ]' || note "fill: $out"
    data_counted() {
        local m f
        m=$(awk '$1 == "quorumfs_data_bytes" {print $2}' "$MNT/.cluster/metrics")
        f=$($LG data-files "$FD/data")
        [ -n "$m" ] && [ $((m * 100)) -ge $((f * 95)) ]
    }
    checke segment-files-in-space-accounting 'wait_for 10 data_counted' ||
        note "quorumfs_data_bytes $(awk '$1 == "quorumfs_data_bytes" {print $2}' "$MNT/.cluster/metrics"), files $($LG data-files "$FD/data"), logs/ $(du -sb "$FD/data/logs" | cut -f1)"
    expect_errno full-disk-lower-retention-ok OK setx "$MNT/logs/full" user.retention_bytes 65536
    # the old segments' files go at once; the room for appends comes back only once the
    # WAL and snapshot that still hold those bytes are compacted (docs/LOGS.md), so that
    # is noted, not asserted
    segs_dropped() { [ "$(du -sb "$FD/data/logs" | cut -f1)" -lt 262144 ]; }
    checke full-disk-retention-drops-segment-files 'wait_for 10 segs_dropped' ||
        note "logs/ $(du -sb "$FD/data/logs" | cut -f1) bytes; first_offset $(getfattr --absolute-names --only-values -n user.first_offset "$MNT/logs/full")"
    append_back() { [ "$(lg bigwrite "$MNT/logs/full" 65536)" = "OK 65536" ]; }
    if wait_for 15 append_back; then note "appends came back after the retention change"
    else note "appends not back within 15 s (WAL and snapshot not compacted yet): $(head -n 1 "$MNT/.cluster/health")"; fi
    stop_node "$MNT" "$NPID" || note "unmount of n2 failed"
    umount "$FD" 2>/dev/null || umount -l "$FD"
else
    note "cannot mount a tmpfs (needs root): the full-disk case is skipped"
fi

# ---- three nodes: appenders on every mount, one log
base=${CLUSTER_BASE_PORT:-$(free_ports 3)}
[ -n "$base" ] || { not_ok free-ports "no 3 free ports"; finish; }
C=$T/cluster
up_out=$(CLUSTER_WAIT_S=30 timeout 90 "$CL" up 3 --dir "$C" --base-port "$base" --bin "$QUORUMFS" \
    --node-args "--snapshot-bytes 262144" 2>&1)
if [ $? -ne 0 ]; then not_ok cluster-up "$up_out"; finish; fi
ok cluster-up
M=("" "$C/n1/mnt" "$C/n2/mnt" "$C/n3/mnt")
touch "${M[1]}/logs/shared"
t0=$(now_ms)
pids=""
for m in 1 2 3; do
    for w in a b c; do lg append "${M[$m]}/logs/shared" "$w$m" 300 >"$T/capp.$w$m" & pids="$pids $!"; done
done
fails=0
for p in $pids; do wait "$p" || fails=$((fails + 1)); done
note "2,700 appends by 9 processes on 3 mounts in $(( $(now_ms) - t0 )) ms"
check cluster-appenders-succeed [ "$fails" = 0 ]
out=$(lg check "${M[2]}/logs/shared" a1,b1,c1,a2,b2,c2,a3,b3,c3 300)
checke cluster-records-whole-and-ordered '[[ $out == OK* ]]' || note "$out"
s1=$(md5sum <"${M[1]}/logs/shared"); s3=$(md5sum <"${M[3]}/logs/shared")
check cluster-same-bytes-everywhere [ "$s1" = "$s3" ]
tail -n 0 -f "${M[3]}/logs/shared" >"$T/ctail.out" 2>&1 &
tp=$!
sleep 1.5
t0=$(now_ms)
echo "cmarker-$t0" >>"${M[1]}/logs/shared"
if wait_for 10 grep -q "cmarker-$t0" "$T/ctail.out"; then
    ok cluster-tail-f-other-mount; note "tail -f on node 3 showed node 1's record after $(( $(now_ms) - t0 )) ms"
else
    not_ok cluster-tail-f-other-mount "$(cat "$T/ctail.out")"
fi
kill "$tp" 2>/dev/null; wait "$tp" 2>/dev/null
$FSOP exec-sigdfl cat "${M[2]}/logs/.follow/shared" >"$T/cfollow.out" 2>&1 &
fp=$!
sleep 1
echo "cfollow-1" >>"${M[1]}/logs/shared"; echo "cfollow-3" >>"${M[3]}/logs/shared"
checke cluster-follow-other-mounts 'wait_for 10 grep -q cfollow-3 "$T/cfollow.out" && [ "$(cat "$T/cfollow.out")" = $'"'"'cfollow-1\ncfollow-3'"'"' ]' ||
    note "got: $(cat "$T/cfollow.out")"
kill -INT "$fp" 2>/dev/null; wait "$fp" 2>/dev/null

# ---- kill -9 of the log's leader during appends: nothing acknowledged is lost
SHARDOF=$(dirname "$QUORUMFS")/shardof
leader() { timeout 5 awk -v s="$2" '$1 == s {print $2}' "$1/.cluster/shards" 2>/dev/null; }
# leader_not X SHARD: the shard's leader as a live node other than X sees it, if not X
leader_not() {
    local i l
    for i in 1 2 3; do
        [ "$i" = "$1" ] && continue
        l=$(leader "${M[$i]}" "$2")
        [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != "$1" ] && { echo "$l"; return 0; }
    done
    return 1
}
if [ -x "$SHARDOF" ]; then
    S=$("$SHARDOF" "$(wc -l <"${M[1]}/.cluster/shards")" logs/killed)
    touch "${M[1]}/logs/killed"
    KL=$(leader_not 0 "$S")
    others=""; acks=""; pids=""
    for i in 1 2 3; do [ "$i" != "$KL" ] && others="$others $i"; done
    for i in $others; do
        for w in k$i x$i; do
            lg append-acked "${M[$i]}/logs/killed" $w 1500 "$T/ack.$w" & pids="$pids $!"
            acks="$acks,$w:$T/ack.$w"
        done
    done
    sleep 2
    "$CL" kill "$KL" --dir "$C" >/dev/null 2>&1 || note "kill of node $KL failed"
    t0=$(now_ms)
    NL=
    wait_for 20 leader_not "$KL" "$S" >/dev/null && NL=$(leader_not "$KL" "$S")
    note "killed node $KL, leader of shard $S; new leader ${NL:-none} after $(( $(now_ms) - t0 )) ms"
    for p in $pids; do wait "$p"; done
    note "appenders: $(for f in "$T"/ack.*; do printf '%s=%s ' "${f##*.}" "$(cat "$f")"; done)"
    CLUSTER_WAIT_S=30 timeout 60 "$CL" start "$KL" --dir "$C" >/dev/null 2>&1 || note "restart of node $KL failed"
    R=${others# }; R=${R%% *}                      # a node that stayed up
    out=$(lg check-acked "${M[$R]}/logs/killed" "${acks#,}")
    checke leader-kill-loses-nothing-acknowledged '[ -n "$NL" ] && [[ $out == OK* ]]' || note "$out"
    same_on_restarted() { [ "$(md5sum <"${M[$KL]}/logs/killed")" = "$(md5sum <"${M[$R]}/logs/killed")" ]; }
    checke restarted-node-has-same-bytes 'wait_for 30 same_on_restarted'
    inst=$(awk -v s="quorumfs_raft_snapshot_installs_total{shard=\"$S\"}" '$1 == s {print $2}' \
        "${M[$KL]}/.cluster/metrics" 2>/dev/null)
    note "the restarted node installed ${inst:-?} snapshot(s) of shard $S from the leader"
else
    note "no $SHARDOF: the leader-kill case is skipped (make BUILD=... builds it, mk/lin.mk)"
fi

# ---- a node that catches up by snapshot install wakes its parked .follow reads: node F
# (a follower of shard S) is stopped with readers parked on logs ga and gb; meanwhile ga
# grows, gb is removed and the shard logs past a compaction; once F resumes, the ga reader
# gets the record and the gb reader its end of file (bounded waits)
if [ -x "$SHARDOF" ]; then
    NS=$(wc -l <"${M[1]}/.cluster/shards")
    S=$("$SHARDOF" "$NS" logs/ga)
    on_s() { local c; for c in $(seq 0 400); do
        [ "$("$SHARDOF" "$NS" "logs/$1$c")" = "$S" ] && { echo "$1$c"; return; }; done; }
    GB=$(on_s gb); GF=$(on_s gf)
    touch "${M[1]}/logs/ga" "${M[1]}/logs/$GB" "${M[1]}/logs/$GF"
    wait_for 10 leader_not 0 "$S" >/dev/null; SL=$(leader_not 0 "$S")
    F=1; [ "$SL" = 1 ] && F=2
    Ms=${M[$F]}
    wait_for 10 test -e "$Ms/logs/$GB"
    $FSOP exec-sigdfl cat "$Ms/logs/.follow/ga" >"$T/ga.out" 2>&1 &
    gp=$!
    $FSOP exec-sigdfl cat "$Ms/logs/.follow/$GB" >"$T/gb.out" 2>&1 &
    bp=$!
    sleep 1
    FP=$(cat "$C/n$F/pid")
    installs() { awk -v s="quorumfs_raft_snapshot_installs_total{shard=\"$S\"}" '$1 == s {print $2}' \
        "$Ms/.cluster/metrics" 2>/dev/null; }
    inst0=$(installs)
    kill -STOP "$FP"
    # 400 small appends one by one (more APPENDs than the leader keeps in flight to the
    # stopped node, so what follows is not sent to it), the changes, then 3 MiB: several
    # compactions past what it was sent
    lg bigwrites "${M[$SL]}/logs/$GF" 1024 400 >/dev/null
    echo "grown-while-stopped" >>"${M[$SL]}/logs/ga"
    rm "${M[$SL]}/logs/$GB"
    lg bigwrites "${M[$SL]}/logs/$GF" 131072 24 >/dev/null
    sleep 2
    kill -CONT "$FP"
    checke follow-woken-by-snapshot-install-grown 'wait_for 20 grep -q grown-while-stopped "$T/ga.out"' ||
        note "ga reader got: $(cat "$T/ga.out")"
    checke follow-woken-by-snapshot-install-removed 'wait_for 20 pid_gone $bp'
    note "node $F (stopped) installed ${inst0:-?} -> $(installs) snapshot(s) of shard $S"
    kill -INT "$gp" "$bp" 2>/dev/null; wait "$gp" "$bp" 2>/dev/null
fi
timeout 60 "$CL" down --dir "$C" >/dev/null 2>&1 || note "cluster down failed"

# ---- a read through an open descriptor on a node cut off from the majority (tools/cluster
# up 3 --netns, partition R | the others): at the local end it takes a read barrier, so it
# fails with EIO instead of answering EOF while the majority acknowledged more; after heal
# the same descriptor reads the record. Needs root (network namespaces).
NC=$T/ncluster
if [ -x "$SHARDOF" ] && ip netns add "qfs-lgprobe-$$" 2>/dev/null; then
    ip netns del "qfs-lgprobe-$$"
    trap 'timeout -k 5 60 "$CL" down --dir "$NC" >/dev/null 2>&1; qi_cleanup' EXIT
    up_out=$(CLUSTER_WAIT_S=30 timeout 120 "$CL" up 3 --netns --dir "$NC" --base-port 29100 \
        --bin "$QUORUMFS" 2>&1)
    if [ $? -ne 0 ]; then not_ok netns-cluster-up "$up_out"; finish; fi
    N=("" "$NC/n1/mnt" "$NC/n2/mnt" "$NC/n3/mnt")
    echo first >>"${N[1]}/logs/pd"
    PS=$("$SHARDOF" "$(wc -l <"${N[1]}/.cluster/shards")" logs/pd)
    M=("${N[@]}")
    wait_for 20 leader_not 0 "$PS" >/dev/null; PL=$(leader_not 0 "$PS")
    R=1; [ "$PL" = 1 ] && R=2
    W=$(( 6 - R - ${PL:-3} )); [ "$W" = "$R" ] && W=3
    wait_for 20 grep -q first "${N[$R]}/logs/pd"
    lg held-read "${N[$R]}/logs/pd" "$T/pd.go" "$T/pd.out" &
    hp=$!
    wait_for 20 grep -q ready "$T/pd.out" 2>/dev/null
    others=$(for i in 1 2 3; do [ "$i" != "$R" ] && printf '%s,' "$i"; done)
    "$CL" partition "$R" "${others%,}" --dir "$NC" >/dev/null 2>&1 || note "partition failed"
    echo after-cut >>"${N[$W]}/logs/pd" && ok append-on-majority-side || not_ok append-on-majority-side
    touch "$T/pd.go.1"
    wait_for 60 eval '[ "$(wc -l <"$T/pd.out")" -ge 2 ]'
    checke cut-off-read-at-end-eio '[ "$(sed -n 2p "$T/pd.out")" = EIO ]' || note "got: $(cat "$T/pd.out")"
    "$CL" heal --dir "$NC" >/dev/null 2>&1 || note "heal failed"
    wait_for 30 grep -q after-cut "${N[$R]}/logs/pd" 2>/dev/null
    touch "$T/pd.go.2"
    wait_for 60 eval '[ "$(wc -l <"$T/pd.out")" -ge 3 ]'
    checke healed-read-sees-record '[ "$(sed -n 3p "$T/pd.out")" = "OK after-cut|" ]' || note "got: $(cat "$T/pd.out")"
    wait "$hp" 2>/dev/null
    timeout 60 "$CL" down --dir "$NC" >/dev/null 2>&1 || note "netns cluster down failed"
else
    note "no network namespaces here (needs root): the cut-off read case is skipped"
fi
finish
