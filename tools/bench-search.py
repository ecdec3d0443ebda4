#!/usr/bin/env python3
"""tools/bench-search.py — the measurements of tools/bench-search (search/, issue 12), on
one corpus in one run: a mounted embedded quorumfs node MNT and SQLite FTS5 in this process.

  bench-search.py MNT NULLMNT WORK DOCS SECONDS [UNCACHED_MNT]

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
     read + close of a 1 KiB file on NULLMNT (tools/nullfs, the FUSE ceiling), in 3 rounds
     of SECONDS/3 for each of nullfs and two mount measures taking turns:
     "repeated", the 200 queries over and over (answered from the mount's query cache), and
     "distinct", where no query is ever asked twice (each of the 200 with a term of its own
     added, u<pid>x<n>, that no document holds: the same hits, but every answer computed,
     and every query a new name, so a new inode for the kernel and the mount); and, given
     UNCACHED_MNT (a node started with QUORUMFS_SEARCH_CACHE_BYTES=0, loaded here with the
     same documents), "repeated, cache off": the 200 queries over and over, each computed.
Prints one line per figure.
"""
import importlib.util
import multiprocessing
import os
import re
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


def reader(args):
    paths, seconds, start, distinct = args
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    n = errors = 0
    i = os.getpid()
    while time.time() < end:
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
    return n, errors


def throughput(paths, procs, seconds, distinct=False):
    start = time.time() + 0.5
    with multiprocessing.Pool(procs) as pool:
        res = pool.map(reader, [(paths, seconds, start, distinct)] * procs)
    return sum(r[0] for r in res) / seconds, sum(r[1] for r in res)


def main(mnt, nullmnt, work, docs, seconds, umnt=None):
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
    # The machine's load moves during a run: the three measures take turns, 3 rounds of
    # SECONDS/3 each, and each ratio is of totals over the same rounds.
    kinds = [("nullfs", nfiles, False), ("repeated (cached)", paths, False),
             ("distinct (computed)", paths, True)]
    if umnt:
        uix = os.path.join(umnt, "search", "bench")
        os.mkdir(uix)
        ref.cmd_load(uix, corpus, "8")
        kinds.append(("repeated, cache off (computed)",
                      [os.path.join(uix, ".q", q) for _, q in qs], False))
    tot = {k: [0.0, 0] for k, _, _ in kinds}
    per = {k: [] for k, _, _ in kinds}
    for rnd in range(3):
        for k, ps, distinct in kinds:
            v, e = throughput(ps, 16, seconds / 3, distinct)
            tot[k][0] += v / 3
            tot[k][1] += e
            per[k].append(v)
    nps, nerr = tot["nullfs"]
    for k, _, _ in kinds[1:]:
        v, e = tot[k]
        rounds = ", ".join("%.0f%%" % (100 * a / b) if b else "-"
                           for a, b in zip(per[k], per["nullfs"]))
        print("16 processes, %s: mount %.0f queries/s (%d errors), nullfs %.0f read "
              "cycles/s (%d errors): %.0f%% of the null FUSE ceiling (rounds: %s)"
              % (k, v, e, nps, nerr, 100 * v / nps if nps else 0, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
