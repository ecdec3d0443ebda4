/* tests/unit/test_linearize.c — the simulator's linearizability checker, on hand-written
 * histories: it must accept every legal interleaving and reject stale reads, impossible
 * orders and wrong CAS outcomes, treat unknown outcomes as "maybe, after the call", and
 * accept large histories produced by a truly atomic register. */
#include "tests/sim/linearize.h"
#include "tests/sim/rng.h"
#include "tests/unit/check.h"

#include <stdlib.h>

static lin_op_t put(uint32_t key, uint64_t v, uint64_t call, uint64_t ret)
{
    return (lin_op_t){ .key = key, .kind = LIN_PUT, .value = v, .known = 1, .call = call,
                       .ret = ret };
}

static lin_op_t get(uint32_t key, uint64_t got, uint64_t call, uint64_t ret)
{
    return (lin_op_t){ .key = key, .kind = LIN_GET, .result = got, .known = 1, .call = call,
                       .ret = ret };
}

static lin_op_t cas(uint32_t key, uint64_t expect, uint64_t v, int swapped, uint64_t call,
                    uint64_t ret)
{
    return (lin_op_t){ .key = key, .kind = LIN_CAS, .expect = expect, .value = v,
                       .result = (uint64_t)swapped, .known = 1, .call = call, .ret = ret };
}

static lin_op_t unknown(lin_op_t op)
{
    op.known = 0;
    op.ret = 0;
    return op;
}

#define CHECK_LIN(expect, ...)                                                    \
    do {                                                                          \
        lin_op_t h_[] = { __VA_ARGS__ };                                          \
        CHECK_EQ(lin_check(h_, sizeof(h_) / sizeof(h_[0]), 0, NULL), (expect));   \
    } while (0)

TEST(empty_and_sequential)
{
    CHECK_EQ(lin_check(NULL, 0, 0, NULL), 1);
    CHECK_LIN(1, get(1, 0, 1, 2));
    CHECK_LIN(1, put(1, 5, 1, 2), get(1, 5, 3, 4), put(1, 6, 5, 6), get(1, 6, 7, 8));
    CHECK_LIN(0, get(1, 5, 1, 2));                  /* reads a value nobody wrote */
    CHECK_LIN(0, get(1, 5, 1, 2), put(1, 5, 3, 4)); /* reads the future */
}

TEST(stale_read_after_completed_write_rejected)
{
    CHECK_LIN(0, put(1, 1, 1, 2), put(1, 2, 3, 4), get(1, 1, 5, 6));
    CHECK_LIN(0, put(1, 1, 1, 2), get(1, 0, 3, 4));
    /* The same read overlapping the second write is fine. */
    CHECK_LIN(1, put(1, 1, 1, 2), put(1, 2, 3, 6), get(1, 1, 5, 7));
}

TEST(concurrent_ops_in_either_order)
{
    /* A read concurrent with a write may see the old or the new value... */
    CHECK_LIN(1, put(1, 1, 1, 10), get(1, 0, 2, 3), get(1, 1, 4, 5));
    CHECK_LIN(1, put(1, 1, 1, 10), get(1, 1, 2, 3));
    /* ...but once a read saw the new value, a later read may not see the old one. */
    CHECK_LIN(0, put(1, 1, 1, 10), get(1, 1, 2, 3), get(1, 0, 4, 5));
    /* Two concurrent writes: either may win, but not both orders at once. */
    CHECK_LIN(1, put(1, 1, 1, 10), put(1, 2, 1, 10), get(1, 1, 11, 12));
    CHECK_LIN(1, put(1, 1, 1, 10), put(1, 2, 1, 10), get(1, 2, 11, 12));
    CHECK_LIN(1, put(1, 1, 1, 10), put(1, 2, 1, 10), get(1, 1, 2, 3), get(1, 2, 4, 5));
    CHECK_LIN(0, put(1, 1, 1, 10), put(1, 2, 1, 10), get(1, 1, 11, 12), get(1, 2, 13, 14),
              get(1, 1, 15, 16));
    /* Equal stamps count as concurrent. */
    CHECK_LIN(1, put(1, 1, 1, 5), get(1, 0, 5, 6));
}

