/* cluster/placement.c — rendezvous hashing (see placement.h). The key is hashed once with
 * 64-bit FNV-1a; each shard's weight is a SplitMix64 finalizer of that hash combined with
 * the shard number, and the highest weight wins (ties: the lower shard). */
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
