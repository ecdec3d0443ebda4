/* tests/unit/nethelp.h — the shared harness of the unit tests that run real transports
 * (test_transport, test_transport_tls, test_status_query). Static functions, included by
 * one test file each, like tests/unit/check.h. It gives:
 *   - throwaway certificates: certs_dir_new() makes a temp dir (and checks the openssl
 *     command is there), make_ca()/make_cert() make keys and certificates in it with the
 *     openssl commands docs/TRANSPORT.md gives, path() names a file in it, certs_remove()
 *     removes it; `dir` holds its path;
 *   - a log buffer every transport of the test writes to (log_line as transport_config_t
 *     .log), log_has() to search it, log_reset() to empty it between cases (printing it
 *     first when the environment variable NETHELP_LOG_ENV names is set; define that macro
 *     before the include to change it, "TRANSPORT_LOG" by default);
 *   - base_config(), the transport config on 127.0.0.1 port 0 the tests start from;
 *     start_cfg() to make a transport and print why not;
 *   - tcp_connect_to() and fd_closed(), for cases that talk raw TCP to a transport;
 *   - count_fds(), to check a case leaks no descriptor;
 *   - ms_now() and nh_pump(), which polls a set of transports until a condition holds or a
 *     bounded time passes; nh_all_connected() as such a condition.
 * Port 0 only: no test picks a TCP port. */
#ifndef QFS_TESTS_NETHELP_H
#define QFS_TESTS_NETHELP_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/transport.h"

/* Every function here is static; a test may use only some of them. */
#define NH_FN static __attribute__((unused))

#ifndef NETHELP_LOG_ENV
#define NETHELP_LOG_ENV "TRANSPORT_LOG"
#endif

/* ---- certificates -------------------------------------------------------------------- */

static char dir[64];         /* the temp dir of this run's certificates ("" before) */
static char paths[16][128];  /* path()'s results; reset npaths once they are read */
static int npaths;

/* Runs the shell command made of fmt; its output goes to dir/openssl.log. 0 on success. */
NH_FN int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
NH_FN int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    cmd[0] = '(';
    int n = vsnprintf(cmd + 1, sizeof cmd - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd - 64)
        return -1;
    snprintf(cmd + 1 + n, sizeof cmd - 1 - (size_t)n, ") >>%s/openssl.log 2>&1", dir);
    int rc = system(cmd);
    if (rc != 0)
        printf("# failed (%d): %s\n", rc, cmd);
    return rc;
}

/* Makes dir, a new temp dir /tmp/<prefix>XXXXXX (prefix starts "qfs-"), and checks the
 * openssl command runs. 0 on success, -1 (with a line saying why) if not. */
NH_FN int certs_dir_new(const char *prefix)
{
    snprintf(dir, sizeof dir, "/tmp/%sXXXXXX", prefix);
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        return -1;
    }
    if (system("openssl version >/dev/null 2>&1") != 0) {
        printf("# the openssl command is needed to make test certificates (package openssl)\n");
        return -1;
    }
    return 0;
}

/* Removes dir and everything in it, if certs_dir_new made it. */
NH_FN void certs_remove(void)
{
    if (dir[0] && strncmp(dir, "/tmp/qfs-", 9) == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            printf("# could not remove %s\n", dir);
    }
}

/* A CA: dir/<name>.pem and .key (docs/TRANSPORT.md, "Making certificates"). */
NH_FN int make_ca(const char *name, const char *cn)
{
    return sh("cd %s && openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
              "-nodes -keyout %s.key -out %s.pem -days 2 -subj '/CN=%s' "
              "-addext 'basicConstraints=critical,CA:TRUE' "
              "-addext 'keyUsage=critical,keyCertSign,cRLSign'", dir, name, name, cn);
}

/* A certificate dir/<name>.pem and .key with subject CN=cn (a node's: quorumfs-<id>; a
 * status client's: quorumfs-client), signed by CA ca, with a subjectAltName DNS:san unless
 * san is NULL (quorumfs does not consult it: tests use it to show that). */
NH_FN int make_cert(const char *name, const char *ca, const char *cn,
                     const char *san)
{
    char ext[200];
    snprintf(ext, sizeof ext, "%s%s%skeyUsage=critical,digitalSignature\\n"
             "extendedKeyUsage=serverAuth,clientAuth\\n", san ? "subjectAltName=DNS:" : "",
             san ? san : "", san ? "\\n" : "");
    return sh("cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-keyout %s.key -out %s.csr -subj '/CN=%s' && printf '%s' >%s.ext && "
              "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key "
              "-set_serial 0x$(openssl rand -hex 16) -days 2 -extfile %s.ext -out %s.pem",
              dir, name, name, cn, ext, name, name, ca, ca, name, name);
}

