#!/usr/bin/env bash
# tests/integration/logs_cache.sh — reads of logs/ through the kernel's page cache (docs/LOGS.md
# "Reads through the page cache", fs/logs_pcache.h): a read-only open of a log whose oldest
# retained offset is page-aligned is served from the page cache, and nothing stale may come
# out of it. On the embedded node: `cat` leaves the log's pages cached (fincore) and a log
# whose start is not page-aligned is read direct; a descriptor that cached the log's last
# (partial) page reads this mount's next appends exactly; retention by bytes makes a cached
# descriptor's reads below the new start ESPIPE at once, by time (the sweep's TRIM, queued
# invalidation) within a bounded wait, while a new open reads from user.first_offset; `rm`
# makes a cached descriptor read EOF and a log recreated under the same name shows only its
# own bytes; `tail -f` of a log that was read (cached) sees a new record; a cached reader and
# writers of one log on different kernel inodes (slots) read exactly, and retention reaches
# the reader's inode; a cached reader opened before two writers (one appending without pause)
# reads every round up to the end acknowledged before the read, never ending inside a record
# (1,500 rounds at most, 40 s). Then three nodes
# (tools/cluster up 3): a descriptor on node 2 that cached the log reads node 1's appends; an
# append through node 2 after node 1 appended (the kernel's end offset on node 2 is stale)
# leaves node 2 reading the true bytes; retention set and `rm` + recreate on node 1 reach
# node 2's cached descriptor within a bounded wait; `tail -f` on node 3 after a `cat` there
# sees node 1's record; a follower stopped (SIGSTOP) while retention moved one cached log's
# start and another was removed drops their pages once it catches up by snapshot install.
# Every wait is bounded; the EXIT traps unmount and kill everything.
# Ports (cluster part): picked free in $CLUSTER_PORTS (lib_cluster.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

cat >"$T/lc.py" <<'EOF'
import errno, os, sys, time

def bad(msg):
    print("BAD " + msg)
    sys.exit(1)

def until(fn, secs=10.0):
    """fn() until true or secs passed (a bounded wait); its last value"""
    end = time.time() + secs
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(0.05)

def read_all(fd, off=0):
    out = b""
    while True:
        d = os.pread(fd, 1 << 20, off + len(out))
        if not d:
            return out
        out += d

def err(fn):
    try:
        fn()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def rec(tag, i, n=100):
    body = ("%s-%d " % (tag, i)).encode()
    return body + bytes(97 + (i + j) % 26 for j in range(n - len(body) - 1)) + b"\n"

