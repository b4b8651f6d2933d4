/* Criterion tests for csrc/core/segment.c: serializing heap values into
 * segments and reading them back through the env table.
 *
 * The sink is an in-memory "store": segments are appended to one buffer
 * allocated up front (so it never moves while nodes in it are borrowed), and
 * a fake env registered in the env table answers each segment id with its
 * (offset, length) there.  Under AddressSanitizer every byte of the buffer
 * that is not inside a segment is poisoned -- the unused tail and a gap
 * after each segment -- so a read that leaves its segment faults.
 *
 * What is proved:
 *  - round trips: scalars, blobs (str/bytes > 14 bytes, bigints), nested
 *    maps, sets, lists, tuples, frozen kinds, maps with holes, vectors deep
 *    enough for two trie levels read back identical (tags, identities, entry
 *    order with holes), and pass cow_map_check / cow_vec_check;
 *  - S1: every page word names a segment of the same write or the
 *    target's own (all reads after a write resolve without error);
 *  - S2: the refs put with a segment are other existing segments, put by
 *    the end of the write, and they name what the segment's nodes reach
 *    outside it;
 *  - structural sharing: a value derived from a stored one with one change
 *    writes O(log n) bytes and keeps the rest (w.kept > 0); copy_all rewrites
 *    everything and depends on no old segment;
 *  - the memo writes a node shared by several parents once;
 *  - random byte flips in the written bytes never crash a full walk: reads
 *    come back as poison with COW_ECORRUPT recorded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/ref.h"
#include "cowstore/segment.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"
#include "cowtest_values.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MS_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define MS_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define MS_POISON(p, n) ((void)(p), (void)(n))
#define MS_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

TestSuite(segment, .fini = tu_leak_check);

/* ---- the in-memory store ----------------------------------------------------- */

/* Default buffer: room for every test but the >32 MiB one. */
#define MS_CAP ((size_t)4 << 20)
/* Segment ids 1..MS_MAXSEG-1 (enough for small COW_SEG_TARGET builds). */
#define MS_MAXSEG 65536
/* Poisoned bytes after each segment (and segment starts 16-byte aligned). */
#define MS_GAP 16

typedef struct memstore {
    char *buf;
    size_t cap, used;
    uint32_t next_id;
    /* per segment id, MS_MAXSEG each: */
    size_t *off, *len;                          /* len 0: no such segment */
    uint32_t **refs;
    size_t *nrefs;
    int *freed;                                 /* 1: seg_live says gone, still readable */
    int fail_put, fail_new_id;                  /* error codes to return, or 0 */
    size_t target;                              /* writers' segment target; 0: default */
    cow_ref_env env;
    unsigned slot;
} memstore;

static int
ms_new_id(void *ctx, uint32_t *seg)
{
    memstore *ms = ctx;
    if (ms->fail_new_id)
        return ms->fail_new_id;
    cr_assert_lt(ms->next_id, MS_MAXSEG, "test store: out of segment ids");
    *seg = ms->next_id++;
    return COW_OK;
}

