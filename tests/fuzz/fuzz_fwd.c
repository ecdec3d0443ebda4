/* tests/fuzz/fuzz_fwd.c — libFuzzer target for the forwarding messages (cluster/frame.c
 * frame_fwd_decode, docs/FORMATS.md "Forwarded proposals"). Any payload is decoded or refused
 * without a crash, a leak or an out-of-bounds read; a refusal carries -QERR_CORRUPT,
 * -QERR_FORMAT or -QERR_NOMEM with a reason and leaves the output zeroed; an accepted payload
 * is canonical: it encodes back to exactly the input bytes. The same bytes wrapped in a FWD
 * frame (with a correct CRC) must get the same verdict from the streaming frame decoder,
 * whole and cut in two at a point picked by the first input byte. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"

static const uint8_t zero[sizeof(frame_fwd_t)];

/* Feeds b[0..n) to a fresh decoder in two pieces split at cut; returns its verdict and
 * the frame in *f (1), else 0 for "incomplete" or the error code. */
static int stream(const uint8_t *b, size_t n, size_t cut, frame_t *f)
{
    frame_decoder_t *d = frame_decoder_new(0);
    if (!d)
        abort();
    size_t used, off = 0;
    int rc = frame_decoder_feed(d, b, cut, &used, f);
    off += used;
    if (rc == 0 && off == cut)
        rc = frame_decoder_feed(d, b + off, n - off, &used, f);
    else if (rc == 0)
        abort();   /* 0 means every byte was consumed */
    frame_decoder_free(d);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t pick = data[0];
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    if (len > (1u << 20))
        return 0;

    frame_fwd_t f;
    const char *why = NULL;
    int rc = frame_fwd_decode(p, len, &f, &why);
    if (rc < 0) {
        if (rc != -QERR_CORRUPT && rc != -QERR_FORMAT && rc != -QERR_NOMEM)
            abort();
        if (!why || memcmp(&f, zero, sizeof(f)) != 0)
            abort();
    } else {
        if (rc != 0 || (f.kind != FWD_PROPOSE && f.kind != FWD_RESULT))
            abort();
        if (f.kind == FWD_RESULT && (f.res.len > SM_RESULT_MAX || (f.rc == 0 && !f.index)))
            abort();
        size_t n = frame_fwd_size(&f), got;
        uint8_t *b = malloc(n ? n : 1);
        if (!b || n != len || frame_fwd_encode(&f, b, n, &got) != 0 || got != len ||
            memcmp(b, p, len) != 0)
            abort();
        free(b);
    }

    /* the same payload inside a frame */
    size_t fl = FRAME_HDR_BYTES + len;
    uint8_t *fb = malloc(fl);
    if (!fb)
        abort();
    le_put32(fb, FRAME_MAGIC);
    fb[4] = FRAME_VERSION;
    fb[5] = FRAME_FWD;
    fb[6] = fb[7] = 0;
    le_put32(fb + 8, (uint32_t)len);
    memcpy(fb + FRAME_HDR_BYTES, p, len);
    le_put32(fb + 12, crc32c(crc32c(0, fb, 12), fb + FRAME_HDR_BYTES, len));
    frame_t a, b;
    int ra = stream(fb, fl, fl, &a);
    int rb = stream(fb, fl, (size_t)pick * fl / 256, &b);
    if (ra != rb || (rc == 0) != (ra == 1) || (rc < 0 && ra != rc))
        abort();
    if (ra == 1) {
        if (a.type != FRAME_FWD || a.fwd.kind != f.kind || a.fwd.req != f.req ||
            a.fwd.len != f.len || (f.len && memcmp(a.fwd.cmd, f.cmd, f.len)) ||
            a.fwd.rc != f.rc || a.fwd.index != f.index ||
            memcmp(&a.fwd.res, &f.res, sizeof(f.res)) != 0)
            abort();
        frame_free(&a);
        frame_free(&b);
    }
    free(fb);
    if (rc == 0)
        frame_fwd_free(&f);
    return 0;
}
