/* cluster/raft.h — a Raft consensus core that does no I/O (Ongaro & Ousterhout 2014, and
 * Ongaro's thesis). Ticks, messages and proposals go in; a raft_ready_t comes out with state
 * to persist, messages to send and entries to apply. Disk, network, time and randomness come
 * only through the caller; all state is in a raft_t, so many groups share a process.
 * docs/RAFT.md maps the features to the paper and states the persistence contract. */
#ifndef QFS_CLUSTER_RAFT_H
#define QFS_CLUSTER_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------
 * The persistence contract (the Ready loop). The caller runs, for each raft_t:
 *
 *     raft_tick / raft_step / raft_propose* / raft_read_index / raft_transfer / raft_compact
 *     if (raft_has_ready(r)) {
 *         raft_ready(r, &rd);
 *         (a) rd.msgs may be sent right away, even before (b) is durable (§10.2.1 of the
 *             thesis: a leader writes its log in parallel with replicating it);
 *         (b) make durable, in this order: rd.snap_chunk (a piece of a snapshot being
 *             received), rd.snapshot (a received snapshot is complete: it becomes the current
 *             snapshot, the log up to its index is dropped), rd.entries (first delete every
 *             persisted entry with index >= rd.entries[0].index, then append), rd.hs.
 *             A crash part-way through (b) may leave any prefix of these writes durable:
 *             raft_new accepts such a state (e.g. entries of a newer term than hs.term);
 *         (c) only after (b) is durable, send rd.msgs_after_persist (vote grants, append and
 *             snapshot acknowledgements, vote requests: everything that promises durability);
 *         (d) restore the state machine from rd.snapshot if set, then apply rd.committed in
 *             order (entries of type RAFT_ENTRY_NORMAL carry commands; NOOP and CONF entries
 *             are bookkeeping the state machine may ignore) and serve rd.reads (see below);
 *         raft_advance(r, &rd);
 *     }
 *
 * Between raft_ready() and raft_advance() the caller calls no other mutating raft_*
 * function on that raft_t (getters are fine). Everything a Ready points to (entries,
 * payloads, messages, chunks) is owned by the core and valid until raft_advance() returns;
 * raft_msg_clone() makes a copy that outlives it. raft_advance() tells the core that all of
 * (b) is durable and all of (d) is applied. A caller that does (a) after (b) is also correct.
 * ------------------------------------------------------------------------------------------ */

typedef struct raft raft_t;

#define RAFT_MAX_SERVERS 16      /* voters + learners in one configuration */
#define RAFT_ENTRY_OVERHEAD 24   /* bytes counted per entry, on top of its payload, against
                                    max_msg_bytes and max_uncommitted_bytes */
#define RAFT_WIRE_VERSION 1      /* first byte of every encoded message */

/* Log entry types. */
enum {
    RAFT_ENTRY_NORMAL = 1,   /* an application command (raft_propose) */
    RAFT_ENTRY_NOOP = 2,     /* empty entry a new leader appends at the start of its term */
    RAFT_ENTRY_CONF = 3,     /* a configuration: payload is raft_conf_encode() output */
};

/* One log entry. Whoever hands an entry out says how long data stays valid. */
typedef struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint32_t type;           /* RAFT_ENTRY_* */
    uint32_t len;            /* payload bytes */
    const uint8_t *data;     /* payload (NULL when len == 0) */
} raft_entry_t;

/* The state a server must persist before answering (Figure 2 "persistent state"), plus the
 * commit index so a restart can re-apply without waiting for a leader. */
typedef struct raft_hard_state {
    uint64_t term;           /* latest term seen */
    uint64_t vote;           /* candidate voted for in term, 0 = none */
    uint64_t commit;         /* highest index known committed (may lag; never ahead) */
} raft_hard_state_t;

/* Server roles inside a configuration. */
enum {
    RAFT_VOTER = 1,          /* votes and counts for commit */
    RAFT_LEARNER = 2,        /* receives the log, never votes, never counts */
    RAFT_STAGING = 3,        /* a learner the leader promotes to voter once it has caught up */
};

typedef struct raft_server {
    uint64_t id;             /* nonzero, unique in the group */
    uint32_t role;           /* RAFT_VOTER / RAFT_LEARNER / RAFT_STAGING */
} raft_server_t;

/* A cluster configuration (thesis §4). Plain value; copy freely. Servers are kept sorted by
 * id so two equal configurations compare equal with memcmp after raft_conf_normalize. */
