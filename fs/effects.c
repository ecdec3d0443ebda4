/* fs/effects.c — the outbox of effects apply emits (see effects.h). */
#include <stdlib.h>
#include "cluster/assert.h"
#include "fs/effects.h"
#include "fs/state.h"

effect_t *effects_add(effects_t *fx, uint8_t kind, uint8_t ns, uint64_t sid, uint64_t wid)
{
    effect_t *e = xcalloc(1, sizeof(*e));
    e->kind = kind;
    e->ns = ns;
    e->sid = sid;
    e->wid = wid;
    if (fx->tail)
        fx->tail->next = e;
    else
        fx->head = e;
    fx->tail = e;
    fx->n++;
    return e;
}

effects_t effects_take(effects_t *fx)
{
    effects_t out = *fx;
    fx->head = fx->tail = NULL;
    fx->n = 0;
    return out;
}

void effect_free(effect_t *e)
{
    if (!e)
        return;
    if (e->kind == EFF_QUEUE_MSG) {
        blob_unref(e->u.qmsg.msg);
        free(e->u.qmsg.qname);
    }
    free(e);
}

void effects_clear(effects_t *fx)
{
    for (effect_t *e = fx->head, *n; e; e = n) {
        n = e->next;
        effect_free(e);
    }
    fx->head = fx->tail = NULL;
    fx->n = 0;
}
