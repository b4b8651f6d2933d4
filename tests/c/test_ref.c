/* Criterion tests for csrc/core/ref.c: child words, bounds-checked
 * resolution of stored references, the env table and pins.
 *
 * A fake env stands in for a store: an 8-byte aligned heap buffer of exactly
 * FAKE_SIZE bytes (so AddressSanitizer faults on any read past its end) cut
 * into a few segments, and a lookup callback over a table of (offset,
 * length) that counts its calls.  Nodes are written into it by hand with the
 * stored layouts documented in vec.c, map.c and value.c (refcnt
 * COW_REFCNT_STORED, page-form child words), so every header field can be
 * made to lie.  The last segment ends at the end of the buffer: a node whose
 * header claims more bytes than remain must come back as poison without the
 * resolver (or the layout hooks) reading past the buffer -- ASan proves it.
 *
 * Invariants cited: R1 (segment cache), R2 (resolution stays inside the
 * segment, else poison and an error recorded), R3 (pins of heap-form
 * words), R4 (read scopes: per thread, nested). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/node.h"
#include "cowstore/ref.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"

TestSuite(ref, .fini = tu_leak_check);

/* ---- stored layouts (mirrors of the private node headers) ---------------- */

/* vec.c: 8-byte vnode header, then cow_val vals[cap] or cow_word kids[32]. */
typedef struct t_vnode {
    uint32_t refcnt;
    uint8_t leaf, cap, count, pad;
} t_vnode;

/* map.c: 16-byte index node header, then {hash32, entry} leaves, then kids. */
typedef struct t_hnode {
    uint32_t refcnt;
    uint16_t kind, count;
    uint32_t datamap, nodemap;
} t_hnode;

_Static_assert(sizeof(t_vnode) == 8, "vnode header mirror");
_Static_assert(sizeof(t_hnode) == 16, "hnode header mirror");

/* ---- the fake env ------------------------------------------------------------ */

/* Bytes of the fake mapping. */
#define FAKE_SIZE 4096
/* Segment ids 1..FAKE_SEGS-1 may exist; id 0 never does. */
#define FAKE_SEGS 8

typedef struct fake_env {
    cow_ref_env env;
    char *mem;                          /* FAKE_SIZE bytes, 8-byte aligned */
    size_t seg_off[FAKE_SEGS], seg_len[FAKE_SEGS];  /* len 0: no such segment */
    int lookups;                        /* calls of the callback */
    int unpinned_calls;
    int any_id;                         /* 1: ids past FAKE_SEGS alias segment 1 */
    unsigned slot;
} fake_env;

static int
fake_lookup(void *ctx, uint32_t seg, size_t *off, size_t *len)
{
    fake_env *f = ctx;
    f->lookups++;
    if (f->any_id && seg >= FAKE_SEGS)
        seg = 1;
    if (seg >= FAKE_SEGS || f->seg_len[seg] == 0)
        return COW_EKEY;
    *off = f->seg_off[seg];
    *len = f->seg_len[seg];
    return COW_OK;
}

static void
fake_unpinned(cow_ref_env *env)
{
    ((fake_env *)env->ctx)->unpinned_calls++;
}

/* Segments: 1 = [0, 1024), 2 = [1024, 2048), 3 = [2048, FAKE_SIZE) -- the
 * last one ends where the buffer does. */
static void
fake_init(fake_env *f)
{
    int slot;
    memset(f, 0, sizeof *f);
    f->mem = aligned_alloc(8, FAKE_SIZE);
    cr_assert_not_null(f->mem);
    memset(f->mem, 0, FAKE_SIZE);
    f->seg_off[1] = 0;
    f->seg_len[1] = 1024;
    f->seg_off[2] = 1024;
    f->seg_len[2] = 1024;
    f->seg_off[3] = 2048;
    f->seg_len[3] = FAKE_SIZE - 2048;
    f->env.base = f->mem;
    f->env.size = FAKE_SIZE;
    f->env.lookup = fake_lookup;
    f->env.ctx = f;
    f->env.unpinned = fake_unpinned;
    slot = cow_ref_env_add(&f->env);
    cr_assert_gt(slot, 0, "cow_ref_env_add: %d", slot);
    f->slot = (unsigned)slot;
}

static void
fake_free(fake_env *f)
{
    cow_ref_env_remove(f->slot);
    cr_assert_null(cow_ref_env_at(f->slot));
    free(f->mem);
}

/* Address of byte `off` of segment `seg`. */
static char *
at(fake_env *f, uint32_t seg, size_t off)
{
    return f->mem + f->seg_off[seg] + off;
}

/* Writes a stored blob of len bytes (filled with 'a' + i % 26) at seg:off. */
static void
put_blob(fake_env *f, uint32_t seg, size_t off, size_t len)
{
    cow_blob head = {COW_REFCNT_STORED, (uint32_t)len};
    memcpy(at(f, seg, off), &head, sizeof head);
    for (size_t i = 0; i < len; i++)
        at(f, seg, off)[sizeof head + i] = (char)('a' + i % 26);
}

/* Writes a stored vnode header at seg:off (its payload left as is). */
static void
put_vnode(fake_env *f, uint32_t seg, size_t off, uint32_t refcnt, uint8_t leaf, uint8_t cap,
          uint8_t count)
{
    t_vnode h = {refcnt, leaf, cap, count, 0};
    memcpy(at(f, seg, off), &h, sizeof h);
}

/* A heap-form word (slot filled) naming seg:off of f. */
static cow_word
heap_word(fake_env *f, uint32_t seg, size_t off)
{
    return cow_word_make(seg, off, f->slot);
}

/* Resolves w (held at *wp) as kind in a read scope of its own, expecting
 * poison and COW_ECORRUPT reported by that scope only. */
