#!/usr/bin/env python3
"""tests/integration/poll.py — poll(2), select(2) and epoll(7) on the blocking files of a
quorumfs mount (FILE-API §1 "Waiting": readable exactly when a read would not block), run by
poll.sh against a live mount, one subcommand per group of cases. Prints one line per result:
"PASS <case>", "FAIL <case> <why>" or "NOTE <text>" (figures). Stdlib only. Every wait is
bounded; writers run as separate processes (a push from another process, as a user has it).

  poll.py queue QDIR KIND MECH TRIALS   idle, no spin, wake on push (KIND pop|claim)
  poll.py events DIR OTHER TRIALS       config .events: idle, no spin, wake on a write below
  poll.py replay DIR                    config .events@0: readable at once, then idle, then wake
  poll.py pollers QDIR                  two pollers of one queue and two of one open both wake
  poll.py waiting QDIR                  an interrupted read still registered; a returned message
  poll.py lease QDIR                    a lease that expires wakes a claim poller
  poll.py gone QDIR                     removing the queue wakes its poller (read: ENOENT)
  poll.py closed QDIR                   descriptors closed or killed while they wait
  poll.py ready PATH...                 files that never block are readable at once
  poll.py eagain PATH...                O_NONBLOCK reads of empty blocking files give EAGAIN
"""
import errno
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time

LATENCY_LIMIT_MS = 100.0       # issue 8: a wake-up within 100 ms of a push (median)
IDLE_MS = 300                  # a poll of a file with nothing to read times out after this

# A writer in its own process: sleeps, notes the (system-wide) monotonic time, writes its
# data in one write(), closes, and prints both times. mode "push" writes to an existing
# file; "file" creates or truncates (a config save, published at close).
WRITER = r'''
import os, sys, time
path, data, delay, mode = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3]), sys.argv[4]
time.sleep(delay)
t0 = time.monotonic()
fd = os.open(path, os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if mode == "file" else 0), 0o644)
os.write(fd, data)
os.close(fd)
print(t0, time.monotonic(), flush=True)
'''


def out(kind, *words):
    print(kind, *words, flush=True)


def check(name, cond, why=""):
    if cond:
        out("PASS", name)
    else:
        out("FAIL", name, why or "failed")
    return cond


