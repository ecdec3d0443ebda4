/* tests/lin/lincheck.c — checks a history recorded by tests/lin/histrec.c (format in
 * tests/lin/README.md) for linearizability, key by key, with the simulator's WGL checker
 * (tests/sim/linearize.c, a register model). How recorded outcomes map onto the model:
 *   - a write that completed ok is a put;
 *   - a write whose open failed made no save and is left out (had the O_TRUNC of that open
 *     taken effect, a reader would see an empty value, which no write wrote: a violation);
 *   - a write that failed at its write or close (EIO, ENOTCONN, ...) or never completed has
 *     an unknown outcome: it may take effect at any time after its invoke, or never;
 *   - a read that completed ok is a get of the value it read ("absent" is 0, content no one
 *     wrote a value nobody wrote); a read that failed or never completed constrains nothing.
 * It prints the counts (also per interval between marks) and, for a history that is not
 * linearizable, the first completion after which no linearization exists, with the ops of
 * that key around it.
 *
 *   lincheck [--min-writes N] [--min-reads N] [--min-after-last-mark N] [--max-states N] FILE
 * --max-states bounds the memo of one key's search (default 300000: the histories of
 * cluster_linear.sh need well under 100000 in all; a memo record is 8 bytes per 64 ops of the
 * key). Exit: 0 linearizable and enough ops; 1 not linearizable; 3 too few ops; 4 inconclusive
 * (state budget or memory); 2 usage or a malformed history. */
#include "tests/sim/linearize.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 64
#define MAX_MARKS 64
#define MAX_CLIENTS 256

typedef struct rec {
    uint32_t client;
    uint64_t opid;
    uint32_t key;
    int is_write;
    uint64_t value;      /* write: value written; read: value read */
    int done;            /* a completion line was seen */
    int ok;              /* ... and it said ok */
    uint64_t call, ret;
    char err[40];        /* the failed step, for reports */
} rec_t;

typedef struct hist {
    rec_t *r;
    size_t n, cap;
    size_t *slots;       /* open-addressed index: 1 + record index by (client, opid) */
    size_t nslots;
    char *keys[MAX_KEYS];
    struct { char label[64]; uint64_t t; } marks[MAX_MARKS];
    int nmarks;
    uint64_t t0;         /* the first stamp, for relative times in reports */
    uint64_t garbage;    /* reads of content no one wrote */
    char *mount[MAX_CLIENTS];   /* each client's mount, from its P line (or NULL) */
} hist_t;