static void
expect_poison(const cow_word *wp, int kind, const char *why)
{
    int outer = cow_ref_scope_enter();
    void *p = cow_ref_get(wp, kind);
    cr_assert_not_null(p, "%s: resolution returned NULL", why);
    cr_assert_eq(*(const uint32_t *)p, COW_REFCNT_STORED, "%s: poison must be read-only", why);
    cr_assert_eq(cow_ref_scope_leave(outer), COW_ECORRUPT, "R2: %s: no COW_ECORRUPT recorded", why);
    cr_assert_eq(cow_ref_error(), outer, "R4: %s: the enclosing scope was changed", why);
    switch (kind) {     /* poison is empty */
    case COW_NK_BLOB: cr_assert_eq(cow_blob_len((cow_blob *)p), 0, "%s", why); break;
    case COW_NK_VEC: cr_assert_eq(((cow_vec *)p)->b.len, 0, "%s", why); break;
    case COW_NK_MAP: cr_assert_eq(((cow_map *)p)->live, 0, "%s", why);
                     cr_assert_eq(((cow_map *)p)->log.len, 0, "%s", why); break;
    default: break;
    }
}

/* ---- words ------------------------------------------------------------------ */

/* The word layout round-trips its extreme fields and keeps bit 0 for the
 * stored/heap distinction. */
Test(ref, word_layout_round_trip)
{
    uint32_t segs[] = {1, 2, 0x12345678u, UINT32_MAX};
    size_t offs[] = {0, 8, 4096, COW_REF_MAX_SEGMENT - COW_REF_UNIT};
    unsigned slots[] = {0, 1, 77, COW_REF_MAX_ENVS - 1};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++) {
                cow_word w = cow_word_make(segs[a], offs[b], slots[c]);
                cr_assert(cow_word_stored(w));
                cr_assert_eq(cow_word_seg(w), segs[a]);
                cr_assert_eq(cow_word_off(w), offs[b]);
                cr_assert_eq(cow_word_slot(w), slots[c]);
            }
    {
        cow_blob *heap = malloc(sizeof *heap);   /* heap pointers are 8-aligned: bit 0 clear */
        cr_assert_not(cow_word_stored(cow_word_of(heap)));
        free(heap);
    }
}

/* ---- resolution of good words ---------------------------------------------- */

/* A heap-form word resolves from anywhere to the node's address inside its
 * segment (R2, the good case), with no error recorded; the segment's span is
 * looked up once and then served from the cache (R1). */
Test(ref, resolve_good_heap_words)
{
    fake_env f;
    cow_word w1, w2, w3;
    cow_blob *b;
    fake_init(&f);
    put_blob(&f, 1, 16, 40);
    put_blob(&f, 2, 0, 3);
    put_blob(&f, 3, 64, 0);
    w1 = heap_word(&f, 1, 16);
    w2 = heap_word(&f, 2, 0);
    w3 = heap_word(&f, 3, 64);
    b = cow_ref_get(&w1, COW_NK_BLOB);
    cr_assert_eq((char *)b, at(&f, 1, 16));
    cr_assert_eq(cow_blob_len(b), 40);
    cr_assert_eq(cow_blob_data(b)[39], 'a' + 39 % 26);
    cr_assert_eq((char *)cow_ref_get(&w2, COW_NK_BLOB), at(&f, 2, 0));
    cr_assert_eq((char *)cow_ref_get(&w3, COW_NK_BLOB), at(&f, 3, 64));
    cr_assert_eq(tu_read_error(), COW_OK);
    cr_assert_eq(f.lookups, 3);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq((char *)cow_ref_get(&w1, COW_NK_BLOB), at(&f, 1, 16));
        cr_assert_eq((char *)cow_ref_get(&w3, COW_NK_BLOB), at(&f, 3, 64));
    }
    cr_assert_eq(f.lookups, 3, "R1: cached segments must not be looked up again");
    /* After forget, the next resolution asks again. */
    cow_ref_env_forget(&f.env);
    cr_assert_eq((char *)cow_ref_get(&w1, COW_NK_BLOB), at(&f, 1, 16));
    cr_assert_eq(f.lookups, 4);
    /* A heap pointer passes through untouched, NULL included. */
    {
        cow_word hw = cow_word_of(&f), nul = 0;
        cr_assert_eq(cow_ref_get(&hw, COW_NK_BLOB), (void *)&f);
        cr_assert_null(cow_ref_get(&nul, COW_NK_BLOB));
    }
    cr_assert_eq(tu_read_error(), COW_OK);
    fake_free(&f);
}

/* A page-form word (slot 0) stored inside the mapping names the env that
 * contains it: it resolves through that env's segment table, and a node
 * sitting exactly at the end of its segment is accepted (R2 boundary). */
Test(ref, resolve_page_words_by_address)
{
    fake_env f;
    cow_word *page;
    cow_blob *b;
    fake_init(&f);
    /* seg 3 ends at FAKE_SIZE: an 8-byte blob header + 56 bytes fills its last 64 */
    put_blob(&f, 3, f.seg_len[3] - 64, 56);
    page = (cow_word *)at(&f, 1, 512);
    *page = cow_word_make(3, f.seg_len[3] - 64, 0);
    b = cow_ref_get(page, COW_NK_BLOB);
    cr_assert_eq((char *)b, at(&f, 3, f.seg_len[3] - 64));
    cr_assert_eq(tu_read_error(), COW_OK);
    /* cow_ref_export fills in the slot of the containing env... */
    cr_assert_eq(cow_ref_export(page), *page | ((cow_word)f.slot << COW_REF_SLOT_SHIFT));
    /* ...and the exported word resolves from the stack to the same node. */
    {
        cow_word x = cow_ref_export(page);
        cr_assert_eq(cow_ref_get(&x, COW_NK_BLOB), (void *)b);
    }
    /* The same slot-0 word held outside every mapping names no env: poison. */
    {
        cow_word stray = *page;
        expect_poison(&stray, COW_NK_BLOB, "slot-0 word outside every mapping");
        cr_assert_eq(cow_ref_export(&stray), stray, "export cannot invent a slot");
    }
    fake_free(&f);
}

