/* tests/unit/test_logs_slots.c — fs/logs_slots.c, the slot (kernel inode) a lookup of a log
 * answers: slot 0 without writers, a write open of the current slot moving lookups to a free
 * one, every writer of one log on its own slot, sharing only once every slot has a writer,
 * the entry gone (slot 0 again) with the last writer, and bad slots refused. */
#include <errno.h>
#include <stdlib.h>

#include "fs/logs_slots.h"
#include "tests/unit/check.h"

TEST(test_rotation)
{
    lgsl_t *t = lgsl_new();
    CHECK(t != NULL);
    CHECK_EQ(lgsl_lookup(t, 5), 0);            /* no writer: slot 0 */
    CHECK_EQ(lgsl_count(t), 0);
    /* 16 writers opening one after another (lookup, then open): 16 slots */
    uint64_t seen = 0;
    unsigned got[16];
    for (int i = 0; i < 16; i++) {
        unsigned s = lgsl_lookup(t, 5);
        CHECK(s < LGSL_SLOTS);
        CHECK(!(seen >> s & 1));
        seen |= 1ull << s;
        got[i] = s;
        CHECK_EQ(lgsl_open_write(t, 5, s), 0);
    }
    CHECK_EQ(got[0], 0);
    CHECK_EQ(lgsl_count(t), 1);
    CHECK_EQ(lgsl_lookup(t, 6), 0);            /* another log: its own */
    unsigned cur = lgsl_lookup(t, 5);
    CHECK(!(seen >> cur & 1));                 /* readers land on a slot without a writer */
    /* a writer of a slot that is not the current one moves nothing */
    CHECK_EQ(lgsl_open_write(t, 5, got[3]), 0);
    CHECK_EQ(lgsl_lookup(t, 5), cur);
    lgsl_close_write(t, 5, got[3]);
    for (int i = 0; i < 16; i++)
        lgsl_close_write(t, 5, got[i]);
    CHECK_EQ(lgsl_count(t), 0);                /* the last writer gone: slot 0 again */
    CHECK_EQ(lgsl_lookup(t, 5), 0);
    lgsl_close_write(t, 5, 0);                 /* not counted: nothing */
    CHECK_EQ(lgsl_count(t), 0);
    lgsl_free(t);
}

TEST(test_all_slots_taken)
{
    lgsl_t *t = lgsl_new();
    CHECK(t != NULL);
    for (unsigned i = 0; i < LGSL_SLOTS; i++)
        CHECK_EQ(lgsl_open_write(t, 9, lgsl_lookup(t, 9)), 0);
    unsigned s = lgsl_lookup(t, 9);            /* every slot has a writer: shared */
    CHECK(s < LGSL_SLOTS);
    CHECK_EQ(lgsl_open_write(t, 9, s), 0);
    CHECK_EQ(lgsl_lookup(t, 9), s);
    lgsl_close_write(t, 9, 7);                 /* slot 7 free: the next rotation takes it */
    CHECK_EQ(lgsl_open_write(t, 9, s), 0);
    CHECK_EQ(lgsl_lookup(t, 9), 7);
    CHECK_EQ(lgsl_open_write(t, 9, LGSL_SLOTS), -EINVAL);
    lgsl_close_write(t, 9, LGSL_SLOTS);        /* ignored */
    lgsl_free(t);
}

/* `echo x >> log`: one writer opens slot 0 and closes before any lookup: slot 0 stays the
 * answer, so the kernel's name entry (slot 0) needs no switch. */
TEST(test_lone_writer)
{
    lgsl_t *t = lgsl_new();
    CHECK(t != NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(lgsl_lookup(t, 1), 0);
        CHECK_EQ(lgsl_open_write(t, 1, 0), 0);
        CHECK(lgsl_lookup(t, 1) != 0);         /* meanwhile: another slot */
        lgsl_close_write(t, 1, 0);
    }
    CHECK_EQ(lgsl_lookup(t, 1), 0);
    CHECK_EQ(lgsl_count(t), 0);
    lgsl_free(t);
}

int main(void)
{
    RUN(test_rotation);
    RUN(test_all_slots_taken);
    RUN(test_lone_writer);
    return CHECK_DONE();
}
