/* fs/cron.c — cron expressions and @every schedules (see cron.h). Civil dates come from
 * Howard Hinnant's days-from-civil arithmetic, written here from the formula, so nothing
 * depends on the process's time zone. The next fire time is found field by field: a month
 * that does not match skips to the next month, a day to the next day, an hour to the next
 * hour, a minute to the next minute; each step moves forward, and the walk stops after ten
 * years. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "fs/cron.h"

#define MIN_MS 60000ull
#define DAY_MS 86400000ull
#define TEN_YEARS_MS (3653ull * DAY_MS)

/* ---------------------------------------------------------------- civil dates (UTC) */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void cron_fmt_time(uint64_t ms, char buf[32])
{
    int64_t y;
    unsigned mo, d;
    uint64_t days = ms / DAY_MS, rem = ms % DAY_MS;
    civil_from_days((int64_t)days, &y, &mo, &d);
    snprintf(buf, 32, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, mo, d,
             (unsigned)(rem / 3600000), (unsigned)(rem / 60000 % 60),
             (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
}

/* ---------------------------------------------------------------- parsing */

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const dow_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

typedef struct field {
    unsigned lo, hi;                 /* allowed values */
    const char *const *names;        /* names of lo.., or NULL */
    unsigned nnames;
} field_t;

static const field_t fields[5] = {
    { 0, 59, NULL, 0 }, { 0, 23, NULL, 0 }, { 1, 31, NULL, 0 },
    { 1, 12, month_names, 12 }, { 0, 7, dow_names, 7 },
};

/* A number or (for months and days of week) a 3-letter name at *p; advances *p. */
static int value(const field_t *f, const char **p, const char *end, unsigned *out)
{
    const char *s = *p;
    if (s < end && s[0] >= '0' && s[0] <= '9') {
        unsigned v = 0;
        while (s < end && *s >= '0' && *s <= '9' && v < 1000)
            v = v * 10 + (unsigned)(*s++ - '0');
        *p = s;
        *out = v;
        return v >= f->lo && v <= f->hi ? 0 : -1;
    }
    if (f->names && end - s >= 3) {
        for (unsigned i = 0; i < f->nnames; i++) {
            int eq = 1;
            for (int j = 0; j < 3; j++) {
                char c = s[j];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                eq &= c == f->names[i][j];
            }
            if (eq) {
                *p = s + 3;
                *out = i + f->lo;
                return 0;
            }
        }
    }
    return -1;
}

/* Parses one field text s[0..len) into the bit set *bits (bit v for value v). */
static int parse_field(const field_t *f, const char *s, size_t len, uint64_t *bits, int *star)
{
    const char *p = s, *end = s + len;
    *bits = 0;
    *star = len > 0 && s[0] == '*';
    while (p < end) {
        const char *item_end = memchr(p, ',', (size_t)(end - p));
        if (!item_end)
            item_end = end;
        unsigned lo, hi, step = 1;
        if (p < item_end && *p == '*') {
            lo = f->lo;
            hi = f->hi == 7 ? 6 : f->hi;
            p++;
        } else {
            if (value(f, &p, item_end, &lo) < 0)
                return -1;
            hi = lo;
            if (p < item_end && *p == '-') {
                p++;
                if (value(f, &p, item_end, &hi) < 0 || hi < lo)
                    return -1;
            }
        }
        if (p < item_end && *p == '/') {
            p++;
            const char *q = p;
            step = 0;
            while (p < item_end && *p >= '0' && *p <= '9' && step < 1000)
                step = step * 10 + (unsigned)(*p++ - '0');
            if (p == q || step == 0 || step > f->hi + 1u)
                return -1;
            if (lo == hi && q[-2] != '*')
                hi = f->hi == 7 ? 6 : f->hi;        /* "5/15": from 5 to the end */
        }
        if (p != item_end)
            return -1;
        for (unsigned v = lo; v <= hi; v += step)
            *bits |= 1ull << (f->hi == 7 && v == 7 ? 0 : v);   /* dow 7 is Sunday */
        p = item_end < end ? item_end + 1 : end;
        if (item_end < end && p == end)
            return -1;                                     /* a trailing comma */
    }
    return *bits ? 0 : -1;
}

/* "1h30m", "90s", "2d", "500ms": a sum of <number><unit> terms. 0 or -1. */
static int parse_duration(const char *s, size_t len, uint64_t *ms)
{
    const char *p = s, *end = s + len;
    uint64_t total = 0;
    if (p == end)
        return -1;
    while (p < end) {
        uint64_t v = 0;
        const char *q = p;
        while (p < end && *p >= '0' && *p <= '9') {
            if (v > CRON_EVERY_MAX_MS)
                return -1;
            v = v * 10 + (uint64_t)(*p++ - '0');
        }
        if (p == q)
            return -1;
        uint64_t unit;
        if (end - p >= 2 && p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else if (p < end && *p == 's') {
            unit = 1000;
            p++;
        } else if (p < end && *p == 'm') {
            unit = MIN_MS;
            p++;
        } else if (p < end && *p == 'h') {
            unit = 60 * MIN_MS;
            p++;
        } else if (p < end && *p == 'd') {
            unit = DAY_MS;
            p++;
        } else {
            return -1;
        }
        if (v > CRON_EVERY_MAX_MS)
            return -1;
        total += v * unit;
        if (total > CRON_EVERY_MAX_MS)
            return -1;
    }
    *ms = total;
    return 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

int cron_parse(const char *text, size_t len, cron_t *c, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    memset(c, 0, sizeof(*c));
    if (len > CRON_TEXT_MAX + 1) {
        *why = "schedule too long";
        return -EINVAL;
    }
    if (len && text[len - 1] == '\n')
        len--;
    while (len && is_blank(text[len - 1]))
        len--;
    while (len && is_blank(*text)) {
        text++;
        len--;
    }
    if (memchr(text, '\n', len) || memchr(text, '\0', len)) {
        *why = "a schedule is one line";
        return -EINVAL;
    }
    static const struct { const char *name, *expr; } macros[] = {
        { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
        { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" }, { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" },
    };
    if (len && text[0] == '@') {
        if (len > 6 && memcmp(text, "@every", 6) == 0 && is_blank(text[6])) {
            const char *d = text + 7;
            size_t dl = len - 7;
            while (dl && is_blank(*d)) {
                d++;
                dl--;
            }
            if (parse_duration(d, dl, &c->every_ms) < 0 || c->every_ms < CRON_EVERY_MIN_MS) {
                *why = "@every takes a duration of 1s to 366d (units ms, s, m, h, d: 30s, 1h30m)";
                return -EINVAL;
            }
            return 0;
        }
        for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
            if (strlen(macros[i].name) == len && memcmp(text, macros[i].name, len) == 0)
                return cron_parse(macros[i].expr, strlen(macros[i].expr), c, why);
        *why = "unknown @ schedule (@every <duration>, @hourly, @daily, @weekly, @monthly, "
               "@yearly)";
        return -EINVAL;
    }
    const char *p = text, *end = text + len;
    uint64_t bits[5];
    int star[5];
    for (int i = 0; i < 5; i++) {
        while (p < end && is_blank(*p))
            p++;
        const char *s = p;
        while (p < end && !is_blank(*p))
            p++;
        if (p == s) {
            *why = "a cron schedule has 5 fields: minute hour day-of-month month day-of-week";
            return -EINVAL;
        }
        if (parse_field(&fields[i], s, (size_t)(p - s), &bits[i], &star[i]) < 0) {
            static const char *const bad[5] = {
                "bad minute field (0-59)", "bad hour field (0-23)",
                "bad day-of-month field (1-31)", "bad month field (1-12 or jan-dec)",
                "bad day-of-week field (0-7 or sun-sat)",
            };
            *why = bad[i];
            return -EINVAL;
        }
    }
    while (p < end && is_blank(*p))
        p++;
    if (p != end) {
        *why = "a cron schedule has 5 fields: minute hour day-of-month month day-of-week";
        return -EINVAL;
    }
    c->minutes = bits[0];
    c->hours = (uint32_t)bits[1];
    c->doms = (uint32_t)bits[2];
    c->months = (uint16_t)bits[3];
    c->dows = (uint8_t)bits[4];
    c->dom_star = (uint8_t)star[2];
    c->dow_star = (uint8_t)star[4];
    return 0;
}

/* ---------------------------------------------------------------- fire times */

static int day_matches(const cron_t *c, unsigned dom, unsigned dow)
{
    int a = (c->doms >> dom) & 1, b = (c->dows >> dow) & 1;
    /* Vixie cron: when either day field begins with '*', both must match (the starred one
     * matches every day it allows); when both are restricted, either one is enough. */
    return c->dom_star || c->dow_star ? a && b : a || b;
}

uint64_t cron_next(const cron_t *c, uint64_t after)
{
    if (c->every_ms)
        return (after / c->every_ms + 1) * c->every_ms;
    uint64_t t = (after / MIN_MS + 1) * MIN_MS;          /* the next whole minute */
    uint64_t limit = after + TEN_YEARS_MS;
    while (t <= limit) {
        int64_t y;
        unsigned mo, d;
        int64_t days = (int64_t)(t / DAY_MS);
        civil_from_days(days, &y, &mo, &d);
        uint64_t rem = t % DAY_MS;
        unsigned h = (unsigned)(rem / 3600000), mi = (unsigned)(rem / MIN_MS % 60);
        if (!((c->months >> mo) & 1)) {                   /* the 1st of the next month */
            int64_t ny = mo == 12 ? y + 1 : y;
            unsigned nm = mo == 12 ? 1 : mo + 1;
            t = (uint64_t)days_from_civil(ny, nm, 1) * DAY_MS;
            continue;
        }
        unsigned dow = (unsigned)((days % 7 + 11) % 7);  /* 1970-01-01 was a Thursday */
        if (!day_matches(c, d, dow)) {
            t = (uint64_t)(days + 1) * DAY_MS;
            continue;
        }
        if (!((c->hours >> h) & 1)) {
            t = (uint64_t)days * DAY_MS + (uint64_t)(h + 1) * 3600000;
            continue;
        }
        if (!((c->minutes >> mi) & 1)) {
            t += MIN_MS;
            continue;
        }
        return t;
    }
    return 0;
}

int cron_fires_at(const cron_t *c, uint64_t t)
{
    return t > 0 && cron_next(c, t - 1) == t;
}

uint64_t cron_prev_le(const cron_t *c, uint64_t at)
{
    if (c->every_ms)
        return at / c->every_ms * c->every_ms;
    /* a fire time in (at - w, at] for growing windows w, then forward to the last one */
    static const uint64_t windows[] = { MIN_MS, 60 * MIN_MS, DAY_MS, 32 * DAY_MS,
                                        367 * DAY_MS, TEN_YEARS_MS };
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        if (at < windows[i])
            break;
        uint64_t t = cron_next(c, at - windows[i]);
        if (t == 0 || t > at)
            continue;
        for (uint64_t n; (n = cron_next(c, t)) != 0 && n <= at;)
            t = n;
        return t;
    }
    return 0;
}
