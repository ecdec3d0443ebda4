/* fs/testhook.h — fault injection for integration tests. A named point in the daemon can be
 * made to sleep, to widen a race window so that a test reproduces it every time:
 *   QUORUMFS_TEST_PAUSE="watch_read_registered:200" build/quorumfs mount ...
 * pauses 200 ms each time the code passes testhook_pause("watch_read_registered"). Without
 * the variable every point is a no-op (one load and a branch). Never set it in production. */
#ifndef QFS_FS_TESTHOOK_H
#define QFS_FS_TESTHOOK_H

/* Sleeps if QUORUMFS_TEST_PAUSE names this point (read once, at the first call). */
void testhook_pause(const char *point);

#endif
