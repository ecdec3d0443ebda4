/* cluster/assert.h — contracts, asserted (crash-only), for cluster/ and fs/ alike.
 *   ASSERT(cond)        a precondition, postcondition or invariant a wrong caller would
 *                       break; always compiled in (NDEBUG does not remove it).
 *   ASSERT_MSG(cond, fmt, ...)  the same with a formatted explanation.
 *   PANIC(fmt, ...)     a state the code cannot continue from.
 *   xmalloc/xcalloc/xrealloc/xstrdup/xstrndup
 *                       allocations that abort on failure: for deterministic apply paths,
 *                       where an -ENOMEM seen by one replica only would fork the replicas.
 * A failure prints file:line, the expression and the message to stderr (the daemon's log
 * in the foreground) and syslog, then aborts, so a core dump or the log names the broken
 * contract. Models: canonical/raft's src/assert.h, TigerBeetle's TIGER_STYLE.md. */
#ifndef QFS_CLUSTER_ASSERT_H
#define QFS_CLUSTER_ASSERT_H

#include <stddef.h>

void qfs_panic(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#define ASSERT(cond)                                                    \
    do {                                                                \
        if (__builtin_expect(!(cond), 0))                               \
            qfs_panic(__FILE__, __LINE__, #cond, NULL);                 \
    } while (0)

#define ASSERT_MSG(cond, ...)                                           \
    do {                                                                \
        if (__builtin_expect(!(cond), 0))                               \
            qfs_panic(__FILE__, __LINE__, #cond, __VA_ARGS__);          \
    } while (0)

#define PANIC(...) qfs_panic(__FILE__, __LINE__, NULL, __VA_ARGS__)

/* Allocation that never returns NULL: out of memory aborts the process with a message. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
