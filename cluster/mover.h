/* cluster/mover.h — moves every group's configuration towards what the member record wants
 * (docs/MEMBERSHIP.md "The mover"): new members join each group as learners, the layout's
 * voters (cluster/layout.h) are promoted once caught up, voters the layout no longer wants
 * are demoted (removed, then added back as learners) or, for members leaving, removed; the
 * meta group's leader founds the record, marks a joining member active once every group has
 * it, and drops a leaving member once no group has it. It also keeps the transport's peers
 * equal to the record's members and every group's preferred leader equal to the first voter
 * of the layout that is not drained.
 *
 * Every node runs one mover on a thread of its own. It acts only on the groups this node
 * leads (a configuration change is proposed on the leader: mraft_change_member), one change
 * per group per round and at most MOVER_CHANGES_PER_ROUND per round in all (rate limit), and
 * only after a read barrier on the meta group, so it never acts on a record older than one
 * another leader acted on. Knows nothing about files. */
#ifndef QFS_CLUSTER_MOVER_H
#define QFS_CLUSTER_MOVER_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/group.h"
#include "cluster/meta_sm.h"

#define MOVER_PERIOD_MS 200          /* one round at most this often (sooner when woken) */
#define MOVER_CHANGES_PER_ROUND 4
#define MOVER_PROMOTE_LAG 64         /* a learner within this many entries of the leader's
                                        last index, and heard from, is caught up */
#define MOVER_CATCHUPS_MAX 2         /* groups this node leads that may be sending snapshots
                                        to a new learner at once; more adds wait */
#define MOVER_CHANGE_TIMEOUT_MS 3000

typedef struct mover mover_t;

typedef struct mover_config {
    group_node_t *gnode;
    uint64_t self;
    uint32_t nshards;            /* shard k is group k ... */
    group_t *const *shards;      /* ... and shards[k] its handle ([nshards], owned by gnode) */
    uint32_t meta_id;            /* the meta group's id, and its handle */
    group_t *meta_group;
    meta_sm_t *meta;             /* the record it applies */
    uint32_t replicas;           /* voters per group */
    /* The members to assume until the record is founded (the founding members: --peers of a
     * founding node) and whether this node founds the record with them when it leads the
     * meta group. A joining node gives its --peers (only for the transport and status) and
     * found = 0: it has no layout until it has learned the record. */
    const group_peer_t *peers;
    size_t npeers;
    int found;
    uint64_t cluster_id;         /* for FOUND */
    uint64_t incarnation;        /* this node's data directory's (docs/MEMBERSHIP.md "A wiped
                                    node"): recorded in its member entry while that is 0;
                                    0 = never recorded */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} mover_config_t;

/* Makes the mover (no thread yet) and computes the first layout (from the record if it is
 * founded, else from cfg->peers when cfg->found). Returns 0 or -QERR_NOMEM / -QERR_INVAL. */
int mover_new(const mover_config_t *cfg, mover_t **out);
/* Starts its thread (after group_node_start). Returns 0 or -QERR_*. */
int mover_start(mover_t *m);
/* Stops the thread (waiting for a change in flight, at most MOVER_CHANGE_TIMEOUT_MS); the
 * mover stays usable for mover_record_changed and the readers. Call before group_node_close
 * (whose last applies may still call mover_record_changed). NULL is a no-op. */
void mover_stop(mover_t *m);
/* Stops (if running) and frees. NULL is a no-op. After group_node_close. */
void mover_free(mover_t *m);

/* The record changed (the meta group's change hook; any thread, does not block long):
 * recomputes the layout and the preferred leaders and wakes the thread. */
void mover_record_changed(mover_t *m);

/* Group g's (0..nshards-1, or cfg->meta_id) target voters, preferred leader first, into
 * out[0..replicas); returns how many (0: no layout yet, or fewer active members than
 * replicas). */
size_t mover_target(mover_t *m, uint32_t g, uint64_t *out);
/* The first of group g's target voters that is not drained and is not `also` (0: none),
 * i.e. its preferred leader once `also` is drained; 0 when there is none. */
uint64_t mover_first_undrained(mover_t *m, uint32_t g, uint64_t also);

/* Whether the record's layout (shards, replicas: recorded by the meta leader once founded)
 * differs from this node's; then *why (size bytes) says how, and the mover does nothing.
 * A node started with the wrong --shards or --replicas (a joining one, say) must stop. */
int mover_mismatch(mover_t *m, char *why, size_t size);
/* Whether the record no longer lists this node, which was a member (it was removed): it
 * has no say in any group any more. Any thread; NULL: 0. */
int mover_removed(mover_t *m);

/* The members as this node knows them: the record's, or before it is founded cfg->peers
 * (state 0). Fills out[0..cap) in id order and returns the count (which may exceed cap). */
size_t mover_members(mover_t *m, meta_member_t *out, size_t cap);

/* The plan (`quorumfs cluster rebalance --dry-run`): per group the configuration this node
 * sees and the changes the layout asks for, one line each, then a summary; malloc'ed text.
 * Returns 0 or -QERR_NOMEM. */
int mover_plan_text(mover_t *m, char **text);

#endif
