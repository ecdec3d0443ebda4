/* fs/cron.h — schedules of jobs/ (docs/JOBS.md "Schedules"): a 5-field cron expression read
 * in UTC (minute hour day-of-month month day-of-week; lists, ranges, steps, month and day
 * names; the Vixie cron rule that a day matches either day field when both are restricted),
 * the @hourly/@daily/@weekly/@monthly/@yearly shorthands, and `@every <duration>` (fire
 * times are the multiples of the period since the Unix epoch). Pure and deterministic: no
 * clock, no time zone, no locale; the jobs/ state machine parses schedules in apply. */
#ifndef QFS_FS_CRON_H
#define QFS_FS_CRON_H

#include <stddef.h>
#include <stdint.h>

#define CRON_TEXT_MAX 255                    /* bytes of a schedule's text */
#define CRON_EVERY_MIN_MS 1000ull            /* @every: at least 1 s */
#define CRON_EVERY_MAX_MS (366ull * 86400000ull)

typedef struct cron {
    uint64_t every_ms;       /* @every: the period; 0 for a field expression */
    uint64_t minutes;        /* bit m: minute m matches (0..59) */
    uint32_t hours;          /* bit h (0..23) */
    uint32_t doms;           /* bit d (1..31) */
    uint16_t months;         /* bit m (1..12) */
    uint8_t dows;            /* bit d (0..6, 0 = Sunday; 7 in the text is Sunday too) */
    uint8_t dom_star, dow_star;  /* the field began with '*' (Vixie's DOM_STAR/DOW_STAR) */
} cron_t;

/* Parses text[0..len) (surrounding blanks and one trailing newline allowed) into *c.
 * Returns 0, or -EINVAL with *why (may be NULL) set to a static description of the error. */
int cron_parse(const char *text, size_t len, cron_t *c, const char **why);

/* The first fire time of c strictly after `after` (Unix ms, UTC), or 0 when it never fires
 * in the 10 years that follow (for example `0 0 30 2 *`). Field expressions fire on whole
 * minutes. */
uint64_t cron_next(const cron_t *c, uint64_t after);

/* The last fire time of c at or before `at` (0 if none in the ten years before it). */
uint64_t cron_prev_le(const cron_t *c, uint64_t at);

/* Whether t (Unix ms) is a fire time of c. */
int cron_fires_at(const cron_t *c, uint64_t t);

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes + NUL) into buf. */
void cron_fmt_time(uint64_t ms, char buf[32]);

#endif
