/* cluster/meta_sm.h — the state machine of the META GROUP (docs/MEMBERSHIP.md "a dedicated
 * meta group"; record and commands in docs/META.md): the cluster's member list, its cluster
 * id and a version that counts changes. Pure and deterministic: apply reads no clock and no
 * randomness, members are kept in id order, and the same commands give byte-identical
 * snapshots on every node. It replicates through meta_sm_ops (cluster/sm.h); whoever wires
 * it (the transport's peers, the CLI) learns of changes from the change hook and reads the
 * record with meta_sm_copy from any thread. Knows nothing of files. */
#ifndef QFS_CLUSTER_META_SM_H
#define QFS_CLUSTER_META_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/sm.h"

#define META_CMD_VERSION 1       /* first byte of every command */
#define META_SNAP_VERSION 2      /* first u32 of the snapshot (1 is still read) */
#define META_MEMBERS_MAX 4096    /* members in the record */
#define META_LAYOUT_MEMBERS_MAX 16 /* members once a layout is set: every node follows every
                                      shard, and a Raft group holds at most 16 */
#define META_LAYOUT_SHARDS_MAX 65535
#define META_ADDR_MAX 255        /* bytes of an address */

/* A member's state. */
enum meta_state {
    META_JOINING = 1,            /* added, not yet in every group it should be in */
    META_ACTIVE = 2,             /* a full member (founders start here) */
    META_LEAVING = 3,            /* being moved out of every group before its removal */
};

/* Command opcodes (second byte of every command; fields in docs/META.md "Commands"). */
enum meta_op {
    META_OP_FOUND = 1,           /* u64 cluster_id, u32 n, n x (u64 id, u8 len, addr) */
    META_OP_ADD,                 /* u64 id, u8 len, addr */
    META_OP_SET_STATE,           /* u64 id, u8 state */
    META_OP_SET_INCARNATION,     /* u64 id, u64 incarnation */
    META_OP_DRAIN,               /* u64 id, u8 on */
    META_OP_REMOVE,              /* u64 id */
    META_OP_SET_LAYOUT,          /* u32 shards, u32 replicas */
};

/* Bytes of the result data every apply with a non-NULL result writes, whatever its code:
 * u64 version, u64 cluster_id of the record after the command (little-endian). */
#define META_RESULT_LEN 16

/* One member. addr is NUL-terminated, 1..META_ADDR_MAX bytes (meta_addr_valid). */
typedef struct meta_member {
    uint64_t id;                 /* nonzero, unique */
    uint64_t incarnation;        /* 0 until the member's first HELLO set it */
    uint8_t state;               /* enum meta_state */
    uint8_t drained;             /* 1: leaderships moved away on request (cluster drain) */
    char addr[META_ADDR_MAX + 1];
} meta_member_t;

/* A copy of the record, owned by the caller (meta_view_free). */
typedef struct meta_view {
    uint64_t cluster_id;         /* 0 until founded */
    uint64_t version;            /* changes applied since the empty record (0: none) */
    uint32_t shards, replicas;   /* the cluster's layout (SET_LAYOUT); 0: not recorded yet */
    uint32_t n;                  /* members, sorted by id */
    meta_member_t *members;      /* malloc'ed; NULL when n is 0 */
} meta_view_t;

typedef struct meta_sm meta_sm_t;

/* ---- lifetime ---- */

/* A new, empty record (cluster_id 0, version 0, no members). on_change (may be NULL) is
 * called with arg after every apply that changed the record and after every successful
 * restore, on the thread that applied, with no lock of the module held: it may call the
 * read API below, and must not call apply/restore. Never fails (aborts when out of
 * memory). */
meta_sm_t *meta_sm_new(void (*on_change)(void *arg, const meta_sm_t *sm), void *arg);
/* Frees sm (NULL is a no-op). No other thread may use it any more. */
void meta_sm_free(meta_sm_t *sm);

/* apply/snapshot/restore over a meta_sm_t (ctx); no stamp. Apply's result code is 0 or
 * one of the negative errno values of docs/META.md ("Results"); res->data gets
 * META_RESULT_LEN bytes. A command that fails changes nothing. Restore refuses a snapshot
 * that breaks an invariant with -QERR_CORRUPT (-QERR_FORMAT for an unknown version),
 * logging "quorumfs: snapshot refused: meta: <why>" to stderr, and leaves the record empty. */
extern const sm_ops_t meta_sm_ops;

/* ---- read API: any thread, any time (takes the module's read lock) ---- */

/* Copies the record into *out (replacing nothing: out's old contents are not freed).
 * Returns 0, or -QERR_NOMEM with *out empty. */
int meta_sm_copy(const meta_sm_t *sm, meta_view_t *out);
/* Frees what meta_sm_copy put in *v and leaves it empty. */
void meta_view_free(meta_view_t *v);
/* Member id: 0 and *out, or -QERR_NOTFOUND. */
int meta_sm_get(const meta_sm_t *sm, uint64_t id, meta_member_t *out);
/* Whether member id is drained (false for an unknown id). */
bool meta_sm_is_drained(const meta_sm_t *sm, uint64_t id);

/* The first broken invariant of the record, or NULL: cluster_id 0 exactly when version is
 * 0 and then no members; at most META_MEMBERS_MAX members, ids nonzero and strictly
 * increasing, addresses valid and distinct, states in range, drained 0 or 1. */
const char *meta_sm_verify(const meta_sm_t *sm);
/* ASSERTs meta_sm_verify (tests call it after every apply). */
void meta_sm_check(const meta_sm_t *sm);

/* Whether addr[0..len) is a member address: 1..META_ADDR_MAX bytes, printable ASCII
 * without spaces (0x21..0x7e), "HOST:PORT" with a nonempty host before the last ':' and a
 * port of 1..65535 in decimal digits after it (an IPv6 host is written [ADDR]). */
bool meta_addr_valid(const char *addr, size_t len);

/* ---- command encoders ----
 * Each fills *c with a malloc'ed command (free with meta_cmd_free) that the caller
 * proposes. They encode what they are given: apply judges the values (a zero id, an
 * address apply refuses, a state out of range give -EINVAL there). Return 0, -QERR_INVAL
 * for what the encoding cannot hold (a NULL or over-long address, more than
 * META_MEMBERS_MAX members), or -QERR_NOMEM; *c is then empty. */
typedef struct meta_cmd {
    uint8_t *p;
    size_t len;
} meta_cmd_t;

void meta_cmd_free(meta_cmd_t *c);
/* FOUND: members ids[i] at addrs[i], i < n; they become active. */
int meta_cmd_found(meta_cmd_t *c, uint64_t cluster_id, uint32_t n, const uint64_t *ids,
                   const char *const *addrs);
int meta_cmd_add(meta_cmd_t *c, uint64_t id, const char *addr);
int meta_cmd_set_state(meta_cmd_t *c, uint64_t id, uint8_t state);
int meta_cmd_set_incarnation(meta_cmd_t *c, uint64_t id, uint64_t incarnation);
int meta_cmd_drain(meta_cmd_t *c, uint64_t id, uint8_t on);
int meta_cmd_remove(meta_cmd_t *c, uint64_t id);
/* SET_LAYOUT: the cluster's shard count and voters per shard, recorded once after FOUND. */
int meta_cmd_set_layout(meta_cmd_t *c, uint32_t shards, uint32_t replicas);

#endif
