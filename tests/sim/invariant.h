/* tests/sim/invariant.h — the Raft safety properties (Figure 3 of the paper) as global
 * registries the simulator feeds at every step: who led each term, what each (index, term)
 * entry holds, which entry each index committed and applied, and the state-machine hash
 * after each index. A call returns 0, or -1 after writing what broke into inv->err. */
#ifndef QFS_SIM_INVARIANT_H
#define QFS_SIM_INVARIANT_H

#include <stddef.h>
#include <stdint.h>

typedef struct inv_slot {
    uint64_t index, term;     /* key; term 0 = empty slot */
    uint64_t hash;            /* entry type + payload hash */
    uint64_t prev_term;       /* term of the entry before it, in the log that wrote it */
    int node;
} inv_slot_t;

typedef struct inv_idx {
    uint64_t commit_term;     /* term of the entry committed at this index, 0 = unknown */
    int commit_node;
    uint64_t commit_by;       /* lowest term of a leader seen to commit it, 0 = none yet */
    uint64_t apply_hash;      /* hash of the entry applied here, 0 = none yet */
    uint64_t state_hash;      /* state-machine hash after applying it, 0 = none yet */
    int apply_node;
} inv_idx_t;

typedef struct inv {
    uint64_t *leader;         /* leader[term] = id, 0 = none seen */
    size_t nleader;
    inv_slot_t *slots;        /* open addressing on (index, term) */
    size_t nslots, used;
    inv_idx_t *idx;           /* by log index */
    size_t nidx;
    uint64_t max_commit;      /* highest index known committed anywhere */
    uint64_t max_leader_term; /* highest term with a leader seen */
    char err[512];
} inv_t;

void inv_init(inv_t *v);
void inv_free(inv_t *v);

/* Election safety: at most one leader per term. */
int inv_leader(inv_t *v, uint64_t term, uint64_t id);
/* Lowest term above term in which a leader was seen (its id in *id), 0 if none. A leader
 * whose read lease holds in term must see 0: the lease promises that no voter helps elect
 * anyone else meanwhile (thesis §6.4.1). */
uint64_t inv_leader_above(const inv_t *v, uint64_t term, uint64_t *id);
/* Log matching: an (index, term) pair names one entry (same payload) whose predecessor has
 * one term, so by induction the whole prefix is the same wherever the pair appears.
 * prev_term may be INV_UNKNOWN (the predecessor was compacted away). */
#define INV_UNKNOWN UINT64_MAX
int inv_entry(inv_t *v, int node, uint64_t index, uint64_t term, uint64_t prev_term,
              uint64_t hash);
/* An index a node reports committed, with the term of its entry there: every node must
 * agree, and nothing committed may later be replaced. leader_term is the node's term if it
 * is the leader (it committed the entry in that term), else 0. */
int inv_commit(inv_t *v, int node, uint64_t index, uint64_t term, uint64_t leader_term);
/* State machine safety: every node applies the same entry at an index and reaches the same
 * state after it. */
int inv_apply(inv_t *v, int node, uint64_t index, uint64_t entry_hash, uint64_t state_hash);
/* A state restored from a snapshot at index must be the state other nodes reached there. */
int inv_restore(inv_t *v, int node, uint64_t index, uint64_t state_hash);
/* Term of the entry committed at index, 0 if unknown. */
uint64_t inv_commit_term(const inv_t *v, uint64_t index);
/* Lowest leader term known to have committed index, 0 if unknown. Leader completeness
 * (§5.4) promises the entry to leaders of every later term. */
uint64_t inv_commit_by(const inv_t *v, uint64_t index);

#endif
