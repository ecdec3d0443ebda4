/* fs/main.c — the `quorumfs` command: argument parsing (the `quorumfs mount` form and the
 * `quorumfs SOURCE MOUNTPOINT -o OPTS` form mount.fuse3 and fstab use), the start-up checks
 * that give a clear message and a non-zero exit (options, mountpoint, /dev/fuse, data
 * directory, lock), going to the background, logging (stderr in the foreground, syslog in
 * the background), and the node's lifetime: open node, mount, serve, unmount, close. The
 * node is the embedded single node, or with --id/--listen/--peers (-o id=,listen=,peers=)
 * a member of a cluster (docs/CLUSTER.md), whose options are checked here before anything
 * is created. A start-up that fails removes the data directory it created itself. */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <ftw.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <netdb.h>
#include <pwd.h>
#include "fs/mount.h"
#include "fs/cli_cluster.h"
#include "fs/node.h"

#define QUORUMFS_VERSION "0.1.0"
#define MAX_PEERS 32              /* members of a cluster */

enum { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* Exit statuses (docs/quorumfs.1, EXIT STATUS). */
enum { EXIT_OK = 0, EXIT_START = 1, EXIT_USAGE = 2 };

typedef struct opts {
    const char *mountpoint;
    const char *source;       /* mount.fuse3 form: the fstab "device" column (fsname) */
    const char *data;
    int foreground;
    int log_level;
    uint64_t cache_max_bytes;
    uint64_t snapshot_bytes;
    int allow_other;
    int default_permissions;
    /* cluster: --id, --listen, --peers, --shards, --replicas, --tls-* (0 / NULL when not
     * given) */
    uint64_t id;
    const char *listen;
    char *tls[3];                 /* --tls-cert, --tls-key, --tls-ca: absolute paths */
    const char *peers;        /* points at peersbuf: "ID=HOST:PORT,..." as given */
    uint64_t shards, replicas;
    uint64_t join;                /* --join CLUSTER_ID: a new member's first start (0: none) */
    int no_lease_reads;           /* --no-lease-reads, -o no_lease_reads */
    int jobs;                     /* --jobs 1, --no-jobs -1, default 0 (docs/JOBS.md) */
    const char *jobs_user;        /* --jobs-user USER, -o jobs_user=USER */
    const char *log_file;         /* --log-file F, -o log_file=F */
    char peersbuf[4096];
    group_peer_t peer[MAX_PEERS];   /* parsed from peers by check_cluster */
    char peeraddr[MAX_PEERS][128];
    size_t n_peers;
    uint64_t cluster_id;
    char fuse_opts[4096];     /* mount options handed to libfuse, comma-separated */
    char optbuf[8192];        /* copies of the -o arguments; data= etc. point into it */
    size_t optbuf_used;
} opts_t;

static int g_log_level = LOG_LVL_INFO;
static int g_syslog;
static int g_log_fd = -1;     /* --log-file: opened by main; fd 2 once the mount is live */
static int g_log_stamped;     /* lines carry a time and the pid (they go to the log file) */

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
    } else if (g_log_stamped) {
        /* one write(2) per line: the file is appended to by every thread (and maybe by
         * other daemons sharing it) */
        char line[2048];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        int n = (int)strftime(line, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ quorumfs[%d]: %s: ",
                      ts.tv_nsec / 1000000, (int)getpid(), level_names[lvl]);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        n = m < 0 ? n : n + m >= (int)sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m;
        line[n++] = '\n';
        if (write(2, line, (size_t)n) < 0) {
            /* nowhere left to say it */
        }
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
        "       quorumfs SOURCE MOUNTPOINT -o data=DIR[,OPTION...]   (mount.fuse3, fstab)\n"
        "       quorumfs cluster status --cluster HOST:PORT [--tls-cert F --tls-key F\n"
        "                --tls-ca F]   (a cluster member's view: members, shards, health)\n"
        "       quorumfs cluster drain|undrain ID --cluster HOST:PORT [TLS options]\n"
        "                (move every leadership away from member ID, or let it lead again)\n"
        "       quorumfs --help | --version\n"
        "\n"
        "Mounts the embedded single quorumfs node at MOUNTPOINT, backed by a write-ahead log\n"
        "in the data directory. Returns once the mount is live, then serves it in the\n"
        "background (with --foreground it stays attached until unmounted).\n"
        "\n"
        "The mount's top-level directories:\n"
        "  cache/     key/value cache: TTLs, sliding TTLs, an LRU cap           served\n"
        "  config/    versioned configuration: history, file@rev, .events       served\n"
        "  queues/    FIFO queues: push, pop, leased claims, dead letters       served\n"
        "  locks/     cluster-wide locks with fencing tokens (flock, O_EXCL)    served\n"
        "  logs/      append-only logs: offsets, retention, lz4, .follow/       served\n"
        "  services/  service registry: TTLs, TCP health checks, .pick, .events  served\n"
        "  jobs/      scheduled jobs (cron, @every), exactly-once runs, runs/<n>/ served\n"
        "  search/    full-text search: BM25 over every shard, .q/<query>       served\n"
        "  .cluster/  read-only status: health, members, shards, metrics\n"
        "\n"
        "options:\n"
        "  --data DIR             data directory, created if missing (default:\n"
        "                         $XDG_DATA_HOME/quorumfs when XDG_DATA_HOME is set,\n"
        "                         otherwise ./data); one node per directory (DIR/LOCK)\n"
        "  --foreground, -f       stay in the foreground and log to stderr (default: go to\n"
        "                         the background once mounted and log to syslog); under\n"
        "                         systemd (Type=notify) readiness is sent to NOTIFY_SOCKET\n"
        "  -o OPT[,OPT...]        mount options, below; -o may be repeated\n"
        "  --log-level LEVEL      error, warn, info (default) or debug\n"
        "  --cache-max-bytes N    LRU cap on cache/ value bytes (default 268435456)\n"
        "  --snapshot-bytes N     snapshot and compact the log after N bytes (default 64 MiB)\n"
        "  --log-file F           once mounted, log to F (appended, each line with its time\n"
        "                         and pid) instead of syslog or stderr; a crash's signal\n"
        "                         and backtrace go there too\n"
        "\n"
        "cluster (docs/CLUSTER.md): a node of a replicated cluster instead of the embedded\n"
        "node; every node gets the same --peers list, and the first start of them forms it:\n"
        "  --id N                 this node's id: 1..4095, one of the ids in --peers\n"
        "  --peers ID=HOST:PORT,...  every member's id and peer address ([v6]:PORT for IPv6),\n"
        "                         this node included\n"
        "  --listen HOST:PORT     where this node listens for its peers (default: its own\n"
        "                         address in --peers)\n"
        "  --shards S             shards (Raft groups), 1..256, default 16; the same at\n"
        "                         every start\n"
        "  --replicas R           voters of each shard, placed by rendezvous hashing;\n"
        "                         default 3 (or every node, with fewer); the other nodes\n"
        "                         follow each shard as learners\n"
        "  --tls-cert F, --tls-key F, --tls-ca F  mutual TLS 1.3 between the nodes: this\n"
        "                         node's certificate (subject CN quorumfs-<id>), its key,\n"
        "                         and the CA bundle; all three or none; read again on\n"
        "                         SIGHUP (docs/TRANSPORT.md \"TLS\")\n"
        "  --join CLUSTER_ID      the first start of a member added with `quorumfs cluster\n"
        "                         add` (which prints the whole command): it joins the\n"
        "                         cluster of that id (hex) instead of founding one\n"
        "  --no-lease-reads       every read barrier confirms leadership with a heartbeat\n"
        "                         round instead of the leader's lease (for clocks that\n"
        "                         stop while a VM is paused; docs/CLUSTER.md); same on\n"
        "                         every node\n"
        "  --jobs, --no-jobs      run jobs/ runs on this node (default: on for the\n"
        "                         embedded node, off on a cluster node; docs/JOBS.md)\n"
        "  --jobs-user USER       runs execute as USER (a root mount only, unless USER is\n"
        "                         the mounting user); default: the mounting user, and\n"
        "                         nobody for a root mount unless --jobs-user root\n"
        "  -h, --help             this text\n"
        "  --version              the version\n"
        "\n"
        "mount options (-o):\n"
        "  data=DIR, log_level=LEVEL, cache_max_bytes=N, snapshot_bytes=N, id=N,\n"
        "  listen=HOST:PORT, peers=ID=HOST:PORT,ID=HOST:PORT,..., shards=S, replicas=R,\n"
        "  tls_cert=F, tls_key=F, tls_ca=F, no_lease_reads, jobs, no_jobs, jobs_user=U,\n"
        "  log_file=F\n"
        "                         the options above, as fstab can give them\n"
        "  default_permissions    the kernel enforces the files' modes and owners\n"
        "  allow_other            let other users use the mount; only together with\n"
        "                         default_permissions (refused alone)\n"
        "  ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, sync, ...\n"
        "                         generic mount options, passed to FUSE (relatime is the\n"
        "                         default; strictatime, lazytime, nodiratime and the like\n"
        "                         have no effect on FUSE and are ignored with a warning)\n"
        "  defaults, auto, noauto, user, users, nouser, owner, group, _netdev, nofail,\n"
        "  x-*, comment=*         fstab-only options, accepted and ignored\n"
        "  (any other FUSE mount option is passed to FUSE, which refuses unknown ones)\n"
        "\n"
        "fstab:  quorumfs /mnt/q fuse.quorumfs data=/var/lib/quorumfs,nosuid,nodev 0 0\n"
        "Unmount with `umount MOUNTPOINT` (root), `fusermount3 -u MOUNTPOINT`, SIGTERM or\n"
        "SIGINT; SIGHUP reloads the TLS files of a cluster node (it never unmounts).\n"
        "Exit status: 0 mounted (or, in the foreground, cleanly unmounted),\n"
        "1 start-up or mount failure, 2 bad usage. See quorumfs(1).\n");
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