/* cow_ref_export leaves heap pointers and heap-form words as they are. */
Test(ref, export_leaves_heap_and_filled_words)
{
    fake_env f;
    cow_word hp, hw;
    fake_init(&f);
    hp = cow_word_of(&f);
    hw = heap_word(&f, 2, 8);
    cr_assert_eq(cow_ref_export(&hp), hp);
    cr_assert_eq(cow_ref_export(&hw), hw);
    /* a heap-form word copied into the mapping keeps its own slot */
    memcpy(at(&f, 1, 0), &hw, sizeof hw);
    cr_assert_eq(cow_ref_export((cow_word *)at(&f, 1, 0)), hw);
    fake_free(&f);
}

/* With two envs registered, a page word resolves against the env whose
 * mapping holds it, not the first one registered. */
Test(ref, page_word_picks_its_own_env)
{
    fake_env a, b;
    cow_word *wa, *wb, xb;
    fake_init(&a);
    fake_init(&b);
    cr_assert_neq(a.slot, b.slot);
    put_blob(&a, 2, 0, 5);
    put_blob(&b, 2, 0, 9);
    wa = (cow_word *)at(&a, 1, 0);
    wb = (cow_word *)at(&b, 1, 0);
    *wa = *wb = cow_word_make(2, 0, 0);
    cr_assert_eq(cow_blob_len((cow_blob *)cow_ref_get(wa, COW_NK_BLOB)), 5);
    cr_assert_eq(cow_blob_len((cow_blob *)cow_ref_get(wb, COW_NK_BLOB)), 9);
    xb = cow_ref_export(wb);
    cr_assert_eq(cow_word_slot(xb), b.slot);
    cr_assert_eq(tu_read_error(), COW_OK);
    fake_free(&b);
    /* b is gone: a heap-form word naming its slot resolves to nothing */
    expect_poison(&xb, COW_NK_BLOB, "word of a removed env");
    fake_free(&a);
}

/* cow_word_same tells shared nodes from the words alone: heap pointers and
 * heap-form words by value, a page-form word against a heap-form one by its
 * store, equal page-form words by whether they lie in one store's pages --
 * asked once per pair of nodes when the caller keeps one_map. */
Test(ref, same_word_without_resolving)
{
    fake_env a, b;
    cow_word none = 0, hp = cow_word_of(&a), hp2 = cow_word_of(&b), hw, *pa, *pa2, *pb;
    int one_map = -1;
    fake_init(&a);
    fake_init(&b);
    hw = heap_word(&a, 2, 8);
    cr_assert(cow_word_same(&none, &none, NULL));
    cr_assert(cow_word_same(&hp, &hp, NULL));
    cr_assert_not(cow_word_same(&hp, &hp2, NULL));
    cr_assert_not(cow_word_same(&hp, &hw, NULL));
    cr_assert_not(cow_word_same(&none, &hw, NULL));
    pa = (cow_word *)at(&a, 1, 0);
    pa2 = (cow_word *)at(&a, 1, 8);
    pb = (cow_word *)at(&b, 1, 0);
    *pa = *pa2 = *pb = cow_word_make(2, 8, 0);
    cr_assert(cow_word_same(pa, &hw, NULL), "page form against its heap form");
    cr_assert(cow_word_same(&hw, pa, NULL));
    cr_assert_not(cow_word_same(pb, &hw, NULL), "same bits, another store");
    cr_assert(cow_word_same(pa, pa2, &one_map));
    cr_assert_eq(one_map, 1, "the answer for this pair of nodes is kept");
    one_map = -1;
    cr_assert_not(cow_word_same(pa, pb, &one_map));
    cr_assert_eq(one_map, 0);
    *pa2 = cow_word_make(2, 16, 0);
    cr_assert_not(cow_word_same(pa, pa2, NULL), "another offset");
    cr_assert_eq(cow_ref_error(), COW_OK, "nothing is resolved");
    fake_free(&b);
    fake_free(&a);
}

/* ---- bad words: poison, COW_ECORRUPT, no read past the segment ------------- */

/* Offsets at or past the segment's end, and unknown segment ids (the lookup
 * fails, or id 0), resolve to poison with COW_ECORRUPT (R2). */
Test(ref, bad_offsets_and_ids_poison)
{
    fake_env f;
    cow_word w;
    fake_init(&f);
    put_blob(&f, 3, 0, 8);
    w = heap_word(&f, 3, f.seg_len[3]);
    expect_poison(&w, COW_NK_BLOB, "offset == segment length");
    w = heap_word(&f, 1, 2000);
    expect_poison(&w, COW_NK_BLOB, "offset past segment 1 (inside the buffer)");
    w = heap_word(&f, 3, COW_REF_MAX_SEGMENT - COW_REF_UNIT);
    expect_poison(&w, COW_NK_MAP, "largest offset");
    w = heap_word(&f, 5, 0);
    expect_poison(&w, COW_NK_VEC, "unknown segment id");
    w = heap_word(&f, 0, 0);
    expect_poison(&w, COW_NK_VLEAF, "segment id 0");
    w = heap_word(&f, UINT32_MAX, 0);
    expect_poison(&w, COW_NK_HNODE, "segment id 2^32-1 (lookup fails)");
    /* a registered-looking slot with no env behind it */
    w = cow_word_make(1, 0, COW_REF_MAX_ENVS - 1);
    cr_assert_null(cow_ref_env_at(COW_REF_MAX_ENVS - 1));
    expect_poison(&w, COW_NK_BLOB, "slot without env");
    fake_free(&f);
}

