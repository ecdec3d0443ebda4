/* tools/nullfs.c — a null FUSE filesystem: the ceiling for the mount benchmark (tools/bench).
 * It serves one flat directory of files with the libfuse3 low-level API and a multithreaded
 * loop. Every operation does the minimum (a write accepts its bytes, a read returns a fixed
 * value), with direct_io on opens and attr/entry timeouts of 0 like the quorumfs daemon, so
 * that both pay the same kernel round trips. `.stats` in the root reports request counts.
 *
 * With --chain, it also serves a chain of directories below the root whose last one holds
 * every name (each name looked up gets an inode of its own: a file of the fixed value), with
 * the entry and attribute timeouts given per directory and for the names, so that a path
 * can cost exactly the FUSE requests and the kernel path walk of a path of the daemon: for
 * search/ queries (tools/bench-search), `--chain search:3600/bench:0/.q:3600 --name-timeout
 * 3600` is search/<index>/.q/<query> (the namespace root and .q cached, the index looked up
 * at every walk, a query name looked up once; docs/SEARCH.md "Performance").
 *
 *   nullfs MNT [--foreground] [--value-size N] [--max-threads N] [--no-xattr] [-o OPTS]
 *              [--chain NAME:SECONDS/NAME:SECONDS/... [--name-timeout SECONDS]]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <uthash.h>

#define STATS_INO 2
#define STATS_NAME ".stats"
#define FIRST_FILE_INO 3
#define CHAIN_INO0 (1ull << 48)        /* --chain directory i: CHAIN_INO0 + i */
#define CHAIN_MAX 8
#define NAME_INO0 (1ull << 49)         /* names in the last chain directory, in lookup order */

/* One file of the directory. Files are never removed; main frees them at exit. */
struct node {
    fuse_ino_t ino;
    UT_hash_handle hh;
    char name[];
};

/* The request kinds counted for `.stats`. */
#define OPS(X) X(lookup) X(forget) X(getattr) X(setattr) X(open) X(create) X(read) \
    X(write) X(flush) X(release) X(getxattr) X(opendir) X(readdir) X(releasedir)
enum op_kind {
#define X(n) OP_##n,
    OPS(X)
#undef X
    OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
#define X(n) #n,
    OPS(X)
#undef X
};

static struct {
    pthread_rwlock_t lock;     /* guards by_name, by_ino, n_nodes, cap */
    struct node *by_name;      /* uthash on name */
    struct node **by_ino;      /* index ino - FIRST_FILE_INO */
    size_t n_nodes, cap;
    char *value;               /* the fixed content every read returns */
    size_t value_size;
    uint64_t count[OP_COUNT];  /* relaxed atomics */
    struct {                   /* --chain: set before the loop, read-only after */
        char name[256];
        double timeout;        /* its entry and attribute timeout */
    } chain[CHAIN_MAX];
    int nchain;
    double name_timeout;       /* --name-timeout: the names in the last directory */
    uint64_t next_name;        /* atomic: the next name's inode is NAME_INO0 + it */
} nfs;

static int is_chain(fuse_ino_t ino)
{
    return ino >= CHAIN_INO0 && ino < CHAIN_INO0 + (fuse_ino_t)nfs.nchain;
}

static int is_name(fuse_ino_t ino) { return nfs.nchain && ino >= NAME_INO0; }

static void count(enum op_kind k)
{
    __atomic_fetch_add(&nfs.count[k], 1, __ATOMIC_RELAXED);
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    if (ino == FUSE_ROOT_ID || is_chain(ino)) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else if (is_name(ino)) {
        st->st_mode = S_IFREG | 0444;  /* like a query: size 0, read through direct_io */
        st->st_nlink = 1;
    } else {
        st->st_mode = S_IFREG | 0644;
        st->st_nlink = 1;
        st->st_size = ino == STATS_INO ? 4096 : (off_t)nfs.value_size;
    }
}

