/* tests/unit/test_cron.c — schedules of jobs/ (fs/cron.c): a table of known next fire times
 * (computed independently, by a minute-by-minute scan in Python of the same expressions:
 * steps, ranges, lists, names, day-of-week and month edges, Feb 29, the Vixie rule that
 * restricted day-of-month and day-of-week fields are ORed), @every and the @ shorthands,
 * the last fire time at or before a moment, and malformed schedules refused with a reason. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs/cron.h"
#include "tests/unit/check.h"

/* "YYYY-MM-DDTHH:MM:SS" (UTC) to Unix ms, through libc's timegm (not fs/cron.c's code). */
static uint64_t ms_of(const char *iso)
{
    struct tm tm = { 0 };
    if (sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (uint64_t)timegm(&tm) * 1000;
}

static uint64_t next_of(const char *expr, uint64_t after)
{
    cron_t c;
    if (cron_parse(expr, strlen(expr), &c, NULL) < 0)
        return 1;                       /* never a fire time: the comparison fails */
    return cron_next(&c, after);
}

static const struct { const char *expr, *after, *next; } table[] = {
    { "*/15 * * * *", "2026-12-03T07:14:00", "2026-12-03T07:15:00" },
    { "*/15 * * * *", "2026-12-03T07:45:00", "2026-12-03T08:00:00" },
    { "*/15 * * * *", "2026-12-31T23:59:30", "2027-01-01T00:00:00" },
    { "0 9-17 * * *", "2026-12-03T17:00:00", "2026-12-04T09:00:00" },
    { "0 9-17 * * *", "2026-12-03T08:59:59", "2026-12-03T09:00:00" },
    { "5,10,55 * * * *", "2026-12-03T07:56:00", "2026-12-03T08:05:00" },
    { "30 2 * * mon", "2026-12-03T07:00:00", "2026-12-07T02:30:00" },
    { "30 2 * * 1-5", "2026-12-04T03:00:00", "2026-12-07T02:30:00" },
    { "0 0 * * 7", "2026-12-03T00:00:00", "2026-12-06T00:00:00" },
    { "0 0 * * sun", "2026-12-03T00:00:00", "2026-12-06T00:00:00" },
    { "0 0 1 * *", "2026-12-03T00:00:00", "2027-01-01T00:00:00" },
    { "0 0 31 * *", "2026-04-01T00:00:00", "2026-05-31T00:00:00" },
    { "0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00" },
    { "0 12 29 feb *", "2027-12-31T00:00:00", "2028-02-29T12:00:00" },
    { "0 0 1,15 * 3", "2026-12-03T00:00:00", "2026-12-09T00:00:00" },
    { "0 0 13 * 5", "2026-01-01T00:00:00", "2026-01-02T00:00:00" },
    { "0 0 * 2 *", "2026-02-28T23:59:00", "2027-02-01T00:00:00" },
    { "59 23 31 12 *", "2026-12-31T23:59:00", "2027-12-31T23:59:00" },
    { "0 0 1 jan-mar *", "2026-04-01T00:00:00", "2027-01-01T00:00:00" },
    { "5/20 * * * *", "2026-12-03T07:46:00", "2026-12-03T08:05:00" },
    { "0 */6 * * *", "2026-12-03T18:00:00", "2026-12-04T00:00:00" },
    { "0 0 */10 * *", "2026-12-21T00:00:01", "2026-12-31T00:00:00" },
    { "15 14 1 * *", "2026-12-03T07:00:00", "2027-01-01T14:15:00" },
    { "0 22 * * 1-5", "2026-12-04T22:00:00", "2026-12-07T22:00:00" },
    { "0 0 29 2 1", "2026-03-03T00:00:00", "2027-02-01T00:00:00" },
    { "* * * * *", "2026-12-03T07:14:59", "2026-12-03T07:15:00" },
    { "@hourly", "2026-12-03T07:14:59", "2026-12-03T08:00:00" },
    { "@daily", "2026-12-31T23:00:00", "2027-01-01T00:00:00" },
    { "@weekly", "2026-12-03T07:00:00", "2026-12-06T00:00:00" },
    { "@monthly", "2026-02-03T07:00:00", "2026-03-01T00:00:00" },
    { "@yearly", "2026-12-03T07:00:00", "2027-01-01T00:00:00" },
    { "  0 0 * * SUN\n", "2026-12-03T00:00:00", "2026-12-06T00:00:00" },
};

TEST(known_next_fire_times)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        uint64_t got = next_of(table[i].expr, ms_of(table[i].after));
        if (got != ms_of(table[i].next)) {
            char buf[32];
            cron_fmt_time(got, buf);
            printf("# %s after %s: got %s, want %s\n", table[i].expr, table[i].after, buf,
                   table[i].next);
        }
        CHECK_EQ(got, ms_of(table[i].next));
        /* the fire time is one, and the last one at or before it is itself */
        cron_t c;
        CHECK(cron_parse(table[i].expr, strlen(table[i].expr), &c, NULL) == 0);
        CHECK(cron_fires_at(&c, got));
        CHECK_EQ(cron_prev_le(&c, got), got);
        CHECK(cron_prev_le(&c, got - 1) <= ms_of(table[i].after));
    }
}

