/* fs/snapio.c — buffered snapshot serialization helpers; see snapio.h. */
#include <stdio.h>
#include <string.h>
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "fs/snapio.h"

int so_flush(snapout_t *o)
{
    if (!o->err && o->len) {
        int rc = snap_writer_put(o->w, o->buf, o->len);
        if (rc < 0)
            o->err = rc;
    }
    o->len = 0;
    return o->err;
}

void so_bytes(snapout_t *o, const void *p, size_t n)
{
    if (o->err || n == 0)
        return;
    if (o->len + n > sizeof(o->buf)) {
        so_flush(o);
        if (n > sizeof(o->buf)) {
            int rc = o->err ? o->err : snap_writer_put(o->w, p, n);
            if (rc < 0)
                o->err = rc;
            return;
        }
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void so_u8(snapout_t *o, uint8_t v) { so_bytes(o, &v, 1); }

void so_u32(snapout_t *o, uint32_t v)
{
    uint8_t x[4];
    le_put32(x, v);
    so_bytes(o, x, 4);
}

void so_u64(snapout_t *o, uint64_t v)
{
    uint8_t x[8];
    le_put64(x, v);
    so_bytes(o, x, 8);
}

void so_blob(snapout_t *o, const void *p, uint32_t n)
{
    so_u32(o, n);
    so_bytes(o, p, n);
}

void si_bytes(snapin_t *i, void *p, size_t n)
{
    if (i->err) {
        memset(p, 0, n);
        return;
    }
    int rc = snap_reader_get(i->r, p, n);
    if (rc < 0) {
        i->err = rc;
        memset(p, 0, n);
    }
}

uint8_t si_u8(snapin_t *i)
{
    uint8_t v;
    si_bytes(i, &v, 1);
    return v;
}

uint32_t si_u32(snapin_t *i)
{
    uint8_t x[4];
    si_bytes(i, x, 4);
    return le_get32(x);
}

uint64_t si_u64(snapin_t *i)
{
    uint8_t x[8];
    si_bytes(i, x, 8);
    return le_get64(x);
}

int si_str(snapin_t *i, char *buf, size_t max)
{
    uint32_t n = si_u32(i);
    if (i->err)
        return i->err;
    if (n == 0 || n >= max)
        return -QERR_CORRUPT;
    si_bytes(i, buf, n);
    buf[n] = 0;
    return i->err ? i->err : (int)n;
}

int si_corrupt(snapin_t *i, const char *why)
{
    fprintf(stderr, "quorumfs: snapshot refused: %s\n", why);
    if (!i->err)
        i->err = -QERR_CORRUPT;
    return i->err;
}