/* True if ino names an existing inode. */
static int ino_exists(fuse_ino_t ino)
{
    int ok;

    if (ino == FUSE_ROOT_ID || ino == STATS_INO || is_chain(ino) || is_name(ino))
        return 1;
    pthread_rwlock_rdlock(&nfs.lock);
    ok = ino >= FIRST_FILE_INO && ino - FIRST_FILE_INO < nfs.n_nodes;
    pthread_rwlock_unlock(&nfs.lock);
    return ok;
}

/* Finds name in the root; 0 if absent. */
static fuse_ino_t find(const char *name)
{
    struct node *n;

    if (strcmp(name, STATS_NAME) == 0)
        return STATS_INO;
    pthread_rwlock_rdlock(&nfs.lock);
    HASH_FIND_STR(nfs.by_name, name, n);
    pthread_rwlock_unlock(&nfs.lock);
    return n ? n->ino : 0;
}

/* Finds or creates name in the root. Returns the inode, or 0 with *err set. */
static fuse_ino_t find_or_add(const char *name, int *err)
{
    struct node *n, **grown;
    size_t len = strlen(name);
    fuse_ino_t ino;

    if (strcmp(name, STATS_NAME) == 0)
        return STATS_INO;
    pthread_rwlock_wrlock(&nfs.lock);
    HASH_FIND_STR(nfs.by_name, name, n);
    if (n) {
        ino = n->ino;
        goto out;
    }
    if (nfs.n_nodes == nfs.cap) {
        size_t cap = nfs.cap ? nfs.cap * 2 : 1024;
        grown = realloc(nfs.by_ino, cap * sizeof(*grown));
        if (!grown)
            goto fail;
        nfs.by_ino = grown;
        nfs.cap = cap;
    }
    n = malloc(sizeof(*n) + len + 1);
    if (!n)
        goto fail;
    memcpy(n->name, name, len + 1);
    n->ino = FIRST_FILE_INO + nfs.n_nodes;
    nfs.by_ino[nfs.n_nodes++] = n;
    HASH_ADD_KEYPTR(hh, nfs.by_name, n->name, len, n);
    ino = n->ino;
out:
    pthread_rwlock_unlock(&nfs.lock);
    return ino;
fail:
    pthread_rwlock_unlock(&nfs.lock);
    *err = ENOMEM;
    return 0;
}

static void fill_entry(fuse_ino_t ino, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = ino;
    e->generation = 1;
    e->attr_timeout = 0.0;
    e->entry_timeout = 0.0;
    fill_attr(ino, &e->attr);
}

/* The `.stats` text: one "name count" line per request kind. Returns its length. */
static size_t stats_text(char *buf, size_t cap)
{
    size_t len = 0;

    for (int k = 0; k < OP_COUNT && len < cap; k++) {
        int n = snprintf(buf + len, cap - len, "%s %llu\n", op_names[k],
                         (unsigned long long)__atomic_load_n(&nfs.count[k], __ATOMIC_RELAXED));
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return len < cap ? len : cap;
}

/* The same connection settings as the daemon (fs/mount.c q_init): O_TRUNC comes with open,
 * no writeback cache, writes of up to 1 MiB in one request. */
static void nfs_init(void *userdata, struct fuse_conn_info *conn)
{
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    conn->max_write = 1 << 20;
}

/* A lookup along --chain: 1 and *e when parent/name is a chain directory or a name in the
 * last one, else 0. */
static int chain_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    int at = parent == FUSE_ROOT_ID ? 0 : is_chain(parent) ? (int)(parent - CHAIN_INO0) + 1 : -1;
    double t;

    if (at < 0 || at > nfs.nchain || !nfs.nchain)
        return 0;
    if (at == nfs.nchain) {            /* a name: an inode of its own */
        fill_entry(NAME_INO0 + __atomic_fetch_add(&nfs.next_name, 1, __ATOMIC_RELAXED), e);
        t = nfs.name_timeout;
    } else if (strcmp(name, nfs.chain[at].name) == 0) {
        fill_entry(CHAIN_INO0 + (fuse_ino_t)at, e);
        t = nfs.chain[at].timeout;
    } else {
        return 0;
    }
    e->entry_timeout = e->attr_timeout = t;
    return 1;
}

