/* tests/lin/histrec.c — records a history of register reads and writes on quorumfs mounts for
 * the linearizability checker (tests/lin/lincheck.c). Client processes (several per mount,
 * separate processes as real users would be) pick a random key and either write a value no
 * one else writes (open O_WRONLY|O_TRUNC, one write, close) or read it (open, read, close),
 * and append an invoke line before the operation and a completion line after it, stamped
 * with CLOCK_MONOTONIC, to one shared log (format in tests/lin/README.md). An operation that
 * never completes (the recorder was killed) keeps its invoke line: its outcome is unknown.
 *
 *   histrec --out FILE --mount M [--mount M]... --key PATH [--key PATH]...
 *           [--clients-per-mount N] [--duration S] [--read-pct P] [--think-ms MS]
 *           [--grace S] [--seed N]
 *       records until --duration seconds pass or SIGTERM/SIGINT arrives, then lets every
 *       client finish its operation (at most --grace seconds, then kill -9).
 *   histrec --mark FILE LABEL
 *       appends "M LABEL <now>" to FILE (the test marks kills and restarts on the same clock).
 *
 * Before the clients start, the parent sets every key once through the first mount (client
 * 0, O_CREAT), so each key exists and its value is always one some client wrote. */
#include "tests/lin/lmount.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_MOUNTS 9
#define MAX_KEYS 64
#define MAX_CLIENTS 64

typedef struct opts {
    const char *out;
    lmount_t mounts[MAX_MOUNTS];
    int nmounts;
    const char *keys[MAX_KEYS];
    int nkeys;
    int per_mount;
    double duration;
    int read_pct;
    int think_ms;
    int grace;
    unsigned seed;
} opts_t;

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: histrec --out FILE --mount M [--mount M]... --key PATH [--key PATH]...\n"
            "               [--clients-per-mount N] [--duration S] [--read-pct P]\n"
            "               [--think-ms MS] [--grace S] [--seed N]\n"
            "       histrec --mark FILE LABEL\n");
    exit(2);
}