static size_t slot_of(uint32_t client, uint64_t opid, size_t nslots)
{
    uint64_t h = (opid ^ ((uint64_t)client << 40)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (nslots - 1);
}

static int index_grow(hist_t *h)
{
    size_t ns = h->nslots ? h->nslots * 2 : 4096;
    size_t *s = calloc(ns, sizeof(*s));
    if (!s)
        return -1;
    for (size_t i = 0; i < h->n; i++) {
        size_t k = slot_of(h->r[i].client, h->r[i].opid, ns);
        while (s[k])
            k = (k + 1) & (ns - 1);
        s[k] = i + 1;
    }
    free(h->slots);
    h->slots = s;
    h->nslots = ns;
    return 0;
}

static rec_t *find(hist_t *h, uint32_t client, uint64_t opid)
{
    if (!h->nslots)
        return NULL;
    size_t k = slot_of(client, opid, h->nslots);
    while (h->slots[k]) {
        rec_t *r = &h->r[h->slots[k] - 1];
        if (r->client == client && r->opid == opid)
            return r;
        k = (k + 1) & (h->nslots - 1);
    }
    return NULL;
}

static rec_t *add(hist_t *h)
{
    if ((h->n + 1) * 2 > h->nslots && index_grow(h) < 0)
        return NULL;
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 4096;
        rec_t *r = realloc(h->r, nc * sizeof(*r));
        if (!r)
            return NULL;
        h->r = r;
        h->cap = nc;
    }
    rec_t *r = &h->r[h->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static void link_rec(hist_t *h, rec_t *r)
{
    size_t k = slot_of(r->client, r->opid, h->nslots);
    while (h->slots[k])
        k = (k + 1) & (h->nslots - 1);
    h->slots[k] = (size_t)(r - h->r) + 1;
}

static int bad(const char *file, size_t line, const char *why)
{
    fprintf(stderr, "lincheck: %s:%zu: %s\n", file, line, why);
    return -1;
}

/* Reads FILE into h. Returns 0, or -1 with the reason printed. */
static int load(hist_t *h, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "lincheck: %s: %s\n", file, strerror(errno));
        return -1;
    }
    char line[2048];
    size_t ln = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        ln++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        else if (!feof(f)) {
            rc = bad(file, ln, "line too long");
            break;
        }
        if (!len || line[0] == '#')
            continue;
        char a[64], b[64], c[1100];
        uint32_t cl, key;
        uint64_t opid, t;
        int nf;
        switch (line[0]) {
        case 'K': {
            int k, off = 0;
            if (sscanf(line, "K %d %n", &k, &off) != 1 || !off || k < 0 || k >= MAX_KEYS ||
                h->keys[k]) {
                rc = bad(file, ln, "bad key line");
                break;
            }
            h->keys[k] = strdup(line + off);
            if (!h->keys[k])
                rc = bad(file, ln, "out of memory");
            break;
        }
        case 'M':
            if (h->nmarks == MAX_MARKS ||
                sscanf(line, "M %63s %" SCNu64 "%n", h->marks[h->nmarks].label,
                       &h->marks[h->nmarks].t, &nf) != 2 || line[nf]) {
                rc = bad(file, ln, "bad mark line (or more than 64 marks)");
                break;
            }
            h->nmarks++;
            break;
        case 'E':
            break;
        case 'P': {
            int k, off = 0;
            if (sscanf(line, "P %d %n", &k, &off) != 1 || !off || k < 0 || k >= MAX_CLIENTS ||
                h->mount[k]) {
                rc = bad(file, ln, "bad process line");
                break;
            }
            h->mount[k] = strdup(line + off);
            if (!h->mount[k])
                rc = bad(file, ln, "out of memory");
            break;
        }
        case 'I': {
            if (sscanf(line, "I %" SCNu32 " %" SCNu64 " %" SCNu32 " %63s %63s %" SCNu64 "%n",
                       &cl, &opid, &key, a, b, &t, &nf) != 6 || line[nf] ||
                key >= MAX_KEYS || !h->keys[key] || (strcmp(a, "W") && strcmp(a, "R"))) {
                rc = bad(file, ln, "bad invoke line (or a key without its K line)");
                break;
            }
            if (find(h, cl, opid)) {
                rc = bad(file, ln, "operation id invoked twice");
                break;
            }
            rec_t *r = add(h);
            if (!r) {
                rc = bad(file, ln, "out of memory");
                break;
            }
            r->client = cl;
            r->opid = opid;
            r->key = key;
            r->is_write = a[0] == 'W';
            r->call = t;
            if (r->is_write) {
                char *end;
                r->value = strtoull(b, &end, 10);
                if (*end || !r->value) {
                    h->n--;
                    rc = bad(file, ln, "a write's value is a nonzero number");
                    break;
                }
            }
            link_rec(h, r);
            break;
        }
        case 'C': {
            if (sscanf(line, "C %" SCNu32 " %" SCNu64 " %63s %1099s %" SCNu64 "%n", &cl, &opid,
                       a, c, &t, &nf) != 5 || line[nf]) {
                rc = bad(file, ln, "bad completion line");
                break;
            }
            rec_t *r = find(h, cl, opid);
            if (!r || r->done || t < r->call) {
                rc = bad(file, ln, "completion without its invoke, twice, or before it");
                break;
            }
            r->done = 1;
            r->ret = t;
            if (!strcmp(a, "ok")) {
                r->ok = 1;
                if (!r->is_write) {
                    char *end;
                    if (!strcmp(c, "absent")) {
                        r->value = 0;
                    } else if (!strncmp(c, "garbage:", 8)) {
                        /* a value no write can have: never matches the model */
                        r->value = UINT64_MAX - h->garbage++;
                        snprintf(r->err, sizeof(r->err), "read %.30s", c + 8);
                    } else {
                        r->value = strtoull(c, &end, 10);
                        if (*end || !r->value) {
                            rc = bad(file, ln, "a read's result is a number, absent or garbage:");
                            break;
                        }
                    }
                }
            } else if (!strcmp(a, "err")) {
                size_t el = strlen(c);
                if (el >= sizeof(r->err))
                    el = sizeof(r->err) - 1;
                memcpy(r->err, c, el);
                r->err[el] = 0;
            } else {
                rc = bad(file, ln, "a completion is ok or err");
            }
            break;
        }
        default:
            rc = bad(file, ln, "unknown line type");
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "lincheck: %s: read error\n", file);
        rc = -1;
    }
    fclose(f);
    h->t0 = UINT64_MAX;
    for (size_t i = 0; i < h->n; i++)
        if (h->r[i].call < h->t0)
            h->t0 = h->r[i].call;
    return rc;
}