static void nfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    fuse_ino_t ino;

    count(OP_lookup);
    if (chain_lookup(parent, name, &e)) {
        fuse_reply_entry(req, &e);
        return;
    }
    if (is_chain(parent)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (parent != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    ino = find(name);
    if (!ino) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fill_entry(ino, &e);
    fuse_reply_entry(req, &e);
}

static void nfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    count(OP_forget);
    fuse_reply_none(req);
}

static void nfs_forget_multi(fuse_req_t req, size_t n, struct fuse_forget_data *f)
{
    count(OP_forget);
    fuse_reply_none(req);
}

static void nfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;

    count(OP_getattr);
    if (!ino_exists(ino)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fill_attr(ino, &st);
    fuse_reply_attr(req, &st, 0.0);
}

/* Accepts any change (truncation included) and reports the unchanged attributes. */
static void nfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
    struct stat st;

    count(OP_setattr);
    if (!ino_exists(ino)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fill_attr(ino, &st);
    fuse_reply_attr(req, &st, 0.0);
}

static void nfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    count(OP_open);
    if (ino == FUSE_ROOT_ID || is_chain(ino)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (!ino_exists(ino)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fi->direct_io = 1;
    fuse_reply_open(req, fi);
}

static void nfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
    struct fuse_entry_param e;
    fuse_ino_t ino;
    int err = 0;

    count(OP_create);
    if (parent != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    ino = find_or_add(name, &err);
    if (!ino) {
        fuse_reply_err(req, err);
        return;
    }
    fill_entry(ino, &e);
    fi->direct_io = 1;
    fuse_reply_create(req, &e, fi);
}

static void nfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    char stats[1024];
    const char *src = nfs.value;
    size_t len = nfs.value_size;

    count(OP_read);
    if (ino == STATS_INO) {
        len = stats_text(stats, sizeof(stats));
        src = stats;
    }
    if (off < 0 || (size_t)off >= len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    len -= (size_t)off;
    fuse_reply_buf(req, src + off, len < size ? len : size);
}

static void nfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    count(OP_write);
    if (ino == STATS_INO) {
        fuse_reply_err(req, EACCES);
        return;
    }
    fuse_reply_write(req, size);
}

/* Implemented (as a no-op) because the daemon reports pending errors at close through
 * flush: without it the kernel would stop sending FLUSH and nullfs would skip a round trip. */
static void nfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    count(OP_flush);
    fuse_reply_err(req, 0);
}

static void nfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    count(OP_release);
    fuse_reply_err(req, 0);
}

/* No file has extended attributes. Implemented because the daemon has xattrs: the kernel
 * then asks for "security.capability" at every O_TRUNC open (the suid/capability check of
 * truncation), a round trip it stops sending once getxattr answers ENOSYS. */
static void nfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    count(OP_getxattr);
    fuse_reply_err(req, ino_exists(ino) ? ENODATA : ENOENT);
}

static void nfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    count(OP_opendir);
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    fuse_reply_open(req, fi);
}

/* Entry i of the root listing: ".", "..", ".stats", then the files in creation order.
 * Returns 0 past the end. Called with nfs.lock held for reading. */
static int dir_entry(size_t i, const char **name, fuse_ino_t *ino)
{
    static const char *const fixed[] = {".", "..", STATS_NAME};

    if (i < 3) {
        *name = fixed[i];
        *ino = i < 2 ? FUSE_ROOT_ID : STATS_INO;
        return 1;
    }
    if (i - 3 >= nfs.n_nodes)
        return 0;
    *name = nfs.by_ino[i - 3]->name;
    *ino = nfs.by_ino[i - 3]->ino;
    return 1;
}

