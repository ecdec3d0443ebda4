/* fs/ns_sm.c — the registry of namespace state machines (see ns_sm.h). A namespace without
 * one is served by the generic object tree (cache/, config/) or refuses creation. */
#include "fs/ns_sm.h"
#include "fs/queues_sm.h"
#include "fs/session_sm.h"

/* Declared here, not through fs/locks.h, which still includes the FUSE headers. */
extern const ns_sm_t locks_sm;

const ns_sm_t *const ns_sms[NS__COUNT] = {
    [NS_NONE] = NULL,
    [NS_LOCKS] = &locks_sm,
    [NS_QUEUES] = &queues_sm,
};

void ns_sm_session_end(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx)
{
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && ns_sms[ns]->session_end)
            ns_sms[ns]->session_end(st, sid, now_ms, fx);
}

void ns_sm_check(const state_t *st)
{
    session_sm_check(&st->sessions);
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && ns_sms[ns]->check)
            ns_sms[ns]->check(st);
}