TEST(mid_minute_after_is_strict)
{
    /* "after" is strict: a fire time equal to it is not returned again */
    uint64_t t = ms_of("2026-12-03T07:15:00");
    CHECK_EQ(next_of("*/15 * * * *", t), ms_of("2026-12-03T07:30:00"));
    CHECK_EQ(next_of("*/15 * * * *", t - 1), t);
    CHECK_EQ(next_of("*/15 * * * *", t + 1), ms_of("2026-12-03T07:30:00"));
}

TEST(never_fires)
{
    CHECK_EQ(next_of("0 0 30 2 *", ms_of("2026-01-01T00:00:00")), 0);
    CHECK_EQ(next_of("0 0 31 4,6,9,11 *", ms_of("2026-01-01T00:00:00")), 0);
}

TEST(every_periods)
{
    cron_t c;
    const char *why;
    CHECK(cron_parse("@every 1s", 9, &c, &why) == 0);
    CHECK_EQ(c.every_ms, 1000);
    CHECK_EQ(cron_next(&c, 1500), 2000);
    CHECK_EQ(cron_next(&c, 2000), 3000);
    CHECK_EQ(cron_prev_le(&c, 2999), 2000);
    CHECK(cron_fires_at(&c, 5000) && !cron_fires_at(&c, 5001));
    CHECK(cron_parse("@every 1h30m\n", 13, &c, NULL) == 0);
    CHECK_EQ(c.every_ms, 5400000);
    CHECK(cron_parse("@every 2d", 9, &c, NULL) == 0);
    CHECK_EQ(c.every_ms, 2 * 86400000ull);
    CHECK(cron_parse("@every 1500ms", 13, &c, NULL) == 0);
    CHECK_EQ(cron_next(&c, 0), 1500);
    CHECK_EQ(cron_next(&c, 1500), 3000);
}

TEST(prev_le_of_cron)
{
    cron_t c;
    CHECK(cron_parse("0 0 29 2 *", 10, &c, NULL) == 0);
    CHECK_EQ(cron_prev_le(&c, ms_of("2027-06-01T00:00:00")), ms_of("2024-02-29T00:00:00"));
    CHECK(cron_parse("*/15 * * * *", 12, &c, NULL) == 0);
    CHECK_EQ(cron_prev_le(&c, ms_of("2026-12-03T07:29:59")), ms_of("2026-12-03T07:15:00"));
}

TEST(malformed_refused)
{
    static const char *const bad[] = {
        "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *",
        "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "1,,2 * * * *",
        "1, * * * *", "x * * * *", "* * * foo *", "@every", "@every 0s", "@every 500ms",
        "@every 10", "@every 1y", "@every 367d", "@often", "*/61 * * * *", "1-2-3 * * * *",
        "* * * * mon-", "0 0 * * *\n0 1 * * *",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cron_t c;
        const char *why = NULL;
        int rc = cron_parse(bad[i], strlen(bad[i]), &c, &why);
        if (rc != -EINVAL)
            printf("# accepted: '%s'\n", bad[i]);
        CHECK_EQ(rc, -EINVAL);
        CHECK(why && *why);
    }
}

TEST(time_format)
{
    char buf[32];
    cron_fmt_time(ms_of("2028-02-29T12:34:56") + 789, buf);
    CHECK(strcmp(buf, "2028-02-29T12:34:56.789Z") == 0);
    cron_fmt_time(0, buf);
    CHECK(strcmp(buf, "1970-01-01T00:00:00.000Z") == 0);
}

int main(void)
{
    RUN(known_next_fire_times);
    RUN(mid_minute_after_is_strict);
    RUN(never_fires);
    RUN(every_periods);
    RUN(prev_le_of_cron);
    RUN(malformed_refused);
    RUN(time_format);
    return CHECK_DONE();
}
