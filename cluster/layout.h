/* cluster/layout.h — where the voters and the preferred leader of every shard go, given the
 * cluster's active members: the target that membership changes and rebalancing move the
 * groups' configurations to (docs/MEMBERSHIP.md "Layout"). Pure and deterministic: every
 * node computes the same layout from the same member list, whatever its order.
 *
 * Balance, the contract: with S shards, R voters each and n >= R members, every member holds
 * floor(S*R/n) or ceil(S*R/n) voter replicas, and leads (is the first voter of)
 * floor(S/n) or ceil(S/n) shards when such an assignment exists among the chosen voters (the
 * leader pass moves leaderships along chains of shards; it gives up after a bounded search,
 * which the unit test checks never happens for n <= 16, S <= 256). Within those bounds each
 * shard keeps the members its rendezvous order (cluster/placement.h) prefers, so adding or
 * removing one member moves few replicas. */
#ifndef QFS_CLUSTER_LAYOUT_H
#define QFS_CLUSTER_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define LAYOUT_MAX_MEMBERS 16    /* a Raft group holds at most 16 members (RAFT_MAX_SERVERS) */

/* The voters of shards 0..nshards-1 among the n distinct nonzero ids[] (1 <= r <= n <=
 * LAYOUT_MAX_MEMBERS): out[k*r .. k*r+r) are shard k's voters, its preferred leader first,
 * the others in the shard's rendezvous order. Returns 0, or -1 when the arguments break
 * those bounds (out untouched). Cost: O(S * n^2) plus the leader search. */
int layout_plan(uint32_t nshards, uint32_t r, const uint64_t *ids, size_t n, uint64_t *out);

#endif
