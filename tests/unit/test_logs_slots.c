/* tests/unit/test_logs_slots.c — fs/logs_slots.c, the slot (kernel inode) a lookup of a log
 * answers: slot 0 without writers, a write open of the current slot moving lookups to a free
 * one, every writer of one log on its own slot, sharing only once every slot has a writer,
 * the entry gone (slot 0 again) with the last writer, and bad slots refused; cached readers
 * kept off writers' slots and writers off theirs. */
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
    lgsl_close_write(t, 9, 7);                 /* slot 7 free: current at once */
    CHECK_EQ(lgsl_lookup(t, 9), 7);
    CHECK_EQ(lgsl_open_write(t, 9, s), 0);     /* a writer of a shared slot moves nothing */
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

/* Cached readers never share a slot with a writer (logs_slots.h): a reader opened first
 * moves lookups on, so writers after it land elsewhere; a read open of a writer's slot
 * reads direct; the entry stays while a reader is open (lookups do not fall back to the
 * reader's slot 0); readers hold at most LGSL_READER_SLOTS slots. */
TEST(test_readers_keep_writers_off)
{
    lgsl_t *t = lgsl_new();
    CHECK(t != NULL);
    CHECK_EQ(lgsl_lookup(t, 3), 0);
    CHECK_EQ(lgsl_open_read(t, 3, 0), 1);      /* `tail -f` first: cached on slot 0 */
    CHECK_EQ(lgsl_count(t), 1);
    uint64_t seen = 1;                         /* slot 0: the reader's */
    unsigned got[16];
    for (int i = 0; i < 16; i++) {             /* writers: each its own slot, never 0 */
        unsigned s = lgsl_lookup(t, 3);
        CHECK(!(seen >> s & 1));
        seen |= 1ull << s;
        got[i] = s;
        CHECK_EQ(lgsl_open_write(t, 3, s), 0);
    }
    CHECK_EQ(lgsl_open_read(t, 3, got[5]), 0); /* a writer's slot: direct, not counted */
    unsigned s = lgsl_lookup(t, 3);            /* a second reader: its own slot */
    CHECK(!(seen >> s & 1));
    CHECK_EQ(lgsl_open_read(t, 3, s), 1);
    CHECK(lgsl_lookup(t, 3) != s);
    lgsl_close_read(t, 3, s);
    for (int i = 0; i < 16; i++)
        lgsl_close_write(t, 3, got[i]);
    CHECK_EQ(lgsl_count(t), 1);                /* the reader keeps the entry */
    s = lgsl_lookup(t, 3);
    CHECK(s != 0);
    /* `echo x >> log` beside the reader, twice: the same slot, no switch of the name */
    CHECK_EQ(lgsl_open_write(t, 3, s), 0);
    CHECK(lgsl_lookup(t, 3) != 0 && lgsl_lookup(t, 3) != s);
    lgsl_close_write(t, 3, s);
    CHECK_EQ(lgsl_lookup(t, 3), s);
    lgsl_close_read(t, 3, 0);
    CHECK_EQ(lgsl_count(t), 0);                /* nothing open: slot 0 again */
    CHECK_EQ(lgsl_lookup(t, 3), 0);
    lgsl_close_read(t, 3, 0);                  /* not counted: nothing */
    CHECK_EQ(lgsl_open_read(t, 3, LGSL_SLOTS), 0);
    lgsl_free(t);
}

TEST(test_reader_slots_bounded)
{
    lgsl_t *t = lgsl_new();
    CHECK(t != NULL);
    uint64_t rd = 0;
    for (unsigned i = 0; i < LGSL_READER_SLOTS; i++) {
        unsigned s = lgsl_lookup(t, 4);
        CHECK(!(rd >> s & 1));
        CHECK_EQ(lgsl_open_read(t, 4, s), 1);
        rd |= 1ull << s;
    }
    unsigned s = lgsl_lookup(t, 4);
    CHECK(!(rd >> s & 1));
    CHECK_EQ(lgsl_open_read(t, 4, s), 0);      /* one slot more: direct */
    CHECK_EQ(lgsl_open_read(t, 4, 0), 1);      /* a slot readers hold already: cached */
    /* every other slot gets a writer, then more writers: never a reader's slot */
    for (unsigned i = 0; i < LGSL_SLOTS; i++) {
        s = lgsl_lookup(t, 4);
        CHECK(!(rd >> s & 1));
        CHECK_EQ(lgsl_open_write(t, 4, s), 0);
    }
    lgsl_free(t);
}

int main(void)
{
    RUN(test_rotation);
    RUN(test_all_slots_taken);
    RUN(test_lone_writer);
    RUN(test_readers_keep_writers_off);
    RUN(test_reader_slots_bounded);
    return CHECK_DONE();
}