/* A key path is relative to the mount, without "." or ".." components or spaces. */
static int key_ok(const char *k)
{
    if (!*k || *k == '/' || strlen(k) > 200 || strpbrk(k, " \t\n"))
        return 0;
    for (const char *p = k; *p;) {
        const char *s = strchr(p, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n + (s ? 1 : 0);
        if (s && !*p)
            return 0;
    }
    return 1;
}

/* Writes "<value>\n" to key through root: open (flags), one write, close. Returns 0 or the
 * errno of the first step that failed; *step names it. */
static int do_write(int root, const char *key, int flags, uint64_t value, const char **step)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", value);
    *step = "open";
    int fd = openat(root, key, flags | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    *step = "write";
    ssize_t w = write(fd, buf, (size_t)n);
    int err = w < 0 ? errno : (w != n ? EIO : 0);
    if (err) {
        close(fd);
        return err;
    }
    *step = "close";
    return close(fd) < 0 ? errno : 0;
}

/* Reads key through root: open, read to EOF (at most sizeof buf - 1 bytes), close. Returns 0
 * with the bytes in buf/len, or the errno of the failed step. ENOENT is an answer (absent). */
static int do_read(int root, const char *key, char *buf, size_t cap, size_t *len,
                   const char **step)
{
    *len = 0;
    *step = "open";
    int fd = openat(root, key, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    *step = "read";
    for (;;) {
        if (*len == cap - 1) {   /* longer than any value written: keep what fits */
            char c;
            ssize_t r = read(fd, &c, 1);
            if (r < 0) {
                int err = errno;
                close(fd);
                return err;
            }
            if (r == 0)
                break;
            continue;
        }
        ssize_t r = read(fd, buf + *len, cap - 1 - *len);
        if (r < 0) {
            int err = errno;
            close(fd);
            return err;
        }
        if (r == 0)
            break;
        *len += (size_t)r;
    }
    buf[*len] = 0;
    *step = "close";
    return close(fd) < 0 ? errno : 0;
}

/* The value a read returned: "<digits>\n" exactly; 0 when it is anything else. */
static uint64_t parse_value(const char *buf, size_t len)
{
    if (len < 2 || len > 21 || buf[len - 1] != '\n')
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len - 1; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(buf[i] - '0');
    }
    return v;
}

/* Content as printable text for a log comment (no spaces or control bytes). */
static void escape(const char *buf, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c > 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = 0;
}

/* One operation of client c: logs the invoke line, runs it, logs the completion line.
 * Returns 0, or the errno the operation failed with. */
static int one_op(int log, lmount_t *m, int root, int c, uint64_t opid, int key,
                  const char *path, int is_write, uint64_t value, int wflags)
{
    const char *step;
    int err;
    if (is_write) {
        lm_logf(log, "I %d %" PRIu64 " %d W %" PRIu64 " %" PRIu64, c, opid, key, value, lm_now());
        err = do_write(root, path, wflags, value, &step);
        uint64_t t = lm_now();
        if (!err)
            lm_logf(log, "C %d %" PRIu64 " ok - %" PRIu64, c, opid, t);
        else
            lm_logf(log, "C %d %" PRIu64 " err %s@%s %" PRIu64, c, opid, lm_errname(err), step, t);
    } else {
        char buf[64];
        size_t len;
        lm_logf(log, "I %d %" PRIu64 " %d R - %" PRIu64, c, opid, key, lm_now());
        err = do_read(root, path, buf, sizeof(buf), &len, &step);
        uint64_t t = lm_now();
        if (!err) {
            uint64_t v = parse_value(buf, len);
            if (v) {
                lm_logf(log, "C %d %" PRIu64 " ok %" PRIu64 " %" PRIu64, c, opid, v, t);
            } else {
                char esc[300];
                escape(buf, len, esc, sizeof(esc));
                lm_logf(log, "C %d %" PRIu64 " ok garbage:%s %" PRIu64, c, opid,
                        len ? esc : "(empty)", t);
            }
        } else if (err == ENOENT && step[0] == 'o') {
            lm_logf(log, "C %d %" PRIu64 " ok absent %" PRIu64, c, opid, t);
            err = 0;
        } else {
            lm_logf(log, "C %d %" PRIu64 " err %s@%s %" PRIu64, c, opid, lm_errname(err), step, t);
        }
    }
    if (err)
        lm_after_error(m, err);
    return err;
}

/* A client process: random ops on its mount until *stop is set or the parent is gone. */
static void client(const opts_t *o, int log, int c, lmount_t *m, volatile int *stop,
                   pid_t parent)
{
    unsigned rs = o->seed * 7919u + (unsigned)c * 104729u + 1;
    uint64_t seq = 0;
    while (!*stop && getppid() == parent) {
        int root = lm_root(m);
        if (root < 0) {          /* the node is down: nothing to record */
            lm_sleep_ms(50);
            continue;
        }
        int key = (int)(rand_r(&rs) % (unsigned)o->nkeys);
        int is_write = (int)(rand_r(&rs) % 100u) >= o->read_pct;
        uint64_t value = 0;
        if (is_write)
            value = ((uint64_t)c << 32) | ++seq;
        uint64_t opid = ((uint64_t)c << 32) | (uint64_t)(++seq);
        if (one_op(log, m, root, c, opid, key, o->keys[key], is_write, value,
                   O_WRONLY | O_TRUNC))
            lm_sleep_ms(20);   /* a node without quorum fails at once: do not spin */
        else if (o->think_ms)
            lm_sleep_ms((unsigned)(rand_r(&rs) % (unsigned)(o->think_ms + 1)));
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--mark"))
        return lm_mark("histrec", argv[2], argv[3]);
    opts_t o = { .per_mount = 2, .duration = 60, .read_pct = 50, .grace = 20, .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--out")) {
            o.out = v;
        } else if (!strcmp(a, "--mount")) {
            if (o.nmounts == MAX_MOUNTS) {
                fprintf(stderr, "histrec: at most %d mounts\n", MAX_MOUNTS);
                return 2;
            }
            o.mounts[o.nmounts++] = (lmount_t){ .path = v, .root = -1 };
        } else if (!strcmp(a, "--key")) {
            if (o.nkeys == MAX_KEYS || !key_ok(v)) {
                fprintf(stderr, "histrec: bad or too many keys at '%s' (at most %d, relative "
                                "paths without spaces, . or ..)\n", v, MAX_KEYS);
                return 2;
            }
            o.keys[o.nkeys++] = v;
        } else if (!strcmp(a, "--clients-per-mount")) {
            o.per_mount = (int)lm_num_arg("histrec", a, v, 1, MAX_CLIENTS);
        } else if (!strcmp(a, "--duration")) {
            o.duration = (double)lm_num_arg("histrec", a, v, 1, 3600);
        } else if (!strcmp(a, "--read-pct")) {
            o.read_pct = (int)lm_num_arg("histrec", a, v, 0, 100);
        } else if (!strcmp(a, "--think-ms")) {
            o.think_ms = (int)lm_num_arg("histrec", a, v, 0, 10000);
        } else if (!strcmp(a, "--grace")) {
            o.grace = (int)lm_num_arg("histrec", a, v, 1, 600);
        } else if (!strcmp(a, "--seed")) {
            o.seed = (unsigned)lm_num_arg("histrec", a, v, 0, 0x7fffffff);
        } else {
            usage();
        }
    }
    if (!o.out || !o.nmounts || !o.nkeys)
        usage();
    if (o.nmounts * o.per_mount > MAX_CLIENTS) {
        fprintf(stderr, "histrec: at most %d clients\n", MAX_CLIENTS);
        return 2;
    }
    int log = open(o.out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) {
        fprintf(stderr, "histrec: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    for (int k = 0; k < o.nkeys; k++)
        lm_logf(log, "K %d %s", k, o.keys[k]);
    lm_logf(log, "P 0 %s", o.mounts[0].path);

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* Every key set once through the first mount (retried while the cluster settles). */
    lmount_t *m0 = &o.mounts[0];
    uint64_t seq = 0;
    uint64_t t_end = lm_now() + 30ull * 1000000000ull;
    for (int k = 0; k < o.nkeys; k++) {
        for (;;) {
            int root = lm_root(m0);
            seq++;
            int err = root < 0 ? ENOTCONN
                      : one_op(log, m0, root, 0, seq, k, o.keys[k], 1, seq,
                               O_WRONLY | O_CREAT | O_TRUNC);
            if (!err)
                break;
            if (got_signal || lm_now() > t_end) {
                fprintf(stderr, "histrec: could not set %s through %s: %s\n", o.keys[k],
                        m0->path, strerror(err));
                return 1;
            }
            lm_sleep_ms(100);
        }
    }

    volatile int *stop = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stop == MAP_FAILED) {
        perror("histrec: mmap");
        return 1;
    }
    *stop = 0;
    pid_t self = getpid();
    pid_t kids[MAX_CLIENTS];
    int nkids = 0;
    for (int i = 0; i < o.nmounts * o.per_mount; i++) {
        lm_logf(log, "P %d %s", i + 1, o.mounts[i % o.nmounts].path);
        pid_t p = fork();
        if (p < 0) {
            perror("histrec: fork");
            *stop = 1;
            break;
        }
        if (p == 0) {
            signal(SIGTERM, SIG_IGN);   /* the parent stops us between two operations */
            signal(SIGINT, SIG_IGN);
            lmount_t m = { .path = o.mounts[i % o.nmounts].path, .root = -1 };
            client(&o, log, i + 1, &m, stop, self);
            _exit(0);
        }
        kids[nkids++] = p;
    }
    uint64_t deadline = lm_now() + (uint64_t)(o.duration * 1e9);
    while (!got_signal && lm_now() < deadline && !*stop)
        lm_sleep_ms(20);
    *stop = 1;
    uint64_t give_up = lm_now() + (uint64_t)o.grace * 1000000000ull;
    int left = nkids, killed = 0;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            left--;
            continue;
        }
        if (p < 0 && errno != EINTR)
            break;
        if (!killed && lm_now() > give_up) {
            fprintf(stderr, "histrec: clients still busy after %d s: killed (their "
                            "operations in flight stay unknown)\n", o.grace);
            for (int i = 0; i < nkids; i++)
                kill(kids[i], SIGKILL);
            killed = 1;
        }
        lm_sleep_ms(20);
    }
    lm_logf(log, "E %" PRIu64, lm_now());
    close(log);
    return 0;
}