typedef struct raft_conf {
    uint32_t n;
    raft_server_t s[RAFT_MAX_SERVERS];
} raft_conf_t;

/* What a snapshot covers: everything up to and including index (whose entry had term), and
 * the configuration in force at index. */
typedef struct raft_snap_meta {
    uint64_t index;
    uint64_t term;
    raft_conf_t conf;
} raft_snap_meta_t;

/* Roles of a server at run time. */
enum {
    RAFT_FOLLOWER = 1,
    RAFT_PRECANDIDATE = 2,   /* running a pre-vote (thesis §9.6); term not yet incremented */
    RAFT_CANDIDATE = 3,
    RAFT_LEADER = 4,
};

/* ------------------------------------------------------------------------------------------
 * Messages. A raft_msg_t is a plain struct that may be copied by value, duplicated, dropped
 * or reordered by the network; the core is robust to all of that. Pointers inside
 * (entries, entries[i].data, data) are owned by whoever made the message:
 *   - messages in a Ready point into the core and live until raft_advance();
 *   - raft_msg_clone() and raft_msg_decode() give a message that owns one allocation
 *     (m->mem) holding all of them; release it with raft_msg_free().
 * raft_step() never keeps pointers into the message it is given (it copies what it needs).
 * ------------------------------------------------------------------------------------------ */
enum {
    RAFT_MSG_PREVOTE = 1,        /* term = candidate's term + 1, index/log_term = its last */
    RAFT_MSG_PREVOTE_RESP = 2,   /* reject = 0 granted (term echoes the request's term) */
    RAFT_MSG_VOTE = 3,           /* index/log_term = candidate's last entry; flags TRANSFER */
    RAFT_MSG_VOTE_RESP = 4,
    RAFT_MSG_APPEND = 5,         /* index/log_term = entry before entries; commit; entries */
    RAFT_MSG_APPEND_RESP = 6,    /* ok: index = match index; reject: index = the rejected
                                    prev index, hint_index/hint_term = conflict hint (§5.3
                                    fast backtracking) */
    RAFT_MSG_HEARTBEAT = 7,      /* commit, ctx = read round */
    RAFT_MSG_HEARTBEAT_RESP = 8, /* ctx echoed; index = responder's last index */
    RAFT_MSG_SNAPSHOT = 9,       /* snap, offset, data/len = one chunk; flags LAST */
    RAFT_MSG_SNAPSHOT_RESP = 10, /* index = snap index; offset = next byte wanted;
                                    reject = 1: start over from offset; flags LAST =
                                    whole snapshot installed (index is now the match) */
    RAFT_MSG_TIMEOUT_NOW = 11,   /* leadership transfer: campaign now (thesis §3.10) */
    RAFT_MSG_READ_INDEX = 12,    /* follower -> leader: ctx = the follower's request id */
    RAFT_MSG_READ_INDEX_RESP = 13, /* index = read index; reject = 1: not leader / failed */
    RAFT_MSG__COUNT
};

enum {
    RAFT_MSGF_TRANSFER = 1,      /* VOTE sent because of TimeoutNow: ignore leader leases */
    RAFT_MSGF_LAST = 2,          /* SNAPSHOT: last chunk; SNAPSHOT_RESP: install done */
    RAFT_MSGF_STICKY = 4,        /* HEARTBEAT_RESP: the sender runs check-quorum (ignores
                                    votes while it hears from a leader), so its ack may back
                                    a read lease; acks without it never extend a lease */
};

typedef struct raft_msg {
    uint32_t type;           /* RAFT_MSG_* */
    uint32_t reject;         /* responses: nonzero = refused */
    uint32_t flags;          /* RAFT_MSGF_* */
    uint32_t n_entries;      /* APPEND */
    uint64_t from, to;       /* server ids */
    uint64_t term;
    uint64_t index;          /* meaning depends on type, see RAFT_MSG_* */
    uint64_t log_term;
    uint64_t commit;
    uint64_t hint_index, hint_term;
    uint64_t ctx;            /* HEARTBEAT*: read round; READ_INDEX*: request id */
    const raft_entry_t *entries; /* APPEND: n_entries entries, consecutive indexes */
    raft_snap_meta_t snap;   /* SNAPSHOT: the snapshot being sent */
    uint64_t offset;         /* SNAPSHOT: byte offset of data; SNAPSHOT_RESP: next wanted */
    uint32_t len;            /* SNAPSHOT: chunk bytes */
    const uint8_t *data;     /* SNAPSHOT: chunk */
    void *mem;               /* the allocation this message owns, NULL if borrowed */
} raft_msg_t;

