/* tests/unit/test_layout.c — cluster/layout.h: every shard gets R distinct voters among the
 * members, each member holds floor or ceil of S*R/n of them and leads floor or ceil of S/n
 * shards (for every n <= 16, R <= 5, and a spread of shard counts), the answer does not
 * depend on the members' order, membership changes move few replicas, bad arguments are
 * refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "cluster/layout.h"
#include "tests/unit/check.h"

/* Checks the balance contract of one layout; returns 0 or the line of the broken rule. */
static int balanced(uint32_t S, uint32_t r, const uint64_t *ids, size_t n, const uint64_t *out)
{
    uint32_t count[LAYOUT_MAX_MEMBERS] = { 0 }, lead[LAYOUT_MAX_MEMBERS] = { 0 };
    for (uint32_t k = 0; k < S; k++)
        for (uint32_t j = 0; j < r; j++) {
            const uint64_t v = out[(size_t)k * r + j];
            size_t i = 0;
            while (i < n && ids[i] != v)
                i++;
            if (i == n)
                return __LINE__;               /* not a member */
            for (uint32_t j2 = 0; j2 < j; j2++)
                if (out[(size_t)k * r + j2] == v)
                    return __LINE__;           /* twice in one shard */
            count[i]++;
            lead[i] += j == 0;
        }
    const size_t total = (size_t)S * r;
    for (size_t i = 0; i < n; i++) {
        if (count[i] < total / n || count[i] > (total + n - 1) / n)
            return __LINE__;
        if (lead[i] < S / n || lead[i] > (S + n - 1) / n)
            return __LINE__;
    }
    return 0;
}

TEST(every_size_is_balanced)
{
    static const uint32_t shard_counts[] = { 1, 2, 3, 5, 7, 16, 17, 31, 64, 100, 256 };
    static uint64_t out[256 * 5];
    uint64_t ids[LAYOUT_MAX_MEMBERS];
    int cases = 0;
    for (size_t n = 1; n <= LAYOUT_MAX_MEMBERS; n++)
        for (uint32_t r = 1; r <= 5 && r <= n; r++)
            for (size_t s = 0; s < sizeof(shard_counts) / sizeof(shard_counts[0]); s++)
                for (uint64_t base = 1; base <= 40; base += 13) {   /* a few id sets */
                    for (size_t i = 0; i < n; i++)
                        ids[i] = base + i * (base % 3 + 1);
                    const uint32_t S = shard_counts[s];
                    CHECK_EQ(layout_plan(S, r, ids, n, out), 0);
                    int bad = balanced(S, r, ids, n, out);
                    if (bad)
                        printf("# n=%zu r=%u S=%u base=%llu: rule at line %d\n", n, r, S,
                               (unsigned long long)base, bad);
                    CHECK_EQ(bad, 0);
                    cases++;
                }
    printf("# %d layouts checked\n", cases);
}

TEST(order_of_members_does_not_matter)
{
    uint64_t a[5] = { 3, 1, 5, 2, 4 }, b[5] = { 5, 4, 3, 2, 1 };
    uint64_t oa[16 * 3], ob[16 * 3];
    CHECK_EQ(layout_plan(16, 3, a, 5, oa), 0);
    CHECK_EQ(layout_plan(16, 3, b, 5, ob), 0);
    CHECK(memcmp(oa, ob, sizeof(oa)) == 0);
}

/* Replicas (shard, member) in one layout and not the other. */
static int moved(uint32_t S, uint32_t r, const uint64_t *x, const uint64_t *y)
{
    int m = 0;
    for (uint32_t k = 0; k < S; k++)
        for (uint32_t i = 0; i < r; i++) {
            int found = 0;
            for (uint32_t j = 0; j < r; j++)
                found |= x[k * r + i] == y[k * r + j];
            m += !found;
        }
    return m;
}

TEST(membership_changes_move_few_replicas)
{
    uint64_t three[3] = { 1, 2, 3 }, five[5] = { 1, 2, 3, 4, 5 }, four[4] = { 1, 2, 3, 5 };
    uint64_t o3[16 * 3], o5[16 * 3], o4[16 * 3];
    CHECK_EQ(layout_plan(16, 3, three, 3, o3), 0);
    CHECK_EQ(layout_plan(16, 3, five, 5, o5), 0);
    CHECK_EQ(layout_plan(16, 3, four, 4, o4), 0);
    /* 3 -> 5: the two new members must get 19 or 20 of the 48 replicas; 5 -> 4: node 4's
     * 9 or 10 must move. Allow a little over the minimum for the balance. */
    int m35 = moved(16, 3, o3, o5), m54 = moved(16, 3, o5, o4);
    printf("# replicas moved: 3->5 members %d, 5->4 members %d\n", m35, m54);
    CHECK(m35 >= 19 && m35 <= 24);
    CHECK(m54 >= 9 && m54 <= 16);
    /* with every member a voter of every shard (3 members, R = 3), only leaders differ */
    for (uint32_t k = 0; k < 16; k++)
        CHECK(o3[k * 3] >= 1 && o3[k * 3] <= 3);
}

TEST(bad_arguments_are_refused)
{
    uint64_t ids[17], out[17 * 17];
    for (int i = 0; i < 17; i++)
        ids[i] = (uint64_t)i + 1;
    out[0] = 77;
    CHECK_EQ(layout_plan(0, 1, ids, 3, out), -1);     /* no shard */
    CHECK_EQ(layout_plan(4, 0, ids, 3, out), -1);     /* no replica */
    CHECK_EQ(layout_plan(4, 4, ids, 3, out), -1);     /* more replicas than members */
    CHECK_EQ(layout_plan(4, 3, ids, 17, out), -1);    /* over 16 members */
    CHECK_EQ(layout_plan(4, 3, NULL, 3, out), -1);
    uint64_t dup[3] = { 1, 2, 1 }, zero[3] = { 1, 0, 2 };
    CHECK_EQ(layout_plan(4, 2, dup, 3, out), -1);
    CHECK_EQ(layout_plan(4, 2, zero, 3, out), -1);
    CHECK_EQ(out[0], 77);                              /* untouched */
}

int main(void)
{
    RUN(every_size_is_balanced);
    RUN(order_of_members_does_not_matter);
    RUN(membership_changes_move_few_replicas);
    RUN(bad_arguments_are_refused);
    return CHECK_DONE();
}