/* The offset of an entry is its index plus one, so off is the index to resume at. */
static void nfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    const char *name;
    fuse_ino_t eino;
    struct stat st;
    size_t len = 0;
    char *buf;

    count(OP_readdir);
    buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_rwlock_rdlock(&nfs.lock);
    for (size_t i = off > 0 ? (size_t)off : 0; dir_entry(i, &name, &eino); i++) {
        size_t need;

        fill_attr(eino, &st);
        need = fuse_add_direntry(req, buf + len, size - len, name, &st, (off_t)(i + 1));
        if (need > size - len)
            break;
        len += need;
    }
    pthread_rwlock_unlock(&nfs.lock);
    fuse_reply_buf(req, buf, len);
    free(buf);
}

static void nfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    count(OP_releasedir);
    fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops nfs_ops = {
    .init = nfs_init,
    .lookup = nfs_lookup,
    .forget = nfs_forget,
    .forget_multi = nfs_forget_multi,
    .getattr = nfs_getattr,
    .setattr = nfs_setattr,
    .open = nfs_open,
    .create = nfs_create,
    .read = nfs_read,
    .write = nfs_write,
    .flush = nfs_flush,
    .release = nfs_release,
    .getxattr = nfs_getxattr,
    .opendir = nfs_opendir,
    .readdir = nfs_readdir,
    .releasedir = nfs_releasedir,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nullfs MNT [--foreground] [--value-size N] [--max-threads N]\n"
            "              [--max-idle-threads N] [--clone-fd] [--no-xattr] [-o MOUNT_OPTS]\n"
            "              [--chain NAME:SECONDS/NAME:SECONDS/... [--name-timeout SECONDS]]\n"
            "              [--debug]\n"
            "Mounts a null filesystem at MNT (one flat directory; reads return N fixed bytes,\n"
            "default 100) and returns once mounted unless --foreground. Unmount with\n"
            "fusermount3 -u MNT. MNT/.stats lists the requests served per kind. The loop\n"
            "defaults to the daemon's: at most 64 worker threads, 16 kept idle. --no-xattr\n"
            "has no getxattr handler (ENOSYS: the kernel stops asking), which spares O_TRUNC\n"
            "opens one round trip.\n"
            "--chain serves directories MNT/NAME/NAME/... (up to 8), each with its entry and\n"
            "attribute timeout, whose last one holds any name: a read-only file (size 0, the\n"
            "fixed value through direct_io), a new inode per lookup, cached --name-timeout\n"
            "seconds (default 0).\n");
}