TEST(cas_semantics)
{
    CHECK_LIN(1, cas(1, 0, 5, 1, 1, 2), get(1, 5, 3, 4)); /* create if absent */
    CHECK_LIN(0, put(1, 1, 1, 2), cas(1, 0, 5, 1, 3, 4)); /* "absent" no longer holds */
    CHECK_LIN(1, put(1, 1, 1, 2), cas(1, 1, 2, 1, 3, 4), get(1, 2, 5, 6));
    CHECK_LIN(0, put(1, 1, 1, 2), cas(1, 1, 2, 1, 3, 4), get(1, 1, 5, 6));
    CHECK_LIN(0, put(1, 1, 1, 2), cas(1, 1, 2, 0, 3, 4)); /* failed though it matched */
    CHECK_LIN(0, put(1, 1, 1, 2), cas(1, 3, 2, 1, 3, 4)); /* swapped though it differed */
    CHECK_LIN(1, put(1, 1, 1, 2), cas(1, 3, 2, 0, 3, 4), get(1, 1, 5, 6));
    /* Two CAS racing from the same value: at most one can win. */
    CHECK_LIN(1, put(1, 1, 1, 2), cas(1, 1, 2, 1, 3, 9), cas(1, 1, 3, 0, 3, 9));
    CHECK_LIN(0, put(1, 1, 1, 2), cas(1, 1, 2, 1, 3, 9), cas(1, 1, 3, 1, 3, 9));
    /* ...unless a concurrent put restored the value in between. */
    CHECK_LIN(1, put(1, 1, 1, 2), cas(1, 1, 2, 1, 3, 9), cas(1, 1, 3, 1, 3, 9),
              put(1, 1, 3, 9));
}

TEST(unknown_outcomes)
{
    /* An unknown put may take effect late... */
    CHECK_LIN(1, unknown(put(1, 7, 1, 0)), get(1, 0, 2, 3), get(1, 7, 4, 5));
    /* ...or never... */
    CHECK_LIN(1, unknown(put(1, 7, 1, 0)), get(1, 0, 2, 3), get(1, 0, 40, 50));
    /* ...but not before its call, and not undo itself. */
    CHECK_LIN(0, get(1, 7, 1, 2), unknown(put(1, 7, 3, 0)));
    CHECK_LIN(0, unknown(put(1, 7, 1, 0)), get(1, 7, 2, 3), get(1, 0, 4, 5));
    /* An unknown CAS takes effect only where its expectation holds. */
    CHECK_LIN(1, put(1, 1, 1, 2), unknown(cas(1, 1, 2, 0, 3, 0)), get(1, 2, 5, 6));
    CHECK_LIN(1, put(1, 1, 1, 2), unknown(cas(1, 1, 2, 0, 3, 0)), get(1, 1, 5, 6));
    CHECK_LIN(0, put(1, 1, 1, 2), unknown(cas(1, 9, 2, 0, 3, 0)), get(1, 2, 5, 6));
    /* An unknown get constrains nothing. */
    CHECK_LIN(1, put(1, 1, 1, 2), unknown(get(1, 99, 3, 0)));
    /* Many unknown puts before a read of one of them. */
    CHECK_LIN(1, unknown(put(1, 1, 1, 0)), unknown(put(1, 2, 2, 0)), unknown(put(1, 3, 3, 0)),
              unknown(put(1, 4, 4, 0)), get(1, 2, 10, 11), get(1, 4, 12, 13));
    CHECK_LIN(0, unknown(put(1, 1, 1, 0)), unknown(put(1, 2, 2, 0)), get(1, 2, 10, 11),
              get(1, 1, 12, 13), get(1, 2, 14, 15));
}

TEST(keys_checked_separately)
{
    lin_op_t h[] = { put(1, 1, 1, 2), put(2, 1, 1, 2), get(1, 1, 3, 4), put(2, 2, 3, 4),
                     get(2, 1, 5, 6), get(3, 0, 5, 6) };
    lin_result_t res;
    CHECK_EQ(lin_check(h, 6, 0, &res), 0);
    CHECK_EQ(res.bad_key, 2);
    CHECK_EQ(res.key_ops, 3);
    CHECK(res.best < 3);
    /* Reading key 1's value on key 3 is not allowed either. */
    CHECK_LIN(0, put(1, 1, 1, 2), get(3, 1, 3, 4));
}

/* Builds a history from an atomic register: each op takes effect at one random instant
 * inside its interval, from 5 clients on 3 keys, some ops with unknown outcomes. */
