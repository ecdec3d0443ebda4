/* cluster/meta_sm.c — the meta group's state machine: the member record (cluster id,
 * version, members sorted by id), its commands, snapshot and restore (docs/META.md).
 * Apply validates a whole command before it changes anything; a failed command changes
 * nothing. One rwlock guards the record: apply and restore write, the read API and the
 * snapshot read. The change hook runs after the lock is released. */
#include "cluster/meta_sm.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"

struct meta_sm {
    pthread_rwlock_t lock;
    uint64_t cluster_id;
    uint64_t version;
    uint32_t shards, replicas;        /* SET_LAYOUT; 0: not recorded */
    uint32_t n, cap;
    meta_member_t *m;                 /* m[0..n), strictly increasing ids */
    void (*on_change)(void *arg, const meta_sm_t *sm);
    void *arg;
};

/* ---- addresses ---- */

bool meta_addr_valid(const char *addr, size_t len)
{
    if (!addr || len == 0 || len > META_ADDR_MAX)
        return false;
    size_t colon = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)addr[i];
        if (ch < 0x21 || ch > 0x7e)
            return false;
        if (ch == ':')
            colon = i;
    }
    if (colon == len || colon == 0)
        return false;                 /* no ':', or no host */
    /* The host: "[V6]" (at least one byte inside), or a name/IPv4 without ':'. */
    if (addr[0] == '[') {
        if (colon < 3 || addr[colon - 1] != ']' || memchr(addr + 1, ']', colon - 2))
            return false;
    } else if (memchr(addr, ':', colon)) {
        return false;
    }
    /* The port: 1..5 decimal digits, 1..65535. */
    size_t pl = len - colon - 1;
    if (pl == 0 || pl > 5)
        return false;
    uint32_t port = 0;
    for (size_t i = colon + 1; i < len; i++) {
        if (addr[i] < '0' || addr[i] > '9')
            return false;
        port = port * 10 + (uint32_t)(addr[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* ---- the record's invariants ---- */

static int cmp_addr_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether the addresses of m[0..n) are pairwise distinct; if not, *at gets the index of one
 * member whose address another member has too. */
static bool addrs_distinct(const meta_member_t *m, uint32_t n, uint32_t *at)
{
    if (n < 2)
        return true;
    const char **p = xmalloc(n * sizeof(*p));
    for (uint32_t i = 0; i < n; i++)
        p[i] = m[i].addr;
    qsort(p, n, sizeof(*p), cmp_addr_ptr);
    bool ok = true;
    for (uint32_t i = 1; i < n && ok; i++) {
        if (strcmp(p[i - 1], p[i]) == 0) {
            ok = false;
            *at = (uint32_t)(((const char *)p[i] - (const char *)m) / (ptrdiff_t)sizeof(*m));
        }
    }
    free(p);
    return ok;
}

/* The first broken invariant of a record, or NULL; *at gets the index of the member it is
 * about, or UINT32_MAX when it is about the whole record. */
static const char *verify_record(uint64_t cluster_id, uint64_t version, uint32_t shards,
                                 uint32_t replicas, const meta_member_t *m, uint32_t n,
                                 uint32_t *at)
{
    *at = UINT32_MAX;
    if (n > META_MEMBERS_MAX)
        return "too many members";
    if ((shards == 0) != (replicas == 0) || shards > META_LAYOUT_SHARDS_MAX ||
        replicas > META_LAYOUT_MEMBERS_MAX)
        return "layout out of range";
    if (replicas && (cluster_id == 0 || n > META_LAYOUT_MEMBERS_MAX))
        return "a layout without a founded cluster, or with more than 16 members";
    if (cluster_id == 0 && version != 0)
        return "changes recorded before the cluster was founded";
    if (cluster_id != 0 && version == 0)
        return "a founded cluster at version 0";
    if (cluster_id == 0 && n != 0)
        return "members before the cluster was founded";
    for (uint32_t i = 0; i < n; i++) {
        *at = i;
        if (m[i].id == 0)
            return "member id 0";
        if (i > 0 && m[i].id == m[i - 1].id)
            return "duplicate member id";
        if (i > 0 && m[i].id < m[i - 1].id)
            return "member ids out of order";
        if (m[i].state < META_JOINING || m[i].state > META_LEAVING)
            return "state out of range";
        if (m[i].drained > 1)
            return "drained neither 0 nor 1";
        size_t al = strnlen(m[i].addr, sizeof(m[i].addr));
        if (al == sizeof(m[i].addr) || !meta_addr_valid(m[i].addr, al))
            return "bad address";
    }
    *at = UINT32_MAX;
    if (!addrs_distinct(m, n, at))
        return "address used by two members";
    return NULL;
}

const char *meta_sm_verify(const meta_sm_t *sm)
{
    meta_sm_t *s = (meta_sm_t *)sm;
    uint32_t at;
    pthread_rwlock_rdlock(&s->lock);
    const char *why = verify_record(s->cluster_id, s->version, s->shards, s->replicas, s->m, s->n, &at);
    pthread_rwlock_unlock(&s->lock);
    return why;
}

void meta_sm_check(const meta_sm_t *sm)
{
    meta_sm_t *s = (meta_sm_t *)sm;
    uint32_t at;
    pthread_rwlock_rdlock(&s->lock);
    const char *why = verify_record(s->cluster_id, s->version, s->shards, s->replicas, s->m, s->n, &at);
    ASSERT_MSG(!why, "meta record: member %" PRIu32 ": %s", at, why);
    ASSERT(s->n <= s->cap && (s->cap == 0) == (s->m == NULL));
    pthread_rwlock_unlock(&s->lock);
}

/* ---- lifetime ---- */

meta_sm_t *meta_sm_new(void (*on_change)(void *arg, const meta_sm_t *sm), void *arg)
{
    meta_sm_t *sm = xcalloc(1, sizeof(*sm));
    ASSERT(pthread_rwlock_init(&sm->lock, NULL) == 0);
    sm->on_change = on_change;
    sm->arg = arg;
    return sm;
}

void meta_sm_free(meta_sm_t *sm)
{
    if (!sm)
        return;
    pthread_rwlock_destroy(&sm->lock);
    free(sm->m);
    free(sm);
}

/* ---- read API ---- */

/* The index of member id in m[0..n), or -1; *ins gets where it would be inserted. */
static long find(const meta_member_t *m, uint32_t n, uint64_t id, uint32_t *ins)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (ins)
        *ins = lo;
    return lo < n && m[lo].id == id ? (long)lo : -1;
}

int meta_sm_copy(const meta_sm_t *sm, meta_view_t *out)
{
    meta_sm_t *s = (meta_sm_t *)sm;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&s->lock);
    if (s->n) {
        out->members = malloc(s->n * sizeof(*out->members));
        if (!out->members) {
            pthread_rwlock_unlock(&s->lock);
            return -QERR_NOMEM;
        }
        memcpy(out->members, s->m, s->n * sizeof(*out->members));
    }
    out->n = s->n;
    out->cluster_id = s->cluster_id;
    out->version = s->version;
    out->shards = s->shards;
    out->replicas = s->replicas;
    pthread_rwlock_unlock(&s->lock);
    return 0;
}

void meta_view_free(meta_view_t *v)
{
    free(v->members);
    memset(v, 0, sizeof(*v));
}

int meta_sm_get(const meta_sm_t *sm, uint64_t id, meta_member_t *out)
{
    meta_sm_t *s = (meta_sm_t *)sm;
    pthread_rwlock_rdlock(&s->lock);
    long i = find(s->m, s->n, id, NULL);
    if (i >= 0)
        *out = s->m[i];
    pthread_rwlock_unlock(&s->lock);
    return i >= 0 ? 0 : -QERR_NOTFOUND;
}

bool meta_sm_is_drained(const meta_sm_t *sm, uint64_t id)
{
    meta_sm_t *s = (meta_sm_t *)sm;
    pthread_rwlock_rdlock(&s->lock);
    long i = find(s->m, s->n, id, NULL);
    bool drained = i >= 0 && s->m[i].drained;
    pthread_rwlock_unlock(&s->lock);
    return drained;
}

/* ---- decoding commands ---- */

typedef struct rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;                         /* read past the end */
} rd_t;