/* Parses --chain "NAME:SECONDS/NAME:SECONDS/...": 0, or -1 when malformed. */
static int parse_chain(const char *spec)
{
    char buf[4096], *save = NULL;

    if (strlen(spec) >= sizeof(buf))
        return -1;
    strcpy(buf, spec);
    for (char *part = strtok_r(buf, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        char *colon = strrchr(part, ':'), *end;
        if (!colon || colon == part || nfs.nchain == CHAIN_MAX ||
            (size_t)(colon - part) >= sizeof(nfs.chain[0].name) ||
            strcmp(part, STATS_NAME) == 0)
            return -1;
        *colon = '\0';
        double t = strtod(colon + 1, &end);
        if (end == colon + 1 || *end || t < 0 || strchr(part, '/'))
            return -1;
        strcpy(nfs.chain[nfs.nchain].name, part);
        nfs.chain[nfs.nchain++].timeout = t;
    }
    return nfs.nchain ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"foreground", no_argument, NULL, 'f'},
        {"value-size", required_argument, NULL, 'v'},
        {"max-threads", required_argument, NULL, 't'},
        {"max-idle-threads", required_argument, NULL, 'i'},
        {"clone-fd", no_argument, NULL, 'c'},
        {"no-xattr", no_argument, NULL, 'x'},
        {"debug", no_argument, NULL, 'd'},
        {"chain", required_argument, NULL, 'C'},
        {"name-timeout", required_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct fuse_lowlevel_ops ops = nfs_ops;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se = NULL;
    struct fuse_loop_config *cfg = NULL;
    const char *mnt = NULL;
    int foreground = 0, clone_fd = 0, debug = 0, mounted = 0, handlers = 0, rc = 1, c;
    long max_threads = 64, max_idle = 16, value_size = 100; /* the daemon's loop */

    while ((c = getopt_long(argc, argv, "fo:dh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': foreground = 1; break;
        case 'v': value_size = strtol(optarg, NULL, 10); break;
        case 't': max_threads = strtol(optarg, NULL, 10); break;
        case 'i': max_idle = strtol(optarg, NULL, 10); break;
        case 'c': clone_fd = 1; break;
        case 'x': ops.getxattr = NULL; break;
        case 'd': debug = 1; break;
        case 'C':
            if (parse_chain(optarg) < 0) {
                fprintf(stderr, "nullfs: --chain %s: want NAME:SECONDS/NAME:SECONDS/... "
                        "(up to %d)\n", optarg, CHAIN_MAX);
                return 2;
            }
            break;
        case 'N': {
            char *end;
            nfs.name_timeout = strtod(optarg, &end);
            if (end == optarg || *end || nfs.name_timeout < 0) {
                fprintf(stderr, "nullfs: --name-timeout %s: want seconds\n", optarg);
                return 2;
            }
            break;
        }
        case 'o':
            if (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, optarg))
                goto fail;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || value_size < 0 || value_size > (1 << 20) || max_threads < 1 ||
        max_idle < 0) {
        usage(stderr);
        return 2;
    }
    mnt = argv[optind];

    nfs.value_size = (size_t)value_size;
    nfs.value = malloc(nfs.value_size + 1);
    if (!nfs.value || pthread_rwlock_init(&nfs.lock, NULL))
        goto fail;
    for (size_t i = 0; i < nfs.value_size; i++)
        nfs.value[i] = (char)('a' + i % 26);

    /* argv[0] first: fuse_session_new skips it. */
    if (fuse_opt_insert_arg(&args, 0, argv[0]) || fuse_opt_add_arg(&args, "-o") ||
        fuse_opt_add_arg(&args, "fsname=nullfs,subtype=nullfs"))
        goto fail;
    if (debug && fuse_opt_add_arg(&args, "-d"))
        goto fail;
    se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
    if (!se)
        goto fail;
    if (fuse_set_signal_handlers(se))
        goto fail;
    handlers = 1;
    if (fuse_session_mount(se, mnt))
        goto fail;
    mounted = 1;
    if (fuse_daemonize(foreground))
        goto fail;

    cfg = fuse_loop_cfg_create();
    if (!cfg)
        goto fail;
    fuse_loop_cfg_set_clone_fd(cfg, (unsigned)clone_fd);
    fuse_loop_cfg_set_max_threads(cfg, (unsigned)max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, (unsigned)max_idle);
    rc = fuse_session_loop_mt(se, cfg) ? 1 : 0;

fail:
    if (cfg)
        fuse_loop_cfg_destroy(cfg);
    if (mounted)
        fuse_session_unmount(se);
    if (handlers)
        fuse_remove_signal_handlers(se);
    if (se)
        fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    if (nfs.by_name) {
        struct node *n, *tmp;
        HASH_ITER(hh, nfs.by_name, n, tmp) {
            HASH_DEL(nfs.by_name, n);
            free(n);
        }
    }
    free(nfs.by_ino);
    free(nfs.value);
    if (rc)
        fprintf(stderr, "nullfs: failed to serve %s\n", mnt ? mnt : "(no mountpoint)");
    return rc;
}
