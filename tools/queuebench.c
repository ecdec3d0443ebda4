/* tools/queuebench.c — the client of the queues/locks benchmark (tools/bench-queues). It forks
 * P processes that each loop one operation for S seconds against a mount, timing every cycle:
 *   push     open(Q/push) + write one line + close          (one committed message)
 *   pushfd   write one line to an open Q/push                 (one committed message)
 *   pop      open(Q/pop) + read + close                        (one removed message)
 *   lock     open(L/lk<p>) + flock(LOCK_EX) + flock(LOCK_UN) + close (own lock per process)
 *   handoff  two processes alternate on one lock; reports release -> next grant latency
 *   fsync    write 100 bytes + fdatasync on a file in DIR (the disk's floor)
 * and prints one line: mode procs ops ops_s p50_us p99_us. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 256
#define MAX_SAMPLES (1 << 20)

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

typedef struct shared {
    uint64_t rel_ns;             /* handoff: when the last holder released */
    int last;                    /* handoff: who released */
} shared_t;

/* One process's loop; writes its latencies (ns) to fd out, preceded by the count. */
static int worker(const char *mode, const char *dir, int id, double secs, shared_t *sh, int out)
{
    uint64_t *lat = malloc(MAX_SAMPLES * sizeof(uint64_t));
    uint64_t n = 0, errors = 0;
    char path[4096], line[128];
    int keep = -1;
    if (!lat)
        return 1;
    if (strcmp(mode, "pushfd") == 0 && (keep = open(strcat(strcpy(path, dir), "/push"),
                                                    O_WRONLY)) < 0)
        return perror(path), 1;
    if (strcmp(mode, "fsync") == 0) {
        snprintf(path, sizeof(path), "%s/fsync-floor.%d", dir, id);
        if ((keep = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
            return perror(path), 1;
    }
    if (strcmp(mode, "handoff") == 0)
        snprintf(path, sizeof(path), "%s/handoff", dir);
    int hfd = strcmp(mode, "handoff") == 0 ? open(path, O_RDONLY | O_CREAT, 0644) : -1;
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
    while (now_ns() < end && n < MAX_SAMPLES && errors < 100) {
        uint64_t t0 = now_ns();
        int ok = 1;
        if (strcmp(mode, "push") == 0 || strcmp(mode, "pushfd") == 0) {
            int len = snprintf(line, sizeof(line), "bench-%d-%llu\n", id, (unsigned long long)n);
            int fd = keep >= 0 ? keep : open(strcat(strcpy(path, dir), "/push"), O_WRONLY);
            ok = fd >= 0 && write(fd, line, (size_t)len) == len;
            if (fd >= 0 && keep < 0)
                close(fd);
        } else if (strcmp(mode, "pop") == 0) {
            int fd = open(strcat(strcpy(path, dir), "/pop"), O_RDONLY | O_NONBLOCK);
            char buf[4096];
            ok = fd >= 0 && read(fd, buf, sizeof(buf)) > 0;
            if (fd >= 0)
                close(fd);
        } else if (strcmp(mode, "lock") == 0) {
            snprintf(path, sizeof(path), "%s/lk%d", dir, id);
            int fd = open(path, O_RDONLY | O_CREAT, 0644);
            ok = fd >= 0 && flock(fd, LOCK_EX) == 0 && flock(fd, LOCK_UN) == 0;
            if (fd >= 0)
                close(fd);
        } else if (strcmp(mode, "handoff") == 0) {
            ok = hfd >= 0 && flock(hfd, LOCK_EX) == 0;
            uint64_t got = now_ns();
            int measured = ok && sh->last != id && sh->rel_ns;
            if (measured)
                lat[n] = got - sh->rel_ns;
            usleep(3000);            /* the other process is surely queued by now */
            sh->last = id;
            sh->rel_ns = now_ns();
            if (ok && flock(hfd, LOCK_UN) != 0)
                ok = 0;
            if (ok && measured)
                n++;
            if (!ok)
                errors++;
            continue;
        } else if (strcmp(mode, "fsync") == 0) {
            memset(line, 'x', 100);
            ok = pwrite(keep, line, 100, 0) == 100 && fdatasync(keep) == 0;
        } else {
            fprintf(stderr, "queuebench: unknown mode %s\n", mode);
            return 2;
        }
        if (!ok) {
            if (errors++ == 0)
                fprintf(stderr, "queuebench: %s: %s\n", mode, strerror(errno));
            continue;
        }
        lat[n++] = now_ns() - t0;
    }
    if (write(out, &n, sizeof(n)) != sizeof(n) ||
        write(out, lat, n * sizeof(uint64_t)) != (ssize_t)(n * sizeof(uint64_t)))
        return 1;
    return errors >= 100;
}

static int read_all(int fd, void *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t r = read(fd, (char *)p + off, len - off);
        if (r <= 0)
            return -1;
        off += (size_t)r;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: queuebench MODE DIR PROCS SECONDS\n"
                        "  MODE: push pushfd pop lock handoff fsync; DIR: a queue dir, the\n"
                        "  locks dir, or (fsync) a directory on the disk to measure\n");
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2];
    int procs = atoi(argv[3]);
    double secs = atof(argv[4]);
    if (strcmp(mode, "handoff") == 0)
        procs = 2;
    if (procs < 1 || procs > MAX_PROCS || secs <= 0)
        return 2;
    shared_t *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    memset(sh, 0, sizeof(*sh));
    int pipes[MAX_PROCS];
    pid_t pids[MAX_PROCS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < procs; i++) {
        int p[2];
        if (pipe(p) != 0)
            return 1;
        pids[i] = fork();
        if (pids[i] == 0) {
            close(p[0]);
            _exit(worker(mode, dir, i, secs, sh, p[1]));
        }
        close(p[1]);
        pipes[i] = p[0];
    }
    uint64_t *all = malloc((size_t)procs * MAX_SAMPLES * sizeof(uint64_t) / 4 + 1);
    size_t total = 0, cap = (size_t)procs * MAX_SAMPLES / 4;
    int failed = 0;
    for (int i = 0; i < procs; i++) {
        uint64_t n = 0;
        if (read_all(pipes[i], &n, sizeof(n)) < 0) {
            failed = 1;
            continue;
        }
        uint64_t *buf = malloc(n * sizeof(uint64_t) + 1);
        if (!buf || read_all(pipes[i], buf, n * sizeof(uint64_t)) < 0) {
            failed = 1;
            free(buf);
            continue;
        }
        for (uint64_t j = 0; j < n && total < cap; j++)
            all[total++] = buf[j];
        free(buf);
        close(pipes[i]);
    }
    for (int i = 0; i < procs; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    qsort(all, total, sizeof(uint64_t), cmp_u64);
    uint64_t p50 = total ? all[total / 2] : 0, p99 = total ? all[total * 99 / 100] : 0;
    printf("mode=%s procs=%d ops=%zu ops_s=%.0f p50_us=%.0f p99_us=%.0f%s\n", mode, procs,
           total, strcmp(mode, "handoff") == 0 ? 0.0 : (double)total / elapsed,
           (double)p50 / 1e3, (double)p99 / 1e3, failed ? " errors=1" : "");
    free(all);
    return failed;
}
