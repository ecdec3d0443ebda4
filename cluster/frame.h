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
#include "cluster/sm.h"

#define FRAME_MAGIC 0x4E534651u       /* the bytes "QFSN" on the wire */
#define FRAME_VERSION 1               /* byte 4 of every header; checked by the decoder */
#define FRAME_HDR_BYTES 16
#define FRAME_HELLO_BYTES 24          /* HELLO payload in version 1 (longer is accepted) */
#define FRAME_HELLO_INC_BYTES 32      /* ... and with the incarnation, which is sent since */
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
    FRAME_FWD = 5,     /* a forwarded proposal or its result (frame_fwd_t, docs/FORMATS.md) */
    FRAME_STATUS_REQ = 6, /* a status client's first frame, instead of a HELLO */
    FRAME_STATUS = 7,  /* the node's answer to STATUS_REQ: its published status text */
    FRAME_ADMIN_REQ = 8, /* an admin client's first frame, instead of a HELLO */
    FRAME_ADMIN = 9,   /* the node's answer to ADMIN_REQ: a code and a text */
    FRAME__COUNT
};

typedef struct frame_hello {
    uint64_t node_id;        /* the sender's node id, nonzero */
    uint64_t cluster_id;     /* both ends must agree */
    uint32_t proto_min;      /* lowest and highest frame version the sender speaks; */
    uint32_t proto_max;      /* version 1 code sends 1 and 1 */
    uint64_t incarnation;    /* the sender's data directory (docs/MEMBERSHIP.md "A wiped
                                node"); 0: not sent (a 24-byte HELLO of older builds) */
} frame_hello_t;

/* ------------------------------------------------------------------------------------------
 * Forwarding (docs/FORMATS.md "Forwarded proposals"): a node that does not lead a group sends
 * the command to the leader in a PROPOSE; the leader answers with a RESULT once the entry has
 * applied (or at once with an error such as NOTLEADER). The payload has its own version byte.
 * ------------------------------------------------------------------------------------------ */
#define FWD_VERSION 1
#define FWD_HEAD_BYTES 20             /* version, kind, flags, group, request id, attempt */
#define FWD_RESULT_BYTES 56           /* a RESULT's fixed part, before its result bytes */

enum {
    FWD_PROPOSE = 1,   /* requester -> leader: apply this command */
    FWD_RESULT = 2,    /* leader -> requester: how it ended */
};

typedef struct frame_fwd {
    uint32_t kind;           /* FWD_PROPOSE or FWD_RESULT */
    uint32_t group;          /* the Raft group (shard) */
    uint64_t req;            /* the requester's id for the request, echoed by the RESULT */
    uint32_t attempt;        /* the requester's attempt number, echoed by the RESULT */
    /* PROPOSE */
    const uint8_t *cmd;      /* the command; a decoded one points into mem */
    size_t len;
    /* RESULT */
    int32_t rc;              /* 0 (applied) or a negative QERR_* code */
    uint64_t leader;         /* the leader the answering node knows (0 none): a hint */
    uint64_t index, term;    /* rc 0: the entry's index (>= 1) and term */
    sm_result_t res;         /* rc 0: apply's result; bytes past res.len are zero */
    void *mem;               /* owned by a decoded PROPOSE (frame_fwd_free) */
} frame_fwd_t;

/* Releases a decoded forwarding message's memory and zeroes *f. NULL is a no-op. */
void frame_fwd_free(frame_fwd_t *f);
/* Bytes frame_fwd_encode writes for f. */
size_t frame_fwd_size(const frame_fwd_t *f);
/* Writes f into buf (cap bytes); f->cmd is borrowed. Returns 0 and *len, or -QERR_INVAL
 * (unknown kind, rc 0 with index 0, rc positive or unknown, res.len over SM_RESULT_MAX),
 * -QERR_TOOBIG (cap too small, or a command over FRAME_LIMIT_MAX_PAYLOAD). */