static int
ms_put(void *ctx, uint32_t seg, const char *bytes, size_t len, const uint32_t *refs, size_t nrefs)
{
    memstore *ms = ctx;
    size_t off = ms->used;
    if (ms->fail_put)
        return ms->fail_put;
    cr_assert(seg > 0 && seg < ms->next_id && ms->len[seg] == 0, "put of segment %u: not "
              "handed out, or put twice", seg);
    cr_assert(len > 0 && len % COW_REF_UNIT == 0, "segment %u: %zu bytes", seg, len);
    if (off + len + MS_GAP > ms->cap)
        return COW_ENOMEM;
    /* S2: refs name other segments, put before this one or, still open when
     * it was put, by the end of the write (ms_write checks) */
    for (size_t i = 0; i < nrefs; i++) {
        cr_assert_neq(refs[i], seg, "S2: segment %u names itself", seg);
        cr_assert(refs[i] < MS_MAXSEG && refs[i] < ms->next_id && !ms->freed[refs[i]],
                  "S2: segment %u names %u, which is not handed out or freed", seg, refs[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(refs[i], refs[j], "S2: segment %u names %u twice", seg, refs[i]);
    }
    MS_UNPOISON(ms->buf + off, len);
    memcpy(ms->buf + off, bytes, len);
    ms->off[seg] = off;
    ms->len[seg] = len;
    ms->refs[seg] = malloc((nrefs ? nrefs : 1) * sizeof *refs);
    cr_assert_not_null(ms->refs[seg]);
    if (nrefs)
        memcpy(ms->refs[seg], refs, nrefs * sizeof *refs);
    ms->nrefs[seg] = nrefs;
    ms->used = (off + len + MS_GAP + 15) & ~(size_t)15;
    ms->env.size = ms->used;
    return COW_OK;
}

/* Whether the target still holds seg: a freed segment stays readable (as a
 * deleted LMDB value stays readable in an older snapshot) but must not be
 * named by new nodes. */
static int
ms_seg_live(void *ctx, uint32_t seg)
{
    memstore *ms = ctx;
    return seg < MS_MAXSEG && ms->len[seg] > 0 && !ms->freed[seg];
}

static const cow_segw_sink ms_sink = {.new_id = ms_new_id, .seg_live = ms_seg_live, .put = ms_put};

static int
ms_lookup(void *ctx, uint32_t seg, size_t *off, size_t *len)
{
    memstore *ms = ctx;
    if (seg >= MS_MAXSEG || ms->len[seg] == 0)
        return COW_EKEY;
    *off = ms->off[seg];
    *len = ms->len[seg];
    return COW_OK;
}

static void
ms_init(memstore *ms, size_t cap)
{
    int slot;
    memset(ms, 0, sizeof *ms);
    ms->cap = cap;
    ms->buf = aligned_alloc(16, cap);
    ms->off = calloc(MS_MAXSEG, sizeof *ms->off);
    ms->len = calloc(MS_MAXSEG, sizeof *ms->len);
    ms->refs = calloc(MS_MAXSEG, sizeof *ms->refs);
    ms->nrefs = calloc(MS_MAXSEG, sizeof *ms->nrefs);
    ms->freed = calloc(MS_MAXSEG, sizeof *ms->freed);
    cr_assert(ms->buf && ms->off && ms->len && ms->refs && ms->nrefs && ms->freed);
    MS_POISON(ms->buf, cap);
    ms->next_id = 1;
    ms->env.base = ms->buf;
    ms->env.size = 0;
    ms->env.lookup = ms_lookup;
    ms->env.ctx = ms;
    slot = cow_ref_env_add(&ms->env);
    cr_assert_gt(slot, 0);
    ms->slot = (unsigned)slot;
}

static void
ms_free(memstore *ms)
{
    cr_assert_eq(ms->env.pins, 0, "R3: %ld pins left on the test store", ms->env.pins);
    cow_ref_env_remove(ms->slot);
    for (size_t i = 0; i < MS_MAXSEG; i++)
        free(ms->refs[i]);
    free(ms->refs);
    free(ms->off);
    free(ms->len);
    free(ms->nrefs);
    free(ms->freed);
    MS_UNPOISON(ms->buf, ms->cap);
    free(ms->buf);
}

/* "Deletes" segment seg: it no longer resolves (and its bytes are poisoned). */
static void
ms_drop(memstore *ms, uint32_t seg)
{
    MS_POISON(ms->buf + ms->off[seg], ms->len[seg]);
    ms->len[seg] = 0;
    cow_ref_env_forget(&ms->env);
}

typedef struct wstats {
    uint64_t bytes, segments, kept;
    uint32_t first_seg;     /* id of the first segment this write put */
} wstats;

/* Writes src into ms; *page receives the page-form value.  Asserts success. */
static wstats
ms_write(memstore *ms, const cow_val *src, int copy_all, cow_val *page)
{
    cow_segw w;
    wstats st;
    int rc;
    st.first_seg = ms->next_id;
    cow_segw_init(&w, ms->slot, copy_all, &ms_sink, ms);
    if (ms->target)
        w.target = ms->target;
    cow_segw_value(&w, src, page);
    rc = cow_segw_finish(&w);
    st.bytes = w.bytes;
    st.segments = w.segments;
    st.kept = w.kept;
    cow_segw_free(&w);
    cr_assert_eq(rc, COW_OK, "cow_segw: %s", cow_strerror(rc));
    for (uint32_t s = st.first_seg; s < ms->next_id; s++)     /* S2, at the end */
        for (size_t i = 0; i < ms->nrefs[s]; i++)
            cr_assert(ms->len[ms->refs[s][i]] > 0, "S2: segment %u names %u, never put", s,
                      ms->refs[s][i]);
    return st;
}

/* 1 if some segment put by write st names a segment in [lo, hi). */
static int
write_names(const memstore *ms, wstats st, uint32_t lo, uint32_t hi)
{
    for (uint32_t s = st.first_seg; s < st.first_seg + st.segments; s++)
        for (size_t i = 0; i < ms->nrefs[s]; i++)
            if (ms->refs[s][i] >= lo && ms->refs[s][i] < hi)
                return 1;
    return 0;
}

/* A new reference (pinned, heap form) to the value a page-form root names. */
static cow_val
ms_open(memstore *ms, const cow_val *page)
{
    cow_val v = *page;
    if (cow_val_stored(&v)) {
        cr_assert_eq(cow_word_slot(v.u.w), 0, "a written root word is in page form");
        v.u.w |= (cow_word)ms->slot << COW_REF_SLOT_SHIFT;
    }
    cow_val_retain(&v);
    return v;
}

/* ---- round trips ---------------------------------------------------------------- */

/* Every scalar and blob kind as a root: values without a word write nothing;
 * blobs write one segment and read back byte-identical. */
Test(segment, round_trip_scalars_and_blobs)
{
    memstore ms;
    ms_init(&ms, MS_CAP);
    for (int64_t id = 0; id < 18; id++) {
        cow_val v = mk_leafval(id), page, back;
        wstats st = ms_write(&ms, &v, 0, &page);
        if (!cow_tag_has_word(v.tag)) {
            cr_assert_eq(st.bytes, 0, "a scalar root must write nothing");
            cr_assert_eq(memcmp(&page, &v, sizeof v), 0);
        }
        else {
            cr_assert_geq(st.segments, 1);
            cr_assert(cow_val_stored(&page), "a blob root comes back as a stored word");
        }
        back = ms_open(&ms, &page);
        expect_same(&v, &back, 0);
        cow_val_release(&back);
        cow_val_release(&v);
    }
    /* an empty list, dict and a blob of 0..14 bytes stay what they are */
    {
        cow_val e[2] = {cow_val_vec(COW_T_LIST, new_vec()), cow_val_map(COW_T_DICT, new_map())};
        for (int i = 0; i < 2; i++) {
            cow_val page, back;
            ms_write(&ms, &e[i], 0, &page);
            back = ms_open(&ms, &page);
            expect_same(&e[i], &back, 0);
            cow_val_release(&back);
            cow_val_release(&e[i]);
        }
    }
    ms_free(&ms);
}

/* A dict of nested maps, sets, lists, tuples and frozen kinds, with holes in
 * its log, reads back identical; walking it leaves no pin behind (R3). */
Test(segment, round_trip_nested)
{
    memstore ms;
    cow_val v = mk_rich(300, 3), page, back;
    wstats st;
    ms_init(&ms, MS_CAP);
    st = ms_write(&ms, &v, 0, &page);
    cr_assert_geq(st.segments, 1);
    cr_assert_eq(st.kept, 0, "nothing was in the target yet");
    cr_assert_eq(ms.nrefs[st.first_seg], 0, "S2: a first segment names no other");
    cr_assert_not(write_names(&ms, st, 0, st.first_seg), "S2: names a segment of no write");
    back = ms_open(&ms, &page);
    cr_assert_eq(ms.env.pins, 1);
    expect_same(&v, &back, 0);
    cr_assert_eq(ms.env.pins, 1, "reading must not leave pins");
    cow_val_release(&back);
    cow_val_release(&v);
    ms_free(&ms);
}

/* With a small segment target the same value spreads over many segments,
 * each closed at a node boundary before passing the target (or holding one
 * bigger node); later segments name earlier ones (S2) and it reads back. */
Test(segment, round_trip_small_segments)
{
    enum { TARGET = 600 };
    memstore ms;
    cow_val v = mk_rich(150, 3), page, back;
    wstats st;
    size_t named = 0;
    ms_init(&ms, MS_CAP);
    ms.target = TARGET;
    st = ms_write(&ms, &v, 0, &page);
    cr_assert_gt(st.segments, 20, "%llu segments", (unsigned long long)st.segments);
    for (uint32_t s = st.first_seg; s < ms.next_id; s++) {
        if (ms.len[s] > TARGET)         /* one node: a 32-value leaf is 520 bytes */
            cr_assert_leq(ms.len[s], 8 + COW_VEC_WIDTH * sizeof(cow_val) + 64,
                          "segment %u: %zu bytes", s, ms.len[s]);
        named += ms.nrefs[s];
    }
    cr_assert_gt(named, st.segments / 2, "S2: segments name too few others");
    back = ms_open(&ms, &page);
    expect_same(&v, &back, 0);
    cow_val_release(&back);
    cow_val_release(&v);
    ms_free(&ms);
}

/* Vectors past one trie level (shift 10) and maps past the linear limit
 * with long hash paths read back identical, element by element. */
Test(segment, round_trip_deep_vector_and_big_map)
{
    enum { NVEC = 20000, NMAP = 3000 };
    memstore ms;
    cow_vec *vec = new_vec();
    cow_map *m = new_map();
    cow_val v, mv, page, back;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < NVEC; i++)
        cr_assert_eq(cow_vb_push(&vec->b, i % 50 ? cow_val_int(i) : mk_leafval(i)), COW_OK);
    for (int64_t i = 0; i < NMAP; i++)
        map_put(m, mk_key(i), cow_val_int(-i));
    v = cow_val_vec(COW_T_TUPLE, vec);
    mv = cow_val_map(COW_T_FDICT, m);
    cr_assert_eq(vec->b.shift, 10);
    ms_write(&ms, &v, 0, &page);
    back = ms_open(&ms, &page);
    expect_same(&v, &back, 0);
    cow_val_release(&back);
    ms_write(&ms, &mv, 0, &page);
    back = ms_open(&ms, &page);
    expect_same(&mv, &back, 0);
    cow_val_release(&back);
    cow_val_release(&v);
    cow_val_release(&mv);
    ms_free(&ms);
}

/* The memo writes a node reached through several parents once: a list of
 * 100 references to one map costs about one map, and all 100 read back as
 * the same page word; 100 equal but distinct maps cost 100 maps. */
Test(segment, shared_nodes_written_once)
{
    enum { COPIES = 100 };
    memstore ms;
    cow_val one = mk_rich(40, 1), shared, distinct, page, back;
    cow_vec *sv = new_vec(), *dv = new_vec();
    wstats s1, s2;
    ms_init(&ms, MS_CAP);
    for (int i = 0; i < COPIES; i++) {
        cow_val c;
        cow_val_copy(&c, &one);
        cr_assert_eq(cow_vb_push(&sv->b, c), COW_OK);
        cr_assert_eq(cow_vb_push(&dv->b, mk_rich(40, 1)), COW_OK);
    }
    shared = cow_val_vec(COW_T_LIST, sv);
    distinct = cow_val_vec(COW_T_LIST, dv);
    s1 = ms_write(&ms, &shared, 0, &page);
    back = ms_open(&ms, &page);
    expect_same(&shared, &back, 0);
    {
        const cow_vec *bv = cow_val_getvec(&back);
        cow_word first = cow_ref_export(&tu_vb_get(&bv->b, 0)->u.w);
        for (size_t i = 1; i < COPIES; i++)
            cr_assert_eq(cow_ref_export(&tu_vb_get(&bv->b, i)->u.w), first,
                         "element %zu was written again", i);
    }
    cow_val_release(&back);
    s2 = ms_write(&ms, &distinct, 0, &page);
    cr_assert_lt(s1.bytes * 20, s2.bytes, "shared: %llu bytes, distinct: %llu",
                 (unsigned long long)s1.bytes, (unsigned long long)s2.bytes);
    cow_val_release(&shared);
    cow_val_release(&distinct);
    cow_val_release(&one);
    ms_free(&ms);
}

/* ---- structural sharing ------------------------------------------------------------ */

/* One change to a stored 8000-entry dict -- replace, insert, delete, each
 * derived from the *stored* value, by cow_map_own or cow_map_clone -- writes
 * O(log n) bytes and keeps the rest (kept > 0); the new segment names the
 * old one (S2); both versions read back right (the old one unchanged). */
Test(segment, one_change_writes_log_n)
{
    enum { N = 8000 };
    /* Upper bound for one change: a map header, a log leaf and its 2 inner
     * nodes, an index path of at most 8 nodes (map.c) and one new value. */
    const uint64_t small = 4096;
    memstore ms;
    cow_map *m = new_map();
    cow_val v, page1, stored;
    wstats s1;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < N; i++)
        map_put(m, mk_key(i), mk_leafval(i));
    v = cow_val_map(COW_T_DICT, m);
    s1 = ms_write(&ms, &v, 0, &page1);
    stored = ms_open(&ms, &page1);
    for (int change = 0; change < 4; change++) {
        cow_val d, page2, back, key = mk_key(change == 1 ? N + 5 : 4321 + change);
        uint64_t h = tu_hash(&key);
        wstats s2;
        if (change == 3) {       /* a clone: new identity, shares every node */
            d = cow_val_map(COW_T_DICT, cow_map_clone(cow_val_getmap(&stored)));
            cr_assert_neq(cow_val_getmap(&d)->ident, cow_val_getmap(&stored)->ident);
        }
        else {
            d = own_map(&stored);
            cr_assert_eq(cow_val_getmap(&d)->ident, cow_val_getmap(&stored)->ident);
        }
        if (change == 2) {
            cr_assert_eq(cow_map_del(cow_val_getmap(&d), &key, h, NULL), COW_FOUND);
            cow_val_release(&key);
        }
        else {
            cr_assert_eq(cow_map_set(cow_val_getmap(&d), key, h,
                                     tu_str("the new value of a changed key, #%d", change)), COW_OK);
        }
        s2 = ms_write(&ms, &d, 0, &page2);
        cr_assert_leq(s2.bytes, small, "change %d wrote %llu bytes (first write %llu)", change,
                      (unsigned long long)s2.bytes, (unsigned long long)s1.bytes);
        cr_assert_lt(s2.bytes * 50, s1.bytes);
        cr_assert_gt(s2.kept, 0, "nothing kept from the stored version");
        cr_assert(write_names(&ms, s2, s1.first_seg, s1.first_seg + (uint32_t)s1.segments),
                  "S2: the change names no segment of the version it shares");
        back = ms_open(&ms, &page2);
        expect_same(&d, &back, 0);
        cow_val_release(&back);
        cow_val_release(&d);
    }
    {
        cow_val again = ms_open(&ms, &page1);       /* the first version is unchanged */
        expect_same(&v, &again, 0);
        cow_val_release(&again);
    }
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* The same for a vector: one element set in a stored 40000-element list. */
Test(segment, one_vector_set_writes_log_n)
{
    enum { N = 40000 };
    memstore ms;
    cow_vec *vec = new_vec();
    cow_val v, page1, page2, stored, d, back;
    wstats s1, s2;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < N; i++)
        cr_assert_eq(cow_vb_push(&vec->b, cow_val_int(i)), COW_OK);
    v = cow_val_vec(COW_T_LIST, vec);
    s1 = ms_write(&ms, &v, 0, &page1);
    stored = ms_open(&ms, &page1);
    cow_val_copy(&d, &stored);
    cr_assert_eq(cow_vec_own(&d.u.w), COW_OK);
    cr_assert_eq(cow_vb_set(&((cow_vec *)d.u.w)->b, 12345, tu_str("changed element, a blob")), COW_OK);
    s2 = ms_write(&ms, &d, 0, &page2);
    /* header + leaf (8 + 32 * 16) + 3 inner nodes (8 + 32 * 8) + the blob */
    cr_assert_leq(s2.bytes, 2048, "one set wrote %llu bytes", (unsigned long long)s2.bytes);
    cr_assert_lt(s2.bytes * 50, s1.bytes);
    cr_assert_gt(s2.kept, 0);
    back = ms_open(&ms, &page2);
    expect_same(&d, &back, 0);
    cow_val_release(&back);
    back = ms_open(&ms, &page1);
    expect_same(&v, &back, 0);
    cow_val_release(&back);
    cow_val_release(&d);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* copy_all rewrites every node, also those the target holds: it writes as
 * much as the first write, keeps nothing, names no old segment (S2) and
 * still reads right after every old segment is gone. */
Test(segment, copy_all_rewrites_everything)
{
    memstore ms;
    cow_val v = mk_rich(400, 2), page1, page2, stored, d, model, back;
    cow_val key = mk_key(1000000), key2;
    wstats s1, s2;
    uint32_t first_new;
    ms_init(&ms, MS_CAP);
    s1 = ms_write(&ms, &v, 0, &page1);
    stored = ms_open(&ms, &page1);
    /* a derived heap value over stored nodes, so copy_all meets both kinds;
     * the model makes the same change to the heap original */
    d = own_map(&stored);
    cow_val_copy(&model, &v);
    cr_assert_eq(cow_map_own(&model.u.w), COW_OK);
    cow_val_copy(&key2, &key);
    cr_assert_eq(cow_map_set(cow_val_getmap(&d), key, tu_hash(&key2), cow_val_int(1)), COW_OK);
    cr_assert_eq(cow_map_set(cow_val_getmap(&model), key2, tu_hash(&key2), cow_val_int(1)), COW_OK);
    first_new = ms.next_id;
    s2 = ms_write(&ms, &d, 1, &page2);
    cr_assert_eq(s2.kept, 0, "copy_all kept %llu words", (unsigned long long)s2.kept);
    cr_assert_geq(s2.bytes, s1.bytes, "copy_all wrote %llu < %llu", (unsigned long long)s2.bytes,
                  (unsigned long long)s1.bytes);
    for (uint32_t s = first_new; s < ms.next_id; s++)
        for (size_t i = 0; i < ms.nrefs[s]; i++)
            cr_assert_geq(ms.refs[s][i], first_new, "S2: copy_all output names old segment %u",
                          ms.refs[s][i]);
    back = ms_open(&ms, &page2);
    expect_same(&d, &back, 0);
    cow_val_release(&back);
    cow_val_release(&d);
    cow_val_release(&stored);
    /* the old segment is gone: the rewritten copy must not need it */
    for (uint32_t s = s1.first_seg; s < first_new; s++)
        ms_drop(&ms, s);
    back = ms_open(&ms, &page2);
    expect_same(&model, &back, 0);
    cow_val_release(&back);
    cow_val_release(&model);
    cow_val_release(&v);
    ms_free(&ms);
}

/* A stored value of another env is never "kept": writing it into a second
 * store copies it (kept == 0) and the copy reads right after the first
 * store is gone. */
Test(segment, other_store_words_are_copied)
{
    memstore a, b;
    cow_val v = mk_rich(100, 2), pa, pb, sa, back;
    wstats st;
    ms_init(&a, MS_CAP);
    ms_init(&b, MS_CAP);
    ms_write(&a, &v, 0, &pa);
    sa = ms_open(&a, &pa);
    st = ms_write(&b, &sa, 0, &pb);
    cr_assert_eq(st.kept, 0);
    cr_assert_not(write_names(&b, st, 0, st.first_seg), "S2: b's segments name only their own");
    cow_val_release(&sa);
    ms_free(&a);
    back = ms_open(&b, &pb);
    expect_same(&v, &back, 0);
    cow_val_release(&back);
    cow_val_release(&v);
    ms_free(&b);
}

/* More than COW_SEG_TARGET bytes split into several segments at node
 * boundaries, none past the target unless it holds one node bigger than
 * the target; the list's segment names the blobs' (S2) and the whole value
 * reads back. */
Test(segment, large_value_spans_segments)
{
    enum { BLOBS = 10 };
    const size_t blob = COW_SEG_TARGET / 8 > 64 ? COW_SEG_TARGET / 8 : 64;
    const size_t big = COW_SEG_TARGET + 8;      /* one node over the target */
    const size_t big_node = (sizeof(cow_blob) + big + 7) & ~(size_t)7;
    memstore ms;
    cow_vec *vec = new_vec();
    cow_val v, page, back;
    char *raw = malloc(big);
    wstats st;
    cr_assert_not_null(raw);
    ms_init(&ms, 2 * (BLOBS * blob + big) + ((size_t)1 << 20));
    for (int i = 0; i <= BLOBS; i++) {
        memset(raw, 'A' + i, big);
        cr_assert_eq(cow_vb_push(&vec->b, tu_bytes(raw, i == BLOBS / 2 ? big : blob)), COW_OK);
    }
    free(raw);
    v = cow_val_vec(COW_T_LIST, vec);
    st = ms_write(&ms, &v, 0, &page);
    cr_assert_geq(st.segments, 3, "%llu segments", (unsigned long long)st.segments);
    for (uint32_t s = st.first_seg; s < ms.next_id; s++)
        cr_assert(ms.len[s] <= COW_SEG_TARGET || ms.len[s] == big_node,
                  "segment %u: %zu bytes", s, ms.len[s]);
    cr_assert(write_names(&ms, st, st.first_seg, ms.next_id),
              "S2: the list's segment names the blobs' segments");
    back = ms_open(&ms, &page);
    expect_same(&v, &back, 0);
    cow_val_release(&back);
    cow_val_release(&v);
    ms_free(&ms);
}

/* A stored node whose segment the target has freed since it was read (it
 * stays readable, as in an older LMDB snapshot) is copied, not kept:
 * the new segments never name a freed one (S2). */
Test(segment, freed_segments_are_copied_not_kept)
{
    memstore ms;
    cow_val v = mk_rich(200, 2), page1, page2, stored, d, back;
    cow_val key = mk_key(777777);
    wstats s1, s2;
    ms_init(&ms, MS_CAP);
    s1 = ms_write(&ms, &v, 0, &page1);
    stored = ms_open(&ms, &page1);
    d = own_map(&stored);
    cr_assert_eq(cow_map_set(cow_val_getmap(&d), key, tu_hash(&key), cow_val_int(7)), COW_OK);
    for (uint32_t s = s1.first_seg; s < s1.first_seg + s1.segments; s++)
        ms.freed[s] = 1;
    s2 = ms_write(&ms, &d, 0, &page2);
    cr_assert_eq(s2.kept, 0, "kept %llu words naming freed segments", (unsigned long long)s2.kept);
    cr_assert_not(write_names(&ms, s2, s1.first_seg, s1.first_seg + (uint32_t)s1.segments));
    cr_assert_geq(s2.bytes, s1.bytes / 2, "a copy cannot be much smaller than the original");
    back = ms_open(&ms, &page2);
    expect_same(&d, &back, 0);
    cow_val_release(&back);
    cow_val_release(&d);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* ---- errors ------------------------------------------------------------------------ */

/* Probe keys (views) are never stored (V4): the writer fails with
 * COW_EINVAL.  A sink error stops the writer: finish returns it, and every
 * later call is a no-op. */
Test(segment, writer_errors)
{
    memstore ms;
    cow_segw w;
    cow_val view = cow_val_str_view("borrowed text", 13), page;
    cow_val v = mk_rich(20, 1);
    ms_init(&ms, MS_CAP);
    cow_segw_init(&w, ms.slot, 0, &ms_sink, &ms);
    cow_segw_value(&w, &view, &page);
    cr_assert_eq(w.rc, COW_EINVAL);
    cr_assert_eq(cow_segw_finish(&w), COW_EINVAL);
    cow_segw_free(&w);

    ms.fail_put = COW_ESTORE;
    cow_segw_init(&w, ms.slot, 0, &ms_sink, &ms);
    cow_segw_value(&w, &v, &page);
    cr_assert(w.rc == COW_OK || w.rc == COW_ESTORE, "rc %d", w.rc);  /* a full segment is put early */
    cr_assert_eq(cow_segw_finish(&w), COW_ESTORE);
    cow_segw_value(&w, &v, &page);
    cr_assert_eq(cow_segw_finish(&w), COW_ESTORE, "the first error sticks");
    cow_segw_free(&w);
    ms.fail_put = 0;

    ms.fail_new_id = COW_EOVERFLOW;
    cow_segw_init(&w, ms.slot, 0, &ms_sink, &ms);
    cow_segw_value(&w, &v, &page);
    cr_assert_eq(w.rc, COW_EOVERFLOW);
    cr_assert_eq(cow_segw_finish(&w), COW_EOVERFLOW);
    cow_segw_free(&w);
    ms.fail_new_id = 0;

    /* the store is still usable after failed writers */
    {
        cow_val back;
        ms_write(&ms, &v, 0, &page);
        back = ms_open(&ms, &page);
        expect_same(&v, &back, 0);
        cow_val_release(&back);
    }
    cow_val_release(&v);
    ms_free(&ms);
}

/* A list nested n deep: [[[...[1]...]]]. */
static cow_val
mk_deep(int n)
{
    cow_val v = cow_val_int(1);
    for (int i = 0; i < n; i++) {
        cow_vec *vec = new_vec();
        cr_assert_eq(cow_vb_push(&vec->b, v), COW_OK);
        v = cow_val_vec(COW_T_LIST, vec);
    }
    return v;
}

/* Nesting below COW_SEGW_MAX_NESTING is written and reads back; deeper
 * values are refused with COW_EOVERFLOW (the writer recurses per level and
 * must not overflow the stack) and nothing is put. */
Test(segment, nesting_limit)
{
    memstore ms;
    cow_val ok = mk_deep(COW_SEGW_MAX_NESTING - 2), deep = mk_deep(COW_SEGW_MAX_NESTING + 2);
    cow_val page, back;
    cow_segw w;
    ms_init(&ms, MS_CAP);
    ms_write(&ms, &ok, 0, &page);
    back = ms_open(&ms, &page);
    expect_same(&ok, &back, 0);
    cow_val_release(&back);
    cow_segw_init(&w, ms.slot, 0, &ms_sink, &ms);
    cow_segw_value(&w, &deep, &page);
    cr_assert_eq(w.rc, COW_EOVERFLOW);
    cr_assert_eq(cow_segw_finish(&w), COW_EOVERFLOW);
    cow_segw_free(&w);
    cow_val_release(&deep);
    cow_val_release(&ok);
    ms_free(&ms);
}

/* Writing a stored value whose node is corrupt fails with COW_ECORRUPT
 * instead of writing poison as data. */
Test(segment, corrupt_source_fails_the_write)
{
    memstore ms, dst;
    cow_val v = mk_rich(50, 2), page, stored, page2;
    cow_segw w;
    ms_init(&ms, MS_CAP);
    ms_init(&dst, MS_CAP);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    /* break the root map header's refcnt */
    ((cow_map *)cow_val_getmap(&stored))->refcnt = 7;
    cow_ref_env_forget(&ms.env);
    cow_segw_init(&w, dst.slot, 0, &ms_sink, &dst);
    cow_segw_value(&w, &stored, &page2);
    cr_assert_eq(w.rc, COW_ECORRUPT);
    cr_assert_eq(cow_segw_finish(&w), COW_ECORRUPT);
    cow_segw_free(&w);
    cr_assert_eq(tu_read_error(), COW_OK, "the writer takes the error it reports");
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&dst);
    ms_free(&ms);
}

/* A value that fails its check in the last leaf a write reaches (no child
 * word is resolved after it) still fails the write: poison must never be
 * written as data, however late in the walk it is met. */
Test(segment, corrupt_value_in_the_last_leaf_fails_the_write)
{
    memstore ms, dst;
    cow_vec *vec = new_vec();
    cow_val v, page, stored, page2;
    cow_segw w;
    ms_init(&ms, MS_CAP);
    ms_init(&dst, MS_CAP);
    /* ints too wide for a packed leaf to pay: the leaf is stored plain */
    cr_assert_eq(cow_vb_push(&vec->b, cow_val_int(INT64_C(1) << 60)), COW_OK);
    cr_assert_eq(cow_vb_push(&vec->b, cow_val_int(INT64_C(2) << 60)), COW_OK);
    v = cow_val_vec(COW_T_LIST, vec);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    ((cow_val *)cow_vb_slot(&cow_val_getvec(&stored)->b, 1))->tag = COW_T__COUNT;
    cr_assert_eq(tu_read_error(), COW_OK);
    cow_segw_init(&w, dst.slot, 0, &ms_sink, &dst);
    cow_segw_value(&w, &stored, &page2);
    cr_assert_eq(cow_segw_finish(&w), COW_ECORRUPT, "poison was written as data");
    cow_segw_free(&w);
    cr_assert_eq(tu_read_error(), COW_OK, "the writer takes the error it reports");
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&dst);
    ms_free(&ms);
}