static bool rd_has(rd_t *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t rd_u8(rd_t *r)
{
    return rd_has(r, 1) ? r->p[r->off++] : 0;
}

static uint32_t rd_u32(rd_t *r)
{
    if (!rd_has(r, 4))
        return 0;
    uint32_t v = le_get32(r->p + r->off);
    r->off += 4;
    return v;
}

static uint64_t rd_u64(rd_t *r)
{
    if (!rd_has(r, 8))
        return 0;
    uint64_t v = le_get64(r->p + r->off);
    r->off += 8;
    return v;
}

/* An address (u8 length, bytes) into out (NUL-terminated); false when short or invalid. */
static bool rd_addr(rd_t *r, char out[META_ADDR_MAX + 1])
{
    uint8_t l = rd_u8(r);
    if (!rd_has(r, l) || !meta_addr_valid((const char *)r->p + r->off, l))
        return false;
    memcpy(out, r->p + r->off, l);
    out[l] = 0;
    r->off += l;
    return true;
}

/* A decoded, well-formed command. */
typedef struct cmd {
    uint8_t op;
    uint64_t id;                      /* every op but FOUND */
    uint64_t value;                   /* SET_STATE/DRAIN: the u8; SET_INCARNATION: the u64 */
    uint32_t shards, replicas;        /* SET_LAYOUT */
    char addr[META_ADDR_MAX + 1];     /* ADD */
    uint64_t cluster_id;              /* FOUND */
    uint32_t n;                       /* FOUND: members in found[], sorted by id */
    meta_member_t *found;             /* FOUND: malloc'ed */
} cmd_t;

static int cmp_member_id(const void *a, const void *b)
{
    const meta_member_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Decodes p[0..len) into *c. Returns 0, or -EINVAL (with nothing to free) for anything
 * malformed: short, trailing bytes, unknown version or op, a zero id or cluster id, a bad
 * address, a state or flag out of range, a FOUND without members, with more than
 * META_MEMBERS_MAX, or with an id or address twice. */
static int decode(const void *p, size_t len, cmd_t *c)
{
    rd_t r = { .p = p, .len = len };
    memset(c, 0, sizeof(*c));
    if (!p || rd_u8(&r) != META_CMD_VERSION)
        return -EINVAL;
    c->op = rd_u8(&r);
    switch (c->op) {
    case META_OP_FOUND: {
        c->cluster_id = rd_u64(&r);
        c->n = rd_u32(&r);
        /* Each member takes at least 8 + 1 + 3 bytes ("h:1"): bounds the allocation. */
        if (r.bad || c->cluster_id == 0 || c->n == 0 || c->n > META_MEMBERS_MAX ||
            (r.len - r.off) / 12 < c->n)
            return -EINVAL;
        c->found = xcalloc(c->n, sizeof(*c->found));
        for (uint32_t i = 0; i < c->n; i++) {
            meta_member_t *m = &c->found[i];
            m->id = rd_u64(&r);
            if (r.bad || m->id == 0 || !rd_addr(&r, m->addr))
                goto bad;
            m->state = META_ACTIVE;
        }
        if (r.off != r.len)
            goto bad;
        qsort(c->found, c->n, sizeof(*c->found), cmp_member_id);
        uint32_t at;
        for (uint32_t i = 1; i < c->n; i++)
            if (c->found[i].id == c->found[i - 1].id)
                goto bad;
        if (!addrs_distinct(c->found, c->n, &at))
            goto bad;
        return 0;
    bad:
        free(c->found);
        c->found = NULL;
        return -EINVAL;
    }
    case META_OP_ADD:
        c->id = rd_u64(&r);
        if (r.bad || !rd_addr(&r, c->addr))
            return -EINVAL;
        break;
    case META_OP_SET_STATE:
        c->id = rd_u64(&r);
        c->value = rd_u8(&r);
        if (c->value < META_JOINING || c->value > META_LEAVING)
            return -EINVAL;
        break;
    case META_OP_SET_INCARNATION:
        c->id = rd_u64(&r);
        c->value = rd_u64(&r);
        break;
    case META_OP_DRAIN:
        c->id = rd_u64(&r);
        c->value = rd_u8(&r);
        if (c->value > 1)
            return -EINVAL;
        break;
    case META_OP_REMOVE:
        c->id = rd_u64(&r);
        break;
    case META_OP_SET_LAYOUT:
        c->shards = rd_u32(&r);
        c->replicas = rd_u32(&r);
        if (r.bad || r.off != r.len || c->shards < 1 || c->shards > META_LAYOUT_SHARDS_MAX ||
            c->replicas < 1 || c->replicas > META_LAYOUT_MEMBERS_MAX)
            return -EINVAL;
        return 0;
    default:
        return -EINVAL;
    }
    if (r.bad || r.off != r.len || c->id == 0)
        return -EINVAL;
    return 0;
}

/* ---- apply ---- */

static uint32_t count_active(const meta_sm_t *sm)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < sm->n; i++)
        k += sm->m[i].state == META_ACTIVE;
    return k;
}