def write_later(path, data, delay, mode="push"):
    """Starts a writer process; collect it with writer_times."""
    return subprocess.Popen([sys.executable, "-c", WRITER, path, data, str(delay), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def writer_times(p):
    """(t0, t1) of a writer: before its open, after its close; None if it failed."""
    try:
        o, e = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None
    if p.returncode != 0:
        out("NOTE", "writer failed:", e.decode(errors="replace").strip()[-200:])
        return None
    t0, t1 = o.split()
    return float(t0), float(t1)


def wait_readable(mech, fd, timeout_s, late_ok=False):
    """Waits (at most timeout_s) until mech reports fd readable; True if it did before its
    timeout ran out. When the timeout runs out the kernel polls the file once more, so a
    file that became readable without a notification shows up then: that is no wake-up
    (unless late_ok: any report counts)."""
    t = time.monotonic()
    if mech == "poll":
        p = select.poll()
        p.register(fd, select.POLLIN)
        got = any(ev & (select.POLLIN | select.POLLERR) for _, ev in p.poll(timeout_s * 1000))
    elif mech == "select":
        r, _, _ = select.select([fd], [], [], timeout_s)
        got = fd in r
    else:
        ep = select.epoll()
        try:
            ep.register(fd, select.EPOLLIN)
            got = bool(ep.poll(timeout_s))
        finally:
            ep.close()
    return got and (late_ok or time.monotonic() - t < timeout_s * 0.9)


def idle_case(name, mech, fd):
    """Nothing to read: mech times out after IDLE_MS without reporting fd."""
    t = time.monotonic()
    got = wait_readable(mech, fd, IDLE_MS / 1000, late_ok=True)
    ms = (time.monotonic() - t) * 1000
    return check(name, not got and ms >= IDLE_MS * 0.9,
                 "%s reported the fd readable after %.0f ms with nothing to read" % (mech, ms))


def spin_case(name, fd, secs=1.0):
    """An event loop (level-triggered epoll, 100 ms ticks) over fd for secs: it must not
    be woken once, nor spin."""
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    wakes = calls = 0
    end = time.monotonic() + secs
    while time.monotonic() < end and calls < 10000:
        calls += 1
        if ep.poll(0.1):
            wakes += 1
    ep.close()
    out("NOTE", "%s: %d wake-ups in %d epoll_wait calls over %.1f s" % (name, wakes, calls, secs))
    return check(name, wakes == 0, "%d wake-ups, %d calls in %.1f s" % (wakes, calls, secs))


def on_alarm(signum, frame):
    raise TimeoutError()


def read_now(fd, nonblock):
    """Reads once; returns (bytes or errno name, ms). A blocking read is guarded by an alarm:
    a read that would block (the bug) is reported instead of hanging."""
    t = time.monotonic()
    if not nonblock:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        data = os.read(fd, 65536)
    except TimeoutError:
        data = "BLOCKED"
    except OSError as e:
        data = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        if not nonblock:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return data, (time.monotonic() - t) * 1000


def report_latency(name, lats):
    med = statistics.median(lats) if lats else float("inf")
    out("NOTE", "%s: push-to-wake latency ms over %d trials: %s; median %.1f, max %.1f" %
        (name, len(lats), " ".join("%.1f" % x for x in lats), med, max(lats or [0])))
    return check(name, len(lats) >= 5 and med < LATENCY_LIMIT_MS,
                 "median %.1f ms over %d trials (limit %.0f ms)" % (med, len(lats),
                                                                    LATENCY_LIMIT_MS))


# ---------------------------------------------------------------- queues

def cmd_queue(qdir, kind, mech, trials):
    pfx = "%s-%s" % (kind, mech)
    path = qdir + "/" + kind
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    idle_case(pfx + "-empty-queue-times-out", mech, fd)
    spin_case(pfx + "-empty-queue-event-loop-does-not-spin", fd)
    os.close(fd)
    lats, bad = [], []
    for i in range(trials):
        nonblock = i % 2 == 0          # every other trial reads through a blocking fd
        fd = os.open(path, os.O_RDONLY | (os.O_NONBLOCK if nonblock else 0))
        msg = "%s-%d" % (kind, i)
        w = write_later(qdir + "/push", msg + "\n", 0.25)
        woke = wait_readable(mech, fd, 5)
        tw = time.monotonic()
        times = writer_times(w)
        data, rms = read_now(fd, nonblock) if woke else ("not read", 0)
        if kind == "claim" and isinstance(data, bytes):
            mid, _, rest = data.decode().rstrip("\n").partition(" ")
            try:
                os.unlink(qdir + "/claimed/" + mid)
            except OSError as e:
                bad.append("trial %d: ack of %s: %s" % (i, mid, e))
            data = (rest + "\n").encode()
        if not woke:
            bad.append("trial %d: no wake-up within 5 s of the push" % i)
        elif not times:
            bad.append("trial %d: the push failed" % i)
        elif tw < times[0]:
            bad.append("trial %d: woke before the push" % i)
        else:
            lats.append((tw - times[0]) * 1000)
        if woke and data != (msg + "\n").encode():
            bad.append("trial %d: read after the wake-up gave %r (%.0f ms), want %r" %
                       (i, data, rms, msg))
        elif woke and rms > 200:
            bad.append("trial %d: the read after the wake-up took %.0f ms" % (i, rms))
        os.close(fd)
    check(pfx + "-push-wakes-and-read-does-not-block", not bad, "; ".join(bad[:3]))
    report_latency(pfx + "-wake-latency-median-under-100ms", lats)


def cmd_pollers(qdir):
    """Two opens of pop, each in its own epoll in its own thread; then two threads polling
    one open. One push wakes every poller; the one that reads gets the message; the other
    open's read would block again, and its poll says so."""
    def waiter(fd, res, i):
        res[i] = wait_readable("epoll" if i == 0 else "poll", fd, 5)

    fds = [os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK) for _ in range(2)]
    res = [None, None]
    ths = [threading.Thread(target=waiter, args=(fds[i], res, i)) for i in range(2)]
    for t in ths:
        t.start()
    time.sleep(0.3)
    times = writer_times(write_later(qdir + "/push", "both\n", 0))
    for t in ths:
        t.join(10)
    check("two-opens-both-pollers-wake", res == [True, True] and times,
          "pollers woke: %s" % res)
    d0, _ = read_now(fds[0], True)
    d1, _ = read_now(fds[1], True)
    check("two-opens-first-read-gets-the-message", d0 == b"both\n", "got %r" % (d0,))
    check("two-opens-second-read-would-block", d1 == "EAGAIN", "got %r" % (d1,))
    idle_case("two-opens-second-poll-not-ready-after-the-other-read", "poll", fds[1])
    for fd in fds:
        os.close(fd)

    fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    res = [None, None]
    ths = [threading.Thread(target=waiter, args=(fd, res, i)) for i in range(2)]
    for t in ths:
        t.start()
    time.sleep(0.3)
    writer_times(write_later(qdir + "/push", "one-open\n", 0))
    for t in ths:
        t.join(10)
    check("one-open-two-pollers-both-wake", res == [True, True], "pollers woke: %s" % res)
    d, _ = read_now(fd, True)
    check("one-open-read-gets-the-message", d == b"one-open\n", "got %r" % (d,))
    os.close(fd)


class Interrupted(Exception):
    pass


def on_interrupt(signum, frame):
    raise Interrupted()


def interrupted_read(fd):
    """A blocking read of fd ended by a signal after 0.3 s; True if it was interrupted."""
    signal.signal(signal.SIGALRM, on_interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        os.read(fd, 65536)
        return False
    except Interrupted:
        return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def cmd_waiting(qdir):
    """A read interrupted by a signal stays registered (docs/QUEUES.md): the next message is
    this open's. Its poll is not ready until then, and wakes when it comes. Another open's
    poll is not woken by a message that went to that waiter, but is when the message comes
    back (the waiter's open is closed unread)."""
    a = os.open(qdir + "/pop", os.O_RDONLY)
    check("interrupted-read-interrupted", interrupted_read(a), "the read returned")
    idle_case("interrupted-read-poll-not-ready", "poll", a)
    w = write_later(qdir + "/push", "for-a\n", 0.2)
    woke = wait_readable("poll", a, 5)
    writer_times(w)
    check("interrupted-read-poll-wakes-on-its-message", woke, "no wake-up in 5 s")
    d, ms = read_now(a, False)
    check("interrupted-read-then-read-gets-it-at-once", d == b"for-a\n" and ms < 200,
          "got %r in %.0f ms" % (d, ms))
    os.close(a)

    a = os.open(qdir + "/pop", os.O_RDONLY)
    check("returned-waiter-interrupted", interrupted_read(a), "the read returned")
    b = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    writer_times(write_later(qdir + "/push", "back\n", 0))
    idle_case("returned-other-poller-not-woken-by-a-message-another-open-holds", "poll", b)
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, wait_readable("poll", b, 5)))
    th.start()
    time.sleep(0.2)
    t = time.monotonic()
    os.close(a)                        # release gives the message back to the head
    th.join(10)
    ms = (time.monotonic() - t) * 1000
    check("returned-message-wakes-the-poller", res[0], "no wake-up in 5 s")
    out("NOTE", "returned message: close of the holder to wake-up %.1f ms" % ms)
    d, _ = read_now(b, True)
    check("returned-message-read", d == b"back\n", "got %r" % (d,))
    os.close(b)


