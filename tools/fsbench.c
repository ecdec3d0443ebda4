/* tools/fsbench.c — the client of the mount benchmark (tools/bench). It forks P processes
 * that each loop open+write+close (set) or open+read+close (get) over their own keys in a
 * directory, timing every cycle, and reports total cycles per second and p50/p99/p99.9
 * latency over all processes. With --keys K --ops K it is also the loader that writes K
 * distinct keys once each; --mode resp prints the same keys as redis protocol instead.
 * The cluster benchmark (tools/bench-cluster) adds: several --dir (process p works in dir
 * p % ndirs, e.g. one per mount of a cluster), modes for queue push/pop and flock cycles,
 * --log (one line per cycle with its wall-clock end, for the leader-kill gap) and
 * --max-errors. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 1024
#define MAX_ERRORS 100 /* default: a process stops after this many failed cycles */
#define MAX_DIRS 16

/* push: open(D/push)+write one line+close; pop: open(D/pop, O_NONBLOCK)+read+close (an
 * empty queue is an error, never a wait); flock: open(D/key)+flock(EX)+flock(UN)+close. */
enum mode { MODE_SET, MODE_GET, MODE_RESP, MODE_PUSH, MODE_POP, MODE_FLOCK };

struct opts {
    const char *dir;          /* dirs[0] */
    const char *dirs[MAX_DIRS];
    int ndirs;                /* process p works in dirs[p % ndirs] */
    const char *log;          /* NULL, or a file each cycle appends one line to */
    long max_errors;          /* a process stops after this many failed cycles */
    enum mode mode;
    int procs;
    long ops;        /* total over all processes; 0 = bounded by seconds only */
    double seconds;  /* 0 = bounded by ops only */
    long keys;
    size_t value_size;
    int verify;      /* get: compare the content with what set writes */
    int full_path;   /* open DIR/key by path instead of openat(dirfd, key) */
    int random;      /* pick keys at random instead of in order */
    const char *label;
};

/* What one process sends back through its pipe, followed by `ops` uint64 latencies (ns). */
struct child_result {
    uint64_t ops, errors;
    uint64_t t_start_ns, t_end_ns;
    int first_errno;
    char first_what[96];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void key_name(long k, char *buf, size_t cap)
{
    snprintf(buf, cap, "k%08ld", k);
}

/* The value that set writes for key k: its name, a colon, then letters cycling from a
 * key-dependent start, value_size bytes in all. buf holds value_size bytes. */
static void key_value(long k, char *buf, size_t value_size)
{
    char head[32];
    size_t n = (size_t)snprintf(head, sizeof(head), "k%08ld:", k);

    for (size_t i = 0; i < value_size; i++)
        buf[i] = i < n ? head[i] : (char)('a' + (size_t)(k + (long)i) % 26);
}

/* Writes all of buf to fd; 0 or -1 with errno. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes unless EOF comes first; returns bytes read or -1. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Counts a failed cycle; the first one is kept for the report (err 0: no errno applies). */
static void note_error(struct child_result *r, int err, const char *what, const char *key)
{
    if (r->errors++ == 0) {
        r->first_errno = err;
        snprintf(r->first_what, sizeof(r->first_what), "%.40s %.40s", what, key);
    }
}

/* One set cycle: open(O_WRONLY|O_CREAT|O_TRUNC) + one write of the value + close. */
static void do_set(const struct opts *o, int dirfd, const char *path, long k, char *val,
                   struct child_result *r)
{
    const char *key = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int fd = o->full_path ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)
                          : openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;

    if (fd < 0) {
        note_error(r, errno, "open", key);
        return;
    }
    key_value(k, val, o->value_size);
    n = write(fd, val, o->value_size);
    if (n != (ssize_t)o->value_size)
        note_error(r, n < 0 ? errno : 0, n < 0 ? "write" : "short write", key);
    if (close(fd))
        note_error(r, errno, "close", key);
}

/* One get cycle: open(O_RDONLY) + one read + close; checks the length (and content). */
static void do_get(const struct opts *o, int dirfd, const char *path, long k, char *buf,
                   size_t cap, char *expect, struct child_result *r)
{
    const char *key = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int fd = o->full_path ? open(path, O_RDONLY) : openat(dirfd, path, O_RDONLY);
    ssize_t n;

    if (fd < 0) {
        note_error(r, errno, "open", key);
        return;
    }
    n = read(fd, buf, cap);
    if (n < 0) {
        note_error(r, errno, "read", key);
    } else if ((size_t)n != o->value_size) {
        note_error(r, 0, "wrong length from read", key);
    } else if (o->verify) {
        key_value(k, expect, o->value_size);
        if (memcmp(buf, expect, o->value_size))
            note_error(r, 0, "wrong content from read", key);
    }
    if (close(fd))
        note_error(r, errno, "close", key);
}