static bool addr_in_use(const meta_sm_t *sm, const char *addr)
{
    for (uint32_t i = 0; i < sm->n; i++)
        if (strcmp(sm->m[i].addr, addr) == 0)
            return true;
    return false;
}

/* Applies the decoded command c to sm (write lock held). Returns the result code; *changed
 * tells whether the record changed (then the version was bumped). c->found is consumed. */
static int apply_cmd(meta_sm_t *sm, cmd_t *c, bool *changed)
{
    *changed = false;
    if (c->op == META_OP_FOUND) {
        if (sm->cluster_id != 0) {
            free(c->found);
            return -EALREADY;
        }
        ASSERT(sm->n == 0);
        free(sm->m);
        sm->m = c->found;
        sm->n = sm->cap = c->n;
        sm->cluster_id = c->cluster_id;
        sm->version++;
        *changed = true;
        return 0;
    }
    if (c->op == META_OP_SET_LAYOUT) {
        if (sm->cluster_id == 0)
            return -ENOTCONN;
        if (sm->replicas)
            return sm->shards == c->shards && sm->replicas == c->replicas ? 0 : -EALREADY;
        if (sm->n > META_LAYOUT_MEMBERS_MAX)
            return -ENOSPC;
        sm->shards = c->shards;
        sm->replicas = c->replicas;
        sm->version++;
        *changed = true;
        return 0;
    }
    uint32_t ins;
    long i = find(sm->m, sm->n, c->id, &ins);
    if (c->op == META_OP_ADD) {
        if (sm->cluster_id == 0)
            return -ENOTCONN;
        if (i >= 0)
            return -EEXIST;
        if (addr_in_use(sm, c->addr))
            return -EADDRINUSE;
        if (sm->n == META_MEMBERS_MAX || (sm->replicas && sm->n >= META_LAYOUT_MEMBERS_MAX))
            return -ENOSPC;
        if (sm->n == sm->cap) {
            sm->cap = sm->cap ? sm->cap * 2 : 8;
            if (sm->cap > META_MEMBERS_MAX)
                sm->cap = META_MEMBERS_MAX;
            sm->m = xrealloc(sm->m, sm->cap * sizeof(*sm->m));
        }
        memmove(&sm->m[ins + 1], &sm->m[ins], (sm->n - ins) * sizeof(*sm->m));
        meta_member_t *m = &sm->m[ins];
        memset(m, 0, sizeof(*m));
        m->id = c->id;
        m->state = META_JOINING;
        memcpy(m->addr, c->addr, sizeof(m->addr));
        sm->n++;
        sm->version++;
        *changed = true;
        return 0;
    }
    if (i < 0)
        return -ENOENT;
    meta_member_t *m = &sm->m[i];
    switch (c->op) {
    case META_OP_SET_STATE:
        /* with a layout, an active member leaves only if enough active ones stay to hold
         * every shard's voters (judged here, in log order: two removes asked of two nodes
         * at once cannot both pass) */
        if (sm->replicas && m->state == META_ACTIVE && c->value != META_ACTIVE &&
            count_active(sm) - 1 < sm->replicas)
            return -EBUSY;
        *changed = m->state != c->value;
        m->state = (uint8_t)c->value;
        break;
    case META_OP_SET_INCARNATION:
        if (m->incarnation != 0 && m->incarnation != c->value)
            return -ESTALE;
        *changed = m->incarnation != c->value;
        m->incarnation = c->value;
        break;
    case META_OP_DRAIN:
        *changed = m->drained != c->value;
        m->drained = (uint8_t)c->value;
        break;
    case META_OP_REMOVE:
        if (m->state == META_ACTIVE && count_active(sm) == 1)
            return -EBUSY;
        memmove(&sm->m[i], &sm->m[i + 1], (sm->n - (uint32_t)i - 1) * sizeof(*sm->m));
        sm->n--;
        *changed = true;
        break;
    default:
        PANIC("meta: op %u passed decode", c->op);
    }
    if (*changed)
        sm->version++;
    return 0;
}