/* Deep-copies src into *dst (payloads and chunk included, in one allocation owned by dst).
 * Returns 0 or -QERR_NOMEM (then *dst is zeroed). */
int raft_msg_clone(raft_msg_t *dst, const raft_msg_t *src);
/* Frees what m owns (m->mem) and zeroes *m. A borrowed message (mem == NULL) is just zeroed.
 * NULL is a no-op. Does not free m itself. */
void raft_msg_free(raft_msg_t *m);

/* Wire format (docs/RAFT.md "Wire format", version RAFT_WIRE_VERSION, little endian).
 * raft_msg_encoded_size gives the exact number of bytes raft_msg_encode writes.
 * raft_msg_encode writes into buf (cap bytes); returns 0 and *len, or -QERR_TOOBIG if cap is
 * too small, -QERR_INVAL if m is malformed (unknown type, n_entries with NULL entries...). */
size_t raft_msg_encoded_size(const raft_msg_t *m);
int raft_msg_encode(const raft_msg_t *m, uint8_t *buf, size_t cap, size_t *len);
/* Decodes exactly len bytes into *m, which then owns its memory (raft_msg_free). Any input is
 * safe: returns -QERR_FORMAT for another version byte, -QERR_CORRUPT for truncated, oversized
 * or inconsistent input, -QERR_NOMEM; on error *m is zeroed and nothing is leaked. */
int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg_t *m);

/* Configuration payloads (RAFT_ENTRY_CONF entries). encode writes at most
 * RAFT_CONF_MAX_BYTES and returns the length; decode returns 0 or -QERR_CORRUPT. */
#define RAFT_CONF_MAX_BYTES (4 + RAFT_MAX_SERVERS * 9)
size_t raft_conf_encode(const raft_conf_t *c, uint8_t *buf);
int raft_conf_decode(const uint8_t *buf, size_t len, raft_conf_t *c);
/* Sorts by id; returns -QERR_INVAL for a zero id, a duplicate or an unknown role. */
int raft_conf_normalize(raft_conf_t *c);
/* Role of id in c, or 0 if absent. */
uint32_t raft_conf_role(const raft_conf_t *c, uint64_t id);

/* ------------------------------------------------------------------------------------------
 * Configuration and start-up.
 * ------------------------------------------------------------------------------------------ */

/* Reads part of the local snapshot being sent to a follower (the caller's storage).
 * index names the snapshot (raft_snap_meta_t.index of the current snapshot). Copies up to
 * cap bytes from byte offset off into buf and sets *got; *got < cap means end of snapshot.
 * Returns 0 or -QERR_* (the core then retries later). Called only from raft_tick/raft_step. */
typedef int (*raft_snap_read_fn)(void *ctx, uint64_t index, uint64_t off, void *buf,
                                 size_t cap, size_t *got);

typedef struct raft_config {
    uint64_t id;                  /* this server, nonzero */
    uint32_t election_tick;       /* election timeout, in ticks; randomized per reset in
                                     [election_tick, 2*election_tick); 0 = 10 */
    uint32_t heartbeat_tick;      /* leader heartbeat interval; < election_tick; 0 = 1 */
    uint64_t seed;                /* seeds the core's own PRNG (used when rand is NULL) */
    uint64_t (*rand)(void *ctx);  /* optional randomness source; rand_ctx is its argument */
    void *rand_ctx;
    uint32_t max_msg_bytes;       /* cap on entry bytes per APPEND (at least one entry is
                                     always sent); 0 = 1 MiB */
    uint32_t max_inflight;        /* cap on unacknowledged APPENDs per follower; 0 = 256 */
    uint64_t max_uncommitted_bytes; /* leader refuses proposals past this (-QERR_BUSY);
                                     0 = 64 MiB. A proposal is accepted when nothing is
                                     uncommitted, whatever its size. */
    uint32_t snap_chunk_bytes;    /* bytes per SNAPSHOT message; 0 = 1 MiB */
    uint64_t snap_trailing;       /* entries kept in the log behind a snapshot, so slightly
                                     lagging followers need no snapshot; default 0 */
    uint64_t promote_lag;         /* a STAGING learner is promoted once its match index is
                                     within this many entries of the leader's last; 0 = 64 */
    bool pre_vote;                /* §9.6 pre-vote */
    bool check_quorum;            /* leader steps down without a majority for an election
                                     timeout; followers with a live leader ignore votes */
    bool lease_reads;             /* leader answers reads from a lease (thesis §6.4.1);
                                     requires check_quorum and max_clock_drift_ticks */
    uint32_t max_clock_drift_ticks; /* bound on clock drift over an election timeout; the
                                     lease lasts election_tick - this after a round starts.
                                     Must be >= 1 and < election_tick when lease_reads. */
    raft_snap_read_fn snap_read;  /* needed to send snapshots; NULL: followers behind the
                                     log's first index cannot be caught up */
    void *snap_ctx;
} raft_config_t;