/* The writer's reads are a read scope of their own (cowstore/ref.h): an
 * error the caller met before survives a clean write, and is not taken for
 * the write's. */
Test(segment, writer_keeps_the_callers_read_error)
{
    memstore ms;
    cow_val v = mk_rich(20, 1), page;
    int outer = cow_ref_scope_enter();
    ms_init(&ms, MS_CAP);
    cow_ref_set_error(COW_ECORRUPT);
    ms_write(&ms, &v, 0, &page);        /* asserts the write succeeded */
    cr_assert_eq(cow_ref_scope_leave(outer), COW_ECORRUPT, "the writer lost the caller's error");
    cow_val_release(&v);
    ms_free(&ms);
}

/* An allocation failure of the segment cache while the writer reads a
 * stored source is the write's COW_ENOMEM, not corruption. */
Test(segment, segment_cache_enomem_fails_the_write_as_enomem)
{
    memstore ms, dst;
    cow_val v, page, stored, page2;
    cow_segw w;
    tu_alloc_install();
    ms_init(&ms, MS_CAP);
    ms_init(&dst, MS_CAP);
    v = mk_rich(20, 1);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    cow_ref_env_forget(&ms.env);        /* the first read allocates the cache again */
    cow_segw_init(&w, dst.slot, 1, &ms_sink, &dst);
    tu_fail_after(0);
    cow_segw_value(&w, &stored, &page2);
    tu_fail_after(-1);
    cr_assert_eq(cow_segw_finish(&w), COW_ENOMEM);
    cow_segw_free(&w);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&dst);
    ms_free(&ms);
}