/* sm_ops.apply. A malformed command gives -EINVAL and changes nothing; so does every other
 * refusal (docs/META.md "Results"). */
static void meta_apply(void *ctx, uint64_t index, const void *p, size_t len, sm_result_t *res)
{
    meta_sm_t *sm = ctx;
    cmd_t c;
    bool changed = false;
    int rc = decode(p, len, &c);
    pthread_rwlock_wrlock(&sm->lock);
    if (rc == 0)
        rc = apply_cmd(sm, &c, &changed);
    if (res) {
        res->code = rc;
        res->len = META_RESULT_LEN;
        le_put64(res->data, sm->version);
        le_put64(res->data + 8, sm->cluster_id);
    }
    void (*hook)(void *, const meta_sm_t *) = sm->on_change;
    void *arg = sm->arg;
    pthread_rwlock_unlock(&sm->lock);
    if (changed && hook)
        hook(arg, sm);
}

/* ---- snapshot ---- */

/* Body (docs/META.md "Snapshot"): u32 META_SNAP_VERSION, u64 cluster_id, u64 version,
 * u32 n, u32 shards, u32 replicas (version 2; version 1 has neither), then per member in id order: u64 id, u64 incarnation, u8 state, u8 drained,
 * u8 address length, address. */
static int meta_snapshot(void *ctx, snap_writer_t *w)
{
    meta_sm_t *sm = ctx;
    uint8_t b[8 + 8 + 3 + META_ADDR_MAX];
    pthread_rwlock_rdlock(&sm->lock);
    le_put32(b, META_SNAP_VERSION);
    le_put64(b + 4, sm->cluster_id);
    le_put64(b + 12, sm->version);
    le_put32(b + 20, sm->n);
    le_put32(b + 24, sm->shards);
    le_put32(b + 28, sm->replicas);
    int rc = snap_writer_put(w, b, 32);
    for (uint32_t i = 0; i < sm->n && rc == 0; i++) {
        const meta_member_t *m = &sm->m[i];
        size_t al = strlen(m->addr);
        le_put64(b, m->id);
        le_put64(b + 8, m->incarnation);
        b[16] = m->state;
        b[17] = m->drained;
        b[18] = (uint8_t)al;
        memcpy(b + 19, m->addr, al);
        rc = snap_writer_put(w, b, 19 + al);
    }
    pthread_rwlock_unlock(&sm->lock);
    return rc;
}

