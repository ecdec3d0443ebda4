/* tests/sim/net.h — the simulated network: messages in flight between numbered endpoints,
 * each delivered at a virtual time drawn from the run's PRNG. Faults: random drops,
 * duplicates, delays (and so reordering), and per-direction link cuts that make
 * symmetric or asymmetric partitions. Payloads are opaque: the net owns each one from
 * net_send until net_pop hands it out, and uses the caller's clone/free callbacks. */
#ifndef QFS_SIM_NET_H
#define QFS_SIM_NET_H

#include <stddef.h>
#include <stdint.h>

#include "tests/sim/rng.h"

#define NET_MAX_ENDPOINTS 16

typedef struct net_faults {
    unsigned drop_permille;   /* chance that a message is lost */
    unsigned dup_permille;    /* chance that a message is delivered twice */
    uint64_t delay_min;       /* delivery delay range, virtual time units */
    uint64_t delay_max;
    unsigned slow_permille;   /* chance that a message takes up to slow_max instead */
    uint64_t slow_max;
} net_faults_t;

typedef struct net_msg {
    uint64_t at;      /* delivery time */
    uint64_t seq;     /* send order; breaks ties so runs are deterministic */
    int from, to;
    void *payload;
} net_msg_t;

typedef struct net {
    rng_t *rng;
    net_faults_t faults;
    unsigned char cut[NET_MAX_ENDPOINTS][NET_MAX_ENDPOINTS]; /* cut[a][b]: a->b lost */
    net_msg_t *heap;
    size_t len, cap;
    uint64_t seq;
    void *(*clone)(const void *payload);
    void (*free)(void *payload);
    uint64_t sent, dropped, duplicated;
} net_t;

/* Sets up an empty network drawing from rng (which must outlive it). clone copies a
 * payload (for duplicates) and may return NULL on no memory (the duplicate is skipped);
 * free releases one. */
void net_init(net_t *n, rng_t *rng, void *(*clone)(const void *), void (*free_fn)(void *));
/* Frees every message still in flight. */
void net_destroy(net_t *n);

/* Sends payload from -> to at time now; the net takes ownership (it frees it on a drop).
 * Returns 0, or -1 on no memory (payload freed). */
int net_send(net_t *n, int from, int to, void *payload, uint64_t now);
/* Sends over a link that loses nothing: delayed like any message, never dropped or
 * duplicated by the fault settings (a link cut at delivery time still drops it). The fs
 * clients use it: a FUSE call reaches its own mount's node. Returns as net_send. */
int net_send_reliable(net_t *n, int from, int to, void *payload, uint64_t now);
/* Time of the next delivery, or UINT64_MAX if nothing is in flight. */
uint64_t net_next_at(const net_t *n);
/* Pops the next message due at or before now into *m (caller then owns m->payload).
 * A message whose link is cut at delivery time is dropped silently. Returns 1 or 0. */
int net_pop(net_t *n, uint64_t now, net_msg_t *m);

/* Link control. */
void net_cut(net_t *n, int from, int to, int cut);
void net_heal(net_t *n);
/* Drops every message in flight to or from endpoint e (used when e crashes: its sockets die). */
void net_drop_endpoint(net_t *n, int e);

#endif
