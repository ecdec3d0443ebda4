/* cluster/placement.h — which shard holds a key: rendezvous (highest random weight) hashing,
 * so that every node computes the same answer from the key alone, keys spread evenly, and
 * going from S to S+1 shards moves only about 1/(S+1) of the keys (FILE-API §11 "Placement").
 * cluster/ knows nothing of files: fs/route.h turns a path into the key. Pure. */
#ifndef QFS_CLUSTER_PLACEMENT_H
#define QFS_CLUSTER_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

/* The shard in [0, nshards) that holds key[0..len). nshards must be >= 1. Cost: one hash of
 * the key plus nshards cheap mixes. Stable across versions: changing it moves data, so the
 * function is part of the on-disk format (docs/CLUSTER.md "Placement"). */
uint32_t shard_for_key(const void *key, size_t len, uint32_t nshards);

/* The replicas of shard `shard` among the n node ids ids[] (distinct, nonzero): the r
 * (1 <= r <= n) ids of highest rendezvous weight for the shard, highest first, written to
 * out[0..r). out[0] is the shard's preferred leader, so leaders spread over the nodes as
 * shards do; losing or adding a node changes the replicas of only the shards it weighs in.
 * Independent of the order of ids[]. Stable across versions (part of a cluster's layout). */
void replicas_for_shard(uint32_t shard, const uint64_t *ids, size_t n, size_t r, uint64_t *out);

#endif