def append(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if os.write(fd, data) != len(data):
        bad("short write")
    os.close(fd)

def fresh(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_all(fd)
    finally:
        os.close(fd)

def own(path):
    """a descriptor that cached the last partial page reads this mount's next appends"""
    w = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    r0, r1, r2 = rec("o", 0), rec("o", 1, 57), rec("o", 2, 3000)
    os.write(w, r0)
    r = os.open(path, os.O_RDONLY)
    if read_all(r) != r0:
        bad("first read")
    os.write(w, r1)
    got = os.pread(r, len(r1), len(r0))       # inside the kernel's size: no attribute refresh
    if got != r1:
        bad("exact read of the next record: %r" % got[:40])
    os.write(w, r2)
    if read_all(r) != r0 + r1 + r2 or fresh(path) != r0 + r1 + r2:
        bad("whole log after appends")
    print("OK own appends read exactly")

def slots(path):
    """a cached reader and writers of one log on different kernel inodes (docs/LOGS.md "One
    kernel inode per writer"): the reader, which cached the last partial page, reads exactly
    what a writer on another inode appends and what one on its own inode appends; retention
    set afterwards drops the reader's cached pages below the new start at once (ESPIPE)"""
    w1 = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    s0, s1, s2, s3 = rec("s", 0), rec("s", 1, 57), rec("s", 2, 3000), rec("s", 3, 77)
    os.write(w1, s0)
    r = os.open(path, os.O_RDONLY)            # not w1's inode: w1 moved lookups on
    if read_all(r) != s0:
        bad("first read")
    os.write(w1, s1)                          # r's inode did not see it
    got = os.pread(r, len(s1), len(s0))
    if got != s1:
        bad("exact read of another inode's append: %r" % got[:40])
    w2 = os.open(path, os.O_WRONLY | os.O_APPEND)   # a third inode: r moved lookups on
    os.write(w2, s2)
    got = os.pread(r, len(s2), len(s0 + s1))
    if got != s2:
        bad("exact read of a second writer's append: %r" % got[:40])
    os.write(w1, s3)
    if read_all(r) != s0 + s1 + s2 + s3 or fresh(path) != s0 + s1 + s2 + s3:
        bad("whole log after appends through both inodes")
    os.setxattr(path, "user.segment_bytes", b"4096")
    for i in range(30):
        os.write(w1, rec("t", i, 1000))
    if len(read_all(r)) < 30000:
        bad("r reads the appends")
    os.setxattr(path, "user.retention_bytes", b"8192")
    first = int(os.getxattr(path, "user.first_offset"))
    if first < 4096:
        bad("retention dropped nothing: first offset %d" % first)
    e = err(lambda: os.pread(r, 10, 0))
    if e != "ESPIPE":
        bad("r's cached read below the new start: %s" % e)
    for f in (w1, w2, r):
        os.close(f)
    print("OK a reader on another inode than a writer reads exactly; retention reaches it")

def shared(path, rounds, secs):
    """a cached reader opened first, then writer w1 appending 20-byte records without pause
    (a thread) and w2 appending 300-byte ones: each round w2 appends, fstat()s the end E,
    and the reader reads to EOF: it must reach E (records acknowledged before the read) and
    every read must end at a record's end. With the reader sharing its kernel inode with w1,
    that inode's size was w1's stale end and the kernel dropped the reader's refresh racing
    w1's writes: EOF below E, short reads inside records (docs/LOGS.md "One kernel inode per
    writer"). Counts violations over rounds (at most secs seconds); no timing asserted."""
    import threading
    append(path, b"init\n")
    r = os.open(path, os.O_RDONLY)
    pos = len(read_all(r))
    os.lseek(r, pos, os.SEEK_SET)
    w1 = os.open(path, os.O_WRONLY | os.O_APPEND)
    w2 = os.open(path, os.O_WRONLY | os.O_APPEND)
    stop = []
    def w1_main():
        i = 0
        while not stop:
            body = ("w1 %d" % i).encode()
            os.write(w1, body + b"." * (19 - len(body)) + b"\n")
            i += 1
    t = threading.Thread(target=w1_main)
    t.start()
    early = torn = n = 0
    first = ""
    end = time.time() + float(secs)
    try:
        while n < int(rounds) and time.time() < end:
            body = ("W2 %d " % n).encode()
            os.write(w2, body + b"x" * (299 - len(body)) + b"\n")
            e = os.fstat(w2).st_size
            while True:
                d = os.read(r, 1 << 20)
                if not d:
                    break
                pos += len(d)
                if d[-1:] != b"\n":
                    torn += 1
                    first = first or "round %d: a read ended inside a record at %d" % (n, pos)
            if pos < e:
                early += 1
                first = first or "round %d: EOF at %d below %d appended before" % (n, pos, e)
                while True:
                    d = os.read(r, 1 << 20)
                    if not d:
                        break
                    pos += len(d)
            n += 1
    finally:
        stop.append(1)
        t.join()
    if os.fstat(r).st_ino != os.fstat(w1).st_ino or n == 0:
        bad("st_ino differs or no round ran")
    for f in (r, w1, w2):
        os.close(f)
    if early or torn:
        bad("%d rounds: %d early EOFs, %d reads ending inside a record; %s"
            % (n, early, torn, first))
    print("OK %d rounds: every read reached the acknowledged end, at a record's end" % n)

def cross(a, b):
    """b's descriptor cached the log; a appends; then b appends with a stale end offset"""
    x0, x1, x2, x3 = rec("x", 0), rec("x", 1, 700), rec("x", 2, 900), rec("x", 3, 300)
    append(a, x0)
    rb = os.open(b, os.O_RDONLY)
    if until(lambda: read_all(rb) == x0) is not True:
        bad("b reads x0")
    append(a, x1)
    got = read_all(rb)                         # past b's cached size: refreshed
    if got != x0 + x1:
        bad("b after a's append: %d bytes, want %d" % (len(got), len(x0 + x1)))
    wb = os.open(b, os.O_WRONLY | os.O_APPEND)
    append(a, x2)
    os.write(wb, x3)                           # b's kernel thinks the end is len(x0 + x1)
    truth = fresh(a)
    if truth != x0 + x1 + x2 + x3:
        bad("the log on a is not x0 x1 x2 x3")
    off = len(x0 + x1)
    got = os.pread(rb, len(x3), off)
    if got != truth[off:off + len(x3)]:
        bad("b's exact read at its stale end: %r" % got[:40])
    if read_all(rb) != truth or fresh(b) != truth:
        bad("b's whole log differs from a's")
    print("OK b reads the true bytes")

def retention(a, b):
    """bytes retention set through a; b's cached descriptor and a new open on b"""
    os.close(os.open(a, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    os.setxattr(a, "user.segment_bytes", b"4096")
    rb = os.open(b, os.O_RDONLY)              # start 0: cached
    for i in range(30):
        append(a, rec("r", i, 1000))
    truth = fresh(a)
    if until(lambda: read_all(rb) == truth) is not True:
        bad("b reads the log")
    os.setxattr(a, "user.retention_bytes", b"8192")
    start = int(os.getxattr(a, "user.first_offset"))
    if start == 0:
        bad("retention dropped nothing")
    first = err(lambda: os.pread(rb, 100, 0))
    if a == b and first != "ESPIPE":
        bad("same mount: read below the start right after the setxattr gave %s" % first)
    got = until(lambda: err(lambda: os.pread(rb, 100, 0)) == "ESPIPE")
    if got is not True:
        bad("b's cached descriptor still reads below the start")
    if until(lambda: int(os.getxattr(b, "user.first_offset")) == start) is not True:
        bad("b's first_offset")
    r2 = os.open(b, os.O_RDONLY)              # start not page-aligned: a direct open
    if err(lambda: os.pread(r2, 100, start - 1)) != "ESPIPE":
        bad("a new open reads below the start")
    if read_all(r2, start) != truth[start:]:
        bad("a new open from first_offset")
    page = (start // 4096 + 1) * 4096
    if read_all(rb, page) != truth[page:]:
        bad("b's cached descriptor from the page after the start")
    print("OK start %d: ESPIPE below it, bytes from it" % start)

def time_retention(a, b):
    """time retention: the leader's sweep proposes TRIM; b's cached descriptor follows"""
    os.close(os.open(a, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    os.setxattr(a, "user.segment_bytes", b"4096")
    for i in range(12):
        append(a, rec("t", i, 1000))
    rb = os.open(b, os.O_RDONLY)
    truth = fresh(a)
    if until(lambda: read_all(rb) == truth) is not True:
        bad("b reads the log")
    os.setxattr(a, "user.retention_seconds", b"1")
    if until(lambda: int(os.getxattr(b, "user.first_offset")) > 0, 20) is not True:
        bad("time retention dropped nothing within 20 s")
    if until(lambda: err(lambda: os.pread(rb, 100, 0)) == "ESPIPE") is not True:
        bad("b's cached descriptor still reads below the start")
    print("OK time retention reached the cached descriptor")

def rm(a, b):
    """rm through a: b's cached descriptor reads EOF; the recreated log is another one"""
    c1 = b"".join(rec("m", i, 500) for i in range(20))
    append(a, c1)
    rb = os.open(b, os.O_RDONLY)
    if until(lambda: read_all(rb) == c1) is not True:
        bad("b reads the log")
    os.unlink(a)
    if a == b and os.pread(rb, 100, 0) != b"":
        bad("same mount: the cached descriptor reads bytes right after rm")
    if until(lambda: os.pread(rb, 100, 0) == b"") is not True:
        bad("b's cached descriptor still reads the removed log")
    c2 = rec("n", 0, 300)
    append(a, c2)
    if until(lambda: err(lambda: fresh(b)) == "OK" and fresh(b) == c2) is not True:
        bad("the recreated log read on b: %r" % fresh(b)[:40])
    if os.pread(rb, 100, 0) != b"":
        bad("the old descriptor reads the new log")
    print("OK rm and recreate")

def bigwrites(path, n, count):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for _ in range(int(count)):
        os.write(fd, b"x" * int(n))
    os.close(fd)

def hold(a, b, go):
    """descriptors on a node's mount cache logs a and b; once the file go exists (the node
    was stopped meanwhile, a's retention moved and b was removed, and the node resumed),
    a must read ESPIPE below its new start and b EOF (bounded waits)"""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    if not read_all(fa) or not read_all(fb):
        bad("nothing to cache")
    print("CACHED", flush=True)
    if until(lambda: os.path.exists(go), 180) is not True:
        bad("no go")
    if until(lambda: err(lambda: os.pread(fa, 100, 0)) == "ESPIPE", 20) is not True:
        bad("the cached descriptor still reads below the new start")
    if until(lambda: os.pread(fb, 100, 0) == b"", 20) is not True:
        bad("the cached descriptor still reads the removed log")
    print("OK ESPIPE and EOF after the catch-up")

globals()[sys.argv[1]](*sys.argv[2:])
EOF
lc() { timeout -k 5 120 "$PY" "$T/lc.py" "$@" 2>&1; }
# run_case NAME ARGS...: one lc.py scenario, ok when it prints OK
run_case() {
    local name=$1 out; shift
    out=$(lc "$@")
    if [[ $out == OK* ]]; then ok "$name"; note "$out"; else not_ok "$name" "$out"; fi
}
# resident BYTES of FILE in the page cache (fincore), or - when fincore is missing
resident() {
    command -v fincore >/dev/null || { echo -; return; }
    fincore -b -n -o RES "$1" 2>/dev/null | tr -d ' '
}
# tail_case NAME LOG APPEND_TO: cat LOG (its pages cached), tail -f it, append a marker to
# APPEND_TO (the same log on a mount), wait (bounded) for tail to show it
tail_case() {
    local name=$1 log=$2 to=$3 tp t0
    cat "$log" >/dev/null
    tail -n 0 -f "$log" >"$T/$name.out" 2>&1 &
    tp=$!
    sleep 1.5
    t0=$(now_ms)
    echo "marker-$t0" >>"$to"
    if wait_for 10 grep -q "marker-$t0" "$T/$name.out"; then
        ok "$name"; note "tail -f showed the record after $(( $(now_ms) - t0 )) ms"
    else
        not_ok "$name" "$(cat "$T/$name.out")"
    fi
    kill "$tp" 2>/dev/null; wait "$tp" 2>/dev/null
}

# ---- the embedded node
must_start n1
L=$MNT/logs
head -c 300000 /dev/urandom | base64 >"$T/text"
cp "$T/text" "$L/big"
cat "$L/big" >/dev/null
res=$(resident "$L/big")
if [ "$res" = - ]; then note "fincore missing: page cache residency not checked"
else checke cat-fills-page-cache '[ "$res" -gt 0 ]' || note "resident $res"; fi
check cat-reads-log [ "$(md5sum <"$L/big")" = "$(md5sum <"$T/text")" ]
run_case own-appends-read-exactly own "$L/own"
run_case same-mount-cross cross "$L/cross" "$L/cross"
run_case slots-reader-and-writers slots "$L/slots"
run_case slots-reader-before-writers-exact shared "$L/shared" 1500 40
run_case retention-bytes-espipe retention "$L/ret" "$L/ret"
# a log whose start is not page-aligned is read direct: nothing of it enters the page cache
if [ "$(resident "$L/ret")" != - ] && [ -w /proc/sys/vm/drop_caches ]; then
    sync; echo 3 >/proc/sys/vm/drop_caches
    first=$(getfattr --absolute-names --only-values -n user.first_offset "$L/ret")
    tail -c +$(( first + 1 )) "$L/ret" >/dev/null
    res=$(resident "$L/ret")
    checke unaligned-start-read-direct '[ "$res" = 0 ]' || note "resident $res"
else
    note "fincore missing or not root: the direct read of an unaligned log is not checked"
fi
run_case retention-time-espipe time_retention "$L/tret" "$L/tret"
run_case rm-recreate rm "$L/gone" "$L/gone"
tail_case tail-f-after-cat "$L/own" "$L/own"
check embedded-unmounts stop_node "$MNT" "$NPID"

# ---- three nodes (a snapshot every 256 KiB of log, so a stopped node catches up by one)
cluster_up 3 --node-args "--snapshot-bytes 262144"
L1=${M[1]}/logs L2=${M[2]}/logs L3=${M[3]}/logs
run_case cluster-cross cross "$L1/cross" "$L2/cross"
run_case cluster-retention retention "$L1/ret" "$L2/ret"
run_case cluster-rm-recreate rm "$L1/gone" "$L2/gone"
touch "$L1/tailed"
wait_for 10 test -e "$L3/tailed"
tail_case cluster-tail-f-after-cat "$L3/tailed" "$L1/tailed"
s1=$(md5sum <"$L1/cross"); s3=$(md5sum <"$L3/cross")
check cluster-same-bytes [ "$s1" = "$s3" ]

# ---- a node that catches up (by snapshot install, when the leader compacted past it) drops
# the cached pages of logs whose retention moved and of removed logs: node F, a follower of
# shard S, caches ca and cb; F is stopped; on the leader ca's retention drops segments, cb
# is removed and cf grows past several compactions; F resumes
SHARDOF=$(dirname "$QUORUMFS")/shardof
if [ -x "$SHARDOF" ]; then
    NS=$(wc -l <"${M[1]}/.cluster/shards")
    S=$("$SHARDOF" "$NS" logs/ca)
    on_s() { local c; for c in $(seq 0 400); do
        [ "$("$SHARDOF" "$NS" "logs/$1$c")" = "$S" ] && { echo "$1$c"; return; }; done; }
    CB=$(on_s cb); CF=$(on_s cf)
    lc bigwrites "$L1/$CB" 1000 12 >/dev/null
    touch "$L1/ca" "$L1/$CF"
    setfattr -n user.segment_bytes -v 4096 "$L1/ca"
    lc bigwrites "$L1/ca" 1000 12 >/dev/null
    wait_for 10 leader_not 0 "$S" >/dev/null; SL=$(leader_not 0 "$S")
    F=1; [ "$SL" = 1 ] && F=2
    MF=${M[$F]}
    wait_for 10 test -e "$MF/logs/$CB"
    lc hold "$MF/logs/ca" "$MF/logs/$CB" "$T/go" >"$T/hold.out" &
    hp=$!
    if wait_for 20 grep -q CACHED "$T/hold.out"; then
        FP=$(cat "$C/n$F/pid")
        installs() { awk -v s="quorumfs_raft_snapshot_installs_total{shard=\"$S\"}" \
            '$1 == s {print $2}' "$MF/.cluster/metrics" 2>/dev/null; }
        inst0=$(installs)
        kill -STOP "$FP"
        # 400 small appends one by one (more than the leader keeps in flight to the stopped
        # node), the changes, then 3 MiB: several compactions past what it was sent
        lc bigwrites "${M[$SL]}/logs/$CF" 1024 400 >/dev/null
        setfattr -n user.retention_bytes -v 4096 "${M[$SL]}/logs/ca"
        rm "${M[$SL]}/logs/$CB"
        lc bigwrites "${M[$SL]}/logs/$CF" 131072 24 >/dev/null
        sleep 2
        kill -CONT "$FP"
        touch "$T/go"
        wait "$hp"
        out=$(cat "$T/hold.out")
        checke cluster-catch-up-drops-pages '[[ $out == *OK* ]]' || note "$out"
        note "node $F (stopped) installed ${inst0:-?} -> $(installs) snapshot(s) of shard $S"
    else
        not_ok cluster-catch-up-drops-pages "the holder did not cache: $(cat "$T/hold.out")"
    fi
else
    note "no $SHARDOF: the catch-up case is skipped"
fi
finish
