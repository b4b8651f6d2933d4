/* Parcels: writing one value's nodes into a self-contained buffer, and
 * reading such a buffer in place as an env of the ref table.  See
 * cowstore/parcel.h for the layout and invariants P1-P2.
 *
 * Writing goes through the segment writer with copy_all (every node the
 * value reaches is written, whichever store holds it) and a sink that keeps
 * the segments in memory; this file knows no node layout.  Reading
 * registers an env whose base is the buffer and whose lookup answers from
 * the parcel's segment table; the resolver (ref.c) bounds-checks every span
 * and node against the buffer.
 */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/parcel.h"
#include "cowstore/segment.h"

#define HEAD_SIZE sizeof(cow_parcel_head)
#define SPAN_SIZE (2 * sizeof(uint64_t))

/* ---- writing ------------------------------------------------------------- */

static int
out_new_id(void *ctx, uint32_t *seg)
{
    cow_parcel_out *o = ctx;
    if (o->nsegs == o->capsegs) {
        uint32_t cap = o->capsegs ? o->capsegs * 2 : 8;
        uint64_t (*spans)[2] = cow_realloc(o->spans, (size_t)cap * sizeof *spans);
        if (spans == NULL)
            return COW_ENOMEM;
        o->spans = spans;
        o->capsegs = cap;
    }
    o->spans[o->nsegs][0] = o->spans[o->nsegs][1] = 0;
    *seg = ++o->nsegs;              /* ids 1..nsegs: table entry id - 1 */
    return COW_OK;
}

static int
out_put(void *ctx, uint32_t seg, const char *bytes, size_t len, const uint32_t *refs,
        size_t nrefs)
{
    cow_parcel_out *o = ctx;
    (void)refs;
    (void)nrefs;                    /* a parcel is never swept: no reference records */
    if (len > COW_PARCEL_SEG_MAX) {
        o->oversized = 1;           /* it would be written, then never read back */
        return COW_EOVERFLOW;
    }
    if (o->len + len > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *b;
        while (cap < o->len + len)
            cap *= 2;
        if ((b = cow_realloc(o->body, cap)) == NULL)
            return COW_ENOMEM;
        o->body = b;
        o->cap = cap;
    }
    memcpy(o->body + o->len, bytes, len);
    o->spans[seg - 1][0] = o->len;
    o->spans[seg - 1][1] = len;
    o->len += len;                  /* segments are whole 8-byte units (segment.c) */
    return COW_OK;
}

static const cow_segw_sink out_sink = {out_new_id, NULL, out_put};

int
cow_parcel_build(const cow_val *v, cow_parcel_out *out)
{
    cow_segw w;
    int rc;
    memset(out, 0, sizeof *out);
    out->root = cow_val_none();
    cow_segw_init(&w, 0, 1, &out_sink, out);
    w.target = COW_PARCEL_SEG_TARGET;
    cow_segw_value(&w, v, &out->root);
    rc = cow_segw_finish(&w);
    cow_segw_free(&w);
    return rc;
}

size_t
cow_parcel_size(const cow_parcel_out *out)
{
    return HEAD_SIZE + (size_t)out->nsegs * SPAN_SIZE + out->len;
}

void
cow_parcel_emit(const cow_parcel_out *out, char *dst)
{
    cow_parcel_head head;
    size_t body_at = HEAD_SIZE + (size_t)out->nsegs * SPAN_SIZE;
    memset(&head, 0, sizeof head);
    memcpy(head.magic, COW_PARCEL_MAGIC, COW_PARCEL_MAGIC_LEN);
    head.version = COW_PARCEL_VERSION;
    head.nsegs = out->nsegs;
    head.size = cow_parcel_size(out);
    head.root = out->root;
    memcpy(dst, &head, HEAD_SIZE);
    for (uint32_t i = 0; i < out->nsegs; i++) {
        uint64_t span[2] = {body_at + out->spans[i][0], out->spans[i][1]};
        memcpy(dst + HEAD_SIZE + (size_t)i * SPAN_SIZE, span, SPAN_SIZE);
    }
    if (out->len)
        memcpy(dst + body_at, out->body, out->len);
}

void
cow_parcel_out_free(cow_parcel_out *out)
{
    cow_free(out->body);
    cow_free(out->spans);
    memset(out, 0, sizeof *out);
}

