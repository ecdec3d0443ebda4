/* fs/dirlist.c — directory listings for readdir; see dirlist.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/dirlist.h"

int dirlist_add(dirlist_t *d, const char *name, uint64_t ino, mode_t type)
{
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        struct dirlist_ent *e = realloc(d->ents, nc * sizeof(*e));
        if (!e)
            return -ENOMEM;
        d->ents = e;
        d->cap = nc;
    }
    char *nm = strdup(name);
    if (!nm)
        return -ENOMEM;
    d->ents[d->n++] = (struct dirlist_ent){ nm, ino, type };
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    return strcmp(((const struct dirlist_ent *)a)->name, ((const struct dirlist_ent *)b)->name);
}

void dirlist_sort(dirlist_t *d, size_t from)
{
    if (d->n > from + 1)
        qsort(d->ents + from, d->n - from, sizeof(*d->ents), cmp_ent);
}

void dirlist_reply(fuse_req_t req, const dirlist_t *d, size_t size, off_t off)
{
    char *buf = malloc(size ? size : 1);
    size_t used = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (size_t i = off < 0 ? 0 : (size_t)off; i < d->n; i++) {
        struct stat s;
        memset(&s, 0, sizeof(s));
        s.st_ino = d->ents[i].ino;
        s.st_mode = d->ents[i].type;
        size_t n = fuse_add_direntry(req, buf + used, size - used, d->ents[i].name, &s,
                                     (off_t)(i + 1));
        if (n > size - used)
            break;
        used += n;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

void dirlist_clear(dirlist_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ents[i].name);
    free(d->ents);
    memset(d, 0, sizeof(*d));
}
