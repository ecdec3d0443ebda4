/* tests/lin/lmount.h — what the cluster history recorders (histrec, qrec) share: a handle on
 * one quorumfs mount that is only ever a live FUSE mount (a killed node's path falls back to
 * the empty directory below it, where an operation must not be recorded as an answer of the
 * filesystem), one monotonic clock for every process on the machine, errno names, and event
 * lines appended whole to one log shared by many processes, and the command-line pieces
 * both have (numbers, --mark). */
#ifndef QFS_LIN_LMOUNT_H
#define QFS_LIN_LMOUNT_H

#include <stddef.h>
#include <stdint.h>

typedef struct lmount {
    const char *path;   /* the mount point (borrowed from argv) */
    int root;           /* a directory fd on the live FUSE mount, or -1 */
} lmount_t;

/* Returns a directory fd on the mount's root if the path is a live FUSE mount now (opening it
 * again after lm_reset), else -1 with nothing held. The fd stays owned by m. */
int lm_root(lmount_t *m);

/* Drops the held root fd (after ENOTCONN and the like: the node behind it died). */
void lm_reset(lmount_t *m);

/* After an operation failed with err: drops the root fd unless it still reaches a live FUSE
 * mount, so that the next lm_root finds a restarted node. */
void lm_after_error(lmount_t *m, int err);

/* Nanoseconds on CLOCK_MONOTONIC: comparable across every process of this machine. */
uint64_t lm_now(void);

/* The symbolic name of an errno value ("EIO"), or "E<number>". Static storage. */
const char *lm_errname(int err);

/* Appends one line (printf format; the newline is added) to fd with ONE write(2), so lines
 * of several processes appending to one O_APPEND file never interleave. Lines longer than
 * 1000 bytes are cut. Returns 0, or -1 if the write failed or was short. */
int lm_logf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of option opt (its argument v), a decimal number from lo to hi; anything else
 * ends the process with status 2 and a line "<prog>: <opt>: ..." on stderr. */
long lm_num_arg(const char *prog, const char *opt, const char *v, long lo, long hi);

/* The recorders' --mark FILE LABEL: appends "M <label> <lm_now()>" to the history file (it
 * must exist). Returns the exit status: 0, 1 if the file could not be written, 2 if the
 * label is not one word. */
int lm_mark(const char *prog, const char *file, const char *label);

/* Sleeps ms milliseconds (restarting after signals). */
void lm_sleep_ms(unsigned ms);

#endif