/* Sets one valued option, given as `--name VAL` or `-o name=VAL` (shown names it in
 * messages). Returns 0, or -1 after printing why. */
static int set_valued(opts_t *o, const char *name, const char *val, const char *shown)
{
    if (!val || !val[0]) {
        fprintf(stderr, "quorumfs: %s needs a value\n", shown);
        return -1;
    }
    if (strcmp(name, "data") == 0) {
        o->data = val;
    } else if (strcmp(name, "log_level") == 0) {
        int k;
        for (k = 0; k < 4 && strcmp(val, level_names[k]) != 0; k++)
            ;
        if (k == 4) {
            fprintf(stderr, "quorumfs: %s must be error, warn, info or debug\n", shown);
            return -1;
        }
        o->log_level = k;
    } else if (strcmp(name, "cache_max_bytes") == 0) {
        if (parse_u64(val, &o->cache_max_bytes) < 0 || o->cache_max_bytes == 0) {
            fprintf(stderr, "quorumfs: %s takes a positive integer\n", shown);
            return -1;
        }
    } else if (strcmp(name, "snapshot_bytes") == 0) {
        if (parse_u64(val, &o->snapshot_bytes) < 0 || o->snapshot_bytes < 4096) {
            fprintf(stderr, "quorumfs: %s takes an integer >= 4096\n", shown);
            return -1;
        }
    } else if (strcmp(name, "id") == 0) {
        if (parse_u64(val, &o->id) < 0 || o->id == 0 || o->id > NODE_ID_MAX) {
            fprintf(stderr, "quorumfs: %s takes a node id from 1 to %d\n", shown, NODE_ID_MAX);
            return -1;
        }
    } else if (strcmp(name, "listen") == 0) {
        o->listen = val;
    } else if (strcmp(name, "jobs_user") == 0) {
        o->jobs_user = val;
    } else if (strcmp(name, "log_file") == 0) {
        o->log_file = val;
    } else if (strncmp(name, "tls_", 4) == 0) {
        /* resolved now: the daemon reads them after it left the caller's directory */
        int k = !strcmp(name, "tls_cert") ? 0 : !strcmp(name, "tls_key") ? 1 : 2;
        char *abs = realpath(val, NULL);
        if (!abs || access(abs, R_OK) != 0) {
            fprintf(stderr, "quorumfs: %s: cannot read %s: %s\n", shown, val, strerror(errno));
            free(abs);
            return -1;
        }
        free(o->tls[k]);
        o->tls[k] = abs;
    } else if (strcmp(name, "peers") == 0) {
        if (strlen(val) >= sizeof(o->peersbuf)) {
            fprintf(stderr, "quorumfs: %s: peer list too long\n", shown);
            return -1;
        }
        snprintf(o->peersbuf, sizeof(o->peersbuf), "%s", val);
        o->peers = o->peersbuf;
    } else if (strcmp(name, "join") == 0) {
        char *end;
        errno = 0;
        o->join = strtoull(val, &end, 16);
        if (errno || end == val || *end || o->join == 0 || val[0] == '-') {
            fprintf(stderr, "quorumfs: %s takes the cluster id `quorumfs cluster add` printed "
                            "(hexadecimal, nonzero), not '%s'\n", shown, val);
            return -1;
        }
    } else if (strcmp(name, "shards") == 0 || strcmp(name, "replicas") == 0) {
        uint64_t *dst = name[0] == 's' ? &o->shards : &o->replicas;
        if (parse_u64(val, dst) < 0 || *dst == 0) {
            fprintf(stderr, "quorumfs: %s takes a positive integer\n", shown);
            return -1;
        }
    } else {
        return -1;   /* not reached: callers pass the names above */
    }
    return 0;
}