/* ---- corrupt bytes ------------------------------------------------------------------ */

/* Pages can describe a cycle: here a frozen dict whose only value is itself
 * (the value's word patched to name the root header).  Every bound check
 * passes, so recursive walkers -- hashing, equality, the writer -- must stop
 * on depth themselves and report an error instead of overflowing the stack.
 * Regression test for build/helper_ctest_bugs.md #6. */
Test(segment, cyclic_pages_do_not_overflow_the_stack)
{
    memstore ms, dst;
    cow_map *outer = new_map();
    cow_val v, page, stored, copy, page2;
    cow_val *leafval;
    cow_segw w;
    uint64_t h;
    int rc;
    ms_init(&ms, MS_CAP);
    ms_init(&dst, MS_CAP);
    map_put(outer, tu_str("k"), cow_val_map(COW_T_FDICT, new_map()));
    v = cow_val_map(COW_T_FDICT, outer);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    leafval = (cow_val *)cow_vb_slot(&cow_val_getmap(&stored)->log, 1);
    leafval->u.w = page.u.w;            /* {"k": <itself>} */
    rc = cow_val_hash(&stored, &h);
    cr_assert(rc < 0 || tu_read_error() == COW_ECORRUPT, "hash of a cycle succeeded");
    tu_read_error();
    /* a second handle on the same cycle whose header is a heap copy, so
     * equality cannot short-cut on identical pointers */
    cow_val_copy(&copy, &stored);
    cr_assert_eq(cow_map_own(&copy.u.w), COW_OK);
    (void)cow_val_equal(&stored, &copy);
    tu_read_error();
    cow_segw_init(&w, dst.slot, 1, &ms_sink, &dst);
    cow_segw_value(&w, &stored, &page2);
    cr_assert_neq(cow_segw_finish(&w), COW_OK, "the writer wrote a cycle");
    cow_segw_free(&w);
    cow_val_release(&copy);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&dst);
    ms_free(&ms);
}

