/* cluster/placement.c — rendezvous hashing (see placement.h). The key is hashed once with
 * 64-bit FNV-1a; each shard's weight is a SplitMix64 finalizer of that hash combined with
 * the shard number, and the highest weight wins (ties: the lower shard). A shard's replicas
 * are the nodes of highest weight mix(mix(shard + 1) ^ mix(id)) (ties: the lower id). */
#include "cluster/assert.h"
#include "cluster/placement.h"

static uint64_t fnv1a64(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint32_t shard_for_key(const void *key, size_t len, uint32_t nshards)
{
    ASSERT(nshards >= 1 && (key || len == 0));
    uint64_t h = fnv1a64(key, len), best = 0;
    uint32_t pick = 0;
    for (uint32_t s = 0; s < nshards; s++) {
        uint64_t w = mix(h ^ mix((uint64_t)s + 1));
        if (s == 0 || w > best) {
            best = w;
            pick = s;
        }
    }
    return pick;
}

static uint64_t node_weight(uint32_t shard, uint64_t id)
{
    return mix(mix((uint64_t)shard + 1) ^ mix(id));
}

void replicas_for_shard(uint32_t shard, const uint64_t *ids, size_t n, size_t r, uint64_t *out)
{
    ASSERT(ids && out && r >= 1 && r <= n);
    /* r rounds of "the best id not taken yet": n and r are small (a cluster's nodes) */
    for (size_t k = 0; k < r; k++) {
        uint64_t best = 0, bw = 0;
        for (size_t i = 0; i < n; i++) {
            int taken = 0;
            for (size_t j = 0; j < k; j++)
                taken |= out[j] == ids[i];
            if (taken)
                continue;
            uint64_t w = node_weight(shard, ids[i]);
            if (!best || w > bw || (w == bw && ids[i] < best)) {
                best = ids[i];
                bw = w;
            }
        }
        out[k] = best;
    }
}