static const char *const valued_names[] = { "data", "log_level", "cache_max_bytes",
                                            "snapshot_bytes", "id", "listen", "peers",
                                            "shards", "replicas", "tls_cert", "tls_key",
                                            "tls_ca", "join", "jobs_user",
                                            "log_file" };

/* A -o token that continues a peers= list ("2=HOST:PORT" after "peers=1=HOST:PORT"): the
 * list's commas are also -o's separators. */
static int peer_token(const char *opt)
{
    size_t d = strspn(opt, "0123456789");
    return d > 0 && opt[d] == '=';
}

/* Options that only mean something to mount(8), fstab or systemd: accepted, not passed. */
static int fstab_only(const char *opt)
{
    static const char *const names[] = { "defaults", "auto", "noauto", "user", "users",
                                         "nouser", "owner", "group", "_netdev", "nofail" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(opt, names[i]) == 0)
            return 1;
    return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* Access-time options libfuse 3.14 does not take. relatime is what a FUSE mount gets
 * anyway; the others are accepted with a warning, as they have no effect here. */
static int atime_opt(const char *opt)
{
    static const char *const names[] = { "norelatime", "strictatime", "nostrictatime",
                                         "lazytime", "nolazytime", "diratime", "nodiratime" };
    if (strcmp(opt, "relatime") == 0)
        return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(opt, names[i]) == 0) {
            fprintf(stderr, "quorumfs: warn: -o %s has no effect on a FUSE mount; ignored\n", opt);
            return 1;
        }
    return 0;
}

/* One -o argument: our own options are taken, fstab-only ones dropped, the rest appended to
 * o->fuse_opts for libfuse. The text is copied into o->optbuf (values point into it). */
static int parse_mount_opts(opts_t *o, const char *arg)
{
    size_t len = strlen(arg);
    if (o->optbuf_used + len + 1 > sizeof(o->optbuf)) {
        fprintf(stderr, "quorumfs: -o options too long\n");
        return -1;
    }
    char *copy = o->optbuf + o->optbuf_used;
    memcpy(copy, arg, len + 1);
    o->optbuf_used += len + 1;
    char *save = NULL;
    int in_peers = 0;
    for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(opt, '=');
        int ours = 0;
        if (in_peers && peer_token(opt)) {
            size_t l = strlen(o->peersbuf);
            if (l + strlen(opt) + 2 > sizeof(o->peersbuf)) {
                fprintf(stderr, "quorumfs: -o peers=: peer list too long\n");
                return -1;
            }
            snprintf(o->peersbuf + l, sizeof(o->peersbuf) - l, ",%s", opt);
            continue;
        }
        in_peers = strncmp(opt, "peers=", 6) == 0;
        if (eq) {
            size_t klen = (size_t)(eq - opt);
            char key[32];
            if (klen < sizeof(key)) {
                for (size_t i = 0; i < klen; i++)
                    key[i] = opt[i] == '-' ? '_' : opt[i];
                key[klen] = 0;
                for (size_t i = 0; i < sizeof(valued_names) / sizeof(valued_names[0]); i++)
                    if (strcmp(key, valued_names[i]) == 0)
                        ours = 1;
                if (ours) {
                    char shown[48];
                    snprintf(shown, sizeof(shown), "-o %s=", key);
                    if (set_valued(o, key, eq + 1, shown) < 0)
                        return -1;
                }
            }
        } else {
            for (size_t i = 0; i < sizeof(valued_names) / sizeof(valued_names[0]); i++)
                if (strcmp(opt, valued_names[i]) == 0) {
                    fprintf(stderr, "quorumfs: -o %s needs a value (-o %s=...)\n", opt, opt);
                    return -1;
                }
        }
        if (strcmp(opt, "no_lease_reads") == 0 || strcmp(opt, "no-lease-reads") == 0) {
            o->no_lease_reads = 1;
            continue;
        }
        if (strcmp(opt, "jobs") == 0 || strcmp(opt, "no_jobs") == 0) {
            o->jobs = opt[0] == 'n' ? -1 : 1;
            continue;
        }
        if (ours || fstab_only(opt) || atime_opt(opt))
            continue;
        if (strcmp(opt, "allow_other") == 0)
            o->allow_other = 1;
        else if (strcmp(opt, "default_permissions") == 0)
            o->default_permissions = 1;
        size_t l = strlen(o->fuse_opts);
        if (l + strlen(opt) + 2 > sizeof(o->fuse_opts)) {
            fprintf(stderr, "quorumfs: -o options too long\n");
            return -1;
        }
        snprintf(o->fuse_opts + l, sizeof(o->fuse_opts) - l, "%s%s", l ? "," : "", opt);
    }
    return 0;
}

/* Matches a long option `name` given as `--name=VAL` or `--name VAL` (then consumes the next
 * argument). Returns 1 on a match (*val NULL when the value is missing), else 0. */