int frame_fwd_encode(const frame_fwd_t *f, uint8_t *buf, size_t cap, size_t *len);
/* Decodes a forwarding payload p[0..len) into *f, which then owns a copy of the command
 * (frame_fwd_free). Returns 0, or -QERR_FORMAT (another FWD_VERSION), -QERR_CORRUPT (any
 * other malformation: kind, flags, sizes, codes; *why (may be NULL) gets a static reason),
 * -QERR_NOMEM. *f is zeroed on failure. */
int frame_fwd_decode(const uint8_t *p, size_t len, frame_fwd_t *f, const char **why);

/* ------------------------------------------------------------------------------------------
 * Status queries (docs/TRANSPORT.md "Status queries", docs/FORMATS.md §9): a client that is
 * not a node connects to a node's peer address and sends a STATUS_REQ as its first frame,
 * instead of a HELLO; the node answers with one STATUS frame holding the text it last
 * published, then closes. Both payloads open with their own status version.
 * ------------------------------------------------------------------------------------------ */
#define STATUS_VERSION 1
#define STATUS_REQ_BYTES 8            /* version u32, flags u32 (longer: the rest is ignored) */
#define STATUS_REQ_MAX_BYTES 256      /* a longer request is refused from its header */
#define STATUS_HEAD_BYTES 28          /* version, flags, node id, age, text length */
#define STATUS_MAX_TEXT (64u * 1024)  /* bytes of text in one answer, at most */
#define STATUS_AGE_NONE UINT64_MAX    /* the age of an answer when nothing was published */

typedef struct frame_status {
    uint32_t version;        /* STATUS_REQ: the highest status version the client reads
                                (>= 1); STATUS: the answer's (encoding writes STATUS_VERSION) */
    uint64_t node_id;        /* STATUS: the answering node, nonzero */
    uint64_t age_ms;         /* STATUS: ms since the text was published, or STATUS_AGE_NONE
                                (nothing published: the text says "no status yet") */
    const char *text;        /* STATUS: len bytes of UTF-8 without NUL; a decoded one points
                                into mem and is NUL-terminated there */
    size_t len;
    void *mem;               /* owned by a decoded STATUS (frame_free) */
} frame_status_t;

/* 1 iff s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) and holds no NUL byte. */
int frame_utf8_valid(const char *s, size_t len);
/* The largest n <= max such that s[0..n) does not end inside a multi-byte character of s
 * (which must be valid UTF-8): where to cut s to at most max bytes. */
size_t frame_utf8_cut(const char *s, size_t len, size_t max);

/* ------------------------------------------------------------------------------------------
 * Admin requests (docs/TRANSPORT.md "Admin requests", docs/FORMATS.md §9): like a status
 * query, a client connects to a node's peer address and sends an ADMIN_REQ as its first frame,
 * instead of a HELLO; the node hands it to the layer above, which answers later; the node
 * writes one ADMIN frame with the answer, then closes. op, id and flags are opaque to
 * cluster/ (the fs layer's operation). Both payloads open with their own admin version.
 * ------------------------------------------------------------------------------------------ */
#define ADMIN_VERSION 1
#define ADMIN_ADDR_MAX 255
#define ADMIN_MAX_TEXT (64u * 1024)
#define ADMIN_REQ_HEAD_BYTES 24       /* version, op, id, flags, address length */
#define ADMIN_HEAD_BYTES 24           /* version, flags, node id, code, text length */
#define ADMIN_CODE_MIN (-4095)        /* an answer's code is 0 or in [ADMIN_CODE_MIN, -1] */

