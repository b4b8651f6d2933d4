/* Long strings shared within one conversion: layout and invariants S1..S2 are
 * in cowstore/strset.h. */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/hash.h"
#include "cowstore/twin.h"
#include "cowstore/strset.h"

#define STRSET_MIN_CAP 64
static const uint64_t STRSET_SEED = 0x510e527fade682d1ULL;

void
cow_strset_init(cow_strset *s)
{
    s->slots = NULL;
    s->cap = s->used = 0;
}

void
cow_strset_free(cow_strset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] && cow_refcnt_drop(&s->slots[i]->refcnt))
            cow_free(s->slots[i]);
    cow_free(s->slots);
    cow_strset_init(s);
}

size_t cow_strset_len(const cow_strset *s) { return s->used; }

static size_t
home_of(const cow_strset *s, const void *data, size_t len)
{
    return (size_t)cow_hash_bytes(data, len, STRSET_SEED) & (s->cap - 1);
}

/* The slot holding these bytes, or the empty slot where they would go. */
static cow_blob **
slot_of(const cow_strset *s, const char *data, size_t len)
{
    size_t i = home_of(s, data, len);
    for (;; i = (i + 1) & (s->cap - 1)) {
        cow_blob *b = s->slots[i];
        if (b == NULL || (cow_blob_len(b) == len && memcmp(cow_blob_data(b), data, len) == 0))
            return &s->slots[i];
    }
}

/* Rebuilds the table with room for one more blob, first dropping the blobs
 * only the set holds (S2). */
static int
grow(cow_strset *s)
{
    size_t live = 0, cap;
    cow_blob **old = s->slots;
    size_t old_cap = s->cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i] && (old[i]->refcnt & ~COW_REFCNT_TWIN) == 1) {
            if (cow_refcnt_drop(&old[i]->refcnt))
                cow_free(old[i]);   /* a blob holds nothing else */
            old[i] = NULL;
        }
        live += old[i] != NULL;
    }
    for (cap = STRSET_MIN_CAP; cap < 4 * (live + 1); cap *= 2)
        ;
    if ((s->slots = cow_calloc(cap, sizeof *s->slots)) == NULL) {
        s->slots = old;     /* still valid: only dead blobs went */
        s->used = live;
        return COW_ENOMEM;
    }
    s->cap = cap;
    s->used = live;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            *slot_of(s, cow_blob_data(old[i]), cow_blob_len(old[i])) = old[i];
    cow_free(old);
    return COW_OK;
}

int
cow_strset_str(cow_strset *s, const char *utf8, size_t len, cow_val *out)
{
    cow_blob **slot;
    int rc;
    if (len > COW_INLINE_MAX && s->cap && *(slot = slot_of(s, utf8, len))) {
        memset(out, 0, sizeof *out);
        out->tag = COW_T_STR;
        out->u.w = cow_word_of(*slot);
        (*slot)->refcnt++;
        return COW_OK;
    }
    if ((rc = cow_val_str(out, utf8, len)) < 0 || len <= COW_INLINE_MAX)
        return rc;
    if (2 * (s->used + 1) > s->cap && grow(s) < 0)
        return COW_OK;                          /* unshared, but stored */
    slot = slot_of(s, utf8, len);
    *slot = cow_val_getblob(out);
    (*slot)->refcnt++;                          /* the set's own (S1) */
    s->used++;
    return COW_OK;
}
