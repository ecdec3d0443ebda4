/* tests/sim/linearize.c — the WGL linearizability search, per key, over a put/get/CAS
 * register. Each key's history becomes a time-sorted doubly linked list of call and return
 * entries; the search linearizes a pending call (lifting it out of the list), backtracks on
 * meeting a return whose call was not linearized, and memoises (linearized set, value)
 * pairs it has already explored. Unknown-outcome ops get a return at infinity. */
#include "tests/sim/linearize.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ent {
    uint64_t time;
    int op;        /* index into the key's op list */
    int is_ret;
    int match;     /* the other entry of the same op */
    int prev, next;
} ent_t;

/* Memo of explored (bitset, value) pairs: an arena of records plus an open-addressed index. */
typedef struct memo {
    size_t words;      /* bitset words per record */
    uint64_t *arena;   /* records: words bitset words then one value word */
    size_t count, cap;
    uint32_t *slots;   /* 1 + record index, 0 = empty */
    size_t nslots;
} memo_t;

static uint64_t hash_rec(const uint64_t *rec, size_t n)
{
    uint64_t h = 0x84222325cbf29ce4ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= rec[i];
        h *= 0x100000001b3ULL;
        h ^= h >> 29;
    }
    return h;
}

static int memo_grow(memo_t *m)
{
    size_t ns = m->nslots ? m->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof(*slots));
    if (!slots)
        return -1;
    size_t rw = m->words + 1;
    for (size_t i = 0; i < m->count; i++) {
        size_t h = hash_rec(m->arena + i * rw, rw) & (ns - 1);
        while (slots[h])
            h = (h + 1) & (ns - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = ns;
    return 0;
}

/* Inserts (bits, value). Returns 1 if newly added, 0 if already present, -1 on no memory. */
static int memo_add(memo_t *m, const uint64_t *bits, uint64_t value)
{
    size_t rw = m->words + 1;
    if ((m->count + 1) * 2 > m->nslots && memo_grow(m) < 0)
        return -1;
    if (m->count == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        uint64_t *a = realloc(m->arena, nc * rw * sizeof(uint64_t));
        if (!a)
            return -1;
        m->arena = a;
        m->cap = nc;
    }
    uint64_t *rec = m->arena + m->count * rw;
    memcpy(rec, bits, m->words * sizeof(uint64_t));
    rec[m->words] = value;
    size_t h = hash_rec(rec, rw) & (m->nslots - 1);
    while (m->slots[h]) {
        if (!memcmp(m->arena + (size_t)(m->slots[h] - 1) * rw, rec, rw * sizeof(uint64_t)))
            return 0;
        h = (h + 1) & (m->nslots - 1);
    }
    m->slots[h] = (uint32_t)(++m->count);
    return 1;
}

static void memo_free(memo_t *m)
{
    free(m->arena);
    free(m->slots);
}

/* The register model. Returns 1 and the new value if op may take effect on value st. */
static int step(const lin_op_t *op, uint64_t st, uint64_t *out)
{
    switch (op->kind) {
    case LIN_PUT:
        *out = op->value;
        return 1;
    case LIN_GET:
        *out = st;
        return !op->known || op->result == st;
    case LIN_CAS:
        if (st == op->expect) {
            *out = op->value;
            return !op->known || op->result == 1;
        }
        /* A CAS that found another value had no effect; for an unknown one that is the
         * same as never taking effect, which the search already allows. */
        *out = st;
        return op->known && op->result == 0;
    }
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    const ent_t *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->is_ret != y->is_ret)
        return x->is_ret - y->is_ret; /* calls first: equal stamps are concurrent */
    return x->op - y->op;
}

