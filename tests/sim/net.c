/* tests/sim/net.c — messages in flight kept in a binary min-heap ordered by (delivery
 * time, send sequence); every fault decision is one PRNG draw at send time. */
#include "tests/sim/net.h"

#include <stdlib.h>
#include <string.h>

void net_init(net_t *n, rng_t *rng, void *(*clone)(const void *), void (*free_fn)(void *))
{
    memset(n, 0, sizeof(*n));
    n->rng = rng;
    n->clone = clone;
    n->free = free_fn;
    n->faults.delay_min = 1;
    n->faults.delay_max = 1;
}

void net_destroy(net_t *n)
{
    for (size_t i = 0; i < n->len; i++)
        n->free(n->heap[i].payload);
    free(n->heap);
    n->heap = NULL;
    n->len = n->cap = 0;
}

static int before(const net_msg_t *a, const net_msg_t *b)
{
    return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void sift_up(net_t *n, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&n->heap[i], &n->heap[p]))
            break;
        net_msg_t t = n->heap[i];
        n->heap[i] = n->heap[p];
        n->heap[p] = t;
        i = p;
    }
}

static void sift_down(net_t *n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n->len && before(&n->heap[l], &n->heap[m]))
            m = l;
        if (r < n->len && before(&n->heap[r], &n->heap[m]))
            m = r;
        if (m == i)
            return;
        net_msg_t t = n->heap[i];
        n->heap[i] = n->heap[m];
        n->heap[m] = t;
        i = m;
    }
}

static uint64_t draw_delay(net_t *n)
{
    const net_faults_t *f = &n->faults;
    if (f->slow_permille && rng_chance(n->rng, f->slow_permille))
        return rng_range(n->rng, f->delay_min, f->slow_max > f->delay_min ? f->slow_max
                                                                          : f->delay_min);
    return rng_range(n->rng, f->delay_min, f->delay_max > f->delay_min ? f->delay_max
                                                                       : f->delay_min);
}

static int push(net_t *n, int from, int to, void *payload, uint64_t at)
{
    if (n->len == n->cap) {
        size_t nc = n->cap ? n->cap * 2 : 64;
        net_msg_t *h = realloc(n->heap, nc * sizeof(*h));
        if (!h)
            return -1;
        n->heap = h;
        n->cap = nc;
    }
    n->heap[n->len] = (net_msg_t){ .at = at, .seq = n->seq++, .from = from, .to = to,
                                   .payload = payload };
    sift_up(n, n->len++);
    return 0;
}

int net_send(net_t *n, int from, int to, void *payload, uint64_t now)
{
    n->sent++;
    /* Draw every decision whatever the outcome, so one fault does not shift the others. */
    int drop = rng_chance(n->rng, n->faults.drop_permille);
    int dup = rng_chance(n->rng, n->faults.dup_permille);
    uint64_t d1 = draw_delay(n), d2 = draw_delay(n);
    if (n->cut[from][to] || drop) {
        n->dropped++;
        n->free(payload);
        return 0;
    }
    if (dup) {
        void *copy = n->clone(payload);
        if (copy) {
            n->duplicated++;
            if (push(n, from, to, copy, now + d2) < 0)
                n->free(copy);
        }
    }
    if (push(n, from, to, payload, now + d1) < 0) {
        n->free(payload);
        return -1;
    }
    return 0;
}

int net_send_reliable(net_t *n, int from, int to, void *payload, uint64_t now)
{
    n->sent++;
    if (push(n, from, to, payload, now + draw_delay(n)) < 0) {
        n->free(payload);
        return -1;
    }
    return 0;
}

uint64_t net_next_at(const net_t *n)
{
    return n->len ? n->heap[0].at : UINT64_MAX;
}

int net_pop(net_t *n, uint64_t now, net_msg_t *m)
{
    while (n->len && n->heap[0].at <= now) {
        *m = n->heap[0];
        n->heap[0] = n->heap[--n->len];
        sift_down(n, 0);
        if (n->cut[m->from][m->to]) {
            n->dropped++;
            n->free(m->payload);
            continue;
        }
        return 1;
    }
    return 0;
}

void net_cut(net_t *n, int from, int to, int cut)
{
    n->cut[from][to] = (unsigned char)(cut != 0);
}

void net_heal(net_t *n)
{
    memset(n->cut, 0, sizeof(n->cut));
}

void net_drop_endpoint(net_t *n, int e)
{
    size_t j = 0;
    for (size_t i = 0; i < n->len; i++) {
        if (n->heap[i].from == e || n->heap[i].to == e) {
            n->free(n->heap[i].payload);
            n->dropped++;
        } else
            n->heap[j++] = n->heap[i];
    }
    n->len = j;
    for (size_t i = n->len / 2 + 1; i-- > 0;)
        sift_down(n, i);
}
