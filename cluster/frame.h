/* cluster/frame.h — the framing of node-to-node traffic (docs/TRANSPORT.md, version
 * FRAME_VERSION). A frame is a 16-byte header (magic, version, type, flags, payload length,
 * CRC32C of header and payload) followed by its payload. The transport (cluster/transport.c)
 * writes frames back to back on one TCP connection per node pair and reads them with the
 * streaming decoder below. Pure: no I/O, no globals, no clock. */
#ifndef QFS_CLUSTER_FRAME_H
#define QFS_CLUSTER_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/raft.h"

#define FRAME_MAGIC 0x4E534651u       /* the bytes "QFSN" on the wire */
#define FRAME_VERSION 1               /* byte 4 of every header; checked by the decoder */
#define FRAME_HDR_BYTES 16
#define FRAME_HELLO_BYTES 24          /* HELLO payload in version 1 (longer is accepted) */
/* Default and hard limits on one frame's payload. The default leaves room for a 4 MiB
 * Raft message (entries or a snapshot chunk) plus its encoding overhead. */
#define FRAME_DEFAULT_MAX_PAYLOAD (4u * 1024 * 1024 + 64 * 1024)
#define FRAME_LIMIT_MAX_PAYLOAD (64u * 1024 * 1024)

/* Frame types (byte 5 of the header). */
enum {
    FRAME_HELLO = 1,   /* first frame on every connection, both ways: who I am */
    FRAME_RAFT = 2,    /* one Raft message of one group: group u32 + raft_msg_encode bytes */
    FRAME_PING = 3,    /* u64 chosen by the sender (its clock), answered by a PONG */
    FRAME_PONG = 4,    /* the PING's u64, echoed */
    FRAME__COUNT
};

typedef struct frame_hello {
    uint64_t node_id;        /* the sender's node id, nonzero */
    uint64_t cluster_id;     /* both ends must agree */
    uint32_t proto_min;      /* lowest and highest frame version the sender speaks; */
    uint32_t proto_max;      /* version 1 code sends 1 and 1 */
} frame_hello_t;

/* One decoded (or to-be-encoded) frame. Which fields mean something depends on type. */
typedef struct frame {
    uint32_t type;           /* FRAME_* */
    frame_hello_t hello;     /* HELLO */
    uint32_t group;          /* RAFT: the Raft group (shard) the message belongs to */
    raft_msg_t msg;          /* RAFT: decoded messages own their memory (frame_free) */
    uint64_t ping;           /* PING, PONG */
} frame_t;

/* Releases what a decoded frame owns (its Raft message) and zeroes *f. NULL is a no-op. */
void frame_free(frame_t *f);

/* Exact number of bytes frame_encode writes for f (header included). */
size_t frame_encoded_size(const frame_t *f);
/* Writes f (header, payload, CRC) into buf (cap bytes). f->msg may be borrowed (a Ready's
 * message); nothing is kept. Returns 0 and *len, or -QERR_INVAL (unknown type, node_id 0,
 * a message raft_msg_encode refuses), -QERR_TOOBIG (cap too small, or payload over
 * FRAME_LIMIT_MAX_PAYLOAD). */
int frame_encode(const frame_t *f, uint8_t *buf, size_t cap, size_t *len);

/* ------------------------------------------------------------------------------------------
 * The streaming decoder. Feed it the bytes of one connection in chunks split anywhere; it
 * yields whole frames. It allocates at most one payload buffer, of at most max_payload
 * bytes, and only after the header has passed its checks (magic, version, type, flags,
 * length), so a hostile length is refused before any allocation. A frame that arrives
 * whole inside one chunk is decoded in place, without a copy.
 * ------------------------------------------------------------------------------------------ */
typedef struct frame_decoder frame_decoder_t;

/* Creates a decoder refusing payloads over max_payload (0 = FRAME_DEFAULT_MAX_PAYLOAD;
 * at most FRAME_LIMIT_MAX_PAYLOAD). Returns NULL when out of memory. */
frame_decoder_t *frame_decoder_new(uint32_t max_payload);
/* Frees the decoder and its buffer. NULL is a no-op. */
void frame_decoder_free(frame_decoder_t *d);

/* Consumes bytes of buf[0..len) up to the end of the first frame that completes.
 * Returns
 *   1   a frame is in *f (the caller frame_free()s it); *used bytes were consumed, the rest
 *       of buf is for the next call;
 *   0   all len bytes were consumed (*used == len), no frame completed yet;
 *   < 0 the stream is malformed and the connection must be closed:
 *         -QERR_CORRUPT  bad magic, unknown type, nonzero flags, CRC mismatch, a payload of
 *                        the wrong size for its type, a HELLO with node id 0, or a RAFT
 *                        message raft_msg_decode calls corrupt;
 *         -QERR_FORMAT   another frame version (or a Raft message of another version);
 *         -QERR_TOOBIG   a payload length over max_payload (refused from the header alone);
 *         -QERR_NOMEM    no memory for a payload or a message.
 *       frame_decoder_error() says what and where. The decoder stays failed: every later
 *       call returns the same code and consumes nothing.
 * *f is zeroed unless 1 is returned. len may be 0. */
int frame_decoder_feed(frame_decoder_t *d, const uint8_t *buf, size_t len, size_t *used,
                       frame_t *f);
/* The message of the failure, e.g. "frame 3 at byte 412: CRC mismatch ...", or "" if none.
 * Valid until the decoder is freed. */
const char *frame_decoder_error(const frame_decoder_t *d);
/* Bytes the decoder holds allocated right now (its payload buffer), for tests and metrics. */
size_t frame_decoder_mem(const frame_decoder_t *d);

#endif