/* What the caller persisted, handed back at start-up. A brand-new group boots with
 * snap.index = 0, snap.term = 0 and snap.conf = the initial voters (same on every founding
 * server). A server that will be added later boots with an empty conf and waits. */
typedef struct raft_boot {
    raft_hard_state_t hs;
    raft_snap_meta_t snap;        /* the newest durable snapshot (index 0: none) */
    const raft_entry_t *entries;  /* persisted entries, consecutive; they must cover
                                     snap.index+1 .. last and may start earlier (trailing).
                                     Copied; the caller keeps ownership. */
    size_t n_entries;
    uint64_t applied;             /* last index the state machine holds; 0 = snap.index.
                                     Committed entries after it are re-emitted. */
} raft_boot_t;

/* Creates a server. cfg and boot are copied. Returns 0 and *out, or -QERR_INVAL (bad config
 * or inconsistent boot state), -QERR_NOMEM. Free with raft_free. */
int raft_new(const raft_config_t *cfg, const raft_boot_t *boot, raft_t **out);
/* Frees r and everything it owns, including any Ready not yet advanced. NULL is a no-op. */
void raft_free(raft_t *r);

/* ------------------------------------------------------------------------------------------
 * Inputs.
 * ------------------------------------------------------------------------------------------ */

/* Advances logical time by one tick (election / heartbeat / check-quorum / transfer timers).
 *
 * Leases count ticks, so with lease_reads the caller must tick from a monotonic clock and
 * deliver every owed tick: after a pause (a stopped process, a long GC-like stall, a slow
 * disk write in the loop) it calls raft_tick once per elapsed tick period BEFORE stepping
 * any message or serving any read, never merging several periods into one tick. A leader
 * that skips ticks outlives its lease in real time and can serve a stale read. Every
 * voter must also use the same election_tick and tick period (the lease assumes the
 * followers' timers run at least as long as the leader's), within max_clock_drift_ticks.
 * Followers that run without check_quorum are detected (their heartbeat answers lack
 * RAFT_MSGF_STICKY) and never back a lease. */
void raft_tick(raft_t *r);

/* Processes one message addressed to this server (m->to must equal cfg.id). Stale,
 * duplicated and reordered messages are handled. Returns 0, or -QERR_INVAL for a message
 * not for this server or malformed, -QERR_NOMEM. The message stays the caller's. */
int raft_step(raft_t *r, const raft_msg_t *m);

/* Result of a proposal. */
typedef struct raft_prop_info {
    uint64_t index;          /* index given to the (first) entry */
    uint64_t term;           /* its term: if the entry applied at index has another term,
                                the proposal was lost */
    uint64_t leader;         /* on -QERR_NOTLEADER: the known leader's id, 0 if none */
} raft_prop_info_t;

typedef struct raft_iov {
    const void *data;
    size_t len;
} raft_iov_t;

/* Appends commands (copied) to the leader's log, all or nothing, at consecutive indexes.
 * info may be NULL. Returns 0, or
 *   -QERR_NOTLEADER (info->leader names the leader if known),
 *   -QERR_TRANSFER  (a leadership transfer is in progress),
 *   -QERR_BUSY      (max_uncommitted_bytes would be exceeded),
 *   -QERR_TOOBIG    (an entry over 4 GiB or n == 0 too large), -QERR_INVAL, -QERR_NOMEM. */
int raft_propose(raft_t *r, const void *data, size_t len, raft_prop_info_t *info);
int raft_propose_batch(raft_t *r, const raft_iov_t *cmds, size_t n, raft_prop_info_t *info);