/* Checks one key's ops (pointers into the caller's array). Same returns as lin_check. */
static int check_key(const lin_op_t **ops, int n, uint64_t max_states, lin_result_t *res)
{
    int ret = -1;
    /* Entries 1..2n; entry 0 is the list head sentinel, entry 2n+1 the tail sentinel. */
    int ne = 2 * n;
    ent_t *e = calloc((size_t)ne + 2, sizeof(*e));
    int *pos = malloc(sizeof(int) * ((size_t)ne + 2));
    struct frame { int ent; uint64_t st; } *stack = malloc(sizeof(*stack) * ((size_t)n + 1));
    memo_t memo = { .words = ((size_t)n + 63) / 64 };
    uint64_t *bits = calloc(memo.words, sizeof(uint64_t));
    if (!e || !pos || !stack || !bits)
        goto fail;

    for (int i = 0; i < n; i++) {
        e[1 + 2 * i] = (ent_t){ .time = ops[i]->call, .op = i, .is_ret = 0 };
        e[2 + 2 * i] = (ent_t){ .time = ops[i]->known ? ops[i]->ret : UINT64_MAX, .op = i,
                                .is_ret = 1 };
    }
    qsort(e + 1, (size_t)ne, sizeof(*e), cmp_ent);
    for (int i = 1; i <= ne; i++)
        pos[2 * e[i].op + e[i].is_ret] = i;
    for (int i = 1; i <= ne; i++) {
        e[i].match = pos[2 * e[i].op + !e[i].is_ret];
        e[i].prev = i - 1;
        e[i].next = i + 1;
    }
    e[0].next = 1;
    e[0].prev = -1;
    int tail = ne + 1;
    e[tail].prev = ne;
    e[tail].next = -1;

    uint64_t st = 0;
    int depth = 0;
    size_t best = 0;
    int cur = e[0].next;
    for (;;) {
        if (cur == tail || (e[cur].is_ret && !ops[e[cur].op]->known)) {
            /* Every op left has an unknown outcome: the rest may never take effect. */
            ret = 1;
            break;
        }
        if (!e[cur].is_ret) {
            const lin_op_t *op = ops[e[cur].op];
            uint64_t nst;
            int oi = e[cur].op;
            if (step(op, st, &nst)) {
                bits[oi / 64] |= 1ULL << (oi % 64);
                int added = memo_add(&memo, bits, nst);
                if (added < 0)
                    goto fail;
                if (added) {
                    if (memo.count > max_states)
                        goto fail;
                    stack[depth].ent = cur;
                    stack[depth].st = st;
                    depth++;
                    if ((size_t)depth > best)
                        best = (size_t)depth;
                    st = nst;
                    /* Lift the call and its return out of the list. */
                    int m = e[cur].match;
                    e[e[cur].prev].next = e[cur].next;
                    e[e[cur].next].prev = e[cur].prev;
                    e[e[m].prev].next = e[m].next;
                    e[e[m].next].prev = e[m].prev;
                    cur = e[0].next;
                    continue;
                }
                bits[oi / 64] &= ~(1ULL << (oi % 64));
            }
            cur = e[cur].next;
            continue;
        }
        /* A return whose call is still pending: undo the latest linearization. */
        if (depth == 0) {
            ret = 0;
            break;
        }
        depth--;
        cur = stack[depth].ent;
        st = stack[depth].st;
        int m = e[cur].match;
        e[e[m].prev].next = m;
        e[e[m].next].prev = m;
        e[e[cur].prev].next = cur;
        e[e[cur].next].prev = cur;
        int oi = e[cur].op;
        bits[oi / 64] &= ~(1ULL << (oi % 64));
        cur = e[cur].next;
    }
    if (res) {
        res->states += memo.count;
        if (ret == 0) {
            res->key_ops = (size_t)n;
            res->best = best;
        }
    }
fail:
    if (ret < 0 && res)
        res->states += memo.count;
    memo_free(&memo);
    free(bits);
    free(stack);
    free(pos);
    free(e);
    return ret;
}

static int cmp_key(const void *a, const void *b)
{
    const lin_op_t *x = *(const lin_op_t *const *)a, *y = *(const lin_op_t *const *)b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->call < y->call ? -1 : x->call > y->call;
}

int lin_check(const lin_op_t *ops, size_t n, uint64_t max_states, lin_result_t *res)
{
    if (res)
        memset(res, 0, sizeof(*res));
    if (!max_states)
        max_states = 4u << 20;
    /* Unknown gets have no effect and constrain nothing: leave them out. */
    const lin_op_t **v = malloc(sizeof(*v) * (n ? n : 1));
    if (!v)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ops[i].known || ops[i].kind != LIN_GET)
            v[m++] = &ops[i];
    qsort(v, m, sizeof(*v), cmp_key);
    int ret = 1;
    for (size_t i = 0; i < m && ret == 1;) {
        size_t j = i;
        while (j < m && v[j]->key == v[i]->key)
            j++;
        ret = check_key(v + i, (int)(j - i), max_states, res);
        if (ret == 0 && res)
            res->bad_key = v[i]->key;
        i = j;
    }
    free(v);
    return ret;
}

void lin_format(const lin_op_t *op, char *buf, size_t len)
{
    char out[48];
    if (!op->known)
        snprintf(out, sizeof(out), "unknown");
    else if (op->kind == LIN_GET)
        snprintf(out, sizeof(out), "-> %" PRIu64, op->result);
    else if (op->kind == LIN_CAS)
        snprintf(out, sizeof(out), "-> %s", op->result ? "swapped" : "failed");
    else
        snprintf(out, sizeof(out), "-> ok");
    char ret[32];
    if (op->known)
        snprintf(ret, sizeof(ret), "%" PRIu64, op->ret);
    else
        snprintf(ret, sizeof(ret), "?");
    switch (op->kind) {
    case LIN_PUT:
        snprintf(buf, len, "[%" PRIu64 ",%s] c%u put(k%u, %" PRIu64 ") %s", op->call, ret,
                 op->client, op->key, op->value, out);
        break;
    case LIN_GET:
        snprintf(buf, len, "[%" PRIu64 ",%s] c%u get(k%u) %s", op->call, ret, op->client,
                 op->key, out);
        break;
    case LIN_CAS:
        snprintf(buf, len, "[%" PRIu64 ",%s] c%u cas(k%u, %" PRIu64 " -> %" PRIu64 ") %s",
                 op->call, ret, op->client, op->key, op->expect, op->value, out);
        break;
    }
}