/* A lookup that answers with a span outside the mapping is not trusted:
 * poison, and nothing is read there (R1 keeps only sane spans). */
Test(ref, lookup_span_outside_mapping_poisons)
{
    fake_env f;
    cow_word w;
    fake_init(&f);
    f.seg_off[4] = FAKE_SIZE - 8;       /* starts inside, runs 4088 bytes past */
    f.seg_len[4] = FAKE_SIZE;
    f.seg_off[5] = FAKE_SIZE + 64;      /* starts past the end */
    f.seg_len[5] = 64;
    f.seg_off[6] = SIZE_MAX - 7;        /* off + len wraps around */
    f.seg_len[6] = 16;
    for (uint32_t s = 4; s <= 6; s++) {
        w = heap_word(&f, s, 0);
        expect_poison(&w, COW_NK_BLOB, "span outside the mapping");
    }
    fake_free(&f);
}

/* A node whose header claims more bytes than its segment holds is poison,
 * both in the last segment (ASan: the buffer ends there) and in a middle
 * one (the bytes after it belong to another segment). */
Test(ref, node_crossing_segment_end_poisons)
{
    fake_env f;
    cow_word w;
    fake_init(&f);
    /* blob: 8-byte header + len; 64 bytes remain at the end of segment 3 */
    cow_blob *b = (cow_blob *)at(&f, 3, f.seg_len[3] - 64);
    uint64_t huge = SIZE_MAX;
    put_blob(&f, 3, f.seg_len[3] - 64, 40);
    b->len32 = 57;
    w = heap_word(&f, 3, f.seg_len[3] - 64);
    expect_poison(&w, COW_NK_BLOB, "blob one byte too long");
    b->len32 = COW_BLOB_HUGE;
    memcpy(b->body, &huge, sizeof huge);
    expect_poison(&w, COW_NK_BLOB, "blob of SIZE_MAX bytes");
    huge = 8;
    memcpy(b->body, &huge, sizeof huge);
    expect_poison(&w, COW_NK_BLOB, "a short blob in the huge form (not canonical)");
    /* only 8 bytes left: too few for a blob, a map, a vec or an hnode header */
    memset(at(&f, 3, f.seg_len[3] - 8), 0xff, 8);
    *(uint32_t *)at(&f, 3, f.seg_len[3] - 8) = COW_REFCNT_STORED;
    w = heap_word(&f, 3, f.seg_len[3] - 8);
    expect_poison(&w, COW_NK_BLOB, "blob header cut by the end");
    expect_poison(&w, COW_NK_MAP, "map header cut by the end");
    expect_poison(&w, COW_NK_VEC, "vec header cut by the end");
    expect_poison(&w, COW_NK_HNODE, "hnode header cut by the end");
    /* a leaf of 4 values needs 8 + 64 bytes; 40 remain */
    put_vnode(&f, 3, f.seg_len[3] - 40, COW_REFCNT_STORED, 1, 4, 4);
    w = heap_word(&f, 3, f.seg_len[3] - 40);
    expect_poison(&w, COW_NK_VLEAF, "leaf past the end");
    /* an inner node always holds 32 kids: 8 + 256 bytes */
    put_vnode(&f, 3, f.seg_len[3] - 128, COW_REFCNT_STORED, 0, 0, 0);
    w = heap_word(&f, 3, f.seg_len[3] - 128);
    expect_poison(&w, COW_NK_VINNER, "inner node past the end");
    /* the same leaf in the middle of segment 1's last bytes: the next
     * segment's bytes are readable memory but not this node's */
    put_vnode(&f, 1, 1024 - 40, COW_REFCNT_STORED, 1, 4, 4);
    w = heap_word(&f, 1, 1024 - 40);
    expect_poison(&w, COW_NK_VLEAF, "leaf running into the next segment");
    /* hnode: 16 + 8 per leaf + 8 per kid; all 32 data bits set needs 272 */
    {
        t_hnode h = {COW_REFCNT_STORED, 0, 0, UINT32_MAX, 0};
        memcpy(at(&f, 3, f.seg_len[3] - 64), &h, sizeof h);
        w = heap_word(&f, 3, f.seg_len[3] - 64);
        expect_poison(&w, COW_NK_HNODE, "bitmap node past the end");
        h.datamap = 0;
        h.nodemap = UINT32_MAX;
        memcpy(at(&f, 3, f.seg_len[3] - 64), &h, sizeof h);
        expect_poison(&w, COW_NK_HNODE, "kids past the end");
        h = (t_hnode){COW_REFCNT_STORED, 1, UINT16_MAX, 0, 0};
        memcpy(at(&f, 3, f.seg_len[3] - 64), &h, sizeof h);
        expect_poison(&w, COW_NK_HNODE, "collision node of 65535 leaves");
        h.count = 6;        /* 16 + 48 = 64: fits exactly */
        memcpy(at(&f, 3, f.seg_len[3] - 64), &h, sizeof h);
        cr_assert_eq((char *)cow_ref_get(&w, COW_NK_HNODE), at(&f, 3, f.seg_len[3] - 64));
        cr_assert_eq(tu_read_error(), COW_OK);
    }
    fake_free(&f);
}

/* Headers that are not sane: refcnt other than COW_REFCNT_STORED (a heap
 * node's, or 1), count > cap, cap > 32, a leaf where an inner node belongs
 * and the reverse, a leaf flag that is neither 0 nor 1, an hnode kind past
 * the known ones -- all poison (R2). */