/* A write whose open failed: no descriptor, so no save was made (FILE-API §1: a save is
 * published at the close or fsync of the descriptor that wrote it). */
static int open_failed(const rec_t *r)
{
    const char *at = strrchr(r->err, '@');
    return r->done && !r->ok && at && !strcmp(at, "@open");
}

/* The model op of record r, as the contract above says; 0 when it constrains nothing. */
static int to_op(const rec_t *r, lin_op_t *op)
{
    if (!r->is_write && !(r->done && r->ok))
        return 0;
    if (r->is_write && open_failed(r))
        return 0;
    *op = (lin_op_t){ .client = r->client, .key = r->key,
                      .kind = r->is_write ? LIN_PUT : LIN_GET,
                      .value = r->is_write ? r->value : 0,
                      .result = r->is_write ? 0 : r->value,
                      .known = r->done && r->ok, .call = r->call,
                      .ret = r->done && r->ok ? r->ret : 0 };
    return 1;
}

static double rel_ms(const hist_t *h, uint64_t t)
{
    return (double)(t - h->t0) / 1e6;
}

static void show(const hist_t *h, const rec_t *r, const char *tag)
{
    char val[40];
    if (!r->is_write && r->ok && !r->value)
        snprintf(val, sizeof(val), "absent");
    else
        snprintf(val, sizeof(val), "%" PRIu64, r->value);
    printf("#   %-8s [%10.3f, ", tag, rel_ms(h, r->call));
    if (r->done)
        printf("%10.3f] ", rel_ms(h, r->ret));
    else
        printf("%10s] ", "never");
    printf("client %-2u %s %s %s", r->client, r->is_write ? "write" : "read ",
           h->keys[r->key], r->is_write ? val : "");
    if (r->ok && r->is_write)
        printf(" -> ok");
    else if (r->ok)
        printf("-> %s", val);
    else if (r->done)
        printf(" -> %s (%s)", r->err, r->is_write ? "unknown outcome" : "no answer");
    else
        printf(" -> no completion (%s)", r->is_write ? "unknown outcome" : "no answer");
    if (r->ok && r->err[0])
        printf(" (%s)", r->err);
    if (r->client < MAX_CLIENTS && h->mount[r->client])
        printf("  [on %s]", h->mount[r->client]);
    printf("\n");
}

/* Is key's history, cut at time t (ops not complete by t: writes unknown, reads dropped),
 * linearizable? Same returns as lin_check. */
