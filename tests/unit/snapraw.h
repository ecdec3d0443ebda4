/* tests/unit/snapraw.h — editing a shard's snapshot in a unit test (test_locks,
 * test_queues): the raw state stream of a snapshot as bytes, the place of a named object's
 * record in it, a restore from edited bytes that returns what restore logged, and a table of
 * edits each of which restore must reject for the invariant the test names. Includes
 * statesnap.h. */
#ifndef QFS_TESTS_SNAPRAW_H
#define QFS_TESTS_SNAPRAW_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "tests/unit/statesnap.h"

/* The state stream (uncompressed, as restore reads it) of a snapshot of st written into
 * dir (malloc'ed; NULL on error); *len its bytes. */
static inline uint8_t *raw_snapshot(state_t *st, const char *dir, size_t *len)
{
    free(snap_bytes(st, dir, len));
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    uint8_t *p = NULL;
    if (snapshot_open_read(dir, &info, &err) == 0 &&
        snapshot_reader_open(&info, &r, &err) == 0) {
        p = malloc(info.raw_len);
        if (p && snap_reader_get(r, p, info.raw_len) < 0) {
            free(p);
            p = NULL;
        }
        if (snapshot_reader_close(r, &err) < 0) {
            free(p);
            p = NULL;
        }
        *len = info.raw_len;
    }
    snapshot_info_free(&info);
    free(err);
    return p;
}

/* The offset just after the record key "u32 length, name" of name in p[0..n) (the first
 * one), or 0 when it is not there. */
static inline size_t raw_after_name(const uint8_t *p, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 4 + nl <= n; i++)
        if (p[i] == nl && !p[i + 1] && !p[i + 2] && !p[i + 3] && !memcmp(p + i + 4, name, nl))
            return i + 4 + nl;
    return 0;
}

static inline uint64_t raw_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline void raw_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes p[0..n) as the state stream of a snapshot into dir (a directory raw_snapshot does
 * not use: a snapshot there replaces older ones) and restores dst from it;
 * returns restore's code. What restore wrote to stderr meanwhile goes to log (size max,
 * NUL-terminated). */
static inline int restore_raw(state_t *dst, const char *dir, const void *p, size_t n,
                              char *log, size_t max)
{
    snap_writer_t *w;
    int rc = snapshot_begin(dir, 3, 1, &w);
    if (rc < 0)
        return rc;
    if ((rc = snap_writer_put(w, p, n)) < 0) {
        snapshot_abort(w);
        return rc;
    }
    if ((rc = snapshot_commit(w)) < 0)
        return rc;
    char path[4200];
    snprintf(path, sizeof(path), "%s/restore.log", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || fd < 0)
        return -1;
    dup2(fd, 2);
    rc = restore_dir(dst, dir);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t got = pread(fd, log, max - 1, 0);
    log[got > 0 ? got : 0] = 0;
    close(fd);
    unlink(path);
    return rc;
}

/* Removes the two directories a test made (mkdtemp) for raw_snapshot and restore_raw;
 * returns system's code (0 on success). */
static inline int raw_rmdirs(const char *d1, const char *d2)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", d1, d2);
    return system(cmd);
}

/* An edit of a state stream: value written little-endian over width (1, 4 or 8) bytes at
 * offset at; restore must reject the result, logging why. */
typedef struct raw_edit {
    size_t at;
    int width;
    uint64_t value;
    const char *why;
} raw_edit_t;

/* Restores each edit of raw[0..n) in turn into a new state through dir (as restore_raw).
 * Returns the index of the first edit that restore did not reject with -QERR_CORRUPT and a
 * log line "snapshot refused: <section>: ..." containing its why (printed to stderr), or -1
 * when it rejected all. A rejected restore must leave an empty shard that passes
 * ns_sm_check. */
static inline int raw_all_rejected(const uint8_t *raw, size_t n, const raw_edit_t *e,
                                   size_t ne, const char *dir, const char *section)
{
    uint8_t *p = malloc(n);
    char log[1024], want[128];
    snprintf(want, sizeof(want), "snapshot refused: %s: ", section);
    for (size_t i = 0; i < ne; i++) {
        memcpy(p, raw, n);
        for (int j = 0; j < e[i].width; j++)
            p[e[i].at + (size_t)j] = (uint8_t)(e[i].value >> (8 * j));
        state_t *dst = state_new(1 << 20);
        int rc = restore_raw(dst, dir, p, n, log, sizeof(log));
        if (rc == -QERR_CORRUPT)
            ns_sm_check(dst);
        int ok = rc == -QERR_CORRUPT && strstr(log, want) && strstr(log, e[i].why) &&
                 dst->now_ms == 0;
        state_free(dst);
        if (!ok) {
            fprintf(stderr, "# edit %zu: restore gave %d, wanted \"%s\"; it logged: %s\n", i,
                    rc, e[i].why, log);
            free(p);
            return (int)i;
        }
    }
    free(p);
    return -1;
}

#endif
