/* tests/sim/kv.h — the simulator's replicated state machine: a tiny key-value store with
 * put and compare-and-set (reads are served locally after a ReadIndex). Commands carry a
 * (client, seq) pair; the store applies each client's commands at most once, so a
 * duplicated or retried request cannot write twice. It keeps a running hash of everything
 * applied so replicas and snapshots can be compared index by index. */
#ifndef QFS_SIM_KV_H
#define QFS_SIM_KV_H

#include <stddef.h>
#include <stdint.h>

#define KV_KEYS 8
#define KV_CLIENTS 16
#define KV_CMD_LEN 31
#define KV_SNAP_LEN (4 + 8 * KV_KEYS + 5 * KV_CLIENTS + 16)

enum { KV_PUT = 1, KV_CAS = 2 };

typedef struct kv_cmd {
    uint8_t op;       /* KV_PUT or KV_CAS */
    uint32_t client;  /* < KV_CLIENTS */
    uint32_t seq;     /* the client's op number, from 1, increasing */
    uint32_t key;     /* < KV_KEYS */
    uint64_t expect;  /* KV_CAS: required current value (0 = absent) */
    uint64_t value;   /* new value, nonzero */
} kv_cmd_t;

typedef struct kv {
    uint64_t val[KV_KEYS];            /* 0 = absent */
    uint32_t last_seq[KV_CLIENTS];    /* highest seq applied per client */
    uint8_t last_ok[KV_CLIENTS];      /* its outcome (CAS swapped; 1 for put) */
    uint64_t applied;                 /* index of the last entry applied */
    uint64_t hash;                    /* chained hash of (index, bytes) of all entries */
} kv_t;

/* Encodes c into buf[KV_CMD_LEN]. */
void kv_encode(const kv_cmd_t *c, uint8_t *buf);
/* Decodes; returns 0, or -1 if buf is not a well-formed command. */
int kv_decode(const uint8_t *buf, size_t len, kv_cmd_t *c);

/* Applies the entry at index (must be kv->applied + 1). data/len is the entry's payload;
 * a payload that is not a command (a no-op or configuration entry) only advances the
 * index and the hash. For a command, *client, *seq and *ok (any may be NULL) say whose it was
 * and its outcome (1 put done or CAS swapped; 0 CAS failed or a duplicate whose first
 * outcome was a failure); *client is set to -1 for a non-command. Returns 0, or -1 on an
 * index gap (the store is left unchanged). */
int kv_apply(kv_t *kv, uint64_t index, const void *data, size_t len, int *client,
             uint32_t *seq, int *ok);

/* Hash of one entry payload, for comparing entries across nodes. */
uint64_t kv_entry_hash(uint64_t term, const void *data, size_t len);

/* Serialises the whole store into buf[KV_SNAP_LEN]. */
void kv_snapshot(const kv_t *kv, uint8_t *buf);
/* Replaces the store with a snapshot. Returns 0, or -1 if len is wrong (store unchanged). */
int kv_restore(kv_t *kv, const void *buf, size_t len);

#endif
