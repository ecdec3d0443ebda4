/* fs/intr.h — registering FUSE interrupt callbacks without a use-after-free. libfuse's
 * fuse_req_interrupt_func() runs the callback at once, holding the request's lock, when
 * the request was already interrupted; a reply from inside would free the request under
 * that lock. So: every interrupt callback starts with INTR_DEFER_IF_REGISTERING(), and
 * callers register with intr_register(), which returns nonzero when the callback was
 * deferred; the caller then simply calls the callback itself (still holding whatever
 * keeps the request from being answered elsewhere, e.g. the state read lock). */
#ifndef QFS_FS_INTR_H
#define QFS_FS_INTR_H

#include <fuse_lowlevel.h>

extern __thread int intr_registering;
extern __thread int intr_deferred;

#define INTR_DEFER_IF_REGISTERING()   \
    do {                              \
        if (intr_registering) {       \
            intr_deferred = 1;        \
            return;                   \
        }                             \
    } while (0)

/* Registers cb for req. Returns nonzero if req was already interrupted: cb was deferred
 * and the caller must call cb(req, data) itself. */
static inline int intr_register(fuse_req_t req, fuse_interrupt_func_t cb, void *data)
{
    intr_registering = 1;
    intr_deferred = 0;
    fuse_req_interrupt_func(req, cb, data);
    intr_registering = 0;
    return intr_deferred;
}

#endif
