#!/usr/bin/env python3
"""tools/bench-search.py — the measurements of tools/bench-search (search/, issue 12), on
one corpus in one run: a mounted embedded quorumfs node MNT and SQLite FTS5 in this process.

  bench-search.py MNT NULLMNT WORK DOCS SECONDS [UNCACHED_MNT [OTHER_MNT]]

  1. indexing: DOCS man pages (tests/integration/search_bm25.py corpus, 8 KiB each) written
     into MNT/search/bench by 8 threads (documents/s); into an FTS5 table (unicode61,
     diacritics removed) with a commit per document (WAL, synchronous=FULL: durable per
     document, as each save on the mount is) and in one transaction;
  2. query latency: 200 generated queries (plain, +must, -not, "phrase", prefix*) through
     the mount (open + read + close of .q/<query>) and through FTS5 (MATCH, ORDER BY bm25(),
     LIMIT 10; the query translated to FTS5's syntax), p50 and p99 over 3 rounds; the
     mount's first round (every answer computed) apart from the two others (the mount's
     query cache answers them: nothing changed in between);
  3. top-10 agreement with FTS5 on the plain queries (terms ORed in FTS5): the mean share of
     our top 10 that is in FTS5's top 10 (the scores differ by design: FTS5's idf is
     ln((N - n + 0.5)/(n + 0.5)), ours Lucene's ln(1 + ...); its tokenizer is close to ours
     on ASCII);
  4. queries/s with 16 processes through the mount, against 16 processes doing open +
     read + close of 1 KiB files on NULLMNT (tools/nullfs, the FUSE ceiling), in 3 rounds
     of SECONDS/3 for each measure, all taking turns in each round. Two null-FUSE cycles:
     "flat", a file in NULLMNT's root (LOOKUP, OPEN, READ, READ, FLUSH, RELEASE: the
     baseline of the earlier figures), and "query path", NULLMNT/search/bench/.q/<query>
     with nullfs started with --chain search:3600/bench:0/.q:3600 --name-timeout 3600, the
     same path walk and the same FUSE requests as a query on the mount (the index looked up
     at each walk, the query name once: LOOKUP, OPEN, READ, READ, FLUSH, RELEASE; with a new
     name each time, one LOOKUP more). The mount's measures: "repeated", the 200 queries
     over and over (answered from the mount's query cache); "distinct", where no query is
     ever asked twice (each of the 200 with a term of its own added, u<pid>x<n>, that no
     document holds: the same hits, but every answer computed, and every query a new name,
     so a new inode for the kernel and the mount; its query-path null cycle also uses a new
     name each time); given UNCACHED_MNT (a node started with QUORUMFS_SEARCH_CACHE_BYTES=0,
     loaded here with the same documents), "repeated, cache off": the 200 queries over and
     over, each computed; given OTHER_MNT (the same, from another build: tools/bench-search
     --compare), that build's "repeated, cache off" in the same rounds.
Prints one line per figure.
"""
import importlib.util
import multiprocessing
import os
import re
import resource
import sqlite3
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "ref", os.path.join(HERE, "..", "tests", "integration", "search_bm25.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def fts_query(q):
    """Our query in FTS5's syntax: should terms ORed, +must ANDed, -not NOTed."""
    clauses, _ = ref.parse(q)
    should, must, nots = [], [], []
    for o, (kind, arg) in clauses:
        if kind == "prefix":
            s = '"%s"*' % arg.decode()
        else:
            s = '"%s"' % " ".join(t.decode() for t in arg)
        (must if o == "+" else nots if o == "-" else should).append(s)
    expr = " AND ".join(must + (["(" + " OR ".join(should) + ")"] if should else []))
    for n in nots:
        expr += " NOT " + n
    return expr


def reader(paths, seconds, distinct, barrier, out):
    """One of the processes of throughput(): open + read + close of paths in turn (a new
    name each time when distinct) for `seconds` from the moment every process is ready;
    puts (cycles, errors) on out."""
    n = errors = 0
    i = os.getpid()
    barrier.wait(120)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        p = paths[i % len(paths)]
        if distinct:
            p += " u%dx%d" % (os.getpid(), n)
        i += 1
        try:
            fd = os.open(p, os.O_RDONLY)
            while os.read(fd, 65536):
                pass
            os.close(fd)
            n += 1
        except OSError:
            errors += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.put((n, errors, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime))


def cpu_seconds(pid):
    """The user + system CPU seconds process pid used so far (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_of(mnt):
    """The pid of the quorumfs or nullfs process serving mount point mnt."""
    mnt = os.path.realpath(mnt).encode()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if (argv[0].endswith(b"quorumfs") or argv[0].endswith(b"nullfs")) and \
                    any(os.path.realpath(a) == mnt for a in argv[1:] if a):
                return int(d)
    raise RuntimeError("no daemon serves %s" % mnt.decode())


def throughput(paths, procs, seconds, distinct=False, pid=None):
    """Cycles/s, errors and CPU seconds per cycle (the clients', and the daemon pid's) of
    procs processes running reader at once: they start together (a barrier once all are
    forked, however long that takes on a loaded machine)."""
    barrier = multiprocessing.Barrier(procs)
    out = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=reader, args=(paths, seconds, distinct, barrier, out))
          for _ in range(procs)]
    d0 = cpu_seconds(pid) if pid else 0
    for p in ps:
        p.start()
    res = [out.get(timeout=seconds + 300) for _ in ps]
    d1 = cpu_seconds(pid) if pid else 0
    for p in ps:
        p.join()
    n = max(1, sum(r[0] for r in res))
    return (sum(r[0] for r in res) / seconds, sum(r[1] for r in res),
            sum(r[2] for r in res) / n, (d1 - d0) / n)


def main(mnt, nullmnt, work, docs, seconds, umnt=None, omnt=None):
    docs, seconds = int(docs), float(seconds)
    corpus = os.path.join(work, "corpus")
    ref.cmd_corpus(corpus, docs, 8192)
    qfile = os.path.join(work, "queries")
    ref.cmd_queries(corpus, 200, 5, qfile)
    with open(qfile) as f:
        qs = [l.rstrip("\n").split("\t", 1) for l in f if l.strip()]
    names = sorted(os.listdir(corpus))
    texts = {}
    for n in names:
        with open(os.path.join(corpus, n), "rb") as f:
            texts[n] = f.read()
    mb = sum(len(t) for t in texts.values()) / 1e6
    print("corpus: %d man pages, %.1f MB; %d queries" % (len(names), mb, len(qs)))

    # 1. indexing
    ix = os.path.join(mnt, "search", "bench")
    os.mkdir(ix)
    t0 = time.monotonic()
    ref.cmd_load(ix, corpus, "8")
    dt = time.monotonic() - t0
    print("index mount (embedded node, 8 writers): %.0f documents/s" % (len(names) / dt))
    db = os.path.join(work, "fts.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(name UNINDEXED, body, "
                "tokenize='unicode61 remove_diacritics 2')")
    t0 = time.monotonic()
    for n in names:
        con.execute("BEGIN")
        con.execute("INSERT INTO t VALUES (?, ?)", (n, texts[n].decode()))
        con.execute("COMMIT")
    dt = time.monotonic() - t0
    print("index FTS5, a commit per document (WAL, synchronous=FULL): %.0f documents/s"
          % (len(names) / dt))
    con.execute("DELETE FROM t")
    t0 = time.monotonic()
    con.execute("BEGIN")
    for n in names:
        con.execute("INSERT INTO t VALUES (?, ?)", (n, texts[n].decode()))
    con.execute("COMMIT")
    dt = time.monotonic() - t0
    print("index FTS5, one transaction: %.0f documents/s" % (len(names) / dt))

    # 2. latency, 3. agreement
    lat_m, lat_c, lat_f = [], [], []
    agree = []
    for rnd in range(3):
        for kind, q in qs:
            t0 = time.perf_counter_ns()
            with open(os.path.join(ix, ".q", q), "rb") as f:
                ours = f.read()
            (lat_m if rnd == 0 else lat_c).append((time.perf_counter_ns() - t0) / 1e3)
            fq = fts_query(q)
            t0 = time.perf_counter_ns()
            theirs = [r[0] for r in con.execute(
                "SELECT name FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 10", (fq,))]
            lat_f.append((time.perf_counter_ns() - t0) / 1e3)
            if rnd == 0 and kind == "plain" and "limit:" not in q:
                top = [l.split(b"\t")[1].decode() for l in ours.splitlines()]
                if top:
                    agree.append(len(set(top) & set(theirs)) / len(top))
    print("query latency mount (open+read+close), computed: p50 %.0f us, p99 %.0f us"
          % (pct(lat_m, 50), pct(lat_m, 99)))
    print("query latency mount (open+read+close), cached: p50 %.0f us, p99 %.0f us"
          % (pct(lat_c, 50), pct(lat_c, 99)))
    print("query latency FTS5 in-process (MATCH, bm25, LIMIT 10): p50 %.0f us, p99 %.0f us"
          % (pct(lat_f, 50), pct(lat_f, 99)))
    print("top-10 agreement with FTS5 (%d plain queries): %.0f%%"
          % (len(agree), 100 * statistics.mean(agree) if agree else 0))

    # 4. throughput against the null FUSE filesystem
    paths = [os.path.join(ix, ".q", q) for _, q in qs]
    assert all(len(os.path.basename(p).encode()) < 220 for p in paths)
    nfiles = []
    for i in range(16):
        p = os.path.join(nullmnt, "k%d" % i)
        with open(p, "wb") as f:
            f.write(b"x" * 1024)
        nfiles.append(p)
    npaths = [os.path.join(nullmnt, "search", "bench", ".q", q) for _, q in qs]
    # The machine's load moves during a run: the measures take turns, 3 rounds of
    # SECONDS/3 each, and each ratio is of totals over the same rounds. Each mount measure
    # is compared with its null cycle of the same path and requests, and with the flat one.
    kinds = [("nullfs flat", nfiles, False, None),
             ("nullfs query path", npaths, False, None),
             ("nullfs query path, new names", npaths, True, None),
             ("repeated (cached)", paths, False, "nullfs query path"),
             ("distinct (computed)", paths, True, "nullfs query path, new names")]
    for m, label in ((umnt, "repeated, cache off (computed)"),
                     (omnt, "repeated, cache off (computed), the other build")):
        if m:
            uix = os.path.join(m, "search", "bench")
            os.mkdir(uix)
            ref.cmd_load(uix, corpus, "8")
            kinds.append((label, [os.path.join(uix, ".q", q) for _, q in qs], False,
                          "nullfs query path"))
    pids = {m: daemon_of(m) for m in (mnt, nullmnt, umnt, omnt) if m}
    tot = {k[0]: [0.0, 0] for k in kinds}
    per = {k[0]: [] for k in kinds}
    cpu = {k[0]: [] for k in kinds}     # per round: (clients, daemon) CPU us per cycle
    for rnd in range(3):
        for k, ps, distinct, _ in kinds:
            pid = next(pids[m] for m in pids if ps[0].startswith(m + os.sep))
            v, e, c, d = throughput(ps, 16, seconds / 3, distinct, pid)
            tot[k][0] += v / 3
            tot[k][1] += e
            per[k].append(v)
            cpu[k].append((c * 1e6, d * 1e6))
    med = {k: (statistics.median(x[0] for x in cpu[k]), statistics.median(x[1] for x in cpu[k]))
           for k in cpu}
    for k, _, _, _ in kinds[:3]:
        print("16 processes, %s: %.0f read cycles/s (%d errors); CPU a cycle %.0f us "
              "(clients %.0f, nullfs %.0f)" % (k, tot[k][0], tot[k][1], sum(med[k]), *med[k]))
    for k, _, _, base in kinds[3:]:
        v, e = tot[k]
        out = []
        for bk in (base, "nullfs flat"):
            b = tot[bk][0]
            rounds = ", ".join("%.0f%%" % (100 * x / y) if y else "-"
                               for x, y in zip(per[k], per[bk]))
            out.append("%.0f%% of %s (rounds: %s)" % (100 * v / b if b else 0, bk, rounds))
        print("16 processes, %s: mount %.0f queries/s (%d errors): %s; %s"
              % (k, v, e, out[0], out[1]))
        # On a machine the benchmark had to itself the cycles/s would go as 1 / CPU a cycle
        # (both sides CPU-bound on the same cores): the same ratio from the CPU time each
        # cycle took, which the other work on a shared machine moves far less.
        print("    CPU a cycle %.0f us (clients %.0f, daemon %.0f; medians of the rounds): "
              "%s's %.0f us is %.0f%% of it" % (sum(med[k]), *med[k], base, sum(med[base]),
                                                 100 * sum(med[base]) / sum(med[k])))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
