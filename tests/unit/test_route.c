/* tests/unit/test_route.c — placement (cluster/placement.h) and routing (fs/route.h): a unit
 * lives whole on one shard, keys spread evenly, adding a shard moves few keys, the answer is
 * stable (it is part of the on-disk layout of a cluster), and search documents spread by name. */
#include <stdio.h>
#include <string.h>
#include "cluster/placement.h"
#include "fs/ns_ids.h"
#include "fs/route.h"
#include "tests/unit/check.h"

TEST(unit_lives_whole_on_one_shard)
{
    char key[64];
    CHECK_EQ(route_key(NS_CONFIG, "app/prod/db_url", key, sizeof(key)), 10);
    CHECK(strcmp(key, "config/app") == 0);
    CHECK_EQ(route_key(NS_QUEUES, "orders/claimed/5", key, sizeof(key)), 13);
    CHECK_EQ(route_key(NS_CACHE, "", key, sizeof(key)), -1);   /* a root spans all shards */
    CHECK_EQ(route_key(NS_SEARCH, "docs", key, sizeof(key)), -1);
    CHECK_EQ(route_key(NS_SEARCH, "docs/readme", key, sizeof(key)), 18);
    CHECK_EQ(route_key(NS_CONFIG, "app/x", key, 5), -1);        /* does not fit */
    /* a top-level config file's history (a@41) is the unit of the file */
    CHECK_EQ(route_key(NS_CONFIG, "a@41", key, sizeof(key)), 8);
    CHECK(strcmp(key, "config/a") == 0);
    CHECK_EQ(route_key(NS_CONFIG, "a@x", key, sizeof(key)), 10);  /* not a revision */
    CHECK_EQ(route_key(NS_CACHE, "a@41", key, sizeof(key)), 10);   /* config/ only */
    for (uint32_t s = 1; s <= 32; s++) {
        CHECK_EQ(route_shard(NS_CONFIG, "app/prod/db_url", s), route_shard(NS_CONFIG, "app", s));
        CHECK(route_same_shard(NS_CACHE, "sessions/a", "sessions/b/c", s));
        CHECK(route_shard(NS_CACHE, "k", s) < s);
    }
    /* the same name in two namespaces is two units */
    int differ = 0;
    for (int i = 0; i < 64; i++) {
        char n[16];
        snprintf(n, sizeof(n), "u%d", i);
        differ += route_shard(NS_CACHE, n, 16) != route_shard(NS_CONFIG, n, 16);
    }
    CHECK(differ > 32);
}

TEST(keys_spread_evenly_and_few_move)
{
    enum { KEYS = 20000, S = 16 };
    uint32_t count[S + 1] = { 0 };
    uint32_t moved = 0;
    for (int i = 0; i < KEYS; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "cache/key-%d", i);
        uint32_t a = shard_for_key(k, (size_t)n, S), b = shard_for_key(k, (size_t)n, S + 1);
        count[a]++;
        if (a != b) {
            moved++;
            CHECK_EQ(b, S);   /* a key only ever moves to the new shard */
        }
    }
    for (int s = 0; s < S; s++)   /* within 10% of the mean of 1250 */
        CHECK(count[s] > KEYS / S * 9 / 10 && count[s] < KEYS / S * 11 / 10);
    /* about 1/17 of the keys move (1176); allow 20% */
    CHECK(moved > KEYS / (S + 1) * 8 / 10 && moved < KEYS / (S + 1) * 12 / 10);
}

TEST(replicas_spread_and_move_little)
{
    const uint64_t ids5[] = { 1, 2, 3, 4, 5 }, rev5[] = { 5, 4, 3, 2, 1 }, ids4[] = { 1, 2, 3, 4 };
    uint32_t lead[6] = { 0 }, held[6] = { 0 };
    int moved = 0;
    for (uint32_t s = 0; s < 400; s++) {
        uint64_t a[3], b[3], c[3];
        replicas_for_shard(s, ids5, 5, 3, a);
        replicas_for_shard(s, rev5, 5, 3, b);
        CHECK(memcmp(a, b, sizeof(a)) == 0);                 /* order of ids[] is irrelevant */
        CHECK(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
        lead[a[0]]++;
        for (int k = 0; k < 3; k++)
            held[a[k]]++;
        /* node 5 leaves: a shard it did not hold keeps its replicas */
        replicas_for_shard(s, ids4, 4, 3, c);
        if (a[0] != 5 && a[1] != 5 && a[2] != 5)
            moved += memcmp(a, c, sizeof(a)) != 0;
    }
    CHECK_EQ(moved, 0);
    for (int id = 1; id <= 5; id++) {
        CHECK(lead[id] > 400 / 5 * 6 / 10 && lead[id] < 400 / 5 * 14 / 10);
        CHECK(held[id] > 1200 / 5 * 8 / 10 && held[id] < 1200 / 5 * 12 / 10);
    }
    /* stable: the layout of existing clusters depends on it */
    uint64_t r[3];
    replicas_for_shard(0, ids5, 5, 3, r);
    uint64_t r1[3];
    replicas_for_shard(1, ids5, 5, 3, r1);
    printf("# pinned replicas: shard 0 %llu %llu %llu, shard 1 %llu %llu %llu\n",
           (unsigned long long)r[0], (unsigned long long)r[1], (unsigned long long)r[2],
           (unsigned long long)r1[0], (unsigned long long)r1[1], (unsigned long long)r1[2]);
    CHECK(r[0] == 1 && r[1] == 4 && r[2] == 3 && r1[0] == 2 && r1[1] == 3 && r1[2] == 4);
}

TEST(answers_are_stable)
{
    /* Pinned values: a change here moves every cluster's data. */
    CHECK_EQ(shard_for_key("config/app", 10, 16), shard_for_key("config/app", 10, 16));
    CHECK_EQ(shard_for_key("", 0, 1), 0);
    uint32_t pinned[4];
    pinned[0] = shard_for_key("cache/a", 7, 16);
    pinned[1] = shard_for_key("queues/orders", 13, 16);
    pinned[2] = shard_for_key("locks/deploy", 12, 16);
    pinned[3] = shard_for_key("config/app", 10, 16);
    printf("# pinned: %u %u %u %u\n", pinned[0], pinned[1], pinned[2], pinned[3]);
    CHECK(pinned[0] == 7 && pinned[1] == 3 && pinned[2] == 9 && pinned[3] == 14);
}

int main(void)
{
    RUN(unit_lives_whole_on_one_shard);
    RUN(keys_spread_evenly_and_few_move);
    RUN(answers_are_stable);
    RUN(replicas_spread_and_move_little);
    return CHECK_DONE();
}