static int long_opt(const char *a, const char *name, int argc, char **argv, int *i,
                    const char **val)
{
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != 0)
        return 0;
    *val = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* Splits "HOST:PORT" or "[V6]:PORT" into host (without brackets) and port. Returns 0, or
 * -1 with why pointing at a reason. */
static int split_hostport(const char *a, char *host, size_t hsize, char *port, size_t psize,
                          const char **why)
{
    const char *colon;
    size_t hl;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close || close[1] != ':') {
            *why = "an IPv6 address is written [ADDR]:PORT";
            return -1;
        }
        hl = (size_t)(close - a - 1);
        a++;
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon) {
            *why = "no :PORT";
            return -1;
        }
        if (memchr(a, ':', (size_t)(colon - a))) {
            *why = "an IPv6 address is written [ADDR]:PORT";
            return -1;
        }
        hl = (size_t)(colon - a);
    }
    if (hl == 0 || hl >= hsize) {
        *why = hl ? "host name too long" : "no host";
        return -1;
    }
    memcpy(host, a, hl);
    host[hl] = 0;
    uint64_t p;
    if (parse_u64(colon + 1, &p) < 0 || p == 0 || p > 65535 || strlen(colon + 1) >= psize) {
        *why = "the port must be a number from 1 to 65535";
        return -1;
    }
    snprintf(port, psize, "%s", colon + 1);
    return 0;
}

/* --jobs-user USER (docs/JOBS.md "Who runs it"): USER must exist, and a mount by another
 * user than root can only run jobs as itself. 0, or -1 after printing why. */
static int check_jobs_user(const char *user)
{
    if (!user)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        fprintf(stderr, "quorumfs: --jobs-user %s: no such user\n", user);
        return -1;
    }
    if (geteuid() != 0 && pw->pw_uid != geteuid()) {
        fprintf(stderr, "quorumfs: --jobs-user %s: only a root mount runs jobs as another "
                        "user\n", user);
        return -1;
    }
    return 0;
}

/* Checks the cluster options and parses --peers into o->peer[]. Returns 0 (also when no
 * cluster option is given: the embedded node), or -1 after printing why. */
static int check_cluster(opts_t *o)
{
    char host[256], port[16];
    const char *why = NULL;
    if (!o->peers) {
        if (o->id || o->listen || o->shards || o->replicas || o->tls[0] || o->tls[1] ||
            o->tls[2] || o->no_lease_reads || o->join) {
            fprintf(stderr, "quorumfs: --id, --listen, --shards, --replicas, --tls-*, --join and "
                            "--no-lease-reads make a cluster node and need --peers "
                            "ID=HOST:PORT,... (quorumfs --help)\n");
            return -1;
        }
        return 0;
    }
    if (!o->id) {
        fprintf(stderr, "quorumfs: --peers needs --id N: this node's id in the peer list\n");
        return -1;
    }
    char list[sizeof(o->peersbuf)], *save = NULL;
    snprintf(list, sizeof(list), "%s", o->peers);
    int self = 0;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        uint64_t id;
        if (!eq) {
            fprintf(stderr, "quorumfs: --peers: '%s' is not ID=HOST:PORT\n", tok);
            return -1;
        }
        *eq = 0;
        if (parse_u64(tok, &id) < 0 || id == 0 || id > NODE_ID_MAX) {
            fprintf(stderr, "quorumfs: --peers: bad node id '%s' (ids are 1 to %d)\n", tok,
                    NODE_ID_MAX);
            return -1;
        }
        if (split_hostport(eq + 1, host, sizeof(host), port, sizeof(port), &why) < 0 ||
            strlen(eq + 1) >= sizeof(o->peeraddr[0])) {
            fprintf(stderr, "quorumfs: --peers: node %llu: bad address '%s': %s\n",
                    (unsigned long long)id, eq + 1, why ? why : "too long");
            return -1;
        }
        for (size_t i = 0; i < o->n_peers; i++) {
            if (o->peer[i].id == id) {
                fprintf(stderr, "quorumfs: --peers: node id %llu is listed twice\n",
                        (unsigned long long)id);
                return -1;
            }
            if (strcmp(o->peer[i].addr, eq + 1) == 0) {
                fprintf(stderr, "quorumfs: --peers: nodes %llu and %llu have the same address "
                        "%s\n", (unsigned long long)o->peer[i].id, (unsigned long long)id,
                        eq + 1);
                return -1;
            }
        }
        if (o->n_peers == MAX_PEERS) {
            fprintf(stderr, "quorumfs: --peers: more than %d nodes\n", MAX_PEERS);
            return -1;
        }
        snprintf(o->peeraddr[o->n_peers], sizeof(o->peeraddr[0]), "%s", eq + 1);
        o->peer[o->n_peers].id = id;
        o->peer[o->n_peers].addr = o->peeraddr[o->n_peers];
        o->n_peers++;
        self |= id == o->id;
    }
    if (!o->n_peers) {
        fprintf(stderr, "quorumfs: --peers is empty\n");
        return -1;
    }
    if (!self) {
        fprintf(stderr, "quorumfs: --id %llu is not in --peers (%s)\n",
                (unsigned long long)o->id, o->peers);
        return -1;
    }
    if (o->listen && split_hostport(o->listen, host, sizeof(host), port, sizeof(port),
                                    &why) < 0) {
        fprintf(stderr, "quorumfs: --listen: bad address '%s': %s\n", o->listen, why);
        return -1;
    }
    if (o->shards > NODE_SHARDS_MAX) {
        fprintf(stderr, "quorumfs: --shards %llu: at most %d shards\n",
                (unsigned long long)o->shards, NODE_SHARDS_MAX);
        return -1;
    }
    int ntls = !!o->tls[0] + !!o->tls[1] + !!o->tls[2];
    if (ntls && ntls < 3) {
        fprintf(stderr, "quorumfs: TLS needs all three of --tls-cert, --tls-key and --tls-ca "
                        "(docs/TRANSPORT.md \"TLS\")\n");
        return -1;
    }
    if (o->replicas > o->n_peers) {
        fprintf(stderr, "quorumfs: --replicas %llu: at most the number of peers (%zu)\n",
                (unsigned long long)o->replicas, o->n_peers);
        return -1;
    }
    if (o->n_peers > 16) {
        fprintf(stderr, "quorumfs: %zu peers: at most 16 are supported yet (every node follows "
                "every shard, and a Raft group holds at most 16 members)\n", o->n_peers);
        return -1;
    }
    /* The cluster id: from the member ids (FNV-1a over them in order), the same on every
     * node given the same list, whatever the spelling of the addresses. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t id = 1; id <= NODE_ID_MAX; id++)
        for (size_t i = 0; i < o->n_peers; i++)
            if (o->peer[i].id == id)
                for (int k = 0; k < 8; k++) {
                    h ^= (id >> (8 * k)) & 0xff;
                    h *= 0x100000001b3ull;
                }
    o->cluster_id = h ? h : 1;
    if (o->join)                  /* a new member: the cluster's id, fixed at its founding */
        o->cluster_id = o->join;
    return 0;
}

