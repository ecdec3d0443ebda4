/* fs/ns_sm.c — the registry of namespace state machines (see ns_sm.h) and the names of the
 * namespaces (fs/ns_ids.h). Commands in a namespace without one get -ENOTSUP. */
#include "fs/cache_sm.h"
#include "fs/config_sm.h"
#include "fs/jobs_sm.h"
#include "fs/locks_sm.h"
#include "fs/logs_sm.h"
#include "fs/ns_sm.h"
#include "fs/queues_sm.h"
#include "fs/search_sm.h"
#include "fs/services_sm.h"
#include "fs/session_sm.h"

const char *const ns_names[NS__COUNT] = {
    NULL, "cache", "config", "jobs", "locks", "logs", "queues", "search", "services",
};

const ns_sm_t *const ns_sms[NS__COUNT] = {
    [NS_NONE] = NULL,
    [NS_CACHE] = &cache_sm,
    [NS_CONFIG] = &config_sm,
    [NS_JOBS] = &jobs_sm,
    [NS_LOCKS] = &locks_sm,
    [NS_LOGS] = &logs_sm,
    [NS_QUEUES] = &queues_sm,
    [NS_SEARCH] = &search_sm,
    [NS_SERVICES] = &services_sm,
};

void ns_sm_session_end(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx)
{
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && ns_sms[ns]->session_end)
            ns_sms[ns]->session_end(st, sid, now_ms, fx);
}

void ns_sm_check(const state_t *st)
{
    tree_sm_check(st);
    session_sm_check(&st->sessions, st->now_ms);
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && ns_sms[ns]->check)
            ns_sms[ns]->check(st);
}
