/* tests/lin/qrec.c — drives and records one quorumfs queue from several mounts for
 * tests/lin/qcheck.py. Producer processes push unique payloads (open push, one write of
 * "<payload>\n", close: acknowledged when all three return 0); consumer processes claim the
 * head (open claim O_NONBLOCK, read the "<id> <payload>" line, close) and acknowledge it
 * (unlink claimed/<id>); popper processes pop. Every operation appends an invoke line
 * before it and a completion line after it to one shared log (format in
 * tests/lin/README.md), stamped with CLOCK_MONOTONIC.
 *
 *   qrec --out FILE --queue NAME --mount M [--mount M]... [--producers N] [--consumers N]
 *        [--poppers N] [--duration S] [--think-ms MS] [--grace S] [--seed N]
 *       runs until --duration seconds pass or SIGTERM/SIGINT, then lets every process finish
 *       its operation (at most --grace seconds, then kill -9).
 *   qrec --drain FILE --queue NAME --mount M [--mount M]...
 *       one popper per mount pops until every one of them has found the queue empty twice
 *       in a row 200 ms apart (bounded by --duration, default 60 s), appending to FILE.
 *   qrec --mark FILE LABEL
 *       appends "M LABEL <now>" to FILE (the test marks kills and restarts on the same clock).
 * Process k of each kind uses mount k % (number of mounts). */
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
#define MAX_PROCS 64

typedef struct opts {
    const char *out;
    const char *queue;
    const char *mounts[MAX_MOUNTS];
    int nmounts;
    int producers, consumers, poppers;
    int duration, think_ms, grace;
    unsigned seed;
    int drain;
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
            "usage: qrec --out FILE --queue NAME --mount M [--mount M]... [--producers N]\n"
            "            [--consumers N] [--poppers N] [--duration S] [--think-ms MS]\n"
            "            [--grace S] [--seed N]\n"
            "       qrec --drain FILE --queue NAME --mount M [--mount M]... [--duration S]\n"
            "       qrec --mark FILE LABEL\n");
    exit(2);
}

/* Reads fd to EOF into buf (NUL-terminated; bytes past cap-1 are dropped). Returns 0 or an
 * errno; *len counts the bytes returned by read(), kept or not. */
static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    for (;;) {
        char tmp[512];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r < 0) {
            buf[*len < cap ? *len : cap - 1] = 0;
            return errno;
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (*len < cap - 1)
                buf[*len] = tmp[i];
            (*len)++;
        }
    }
    buf[*len < cap ? *len : cap - 1] = 0;
    return 0;
}

/* Log-safe copy of a line a read returned (no spaces or control bytes). */
static void escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = 0;
}

typedef struct ctx {
    const opts_t *o;
    int log;
    int client;
    lmount_t m;
    uint64_t opid;
    char qdir[300];
} ctx_t;

static void log_err(ctx_t *c, uint64_t opid, int err, const char *step)
{
    lm_logf(c->log, "C %d %" PRIu64 " err %s@%s %" PRIu64, c->client, opid, lm_errname(err),
            step, lm_now());
    lm_after_error(&c->m, err);
}

/* push: returns 0 when acknowledged */
static int op_push(ctx_t *c, int root, const char *payload)
{
    char path[400], line[128];
    uint64_t id = ++c->opid;
    snprintf(path, sizeof(path), "%s/push", c->qdir);
    int n = snprintf(line, sizeof(line), "%s\n", payload);
    lm_logf(c->log, "I %d %" PRIu64 " push %s %" PRIu64, c->client, id, payload, lm_now());
    int fd = openat(root, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        log_err(c, id, errno, "open");
        return -1;
    }
    ssize_t w = write(fd, line, (size_t)n);
    if (w != n) {
        int err = w < 0 ? errno : EIO;
        close(fd);
        log_err(c, id, err, "write");
        return -1;
    }
    if (close(fd) < 0) {
        log_err(c, id, errno, "close");
        return -1;
    }
    lm_logf(c->log, "C %d %" PRIu64 " ok - %" PRIu64, c->client, id, lm_now());
    return 0;
}

/* claim (is_claim) or pop of the head, without waiting. Returns 1 and the line in buf when a
 * message came, 0 when the queue was empty, -1 on an error. */