/* One push cycle: open(D/push) + one write of a value_size-byte line (the key's value with
 * its last byte a newline: one message) + close. */
static void do_push(const struct opts *o, int dirfd, long k, char *val, struct child_result *r)
{
    int fd = openat(dirfd, "push", O_WRONLY);
    ssize_t n;

    if (fd < 0) {
        note_error(r, errno, "open", "push");
        return;
    }
    key_value(k, val, o->value_size);
    val[o->value_size - 1] = '\n';
    n = write(fd, val, o->value_size);
    if (n != (ssize_t)o->value_size)
        note_error(r, n < 0 ? errno : 0, n < 0 ? "write" : "short write", "push");
    if (close(fd))
        note_error(r, errno, "close", "push");
}

/* One pop cycle: open(D/pop, O_NONBLOCK) + read + close. It must return one whole message
 * (a line; with --verify exactly value_size bytes); an empty queue (EAGAIN) is an error. */
static void do_pop(const struct opts *o, int dirfd, char *buf, size_t cap, struct child_result *r)
{
    int fd = openat(dirfd, "pop", O_RDONLY | O_NONBLOCK);
    ssize_t n;

    if (fd < 0) {
        note_error(r, errno, "open", "pop");
        return;
    }
    n = read(fd, buf, cap);
    if (n < 0)
        note_error(r, errno, "read", "pop");
    else if (n == 0 || buf[n - 1] != '\n')
        note_error(r, 0, "not a whole message from read", "pop");
    else if (o->verify && (size_t)n != o->value_size)
        note_error(r, 0, "wrong length from read", "pop");
    if (close(fd))
        note_error(r, errno, "close", "pop");
}

/* One flock cycle on the process's own lock file: open(O_RDONLY|O_CREAT) + flock(LOCK_EX)
 * + flock(LOCK_UN) + close. */
static void do_flock(const struct opts *o, int dirfd, const char *path, struct child_result *r)
{
    const char *key = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int fd = o->full_path ? open(path, O_RDONLY | O_CREAT, 0644)
                          : openat(dirfd, path, O_RDONLY | O_CREAT, 0644);

    if (fd < 0) {
        note_error(r, errno, "open", key);
        return;
    }
    if (flock(fd, LOCK_EX))
        note_error(r, errno, "flock LOCK_EX", key);
    else if (flock(fd, LOCK_UN))
        note_error(r, errno, "flock LOCK_UN", key);
    if (close(fd))
        note_error(r, errno, "close", key);
}

static uint64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --log: appends "<wall-clock end ns> <latency ns> <ok 1|0> <process>" for one cycle, at
 * once (one O_APPEND write, so the lines of several processes never mix and a cycle that
 * never ends leaves the ones before it). */
static void log_cycle(int fd, uint64_t lat_ns, int ok, int p)
{
    char line[96];
    int n = snprintf(line, sizeof(line), "%llu %llu %d %d\n", (unsigned long long)wall_ns(),
                     (unsigned long long)lat_ns, ok, p);

    if (write_all(fd, line, (size_t)n))
        fprintf(stderr, "fsbench: --log: %s\n", strerror(errno));
}

/* Body of process p: waits for the start signal, runs its cycles, sends the result and
 * its latencies to out_fd. Returns the exit status. */
