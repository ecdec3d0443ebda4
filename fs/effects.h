/* fs/effects.h — what apply decided that someone outside the state machine must hear
 * about. Apply never talks to FUSE: it appends typed effects (hand this message to that
 * waiter, grant this lock wait, config reached this revision) to the outbox of the state
 * it runs on. sm_apply (fs/state.c) detaches the outbox, releases the state lock, and only
 * then hands each effect to the state's delivery hook, which the node installed (fs/node.c
 * dispatches to the namespace fronts, fs/ns.h); unit tests install a recording hook.
 *
 * Effects are not replicated state: every replica emits the same ones, and each node's
 * front delivers only those addressed to its own session. */
#ifndef QFS_FS_EFFECTS_H
#define QFS_FS_EFFECTS_H

#include <stdint.h>

struct blob;

enum effect_kind {
    /* Queue waiter (sid, wid = handle id) gets message id (msg, count, claim), or learns that
     * its queue was removed (gone, msg NULL). */
    EFF_QUEUE_MSG = 1,
    /* Lock wait (sid, wid) was granted with fence (rc 0) or ended with rc (-ENOLCK: the
     * session ended; -EINTR: the owner unlocked while it waited). */
    EFF_LOCK_WAIT,
    /* config/ reached revision rev: `.events` readers may have something to read. */
    EFF_CONFIG_REV,
    /* Queue qid has ready messages after this command, or was removed: a reader that polls
     * it (poll(2) on pop or claim) may read without blocking now. To nobody (sid, wid 0). */
    EFF_QUEUE_READY,
    /* The shard was restored from a snapshot (a node far behind installed one): what a
     * parked request of namespace ns waits for may have happened in the entries the snapshot
     * replaced, whose effects this node never saw, so its front re-checks its parked
     * requests against the state. To nobody (sid, wid 0); emitted by the namespace's
     * restore, after any redeliveries (the `again` effects of queues/). */
    EFF_RESTORED,
};

typedef struct effect {
    struct effect *next;
    uint8_t kind;                /* enum effect_kind */
    uint8_t ns;                  /* namespace whose front delivers it */
    uint64_t sid, wid;           /* the waiter: its session and its id there (0: none) */
    uint32_t shard;              /* the shard whose apply emitted it: set by the node's
                                    delivery hook (sid is a session of that shard) */
    union {
        struct {
            uint64_t id;
            uint32_t count;
            uint8_t claim, gone;
            uint8_t ended;       /* with gone: the waiter's session ended (not the queue) */
            uint8_t again;       /* a redelivery after a restore (docs/QUEUES.md "Hand-overs
                                    kept"): for a read still waiting only, never given back */
            uint64_t seq;        /* the hand-over's number in its shard (kept hand-overs) */
            struct blob *msg;    /* a reference owned by the effect (NULL when gone) */
            char *qname;         /* owned */
        } qmsg;
        struct {
            uint64_t fence;
            int rc;
        } lock;
        struct {
            uint64_t rev;
        } config;
        struct {
            uint64_t qid;
        } qready;
    } u;
} effect_t;

/* A FIFO of effects. Zero-initialized is empty. */
typedef struct effects {
    effect_t *head, *tail;
    uint32_t n;
} effects_t;

/* Appends a zeroed effect of kind for namespace ns addressed to (sid, wid) and returns it so
 * the caller fills the payload. Out of memory aborts (apply is total). */
effect_t *effects_add(effects_t *fx, uint8_t kind, uint8_t ns, uint64_t sid, uint64_t wid);

/* Moves every effect of fx into the returned list, leaving fx empty. */
effects_t effects_take(effects_t *fx);

/* Frees one effect and what it owns (fields a hook took over are NULL). */
void effect_free(effect_t *e);

/* Frees every effect of fx and leaves it empty. */
void effects_clear(effects_t *fx);

#endif