static int check_cut(const hist_t *h, uint32_t key, uint64_t t, lin_op_t *buf,
                     uint64_t max_states)
{
    size_t m = 0;
    for (size_t i = 0; i < h->n; i++) {
        const rec_t *r = &h->r[i];
        if (r->key != key || r->call > t)
            continue;
        lin_op_t op;
        if (!to_op(r, &op))
            continue;
        if (op.known && op.ret > t) {
            if (op.kind == LIN_GET)
                continue;
            op.known = 0;
            op.ret = 0;
        }
        buf[m++] = op;
    }
    return lin_check(buf, m, max_states, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* For a key that is not linearizable: finds the first completion after which no
 * linearization exists and prints the ops that explain it. */
static void explain(const hist_t *h, uint32_t key, uint64_t max_states)
{
    lin_op_t *buf = malloc(sizeof(*buf) * (h->n ? h->n : 1));
    uint64_t *rets = malloc(sizeof(*rets) * (h->n ? h->n : 1));
    if (!buf || !rets) {
        free(buf);
        free(rets);
        return;
    }
    size_t nr = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->r[i].key == key && h->r[i].done && h->r[i].ok)
            rets[nr++] = h->r[i].ret;
    qsort(rets, nr, sizeof(*rets), cmp_u64);
    /* The cut at rets[hi] fails (the whole history does); find the first that fails. */
    size_t lo = 0, hi = nr ? nr - 1 : 0;
    if (!nr || check_cut(h, key, rets[hi], buf, max_states) != 0) {
        printf("# (could not narrow the violation down)\n");
        goto out;
    }
    if (check_cut(h, key, rets[0], buf, max_states) == 0) {
        hi = 0;
    } else {
        while (hi - lo > 1) {   /* invariant: cut at lo passes, at hi fails */
            size_t mid = lo + (hi - lo) / 2;
            if (check_cut(h, key, rets[mid], buf, max_states) == 0)
                hi = mid;
            else
                lo = mid;
        }
    }
    uint64_t tf = rets[hi];
    const rec_t *culprit = NULL;
    for (size_t i = 0; i < h->n; i++)
        if (h->r[i].key == key && h->r[i].done && h->r[i].ok && h->r[i].ret == tf)
            culprit = &h->r[i];
    printf("# no linearization of %s exists once this completes (times in ms from the "
           "first invoke):\n", h->keys[key]);
    show(h, culprit, "culprit");
    /* the last writes completed before it began, every op overlapping it, and the write of
     * the value it read */
    const rec_t *last[5] = { 0 };
    for (size_t i = 0; i < h->n; i++) {
        const rec_t *r = &h->r[i];
        if (r->key != key || !r->is_write || !r->ok || r->ret >= culprit->call)
            continue;
        int j = 0;
        while (j < 5 && last[j] && last[j]->ret > r->ret)
            j++;
        if (j < 5) {
            memmove(&last[j + 1], &last[j], sizeof(last[0]) * (size_t)(4 - j));
            last[j] = r;
        }
    }
    for (int j = 4; j >= 0; j--)
        if (last[j])
            show(h, last[j], "before");
    for (size_t i = 0; i < h->n; i++) {
        const rec_t *r = &h->r[i];
        if (r == culprit || r->key != key)
            continue;
        uint64_t end = r->done ? r->ret : UINT64_MAX;
        if (r->call <= culprit->ret && end >= culprit->call && (r->is_write || r->ok) &&
            !open_failed(r))
            show(h, r, "overlaps");
        else if (r->is_write && !r->ok && !open_failed(r) && r->call <= culprit->ret)
            show(h, r, "unknown");
    }
    if (!culprit->is_write) {
        for (size_t i = 0; i < h->n; i++) {
            const rec_t *r = &h->r[i];
            if (r->key == key && r->is_write && r->value == culprit->value && culprit->value)
                show(h, r, "wrote it");
        }
    }
out:
    free(buf);
    free(rets);
}

typedef struct counts {
    size_t w_ok, w_unknown, w_failed, r_ok, r_failed;
} counts_t;

static void count(const hist_t *h, uint64_t from, uint64_t to, counts_t *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < h->n; i++) {
        const rec_t *r = &h->r[i];
        uint64_t t = r->done ? r->ret : r->call;
        if (t < from || t >= to)
            continue;
        if (r->is_write && open_failed(r))
            c->w_failed += 1;
        else if (r->is_write)
            *(r->ok ? &c->w_ok : &c->w_unknown) += 1;
        else
            *(r->ok ? &c->r_ok : &c->r_failed) += 1;
    }
}