Test(ref, bad_headers_poison)
{
    fake_env f;
    cow_word w = 0;
    fake_init(&f);
    w = heap_word(&f, 2, 64);
    /* good leaf first: the checks below fail for one field only */
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 1, 3, 2);
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_VLEAF), at(&f, 2, 64));
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_VANY), at(&f, 2, 64));
    cr_assert_eq(tu_read_error(), COW_OK);
    put_vnode(&f, 2, 64, 1, 1, 3, 2);
    expect_poison(&w, COW_NK_VLEAF, "refcnt 1 (a heap node)");
    put_vnode(&f, 2, 64, COW_REFCNT_STORED - 1, 1, 3, 2);
    expect_poison(&w, COW_NK_VLEAF, "refcnt STORED-1");
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 1, 3, 4);
    expect_poison(&w, COW_NK_VLEAF, "count > cap");
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 1, 33, 1);
    expect_poison(&w, COW_NK_VLEAF, "cap > 32");
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 2, 3, 2);
    expect_poison(&w, COW_NK_VANY, "leaf flag 2");
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 0, 0, 0);
    expect_poison(&w, COW_NK_VLEAF, "inner node where a leaf belongs");
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_VINNER), at(&f, 2, 64));
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_VANY), at(&f, 2, 64));
    cr_assert_eq(tu_read_error(), COW_OK);
    put_vnode(&f, 2, 64, COW_REFCNT_STORED, 1, 3, 2);
    expect_poison(&w, COW_NK_VINNER, "leaf where an inner node belongs");
    /* blob with a heap refcnt */
    put_blob(&f, 2, 64, 8);
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_BLOB), at(&f, 2, 64));
    ((cow_blob *)at(&f, 2, 64))->refcnt = 2;
    expect_poison(&w, COW_NK_BLOB, "blob refcnt 2");
    /* hnode kind 2 does not exist */
    {
        t_hnode h = {COW_REFCNT_STORED, 2, 0, 0, 0};
        memcpy(at(&f, 2, 64), &h, sizeof h);
        expect_poison(&w, COW_NK_HNODE, "hnode kind 2");
        h.kind = 0;
        h.refcnt = 1;
        memcpy(at(&f, 2, 64), &h, sizeof h);
        expect_poison(&w, COW_NK_HNODE, "hnode refcnt 1");
    }
    fake_free(&f);
}

/* Map and vector headers whose body shape is impossible are poison: an odd
 * log length, more live entries than the log holds, a trie shift that does
 * not match the length (walks would not end at leaves). */
Test(ref, bad_container_headers_poison)
{
    fake_env f;
    cow_word w;
    cow_map m;
    cow_vec v;
    fake_init(&f);
    w = heap_word(&f, 1, 128);
    memset(&m, 0, sizeof m);
    m.refcnt = COW_REFCNT_STORED;
    m.log.len = 4;
    m.live = 2;
    memcpy(at(&f, 1, 128), &m, sizeof m);
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_MAP), at(&f, 1, 128), "sane map header");
    cr_assert_eq(tu_read_error(), COW_OK);
    m.log.len = 5;
    memcpy(at(&f, 1, 128), &m, sizeof m);
    expect_poison(&w, COW_NK_MAP, "odd log length");
    m.log.len = 4;
    m.live = 3;
    memcpy(at(&f, 1, 128), &m, sizeof m);
    expect_poison(&w, COW_NK_MAP, "live > entries");
    m.live = 2;
    m.log.shift = 5;                /* 4 values need no trie */
    memcpy(at(&f, 1, 128), &m, sizeof m);
    expect_poison(&w, COW_NK_MAP, "shift for a short log");
    m.refcnt = 1;
    m.log.shift = 0;
    memcpy(at(&f, 1, 128), &m, sizeof m);
    expect_poison(&w, COW_NK_MAP, "map refcnt 1");

    memset(&v, 0, sizeof v);
    v.refcnt = COW_REFCNT_STORED;
    v.b.len = 2000;                 /* tailoff 1984 > 32 << 5: needs shift 10 */
    v.b.shift = 10;
    memcpy(at(&f, 1, 128), &v, sizeof v);
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_VEC), at(&f, 1, 128), "sane vec header");
    cr_assert_eq(tu_read_error(), COW_OK);
    v.b.shift = 5;
    memcpy(at(&f, 1, 128), &v, sizeof v);
    expect_poison(&w, COW_NK_VEC, "shift too small for len");
    v.b.shift = 15;
    memcpy(at(&f, 1, 128), &v, sizeof v);
    expect_poison(&w, COW_NK_VEC, "shift too large for len");
    v.b.shift = 7;
    memcpy(at(&f, 1, 128), &v, sizeof v);
    expect_poison(&w, COW_NK_VEC, "shift not a multiple of 5");
    v.b.len = SIZE_MAX;
    v.b.shift = 65;
    memcpy(at(&f, 1, 128), &v, sizeof v);
    expect_poison(&w, COW_NK_VEC, "shift past 64 bits");
    fake_free(&f);
}

/* Every kind of poison is read-only and empty, and a value that names bad
 * bytes reads as an empty container: walking it does nothing. */