static int child_run(const struct opts *o, int p, int ready_fd, int start_fd, int out_fd)
{
    struct child_result r;
    long nkeys = (o->keys - p + o->procs - 1) / o->procs; /* keys k with k % procs == p */
    long my_ops = o->ops ? o->ops / o->procs + (p < o->ops % o->procs) : 0;
    uint64_t *lat = NULL, cap = 0, deadline = 0, xs = 0x9e3779b97f4a7c15ull * (uint64_t)(p + 1);
    size_t bufcap = o->value_size + 4096;
    char *val = NULL, *buf = NULL, *expect = NULL, path[4096], c;
    const char *dir = o->dirs[p % o->ndirs];
    int dirfd = -1, logfd = -1, status = 1;

    memset(&r, 0, sizeof(r));
    val = malloc(o->value_size + 1);
    buf = malloc(bufcap);
    expect = malloc(o->value_size + 1);
    if (!val || !buf || !expect)
        goto fail;
    dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dirfd < 0) {
        fprintf(stderr, "fsbench: %s: %s\n", dir, strerror(errno));
        goto fail;
    }
    if (o->log) {
        logfd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "fsbench: %s: %s\n", o->log, strerror(errno));
            goto fail;
        }
    }
    cap = my_ops ? (uint64_t)my_ops : 65536;
    lat = malloc(cap * sizeof(*lat));
    if (!lat)
        goto fail;
    if (write_all(ready_fd, "r", 1))
        goto fail;
    close(ready_fd);
    ready_fd = -1;
    if (read(start_fd, &c, 1) < 0) /* returns 0 (EOF) when the parent says go */
        goto fail;

    r.t_start_ns = now_ns();
    if (o->seconds > 0)
        deadline = r.t_start_ns + (uint64_t)(o->seconds * 1e9);
    for (long j = 0; !my_ops || j < my_ops; j++) {
        uint64_t t0, t1, errs = r.errors;
        long k;

        if (o->random) {
            xs ^= xs << 13;
            xs ^= xs >> 7;
            xs ^= xs << 17;
            k = p + o->procs * (long)(xs % (uint64_t)nkeys);
        } else {
            k = p + o->procs * (j % nkeys);
        }
        if (o->full_path)
            snprintf(path, sizeof(path), "%s/k%08ld", dir, k);
        else
            key_name(k, path, sizeof(path));

        t0 = now_ns();
        if (o->mode == MODE_SET)
            do_set(o, dirfd, path, k, val, &r);
        else if (o->mode == MODE_GET)
            do_get(o, dirfd, path, k, buf, bufcap, expect, &r);
        else if (o->mode == MODE_PUSH)
            do_push(o, dirfd, k, val, &r);
        else if (o->mode == MODE_POP)
            do_pop(o, dirfd, buf, bufcap, &r);
        else
            do_flock(o, dirfd, path, &r);
        t1 = now_ns();
        if (logfd >= 0)
            log_cycle(logfd, t1 - t0, r.errors == errs, p);

        if (r.ops == cap) {
            uint64_t *grown = realloc(lat, 2 * cap * sizeof(*lat));
            if (!grown)
                goto fail;
            lat = grown;
            cap *= 2;
        }
        lat[r.ops++] = t1 - t0;
        r.t_end_ns = t1;
        if ((long)r.errors >= o->max_errors || (deadline && t1 >= deadline))
            break;
    }
    if (write_all(out_fd, &r, sizeof(r)) || write_all(out_fd, lat, r.ops * sizeof(*lat)))
        goto fail;
    status = r.errors ? 3 : 0;
fail:
    if (ready_fd >= 0)
        close(ready_fd);
    if (dirfd >= 0)
        close(dirfd);
    if (logfd >= 0)
        close(logfd);
    free(lat);
    free(val);
    free(buf);
    free(expect);
    return status;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile q (0..1] of n sorted samples, in microseconds. */
static double pct_us(const uint64_t *s, uint64_t n, double q)
{
    uint64_t rank;

    if (!n)
        return 0.0;
    rank = (uint64_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)s[rank - 1] / 1e3;
}