static int refuse(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(int rc, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fprintf(stderr, "quorumfs: snapshot refused: meta: %s\n", why);
    return rc;
}

/* Reads and checks a whole record. Returns 0 with *m (malloc'ed, *n members), or a
 * negative code after logging why. */
static int read_record(snap_reader_t *r, uint64_t *cluster_id, uint64_t *version,
                       uint32_t *shards, uint32_t *replicas, meta_member_t **mp, uint32_t *np)
{
    uint8_t b[32];
    int rc = snap_reader_get(r, b, 24);
    if (rc < 0)
        return refuse(rc, "truncated header (%s)", qerr_str(rc));
    uint32_t v = le_get32(b);
    if (v != 1 && v != META_SNAP_VERSION)
        return refuse(-QERR_FORMAT, "unknown version %" PRIu32 " (this build reads 1 to %d)",
                      v, META_SNAP_VERSION);
    *cluster_id = le_get64(b + 4);
    *version = le_get64(b + 12);
    uint32_t n = le_get32(b + 20);
    *shards = *replicas = 0;
    if (v >= 2) {
        if ((rc = snap_reader_get(r, b + 24, 8)) < 0)
            return refuse(rc, "truncated header (%s)", qerr_str(rc));
        *shards = le_get32(b + 24);
        *replicas = le_get32(b + 28);
    }
    if (n > META_MEMBERS_MAX)
        return refuse(-QERR_CORRUPT, "%" PRIu32 " members (at most %d)", n, META_MEMBERS_MAX);
    meta_member_t *m = n ? xcalloc(n, sizeof(*m)) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t h[19];
        if ((rc = snap_reader_get(r, h, sizeof(h))) < 0 ||
            (rc = snap_reader_get(r, m[i].addr, h[18])) < 0) {
            free(m);
            return refuse(rc, "truncated at member %" PRIu32 " of %" PRIu32 " (%s)", i, n,
                          qerr_str(rc));
        }
        m[i].id = le_get64(h);
        m[i].incarnation = le_get64(h + 8);
        m[i].state = h[16];
        m[i].drained = h[17];
        /* Checked here, where the length is known: a NUL inside would read as a
         * shorter string. */
        if (!meta_addr_valid(m[i].addr, h[18])) {
            uint64_t id = m[i].id;
            free(m);
            return refuse(-QERR_CORRUPT, "member %" PRIu32 " (id %" PRIu64 "): bad address",
                          i, id);
        }
        m[i].addr[h[18]] = 0;
    }
    uint32_t at;
    const char *why = verify_record(*cluster_id, *version, *shards, *replicas, m, n, &at);
    if (why) {
        if (at == UINT32_MAX)
            rc = refuse(-QERR_CORRUPT, "%s", why);
        else
            rc = refuse(-QERR_CORRUPT, "member %" PRIu32 " (id %" PRIu64 "): %s", at,
                        m[at].id, why);
        free(m);
        return rc;
    }
    *mp = m;
    *np = n;
    return 0;
}

