#!/usr/bin/env python3
"""tests/integration/search_bm25.py — the reference side of tests/integration/search.sh: a
corpus from this machine's man pages, a small BM25 written here (docs/SEARCH.md's formula,
its query grammar for the queries generated here, and the tokenizer's rules for ASCII text),
and the comparison of the ranked lists a mount answers with the reference's.

  corpus DIR N MAXBYTES     writes N documents (ASCII text of /usr/share/man pages, each
                            cut at MAXBYTES) into DIR, named after their page
  load MOUNTDIR DIR [THREADS [FROM TO]]   copies DIR's documents (those FROM..TO-1 in
                            name order, or all) into MOUNTDIR (an index directory), THREADS
                            writers at once; prints the documents per second
  queries DIR N SEED OUT    writes N queries (one per line, with their kind) made from DIR
  check DIR QUERIES MOUNTDIR...   runs every query through each index directory and the
                            reference; prints one line per disagreement and a summary, and
                            exits 1 when any ranked list differs

Only ASCII is written to the corpus (other bytes become spaces), for which the tokenizer's
rules are exactly: lower-case, runs of [a-z0-9] are terms, cut at 64 bytes. The Unicode
rules are covered by tests/unit/test_tokenize.c.
"""
import concurrent.futures
import glob
import gzip
import math
import os
import random
import re
import sys

K1, B = 1.2, 0.75
TERM_MAX = 64
PREFIX_MAX = 1024
TOKEN = re.compile(rb"[a-z0-9]+")


def tokens(data):
    return [t[:TERM_MAX] for t in TOKEN.findall(data.lower())]


TROFF = re.compile(rb"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e]")


def ascii_only(data):
    """The page's text without troff's font escapes, in printable ASCII."""
    data = TROFF.sub(b" ", data)
    return bytes(c if (32 <= c < 127 or c in (9, 10)) else 32 for c in data)


def cmd_corpus(out, n, maxbytes):
    n, maxbytes = int(n), int(maxbytes)
    os.makedirs(out, exist_ok=True)
    pages = sorted(glob.glob("/usr/share/man/man[1-8]/*.gz"))
    seen = set()
    made = 0
    for p in pages:
        if made == n:
            break
        name = os.path.basename(p)[:-3]
        if name in seen or len(name) > 200:
            continue
        try:
            with gzip.open(p) as f:
                data = ascii_only(f.read(maxbytes * 4))[:maxbytes]
        except (OSError, EOFError):
            continue
        if len(tokens(data)) < 5:
            continue
        seen.add(name)
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        made += 1
    print(made)
    return 0 if made == n else 1


def read_corpus(d):
    docs = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            docs[name] = f.read()
    return docs


def cmd_load(mountdir, d, threads="8", lo=None, hi=None):
    import time
    names = sorted(os.listdir(d))
    if lo is not None:
        names = names[int(lo):int(hi)]
    t0 = time.monotonic()

    def one(name):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        with open(os.path.join(mountdir, name), "wb") as f:
            f.write(data)

    with concurrent.futures.ThreadPoolExecutor(int(threads)) as ex:
        list(ex.map(one, names))
    dt = time.monotonic() - t0
    print("%d documents in %.1f s: %.0f documents/s" % (len(names), dt, len(names) / dt))
    return 0


class Index:
    """The reference: one index holding every document."""

    def __init__(self, docs):
        self.docs = {}
        self.post = {}                    # term -> {doc: [positions]}
        total = 0
        for name, data in docs.items():
            toks = tokens(data)
            self.docs[name] = len(toks)
            total += len(toks)
            for i, t in enumerate(toks):
                self.post.setdefault(t, {}).setdefault(name, []).append(i)
        self.n = len(self.docs)
        self.avgdl = total / self.n if self.n else 0
        if self.avgdl <= 0:
            self.avgdl = 1

    def idf(self, t):
        df = len(self.post.get(t, {}))
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def score(self, w, tf, dl):
        norm = K1 * (1.0 - B + B * dl / self.avgdl)
        return w * (tf * (K1 + 1.0)) / (tf + norm)

    def clause_matches(self, c):
        """{doc: [score parts]} of one clause: ("term", [t]), ("phrase", [t...]),
        ("prefix", p: one part per term it stands for, in byte order, as the engine adds
        them one by one)."""
        kind, arg = c
        out = {}
        if kind == "term":
            t = arg[0]
            w = self.idf(t)
            for d, pos in self.post.get(t, {}).items():
                out[d] = [self.score(w, len(pos), self.docs[d])]
        elif kind == "prefix":
            exp = sorted(t for t in self.post if t.startswith(arg))
            if len(exp) > PREFIX_MAX:
                raise ValueError("prefix too broad")
            for t in exp:
                w = self.idf(t)
                for d, pos in self.post[t].items():
                    out.setdefault(d, []).append(self.score(w, len(pos), self.docs[d]))
        else:
            w = 0.0
            for t in arg:
                w += self.idf(t)
            first = self.post.get(arg[0], {})
            for d, pos in first.items():
                rest = [set(self.post.get(t, {}).get(d, [])) for t in arg[1:]]
                freq = sum(1 for x in pos if all((x + 1 + i) in s for i, s in enumerate(rest)))
                if freq:
                    out[d] = [self.score(w, freq, self.docs[d])]
        return out

    def query(self, clauses, limit):
        """clauses: [(occur, clause)], occur "", "+", "-". The ranked [(score text, doc)]."""
        acc = {}
        nmust = sum(1 for o, _ in clauses if o == "+")
        hits = {}
        for i, (o, c) in enumerate(clauses):
            if o == "-":
                continue
            for d, parts in self.clause_matches(c).items():
                a = acc.setdefault(d, [0.0, 0])
                for s in parts:
                    a[0] += s
                if o == "+":
                    a[1] += 1
        for o, c in clauses:
            if o == "-":
                for d in self.clause_matches(c):
                    acc.pop(d, None)
        for d, (s, m) in acc.items():
            if m == nmust:
                hits[d] = s
        ranked = sorted(hits.items(), key=lambda kv: (-math.floor(kv[1] * 1e6 + 0.5), kv[0]))
        return [("%.6f" % (math.floor(s * 1e6 + 0.5) / 1e6), d) for d, s in ranked[:limit]]