def cmd_lease(qdir):
    """visibility_timeout is 1 s (poll.sh sets it): a claimed message that is not
    acknowledged comes back; a claim open polling meanwhile wakes then, not before."""
    writer_times(write_later(qdir + "/push", "leased\n", 0))
    with open(qdir + "/claim", "rb") as f:
        first = f.read().decode().rstrip("\n")
    t = time.monotonic()
    fd = os.open(qdir + "/claim", os.O_RDONLY | os.O_NONBLOCK)
    idle_case("lease-claim-poll-not-ready-while-in-flight", "epoll", fd)
    woke = wait_readable("epoll", fd, 10)
    ms = (time.monotonic() - t) * 1000
    check("lease-expiry-wakes-the-poller", woke, "no wake-up in 10 s")
    out("NOTE", "lease: claim to wake-up of the next claimer %.0f ms (timeout 1000 ms)" % ms)
    d, _ = read_now(fd, True)
    ok = isinstance(d, bytes) and d.decode().rstrip("\n") == first
    check("lease-expired-message-claimed-again", ok and ms >= 900,
          "got %r after %.0f ms, first claim %r" % (d, ms, first))
    if ok:
        os.unlink(qdir + "/claimed/" + first.split(" ")[0])
    os.close(fd)


def cmd_gone(qdir):
    fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, wait_readable("poll", fd, 5)))
    th.start()
    time.sleep(0.3)
    os.rmdir(qdir)
    th.join(10)
    check("removed-queue-wakes-its-poller", res[0], "no wake-up in 5 s")
    d, _ = read_now(fd, True)
    check("removed-queue-read-fails-at-once", d == "ENOENT", "got %r" % (d,))
    os.close(fd)


