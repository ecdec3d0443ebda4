/* cluster/err.c — string table for the QERR_* codes of cluster/err.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
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

int qerr_from_errno(int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return -QERR_NOSPACE;
    if (e == ENOMEM)
        return -QERR_NOMEM;
    return -QERR_IO;
}

void qerr_set_msg(char **errmsg, const char *fmt, ...)
{
    va_list ap;
    if (!errmsg || *errmsg)
        return;
    va_start(ap, fmt);
    if (vasprintf(errmsg, fmt, ap) < 0)
        *errmsg = NULL;
    va_end(ap);
}
