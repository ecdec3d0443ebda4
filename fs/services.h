/* fs/services.h — the services/ namespace (FILE-API §6): a service registry with active TCP
 * health checks and load balancing. Two halves: the deterministic state machine,
 * fs/services_sm.h (commands, read API, invariants), and the FUSE front,
 * fs/services_fuse.c, registered here. Design: docs/SERVICES.md. */
#ifndef QFS_FS_SERVICES_H
#define QFS_FS_SERVICES_H

#include "fs/ns.h"
#include "fs/services_sm.h"

/* The front of services/ (fs/ns.h): its context holds the open `.events` watches (to which
 * EFF_CONFIG_REV effects of NS_SERVICES are delivered), the inodes of `.events@rev` and of
 * instances being created, and the TCP checker (one thread per node). */
extern const ns_front_t services_front;

#endif