def render(clauses, limit):
    parts = []
    for o, (kind, arg) in clauses:
        if kind == "term":
            parts.append(o + arg[0].decode())
        elif kind == "prefix":
            parts.append(o + arg.decode() + "*")
        else:
            parts.append(o + '"' + " ".join(t.decode() for t in arg) + '"')
    if limit != 10:
        parts.append("limit:%d" % limit)
    return " ".join(parts)


def parse(q):
    """The rendered form back into clauses (the generated queries only)."""
    clauses, limit = [], 10
    for m in re.finditer(r'([+-]?)("[^"]*"|\S+)', q):
        o, w = m.group(1), m.group(2)
        if w.startswith('"'):
            ts = tokens(w[1:-1].encode())
            clauses.append((o, ("term", ts) if len(ts) == 1 else ("phrase", ts)))
        elif w.startswith("limit:"):
            limit = int(w[6:])
        elif w.endswith("*"):
            clauses.append((o, ("prefix", w[:-1].encode())))
        else:
            clauses.append((o, ("term", [w.encode()])))
    return clauses, limit


def cmd_queries(d, n, seed, out):
    rnd = random.Random(int(seed))
    docs = read_corpus(d)
    ix = Index(docs)
    names = sorted(docs)
    # terms found in 2..N/5 documents: selective enough to rank, common enough to match
    vocab = sorted(t for t, p in ix.post.items() if 2 <= len(p) <= max(3, ix.n // 5))
    qs = []
    kinds = ["plain"] * 40 + ["must"] * 15 + ["not"] * 15 + ["phrase"] * 15 + ["prefix"] * 15
    n = int(n)
    while len(qs) < n:
        kind = kinds[len(qs) % len(kinds)]
        t = lambda: ("term", [rnd.choice(vocab)])
        if kind == "plain":
            cl = [("", t()) for _ in range(rnd.randint(1, 3))]
        elif kind == "must":
            cl = [("+", t()), ("", t())]
        elif kind == "not":
            a = t()
            docs_a = set(ix.post[a[1][0]])
            # an excluded term that shares documents with the first, so that -x matters
            others = sorted({x for d2 in docs_a for x in tokens(docs[d2])[:40]} & set(vocab))
            cl = [("", a), ("", t()), ("-", ("term", [rnd.choice(others)]) if others else t())]
        elif kind == "phrase":
            toks = tokens(docs[rnd.choice(names)])
            if len(toks) < 3:
                continue
            i = rnd.randrange(len(toks) - 2)
            cl = [("", ("phrase", toks[i:i + rnd.randint(2, 3)]))]
            if rnd.random() < 0.5:
                cl.append(("", t()))
        else:
            w = rnd.choice(vocab)
            if len(w) < 4:
                continue
            p = w[:rnd.randint(3, 4)]
            if len([x for x in ix.post if x.startswith(p)]) > PREFIX_MAX:
                continue
            cl = [("+" if rnd.random() < 0.3 else "", ("prefix", p))]
            if rnd.random() < 0.5:
                cl.append(("", t()))
        limit = rnd.choice([10, 10, 10, 5, 20])
        q = render(cl, limit)
        if len(q.encode()) > 200:
            continue
        qs.append((kind, q))
    with open(out, "w") as f:
        for kind, q in qs:
            f.write("%s\t%s\n" % (kind, q))
    return 0


def answer(mountdir, q):
    """The mount's ranked [(score, doc)] and its snippets, or an error string."""
    try:
        with open(os.path.join(mountdir, ".q", q), "rb") as f:
            data = f.read()
    except OSError as e:
        return "error %s" % e.strerror, []
    ranked, snippets = [], []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            return "malformed line %r" % line, []
        ranked.append((parts[0], parts[1]))
        snippets.append(parts[2])
    return ranked, snippets


def cmd_check(d, queries, *mounts):
    ix = Index(read_corpus(d))
    bad = 0
    nonempty = 0
    nosnip = 0
    kinds = {}
    with open(queries) as f:
        qs = [l.rstrip("\n").split("\t", 1) for l in f if l.strip()]
    for kind, q in qs:
        clauses, limit = parse(q)
        ref = ix.query(clauses, limit)
        nonempty += bool(ref)
        kinds[kind] = kinds.get(kind, 0) + 1
        for m in mounts:
            got, snippets = answer(m, q)
            if got != ref:
                bad += 1
                print("# %s: query %r: %s gives %s, the reference %s" %
                      (kind, q, m, got if isinstance(got, str) else got[:5], ref[:5]))
                continue
            nosnip += sum(1 for s in snippets if "[" not in s)
    print("# %d queries (%s), %d with hits, on %d mounts: %d ranked lists differ, "
          "%d snippets without a marked term" %
          (len(qs), ", ".join("%s %d" % kv for kv in sorted(kinds.items())), nonempty,
           len(mounts), bad, nosnip))
    return 1 if bad or nosnip or nonempty < len(qs) // 2 else 0


def main():
    cmds = {"corpus": cmd_corpus, "load": cmd_load, "queries": cmd_queries, "check": cmd_check}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