Test(ref, poison_reads_as_empty_containers)
{
    fake_env f;
    cow_val dict = {0}, list = {0}, str = {0};
    const char *data;
    size_t len;
    fake_init(&f);
    dict.tag = COW_T_DICT;
    dict.u.w = heap_word(&f, 6, 0);
    list.tag = COW_T_LIST;
    list.u.w = heap_word(&f, 6, 0);
    str.tag = COW_T_STR;
    str.u.w = heap_word(&f, 6, 0);
    cr_assert_eq(cow_map_len(cow_val_getmap(&dict)), 0);
    cr_assert_eq(cow_map_entries(cow_val_getmap(&dict)), 0);
    cr_assert_eq(cow_vec_len(cow_val_getvec(&list)), 0);
    cow_val_span(&str, &data, &len);
    cr_assert_eq(len, 0);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cr_assert_eq(*(uint32_t *)cow_vec_poison(COW_NK_VLEAF), COW_REFCNT_STORED);
    cr_assert_eq(*(uint32_t *)cow_vec_poison(COW_NK_VINNER), COW_REFCNT_STORED);
    cr_assert_eq(*(uint32_t *)cow_map_poison(COW_NK_HNODE), COW_REFCNT_STORED);
    cr_assert_eq(cow_blob_len((cow_blob *)cow_blob_poison(COW_NK_BLOB)), 0);
    fake_free(&f);
}

/* ---- read scopes (R4) ------------------------------------------------------ */

/* A scope keeps its first error; scopes nest, each reporting only what was
 * met inside it, and an outer error survives an inner scope. */
Test(ref, scopes_keep_their_first_error_and_nest)
{
    int outer = cow_ref_scope_enter(), inner;
    cr_assert_eq(outer, COW_OK, "a test starts with no error");
    cow_ref_set_error(COW_ECORRUPT);
    cow_ref_set_error(COW_ENOMEM);
    cr_assert_eq(cow_ref_error(), COW_ECORRUPT, "the first error wins");
    inner = cow_ref_scope_enter();
    cr_assert_eq(inner, COW_ECORRUPT, "enter returns the enclosing scope's error");
    cr_assert_eq(cow_ref_error(), COW_OK, "an inner scope starts clean");
    cow_ref_set_error(COW_ETYPE);
    cr_assert_eq(cow_ref_scope_leave(inner), COW_ETYPE, "the inner scope reports its own");
    cr_assert_eq(cow_ref_error(), COW_ECORRUPT, "the outer error survives the inner scope");
    inner = cow_ref_scope_enter();
    cr_assert_eq(cow_ref_scope_leave(inner), COW_OK, "a clean inner scope reports nothing");
    cr_assert_eq(cow_ref_scope_leave(outer), COW_ECORRUPT);
    cr_assert_eq(cow_ref_error(), COW_OK, "leaving restores the state before");
}

/* A bad word resolved in an inner scope is that scope's error, not the
 * enclosing one's: a call nested in another reports what it met itself. */
Test(ref, a_bad_read_is_reported_by_its_own_scope)
{
    fake_env f;
    cow_word bad, good;
    int outer, inner;
    fake_init(&f);
    put_blob(&f, 1, 0, 8);
    bad = heap_word(&f, 5, 0);
    good = heap_word(&f, 1, 0);
    outer = cow_ref_scope_enter();
    inner = cow_ref_scope_enter();
    cr_assert_eq(cow_blob_len((cow_blob *)cow_ref_get(&bad, COW_NK_BLOB)), 0, "poison");
    cr_assert_eq(cow_ref_scope_leave(inner), COW_ECORRUPT);
    cr_assert_eq((char *)cow_ref_get(&good, COW_NK_BLOB), at(&f, 1, 0));
    cr_assert_eq(cow_ref_scope_leave(outer), COW_OK, "the inner error leaked out");
    fake_free(&f);
}

/* Two threads take turns, strictly (no two resolve at once: the core is
 * not thread-safe), with their read scopes overlapping. */
typedef struct turns {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int step;
} turns;