typedef struct frame_admin {
    uint32_t version;            /* ADMIN_REQ: >= 1; ADMIN: ADMIN_VERSION */
    uint32_t op;                 /* ADMIN_REQ: opaque to cluster/ (the fs layer's op code,
                                    nonzero) */
    uint64_t id;                 /* ADMIN_REQ: the node the op is about (may be 0) */
    uint32_t flags;              /* ADMIN_REQ: opaque to cluster/ */
    char addr[ADMIN_ADDR_MAX + 1]; /* ADMIN_REQ: NUL-terminated, may be empty; printable
                                    ASCII (0x20..0x7E) */
    int32_t code;                /* ADMIN: 0 or a negative errno value (>= ADMIN_CODE_MIN) */
    uint64_t node_id;            /* ADMIN: the answering node, nonzero */
    const char *text;            /* ADMIN: len bytes of UTF-8 (no NUL), <= ADMIN_MAX_TEXT; a
                                    decoded one points into mem and is NUL-terminated there */
    size_t len;
    void *mem;                   /* owned by a decoded ADMIN (frame_free) */
} frame_admin_t;

/* One decoded (or to-be-encoded) frame. Which fields mean something depends on type. */
typedef struct frame {
    uint32_t type;           /* FRAME_* */
    frame_hello_t hello;     /* HELLO */
    uint32_t group;          /* RAFT: the Raft group (shard) the message belongs to */
    raft_msg_t msg;          /* RAFT: decoded messages own their memory (frame_free) */
    uint64_t ping;           /* PING, PONG */
    frame_fwd_t fwd;         /* FWD: a decoded one owns its command (frame_free) */
    frame_status_t status;   /* STATUS_REQ, STATUS: a decoded STATUS owns its text */
    frame_admin_t admin;     /* ADMIN_REQ, ADMIN: a decoded ADMIN owns its text */
} frame_t;

/* Releases what a decoded frame owns (its Raft message, its FWD command, its status or admin
 * text)
 * and zeroes *f. NULL is a no-op. */
void frame_free(frame_t *f);

/* Exact number of bytes frame_encode writes for f (header included). */
size_t frame_encoded_size(const frame_t *f);
/* Writes f (header, payload, CRC) into buf (cap bytes). f->msg may be borrowed (a Ready's
 * message); nothing is kept. Returns 0 and *len, or -QERR_INVAL (unknown type, node_id 0,
 * a message raft_msg_encode refuses, a STATUS_REQ of version 0, a STATUS text over
 * STATUS_MAX_TEXT or not valid UTF-8, an ADMIN_REQ of version 0 or op 0 or whose addr is not
 * NUL-terminated printable ASCII, an ADMIN with node id 0, a code positive or under
 * ADMIN_CODE_MIN, a text over ADMIN_MAX_TEXT or not valid UTF-8), -QERR_TOOBIG (cap too
 * small, or payload over
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
 *                        the wrong size for its type (a STATUS_REQ over
 *                        STATUS_REQ_MAX_BYTES or a STATUS over STATUS_HEAD_BYTES +
 *                        STATUS_MAX_TEXT is refused from its header), a HELLO with node
 *                        id 0, a RAFT message raft_msg_decode calls corrupt, a FWD payload
 *                        frame_fwd_decode refuses, a STATUS_REQ of version 0 or with
 *                        nonzero flags, a STATUS with nonzero flags, node id 0, a text
 *                        length that does not match or a text that is not valid UTF-8;
 *                        an ADMIN_REQ of version 0 or op 0, an address length over
 *                        ADMIN_ADDR_MAX or not matching the payload, an address byte
 *                        outside 0x20..0x7E; an ADMIN with nonzero flags, node id 0, a
 *                        code positive or under ADMIN_CODE_MIN, a text length that does
 *                        not match or a text that is not valid UTF-8 (an ADMIN_REQ over
 *                        ADMIN_REQ_HEAD_BYTES + ADMIN_ADDR_MAX or an ADMIN over
 *                        ADMIN_HEAD_BYTES + ADMIN_MAX_TEXT is refused from its header);
 *         -QERR_FORMAT   another frame version (or a Raft message or FWD payload of another
 *                        version, or a STATUS answer of a version other than
 *                        STATUS_VERSION, or an ADMIN answer of a version other than
 *                        ADMIN_VERSION);
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
