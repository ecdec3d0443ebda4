/* fs/main.c — the `quorumfs` command: argument parsing, the start-up checks that give a
 * clear message and a non-zero exit (mountpoint, /dev/fuse, data directory, lock), going to
 * the background, logging (stderr in the foreground, syslog in the background), and the
 * embedded single node's lifetime: open node, mount, serve, unmount, close. */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <dirent.h>
#include "fs/mount.h"
#include "fs/node.h"

#define QUORUMFS_VERSION "0.1.0"

enum { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
static const char *const level_names[] = { "error", "warn", "info", "debug" };

typedef struct opts {
    const char *mountpoint;
    const char *data;
    int foreground;
    int log_level;
    uint64_t cache_max_bytes;
    uint64_t snapshot_bytes;
    char fuse_opts[1024];
} opts_t;

static int g_log_level = LOG_LVL_INFO;
static int g_syslog;

static void logmsg(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(int lvl, const char *fmt, ...)
{
    if (lvl > g_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (g_syslog) {
        static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
        vsyslog(prio[lvl], fmt, ap);
    } else {
        fprintf(stderr, "quorumfs: %s: ", level_names[lvl]);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: quorumfs mount MOUNTPOINT [options]\n"
        "       quorumfs --help | --version\n"
        "\n"
        "Mounts the embedded single quorumfs node at MOUNTPOINT: cache/, config/ and the\n"
        "read-only .cluster/ status directory, backed by a write-ahead log in DIR.\n"
        "\n"
        "options:\n"
        "  --data DIR             data directory (default: $XDG_DATA_HOME/quorumfs when\n"
        "                         XDG_DATA_HOME is set, otherwise ./data)\n"
        "  --foreground, -f       stay in the foreground and log to stderr (default: go to\n"
        "                         the background once mounted and log to syslog)\n"
        "  -o OPTS                extra FUSE mount options, comma-separated\n"
        "  --log-level LEVEL      error, warn, info (default) or debug\n"
        "  --cache-max-bytes N    LRU cap on cache/ value bytes (default 268435456)\n"
        "  --snapshot-bytes N     snapshot and compact the log after N bytes (default 64 MiB)\n"
        "\n"
        "Unmount with `fusermount3 -u MOUNTPOINT`, SIGTERM or SIGINT.\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* Returns 0 to go on, 1 when done (help/version printed), -1 on a usage error. */
static int parse_args(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->log_level = LOG_LVL_INFO;
    o->cache_max_bytes = 256ull << 20;
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 1;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("quorumfs %s\n", QUORUMFS_VERSION);
        return 1;
    }
    if (strcmp(argv[1], "mount") != 0) {
        fprintf(stderr, "quorumfs: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return -1;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--foreground") == 0 || strcmp(a, "-f") == 0) {
            o->foreground = 1;
        } else if (strcmp(a, "--data") == 0 && val) {
            o->data = val;
            i++;
        } else if (strcmp(a, "-o") == 0 && val) {
            size_t l = strlen(o->fuse_opts);
            if (l + strlen(val) + 2 > sizeof(o->fuse_opts)) {
                fprintf(stderr, "quorumfs: -o options too long\n");
                return -1;
            }
            snprintf(o->fuse_opts + l, sizeof(o->fuse_opts) - l, "%s%s", l ? "," : "", val);
            i++;
        } else if (strcmp(a, "--log-level") == 0 && val) {
            int k;
            for (k = 0; k < 4 && strcmp(val, level_names[k]) != 0; k++)
                ;
            if (k == 4) {
                fprintf(stderr, "quorumfs: --log-level must be error, warn, info or debug\n");
                return -1;
            }
            o->log_level = k;
            i++;
        } else if (strcmp(a, "--cache-max-bytes") == 0 && val) {
            if (parse_u64(val, &o->cache_max_bytes) < 0 || o->cache_max_bytes == 0) {
                fprintf(stderr, "quorumfs: --cache-max-bytes takes a positive integer\n");
                return -1;
            }
            i++;
        } else if (strcmp(a, "--snapshot-bytes") == 0 && val) {
            if (parse_u64(val, &o->snapshot_bytes) < 0 || o->snapshot_bytes < 4096) {
                fprintf(stderr, "quorumfs: --snapshot-bytes takes an integer >= 4096\n");
                return -1;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "quorumfs: unknown or incomplete option '%s'\n", a);
            return -1;
        } else if (!o->mountpoint) {
            o->mountpoint = a;
        } else {
            fprintf(stderr, "quorumfs: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if (!o->mountpoint) {
        fprintf(stderr, "quorumfs: mount needs a MOUNTPOINT\n");
        return -1;
    }
    return 0;
}

/* Nonzero when path (already canonical) is a mount point in /proc/self/mountinfo. */
static int is_mounted(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[8192];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char mp[4096];
        /* fields: id parent major:minor root mountpoint ... */
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
            continue;
        /* unescape \040 style octal escapes */
        char un[4096];
        size_t j = 0;
        for (size_t i = 0; mp[i] && j + 1 < sizeof(un); i++) {
            if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '7' && mp[i + 2] && mp[i + 3]) {
                un[j++] = (char)(((mp[i + 1] - '0') << 6) | ((mp[i + 2] - '0') << 3) | (mp[i + 3] - '0'));
                i += 3;
            } else {
                un[j++] = mp[i];
            }
        }
        un[j] = 0;
        found = strcmp(un, path) == 0;
    }
    fclose(f);
    return found;
}

static int check_mountpoint(const char *mp, char *canon)
{
    struct stat st;
    if (stat(mp, &st) != 0) {
        if (errno == ENOTCONN)
            fprintf(stderr, "quorumfs: %s is a dead mount (run `fusermount3 -u %s`)\n", mp, mp);
        else
            fprintf(stderr, "quorumfs: mountpoint %s: %s\n", mp, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quorumfs: mountpoint %s is not a directory\n", mp);
        return -1;
    }
    if (!realpath(mp, canon)) {
        fprintf(stderr, "quorumfs: mountpoint %s: %s\n", mp, strerror(errno));
        return -1;
    }
    if (is_mounted(canon)) {
        fprintf(stderr, "quorumfs: %s is already mounted\n", canon);
        return -1;
    }
    DIR *d = opendir(canon);
    if (!d) {
        fprintf(stderr, "quorumfs: mountpoint %s: %s\n", canon, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    if (!empty) {
        fprintf(stderr, "quorumfs: mountpoint %s is not empty\n", canon);
        return -1;
    }
    return 0;
}

static int check_dev_fuse(void)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "quorumfs: cannot open /dev/fuse: %s (is the fuse module loaded and "
                        "the device available here?)\n", strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* Creates the data directory if needed, checks it is writable, and takes its lock.
 * Returns the lock fd (kept open for the node's life) or -1 after printing why. */
static int take_data_dir(const char *dir)
{
    char path[PATH_MAX];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "quorumfs: cannot create data directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quorumfs: data directory %s is not a directory\n", dir);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/.write-test", dir);
    int t = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t < 0) {
        fprintf(stderr, "quorumfs: data directory %s is not writable: %s\n", dir, strerror(errno));
        return -1;
    }
    close(t);
    unlink(path);
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "quorumfs: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fprintf(stderr, "quorumfs: data directory %s is locked by another running node%s%s%s\n",
                dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        close(fd);
        return -1;
    }
    return fd;
}

static void write_pid(int lockfd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(lockfd, 0) != 0 || pwrite(lockfd, buf, (size_t)n, 0) != n)
        logmsg(LOG_LVL_WARN, "cannot write pid to the lock file: %s", strerror(errno));
}

/* Background mode: lines other modules write to stderr go to syslog at warning level. */
static void *stderr_to_syslog(void *arg)
{
    FILE *f = fdopen((int)(intptr_t)arg, "r");
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        syslog(LOG_WARNING, "%s", line);
    }
    if (f)
        fclose(f);
    return NULL;
}

static int ready_fd = -1;

static void on_ready(void *arg)
{
    const char *mp = arg;
    logmsg(LOG_LVL_INFO, "mounted at %s", mp);
    if (ready_fd >= 0) {
        if (write(ready_fd, "ok\n", 3) < 0)
            logmsg(LOG_LVL_WARN, "cannot notify the starting process");
        close(ready_fd);
        ready_fd = -1;
    }
}

/* Reports a start-up failure to the waiting parent (background) or stderr. */
static void fail_start(const char *msg)
{
    if (ready_fd >= 0) {
        if (write(ready_fd, msg, strlen(msg)) < 0 || write(ready_fd, "\n", 1) < 0)
            syslog(LOG_ERR, "%s", msg);
        close(ready_fd);
        ready_fd = -1;
    } else {
        fprintf(stderr, "quorumfs: %s\n", msg);
    }
}

/* Parent side of daemonizing: waits for the child to report "ok" or an error message. */
static int wait_child(int fd)
{
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(fd);
    if (strncmp(buf, "ok\n", 3) == 0)
        return 0;
    fprintf(stderr, "quorumfs: %s", n ? buf : "the node exited during start-up\n");
    if (n && buf[n - 1] != '\n')
        fputc('\n', stderr);
    return 1;
}

static int serve(const opts_t *o, const char *canon, int lockfd)
{
    write_pid(lockfd);
    node_opts_t no = {
        .data_dir = o->data,
        .cache_max_bytes = o->cache_max_bytes,
        .snapshot_bytes = o->snapshot_bytes,
    };
    node_t *node;
    char *err = NULL;
    int rc = node_open(&no, &node, &err);
    if (rc < 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "cannot start: %s", err ? err : "node open failed");
        fail_start(msg);
        free(err);
        return 1;
    }
    char *argv[4] = { "quorumfs", "-ofsname=quorumfs,subtype=quorumfs", NULL, NULL };
    char extra[1100];
    int argc = 2;
    if (o->fuse_opts[0]) {
        snprintf(extra, sizeof(extra), "-o%s", o->fuse_opts);
        argv[argc++] = extra;
    }
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    rc = mount_serve(node, canon, &args, on_ready, (void *)canon);
    if (ready_fd >= 0)
        fail_start("cannot mount (see the messages above or syslog)");
    fuse_opt_free_args(&args);
    logmsg(LOG_LVL_INFO, "unmounted %s; closing the node", canon);
    node_close(node);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    opts_t o;
    char canon[PATH_MAX], datapath[PATH_MAX];
    int pr = parse_args(argc, argv, &o);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    g_log_level = o.log_level;
    if (!o.data) {
        const char *x = getenv("XDG_DATA_HOME");
        if (x && x[0]) {
            snprintf(datapath, sizeof(datapath), "%s/quorumfs", x);
            o.data = datapath;
        } else {
            o.data = "./data";
        }
    }
    if (check_mountpoint(o.mountpoint, canon) < 0 || check_dev_fuse() < 0)
        return 1;
    int lockfd = take_data_dir(o.data);
    if (lockfd < 0)
        return 1;
    char datacanon[PATH_MAX];
    if (!realpath(o.data, datacanon)) {
        fprintf(stderr, "quorumfs: data directory %s: %s\n", o.data, strerror(errno));
        return 1;
    }
    o.data = datacanon;   /* the daemon changes directory to / */
    if (o.foreground)
        return serve(&o, canon, lockfd);

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        perror("quorumfs: pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("quorumfs: fork");
        return 1;
    }
    if (pid > 0) {
        close(pfd[1]);
        return wait_child(pfd[0]);
    }
    close(pfd[0]);
    ready_fd = pfd[1];
    setsid();
    if (chdir("/") != 0)
        _exit(1);
    openlog("quorumfs", LOG_PID, LOG_DAEMON);
    g_syslog = 1;
    int nul = open("/dev/null", O_RDWR);
    int lp[2];
    if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        close(nul);
    }
    if (pipe(lp) == 0) {
        dup2(lp[1], 2);
        close(lp[1]);
        pthread_t t;
        if (pthread_create(&t, NULL, stderr_to_syslog, (void *)(intptr_t)lp[0]) == 0)
            pthread_detach(t);
    }
    int rc = serve(&o, canon, lockfd);
    closelog();
    return rc;
}