/* --mode resp: the redis protocol for "SET key value" of every key, for redis-cli --pipe. */
static int print_resp(const struct opts *o)
{
    char key[32], *val = malloc(o->value_size + 1);

    if (!val)
        return 1;
    for (long k = 0; k < o->keys; k++) {
        key_name(k, key, sizeof(key));
        key_value(k, val, o->value_size);
        printf("*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(key), key, o->value_size);
        fwrite(val, 1, o->value_size, stdout);
        fputs("\r\n", stdout);
    }
    free(val);
    return fflush(stdout) ? 1 : 0;
}

static const char *mode_name(enum mode m)
{
    static const char *const names[] = {"set", "get", "resp", "push", "pop", "flock"};

    return names[m];
}

/* Forks the processes, starts them together, merges their results and prints the report.
 * Returns the exit status: 0, or non-zero if any cycle failed or a process died. */
static int run(const struct opts *o)
{
    struct child_result r, all;
    pid_t pids[MAX_PROCS];
    int outs[MAX_PROCS], ready[2] = {-1, -1}, start[2] = {-1, -1}, status = 1, started = 0, go = 0;
    uint64_t *lat = NULL, n = 0, cap = 0, min_start = UINT64_MAX, max_end = 0, sum = 0;
    double secs;
    char c;

    memset(&all, 0, sizeof(all));
    if (pipe(ready) || pipe(start)) {
        perror("fsbench: pipe");
        goto fail;
    }
    for (int p = 0; p < o->procs; p++) {
        int out[2];

        if (pipe(out)) {
            perror("fsbench: pipe");
            goto fail;
        }
        pids[p] = fork();
        if (pids[p] < 0) {
            perror("fsbench: fork");
            close(out[0]);
            close(out[1]);
            goto fail;
        }
        if (pids[p] == 0) {
            close(ready[0]);
            close(start[1]);
            close(out[0]);
            for (int q = 0; q < p; q++)
                close(outs[q]);
            _exit(child_run(o, p, ready[1], start[0], out[1]));
        }
        close(out[1]);
        outs[p] = out[0];
        started++;
    }
    close(ready[1]);
    ready[1] = -1;
    for (int p = 0; p < o->procs; p++) {
        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "fsbench: a process failed to start\n");
            goto fail;
        }
    }
    close(start[1]); /* go */
    start[1] = -1;
    go = 1;

    for (int p = 0; p < started; p++) {
        ssize_t got = read_full(outs[p], &r, sizeof(r));

        if (got != (ssize_t)sizeof(r)) {
            fprintf(stderr, "fsbench: process %d sent no result\n", p);
            goto fail;
        }
        if (n + r.ops > cap) {
            uint64_t ncap = (n + r.ops) * 2;
            uint64_t *grown = realloc(lat, ncap * sizeof(*lat));
            if (!grown)
                goto fail;
            lat = grown;
            cap = ncap;
        }
        if (read_full(outs[p], lat + n, r.ops * sizeof(*lat)) != (ssize_t)(r.ops * sizeof(*lat))) {
            fprintf(stderr, "fsbench: process %d sent short samples\n", p);
            goto fail;
        }
        n += r.ops;
        if (r.errors && !all.errors) {
            all.first_errno = r.first_errno;
            memcpy(all.first_what, r.first_what, sizeof(all.first_what));
        }
        all.errors += r.errors;
        if (r.ops && r.t_start_ns < min_start)
            min_start = r.t_start_ns;
        if (r.t_end_ns > max_end)
            max_end = r.t_end_ns;
    }
    status = 0;
