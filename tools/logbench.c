/* tools/logbench.c — the client of the logs/ benchmark (tools/bench-logs, docs/PERFORMANCE.md
 * "logs/ (issue 11)"). Two modes:
 *
 *   logbench append DIR LOGS WRITERS SECONDS
 *       WRITERS threads, each with its own descriptor opened once (O_WRONLY | O_APPEND) on
 *       DIR/b<w % LOGS> (so LOGS=1: every writer on one log; LOGS=WRITERS: one log each),
 *       loop write() of one record of 100..200 bytes (a text line) for SECONDS, timing each
 *       write. The logs are created before the clock starts. Prints one line:
 *       mode=append logs=L writers=W ops=N ops_s=R p50_us=A p99_us=B errors=E
 *   logbench gen BYTES [SEED]
 *       writes BYTES of syslog-like text lines to stdout (deterministic for a seed): sshd,
 *       CRON, kernel, systemd, nginx access lines and JSON application lines with changing
 *       timestamps, pids, addresses, ids and durations; the input of the size and cat runs.
 *
 * Exit status 0, or 1 with a message (bad usage is 2). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITERS 256
#define MAX_SAMPLES (1u << 20)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* xorshift64*: a small deterministic generator. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* ---------------------------------------------------------------- append */

typedef struct writer {
    pthread_t th;
    int id, fd;
    uint64_t end_ns;
    uint64_t *lat;
    uint32_t n;
    uint64_t errors;
    int first_errno;
} writer_t;

static pthread_barrier_t start_barrier;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    char rec[256];
    pthread_barrier_wait(&start_barrier);
    while (w->n < MAX_SAMPLES && w->errors < 100) {
        uint64_t t0 = now_ns();
        if (t0 >= w->end_ns)
            break;
        int len = 100 + (int)(rnd(&seed) % 101);               /* 100..200 bytes */
        int h = snprintf(rec, sizeof(rec), "w%02d %08u ", w->id, w->n);
        for (int i = h; i < len - 1; i++)
            rec[i] = (char)('a' + (i + w->n) % 26);
        rec[len - 1] = '\n';
        ssize_t r = write(w->fd, rec, (size_t)len);
        if (r != len) {
            if (!w->errors)
                w->first_errno = r < 0 ? errno : EIO;
            w->errors++;
            continue;
        }
        w->lat[w->n++] = now_ns() - t0;
    }
    return NULL;
}

