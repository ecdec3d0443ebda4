/* fs/testhook.c — see testhook.h. The variable is parsed once; malformed values are
 * ignored (no pause), so a typo can never change production behaviour. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/testhook.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char point_name[64];
static long pause_ms;

static void parse(void)
{
    const char *v = getenv("QUORUMFS_TEST_PAUSE");
    const char *colon = v ? strchr(v, ':') : NULL;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(point_name))
        return;
    char *end;
    long ms = strtol(colon + 1, &end, 10);
    if (*end || ms <= 0 || ms > 60000)
        return;
    memcpy(point_name, v, (size_t)(colon - v));
    pause_ms = ms;
}

void testhook_pause(const char *point)
{
    pthread_once(&once, parse);
    if (pause_ms && strcmp(point, point_name) == 0) {
        struct timespec ts = { pause_ms / 1000, (pause_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
}
