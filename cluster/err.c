/* cluster/err.c — string table for the QERR_* codes of cluster/err.h. */
#include "cluster/err.h"

#define QERR_STR_(name, str) str,
static const char *const qerr_strings[] = { QERR_LIST(QERR_STR_) };
#undef QERR_STR_

const char *qerr_str(int code)
{
    if (code < 0)
        code = -code;
    if (code >= QERR__COUNT)
        return "unknown error";
    return qerr_strings[code];
}