/* A stored vector header claiming more values than its tail leaf holds (len
 * 32, a tail of 8): iteration must stop at the leaf's count -- poison and
 * COW_ECORRUPT -- instead of reading the bytes after the leaf as values
 * (here: the header, then past the segment's end, which ASan reports).
 * Regression test for build/helper_ctest_bugs.md #5. */
Test(segment, vec_iter_stops_at_leaf_count)
{
    memstore ms;
    cow_vec *vec = new_vec();
    cow_val v, page, stored;
    cow_vec_iter it;
    size_t n = 0;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < 8; i++)
        cr_assert_eq(cow_vb_push(&vec->b, cow_val_int(i)), COW_OK);
    cow_vb_trim(&vec->b);
    v = cow_val_vec(COW_T_TUPLE, vec);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    ((cow_vec *)cow_val_getvec(&stored))->b.len = COW_VEC_WIDTH;   /* still a sane shape */
    cow_vec_iter_init(&it, &cow_val_getvec(&stored)->b, 0);
    for (const cow_val *x; (x = cow_vec_iter_next(&it)) != NULL; n++) {
        volatile uint8_t tag = x->tag;      /* reads the value, as every caller does */
        (void)tag;
    }
    cr_assert_eq(n, COW_VEC_WIDTH);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT, "values past the leaf's count were read as data");
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* A value in a stored leaf whose tag reads as a probe view (never stored,
 * V4) must not be trusted: its "pointer" comes from the file.  Hashing it
 * must give poison and COW_ECORRUPT.  Regression test for
 * build/helper_ctest_bugs.md #4. */