/* sm_ops.restore: replaces the record with the snapshot's, or empties it and refuses. */
static int meta_restore(void *ctx, snap_reader_t *r)
{
    meta_sm_t *sm = ctx;
    uint64_t cluster_id = 0, version = 0;
    meta_member_t *m = NULL;
    uint32_t n = 0, shards = 0, replicas = 0;
    int rc = read_record(r, &cluster_id, &version, &shards, &replicas, &m, &n);
    pthread_rwlock_wrlock(&sm->lock);
    free(sm->m);
    sm->m = m;
    sm->n = sm->cap = n;
    sm->cluster_id = cluster_id;
    sm->version = version;
    sm->shards = shards;
    sm->replicas = replicas;
    if (rc < 0) {
        ASSERT(!m);
        sm->n = sm->cap = 0;
        sm->cluster_id = sm->version = 0;
        sm->shards = sm->replicas = 0;
    }
    void (*hook)(void *, const meta_sm_t *) = sm->on_change;
    void *arg = sm->arg;
    pthread_rwlock_unlock(&sm->lock);
    if (rc == 0 && hook)
        hook(arg, sm);
    return rc;
}

const sm_ops_t meta_sm_ops = { .apply = meta_apply, .snapshot = meta_snapshot,
                               .restore = meta_restore };

/* ---- encoders ---- */

void meta_cmd_free(meta_cmd_t *c)
{
    free(c->p);
    c->p = NULL;
    c->len = 0;
}