static void print_counts(const char *what, const counts_t *c)
{
    printf("# %s: writes %zu ok, %zu unknown, %zu failed at open; reads %zu ok, %zu failed\n",
           what, c->w_ok, c->w_unknown, c->w_failed, c->r_ok, c->r_failed);
}

static long long num_arg(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0) {
        fprintf(stderr, "lincheck: %s: a number >= 0, not '%s'\n", opt, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    long long min_w = 0, min_r = 0, min_after = 0, max_states = 300000;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--min-writes"))
            min_w = num_arg(argv[i], argv[i + 1]), i++;
        else if (i + 1 < argc && !strcmp(argv[i], "--min-reads"))
            min_r = num_arg(argv[i], argv[i + 1]), i++;
        else if (i + 1 < argc && !strcmp(argv[i], "--min-after-last-mark"))
            min_after = num_arg(argv[i], argv[i + 1]), i++;
        else if (i + 1 < argc && !strcmp(argv[i], "--max-states"))
            max_states = num_arg(argv[i], argv[i + 1]), i++;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "usage: lincheck [--min-writes N] [--min-reads N] "
                            "[--min-after-last-mark N] [--max-states N] HISTORY\n");
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: lincheck [options] HISTORY\n");
        return 2;
    }
    hist_t h = { 0 };
    if (load(&h, file) < 0)
        return 2;
    int nkeys = 0;
    for (int k = 0; k < MAX_KEYS; k++)
        nkeys += h.keys[k] != NULL;

    counts_t all, after = { 0 };
    count(&h, 0, UINT64_MAX, &all);
    printf("# %zu operations on %d keys\n", h.n, nkeys);
    print_counts("all", &all);
    uint64_t from = 0;
    char what[128];
    for (int i = 0; i <= h.nmarks; i++) {
        uint64_t to = i < h.nmarks ? h.marks[i].t : UINT64_MAX;
        counts_t c;
        count(&h, from, to, &c);
        snprintf(what, sizeof(what), "%s%s", i ? "after " : "before ",
                 i ? h.marks[i - 1].label : (h.nmarks ? h.marks[0].label : "the end"));
        if (h.nmarks)
            print_counts(what, &c);
        if (i == h.nmarks)
            after = c;
        from = to;
    }
    if (h.garbage)
        printf("# %" PRIu64 " reads returned content no one wrote\n", h.garbage);

    lin_op_t *ops = malloc(sizeof(*ops) * (h.n ? h.n : 1));
    if (!ops) {
        fprintf(stderr, "lincheck: out of memory\n");
        return 4;
    }
    size_t m = 0;
    for (size_t i = 0; i < h.n; i++)
        m += (size_t)to_op(&h.r[i], &ops[m]);
    lin_result_t res;
    int lin = lin_check(ops, m, (uint64_t)max_states, &res);
    int rc = 0;
    if (lin == 1) {
        printf("# linearizable (%" PRIu64 " search states)\n", res.states);
    } else if (lin == 0) {
        printf("# NOT linearizable: key %s (%zu ops on it, at most %zu linearized on any "
               "search path)\n", h.keys[res.bad_key], res.key_ops, res.best);
        explain(&h, res.bad_key, (uint64_t)max_states);
        rc = 1;
    } else {
        printf("# inconclusive: the search ran out of its state budget (%lld) or memory\n",
               max_states);
        rc = 4;
    }
    if (rc == 0 && ((long long)all.w_ok < min_w || (long long)all.r_ok < min_r ||
                    (long long)(after.w_ok + after.r_ok) < min_after)) {
        printf("# too few successful operations to mean anything: want >= %lld writes, "
               ">= %lld reads, >= %lld ops after the last mark\n", min_w, min_r, min_after);
        rc = 3;
    }
    free(ops);
    for (int k = 0; k < MAX_KEYS; k++)
        free(h.keys[k]);
    for (int k = 0; k < MAX_CLIENTS; k++)
        free(h.mount[k]);
    free(h.r);
    free(h.slots);
    return rc;
}
