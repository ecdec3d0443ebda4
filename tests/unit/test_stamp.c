/* tests/unit/test_stamp.c — leader-stamped time (issue 9 item 8): the header time helpers of
 * fs/cmd.h, the shard's stamp (state_sm_ops.stamp: the leader's wall clock into a known
 * header, anything else left alone), and 3 real shard states on a Raft group over TCP on
 * 127.0.0.1 (free ports picked first): a follower's command whose header time runs an hour
 * ahead is applied on every replica at the LEADER's time, and the shard's time stays
 * monotone when the leader's stamp is behind a time already applied. Every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/group.h"
#include "fs/cmd.h"
#include "fs/state.h"
#include "tests/unit/check.h"

#define NN 3
#define FIRST_ID 2
#define GID 0
#define OP_NONE 0xEE              /* an opcode no module owns: apply refuses it, but the
                                     header's time is still the command's time */
#define HOUR_MS 3600000ull

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* A header-only command of version `version` with time now_ms. */
static void hdr(uint8_t *b, uint8_t version, uint64_t now_ms)
{
    b[0] = version;
    b[1] = OP_NONE;
    b[2] = 0;
    le_put64(b + 3, now_ms);
}

/* The helpers read and overwrite the time of versions 1 and 2 only; a short command or
 * another version is refused and left alone. */
TEST(test_hdr_time_helpers)
{
    uint8_t b[CMD_HDR_LEN + 4], keep[sizeof(b)];
    uint64_t t = 7;
    for (uint8_t v = CMD_VERSION_MIN; v <= CMD_VERSION; v++) {
        hdr(b, v, 1234);
        CHECK_EQ(cmd_hdr_time(b, CMD_HDR_LEN, &t), 0);
        CHECK_EQ(t, 1234);
        CHECK_EQ(cmd_set_hdr_time(b, sizeof(b), 99999), 0);
        cmdrd_t r;
        cmd_hdr_t h;
        CHECK_EQ(cmd_read_hdr(&r, b, sizeof(b), &h), 0);
        CHECK_EQ(h.now_ms, 99999);
        CHECK_EQ(h.op, OP_NONE);
        CHECK_EQ(h.version, v);
    }
    const uint8_t bad[] = { 0, CMD_VERSION + 1, 0xFF };
    for (size_t i = 0; i < sizeof(bad); i++) {
        hdr(b, bad[i], 1234);
        memcpy(keep, b, sizeof(b));
        t = 7;
        CHECK_EQ(cmd_hdr_time(b, sizeof(b), &t), -EINVAL);
        CHECK_EQ(t, 7);
        CHECK_EQ(cmd_set_hdr_time(b, sizeof(b), 99999), -EINVAL);
        CHECK(memcmp(b, keep, sizeof(b)) == 0);
    }
    hdr(b, CMD_VERSION, 1234);
    memcpy(keep, b, sizeof(b));
    CHECK_EQ(cmd_set_hdr_time(b, CMD_HDR_LEN - 1, 99999), -EINVAL);
    CHECK_EQ(cmd_hdr_time(b, CMD_HDR_LEN - 1, &t), -EINVAL);
    CHECK(memcmp(b, keep, sizeof(b)) == 0);
    CHECK_EQ(cmd_set_hdr_time(b, 0, 99999), -EINVAL);
}

/* state_sm_ops.stamp puts this node's wall clock in a known header (the body untouched) and
 * leaves an unknown one alone. */
TEST(test_state_stamp)
{
    CHECK(state_sm_ops.stamp != NULL);
    uint8_t b[CMD_HDR_LEN + 3], keep[sizeof(b)];
    hdr(b, CMD_VERSION, wall_ms() + HOUR_MS);
    b[CMD_HDR_LEN] = 'x';
    b[CMD_HDR_LEN + 1] = 'y';
    b[CMD_HDR_LEN + 2] = 'z';
    uint64_t t0 = wall_ms();
    state_sm_ops.stamp(NULL, b, sizeof(b));
    uint64_t t1 = wall_ms(), t = 0;
    CHECK_EQ(cmd_hdr_time(b, sizeof(b), &t), 0);
    CHECK(t >= t0 && t <= t1);
    CHECK(memcmp(b + CMD_HDR_LEN, "xyz", 3) == 0 && b[0] == CMD_VERSION && b[1] == OP_NONE);
    hdr(b, CMD_VERSION + 1, 5);
    memcpy(keep, b, sizeof(b));
    state_sm_ops.stamp(NULL, b, sizeof(b));
    CHECK(memcmp(b, keep, sizeof(b)) == 0);
    state_sm_ops.stamp(NULL, b, 3);             /* too short for a header: left alone */
    CHECK(memcmp(b, keep, sizeof(b)) == 0);
}

/* ---- three shard states on a Raft group -------------------------------------------------- */

typedef struct cl {
    char base[64];
    char dir[NN][96];
    char addr[NN][32];
    group_peer_t peers[NN];
    group_node_t *node[NN];
    group_t *g[NN];
    state_t *st[NN];
} cl_t;

