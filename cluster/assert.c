/* cluster/assert.c — the failure path of cluster/assert.h: report, then abort. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include "cluster/assert.h"

void qfs_panic(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    fprintf(stderr, "quorumfs: %s:%d: %s%s%s%s\n", file, line,
            expr ? "assertion failed: " : "", expr ? expr : "", expr && *msg ? ": " : "", msg);
    fflush(stderr);
    syslog(LOG_CRIT, "%s:%d: %s%s%s%s", file, line, expr ? "assertion failed: " : "",
           expr ? expr : "", expr && *msg ? ": " : "", msg);
    abort();
}

static void *oom(size_t n)
{
    qfs_panic(__FILE__, __LINE__, NULL, "out of memory allocating %zu bytes (crash-only: "
              "an allocation failure must not be seen by one replica only)", n);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom(n * size);
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    return p ? p : oom(strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    return p ? p : oom(n + 1);
}