/* dir/<name>.<ext>, in one of 16 buffers: set npaths = 0 once the paths are used. */
NH_FN const char *path(const char *name, const char *ext)
{
    if (npaths >= 16)
        abort();
    char *p = paths[npaths++];
    snprintf(p, sizeof paths[0], "%s/%s.%s", dir, name, ext);
    return p;
}

/* ---- log ----------------------------------------------------------------------------- */

/* Log lines of every transport; written by whichever one thread runs the transports. */
static char logbuf[1 << 18];
static size_t loglen;

NH_FN void log_line(void *ctx, int level, const char *line)
{
    int n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "%s\n", line);
    if (n > 0 && loglen + (size_t)n < sizeof logbuf)
        loglen += (size_t)n;
}

NH_FN int log_has(const char *needle)
{
    return strstr(logbuf, needle) != NULL;
}

/* NETHELP_LOG_ENV=1 in the environment prints each case's log lines. */
NH_FN void log_reset(void)
{
    if (getenv(NETHELP_LOG_ENV) && loglen)
        printf("%s", logbuf);
    loglen = 0;
    logbuf[0] = 0;
}

/* ---- transports ---------------------------------------------------------------------- */

/* Node id on 127.0.0.1 port 0, short backoffs and pings, logging to log_line. */
NH_FN transport_config_t base_config(uint64_t id, transport_deliver_fn deliver,
                                     void *ctx)
{
    return (transport_config_t){ .id = id, .cluster_id = 0xABCD, .listen = "127.0.0.1:0",
                                 .backoff_min_ms = 20, .backoff_max_ms = 160, .ping_ms = 100,
                                 .idle_timeout_ms = 3000, .seed = id, .deliver = deliver,
                                 .deliver_ctx = ctx, .log = log_line };
}

/* transport_new, printing its error. */
NH_FN int start_cfg_t(const transport_config_t *cfg, transport_t **out)
{
    char *msg = NULL;
    int rc = transport_new(cfg, out, &msg);
    if (rc < 0)
        printf("# transport_new: %s\n", msg ? msg : qerr_str(rc));
    free(msg);
    return rc;
}

NH_FN uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The number of open file descriptors of this process (-1: unknown): a case compares it
 * before and after to find leaks. */
NH_FN int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* A raw TCP connection to t's listener on 127.0.0.1 (connected blocking, then made
 * nonblocking if nonblock; close-on-exec), or -1. */
NH_FN int tcp_connect_to(const transport_t *t, int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(transport_port(t)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    if (fd >= 0 && nonblock)
        fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

typedef int (*cond_fn)(void *arg);

/* A cond_fn on an int fd: 1 once the other end has closed it (whatever it sent before is
 * read and dropped). */
NH_FN int fd_closed(void *arg)
{
    int fd = *(int *)arg;
    char b[4096];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return 1;
        return 0;
    }
}

/* k transports as the tests hold them: t_of gives the i-th (NULL: none there now), id_of
 * its node id. */
typedef struct nh_set {
    void *items;
    int k;
    transport_t *(*t_of)(void *items, int i);
    uint64_t (*id_of)(void *items, int i);
} nh_set_t;

/* Polls the set's transports (1 ms each) until cond(arg) holds or timeout_ms passes; cond
 * NULL: just for timeout_ms. 1 if cond held (or was NULL), 0 if not or a poll failed. */
NH_FN int nh_pump(const nh_set_t *s, cond_fn cond, void *arg, int timeout_ms)
{
    uint64_t end = ms_now() + (uint64_t)timeout_ms;
    for (;;) {
        if (cond && cond(arg))
            return 1;
        if (ms_now() >= end)
            return cond ? cond(arg) : 1;
        for (int i = 0; i < s->k; i++) {
            transport_t *t = s->t_of(s->items, i);
            if (t && transport_poll(t, 1) < 0)
                return 0;
        }
    }
}

/* A cond_fn on an nh_set_t: every transport of the set is connected to every other. */
NH_FN int nh_all_connected(void *arg)
{
    const nh_set_t *s = arg;
    for (int i = 0; i < s->k; i++)
        for (int j = 0; j < s->k; j++)
            if (i != j && !transport_connected(s->t_of(s->items, i), s->id_of(s->items, j)))
                return 0;
    return 1;
}

#endif