/* Starts *c with room for len bytes, the header written. */
static int cmd_start(meta_cmd_t *c, uint8_t op, size_t len)
{
    c->len = 0;
    c->p = malloc(len);
    if (!c->p)
        return -QERR_NOMEM;
    c->p[0] = META_CMD_VERSION;
    c->p[1] = op;
    c->len = 2;
    return 0;
}

static void put_u8(meta_cmd_t *c, uint8_t v)
{
    c->p[c->len++] = v;
}

static void put_u32(meta_cmd_t *c, uint32_t v)
{
    le_put32(c->p + c->len, v);
    c->len += 4;
}

static void put_u64(meta_cmd_t *c, uint64_t v)
{
    le_put64(c->p + c->len, v);
    c->len += 8;
}

static void put_addr(meta_cmd_t *c, const char *addr, size_t al)
{
    put_u8(c, (uint8_t)al);
    memcpy(c->p + c->len, addr, al);
    c->len += al;
}

int meta_cmd_found(meta_cmd_t *c, uint64_t cluster_id, uint32_t n, const uint64_t *ids,
                   const char *const *addrs)
{
    c->p = NULL;
    c->len = 0;
    if (n > META_MEMBERS_MAX || (n && (!ids || !addrs)))
        return -QERR_INVAL;
    size_t len = 2 + 8 + 4;
    for (uint32_t i = 0; i < n; i++) {
        if (!addrs[i] || strlen(addrs[i]) > META_ADDR_MAX)
            return -QERR_INVAL;
        len += 8 + 1 + strlen(addrs[i]);
    }
    int rc = cmd_start(c, META_OP_FOUND, len);
    if (rc < 0)
        return rc;
    put_u64(c, cluster_id);
    put_u32(c, n);
    for (uint32_t i = 0; i < n; i++) {
        put_u64(c, ids[i]);
        put_addr(c, addrs[i], strlen(addrs[i]));
    }
    ASSERT(c->len == len);
    return 0;
}

int meta_cmd_add(meta_cmd_t *c, uint64_t id, const char *addr)
{
    c->p = NULL;
    c->len = 0;
    if (!addr || strlen(addr) > META_ADDR_MAX)
        return -QERR_INVAL;
    size_t al = strlen(addr);
    int rc = cmd_start(c, META_OP_ADD, 2 + 8 + 1 + al);
    if (rc < 0)
        return rc;
    put_u64(c, id);
    put_addr(c, addr, al);
    return 0;
}

int meta_cmd_set_state(meta_cmd_t *c, uint64_t id, uint8_t state)
{
    int rc = cmd_start(c, META_OP_SET_STATE, 2 + 8 + 1);
    if (rc < 0)
        return rc;
    put_u64(c, id);
    put_u8(c, state);
    return 0;
}

int meta_cmd_set_incarnation(meta_cmd_t *c, uint64_t id, uint64_t incarnation)
{
    int rc = cmd_start(c, META_OP_SET_INCARNATION, 2 + 8 + 8);
    if (rc < 0)
        return rc;
    put_u64(c, id);
    put_u64(c, incarnation);
    return 0;
}

int meta_cmd_drain(meta_cmd_t *c, uint64_t id, uint8_t on)
{
    int rc = cmd_start(c, META_OP_DRAIN, 2 + 8 + 1);
    if (rc < 0)
        return rc;
    put_u64(c, id);
    put_u8(c, on);
    return 0;
}

int meta_cmd_remove(meta_cmd_t *c, uint64_t id)
{
    int rc = cmd_start(c, META_OP_REMOVE, 2 + 8);
    if (rc < 0)
        return rc;
    put_u64(c, id);
    return 0;
}

int meta_cmd_set_layout(meta_cmd_t *c, uint32_t shards, uint32_t replicas)
{
    int rc = cmd_start(c, META_OP_SET_LAYOUT, 2 + 4 + 4);
    if (rc < 0)
        return rc;
    le_put32(c->p + c->len, shards);
    le_put32(c->p + c->len + 4, replicas);
    c->len += 8;
    return 0;
}
