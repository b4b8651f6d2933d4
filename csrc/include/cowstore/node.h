/* The table of node kinds: what the resolver (ref.c) and the segment writer
 * (segment.c) must know of each stored layout, declared by the module that
 * owns it, so neither switches on kinds nor knows a layout.  Adding a kind is
 * one enum value (ref.h cow_node_kind) and one row of node.c's table. */
#ifndef COWSTORE_NODE_H
#define COWSTORE_NODE_H

#include <stddef.h>

#include "cowstore/ref.h"

struct cow_segw;

typedef struct cow_node_ops {
    const char *name;       /* for messages and tests */
    /* Bytes of the stored node of `kind` at p (its header readable: avail
     * bytes lie inside its segment, at least 8), or 0 when the header is not
     * sane or the body would pass avail.  Checks refcnt == COW_REFCNT_STORED. */
    size_t (*stored_size)(const void *p, size_t avail, int kind);
    /* An empty, never-written node of `kind`, returned for a bad reference. */
    void *(*poison)(int kind);
    /* Writes the node (children first, through cow_segw_ref, then
     * cow_segw_emit); returns its page word, or 0 with the writer's rc set. */
    cow_word (*write)(struct cow_segw *w, const void *node, int kind);
} cow_node_ops;

/* The row of `kind` (a cow_node_kind below COW_NK__COUNT). */
const cow_node_ops *cow_node_ops_of(int kind);

/* The rows' functions, one set per layout owner. */
size_t cow_vec_stored_size(const void *p, size_t avail, int kind);   /* VLEAF, VINNER, VANY, VEC */
size_t cow_map_stored_size(const void *p, size_t avail, int kind);   /* HNODE, MAP */
size_t cow_blob_stored_size(const void *p, size_t avail, int kind);  /* BLOB */
size_t cow_pack_stored_size(const void *p, size_t avail, int kind);  /* PACK */
void *cow_vec_poison(int kind);
void *cow_map_poison(int kind);
void *cow_blob_poison(int kind);
void *cow_pack_poison(int kind);
cow_word cow_vec_write_node(struct cow_segw *w, const void *node, int kind);
cow_word cow_map_write_node(struct cow_segw *w, const void *node, int kind);
cow_word cow_blob_write_node(struct cow_segw *w, const void *node, int kind);
cow_word cow_pack_write_node(struct cow_segw *w, const void *node, int kind);

#endif