def cmd_closed(qdir):
    """Descriptors that go away while they wait must not crash the daemon: an fd closed
    under a waiting epoll and under a waiting poll, and a poller killed with SIGKILL. Then
    a push still reaches a reader (the pollers took nothing)."""
    fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    threading.Timer(0.2, os.close, args=(fd,)).start()
    ev = ep.poll(1.0)
    ep.close()
    check("closed-under-epoll-wait-no-event", not ev, "epoll reported %s" % (ev,))

    fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    res = [None]
    p = select.poll()
    p.register(fd, select.POLLIN)
    th = threading.Thread(target=lambda: res.__setitem__(0, p.poll(1500)))
    th.start()
    time.sleep(0.2)
    os.close(fd)                       # the waiting poll keeps the file until it returns
    th.join(5)
    check("closed-under-poll-returns", not th.is_alive(), "poll still waiting")

    child = subprocess.Popen([sys.executable, "-c",
                              "import os,select,sys\n"
                              "fd=os.open(sys.argv[1],os.O_RDONLY)\n"
                              "p=select.poll(); p.register(fd, select.POLLIN)\n"
                              "print('polling', flush=True); p.poll(30000)",
                              qdir + "/pop"], stdout=subprocess.PIPE)
    line = child.stdout.readline()
    time.sleep(0.2)
    child.kill()
    child.wait(10)
    check("killed-poller-gone", line.strip() == b"polling", "child said %r" % (line,))
    time.sleep(0.2)
    writer_times(write_later(qdir + "/push", "after\n", 0))
    fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
    woke = wait_readable("poll", fd, 5)
    d, _ = read_now(fd, True)
    check("after-closed-pollers-push-reaches-a-reader", woke and d == b"after\n",
          "woke %s, read %r" % (woke, d))
    os.close(fd)


# ---------------------------------------------------------------- config .events

def drain(fd):
    """Reads a non-blocking .events fd until EAGAIN; returns the text (None on an error)."""
    text = b""
    for _ in range(1000):
        d, _ = read_now(fd, True)
        if d == "EAGAIN":
            return text.decode()
        if not isinstance(d, bytes) or not d:
            return None
        text += d
    return None


