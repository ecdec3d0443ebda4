#!/usr/bin/env python3
"""tests/lin/qcheck.py — checks a queue log recorded by tests/lin/qrec (run, then --drain
until the queue was empty) against what FILE-API §2 promises across node kills:

  - every acknowledged push was delivered: acknowledged by a consumer (rm claimed/<id>
    returned 0, or failed with an unknown outcome), or popped (during the run or the drain);
    a pop whose read failed because its node died (ENOTCONN, ECONNABORTED), or that never
    completed, may have removed a message it never returned, and excuses one missing message ("pop is at
    most once across a crash"), reported; a pop that failed on a live node excuses none;
  - no message was acknowledged twice, popped twice, or both popped and acknowledged, and
    none was claimed or popped again after its acknowledgement returned;
  - a payload that was pushed once is never in the queue twice (two message ids, or two
    deliveries after one acknowledgement): that would be a push applied twice;
  - nothing delivered that no producer pushed; claims and pops return well-formed lines.

  qcheck.py [--min-pushes N] [--min-acks N] [--min-after-last-mark N] LOG
Exit 0 all held, 1 a check failed, 3 too few successful operations, 2 a malformed log.
Log format: tests/lin/README.md."""
import sys
from collections import defaultdict


def main(argv):
    mins = {"--min-pushes": 0, "--min-acks": 0, "--min-after-last-mark": 0}
    args = argv[1:]
    path = None
    while args:
        a = args.pop(0)
        if a in mins and args:
            try:
                mins[a] = int(args.pop(0))
            except ValueError:
                print("qcheck: %s wants a number" % a, file=sys.stderr)
                return 2
        elif not a.startswith("-") and path is None:
            path = a
        else:
            print(__doc__.split("\n\n")[-1], file=sys.stderr)
            return 2
    if path is None:
        print("usage: qcheck.py [options] LOG", file=sys.stderr)
        return 2

    ops = {}          # (client, opid) -> dict(op, arg, call, status, result, ret)
    marks = []        # (label, t)
    try:
        f = open(path)
    except OSError as e:
        print("qcheck: %s" % e, file=sys.stderr)
        return 2
    with f:
        for ln, line in enumerate(f, 1):
            w = line.split()
            if not w or w[0] in ("#", "E", "P"):
                continue
            try:
                if w[0] == "I" and len(w) == 6:
                    key = (int(w[1]), int(w[2]))
                    if key in ops or w[3] not in ("push", "claim", "ack", "pop"):
                        raise ValueError
                    ops[key] = {"op": w[3], "arg": w[4], "call": int(w[5]), "status": None,
                                "result": None, "ret": None, "client": key[0]}
                elif w[0] == "C" and len(w) == 6:
                    o = ops[(int(w[1]), int(w[2]))]
                    if o["status"] is not None or w[3] not in ("ok", "err", "empty"):
                        raise ValueError
                    o["status"], o["result"], o["ret"] = w[3], w[4], int(w[5])
                elif w[0] == "M" and len(w) == 3:
                    marks.append((w[1], int(w[2])))
                else:
                    raise ValueError
            except (ValueError, KeyError):
                print("qcheck: %s:%d: malformed line: %s" % (path, ln, line.rstrip()),
                      file=sys.stderr)
                return 2

    failures = []

    def fail(msg):
        failures.append(msg)

    pushed_ok, pushed_unknown = set(), set()
    claims = defaultdict(list)      # payload -> [(msg id, op)]
    acks_ok = defaultdict(list)     # payload -> [op]
    acks_unknown = defaultdict(list)
    pops = defaultdict(list)
    n = defaultdict(int)
    failed_pops = []
    for o in sorted(ops.values(), key=lambda o: o["call"]):
        kind, st = o["op"], o["status"]
        n[kind + " " + (st or "no-completion")] += 1
        if kind == "push":
            (pushed_ok if st == "ok" else pushed_unknown).add(o["arg"])
        elif kind == "claim" and st == "ok":
            mid, sep, payload = o["result"].partition(":")
            if not sep or o["result"].startswith("malformed:"):
                fail("claim by client %d returned a malformed line: %s" % (o["client"], o["result"]))
                continue
            claims[payload].append((mid, o))
        elif kind == "ack":
            mid, _, payload = o["arg"].partition(":")
            (acks_ok if st == "ok" else acks_unknown)[payload].append(o)
        elif kind == "pop":
            if st == "ok":
                if o["result"].startswith("malformed:"):
                    fail("pop by client %d returned a malformed line: %s" % (o["client"], o["result"]))
                else:
                    pops[o["result"]].append(o)
            elif st is None or (o["result"].split("@")[0] in ("ENOTCONN", "ECONNABORTED", "ENODEV")
                                and o["result"].endswith("@read")):
                # its node died during the read: the pop may have committed without the reply
                # reaching us (FILE-API §2: pop is at most once across a crash). A pop that
                # failed at open never read (the take is proposed by the read), and one that
                # failed on a live node (EIO) gives its delivery back: they excuse nothing.
                failed_pops.append(o)
            elif st != "empty":
                n["pop other failure"] += 1

    pushed = pushed_ok | pushed_unknown
    delivered = set(acks_ok) | set(acks_unknown) | set(pops)
    for p in sorted(set(claims) | delivered):
        if p not in pushed:
            fail("%s was delivered but no producer pushed it" % p)
    for p, a in acks_ok.items():
        if len(a) > 1:
            fail("%s acknowledged %d times (clients %s)" % (p, len(a), [x["client"] for x in a]))
    for p, a in pops.items():
        if len(a) > 1:
            fail("%s popped %d times (clients %s)" % (p, len(a), [x["client"] for x in a]))
        if p in acks_ok:
            fail("%s both popped (client %d) and acknowledged (client %d)"
                 % (p, a[0]["client"], acks_ok[p][0]["client"]))
    for p, a in acks_ok.items():
        done = min(x["ret"] for x in a)
        again = [c for _, c in claims[p] if c["call"] > done] + [x for x in pops[p] if x["call"] > done]
        if again:
            fail("%s delivered again (client %d) after its acknowledgement returned"
                 % (p, again[0]["client"]))
    twice = {p: sorted({mid for mid, _ in cl}) for p, cl in claims.items()}
    twice = {p: ids for p, ids in twice.items() if len(ids) > 1}
    for p, ids in sorted(twice.items()):
        fail("%s in the queue under %d message ids %s: a push applied twice%s"
             % (p, len(ids), ids, " (its push got an error and was unknown)"
                if p in pushed_unknown else " (its push was acknowledged once)"))
    missing = sorted(p for p in pushed_ok if p not in delivered)
    if len(missing) > len(failed_pops):
        fail("%d acknowledged pushes never delivered (at most %d excused by failed pops): %s"
             % (len(missing), len(failed_pops), " ".join(missing[:20])))
    unknown_seen = sum(1 for p in pushed_unknown if p in delivered)

    print("# pushes: %d acknowledged, %d with an error (unknown outcome; %d of them delivered)"
          % (len(pushed_ok), len(pushed_unknown), unknown_seen))
    print("# claims: %d ok, %d empty, %d failed; acks: %d ok, %d failed (unknown)"
          % (n["claim ok"], n["claim empty"],
             n["claim err"] + n["claim no-completion"], sum(len(a) for a in acks_ok.values()),
             sum(len(a) for a in acks_unknown.values())))
    print("# pops: %d ok, %d failed reading as their node died, %d other failures; payloads "
          "claimed more than once (redelivered): %d"
          % (sum(len(a) for a in pops.values()), len(failed_pops), n["pop other failure"],
             sum(1 for cl in claims.values() if len(cl) > 1)))
    if missing:
        t0 = min(o["call"] for o in ops.values())
        ms = lambda t: "%.3f" % ((t - t0) / 1e6) if t is not None else "never"
        push_of = {o["arg"]: o for o in ops.values() if o["op"] == "push"}
        print("# acknowledged pushes never delivered, excused by %d failed pops (times in ms "
              "from the first invoke; pop is at most once across a crash):" % len(failed_pops))
        for p in missing[:20]:
            o = push_of[p]
            print("#   push %s by client %d [%s, %s]" % (p, o["client"], ms(o["call"]), ms(o["ret"])))
        for o in failed_pops:
            print("#   failed pop by client %d [%s, %s] %s" % (o["client"], ms(o["call"]), ms(o["ret"]),
                  o["result"] or "no completion"))
        for label, t in marks:
            print("#   mark %s at %s" % (label, ms(t)))
    after = 0
    if marks:
        t = marks[-1][1]
        after = sum(1 for o in ops.values() if o["status"] == "ok" and o["ret"] > t
                    and o["op"] in ("push", "ack"))
        print("# pushes and acks completed after the last mark (%s): %d" % (marks[-1][0], after))
    for msg in failures[:30]:
        print("# FAIL: " + msg)
    if len(failures) > 30:
        print("# ... and %d more" % (len(failures) - 30))
    if failures:
        return 1
    if missing:
        print("# EXCUSED: %d acknowledged pushes lost to failed pops" % len(missing))
    nacks = sum(len(a) for a in acks_ok.values())
    if (len(pushed_ok) < mins["--min-pushes"] or nacks < mins["--min-acks"]
            or after < mins["--min-after-last-mark"]):
        print("# too few successful operations to mean anything: want >= %d pushes, >= %d acks,"
              " >= %d after the last mark" % (mins["--min-pushes"], mins["--min-acks"],
                                              mins["--min-after-last-mark"]))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
