/* tests/sim/invariant.c — registries behind the safety checks: a by-term leader table, an
 * open-addressed (index, term) entry table and a by-index table of commits and applies. */
#include "tests/sim/invariant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U(x) ((unsigned long long)(x))

void inv_init(inv_t *v)
{
    memset(v, 0, sizeof(*v));
}

void inv_free(inv_t *v)
{
    free(v->leader);
    free(v->slots);
    free(v->idx);
    memset(v, 0, sizeof(*v));
}

static int grow(void **p, size_t *n, size_t need, size_t elem)
{
    if (need < *n)
        return 0;
    size_t nn = *n ? *n : 256;
    while (nn <= need)
        nn *= 2;
    void *q = realloc(*p, nn * elem);
    if (!q)
        return -1;
    memset((char *)q + *n * elem, 0, (nn - *n) * elem);
    *p = q;
    *n = nn;
    return 0;
}

static int oom(inv_t *v)
{
    snprintf(v->err, sizeof(v->err), "invariant checker out of memory");
    return -1;
}

int inv_leader(inv_t *v, uint64_t term, uint64_t id)
{
    if (grow((void **)&v->leader, &v->nleader, term, sizeof(uint64_t)) < 0)
        return oom(v);
    if (v->leader[term] && v->leader[term] != id) {
        snprintf(v->err, sizeof(v->err),
                 "election safety: n%llu and n%llu are both leader of term %llu",
                 U(v->leader[term]), U(id), U(term));
        return -1;
    }
    v->leader[term] = id;
    if (term > v->max_leader_term)
        v->max_leader_term = term;
    return 0;
}

uint64_t inv_leader_above(const inv_t *v, uint64_t term, uint64_t *id)
{
    if (v->max_leader_term <= term)
        return 0;
    for (uint64_t t = term + 1; t <= v->max_leader_term; t++)
        if (v->leader[t]) {
            *id = v->leader[t];
            return t;
        }
    return 0;
}

static size_t slot_hash(uint64_t index, uint64_t term, size_t n)
{
    uint64_t h = index * 0x9e3779b97f4a7c15ULL ^ (term + 0x632be59bd9b4e019ULL) * 0xbf58476d1ce4e5b9ULL;
    return (size_t)(h ^ (h >> 31)) & (n - 1);
}

static int slots_grow(inv_t *v)
{
    size_t nn = v->nslots ? v->nslots * 2 : 4096;
    inv_slot_t *ns = calloc(nn, sizeof(*ns));
    if (!ns)
        return -1;
    for (size_t i = 0; i < v->nslots; i++) {
        if (!v->slots[i].term)
            continue;
        size_t h = slot_hash(v->slots[i].index, v->slots[i].term, nn);
        while (ns[h].term)
            h = (h + 1) & (nn - 1);
        ns[h] = v->slots[i];
    }
    free(v->slots);
    v->slots = ns;
    v->nslots = nn;
    return 0;
}

int inv_entry(inv_t *v, int node, uint64_t index, uint64_t term, uint64_t prev_term,
              uint64_t hash)
{
    if (term == 0 || index == 0) {
        snprintf(v->err, sizeof(v->err), "n%d wrote an entry with index %llu, term %llu",
                 node, U(index), U(term));
        return -1;
    }
    int known = prev_term != INV_UNKNOWN;
    if (known && prev_term > term) {
        snprintf(v->err, sizeof(v->err),
                 "log matching: n%d has entry %llu of term %llu after one of term %llu",
                 node, U(index), U(term), U(prev_term));
        return -1;
    }
    if ((v->used + 1) * 2 > v->nslots && slots_grow(v) < 0)
        return oom(v);
    size_t h = slot_hash(index, term, v->nslots);
    while (v->slots[h].term) {
        inv_slot_t *s = &v->slots[h];
        if (s->index == index && s->term == term) {
            if (s->hash != hash) {
                snprintf(v->err, sizeof(v->err),
                         "log matching: entry %llu of term %llu differs between n%d and n%d",
                         U(index), U(term), s->node, node);
                return -1;
            }
            if (known && s->prev_term == INV_UNKNOWN)
                s->prev_term = prev_term;
            if (known && s->prev_term != prev_term) {
                snprintf(v->err, sizeof(v->err),
                         "log matching: entry %llu of term %llu follows an entry of term %llu "
                         "on n%d but of term %llu on n%d",
                         U(index), U(term), U(s->prev_term), s->node, U(prev_term), node);
                return -1;
            }
            return 0;
        }
        h = (h + 1) & (v->nslots - 1);
    }
    v->slots[h] = (inv_slot_t){ .index = index, .term = term, .hash = hash,
                                .prev_term = prev_term, .node = node };
    v->used++;
    return 0;
}

int inv_commit(inv_t *v, int node, uint64_t index, uint64_t term, uint64_t leader_term)
{
    if (grow((void **)&v->idx, &v->nidx, index, sizeof(inv_idx_t)) < 0)
        return oom(v);
    inv_idx_t *x = &v->idx[index];
    if (x->commit_term && x->commit_term != term) {
        snprintf(v->err, sizeof(v->err),
                 "committed entry changed: index %llu committed with term %llu on n%d, "
                 "with term %llu on n%d",
                 U(index), U(x->commit_term), x->commit_node, U(term), node);
        return -1;
    }
    if (!x->commit_term) {
        x->commit_term = term;
        x->commit_node = node;
    }
    if (leader_term && (!x->commit_by || leader_term < x->commit_by))
        x->commit_by = leader_term;
    if (index > v->max_commit)
        v->max_commit = index;
    return 0;
}

int inv_apply(inv_t *v, int node, uint64_t index, uint64_t entry_hash, uint64_t state_hash)
{
    if (grow((void **)&v->idx, &v->nidx, index, sizeof(inv_idx_t)) < 0)
        return oom(v);
    inv_idx_t *x = &v->idx[index];
    entry_hash |= 1; /* 0 means "none yet" */
    state_hash |= 1;
    if (x->apply_hash && x->apply_hash != entry_hash) {
        snprintf(v->err, sizeof(v->err),
                 "state machine safety: n%d and n%d applied different entries at index %llu",
                 x->apply_node, node, U(index));
        return -1;
    }
    if (x->state_hash && x->state_hash != state_hash) {
        snprintf(v->err, sizeof(v->err),
                 "state machine safety: n%d and n%d have different states after index %llu",
                 x->apply_node, node, U(index));
        return -1;
    }
    if (!x->apply_hash) {
        x->apply_hash = entry_hash;
        x->state_hash = state_hash;
        x->apply_node = node;
    }
    return 0;
}

int inv_restore(inv_t *v, int node, uint64_t index, uint64_t state_hash)
{
    if (grow((void **)&v->idx, &v->nidx, index, sizeof(inv_idx_t)) < 0)
        return oom(v);
    inv_idx_t *x = &v->idx[index];
    state_hash |= 1;
    if (x->state_hash && x->state_hash != state_hash) {
        snprintf(v->err, sizeof(v->err),
                 "snapshot: n%d restored a state at index %llu that n%d did not have there",
                 node, U(index), x->apply_node);
        return -1;
    }
    if (!x->state_hash) {
        x->state_hash = state_hash;
        x->apply_node = node;
    }
    return 0;
}

uint64_t inv_commit_term(const inv_t *v, uint64_t index)
{
    return index < v->nidx ? v->idx[index].commit_term : 0;
}

uint64_t inv_commit_by(const inv_t *v, uint64_t index)
{
    return index < v->nidx ? v->idx[index].commit_by : 0;
}