/* Membership changes, one server at a time (thesis §4.1; no joint consensus). A new
 * configuration takes effect as soon as it is appended to the log (thesis §4.1). */
enum {
    RAFT_CONF_ADD_LEARNER = 1,   /* add id as a non-voting learner (stays a learner) */
    RAFT_CONF_ADD_VOTER = 2,     /* add id as STAGING: a learner promoted to voter by the
                                    leader once caught up (within promote_lag entries) */
    RAFT_CONF_PROMOTE = 3,       /* turn an existing LEARNER into STAGING (same catch-up) */
    RAFT_CONF_REMOVE = 4,        /* remove id (may be the leader itself: it keeps leading
                                    until the entry commits, then steps down) */
};
/* Proposes one membership change. Returns 0 (info as for raft_propose), or -QERR_NOTLEADER,
 * -QERR_TRANSFER, -QERR_CONFCHANGE (a configuration entry is not yet committed, or the
 * leader has not yet committed an entry of its term), -QERR_EXISTS (id already in that
 * role), -QERR_NOTFOUND (id absent for PROMOTE/REMOVE), -QERR_TOOBIG (RAFT_MAX_SERVERS),
 * -QERR_INVAL (id 0, unknown op, removing the last voter). */
int raft_propose_conf(raft_t *r, uint32_t op, uint64_t id, raft_prop_info_t *info);

/* Starts a linearizable read (thesis §6.4 ReadIndex). id is chosen by the caller and comes
 * back in a raft_read_state_t of a later Ready: once the state machine has applied up to
 * its index, reading it is linearizable. The leader first needs an entry of its term
 * committed, then confirms it still leads with a heartbeat round (or, with lease_reads,
 * answers from a valid lease). A follower forwards the read to the leader; a read whose
 * forward or answer is lost never completes: the caller times out and retries.
 * Returns 0, or -QERR_NOTLEADER (no leader known; *leader_hint = 0), -QERR_NOMEM.
 * leader_hint may be NULL. A read pending on a leader that loses leadership completes with
 * err = -QERR_NOTLEADER. */
int raft_read_index(raft_t *r, uint64_t id, uint64_t *leader_hint);

/* Leadership transfer (thesis §3.10) to target, a voter. The leader stops accepting
 * proposals, brings target up to date, then sends it TimeoutNow; a lagging target is waited
 * for. Aborted after an election timeout without success. Returns 0, or -QERR_NOTLEADER,
 * -QERR_INVAL (target is self, absent or not a voter), -QERR_TRANSFER (another transfer is
 * running). Transferring to the current target again is a no-op returning 0. */
int raft_transfer(raft_t *r, uint64_t target);

/* Tells the core the caller has durably saved a snapshot of the state machine through index
 * (index <= applied index). The core records its metadata and drops log entries up to
 * index - snap_trailing. *first_index (may be NULL) gets the new first log index: the caller
 * may delete persisted entries before it. Returns 0, or -QERR_COMPACTED (index <= current
 * snapshot index), -QERR_UNAVAILABLE (index > applied). */
int raft_compact(raft_t *r, uint64_t index, uint64_t *first_index);

/* ------------------------------------------------------------------------------------------
 * Outputs.
 * ------------------------------------------------------------------------------------------ */

/* A finished read: safe to serve once applied >= index. err is 0, or -QERR_NOTLEADER (the
 * leader lost leadership, or the forward reached a server that is not the leader). */
typedef struct raft_read_state {
    uint64_t id;
    uint64_t index;
    int err;
} raft_read_state_t;

/* A piece of a snapshot received from the leader, to store before acknowledging. offset 0
 * starts a new snapshot (discard any partial one); chunks arrive in order. */
typedef struct raft_snap_chunk {
    raft_snap_meta_t meta;
    uint64_t offset;
    uint32_t len;
    const uint8_t *data;
    bool last;                    /* the snapshot is complete after this chunk */
} raft_snap_chunk_t;