static int op_take(ctx_t *c, int root, int is_claim, char *buf, size_t cap)
{
    char path[400];
    uint64_t id = ++c->opid;
    snprintf(path, sizeof(path), "%s/%s", c->qdir, is_claim ? "claim" : "pop");
    lm_logf(c->log, "I %d %" PRIu64 " %s - %" PRIu64, c->client, id, is_claim ? "claim" : "pop",
            lm_now());
    int fd = openat(root, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        log_err(c, id, errno, "open");
        return -1;
    }
    size_t len;
    int err = read_all(fd, buf, cap, &len);
    if (err == EAGAIN && len == 0) {
        close(fd);
        lm_logf(c->log, "C %d %" PRIu64 " empty - %" PRIu64, c->client, id, lm_now());
        return 0;
    }
    if (err) {
        close(fd);
        char esc[300];
        escape(buf, esc, sizeof(esc));
        if (len) /* a message was delivered (some of it read) but the read failed */
            lm_logf(c->log, "# client %d op %" PRIu64 " read %zu bytes before failing: %s",
                    c->client, id, len, esc);
        log_err(c, id, err, "read");
        return -1;
    }
    close(fd);   /* nothing to publish for a read; its result does not matter */
    if (len == 0) {
        lm_logf(c->log, "C %d %" PRIu64 " empty - %" PRIu64, c->client, id, lm_now());
        return 0;
    }
    /* exactly one line: "<id> <payload>\n" (claim) or "<payload>\n" (pop) */
    size_t l = strlen(buf);
    if (l != len || buf[l - 1] != '\n' || memchr(buf, '\n', l - 1) ||
        (is_claim && !strchr(buf, ' '))) {
        char esc[300];
        escape(buf, esc, sizeof(esc));
        lm_logf(c->log, "C %d %" PRIu64 " ok malformed:%s %" PRIu64, c->client, id, esc,
                lm_now());
        return -1;
    }
    buf[l - 1] = 0;
    if (is_claim) {
        char *sp = strchr(buf, ' ');
        *sp = ':';   /* "<id>:<payload>" in the log */
    }
    lm_logf(c->log, "C %d %" PRIu64 " ok %s %" PRIu64, c->client, id, buf, lm_now());
    return 1;
}

/* ack of a claim "<id>:<payload>": unlink claimed/<id>. */
static int op_ack(ctx_t *c, int root, const char *claim)
{
    char path[400], idstr[64];
    const char *colon = strchr(claim, ':');
    size_t il = (size_t)(colon - claim);
    if (il >= sizeof(idstr))
        il = sizeof(idstr) - 1;
    memcpy(idstr, claim, il);
    idstr[il] = 0;
    uint64_t id = ++c->opid;
    snprintf(path, sizeof(path), "%s/claimed/%s", c->qdir, idstr);
    lm_logf(c->log, "I %d %" PRIu64 " ack %s %" PRIu64, c->client, id, claim, lm_now());
    if (unlinkat(root, path, 0) < 0) {
        log_err(c, id, errno, "unlink");
        return -1;
    }
    lm_logf(c->log, "C %d %" PRIu64 " ok - %" PRIu64, c->client, id, lm_now());
    return 0;
}

enum kind { PRODUCER, CONSUMER, POPPER, DRAINER };