/* The address this node listens on for its peers. */
static const char *listen_addr(const opts_t *o)
{
    if (o->listen)
        return o->listen;
    for (size_t i = 0; i < o->n_peers; i++)
        if (o->peer[i].id == o->id)
            return o->peer[i].addr;
    return NULL;
}

/* Tries to bind the listen address (then lets it go), so that a taken port or an address
 * not of this machine is reported before anything starts. Returns 0 or -1 (printed). */
static int check_listen(const opts_t *o)
{
    char host[256], port[16];
    const char *why, *addr = listen_addr(o);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *res = NULL;
    if (!addr || split_hostport(addr, host, sizeof(host), port, sizeof(port), &why) < 0)
        return 0;   /* check_cluster refused it already */
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "quorumfs: cannot resolve the listen address %s: %s\n", addr,
                gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, err = 0;
    if (fd < 0)
        err = errno;
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
             bind(fd, res->ai_addr, res->ai_addrlen) != 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    if (err == EADDRINUSE) {
        fprintf(stderr, "quorumfs: the listen address %s is in use (another node or program "
                        "listens on that port)\n", addr);
        return -1;
    }
    if (err) {
        fprintf(stderr, "quorumfs: cannot listen on %s: %s\n", addr, strerror(err));
        return -1;
    }
    return 0;
}

/* Returns 0 to go on, 1 when done (help/version printed), -1 on a usage error (printed). */
static int parse_args(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->log_level = LOG_LVL_INFO;
    o->cache_max_bytes = 256ull << 20;
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    /* `quorumfs mount MOUNTPOINT ...`, or mount.fuse3's `quorumfs [SOURCE] MOUNTPOINT -o
     * OPTS`: the same options either way. */
    int i = strcmp(argv[1], "mount") == 0 ? 2 : 1;
    const char *pos[2];
    int npos = 0;
    for (; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--version") == 0) {
            printf("quorumfs %s\n", QUORUMFS_VERSION);
            return 1;
        } else if (strcmp(a, "--foreground") == 0 || strcmp(a, "-f") == 0) {
            o->foreground = 1;
        } else if (strcmp(a, "-o") == 0 || (a[0] == '-' && a[1] == 'o' && a[2])) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "quorumfs: -o needs a value\n");
                return -1;
            }
            if (parse_mount_opts(o, v) < 0)
                return -1;
        } else if (long_opt(a, "--data", argc, argv, &i, &val)) {
            if (set_valued(o, "data", val, "--data") < 0)
                return -1;
        } else if (long_opt(a, "--log-level", argc, argv, &i, &val)) {
            if (set_valued(o, "log_level", val, "--log-level") < 0)
                return -1;
        } else if (long_opt(a, "--cache-max-bytes", argc, argv, &i, &val)) {
            if (set_valued(o, "cache_max_bytes", val, "--cache-max-bytes") < 0)
                return -1;
        } else if (long_opt(a, "--snapshot-bytes", argc, argv, &i, &val)) {
            if (set_valued(o, "snapshot_bytes", val, "--snapshot-bytes") < 0)
                return -1;
        } else if (long_opt(a, "--id", argc, argv, &i, &val)) {
            if (set_valued(o, "id", val, "--id") < 0)
                return -1;
        } else if (long_opt(a, "--listen", argc, argv, &i, &val)) {
            if (set_valued(o, "listen", val, "--listen") < 0)
                return -1;
        } else if (long_opt(a, "--tls-cert", argc, argv, &i, &val)) {
            if (set_valued(o, "tls_cert", val, "--tls-cert") < 0)
                return -1;
        } else if (long_opt(a, "--tls-key", argc, argv, &i, &val)) {
            if (set_valued(o, "tls_key", val, "--tls-key") < 0)
                return -1;
        } else if (long_opt(a, "--tls-ca", argc, argv, &i, &val)) {
            if (set_valued(o, "tls_ca", val, "--tls-ca") < 0)
                return -1;
        } else if (long_opt(a, "--peers", argc, argv, &i, &val)) {
            if (set_valued(o, "peers", val, "--peers") < 0)
                return -1;
        } else if (long_opt(a, "--shards", argc, argv, &i, &val)) {
            if (set_valued(o, "shards", val, "--shards") < 0)
                return -1;
        } else if (long_opt(a, "--replicas", argc, argv, &i, &val)) {
            if (set_valued(o, "replicas", val, "--replicas") < 0)
                return -1;
        } else if (long_opt(a, "--join", argc, argv, &i, &val)) {
            if (set_valued(o, "join", val, "--join") < 0)
                return -1;
        } else if (strcmp(a, "--no-lease-reads") == 0) {
            o->no_lease_reads = 1;
        } else if (strcmp(a, "--jobs") == 0 || strcmp(a, "--no-jobs") == 0) {
            o->jobs = a[2] == 'n' ? -1 : 1;
        } else if (long_opt(a, "--jobs-user", argc, argv, &i, &val)) {
            if (set_valued(o, "jobs_user", val, "--jobs-user") < 0)
                return -1;
        } else if (long_opt(a, "--log-file", argc, argv, &i, &val)) {
            if (set_valued(o, "log_file", val, "--log-file") < 0)
                return -1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "quorumfs: unknown option '%s' (quorumfs --help lists them)\n", a);
            return -1;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "quorumfs: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if (npos == 0) {
        fprintf(stderr, "quorumfs: mount needs a MOUNTPOINT (quorumfs --help)\n");
        return -1;
    }
    o->mountpoint = pos[npos - 1];
    o->source = npos == 2 ? pos[0] : NULL;
    if (check_cluster(o) < 0 || check_jobs_user(o->jobs_user) < 0)
        return -1;
    if (o->allow_other && !o->default_permissions) {
        fprintf(stderr,
                "quorumfs: -o allow_other is refused without -o default_permissions: it "
                "would let every local user read and write every file of the mount whatever "
                "its mode; use -o allow_other,default_permissions\n");
        return -1;
    }
    return 0;
}