Test(segment, page_view_tag_is_poison)
{
    memstore ms;
    cow_vec *vec = new_vec();
    cow_val v, page, stored;
    cow_val *leafval;
    uint64_t h;
    ms_init(&ms, MS_CAP);
    cr_assert_eq(cow_vb_push(&vec->b, tu_bytes("abc", 3)), COW_OK);
    v = cow_val_vec(COW_T_LIST, vec);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    leafval = (cow_val *)cow_vb_slot(&cow_val_getvec(&stored)->b, 0);
    cr_assert_eq(leafval->tag, COW_T_SBYTES);
    leafval->tag = COW_T_BYTES_VIEW;
    (void)cow_val_hash(tu_vb_get(&cow_val_getvec(&stored)->b, 0), &h);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* A word inside a stored node with bit 0 cleared is not a heap pointer:
 * reading the map through it must give poison and COW_ECORRUPT, not
 * dereference the word.  Regression test for
 * build/helper_ctest_bugs.md #3. */
Test(segment, page_index_word_with_bit0_clear_is_poison)
{
    memstore ms;
    cow_map *m = new_map();
    cow_val v, page, stored, key = mk_key(5);
    const cow_val *found;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < 20; i++)
        map_put(m, mk_key(i), cow_val_int(i));
    v = cow_val_map(COW_T_DICT, m);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    ((cow_map *)cow_val_getmap(&stored))->index &= ~COW_REF_STORED;
    (void)tu_map_get(cow_val_getmap(&stored), &key, tu_hash(&key), &found);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cow_val_release(&key);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* The same for a value's word in a stored leaf (a blob str here).
 * Regression test for build/helper_ctest_bugs.md #3. */
Test(segment, page_value_word_with_bit0_clear_is_poison)
{
    memstore ms;
    cow_vec *vec = new_vec();
    cow_val v, page, stored;
    cow_val *leafval;
    const char *p;
    size_t n;
    ms_init(&ms, MS_CAP);
    cr_assert_eq(cow_vb_push(&vec->b, tu_str("a string long enough to be a blob")), COW_OK);
    v = cow_val_vec(COW_T_LIST, vec);
    ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    leafval = (cow_val *)cow_vb_slot(&cow_val_getvec(&stored)->b, 0);
    cr_assert(cow_word_stored(leafval->u.w));
    leafval->u.w &= ~COW_REF_STORED;
    cow_val_span(tu_vb_get(&cow_val_getvec(&stored)->b, 0), &p, &n);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* Rounds of the random-flip test and its seed (override with -D to search
 * longer offline). */
#ifndef FLIP_ROUNDS
#define FLIP_ROUNDS 150
#endif
#ifndef FLIP_SEED
#define FLIP_SEED 0x464c4950ULL
#endif

/* Entries and elements a walk visits at most per container (a corrupt
 * length may claim 2^60: poison is read, but not for ever). */
#define WALK_LIMIT 2000

/* Deepest nesting a walk follows (corrupt pages can nest for ever). */
#define WALK_MAX_DEPTH 32

/* Values one walk visits at most (corrupt words can make a small file
 * describe a huge DAG). */
#define WALK_BUDGET 200000

static size_t walk_budget;

/* Reads everything reachable from v through the public API; returns the
 * number of values visited.  Never asserts on content: the bytes are bad. */
static size_t
walk(const cow_val *v, int depth)
{
    size_t n = 1;
    uint64_t h;
    if (depth >= WALK_MAX_DEPTH || walk_budget == 0)
        return n;
    walk_budget--;
    if (cow_tag_is_str(v->tag) || cow_tag_is_bytes(v->tag) || v->tag == COW_T_BIGINT) {
        const char *p;
        size_t len;
        cow_val_span(v, &p, &len);
        for (size_t i = 0; i < len; i++)
            n += p[i] == 0x7f;
        (void)cow_val_hash(v, &h);
    }
    else if (cow_tag_is_vec(v->tag)) {
        const cow_vec *vec = cow_val_getvec(v);
        cow_vec_iter it;
        const cow_val *x;
        size_t i = 0, len = cow_vec_len(vec);
        (void)cow_vec_check(&vec->b);
        cow_vec_iter_init(&it, &vec->b, 0);
        while (i++ < WALK_LIMIT && (x = cow_vec_iter_next(&it)) != NULL)
            n += walk(x, depth + 1);
        if (len) {
            cow_val last = cow_vb_get(&vec->b, len - 1);
            n += walk(&last, depth + 1);
        }
    }
    else if (cow_tag_is_map(v->tag)) {
        const cow_map *m = cow_val_getmap(v);
        size_t ne = cow_map_entries(m);
        (void)cow_map_check(m);
        for (size_t e = 0; e < ne && e < WALK_LIMIT; e++) {
            cow_val k = cow_map_entry_key(m, e), val = cow_map_entry_val(m, e), found;
            n += walk(&k, depth + 1);
            n += walk(&val, depth + 1);
            if (cow_val_hash(&k, &h) == COW_OK)
                (void)cow_map_get(m, &k, h, &found);
        }
    }
    return n;
}

/* Flipping random bytes of the written segment, then walking everything
 * (iteration, lookups, validators, comparison with the original) never
 * faults -- ASan and the poisoned gaps prove no read leaves a segment --
 * and some flips are reported as COW_ECORRUPT.  Unflipped bytes read clean
 * (the control). */
static void flip_rounds(cow_val v);

Test(segment, random_flips_never_crash)
{
    flip_rounds(mk_rich(60, 3));
}

/* A value whose leaves are stored packed (vec.c, compact.h): a list of small
 * ints, short strs, None, bools and floats, and a {str: int} map. */
static cow_val
mk_packable(void)
{
    cow_vec *vec = new_vec();
    cow_map *m = new_map();
    for (int64_t i = 0; i < 200; i++) {
        cow_val x = i % 5 == 0 ? tu_str("s%lld", (long long)i) : i % 5 == 1 ? cow_val_none()
                    : i % 5 == 2 ? cow_val_bool(i % 2) : i % 5 == 3 ? cow_val_float(i / 4.0)
                    : cow_val_int(i * 1000);
        cr_assert_eq(cow_vb_push(&vec->b, x), COW_OK);
    }
    for (int64_t i = 0; i < 100; i++)
        map_put(m, tu_str("key%lld", (long long)i), cow_val_int(i));
    cr_assert_eq(cow_vb_push(&vec->b, cow_val_map(COW_T_DICT, m)), COW_OK);
    return cow_val_vec(COW_T_LIST, vec);
}

Test(segment, random_flips_in_packed_leaves_never_crash)
{
    flip_rounds(mk_packable());
}

/* A stored packed leaf is read through its items: an item whose code byte
 * no item has reads as poison with COW_ECORRUPT (by index, pair and
 * iterator alike), and the restored byte reads clean again. */
Test(segment, damaged_packed_item_reads_as_poison)
{
    static const char item[] = "\x14s100";     /* compact.h: SSTR code + 4, bytes */
    memstore ms;
    cow_val v = mk_packable(), page, stored, x, pair[2];
    const cow_vecbody *b;
    cow_vec_iter it;
    char *at = NULL;
    wstats st;
    ms_init(&ms, MS_CAP);
    st = ms_write(&ms, &v, 0, &page);
    stored = ms_open(&ms, &page);
    b = &cow_val_getvec(&stored)->b;
    cr_assert_null(cow_vb_slot(b, 0), "small values are stored packed");
    expect_same(&v, &stored, 0);
    for (uint32_t seg = st.first_seg; seg < st.first_seg + st.segments; seg++)
        for (size_t i = 0; i + sizeof item - 1 <= ms.len[seg]; i++)
            if (memcmp(ms.buf + ms.off[seg] + i, item, sizeof item - 1) == 0) {
                cr_assert_null(at, "the item occurs once");
                at = ms.buf + ms.off[seg] + i;
            }
    cr_assert_not_null(at);
    at[0] = 0x0e;
    x = cow_vb_get(b, 100);
    cr_assert_eq(x.tag, COW_T_NONE);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cow_vb_get_pair(b, 100, pair);
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cow_vec_iter_init(&it, b, 96);
    while (cow_vec_iter_next(&it) != NULL && it.i < 128)
        ;
    cr_assert_eq(tu_read_error(), COW_ECORRUPT);
    cr_assert_neq(cow_vec_check(b), COW_OK);
    tu_read_error();
    at[0] = 0x14;
    x = cow_vb_get(b, 100);
    cr_assert(x.tag == COW_T_SSTR && x.slen == 4 && memcmp((char *)&x + COW_INLINE_OFFSET, "s100", 4) == 0);
    cr_assert_eq(tu_read_error(), COW_OK);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* Writes v (stolen), then flips random bytes of its segments FLIP_ROUNDS
 * times, walking everything after each. */
static void
flip_rounds(cow_val v)
{
    enum { ROUNDS = FLIP_ROUNDS };
    uint64_t seed = FLIP_SEED;
    memstore ms;
    cow_val page, stored;
    wstats st;
    char *orig;
    size_t off, len, detected = 0;
    ms_init(&ms, MS_CAP);
    st = ms_write(&ms, &v, 0, &page);
    /* the written segments lie back to back from the first one's start */
    off = ms.off[st.first_seg];
    len = ms.used - off;
    orig = malloc(len);
    cr_assert_not_null(orig);
    for (uint32_t seg = st.first_seg; seg < st.first_seg + st.segments; seg++)
        memcpy(orig + (ms.off[seg] - off), ms.buf + ms.off[seg], ms.len[seg]);
    stored = ms_open(&ms, &page);
    walk_budget = WALK_BUDGET;
    cr_assert(walk(&stored, 0) > 100);
    cr_assert_eq(tu_read_error(), COW_OK, "control: intact bytes read clean");
    for (int r = 0; r < ROUNDS; r++) {
        int flips = 1 + (int)tu_below(&seed, 8);
        for (int i = 0; i < flips; i++) {
            uint32_t seg = st.first_seg + (uint32_t)tu_below(&seed, st.segments);
            ms.buf[ms.off[seg] + tu_below(&seed, ms.len[seg])] ^= (char)(1u << tu_below(&seed, 8));
        }
        cow_ref_env_forget(&ms.env);
        walk_budget = WALK_BUDGET;
        walk(&stored, 0);
        (void)cow_val_equal(&v, &stored);
        (void)cow_val_equal(&stored, &v);
        detected += tu_read_error() == COW_ECORRUPT;
        for (uint32_t seg = st.first_seg; seg < st.first_seg + st.segments; seg++)
            memcpy(ms.buf + ms.off[seg], orig + (ms.off[seg] - off), ms.len[seg]);
    }
    cr_assert_gt(detected, ROUNDS / 20, "only %zu of %d corruptions detected", detected, ROUNDS);
    cow_ref_env_forget(&ms.env);
    expect_same(&v, &stored, 0);        /* restored bytes: clean again */
    free(orig);
    cow_val_release(&stored);
    cow_val_release(&v);
    ms_free(&ms);
}

/* cow_segw_measure (du's sizes): the bytes a full write of a value would
 * put, heap or stored alike; a subtree shared by two values counts once;
 * scalars without a word measure 0; nothing is written to the store. */
Test(segment, measure_counts_what_a_full_write_puts)
{
    memstore ms;
    cow_map *m = new_map();
    cow_vec *vec = new_vec();
    cow_val v, page, stored, both[2], sub, scalar = cow_val_int(7);
    uint64_t bytes, nodes, sub_bytes, sub_nodes, b2, n2;
    uint32_t ids_before;
    ms_init(&ms, MS_CAP);
    for (int64_t i = 0; i < 3000; i++)
        cr_assert_eq(cow_vb_push(&vec->b, mk_leafval(i)), COW_OK);
    sub = cow_val_vec(COW_T_LIST, vec);
    for (int64_t i = 0; i < 200; i++)
        map_put(m, mk_key(i), mk_leafval(i));
    map_put(m, tu_str("sub"), (cow_val_retain(&sub), sub));
    v = cow_val_map(COW_T_DICT, m);
    cr_assert_eq(cow_segw_measure(&v, 1, &bytes, &nodes), COW_OK);
    {
        wstats st = ms_write(&ms, &v, 0, &page);
        cr_assert_eq(bytes, st.bytes, "measured %llu, a write put %llu",
                     (unsigned long long)bytes, (unsigned long long)st.bytes);
    }
    cr_assert_gt(nodes, 3000 / 32);
    stored = ms_open(&ms, &page);
    ids_before = ms.next_id;
    cr_assert_eq(cow_segw_measure(&stored, 1, &b2, &n2), COW_OK);
    cr_assert_eq(b2, bytes, "stored: %llu, heap: %llu", (unsigned long long)b2,
                 (unsigned long long)bytes);
    cr_assert_eq(n2, nodes);
    cr_assert_eq(ms.next_id, ids_before, "measuring wrote to the store");
    cr_assert_eq(cow_segw_measure(&sub, 1, &sub_bytes, &sub_nodes), COW_OK);
    cr_assert_lt(sub_bytes, bytes);
    both[0] = v;
    both[1] = sub;
    cr_assert_eq(cow_segw_measure(both, 2, &b2, &n2), COW_OK);
    cr_assert_eq(b2, bytes, "the shared subtree was counted twice");
    cr_assert_eq(cow_segw_measure(&scalar, 1, &b2, &n2), COW_OK);
    cr_assert(b2 == 0 && n2 == 0);
    cow_val_release(&stored);
    cow_val_release(&sub);
    cow_val_release(&v);
    ms_free(&ms);
}