static int run_append(const char *dir, int logs, int writers, double secs)
{
    static writer_t ws[MAX_WRITERS];
    char path[4096];
    for (int l = 0; l < logs; l++) {          /* created before the clock starts */
        snprintf(path, sizeof(path), "%s/b%d", dir, l);
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd < 0) {
            fprintf(stderr, "logbench: %s: %s\n", path, strerror(errno));
            return 1;
        }
        close(fd);
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)writers + 1);
    for (int i = 0; i < writers; i++) {
        writer_t *w = &ws[i];
        w->id = i;
        snprintf(path, sizeof(path), "%s/b%d", dir, i % logs);
        w->fd = open(path, O_WRONLY | O_APPEND);
        w->lat = malloc(MAX_SAMPLES * sizeof(uint64_t));
        if (w->fd < 0 || !w->lat) {
            fprintf(stderr, "logbench: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    uint64_t t0 = now_ns() + 20000000ull, end = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < writers; i++) {
        ws[i].end_ns = end;
        if (pthread_create(&ws[i].th, NULL, writer_main, &ws[i]) != 0) {
            fprintf(stderr, "logbench: pthread_create failed\n");
            return 1;
        }
    }
    pthread_barrier_wait(&start_barrier);
    uint64_t began = now_ns();
    size_t total = 0;
    uint64_t errors = 0;
    int first_errno = 0;
    for (int i = 0; i < writers; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].n;
        errors += ws[i].errors;
        if (!first_errno)
            first_errno = ws[i].first_errno;
    }
    double took = (double)(now_ns() - began) / 1e9;
    uint64_t *all = malloc((total ? total : 1) * sizeof(uint64_t));
    if (!all)
        return 1;
    size_t k = 0;
    for (int i = 0; i < writers; i++) {
        memcpy(all + k, ws[i].lat, ws[i].n * sizeof(uint64_t));
        k += ws[i].n;
        close(ws[i].fd);
        free(ws[i].lat);
    }
    qsort(all, total, sizeof(uint64_t), cmp_u64);
    double p50 = total ? (double)all[total / 2] / 1e3 : 0;
    double p99 = total ? (double)all[(size_t)((double)total * 0.99)] / 1e3 : 0;
    printf("mode=append logs=%d writers=%d ops=%zu ops_s=%.0f p50_us=%.0f p99_us=%.0f "
           "errors=%llu\n", logs, writers, total, (double)total / took, p50, p99,
           (unsigned long long)errors);
    free(all);
    if (errors) {
        fprintf(stderr, "logbench: %llu failed writes (first: %s)\n",
                (unsigned long long)errors, strerror(first_errno));
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- gen */

static const char *const users[] = { "alice", "bob", "deploy", "backup", "git", "www-data",
                                     "postgres", "nagios", "carol", "root" };
static const char *const hosts[] = { "web-01", "web-02", "web-03", "db-01", "db-02",
                                     "cache-01", "lb-01", "worker-07", "worker-12", "ci-03" };
static const char *const paths[] = { "/", "/api/v1/orders", "/api/v1/orders/%u",
                                     "/api/v1/users/%u/profile", "/static/app.%x.js",
                                     "/static/style.%x.css", "/healthz", "/login",
                                     "/api/v2/search?q=item%u&page=%u", "/favicon.ico",
                                     "/metrics", "/api/v1/cart/%u/items" };
static const char *const agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "curl/8.5.0", "Prometheus/2.51.0", "kube-probe/1.29", "python-requests/2.31.0",
    "Go-http-client/1.1" };
static const char *const methods[] = { "GET", "GET", "GET", "POST", "GET", "PUT", "DELETE" };
static const char *const levels[] = { "info", "info", "info", "debug", "warn", "error" };
static const char *const events[] = { "order created", "payment authorized", "cache miss",
                                      "user login", "session refreshed", "retrying request",
                                      "job finished", "slow query", "upstream timeout",
                                      "inventory reserved" };
static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                      "Sep", "Oct", "Nov", "Dec" };

#define PICK(a, s) a[rnd(s) % (sizeof(a) / sizeof(a[0]))]

/* One line into buf (at most n bytes, with its newline); returns its length. t is the time
 * in ms since the start of the year (advances a little per line). */