/* ---- reading ------------------------------------------------------------- */

/* An open parcel.  env is first: the ref table hands it back to us. */
typedef struct cow_parcel {
    cow_ref_env env;
    const char *table;          /* nsegs spans, inside the buffer */
    uint32_t nsegs;
    unsigned slot;
    cow_parcel_release release;
    void *owner;
} cow_parcel;

static long open_parcels;

/* The env lookup: segment seg's span from the table (the resolver checks
 * that it lies in the buffer, R2). */
static int
parcel_lookup(void *ctx, uint32_t seg, size_t *off, size_t *len)
{
    cow_parcel *p = ctx;
    uint64_t span[2];
    if (seg == 0 || seg > p->nsegs)
        return COW_ECORRUPT;
    memcpy(span, p->table + (size_t)(seg - 1) * SPAN_SIZE, SPAN_SIZE);
    if (span[0] > SIZE_MAX || span[1] > SIZE_MAX)
        return COW_ECORRUPT;
    *off = (size_t)span[0];
    *len = (size_t)span[1];
    return COW_OK;
}

/* The last value read from the parcel is gone (P2). */
static void
parcel_close(cow_parcel *p)
{
    cow_parcel_release release = p->release;
    void *owner = p->owner;
    cow_ref_env_remove(p->slot);
    cow_free(p);
    open_parcels--;
    if (release)
        release(owner);
}

static void
parcel_unpinned(cow_ref_env *env)
{
    parcel_close((cow_parcel *)env);
}

/* Checks the header (P1) and copies it out. */
static int
check_head(const char *buf, size_t len, cow_parcel_head *head)
{
    if (len < HEAD_SIZE)
        return COW_ECORRUPT;
    memcpy(head, buf, HEAD_SIZE);
    if (memcmp(head->magic, COW_PARCEL_MAGIC, COW_PARCEL_MAGIC_LEN) != 0
        || head->version < COW_PARCEL_VERSION_OLDEST_READ
        || head->version > COW_PARCEL_VERSION || head->reserved != 0
        || head->size != len)
        return COW_ECORRUPT;
    if (head->nsegs > (len - HEAD_SIZE) / SPAN_SIZE)
        return COW_ECORRUPT;
    if (cow_val_check_stored(&head->root) < 0)
        return COW_ECORRUPT;
    return COW_OK;
}

uint32_t
cow_parcel_version(const void *buf, size_t len)
{
    cow_parcel_head head;
    if (len < HEAD_SIZE)
        return 0;
    memcpy(&head, buf, HEAD_SIZE);
    return memcmp(head.magic, COW_PARCEL_MAGIC, COW_PARCEL_MAGIC_LEN) == 0 ? head.version : 0;
}

int
cow_parcel_open(const void *buf, size_t len, cow_parcel_release release, void *owner,
                cow_val *root)
{
    cow_parcel_head head;
    cow_parcel *p;
    int rc, slot;
    if ((uintptr_t)buf % COW_REF_UNIT != 0)
        return COW_EINVAL;
    if ((rc = check_head(buf, len, &head)) < 0)
        return rc;
    if (!cow_tag_has_word(head.root.tag)) {
        *root = head.root;          /* names no node: nothing to keep */
        if (release)
            release(owner);
        return COW_OK;
    }
    if ((p = cow_calloc(1, sizeof *p)) == NULL)
        return COW_ENOMEM;
    p->env.base = buf;
    p->env.size = len;
    p->env.lookup = parcel_lookup;
    p->env.ctx = p;
    p->env.unpinned = parcel_unpinned;
    cow_u64map_init(&p->env.seg_pins);
    p->table = (const char *)buf + HEAD_SIZE;
    p->nsegs = head.nsegs;
    if ((slot = cow_ref_env_add(&p->env)) < 0) {
        cow_free(p);
        return slot;
    }
    p->slot = (unsigned)slot;
    p->release = release;
    p->owner = owner;
    open_parcels++;
    *root = head.root;
    root->u.w |= (cow_word)p->slot << COW_REF_SLOT_SHIFT;
    cow_val_retain(root);           /* the first pin: P2 from here on */
    return COW_OK;
}

long
cow_parcel_open_count(void)
{
    return open_parcels;
}
