/* fs/search.h — the search/ namespace (FILE-API §9): full-text indexes whose documents are
 * files, search/<index>/<doc>, spread over every shard by name, and queries read from
 * search/<index>/.q/<query>. Three parts: the tokenizer (fs/tokenize.h), the deterministic
 * state machine (fs/search_sm.h) and the query engine (fs/bm25.h), and the FUSE front,
 * fs/search_fuse.c, registered here. Design: docs/SEARCH.md. */
#ifndef QFS_FS_SEARCH_H
#define QFS_FS_SEARCH_H

#include "fs/ns.h"
#include "fs/search_sm.h"

/* The front of search/ (fs/ns.h): per node, the inodes of documents being created and of
 * queries (counted by kernel lookups), and open documents with their saves. */
extern const ns_front_t search_front;

#endif
