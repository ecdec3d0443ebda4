# tests/integration/lib_queues.sh — helpers of queues.sh and locks.sh (sourced after lib.sh):
# writes the small python drivers they run as separate processes into $T (producers,
# consumers, lock workers), gives bounded waits on queue lengths, and bounded reads of the
# blocking control files (pop, claim), so a misbehaving daemon fails a case instead of
# hanging the script.

QD=$T/qdrv.py
cat >"$QD" <<'PYEOF'
import errno, fcntl, os, signal, sys, time

def producer(push, p, n):
    """Writes n lines "p<p>-<i>" to push, one write() per line (each committed)."""
    fd = os.open(push, os.O_WRONLY)
    for i in range(n):
        os.write(fd, b"p%d-%d\n" % (p, i))
    os.close(fd)

def pop_consumer(qdir, out):
    """Pops until it gets STOP; logs every message in the order received."""
    with open(out, "w") as log:
        while True:
            fd = os.open(qdir + "/pop", os.O_RDONLY)
            data = b""
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                data += b
            os.close(fd)
            m = data.decode().rstrip("\n")
            if m == "STOP":
                return
            log.write(m + "\n")

def claim_consumer(qdir, out):
    """Claims until it gets STOP; acknowledges each message and logs it after the ack."""
    with open(out, "w") as log:
        while True:
            with open(qdir + "/claim", "rb") as f:
                line = f.read().decode().rstrip("\n")
            mid, _, m = line.partition(" ")
            os.unlink(qdir + "/claimed/" + mid)
            if m == "STOP":
                return
            log.write(m + "\n")
            log.flush()

def claim_hold(qdir, n, ready):
    """Claims n messages, says so in file ready, then sleeps (to be killed)."""
    for _ in range(n):
        with open(qdir + "/claim", "rb") as f:
            f.read()
    open(ready, "w").close()
    time.sleep(120)

def check_pop_logs(total, producers, logs):
    seen = set()
    dup = 0
    for path in logs:
        last = {}
        for line in open(path):
            m = line.strip()
            if m in seen:
                dup += 1
            seen.add(m)
            p, _, i = m[1:].partition("-")
            p, i = int(p), int(i)
            if last.get(p, -1) >= i:
                print("ORDER", path, m)
                return 1
            last[p] = i
    want = set("p%d-%d" % (p, i) for p in range(producers) for i in range(total // producers))
    missing = len(want - seen)
    extra = len(seen - want)
    print("OK" if not (dup or missing or extra) else "BAD", "dup=%d missing=%d extra=%d got=%d"
          % (dup, missing, extra, len(seen)))
    return 0 if not (dup or missing or extra) else 1

def lock_counter(lockpath, counter, n, how):
    """n times: take the lock (flock or lockf), increment counter (a local file), release."""
    for _ in range(n):
        fd = os.open(lockpath, os.O_RDWR)
        if how == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        with open(counter, "r+") as c:
            v = int(c.read() or "0")
            c.seek(0)
            c.write("%d\n" % (v + 1))
            c.truncate()
        if how == "flock":
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)

def fence_worker(lockpath, log, n):
    """n acquisitions; while holding, appends the lock's fence to the shared log."""
    for _ in range(n):
        fd = os.open(lockpath, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        f = os.getxattr(lockpath, "user.fence").decode()
        with open(log, "a") as l:
            l.write(f + "\n")
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

def fifo_waiter(lockpath, name, log, hold):
    fd = os.open(lockpath, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with open(log, "a") as l:
        l.write(name + "\n")
    time.sleep(float(hold))
    os.close(fd)

def hold(lockpath, mode, ready):
    """Takes flock mode "sh" or "ex" on lockpath, says so in file ready, sleeps (to be killed)."""
    fd = os.open(lockpath, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH if mode == "sh" else fcntl.LOCK_EX)
    open(ready, "w").close()
    time.sleep(120)

def holder(lockpath, ready):
    fd = os.open(lockpath, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    open(ready, "w").close()
    time.sleep(120)

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    f = globals()[sys.argv[1].replace("-", "_")]
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    if sys.argv[1] == "check-pop-logs":
        sys.exit(check_pop_logs(args[0], args[1], sys.argv[4:]))
    f(*args)
PYEOF

# qlen QDIR: prints "ready inflight dead".
qlen() { timeout -k 1 5 cat "$1/len" 2>/dev/null; }

# bcat SECS FILE: cat of a control file that may block (pop, claim), for at most SECS
# seconds; prints what was read and returns cat's status (124 on timeout). The output goes
# through a file and the reader runs in the background, so this returns within SECS + 2 s
# even when the reader cannot be killed (a FUSE request the daemon has taken and never
# answers): it is then left behind for the EXIT trap, which kills the daemon.
bcat() {
    local secs=$1 f=$2 out p rc=124 i
    out=$(mktemp "$T/bcat.XXXXXX")
    timeout -k 1 "$secs" cat "$f" >"$out" 2>/dev/null &
    p=$!
    for i in 1 2 3 4 5 6 7 8 9 10; do pid_alive "$p" || break; sleep 0.01; done
    if ! pid_alive "$p" || wait_for $((secs + 2)) pid_gone "$p"; then
        wait "$p"
        rc=$?
    fi
    cat "$out"
    rm -f "$out"
    return $rc
}
# QWAIT: the bound, in seconds, of a pop or claim that should be answered at once (a message
# is ready) or soon (one is about to come back).
QWAIT=${QWAIT:-5}
qpop()   { bcat "$QWAIT" "$1/pop"; }     # qpop QDIR: one message, or nothing after QWAIT s
qclaim() { bcat "$QWAIT" "$1/claim"; }   # qclaim QDIR: "<id> <message>", or nothing

# all_gone PID...: none of PID... runs any more (zombies count as gone).
all_gone() { local p; for p in "$@"; do pid_alive "$p" && return 1; done; return 0; }

# wait_pids SECS PID...: waits (bounded) until every PID has exited; 1 if some still run
# after SECS seconds. Reaps the ones that exited.
wait_pids() {
    local secs=$1 p rc; shift
    wait_for "$secs" all_gone "$@"
    rc=$?
    for p in "$@"; do pid_alive "$p" || wait "$p" 2>/dev/null; done
    return $rc
}

# kill_pids PID...: kill -9 whatever of PID... still runs, and reaps it (bounded).
# Disowned first, so bash prints no "Killed" job report.
kill_pids() {
    local p
    for p in "$@"; do disown "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    for p in "$@"; do wait_for 5 pid_gone "$p"; done
    return 0
}

# wait_len SECS QDIR "R I D": waits until len shows exactly that.
wait_len() { local s=$1 q=$2 want=$3; wait_for "$s" eval '[ "$(qlen "$q")" = "$want" ]'; }

# ms: milliseconds now.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