static int gen_line(char *buf, size_t n, uint64_t *s, uint64_t t)
{
    uint64_t sec = t / 1000;
    unsigned day = (unsigned)(sec / 86400), h = (unsigned)(sec / 3600 % 24),
             mi = (unsigned)(sec / 60 % 60), se = (unsigned)(sec % 60);
    char ts[32], path[128], ip[32];
    snprintf(ts, sizeof(ts), "%s %2u %02u:%02u:%02u", months[day / 30 % 12], day % 30 + 1, h,
             mi, se);
    const char *host = PICK(hosts, s);
    unsigned pid = 300 + (unsigned)(rnd(s) % 60000);
    uint64_t r = rnd(s);
    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", 10 + (unsigned)(r % 3), (unsigned)(r >> 8) % 256,
             (unsigned)(r >> 16) % 256, (unsigned)(r >> 24) % 254 + 1);
    int len;
    switch (rnd(s) % 10) {
    case 0:
        len = snprintf(buf, n, "%s %s sshd[%u]: Accepted publickey for %s from %s port %u ssh2: "
                       "ED25519 SHA256:%016llx%016llx\n", ts, host, pid, PICK(users, s), ip,
                       1024 + (unsigned)(rnd(s) % 64000), (unsigned long long)rnd(s),
                       (unsigned long long)rnd(s));
        break;
    case 1:
        len = snprintf(buf, n, "%s %s CRON[%u]: (%s) CMD (/usr/local/bin/rotate --keep %u "
                       "/var/lib/app/spool)\n", ts, host, pid, PICK(users, s),
                       (unsigned)(rnd(s) % 30));
        break;
    case 2:
        len = snprintf(buf, n, "%s %s kernel: [%llu.%06u] TCP: request_sock_TCP: Possible SYN "
                       "flooding on port %u. Sending cookies.\n", ts, host,
                       (unsigned long long)(sec % 9000000), (unsigned)(rnd(s) % 1000000),
                       (unsigned)(rnd(s) % 2 ? 443 : 8080));
        break;
    case 3:
        len = snprintf(buf, n, "%s %s systemd[1]: Started session-%u.scope - Session %u of "
                       "User %s.\n", ts, host, (unsigned)(rnd(s) % 90000),
                       (unsigned)(rnd(s) % 90000), PICK(users, s));
        break;
    case 4:
    case 5:
    case 6: {
        const char *pf = PICK(paths, s);
        snprintf(path, sizeof(path), pf, (unsigned)(rnd(s) % 100000), (unsigned)(rnd(s) % 50));
        unsigned st = rnd(s) % 20 ? 200 : (unsigned[]){ 301, 404, 500, 502 }[rnd(s) % 4];
        len = snprintf(buf, n, "%s %s nginx: %s - - [%02u/%s/2026:%02u:%02u:%02u +0000] \"%s %s "
                       "HTTP/1.1\" %u %u \"-\" \"%s\" rt=%u.%03u\n", ts, host, ip, day % 30 + 1,
                       months[day / 30 % 12], h, mi, se, PICK(methods, s), path, st,
                       (unsigned)(rnd(s) % 40000), PICK(agents, s), (unsigned)(rnd(s) % 2),
                       (unsigned)(rnd(s) % 1000));
        break;
    }
    default:
        len = snprintf(buf, n, "%s %s app[%u]: {\"ts\":\"2026-%02u-%02uT%02u:%02u:%02u.%03uZ\","
                       "\"level\":\"%s\",\"msg\":\"%s\",\"request_id\":\"%08x-%04x-%04x\","
                       "\"user_id\":%u,\"duration_ms\":%u}\n", ts, host, pid, day / 30 % 12 + 1,
                       day % 30 + 1, h, mi, se, (unsigned)(t % 1000), PICK(levels, s),
                       PICK(events, s), (unsigned)rnd(s), (unsigned)(rnd(s) & 0xffff),
                       (unsigned)(rnd(s) & 0xffff), (unsigned)(rnd(s) % 1000000),
                       (unsigned)(rnd(s) % 3000));
        break;
    }
    if (len < 0 || (size_t)len >= n)
        len = 0;
    return len;
}

static int run_gen(unsigned long long bytes, uint64_t seed)
{
    static char out[1 << 16];
    char line[512];
    size_t fill = 0;
    uint64_t s = seed ? seed : 1, t = 330ull * 86400 * 1000;
    unsigned long long done = 0;
    while (done < bytes) {
        t += rnd(&s) % 40;
        int len = gen_line(line, sizeof(line), &s, t);
        if ((unsigned long long)len > bytes - done)
            len = (int)(bytes - done);
        if (fill + (size_t)len > sizeof(out)) {
            if (fwrite(out, 1, fill, stdout) != fill)
                return perror("logbench: write"), 1;
            fill = 0;
        }
        memcpy(out + fill, line, (size_t)len);
        fill += (size_t)len;
        done += (unsigned long long)len;
    }
    if (fwrite(out, 1, fill, stdout) != fill || fflush(stdout) != 0)
        return perror("logbench: write"), 1;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: logbench append DIR LOGS WRITERS SECONDS\n"
                    "       logbench gen BYTES [SEED]\n");
    return 2;
}

/* A decimal number in [min, max], or -1. */
static long long num(const char *s, long long min, long long max)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    return errno || e == s || *e || v < min || v > max ? -1 : v;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "append") == 0) {
        long long logs = num(argv[3], 1, MAX_WRITERS), writers = num(argv[4], 1, MAX_WRITERS);
        double secs = atof(argv[5]);
        if (logs < 0 || writers < 0 || !(secs > 0 && secs <= 3600))
            return usage();
        return run_append(argv[2], (int)logs, (int)writers, secs);
    }
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "gen") == 0) {
        long long bytes = num(argv[2], 0, 1ll << 40);
        long long seed = argc == 4 ? num(argv[3], 0, 1ll << 62) : 1;
        if (bytes < 0 || seed < 0)
            return usage();
        return run_gen((unsigned long long)bytes, (uint64_t)seed);
    }
    return usage();
}