def cmd_events(d, other, trials):
    fd = os.open(d + "/.events", os.O_RDONLY | os.O_NONBLOCK)
    idle_case("events-no-change-times-out", "epoll", fd)
    spin_case("events-no-change-event-loop-does-not-spin", fd)
    w = write_later(other + "/y", "elsewhere\n", 0.05, "file")
    t = time.monotonic()
    got = wait_readable("epoll", fd, IDLE_MS / 1000, late_ok=True)
    writer_times(w)
    check("events-change-outside-the-directory-does-not-wake", not got,
          "woke %.0f ms after a write outside" % ((time.monotonic() - t) * 1000))
    lats, bad = [], []
    mechs = ["epoll", "poll", "select"]
    for i in range(trials):
        mech = mechs[i % 3]
        w = write_later(d + "/sub/x%d" % i, "v%d\n" % i, 0.25, "file")
        woke = wait_readable(mech, fd, 5)
        tw = time.monotonic()
        times = writer_times(w)
        text = drain(fd) if woke else ""
        if not woke:
            bad.append("trial %d (%s): no wake-up within 5 s of the write" % (i, mech))
        elif not times:
            bad.append("trial %d: the write failed" % i)
        elif tw < times[0]:
            bad.append("trial %d: woke before the write" % i)
        else:
            lats.append((tw - times[0]) * 1000)
        if woke and (text is None or (" put config/%s/sub/x%d\n" % (rel(d), i)) not in text):
            bad.append("trial %d: read after the wake-up gave %r" % (i, text))
        if woke and wait_readable(mech, fd, 0.05, late_ok=True):
            bad.append("trial %d: still readable after everything was read" % i)
    check("events-write-below-wakes-and-read-does-not-block", not bad, "; ".join(bad[:3]))
    report_latency("events-wake-latency-median-under-100ms", lats)
    os.close(fd)


def rel(d):
    """The config-relative path of directory d (.../config/app -> app)."""
    return d.split("/config/", 1)[1]


def cmd_replay(d):
    fd = os.open(d + "/.events@0", os.O_RDONLY | os.O_NONBLOCK)
    t = time.monotonic()
    ready = wait_readable("poll", fd, 1)
    check("replay-readable-at-once", ready and time.monotonic() - t < 0.5,
          "ready %s after %.0f ms" % (ready, (time.monotonic() - t) * 1000))
    text = drain(fd)
    check("replay-read-gives-the-history", text is not None and " put config/" in text,
          "read %r" % (text,))
    idle_case("replay-read-all-then-times-out", "select", fd)
    w = write_later(d + "/replayed", "r\n", 0.2, "file")
    woke = wait_readable("select", fd, 5)
    writer_times(w)
    text = drain(fd) if woke else None
    check("replay-then-write-wakes", woke and text and "config/%s/replayed" % rel(d) in text,
          "woke %s, read %r" % (woke, text))
    os.close(fd)


# ---------------------------------------------------------------- others

def cmd_ready(paths):
    for path in paths:
        name = "never-blocking-file-ready-" + path.rsplit("/", 2)[-2] + "-" + \
            path.rsplit("/", 1)[-1]
        flags = os.O_WRONLY if path.endswith("/push") else os.O_RDONLY
        fd = os.open(path, flags)
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        ev = p.poll(1000)
        want = select.POLLOUT if flags == os.O_WRONLY else select.POLLIN
        check(name, ev and ev[0][1] & want, "poll gave %s" % (ev,))
        os.close(fd)


def cmd_eagain(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if path.endswith(".events"):
            drain(fd)
        d, ms = read_now(fd, True)
        check("nonblock-read-eagain-" + path.rsplit("/", 1)[-1].lstrip("."),
              d == "EAGAIN" and ms < 500, "got %r in %.0f ms" % (d, ms))
        os.close(fd)


def main(argv):
    cmd = argv[1]
    if cmd == "queue":
        cmd_queue(argv[2], argv[3], argv[4], int(argv[5]))
    elif cmd == "events":
        cmd_events(argv[2], argv[3], int(argv[4]))
    elif cmd == "replay":
        cmd_replay(argv[2])
    elif cmd == "pollers":
        cmd_pollers(argv[2])
    elif cmd == "waiting":
        cmd_waiting(argv[2])
    elif cmd == "lease":
        cmd_lease(argv[2])
    elif cmd == "gone":
        cmd_gone(argv[2])
    elif cmd == "closed":
        cmd_closed(argv[2])
    elif cmd == "ready":
        cmd_ready(argv[2:])
    elif cmd == "eagain":
        cmd_eagain(argv[2:])
    else:
        sys.exit("usage: see the top of " + argv[0])


if __name__ == "__main__":
    main(sys.argv)
