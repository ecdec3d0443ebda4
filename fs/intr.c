/* fs/intr.c — the per-thread flags of fs/intr.h. */
#include "fs/intr.h"

__thread int intr_registering;
__thread int intr_deferred;
