/* fs/metrics.c — operation counters and Prometheus text helpers; see metrics.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/metrics.h"


#define METRIC_NAME_(n) #n,
const char *const metric_op_names[MOP__COUNT] = { METRIC_OPS(METRIC_NAME_) };
#undef METRIC_NAME_

uint64_t metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void metrics_op(metrics_t *m, enum metric_op op, uint64_t start_ns, int err)
{
    __atomic_fetch_add(&m->ops[op], 1, __ATOMIC_RELAXED);
    if (err)
        __atomic_fetch_add(&m->errors[op], 1, __ATOMIC_RELAXED);
    hist_add(&m->latency[op], metrics_now_ns() - start_ns);
}

void metrics_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = *cap ? *cap : 4096;
        while (ncap <= *len + (size_t)n)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return;
        *buf = nb;
        *cap = ncap;
    }
}

void metrics_hist_text(char **buf, size_t *len, size_t *cap, const char *name,
                       const char *labels, const hist_t *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < HIST_BUCKETS - 1; i++) {
        cum += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
        metrics_printf(buf, len, cap, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                       hist_bucket_le(i), (unsigned long long)cum);
    }
    uint64_t count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    metrics_printf(buf, len, cap, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                   (unsigned long long)count);
    metrics_printf(buf, len, cap, "%s_sum{%s} %.9f\n", name, labels,
                   (double)__atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) / 1e9);
    metrics_printf(buf, len, cap, "%s_count{%s} %llu\n", name, labels,
                   (unsigned long long)count);
}