static void run(ctx_t *c, enum kind k, volatile int *stop, pid_t parent, uint64_t end)
{
    unsigned rs = c->o->seed * 7919u + (unsigned)c->client * 104729u + 1;
    uint64_t seq = 0;
    int empties = 0;
    char buf[300];
    while (!*stop && getppid() == parent && lm_now() < end) {
        int root = lm_root(&c->m);
        if (root < 0) {   /* the node is down: nothing to record */
            lm_sleep_ms(50);
            continue;
        }
        int r;
        switch (k) {
        case PRODUCER: {
            char payload[64];
            snprintf(payload, sizeof(payload), "m%d-%" PRIu64, c->client, ++seq);
            if (op_push(c, root, payload))
                lm_sleep_ms(20);   /* a node without quorum fails at once: do not spin */
            else if (c->o->think_ms)
                lm_sleep_ms((unsigned)(rand_r(&rs) % (unsigned)(c->o->think_ms + 1)));
            break;
        }
        case CONSUMER:
            r = op_take(c, root, 1, buf, sizeof(buf));
            if (r == 1 && op_ack(c, root, buf) < 0)
                r = -1;
            if (r != 1)
                lm_sleep_ms(20);
            break;
        case POPPER:
            if (op_take(c, root, 0, buf, sizeof(buf)) != 1)
                lm_sleep_ms(20);
            break;
        case DRAINER:
            r = op_take(c, root, 0, buf, sizeof(buf));
            if (r == 0 && ++empties >= 2)
                return;
            if (r != 0)
                empties = 0;
            if (r != 1)
                lm_sleep_ms(200);
            break;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--mark"))
        return lm_mark("qrec", argv[2], argv[3]);
    opts_t o = { .producers = 8, .consumers = 8, .duration = 60, .grace = 20, .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--out")) {
            o.out = v;
        } else if (!strcmp(a, "--drain")) {
            o.out = v;
            o.drain = 1;
        } else if (!strcmp(a, "--queue")) {
            if (!*v || strchr(v, '/') || strpbrk(v, " \t\n")) {
                fprintf(stderr, "qrec: --queue: one name without '/' or spaces\n");
                return 2;
            }
            o.queue = v;
        } else if (!strcmp(a, "--mount")) {
            if (o.nmounts == MAX_MOUNTS) {
                fprintf(stderr, "qrec: at most %d mounts\n", MAX_MOUNTS);
                return 2;
            }
            o.mounts[o.nmounts++] = v;
        } else if (!strcmp(a, "--producers")) {
            o.producers = (int)lm_num_arg("qrec", a, v, 0, MAX_PROCS);
        } else if (!strcmp(a, "--consumers")) {
            o.consumers = (int)lm_num_arg("qrec", a, v, 0, MAX_PROCS);
        } else if (!strcmp(a, "--poppers")) {
            o.poppers = (int)lm_num_arg("qrec", a, v, 0, MAX_PROCS);
        } else if (!strcmp(a, "--duration")) {
            o.duration = (int)lm_num_arg("qrec", a, v, 1, 3600);
        } else if (!strcmp(a, "--think-ms")) {
            o.think_ms = (int)lm_num_arg("qrec", a, v, 0, 10000);
        } else if (!strcmp(a, "--grace")) {
            o.grace = (int)lm_num_arg("qrec", a, v, 1, 600);
        } else if (!strcmp(a, "--seed")) {
            o.seed = (unsigned)lm_num_arg("qrec", a, v, 0, 0x7fffffff);
        } else {
            usage();
        }
    }
    if (!o.out || !o.queue || !o.nmounts)
        usage();
    int counts[4] = { o.producers, o.consumers, o.poppers, 0 };
    if (o.drain) {
        counts[0] = counts[1] = counts[2] = 0;
        counts[DRAINER] = o.nmounts;
    }
    if (counts[0] + counts[1] + counts[2] + counts[3] > MAX_PROCS) {
        fprintf(stderr, "qrec: at most %d processes\n", MAX_PROCS);
        return 2;
    }
    int log = open(o.out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (o.drain ? 0 : O_TRUNC),
                   0644);
    if (log < 0) {
        fprintf(stderr, "qrec: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    volatile int *stop = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stop == MAP_FAILED) {
        perror("qrec: mmap");
        return 1;
    }
    *stop = 0;
    static const char *names[] = { "producer", "consumer", "popper", "drainer" };
    pid_t self = getpid();
    pid_t kids[MAX_PROCS];
    int nkids = 0, client = 0;
    uint64_t end = lm_now() + (uint64_t)o.duration * 1000000000ull;
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < counts[k]; j++) {
            client++;
            /* drainers continue the numbering of an earlier run's clients */
            int cl = o.drain ? 1000 + client : client;
            lm_logf(log, "P %d %s %s", cl, names[k], o.mounts[j % o.nmounts]);
            pid_t p = fork();
            if (p < 0) {
                perror("qrec: fork");
                *stop = 1;
                break;
            }
            if (p == 0) {
                signal(SIGTERM, SIG_IGN);   /* the parent stops us between two operations */
                signal(SIGINT, SIG_IGN);
                ctx_t c = { .o = &o, .log = log, .client = cl,
                            .m = { .path = o.mounts[j % o.nmounts], .root = -1 } };
                snprintf(c.qdir, sizeof(c.qdir), "queues/%s", o.queue);
                run(&c, (enum kind)k, stop, self, end);
                _exit(0);
            }
            kids[nkids++] = p;
        }
    }
    int left = nkids, killed = 0;
    uint64_t give_up = 0;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            left--;
            continue;
        }
        if (p < 0 && errno != EINTR)
            break;
        if (got_signal || lm_now() >= end)
            *stop = 1;
        if (*stop && !give_up)
            give_up = lm_now() + (uint64_t)o.grace * 1000000000ull;
        if (*stop && !killed && lm_now() > give_up) {
            fprintf(stderr, "qrec: processes still busy %d s after the stop: killed (their "
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