typedef struct raft_ready {
    /* soft state (not persisted) */
    uint64_t leader;              /* known leader, 0 if none */
    uint32_t role;                /* RAFT_FOLLOWER ... RAFT_LEADER */
    /* (b) persist */
    bool hs_changed;
    raft_hard_state_t hs;         /* the hard state to persist when hs_changed */
    const raft_snap_chunk_t *snap_chunk;   /* NULL or a chunk to store */
    const raft_snap_meta_t *snapshot;      /* NULL or: the received snapshot is complete;
                                              make it current, drop all persisted entries
                                              it covers, restore the state machine */
    const raft_entry_t *entries;  /* entries to persist (see the contract above) */
    size_t n_entries;
    /* (a) / (c) send */
    const raft_msg_t *msgs;       /* may be sent before persisting */
    size_t n_msgs;
    const raft_msg_t *msgs_after_persist; /* send only after (b) is durable */
    size_t n_msgs_after_persist;
    /* (d) apply */
    const raft_entry_t *committed; /* apply in order */
    size_t n_committed;
    const raft_read_state_t *reads;
    size_t n_reads;
} raft_ready_t;

/* Nonzero if raft_ready would return anything. */
bool raft_has_ready(const raft_t *r);
/* Fills *rd with everything pending (see the contract at the top). Calling it twice without
 * raft_advance returns the same Ready again. */
void raft_ready(raft_t *r, raft_ready_t *rd);
/* Acknowledges the Ready last returned: all of it is durable and applied. rd must be the
 * struct filled by the last raft_ready. */
void raft_advance(raft_t *r, const raft_ready_t *rd);

/* ------------------------------------------------------------------------------------------
 * Getters (never change state; safe between raft_ready and raft_advance).
 * ------------------------------------------------------------------------------------------ */

typedef struct raft_status {
    uint64_t id;
    uint32_t role;
    uint64_t term, vote, leader;
    uint64_t commit;              /* commit index */
    uint64_t applied;             /* last index handed out for applying and advanced */
    uint64_t first_index;         /* first entry in the in-memory log (last_index+1 if none) */
    uint64_t last_index;
    uint64_t persisted_index;     /* last index the caller has acknowledged durable */
    uint64_t snap_index, snap_term;
    uint64_t uncommitted_bytes;   /* leader: bytes counted against max_uncommitted_bytes */
    uint64_t transfer_target;     /* leader: 0 or the transfer target */
    bool lease_valid;             /* leader: a read lease is currently valid */
    uint64_t lease_read_ticks;    /* leader: for how many more ticks (counting the current
                                     one: until the core's clock has advanced this many
                                     ticks) raft_read_index would answer at once with the
                                     commit index, from its lease: the lease holds and an
                                     entry of this term is committed. 0 otherwise. A caller
                                     may answer reads itself at the commit index until then
                                     (mraft's leader fast path), provided nothing that
                                     voids the lease (a TimeoutNow) goes out before it stops */
} raft_status_t;

void raft_status(const raft_t *r, raft_status_t *st);
/* The latest configuration in the log (the one in force). Valid until the next mutation. */
const raft_conf_t *raft_conf(const raft_t *r);
/* The current snapshot's metadata (index 0: none yet). After raft_compact, this is what the
 * caller persists next to the snapshot data; raft_boot_t.snap takes it back at start-up. */
void raft_snapshot_meta(const raft_t *r, raft_snap_meta_t *meta);
/* Copies the entry at index (its data borrowed: valid until the next mutating call).
 * Returns 0, -QERR_COMPACTED or -QERR_UNAVAILABLE. */
int raft_log_entry(const raft_t *r, uint64_t index, raft_entry_t *e);
/* Term of the entry at index (the snapshot's term at its index; 0 at index 0).
 * Returns 0, -QERR_COMPACTED or -QERR_UNAVAILABLE. */
int raft_log_term(const raft_t *r, uint64_t index, uint64_t *term);

/* Per-follower replication state, leader only. */
enum { RAFT_PR_PROBE = 1, RAFT_PR_REPLICATE = 2, RAFT_PR_SNAPSHOT = 3 };
typedef struct raft_progress {
    uint64_t match, next;
    uint32_t state;               /* RAFT_PR_* */
    uint32_t inflight;            /* unacknowledged APPENDs */
    bool recent_active;
} raft_progress_t;
/* Returns 0, or -QERR_NOTLEADER, -QERR_NOTFOUND (peer not in the configuration). */
int raft_progress(const raft_t *r, uint64_t peer, raft_progress_t *p);

/* Known bugs for proving the checks bite (tests/sim): building raft.c with -DRAFT_BUG=n
 * turns on bug n. 1: commit entries of earlier terms by counting replicas (breaks §5.4.2).
 * 2: put vote grants and append acknowledgements in msgs instead of msgs_after_persist
 * (acknowledges before persisting). 3: grant a vote twice in one term. */

#endif
