/* cluster/layout.c — balanced voter and leader placement (see layout.h).
 *
 * Replicas: each member gets a quota, floor or ceil of S*R/n (the members given the extra
 * one are the first in the rendezvous order of a fixed pseudo-shard, so it is not always the
 * lowest ids). Shards, in order, take the first members of their own rendezvous order that
 * are under quota; a shard that finds fewer than R such members takes the next ones in its
 * order anyway. Then, while a member is over quota, one of its shards that an under-quota
 * member is not in moves to that member (one always exists: the over member holds more
 * shards than the under one).
 * Leaders: each shard takes the first of its voters (rendezvous order) under a quota of
 * floor or ceil of S/n, as for replicas; then a member leading more than ceil(S/n) hands one
 * leadership on along a shortest chain (a shard it leads has a voter v, v leads a shard with
 * a voter w, ...) ending at a member leading fewer, and a member leading fewer than
 * floor(S/n) takes one along a chain starting at a member leading more. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/layout.h"
#include "cluster/placement.h"

#define EXTRA_REPLICA_KEY 0xFFFFFFFEu   /* pseudo-shards ranking who gets the quota's +1 */
#define EXTRA_LEADER_KEY 0xFFFFFFFDu
#define N LAYOUT_MAX_MEMBERS

/* quota[i] = base or base+1, the +1 to the first `total % n` members in key's order. */
static void quotas(uint32_t key, const uint64_t *id, size_t n, size_t total, uint32_t *quota)
{
    uint64_t order[N];
    replicas_for_shard(key, id, n, n, order);
    for (size_t i = 0; i < n; i++)
        quota[i] = (uint32_t)(total / n);
    for (size_t j = 0; j < total % n; j++)
        for (size_t i = 0; i < n; i++)
            if (id[i] == order[j])
                quota[i]++;
}

static size_t index_of(const uint64_t *id, size_t n, uint64_t x)
{
    size_t i = 0;
    while (i < n && id[i] != x)
        i++;
    return i;
}

/* Moves one leadership along a shortest chain of shards: "u leads shard k, v is a voter of
 * k, so k's leadership may pass from u to v". Down (up == false): from member m, which leads
 * too many, ending at a member leading fewer than hi. Up: to member m, which leads too few,
 * starting at a member leading more than lo. Returns false when no chain exists. */
static bool shift_leader(uint32_t S, size_t n, const bool (*in)[N], uint8_t *lead,
                         uint32_t *lcount, uint32_t lo, uint32_t hi, size_t m, bool up)
{
    int link[N], via[N];              /* BFS tree: the member one step nearer m, the shard */
    size_t queue[N], head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        link[i] = -1;
    link[m] = (int)m;
    queue[tail++] = m;
    while (head < tail) {
        size_t x = queue[head++];
        for (uint32_t k = 0; k < S; k++) {
            if (up ? !in[k][x] : lead[k] != x)
                continue;
            for (size_t y = 0; y < n; y++) {
                /* down: x leads k, y a voter of k; up: y leads k, x a voter of k */
                if ((up ? lead[k] != y : !in[k][y]) || link[y] >= 0)
                    continue;
                link[y] = (int)x;
                via[y] = (int)k;
                if (up ? lcount[y] > lo : lcount[y] < hi) {
                    lcount[y] += up ? -1u : 1u;
                    lcount[m] += up ? 1u : -1u;
                    /* each shard on the chain passes to the member on m's side (up) or
                     * away from it (down) */
                    for (size_t w = y; w != m; w = (size_t)link[w])
                        lead[via[w]] = (uint8_t)(up ? (size_t)link[w] : w);
                    return true;
                }
                queue[tail++] = y;
            }
        }
    }
    return false;
}

int layout_plan(uint32_t nshards, uint32_t r, const uint64_t *ids, size_t n, uint64_t *out)
{
    if (!nshards || !ids || !out || r < 1 || r > n || n > N)
        return -1;
    uint64_t id[N];
    for (size_t i = 0; i < n; i++) {           /* sorted: the result is order-independent */
        uint64_t x = ids[i];
        size_t j = i;
        if (!x)
            return -1;
        for (; j > 0 && id[j - 1] > x; j--)
            id[j] = id[j - 1];
        if (j > 0 && id[j - 1] == x)
            return -1;
        id[j] = x;
    }
    const uint32_t S = nshards;
    uint32_t quota[N], count[N] = { 0 }, lquota[N], lcount[N] = { 0 };
    quotas(EXTRA_REPLICA_KEY, id, n, (size_t)S * r, quota);
    quotas(EXTRA_LEADER_KEY, id, n, S, lquota);

    /* per shard: its members (in[k][i]) and its rendezvous order (as member indexes) */
    bool (*in)[N] = calloc(S, sizeof(*in));
    uint8_t (*pref)[N] = calloc(S, sizeof(*pref));
    uint8_t *lead = calloc(S, 1);
    if (!in || !pref || !lead) {
        free(in);
        free(pref);
        free(lead);
        return -1;
    }
    for (uint32_t k = 0; k < S; k++) {
        uint64_t order[N];
        replicas_for_shard(k, id, n, n, order);
        for (size_t j = 0; j < n; j++)
            pref[k][j] = (uint8_t)index_of(id, n, order[j]);
        uint32_t picked = 0;
        for (int pass = 0; pass < 2 && picked < r; pass++)
            for (size_t j = 0; j < n && picked < r; j++) {
                size_t i = pref[k][j];
                if (!in[k][i] && (pass || count[i] < quota[i])) {
                    in[k][i] = true;
                    count[i]++;
                    picked++;
                }
            }
    }
    for (;;) {                                 /* replicas: over-quota ones give to under ones */
        size_t a = 0, b = 0;
        while (a < n && count[a] <= quota[a])
            a++;
        while (b < n && count[b] >= quota[b])
            b++;
        if (a == n || b == n)
            break;                             /* (both or neither: the totals are equal) */
        uint32_t k = 0;
        while (k < S && !(in[k][a] && !in[k][b]))
            k++;
        if (k == S)
            break;                             /* impossible (see the file comment) */
        in[k][a] = false;
        in[k][b] = true;
        count[a]--;
        count[b]++;
    }
    for (uint32_t k = 0; k < S; k++) {         /* leaders: greedy, then chains */
        int pick = -1;
        for (size_t j = 0; j < n; j++) {
            size_t i = pref[k][j];
            if (in[k][i] && pick < 0)
                pick = (int)i;                 /* first voter, if all are at quota */
            if (in[k][i] && lcount[i] < lquota[i]) {
                pick = (int)i;
                break;
            }
        }
        lead[k] = (uint8_t)pick;
        lcount[pick]++;
    }
    const uint32_t lo = S / (uint32_t)n, hi = (S + (uint32_t)n - 1) / (uint32_t)n;
    const bool (*cin)[N] = (const bool (*)[N])in;
    for (size_t a = 0; a < n; a++)
        while (lcount[a] > hi && shift_leader(S, n, cin, lead, lcount, lo, hi, a, false))
            ;
    for (size_t b = 0; b < n; b++)
        while (lcount[b] < lo && shift_leader(S, n, cin, lead, lcount, lo, hi, b, true))
            ;
    for (uint32_t k = 0; k < S; k++) {
        uint64_t *o = out + (size_t)k * r;
        size_t m = 0;
        o[m++] = id[lead[k]];
        for (size_t j = 0; j < n; j++) {
            size_t i = pref[k][j];
            if (in[k][i] && i != lead[k])
                o[m++] = id[i];
        }
    }
    free(in);
    free(pref);
    free(lead);
    return 0;
}
