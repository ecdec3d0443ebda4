/* tests/unit/statesnap.h — helpers shared by the state-machine unit tests (test_state,
 * test_queues, test_locks): take a real snapshot of a state_t into a directory and read its
 * bytes back, and restore a state from the snapshot in a directory. */
#ifndef QFS_TESTS_STATESNAP_H
#define QFS_TESTS_STATESNAP_H

#include <stdio.h>
#include <stdlib.h>
#include "cluster/snapshot.h"
#include "fs/state.h"

/* Writes a snapshot of st into dir; returns the file's bytes (malloc'ed; NULL on error). */
static char *snap_bytes(state_t *st, const char *dir, size_t *len)
{
    snap_writer_t *w;
    if (snapshot_begin(dir, 1, 1, &w) < 0)
        return NULL;
    if (state_sm_ops.snapshot(st, w) < 0 || snapshot_commit(w) < 0)
        return NULL;
    snapshot_info_t info;
    char *err = NULL;
    if (snapshot_open_read(dir, &info, &err) < 0) {
        free(err);
        return NULL;
    }
    FILE *f = fopen(info.path, "rb");
    char *buf = malloc(info.file_size);
    *len = f && buf ? fread(buf, 1, info.file_size, f) : 0;
    if (f)
        fclose(f);
    snapshot_info_free(&info);
    return buf;
}

/* Restores dst from the newest snapshot in dir. Returns 0 or a negative code. */
static int restore_dir(state_t *dst, const char *dir)
{
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    int rc = snapshot_open_read(dir, &info, &err);
    if (rc == 0 && (rc = snapshot_reader_open(&info, &r, &err)) == 0) {
        rc = state_sm_ops.restore(dst, r);
        int rc2 = snapshot_reader_close(r, &err);
        rc = rc ? rc : rc2;
    }
    snapshot_info_free(&info);
    free(err);
    return rc;
}

#endif
