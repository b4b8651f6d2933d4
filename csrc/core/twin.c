/* Stored twins: which stored node each heap node became when a commit
 * wrote it.
 *
 * Why: a commit writes the heap nodes a value reaches that its store does
 * not hold yet, and the committed container adopts the stored root.  A copy
 * taken before the commit still holds the heap nodes; without twins the
 * next commit of that copy would write them all again, though only its
 * changes are new.  With them the segment writer keeps the stored word of
 * every node the copy still shares (segment.c, cow_segw_ref).
 *
 * The table maps a node's address to its twin's word; it holds no
 * reference, so it keeps no memory alive.
 *
 * Invariants (cited as T1.. by tests):
 *  T1  a node has an entry iff its refcnt carries COW_REFCNT_TWIN.  The bit
 *      makes the count differ from 1, so every write path-copies the node as
 *      it does a shared one: its bytes never change while the entry exists,
 *      and the twin stays equal to it.  (A container header too: writers own
 *      a header -- cow_map_own, cow_vec_own -- before changing it, as the
 *      binding does on every write.)
 *  T2  the entry dies with its node: the last release sees the bit and
 *      forgets the entry before the memory is freed, so a reused address
 *      never finds an old twin.
 *  T3  an entry names its store by env slot; closing the store or compacting
 *      it forgets its entries.  A twin whose segment was swept since it was
 *      recorded is found out by the writer (it asks whether the store still
 *      holds the segment) and the node is written again.
 *  T4  the table is process-wide and touched only under the callers'
 *      serialisation of heap nodes (the GIL in the binding), as the shape
 *      cache of pack.c.
 */
#include "cowstore/errors.h"
#include "cowstore/twin.h"
#include "cowstore/u64map.h"

static cow_u64map twins;

/* Records that the live heap node `node` (refcnt its first field) was
 * written as the stored node `word` (heap form: its slot filled in).
 * COW_OK or COW_ENOMEM (nothing recorded: the node is merely written again
 * by a later commit). */
static int
twin_note(void *node, cow_word word)
{
    uint32_t *refcnt = node;
    int rc = cow_u64map_put(&twins, (uint64_t)(uintptr_t)node, word);
    if (rc == COW_OK)
        *refcnt |= COW_REFCNT_TWIN;
    return rc;
}

void
cow_twin_note_written(const cow_u64map *written, unsigned slot)
{
    cow_word slot_bits = (cow_word)slot << COW_REF_SLOT_SHIFT;
    if (cow_u64map_reserve(&twins, written->len) < 0)
        return;
    for (size_t i = 0; i < written->cap; i++) {
        uint32_t *refcnt = (uint32_t *)(uintptr_t)written->cells[i].key;
        if (refcnt != NULL && *refcnt != COW_REFCNT_STORED)
            (void)twin_note(refcnt, written->cells[i].val | slot_bits);
    }
}

int
cow_twin_find(const void *node, cow_word *word)
{
    uint64_t w;
    if (cow_u64map_get(&twins, (uint64_t)(uintptr_t)node, &w) != COW_FOUND)
        return COW_NOT_FOUND;
    *word = (cow_word)w;
    return COW_FOUND;
}

/* An empty table gives its memory back: most programs hold no twins for
 * long (the committed container adopts its stored root). */
static void
free_if_empty(void)
{
    if (twins.len == 0)
        cow_u64map_free(&twins);
}

void
cow_twin_forget(const void *node)
{
    cow_u64map_del(&twins, (uint64_t)(uintptr_t)node);
    free_if_empty();
}

void
cow_twin_forget_slot(unsigned slot)
{
    for (size_t i = 0; i < twins.cap;) {
        uint32_t *refcnt = (uint32_t *)(uintptr_t)twins.cells[i].key;
        if (refcnt == NULL || cow_word_slot((cow_word)twins.cells[i].val) != slot) {
            i++;
            continue;
        }
        *refcnt &= ~COW_REFCNT_TWIN;
        cow_u64map_del(&twins, twins.cells[i].key);  /* may shift a later key into i: look again */
    }
    free_if_empty();
}

long
cow_twin_count(void)
{
    return (long)twins.len;
}