fail:
    for (int p = 0; p < started; p++) {
        int st;

        if (!go) /* still waiting for the start signal: none of them may run */
            kill(pids[p], SIGKILL);
        close(outs[p]);
        if (waitpid(pids[p], &st, 0) == pids[p] && !(WIFEXITED(st) && WEXITSTATUS(st) <= 3)) {
            fprintf(stderr, "fsbench: process %d died\n", p);
            status = 1;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (start[i] >= 0)
            close(start[i]);
    }
    if (status || !n) {
        if (!status)
            fprintf(stderr, "fsbench: no operation ran\n");
        free(lat);
        return 1;
    }

    qsort(lat, n, sizeof(*lat), cmp_u64);
    for (uint64_t i = 0; i < n; i++)
        sum += lat[i];
    secs = (double)(max_end - min_start) / 1e9;
    printf("RESULT label=%s mode=%s procs=%d ops=%llu errors=%llu secs=%.3f ops_s=%.0f "
           "mean_us=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
           o->label, mode_name(o->mode), o->procs, (unsigned long long)n,
           (unsigned long long)all.errors, secs, secs > 0 ? (double)n / secs : 0.0,
           (double)sum / (double)n / 1e3, pct_us(lat, n, 0.50), pct_us(lat, n, 0.99),
           pct_us(lat, n, 0.999), (double)lat[n - 1] / 1e3);
    printf("%s %s: %d procs, %llu cycles in %.2f s = %.0f/s; latency p50 %.3f ms, "
           "p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
           o->label, mode_name(o->mode), o->procs, (unsigned long long)n, secs,
           secs > 0 ? (double)n / secs : 0.0, pct_us(lat, n, 0.50) / 1e3,
           pct_us(lat, n, 0.99) / 1e3, pct_us(lat, n, 0.999) / 1e3,
           (double)lat[n - 1] / 1e6);
    free(lat);
    fflush(stdout);
    if (all.errors) {
        fprintf(stderr, "fsbench: %llu failed cycles; first: %s%s%s\n",
                (unsigned long long)all.errors, all.first_what, all.first_errno ? ": " : "",
                all.first_errno ? strerror(all.first_errno) : "");
        return 1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fsbench --dir D [--dir D2 ...] --mode set|get|push|pop|flock [--procs P]\n"
            "               [--ops N] [--seconds S] [--keys K] [--value-size B] [--verify]\n"
            "               [--random] [--full-path] [--label L] [--log FILE]\n"
            "               [--max-errors E]\n"
            "       fsbench --mode resp --keys K [--value-size B]\n"
            "P processes (default 1) loop over keys D/k00000000.. (key k belongs to process\n"
            "k %% P); set = open(O_WRONLY|O_CREAT|O_TRUNC)+write+close, get = open(O_RDONLY)+\n"
            "read+close. Stops after N cycles in total or S seconds, whichever comes first\n"
            "(default N = 10000). K defaults to 1000, B to 100. --verify checks the content a\n"
            "get reads. Prints one 'RESULT key=value ...' line and one human line; exits\n"
            "non-zero if any cycle failed. resp prints SET commands for redis-cli --pipe.\n"
            "Several --dir (up to %d): process p works in the p %% count-th one.\n"
            "push = open(D/push)+write one B-byte line+close; pop = open(D/pop, O_NONBLOCK)+\n"
            "read+close (an empty queue counts as a failed cycle; --verify checks the length);\n"
            "flock = open(D/key, O_CREAT)+flock(LOCK_EX)+flock(LOCK_UN)+close.\n"
            "--log FILE appends per cycle: wall-clock end (ns) latency (ns) ok (1|0) process.\n"
            "--max-errors E: a process stops after E failed cycles (default %d).\n",
            MAX_DIRS, MAX_ERRORS);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"mode", required_argument, NULL, 'm'},
        {"procs", required_argument, NULL, 'p'},
        {"ops", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},
        {"value-size", required_argument, NULL, 'v'},
        {"verify", no_argument, NULL, 'V'},
        {"random", no_argument, NULL, 'r'},
        {"full-path", no_argument, NULL, 'F'},
        {"label", required_argument, NULL, 'l'},
        {"log", required_argument, NULL, 'L'},
        {"max-errors", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {.procs = 1, .ops = -1, .keys = 1000, .value_size = 100, .label = "fsbench",
                     .max_errors = MAX_ERRORS};
    const char *mode = NULL;
    long value_size = 100;
    int c;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (o.ndirs == MAX_DIRS) {
                fprintf(stderr, "fsbench: at most %d --dir\n", MAX_DIRS);
                return 2;
            }
            o.dirs[o.ndirs++] = optarg;
            o.dir = o.dirs[0];
            break;
        case 'm': mode = optarg; break;
        case 'p': o.procs = atoi(optarg); break;
        case 'n': o.ops = atol(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'k': o.keys = atol(optarg); break;
        case 'v': value_size = atol(optarg); break;
        case 'V': o.verify = 1; break;
        case 'r': o.random = 1; break;
        case 'F': o.full_path = 1; break;
        case 'l': o.label = optarg; break;
        case 'L': o.log = optarg; break;
        case 'E': o.max_errors = atol(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!mode || optind != argc)
        goto bad;
    if (strcmp(mode, "set") == 0)
        o.mode = MODE_SET;
    else if (strcmp(mode, "get") == 0)
        o.mode = MODE_GET;
    else if (strcmp(mode, "resp") == 0)
        o.mode = MODE_RESP;
    else if (strcmp(mode, "push") == 0)
        o.mode = MODE_PUSH;
    else if (strcmp(mode, "pop") == 0)
        o.mode = MODE_POP;
    else if (strcmp(mode, "flock") == 0)
        o.mode = MODE_FLOCK;
    else
        goto bad;
    if (o.ops < 0)
        o.ops = o.seconds > 0 ? 0 : 10000;
    if (value_size < 1 || value_size > (1 << 20) || o.keys < 1 || o.seconds < 0 ||
        o.max_errors < 1)
        goto bad;
    o.value_size = (size_t)value_size;
    if (o.mode == MODE_RESP)
        return print_resp(&o);
    if (!o.dir || o.procs < 1 || o.procs > MAX_PROCS || o.keys < o.procs ||
        (o.ops == 0 && o.seconds == 0))
        goto bad;
    return run(&o);
bad:
    usage(stderr);
    return 2;
}