static uint64_t id_of(int i)
{
    return FIRST_ID + (uint64_t)i;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void quiet_log(void *ctx, const char *line)
{
    (void)ctx;
    if (getenv("QFS_TEST_VERBOSE"))
        printf("# %s\n", line);
}

static int start_node(cl_t *c, int i)
{
    group_raft_config_t cfg = {
        .id = id_of(i), .listen = c->addr[i], .peers = c->peers, .n_peers = NN,
        .cluster_id = 0x5354414dull, .dir = c->dir[i], .tick_ms = 20, .election_tick = 10,
        .timeout_ms = 3000, .seed = 11 + (uint64_t)i, .log = quiet_log };
    uint64_t voters[NN];
    for (int j = 0; j < NN; j++)
        voters[j] = id_of(j);
    char *msg = NULL;
    c->st[i] = state_new_shard(0, GID);
    int rc = group_node_open(&cfg, &c->node[i], &msg);
    if (rc == 0 && (rc = group_node_add(c->node[i], GID, voters, NN, &state_sm_ops, c->st[i],
                                        &c->g[i], &msg)))
        group_node_close(c->node[i]);
    else if (rc == 0 && (rc = group_node_start(c->node[i], &msg)))
        group_node_close(c->node[i]);
    if (rc) {
        printf("# node %d: %s (%s)\n", (int)id_of(i), qerr_str(rc), msg ? msg : "");
        c->node[i] = NULL;
        c->g[i] = NULL;
        state_free(c->st[i]);
        c->st[i] = NULL;
    }
    free(msg);
    return rc;
}

static void stop_node(cl_t *c, int i)
{
    group_node_close(c->node[i]);   /* NULL: nothing */
    c->node[i] = NULL;
    c->g[i] = NULL;
    if (c->st[i])
        state_free(c->st[i]);
    c->st[i] = NULL;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void cluster_free(cl_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < NN; i++)
        stop_node(c, i);
    nftw(c->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

static cl_t *cluster_new(void)
{
    cl_t *c = calloc(1, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "/tmp/qfs-stamp-XXXXXX");
    if (!mkdtemp(c->base)) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < NN; i++) {
        snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%u", (unsigned)free_port());
        c->peers[i] = (group_peer_t){ .id = id_of(i), .addr = c->addr[i] };
        snprintf(c->dir[i], sizeof(c->dir[i]), "%s/n%d", c->base, (int)id_of(i));
        mkdir(c->dir[i], 0755);
    }
    for (int i = 0; i < NN; i++)
        if (start_node(c, i)) {
            cluster_free(c);
            return NULL;
        }
    return c;
}

/* The node every running node names as leader; -1 after ms. */
static int wait_leader(cl_t *c, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    do {
        int lead = -1;
        bool agree = true;
        for (int i = 0; i < NN; i++)
            if (c->g[i] && group_is_leader(c->g[i]))
                lead = i;
        for (int i = 0; lead >= 0 && i < NN; i++) {
            group_stats_t st;
            if (!c->g[i])
                continue;
            group_get_stats(c->g[i], &st);
            agree &= st.leader == id_of(lead);
        }
        if (lead >= 0 && agree)
            return lead;
        sleep_ms(10);
    } while (mono_ms() < end);
    return -1;
}

static int propose_at(cl_t *c, int i, uint64_t now_ms)
{
    cmdbuf_t b;
    cmd_begin(&b, OP_NONE, 0, now_ms);
    if (b.oom)
        return -QERR_NOMEM;
    sm_result_t res;
    int rc = group_propose(c->g[i], b.p, b.len, &res);
    free(b.p);
    return rc;
}

static uint64_t time_of(cl_t *c, int i)
{
    pthread_rwlock_rdlock(&c->st[i]->lock);
    uint64_t t = c->st[i]->now_ms;
    pthread_rwlock_unlock(&c->st[i]->lock);
    return t;
}

/* A follower whose clock runs an hour ahead proposes: every replica applies its command at
 * the leader's time (before leader stamping, the shard's time jumped an hour ahead, and the
 * leader's sweeps would then end every other node's session). A stamp behind a time already
 * applied leaves the shard's time where it was (apply takes the maximum). */
TEST(test_follower_skew_stamped_by_leader)
{
    cl_t *c = cluster_new();
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    int f = (lead + 1) % NN;
    uint64_t t0 = wall_ms();
    int rc = propose_at(c, f, t0 + HOUR_MS);
    uint64_t t1 = wall_ms();
    int rc2 = -1, bad = 0;
    uint64_t after = 0;
    for (int i = 0; rc == 0 && i < NN; i++) {
        if (group_read_barrier(c->g[i], 0) != 0 || time_of(c, i) < t0 || time_of(c, i) > t1) {
            printf("# node %d: shard time %llu, leader's clock %llu..%llu\n", (int)id_of(i),
                   (unsigned long long)time_of(c, i), (unsigned long long)t0,
                   (unsigned long long)t1);
            bad++;
        }
    }
    if (rc == 0 && !bad) {
        /* the time an earlier leader whose clock ran an hour ahead left in every replica
           (set here directly, the same on all): the stamps that follow, behind it, do not
           move the shard's time back */
        uint64_t ahead = t1 + HOUR_MS;
        for (int i = 0; i < NN; i++) {
            pthread_rwlock_wrlock(&c->st[i]->lock);
            c->st[i]->now_ms = ahead;
            pthread_rwlock_unlock(&c->st[i]->lock);
        }
        rc2 = propose_at(c, f, 1);
        for (int i = 0; rc2 == 0 && i < NN; i++) {
            if (group_read_barrier(c->g[i], 0) != 0)
                bad++;
            after = time_of(c, i);
            if (after != ahead) {
                printf("# node %d: shard time %llu after a stamp behind %llu\n", (int)id_of(i),
                       (unsigned long long)after, (unsigned long long)ahead);
                bad++;
            }
        }
    }
    cluster_free(c);
    CHECK_EQ(rc, 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(rc2, 0);
}

int main(void)
{
    RUN(test_hdr_time_helpers);
    RUN(test_state_stamp);
    RUN(test_follower_skew_stamped_by_leader);
    return CHECK_DONE();
}