static size_t atomic_history(rng_t *r, lin_op_t *h, size_t n)
{
    enum { CLIENTS = 5, KEYS = 3 };
    uint64_t reg[KEYS] = { 0 };
    uint64_t busy_until[CLIENTS] = { 0 };
    /* Each op: call, effect and ret on a common clock; effects applied in time order. */
    typedef struct { uint64_t at; size_t op; } ev_t;
    ev_t *ev = malloc(sizeof(*ev) * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)rng_below(r, CLIENTS);
        uint64_t call = busy_until[c] + 1 + rng_below(r, 20);
        uint64_t eff = call + rng_below(r, 30);
        uint64_t ret = eff + rng_below(r, 30);
        busy_until[c] = ret;
        lin_op_t op = { .client = c, .key = (uint32_t)rng_below(r, KEYS), .call = call * 2,
                        .ret = ret * 2 + 1, .known = !rng_chance(r, 50) };
        unsigned k = (unsigned)rng_below(r, 3);
        op.kind = k == 0 ? LIN_PUT : k == 1 ? LIN_GET : LIN_CAS;
        op.value = i + 1;
        op.expect = rng_below(r, i + 1); /* often a value long gone */
        h[i] = op;
        ev[i] = (ev_t){ eff * 2 + 1, i };
    }
    /* Apply effects in time order (insertion sort: n is small). */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && ev[j].at < ev[j - 1].at; j--) {
            ev_t t = ev[j];
            ev[j] = ev[j - 1];
            ev[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        lin_op_t *op = &h[ev[i].op];
        uint64_t *v = &reg[op->key];
        if (!op->known && rng_chance(r, 500))
            continue; /* an unknown op that never took effect */
        if (op->kind == LIN_PUT)
            *v = op->value;
        else if (op->kind == LIN_GET)
            op->result = *v;
        else if (*v == op->expect) {
            *v = op->value;
            op->result = 1;
        } else
            op->result = 0;
    }
    free(ev);
    return n;
}

TEST(atomic_register_histories_accepted)
{
    rng_t r;
    lin_op_t h[300];
    for (uint64_t seed = 1; seed <= 30; seed++) {
        rng_seed(&r, seed);
        size_t n = atomic_history(&r, h, 300);
        lin_result_t res;
        int v = lin_check(h, n, 0, &res);
        if (v != 1)
            printf("# seed %llu: %d (key %u)\n", (unsigned long long)seed, v, res.bad_key);
        CHECK_EQ(v, 1);
    }
}

TEST(corrupted_histories_rejected)
{
    rng_t r;
    lin_op_t h[300];
    int rejected = 0;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        rng_seed(&r, seed);
        size_t n = atomic_history(&r, h, 300);
        /* Make one known get that read a written value read a value written only later
         * (by an op whose call follows the get's return): a read of the future. */
        for (size_t i = 0; i < n; i++) {
            if (h[i].kind != LIN_GET || !h[i].known)
                continue;
            size_t j;
            for (j = 0; j < n; j++)
                if (h[j].key == h[i].key && h[j].kind == LIN_PUT && h[j].call > h[i].ret)
                    break;
            if (j == n)
                continue;
            h[i].result = h[j].value;
            break;
        }
        rejected += lin_check(h, n, 0, NULL) == 0;
    }
    CHECK_EQ(rejected, 30);
}

TEST(state_budget_is_inconclusive_not_a_verdict)
{
    /* 20 concurrent unknown puts then reads force a wide search; a budget of 10 states
     * must report -1 rather than a verdict. */
    lin_op_t h[24];
    for (int i = 0; i < 20; i++)
        h[i] = unknown(put(1, (uint64_t)i + 1, (uint64_t)i + 1, 0));
    h[20] = get(1, 3, 100, 101);
    h[21] = get(1, 17, 102, 103);
    h[22] = get(1, 5, 104, 105);
    h[23] = get(1, 99, 106, 107);
    CHECK_EQ(lin_check(h, 24, 10, NULL), -1);
    CHECK_EQ(lin_check(h, 23, 0, NULL), 1);
}

int main(void)
{
    RUN(empty_and_sequential);
    RUN(stale_read_after_completed_write_rejected);
    RUN(concurrent_ops_in_either_order);
    RUN(cas_semantics);
    RUN(unknown_outcomes);
    RUN(keys_checked_separately);
    RUN(atomic_register_histories_accepted);
    RUN(corrupted_histories_rejected);
    RUN(state_budget_is_inconclusive_not_a_verdict);
    return CHECK_DONE();
}
