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
    return CHECK_DONE();
}
