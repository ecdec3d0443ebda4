#!/usr/bin/env python3
"""tests/powercut/check.py — checks, on a mount restarted after a simulated power cut, that
every write the writers of tests/integration/powercut.sh saw acknowledged is there.

  check.py TAG MNT ACKLOG... [--drain OUT] [--popped FILE]

Ack log lines (written only after the call returned success):
  cache PATH VALUE          the key PATH (mount-relative) was set to VALUE
  config PATH VALUE REV     the config file PATH was set to VALUE at revision REV ('-': unknown)
  seq PATH N                the key PATH was set to N (it is rewritten with N+1, N+2, ...)
  queue QDIR VALUE          VALUE was pushed to the queue QDIR
With --drain, every queue named is emptied with non-blocking pops (written to OUT), and
must hold every acknowledged message, each writer's in its order. With --popped, no message
listed in FILE (popped before the cut) may come back.
Prints one line per check: "PASS <TAG-name> <detail>" or "FAIL <TAG-name> <detail>"."""
import errno
import os
import sys


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return "<%s>" % errno.errorcode.get(e.errno, e.errno)


def drain(qdir):
    out = []
    for _ in range(1000000):
        try:
            fd = os.open(qdir + "/pop", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            return out, "open: %s" % e
        try:
            data = b""
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                data += b
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return out, None
            return out, "read: %s" % e
        finally:
            os.close(fd)
        out.append(data.decode(errors="replace").rstrip("\n"))
    return out, "more than a million messages"


def key(msg):
    """(round, writer) and index of a value "r<R>-w<W>-i<I>-..."."""
    parts = msg.split("-")
    try:
        return (parts[0], parts[1]), int(parts[2][1:])
    except (IndexError, ValueError):
        return None, None


def report(tag, name, bad, total, detail):
    status = "FAIL" if bad else "PASS"
    print("%s %s-%s %d of %d%s" % (status, tag, name, total - len(bad), total,
                                   ("; " + "; ".join(bad[:5])) if bad else detail))


def main():
    args = sys.argv[1:]
    tag, mnt = args[0], args[1]
    logs, drain_out, popped = [], None, None
    i = 2
    while i < len(args):
        if args[i] == "--drain":
            drain_out = args[i + 1]
            i += 2
        elif args[i] == "--popped":
            popped = args[i + 1]
            i += 2
        else:
            logs.append(args[i])
            i += 1
    cache, config, seq, queue = [], [], {}, {}
    for log in logs:
        if not os.path.exists(log):
            continue
        for line in open(log):
            f = line.split()
            if f[0] == "cache":
                cache.append((f[1], f[2]))
            elif f[0] == "config":
                config.append((f[1], f[2], f[3]))
            elif f[0] == "seq":
                seq[f[1]] = max(seq.get(f[1], 0), int(f[2]))
            elif f[0] == "queue":
                queue.setdefault(f[1], []).append(f[2])

    bad = ["%s: %r, want %r" % (p, read(mnt + "/" + p)[:30], v[:30])
           for p, v in cache if read(mnt + "/" + p) != v + "\n"]
    report(tag, "cache-acked-present", bad, len(cache), "")

    bad = []
    for p, v, rev in config:
        got = read(mnt + "/" + p)
        if got != v + "\n":
            bad.append("%s: %r, want %r" % (p, got[:30], v[:30]))
            continue
        if rev == "-":
            continue
        try:
            have = os.getxattr(mnt + "/" + p, "user.version").decode()
        except OSError as e:
            have = "<%s>" % e
        if have != rev:
            bad.append("%s: user.version %s, want %s" % (p, have, rev))
        elif read(mnt + "/" + p + "@" + rev) != v + "\n":
            bad.append("%s@%s: %r" % (p, rev, read(mnt + "/" + p + "@" + rev)[:40]))
    report(tag, "config-acked-present", bad, len(config), " (values, revisions, history)")

    bad = []
    for p, n in sorted(seq.items()):
        got = read(mnt + "/" + p).strip()
        if not got.isdigit() or not n <= int(got) <= n + 1:
            bad.append("%s: %r, acknowledged %d" % (p, got, n))
    report(tag, "rewritten-key-not-behind", bad, len(seq), "")

    if drain_out is None:
        return
    got_all = []
    for qdir in sorted(queue) or []:
        got, err = drain(mnt + "/" + qdir)
        got_all += got
        bad = ["drain: %s" % err] if err else []
        seen = set(got)
        bad += ["%s missing" % m[:30] for m in queue[qdir] if m not in seen]
        last = {}
        for m in got:
            w, i = key(m)
            if w is None:
                continue
            if last.get(w, -1) >= i:
                bad.append("%s after index %d" % (m[:30], last[w]))
            last[w] = i
        report(tag, "queue-acked-present-in-order", bad, len(queue[qdir]),
               " (%d popped after the cut)" % len(got))
    with open(drain_out, "w") as f:
        for m in got_all:
            f.write(m + "\n")
    if popped is not None:
        before = set(l.strip() for l in open(popped) if l.strip())
        back = [m[:30] for m in got_all if m in before]
        report(tag, "popped-stay-gone", back, len(before), "")


if __name__ == "__main__":
    main()
