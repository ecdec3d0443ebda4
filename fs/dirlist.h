/* fs/dirlist.h — a directory listing taken at opendir and served to readdir in pieces: the
 * one way every namespace (the generic tree, queues/, locks/) lists a directory, so a
 * listing is one consistent version for the whole open. */
#ifndef QFS_FS_DIRLIST_H
#define QFS_FS_DIRLIST_H

#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct dirlist {
    struct dirlist_ent {
        char *name;            /* owned */
        uint64_t ino;
        mode_t type;           /* S_IFDIR or S_IFREG */
    } *ents;
    size_t n, cap;
} dirlist_t;

/* Appends an entry (name is copied). Returns 0 or -ENOMEM. */
int dirlist_add(dirlist_t *d, const char *name, uint64_t ino, mode_t type);
/* Sorts the entries from index `from` on by name (bytewise). */
void dirlist_sort(dirlist_t *d, size_t from);
/* Replies to a readdir request for at most size bytes from offset off (an entry index). */
void dirlist_reply(fuse_req_t req, const dirlist_t *d, size_t size, off_t off);
/* Frees the entries; d itself is the caller's. */
void dirlist_clear(dirlist_t *d);

#endif