/* The libfuse arguments of the mount: our fsname and subtype, then the user's options.
 * The fsname is the source (fstab's first column) when it is a plain word. Returns 0, or -1
 * when out of memory (args then holds what was added; the caller frees it). */
static int fuse_args_of(const opts_t *o, struct fuse_args *args)
{
    const char *fsname = "quorumfs";
    if (o->source && o->source[0] && strlen(o->source) < 256 &&
        strspn(o->source, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:/+")
            == strlen(o->source))
        fsname = o->source;
    char base[300];
    snprintf(base, sizeof(base), "-ofsname=%s,subtype=quorumfs", fsname);
    if (fuse_opt_add_arg(args, "quorumfs") != 0 || fuse_opt_add_arg(args, base) != 0)
        return -1;
    if (o->fuse_opts[0] && (fuse_opt_add_arg(args, "-o") != 0 ||
                            fuse_opt_add_arg(args, o->fuse_opts) != 0))
        return -1;
    return 0;
}

/* Lets libfuse parse the mount options now, before anything is created or forked, so an
 * unknown option is reported by the command itself. Returns 0 or -1 (libfuse printed why). */
static int check_fuse_opts(const opts_t *o)
{
    static const struct fuse_lowlevel_ops no_ops;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    int rc = -1;
    if (fuse_args_of(o, &args) == 0) {
        struct fuse_session *se = fuse_session_new(&args, &no_ops, sizeof(no_ops), NULL);
        if (se) {
            fuse_session_destroy(se);
            rc = 0;
        }
    }
    fuse_opt_free_args(&args);
    if (rc < 0)
        fprintf(stderr, "quorumfs: bad mount option in -o %s (quorumfs --help lists them)\n",
                o->fuse_opts);
    return rc;
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

/* mount.fuse3 -o drop_privileges mounts itself and passes the FUSE device as /dev/fd/N. */
static int is_dev_fd(const char *mp)
{
    unsigned n;
    int end = 0;
    return sscanf(mp, "/dev/fd/%u%n", &n, &end) == 1 && end > 0 && mp[end] == 0;
}

static int check_mountpoint(const char *mp, char *canon)
{
    struct stat st;
    if (is_dev_fd(mp)) {
        snprintf(canon, PATH_MAX, "%s", mp);
        return 0;
    }
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

/* ---- the data directory this run created (removed again if the start fails) ---- */

static char g_created_dir[PATH_MAX];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        logmsg(LOG_LVL_WARN, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* Removes the data directory if this run created it: only a start-up that failed calls it,
 * so what is inside was written by this run (the lock file, an empty log). */
static void discard_created_data_dir(void)
{
    if (!g_created_dir[0])
        return;
    nftw(g_created_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    g_created_dir[0] = 0;
}

/* Creates the data directory if needed (remembering that it did, in g_created_dir), checks
 * it is writable, and takes its lock. Returns the lock fd (kept open for the node's life) or
 * -1 after printing why; a directory it created is removed again on failure. */
static int take_data_dir(const char *dir)
{
    char path[PATH_MAX];
    if (strlen(dir) + 16 > sizeof(path)) {
        fprintf(stderr, "quorumfs: data directory path too long\n");
        return -1;
    }
    if (mkdir(dir, 0755) == 0) {
        snprintf(g_created_dir, sizeof(g_created_dir), "%s", dir);
    } else if (errno != EEXIST) {
        fprintf(stderr, "quorumfs: cannot create data directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quorumfs: data directory %s is not a directory\n", dir);
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/.write-test", dir);
    int t = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t < 0) {
        fprintf(stderr, "quorumfs: data directory %s is not writable: %s\n", dir, strerror(errno));
        goto fail;
    }
    close(t);
    unlink(path);
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "quorumfs: cannot open %s: %s\n", path, strerror(errno));
        goto fail;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fprintf(stderr, "quorumfs: data directory %s is locked by another running node%s%s%s\n",
                dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        close(fd);
        goto fail;
    }
    return fd;
fail:
    discard_created_data_dir();
    return -1;
}

static void write_pid(int lockfd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(lockfd, 0) != 0 || pwrite(lockfd, buf, (size_t)n, 0) != n)
        logmsg(LOG_LVL_WARN, "cannot write pid to the lock file: %s", strerror(errno));
}

/* ---- background mode: stderr of the daemon (libfuse, fusermount3, other modules) goes to
 * syslog through a pump thread. Until the mount is live the pump also keeps the lines, so a
 * failed start hands the real reason to the waiting parent, which prints it. ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, collecting, eof;
    char buf[8192];
    size_t len;
} pump = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1, 0, "", 0 };

/* Appends a line (without its newline) to the kept start-up text, dropping the oldest lines
 * when full. Informational lines are not kept: they are not reasons. Under pump.mu. */
static void pump_keep(const char *line)
{
    if (strncmp(line, "quorumfs: info: ", 16) == 0 || strncmp(line, "quorumfs: debug: ", 17) == 0)
        return;
    size_t n = strlen(line);
    if (n + 2 > sizeof(pump.buf))
        n = sizeof(pump.buf) - 2;
    while (pump.len + n + 1 > sizeof(pump.buf) - 1) {
        char *nl = memchr(pump.buf, '\n', pump.len);
        size_t drop = nl ? (size_t)(nl - pump.buf) + 1 : pump.len;
        memmove(pump.buf, pump.buf + drop, pump.len - drop);
        pump.len -= drop;
    }
    memcpy(pump.buf + pump.len, line, n);
    pump.len += n;
    pump.buf[pump.len++] = '\n';
    pump.buf[pump.len] = 0;
}

static void *pump_main(void *arg)
{
    FILE *f = fdopen((int)(intptr_t)arg, "r");
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        syslog(LOG_WARNING, "%s", line);
        if (g_log_fd >= 0 && !g_log_stamped)
            dprintf(g_log_fd, "%s\n", line);   /* start-up lines: the log file too */
        pthread_mutex_lock(&pump.mu);
        if (pump.collecting)
            pump_keep(line);
        pthread_mutex_unlock(&pump.mu);
    }
    if (f)
        fclose(f);
    else
        close((int)(intptr_t)arg);
    pthread_mutex_lock(&pump.mu);
    pump.eof = 1;
    pthread_cond_broadcast(&pump.cv);
    pthread_mutex_unlock(&pump.mu);
    return NULL;
}

/* Points fd 2 at a pipe read by the pump. Without a pump, stderr stays the caller's until
 * the mount is live. */
static void pump_start(void)
{
    int lp[2];
    pthread_t t;
    if (pipe2(lp, O_CLOEXEC) != 0)
        return;
    if (pthread_create(&t, NULL, pump_main, (void *)(intptr_t)lp[0]) != 0) {
        close(lp[0]);
        close(lp[1]);
        return;
    }
    pthread_detach(t);
    dup2(lp[1], 2);   /* the copy at fd 2 is inherited by fusermount3 (no CLOEXEC) */
    close(lp[1]);
    pump.running = 1;
}

/* Mount is live: later lines only go to syslog. */
static void pump_stop_keeping(void)
{
    if (!pump.running) {
        int nul = open("/dev/null", O_WRONLY);   /* release the caller's stderr */
        if (nul >= 0) {
            dup2(nul, 2);
            close(nul);
        }
    }
    pthread_mutex_lock(&pump.mu);
    pump.collecting = 0;
    pump.len = 0;
    pump.buf[0] = 0;
    pthread_mutex_unlock(&pump.mu);
}

/* Start failed: closes our end of the pump's pipe and waits (at most 2 s: a process that
 * inherited it may still hold it) until the pump has read everything; then the kept text
 * is in pump.buf. Later messages go to syslog. */
static void pump_drain(void)
{
    fflush(stderr);
    int nul = open("/dev/null", O_WRONLY);
    if (nul >= 0) {
        dup2(nul, 2);
        close(nul);
    }
    g_syslog = 1;
    if (!pump.running)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    pthread_mutex_lock(&pump.mu);
    while (!pump.eof && pthread_cond_timedwait(&pump.cv, &pump.mu, &until) == 0)
        ;
    pump.collecting = 0;
    pthread_mutex_unlock(&pump.mu);
}

/* ---- readiness ---- */

static int ready_fd = -1;    /* background: the pipe to the waiting parent */
static int g_background;
static int g_ready;

/* systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram to
 * $NOTIFY_SOCKET. Nothing happens when the variable is not set. */
static void notify_systemd(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
        return;
    size_t len = strlen(path);
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = 0;   /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        logmsg(LOG_LVL_WARN, "cannot notify systemd: %s", strerror(errno));
    close(fd);
}

static void on_ready(void *arg)
{
    const char *mp = arg;
    g_ready = 1;
    if (g_background) {
        pump_stop_keeping();
        g_syslog = 1;
    }
    if (g_log_fd >= 0) {
        /* from now on fd 2 is the log file: our lines, libfuse's, and a panic's or a fatal
         * signal's report (written to fd 2 directly, before the process dies) */
        dup2(g_log_fd, 2);
        g_syslog = 0;
        g_log_stamped = 1;
    }
    logmsg(LOG_LVL_INFO, "mounted at %s", mp);
    if (ready_fd >= 0) {
        if (write(ready_fd, "ok\n", 3) < 0)
            logmsg(LOG_LVL_WARN, "cannot notify the starting process");
        close(ready_fd);
        ready_fd = -1;
    } else {
        notify_systemd("READY=1");
    }
}

/* A start-up failure after the data directory was taken: removes the data directory if this
 * run created it, then reports why: to stderr in the foreground; in the background to the
 * waiting parent, preceded by what libfuse, fusermount3 and the node wrote to stderr. */
static void fail_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_start(const char *fmt, ...)
{
    char msg[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    discard_created_data_dir();
    if (!g_background) {
        fprintf(stderr, "quorumfs: error: %s\n", msg);
        return;
    }
    pump_drain();
    syslog(LOG_ERR, "%s", msg);
    if (ready_fd < 0)
        return;
    char out[sizeof(pump.buf) + sizeof(msg) + 32];
    pthread_mutex_lock(&pump.mu);
    int n = snprintf(out, sizeof(out), "%squorumfs: error: %s\n", pump.buf, msg);
    pthread_mutex_unlock(&pump.mu);
    if (n > (int)sizeof(out) - 1)
        n = (int)sizeof(out) - 1;
    if (write(ready_fd, out, (size_t)n) < 0)
        syslog(LOG_ERR, "cannot report the failure to the starting process");
    close(ready_fd);
    ready_fd = -1;
}

/* Parent side of daemonizing: waits for the child to report "ok" or its failure text (or to
 * die), prints the failure as is. Returns the exit status. */
static int wait_child(int fd, pid_t pid)
{
    static char buf[16384];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(buf) && ((r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0 ||
                                   (r < 0 && errno == EINTR)))
        if (r > 0)
            n += (size_t)r;
    buf[n] = 0;
    close(fd);
    if (strncmp(buf, "ok\n", 3) == 0)
        return EXIT_OK;
    if (n) {
        fputs(buf, stderr);
        if (buf[n - 1] != '\n')
            fputc('\n', stderr);
        return EXIT_START;
    }
    /* No word from the child: it died before it could say why. */
    int st = 0;
    if (waitpid(pid, &st, 0) == pid && WIFSIGNALED(st))
        fprintf(stderr, "quorumfs: error: the node was killed by signal %d during start-up "
                        "(see syslog)\n", WTERMSIG(st));
    else
        fprintf(stderr, "quorumfs: error: the node exited during start-up (see syslog)\n");
    discard_created_data_dir();
    return EXIT_START;
}

/* A fatal signal (a crash, or abort() after a panic) writes its number and a backtrace to
 * fd 2 (the log file with --log-file, stderr in the foreground), then dies of the same
 * signal, so a core dump or the parent's wait still sees it. Async-signal-safe but for
 * backtrace(), which is called once at install so that it loads libgcc beforehand. */
static void on_fatal_signal(int sig)
{
    char msg[64] = "quorumfs: fatal signal ";
    size_t n = strlen(msg);
    char digits[8];
    int k = 0;
    for (int v = sig; k == 0 || v > 0; v /= 10)
        digits[k++] = (char)('0' + v % 10);
    while (k > 0)
        msg[n++] = digits[--k];
    static const char tail[] = "; backtrace:\n";
    memcpy(msg + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    void *pcs[64];
    int depth = backtrace(pcs, 64);
    /* before the mount is live fd 2 is the start-up pump's pipe (or the terminal): the log
     * file gets the report too */
    int fds[2] = { 2, g_log_fd >= 0 && !g_log_stamped ? g_log_fd : -1 };
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 0 || write(fds[i], msg, n) < 0)
            continue;
        backtrace_symbols_fd(pcs, depth, fds[i]);
    }
    raise(sig);   /* SA_RESETHAND: the default action now */
}

static void install_crash_report(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return;   /* the sanitizer's own report is better, and its handler must stay */
#endif
    void *pcs[1];
    backtrace(pcs, 1);
    struct sigaction sa = { .sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND };
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

static int serve(const opts_t *o, const char *canon, int lockfd)
{
    write_pid(lockfd);
    install_crash_report();
    node_opts_t no = {
        .data_dir = o->data,
        .cache_max_bytes = o->cache_max_bytes,
        .snapshot_bytes = o->snapshot_bytes,
        .id = o->n_peers ? o->id : 0,
        .listen = o->listen,
        .peers = o->peer,
        .n_peers = o->n_peers,
        .cluster_id = o->cluster_id,
        .shards = (uint32_t)o->shards,
        .replicas = (uint32_t)o->replicas,
        .no_lease_reads = o->no_lease_reads,
        .jobs = o->jobs,
        .jobs_user = o->jobs_user,
        .join = o->join != 0,
        .tls_cert = o->tls[0],
        .tls_key = o->tls[1],
        .tls_ca = o->tls[2],
    };
    node_t *node;
    char *err = NULL;
    int rc = node_open(&no, &node, &err);
    if (rc < 0) {
        fail_start("cannot start the node on %s: %s", o->data, err ? err : "node open failed");
        free(err);
        return EXIT_START;
    }
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    if (fuse_args_of(o, &args) != 0) {
        fuse_opt_free_args(&args);
        node_close(node);
        fail_start("out of memory");
        return EXIT_START;
    }
    rc = mount_serve(node, canon, &args, on_ready, (void *)canon);
    fuse_opt_free_args(&args);
    if (!g_ready) {
        node_close(node);
        fail_start("nothing mounted at %s", canon);
        return EXIT_START;
    }
    logmsg(LOG_LVL_INFO, "unmounted %s; closing the node", canon);
    if (!g_background)
        notify_systemd("STOPPING=1");
    node_close(node);
    return rc == 0 ? EXIT_OK : EXIT_START;
}

int main(int argc, char **argv)
{
    static opts_t o;
    char canon[PATH_MAX], datapath[PATH_MAX];
    /* `quorumfs cluster ...`; mount.fuse3's `quorumfs cluster /MOUNTPOINT -o ...` (an fstab
     * source named "cluster") still mounts */
    if (argc >= 2 && strcmp(argv[1], "cluster") == 0 && (argc == 2 || argv[2][0] != '/'))
        return cli_cluster(argc - 2, argv + 2);
    int pr = parse_args(argc, argv, &o);
    if (pr != 0)
        return pr > 0 ? EXIT_OK : EXIT_USAGE;
    g_log_level = o.log_level;
    if (check_fuse_opts(&o) < 0)
        return EXIT_USAGE;
    if (o.log_file) {
        /* opened here, in the caller's directory, so that a relative name and a file that
         * cannot be written are the caller's to see */
        g_log_fd = open(o.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (g_log_fd < 0) {
            fprintf(stderr, "quorumfs: --log-file %s: %s\n", o.log_file, strerror(errno));
            return EXIT_START;
        }
    }
    if (!o.data) {
        const char *x = getenv("XDG_DATA_HOME");
        if (x && x[0]) {
            snprintf(datapath, sizeof(datapath), "%s/quorumfs", x);
            o.data = datapath;
        } else {
            o.data = "./data";
        }
    }
    /* With /dev/fd/N the FUSE device is already open and mounted (mount.fuse3's
     * drop_privileges); the node may not even be allowed to open /dev/fuse itself. */
    if (o.n_peers && check_listen(&o) < 0)
        return EXIT_START;
    if (check_mountpoint(o.mountpoint, canon) < 0 ||
        (!is_dev_fd(o.mountpoint) && check_dev_fuse() < 0))
        return EXIT_START;
    int lockfd = take_data_dir(o.data);
    if (lockfd < 0)
        return EXIT_START;
    char datacanon[PATH_MAX];
    if (!realpath(o.data, datacanon)) {
        fprintf(stderr, "quorumfs: data directory %s: %s\n", o.data, strerror(errno));
        discard_created_data_dir();
        return EXIT_START;
    }
    o.data = datacanon;   /* the daemon changes directory to / */
    if (g_created_dir[0])
        snprintf(g_created_dir, sizeof(g_created_dir), "%s", datacanon);
    if (o.foreground)
        return serve(&o, canon, lockfd);

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        perror("quorumfs: pipe");
        discard_created_data_dir();
        return EXIT_START;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("quorumfs: fork");
        discard_created_data_dir();
        return EXIT_START;
    }
    if (pid > 0) {
        close(pfd[1]);
        close(lockfd);   /* the lock is the child's now */
        return wait_child(pfd[0], pid);
    }
    close(pfd[0]);
    ready_fd = pfd[1];
    g_background = 1;
    signal(SIGPIPE, SIG_IGN);   /* a parent that is gone must not kill the report */
    setsid();
    if (chdir("/") != 0)
        _exit(EXIT_START);
    openlog("quorumfs", LOG_PID, LOG_DAEMON);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        close(nul);
    }
    pump_start();
    int rc = serve(&o, canon, lockfd);
    closelog();
    return rc;
}