static void
turn_wait(turns *t, int step)
{
    pthread_mutex_lock(&t->mu);
    while (t->step != step)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

static void
turn_pass(turns *t)
{
    pthread_mutex_lock(&t->mu);
    t->step++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

typedef struct other_thread {
    turns *t;
    cow_word bad;
    int entered, left;      /* what its scope saw: asserted by the test's thread */
} other_thread;

/* Turn 1: opens a scope and reads a bad word; turn 3: closes it. */
static void *
other_reads_bad(void *arg)
{
    other_thread *o = arg;
    int outer;
    turn_wait(o->t, 1);
    o->entered = outer = cow_ref_scope_enter();
    (void)cow_ref_get(&o->bad, COW_NK_BLOB);
    turn_pass(o->t);
    turn_wait(o->t, 3);
    o->left = cow_ref_scope_leave(outer);
    return NULL;
}

/* R4: the slot is per thread.  This thread opens a scope (turn 0), the other
 * opens one and meets a bad word (turn 1), this thread reads a good word and
 * closes its scope (turn 2) -- clean, though the other's error was recorded
 * meanwhile -- and the other closes its scope (turn 3) with its own error.
 * With one slot for the process, turn 2 would report the other's error and
 * turn 3 would lose it. */
Test(ref, read_errors_belong_to_the_thread_that_met_them)
{
    turns t = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    other_thread o = {&t, 0, -1, -1};
    fake_env f;
    cow_word good;
    pthread_t th;
    void *read;
    int outer, mine;
    fake_init(&f);
    put_blob(&f, 1, 0, 8);
    good = heap_word(&f, 1, 0);
    o.bad = heap_word(&f, 5, 0);
    cr_assert_eq(pthread_create(&th, NULL, other_reads_bad, &o), 0);
    outer = cow_ref_scope_enter();
    turn_pass(&t);
    turn_wait(&t, 2);
    read = cow_ref_get(&good, COW_NK_BLOB);
    mine = cow_ref_scope_leave(outer);
    turn_pass(&t);
    cr_assert_eq(pthread_join(th, NULL), 0);    /* asserts only once both are done */
    cr_assert_eq((char *)read, at(&f, 1, 0));
    cr_assert_eq(mine, COW_OK, "another thread's error reached this one");
    cr_assert_eq(o.entered, COW_OK, "a new thread's scope starts clean");
    cr_assert_eq(o.left, COW_ECORRUPT, "the other thread lost its own error");
    fake_free(&f);
}

/* ENOMEM while the segment cache grows (its one table) is reported as
 * COW_ENOMEM, not as corruption; the cache is left usable, so the same word
 * resolves once memory is back (R1), and nothing leaks. */
Test(ref, segment_cache_enomem_is_reported_as_enomem)
{
    fake_env f;
    cow_word w;
    tu_alloc_install();
    fake_init(&f);
    put_blob(&f, 2, 8, 16);
    w = heap_word(&f, 2, 8);
    {
        int outer = cow_ref_scope_enter();
        long failures = tu_alloc.failures;
        tu_fail_after(0);
        cr_assert_eq(cow_blob_len((cow_blob *)cow_ref_get(&w, COW_NK_BLOB)), 0, "poison");
        tu_fail_after(-1);
        cr_assert_gt(tu_alloc.failures, failures, "nothing was refused");
        cr_assert_eq(cow_ref_scope_leave(outer), COW_ENOMEM);
    }
    cr_assert_eq((char *)cow_ref_get(&w, COW_NK_BLOB), at(&f, 2, 8));
    cr_assert_eq(tu_read_error(), COW_OK);
    fake_free(&f);
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
}

/* R1: the segment cache keeps every id it was told of, through its
 * growths, with ids whose home slots collide (1, 2 and 3 among ids that
 * differ from them by multiples of every table size, and the largest id):
 * each resolves to its own segment, and a second pass asks the env for
 * nothing. */
Test(ref, segment_cache_keeps_colliding_ids)
{
    enum { IDS = 600 };
    uint32_t ids[IDS];
    fake_env f;
    fake_init(&f);
    f.any_id = 1;                       /* ids past 7 alias segment 1 */
    for (uint32_t s = 1; s <= 3; s++)
        put_blob(&f, s, 0, 8);
    for (size_t i = 0; i < IDS; i++)
        ids[i] = i < 3 ? (uint32_t)i + 1 : i == IDS - 1 ? UINT32_MAX
                                                         : (uint32_t)(i % 3 + 1 + (i << 12));
    for (int pass = 0; pass < 2; pass++) {
        int lookups = f.lookups;
        for (size_t i = 0; i < IDS; i++) {
            cow_word w = heap_word(&f, ids[i], 0);
            uint32_t seg = ids[i] < FAKE_SEGS ? ids[i] : 1;
            cr_assert_eq((char *)cow_ref_get(&w, COW_NK_BLOB), at(&f, seg, 0), "id %u", ids[i]);
        }
        cr_assert_eq(tu_read_error(), COW_OK);
        if (pass == 1)
            cr_assert_eq(f.lookups, lookups, "pass 2 asked the env again");
    }
    fake_free(&f);
}

/* ---- the env table ---------------------------------------------------------- */

/* Slots are 1..127, handed out while free and reused after removal; the
 * 128th env is refused with COW_EOVERFLOW. */
Test(ref, env_table_slots)
{
    static cow_ref_env envs[COW_REF_MAX_ENVS];
    int slots[COW_REF_MAX_ENVS];
    for (unsigned i = 0; i + 1 < COW_REF_MAX_ENVS; i++) {
        slots[i] = cow_ref_env_add(&envs[i]);
        cr_assert(slots[i] >= 1 && slots[i] < COW_REF_MAX_ENVS, "slot %d", slots[i]);
        cr_assert_eq(cow_ref_env_at((unsigned)slots[i]), &envs[i]);
        for (unsigned j = 0; j < i; j++)
            cr_assert_neq(slots[i], slots[j]);
    }
    cr_assert_eq(cow_ref_env_add(&envs[COW_REF_MAX_ENVS - 1]), COW_EOVERFLOW);
    cr_assert_null(cow_ref_env_at(0), "slot 0 is never an env");
    cr_assert_null(cow_ref_env_at(COW_REF_MAX_ENVS), "out of range slot");
    cow_ref_env_remove((unsigned)slots[40]);
    cr_assert_null(cow_ref_env_at((unsigned)slots[40]));
    cow_ref_env_remove((unsigned)slots[40]);       /* twice: no-op */
    cow_ref_env_remove(0);
    cow_ref_env_remove(COW_REF_MAX_ENVS + 5);
    cr_assert_eq(cow_ref_env_add(&envs[COW_REF_MAX_ENVS - 1]), slots[40]);
    for (unsigned i = 0; i + 1 < COW_REF_MAX_ENVS; i++)
        cow_ref_env_remove((unsigned)(i == 40 ? slots[40] : slots[i]));
    for (unsigned s = 0; s < COW_REF_MAX_ENVS; s++)
        cr_assert_null(cow_ref_env_at(s));
}

/* ---- pins (R3) ---------------------------------------------------------------- */

/* Retaining a stored value pins its env, releasing unpins; the unpinned
 * hook runs exactly when the count returns to 0.  cow_val_copy of a value
 * lying in the mapping exports its word (slot filled) and pins. */
Test(ref, pins_follow_retain_release)
{
    fake_env f;
    cow_val v = {0}, copies[5], *page;
    fake_init(&f);
    put_blob(&f, 1, 0, 30);
    v.tag = COW_T_STR;
    v.u.w = heap_word(&f, 1, 0);
    cow_val_retain(&v);
    cr_assert_eq(f.env.pins, 1, "R3: retain pins");
    for (int i = 0; i < 5; i++)
        cow_val_copy(&copies[i], &v);
    cr_assert_eq(f.env.pins, 6);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(copies[i].u.w, v.u.w);
        cow_val_release(&copies[i]);
        cr_assert_eq(copies[i].tag, COW_T_NONE);
    }
    cr_assert_eq(f.env.pins, 1);
    cr_assert_eq(f.unpinned_calls, 0);
    /* a value in the mapping, word in page form */
    page = (cow_val *)at(&f, 2, 16);
    page->tag = COW_T_STR;
    page->u.w = cow_word_make(1, 0, 0);
    cow_val_copy(&copies[0], page);
    cr_assert_eq(cow_word_slot(copies[0].u.w), f.slot, "copy exports the word");
    cr_assert_eq(f.env.pins, 2);
    cr_assert_eq(cow_val_equal(&copies[0], &v), 1);
    cow_val_release(&copies[0]);
    cow_val_release(&v);
    cr_assert_eq(f.env.pins, 0, "R3: every pin given back");
    cr_assert_eq(f.unpinned_calls, 1, "unpinned runs once at zero");
    /* scalars and heap values never touch pins */
    copies[0] = cow_val_int(5);
    cow_val_retain(&copies[0]);
    copies[1] = tu_str("a heap string long enough for a blob");
    cow_val_copy(&copies[2], &copies[1]);
    cow_val_release(&copies[2]);
    cow_val_release(&copies[1]);
    cr_assert_eq(f.env.pins, 0);
    cr_assert_eq(f.unpinned_calls, 1);
    fake_free(&f);
}

/* cow_ref_pin on words that name no env (slot 0, an empty slot) changes
 * nothing and does not crash. */
Test(ref, pin_without_env_is_harmless)
{
    fake_env f;
    fake_init(&f);
    cow_ref_pin(cow_word_make(1, 0, 0), +1);
    cow_ref_pin(cow_word_make(1, 0, 0), -1);
    cow_ref_pin(cow_word_make(1, 0, COW_REF_MAX_ENVS - 1), +1);
    cow_ref_pin(cow_word_make(1, 0, f.slot), +1);
    cr_assert_eq(f.env.pins, 1);
    cow_ref_pin(cow_word_make(1, 0, f.slot), -1);
    cr_assert_eq(f.env.pins, 0);
    cr_assert_eq(f.unpinned_calls, 1);
    fake_free(&f);
}

/* ---- hostile segment tables ------------------------------------------------------ */

/* The lookup's answer for an unaligned segment start is refused: node
 * headers are read as 8-byte aligned structs (R2 covers alignment too, or
 * a crafted file makes every read undefined behaviour).  Regression test for
 * build/helper_ctest_bugs.md #2. */
Test(ref, unaligned_segment_poisons)
{
    fake_env f;
    cow_word w;
    fake_init(&f);
    f.seg_off[4] = 1028;                /* 4 past an 8-byte boundary */
    f.seg_len[4] = 256;
    put_blob(&f, 4, 0, 8);              /* a well-formed blob at the unaligned start */
    w = heap_word(&f, 4, 0);
    expect_poison(&w, COW_NK_BLOB, "segment starting at an unaligned offset");
    fake_free(&f);
}

/* Allocation requests above this fail (so the test cannot exhaust memory). */
#define CAP_ALLOC ((size_t)64 << 20)
/* What resolving one word may reasonably allocate for its segment cache. */
#define SANE_CACHE ((size_t)1 << 20)

static size_t cap_largest;

/* Records the largest request; refuses those above CAP_ALLOC. */
static int
cap_permit(size_t n)
{
    if (n > cap_largest)
        cap_largest = n;
    return n <= CAP_ALLOC;
}

static void *cap_malloc(size_t n) { return cap_permit(n) ? malloc(n) : NULL; }
static void *cap_realloc(void *p, size_t n) { return cap_permit(n) ? realloc(p, n) : NULL; }

static void *
cap_calloc(size_t count, size_t size)
{
    if (size && count > CAP_ALLOC / size)
        return cap_permit(CAP_ALLOC + 1), NULL;
    return cap_permit(count * size) ? calloc(count, size) : NULL;
}

/* A segment that exists but has a large id (ids only grow, and a file may
 * hold any id up to 2^32 - 1) resolves without allocating memory in
 * proportion to the id: R1's cache must not be a dense array over ids.
 * Regression test for build/helper_ctest_bugs.md #1. */
Test(ref, large_segment_id_cache_is_bounded)
{
    static const cow_allocator capped = {cap_malloc, cap_calloc, cap_realloc, free};
    uint32_t ids[] = {10u * 1000 * 1000, UINT32_MAX - 15};
    fake_env f;
    cow_set_allocator(&capped);
    fake_init(&f);
    f.any_id = 1;
    put_blob(&f, 1, 0, 8);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        cow_word w = heap_word(&f, ids[i], 0);
        void *p;
        cow_ref_env_forget(&f.env);
        cap_largest = 0;
        p = cow_ref_get(&w, COW_NK_BLOB);
        cr_assert_eq(tu_read_error(), COW_OK, "segment %u: resolution failed", ids[i]);
        cr_assert_eq((char *)p, at(&f, 1, 0));
        cr_assert_leq(cap_largest, SANE_CACHE, "segment %u: one lookup allocated %zu bytes",
                      ids[i], cap_largest);
    }
    fake_free(&f);
}

/* node.h: every kind has a complete row, and its poison node reads as a
 * stored node (never written, never freed). */
Test(ref, every_node_kind_has_a_row)
{
    for (int kind = 0; kind < COW_NK__COUNT; kind++) {
        const cow_node_ops *ops = cow_node_ops_of(kind);
        cr_assert(ops->name && ops->stored_size && ops->poison && ops->write, "kind %d", kind);
        cr_assert_eq(*(const uint32_t *)ops->poison(kind), COW_REFCNT_STORED, "%s", ops->name);
    }
}
