/* Stored twins: the heap nodes a commit wrote, each with the word of the
 * stored node it became (see twin.c). */
#ifndef COWSTORE_TWIN_H
#define COWSTORE_TWIN_H

#include <stdint.h>

#include "cowstore/ref.h"
#include "cowstore/u64map.h"

/* Set in the refcnt (the first field of every node) of a heap node that has
 * a twin (T1).  It makes the count read as shared, so no write changes the
 * node in place; only the low bits count references. */
#define COW_REFCNT_TWIN 0x80000000u

void cow_twin_forget(const void *node);

/* Drops one reference from a heap node's count: 1 when that was the last
 * (the caller frees the node), after forgetting its twin (T2). */
static inline int
cow_refcnt_drop(uint32_t *refcnt)
{
    if (((--*refcnt) & ~COW_REFCNT_TWIN) != 0)
        return 0;
    if (*refcnt & COW_REFCNT_TWIN)
        cow_twin_forget(refcnt);
    return 1;
}

/* A commit holds: every heap node of `written` (a segment writer's memo,
 * node address -> page word in store slot `slot`) gets its twin.  Stored
 * nodes (read from pages and copied) are skipped.  A twin that cannot be
 * recorded (no memory) only costs a later rewrite. */
void cow_twin_note_written(const cow_u64map *written, unsigned slot);
/* The stored twin of a heap node (heap form): COW_FOUND or COW_NOT_FOUND. */
int cow_twin_find(const void *node, cow_word *word);
/* Forgets every twin in env slot `slot` (T3: the store closed or was
 * compacted), clearing their nodes' bits. */
void cow_twin_forget_slot(unsigned slot);
/* How many twins are recorded (tests). */
long cow_twin_count(void);

#endif
