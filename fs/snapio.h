/* fs/snapio.h — buffered little-endian writer/reader over cluster/sm.h's snapshot streams,
 * used by the shard (fs/state.c), the tree and every namespace module to serialize their
 * state. A failed
 * put/get latches an error code (first one wins) so callers check once at the end. */
#ifndef QFS_FS_SNAPIO_H
#define QFS_FS_SNAPIO_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/sm.h"

typedef struct snapout {
    snap_writer_t *w;
    uint8_t buf[65536];
    size_t len;
    int err;
} snapout_t;

typedef struct snapin {
    snap_reader_t *r;
    int err;
} snapin_t;

void so_bytes(snapout_t *o, const void *p, size_t n);
void so_u8(snapout_t *o, uint8_t v);
void so_u32(snapout_t *o, uint32_t v);
void so_u64(snapout_t *o, uint64_t v);
void so_blob(snapout_t *o, const void *p, uint32_t n);   /* u32 length + bytes */
int so_flush(snapout_t *o);                               /* returns o->err */

void si_bytes(snapin_t *i, void *p, size_t n);
uint8_t si_u8(snapin_t *i);
uint32_t si_u32(snapin_t *i);
uint64_t si_u64(snapin_t *i);
/* Reads a length-prefixed string of 1..max-1 bytes into buf (size max) and NUL-terminates
 * it. Returns the length, or the latched error / -QERR_CORRUPT for a bad length. */
int si_str(snapin_t *i, char *buf, size_t max);
/* Refuses the snapshot being read: logs "snapshot refused: <why>" to stderr (the daemon's
 * log), latches -QERR_CORRUPT unless an error is latched already, and returns the latched
 * error. */
int si_corrupt(snapin_t *i, const char *why);

#endif
