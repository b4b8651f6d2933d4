/* Criterion tests for csrc/core/pack.c: invariants P1..P4 of
 * cowstore/pack.h -- round trips at every width boundary, what is not
 * packed, shared shapes, inlined packed children, reads in place, hashing
 * and equality against the general form, and hostile item bytes. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/ext.h"
#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/pack.h"
#include "cowstore/ref.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"
#include "cowtest_values.h"

static void
pack_fini(void)
{
    cow_pack_forget_shapes();
    cr_assert_eq(cow_pack_live_nodes(), 0, "pack nodes leaked");
    tu_leak_check();
}

TestSuite(pack, .fini = pack_fini);

static cow_val
str_of(const char *s)
{
    cow_val v;
    cr_assert_eq(cow_val_str(&v, s, strlen(s)), COW_OK);
    return v;
}

/* A dict {keys[i]: vals[i]} (vals stolen). */
static cow_val
dict_of(const char *const *keys, cow_val *vals, size_t n)
{
    cow_map *m = new_map();
    for (size_t i = 0; i < n; i++)
        map_put(m, str_of(keys[i]), vals[i]);
    return cow_val_map(COW_T_DICT, m);
}

static cow_val
list_of(cow_tag tag, cow_val *vals, size_t n)
{
    cow_vec *v = new_vec();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(cow_vb_push(&v->b, vals[i]), COW_OK);
    return cow_val_vec(tag, v);
}

static cow_val
packed(const cow_val *v)
{
    cow_val p;
    cr_assert_eq(cow_pack_make(v, &p), COW_FOUND);
    cr_assert_eq(p.tag, COW_T_PACKED);
    return p;
}

/* P1: unpacking gives an equal general container, same tag and identity. */
static void
expect_round_trip(const cow_val *v)
{
    cow_val p = packed(v), g;
    cr_assert_eq(cow_pack_unpack(&p, &g), COW_OK);
    cr_assert_eq(g.tag, v->tag);
    cr_assert_eq(p.slen, v->tag);
    cr_assert(cow_val_equal(&g, v));
    cr_assert(cow_val_equal(&p, v), "a pack equals its general form");
    if (cow_tag_is_map(v->tag)) {
        cr_assert_eq(cow_val_getmap(&g)->ident, cow_val_getmap(v)->ident);
        cr_assert_eq(cow_map_check(cow_val_getmap(&g)), COW_OK);
    }
    else {
        cr_assert_eq(cow_val_getvec(&g)->ident, cow_val_getvec(v)->ident);
        cr_assert_eq(cow_vec_check(&cow_val_getvec(&g)->b), COW_OK);
    }
    cow_val_release(&g);
    cow_val_release(&p);
}

Test(pack, ints_at_every_width_boundary)
{
    static const int64_t ints[] = {
        0, 1, 127, 128, -1, -128, -129, 255, 256, 32767, 32768, -32768, -32769,
        8388607, 8388608, -8388608, -8388609,
        2147483647LL, 2147483648LL, -2147483648LL, -2147483649LL, INT64_MAX, INT64_MIN,
    };
    enum { N = sizeof ints / sizeof ints[0] };
    cow_val vals[N], l;
    for (size_t i = 0; i < N; i++)
        vals[i] = cow_val_int(ints[i]);
    l = list_of(COW_T_LIST, vals, N);
    expect_round_trip(&l);
    for (size_t i = 0; i < N; i++) {
        cow_val p = packed(&l), got;
        cr_assert_eq(cow_pack_index(&p, i, &got), COW_FOUND);
        cr_assert_eq(got.tag, COW_T_INT);
        cr_assert_eq(got.u.i, ints[i], "index %zu", i);
        cow_val_release(&p);
    }
    cow_val_release(&l);
}

Test(pack, scalars_of_every_kind)
{
    char s255[256], s256[257];
    cow_val vals[14], l, big = mk_bigint(0x1234, 12);
    static const uint8_t ext_bytes[20] = {0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    memset(s255, 'x', 255);
    s255[255] = 0;
    memset(s256, 'y', 256);
    s256[256] = 0;
    vals[0] = cow_val_none();
    vals[1] = cow_val_bool(0);
    vals[2] = cow_val_bool(1);
    vals[3] = cow_val_float(-0.0);
    vals[4] = cow_val_float(1e308);
    vals[5] = str_of("");
    vals[6] = str_of("fourteen bytes");          /* COW_INLINE_MAX: inline cow_val */
    vals[7] = str_of("fifteen bytes!!");         /* a blob, inline in the pack */
    vals[8] = str_of(s255);                      /* the longest inline */
    vals[9] = str_of(s256);                      /* held by word */
    cr_assert_eq(cow_val_bytes(&vals[10], "\0\1\2", 3), COW_OK);
    vals[11] = big;
    cr_assert_eq(cow_val_ext(&vals[12], ext_bytes, 5), COW_OK);    /* inline (SEXT) */
    cr_assert_eq(cow_val_ext(&vals[13], ext_bytes, 20), COW_OK);   /* a blob (EXT): by word */
    cr_assert_eq(vals[12].tag, COW_T_SEXT);
    cr_assert_eq(vals[13].tag, COW_T_EXT);
    l = list_of(COW_T_TUPLE, vals, 14);
    expect_round_trip(&l);
    cow_val_release(&l);
}

Test(pack, nested_dicts_lists_and_frozen_kinds)
{
    static const char *const rec_keys[] = {"id", "name", "tags", "inner"};
    static const char *const in_keys[] = {"a", "b"};
    cow_val tags[3] = {str_of("t0"), str_of("t1"), str_of("t2")};
    cow_val inner[2] = {cow_val_int(1), cow_val_none()};
    cow_val vals[4], rec, frozen;
    vals[0] = cow_val_int(7);
    vals[1] = str_of("seven");
    vals[2] = list_of(COW_T_FLIST, tags, 3);
    vals[3] = dict_of(in_keys, inner, 2);
    vals[3].tag = COW_T_FDICT;
    rec = dict_of(rec_keys, vals, 4);
    expect_round_trip(&rec);
    cow_val_copy(&frozen, &rec);
    frozen.tag = COW_T_FDICT;
    expect_round_trip(&frozen);
    cow_val_release(&frozen);
    cow_val_release(&rec);
}

/* P2: what keeps the general form. */
Test(pack, what_is_not_packed)
{
    cow_val v, out = cow_val_none(), items[COW_PACK_MAX_ITEMS + 1], one;
    cow_map *m = new_map();
    map_put(m, cow_val_int(1), cow_val_int(2));         /* a non-str key */
    v = cow_val_map(COW_T_DICT, m);
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND);
    v.tag = COW_T_SET;
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND, "sets are never packed");
    cow_val_release(&v);
    for (size_t i = 0; i <= COW_PACK_MAX_ITEMS; i++)
        items[i] = cow_val_int((int64_t)i);
    v = list_of(COW_T_LIST, items, COW_PACK_MAX_ITEMS + 1);
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND, "too many items");
    cow_val_release(&v);
    enum { LONG_STRS = COW_PACK_MAX_BYTES / 255 + 1 };   /* 255-byte strings past the limit */
    cr_assert_leq(LONG_STRS, COW_PACK_MAX_ITEMS);
    for (size_t i = 0; i < LONG_STRS; i++) {
        char s[256];
        memset(s, 'a' + (int)(i % 26), 255);
        s[255] = 0;
        items[i] = str_of(s);
    }
    v = list_of(COW_T_LIST, items, LONG_STRS);
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND, "too many bytes");
    cow_val_release(&v);
    one = cow_val_int(1);
    v = list_of(COW_T_LIST, &one, 1);
    for (int d = 0; d < COW_PACK_MAX_DEPTH + 1; d++)
        v = list_of(COW_T_LIST, &v, 1);
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND, "too deep");
    cow_val_release(&v);
    v = cow_val_int(3);
    cr_assert_eq(cow_pack_make(&v, &out), COW_NOT_FOUND, "not a container");
    cr_assert_eq(out.tag, COW_T_NONE, "out untouched");
}

/* The words of a pack node (the layout of pack.h). */
static const cow_word *
words_of(const cow_val *p)
{
    return (const cow_word *)((const cow_pack *)p->u.w + 1);
}

/* P4: records with one key tuple share one shape blob. */
Test(pack, records_share_their_shape)
{
    static const char *const keys[] = {"x", "y"};
    cow_val a[2] = {cow_val_int(1), cow_val_int(2)}, b[2] = {cow_val_int(3), cow_val_int(4)};
    cow_val da = dict_of(keys, a, 2), db = dict_of(keys, b, 2), pa = packed(&da), pb = packed(&db);
    cr_assert_eq(((const cow_pack *)pa.u.w)->size >> COW_PACK_NWORDS_SHIFT, 1);
    cr_assert_eq(words_of(&pa)[0], words_of(&pb)[0], "one shape");
    cr_assert_not(cow_val_equal(&pa, &pb));
    cow_val_release(&pa);
    cow_val_release(&pb);
    cow_val_release(&da);
    cow_val_release(&db);
}

/* A packed child is inlined (its bytes copied, its words renumbered). */
Test(pack, packed_children_are_inlined)
{
    static const char *const keys[] = {"k", "child"};
    static const char *const ckeys[] = {"long"};
    char s[300];
    cow_val cv[1], child, pchild, vals[2], parent, pp, g;
    memset(s, 'z', sizeof s - 1);
    s[sizeof s - 1] = 0;
    cv[0] = str_of(s);                             /* a word in the child */
    child = dict_of(ckeys, cv, 1);
    pchild = packed(&child);
    vals[0] = mk_bigint(99, 10);                   /* a word in the parent first */
    vals[1] = pchild;
    parent = dict_of(keys, vals, 2);
    pp = packed(&parent);
    cr_assert_eq(cow_pack_unpack(&pp, &g), COW_OK);
    {
        cow_val k = str_of("child"), g2;
        const cow_val *got, *got2;
        cr_assert_eq(tu_map_get(cow_val_getmap(&g), &k, tu_hash(&k), &got), COW_FOUND);
        cr_assert_eq(got->tag, COW_T_DICT, "nested containers come back general");
        cr_assert(cow_val_equal(got, &child));
        /* P5: a nested identity is derived, the same at every materialisation */
        cr_assert_eq(cow_pack_unpack(&pp, &g2), COW_OK);
        cr_assert_eq(tu_map_get(cow_val_getmap(&g2), &k, tu_hash(&k), &got2), COW_FOUND);
        cr_assert_eq(cow_val_getmap(got)->ident, cow_val_getmap(got2)->ident);
        cr_assert_neq(cow_val_getmap(got)->ident, cow_val_getmap(&g)->ident);
        cow_val_release(&g2);
        cow_val_release(&k);
    }
    cow_val_release(&g);
    cow_val_release(&pp);
    cow_val_release(&parent);
    cow_val_release(&child);
}

/* Reads in place: a key or index found, absent, or a nested container. */
Test(pack, reads_in_place)
{
    static const char *const keys[] = {"n", "s", "l"};
    cow_val inner[1] = {cow_val_int(5)};
    cow_val vals[3] = {cow_val_int(-300), str_of("hello"), list_of(COW_T_LIST, inner, 1)};
    cow_val d = dict_of(keys, vals, 3), p = packed(&d), got;
    size_t n;
    const char *data;
    size_t len;
    cr_assert_eq(cow_pack_count(&p, &n), COW_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(cow_pack_lookup(&p, "n", 1, &got), COW_FOUND);
    cr_assert_eq(got.u.i, -300);
    cr_assert_eq(cow_pack_lookup(&p, "s", 1, &got), COW_FOUND);
    cr_assert_eq(got.tag, COW_T_STR_VIEW);
    cow_val_span(&got, &data, &len);
    cr_assert(len == 5 && memcmp(data, "hello", 5) == 0);
    cr_assert_eq(cow_pack_lookup(&p, "nn", 2, &got), COW_NOT_FOUND);
    cr_assert_eq(cow_pack_index(&p, 0, &got), COW_ECORRUPT, "a dict has no index");
    cow_val_release(&p);
    cow_val_release(&d);
}

/* Field hints (pack.c) never change an answer: one probe key's bytes read
 * two shapes that hold it at different places, a shape whose key changed
 * under its hint, and random shape bytes under a hint (ASan sees any read
 * outside the blob). */
Test(pack, field_hints_never_change_an_answer)
{
    static const char *const ka[] = {"a", "bb", "ccc"}, *const kb[] = {"ccc", "a", "bb"};
    static const char probe[] = "ccc";
    cow_val va[3] = {cow_val_int(1), cow_val_int(2), cow_val_int(3)};
    cow_val vb[3] = {cow_val_int(30), cow_val_int(10), cow_val_int(20)};
    cow_val da = dict_of(ka, va, 3), db = dict_of(kb, vb, 3), pa = packed(&da), pb = packed(&db);
    cow_val got;
    cow_blob *shape = (cow_blob *)words_of(&pa)[0];
    uint8_t *bytes = (uint8_t *)cow_blob_data(shape);
    uint32_t rng = 777;
    for (int round = 0; round < 4; round++) {
        cr_assert_eq(cow_pack_lookup(&pa, probe, 3, &got), COW_FOUND);
        cr_assert_eq(got.u.i, 3);
        cr_assert_eq(cow_pack_lookup(&pb, probe, 3, &got), COW_FOUND);
        cr_assert_eq(got.u.i, 30);
        cr_assert_eq(cow_pack_lookup(&pa, "bb", 2, &got), COW_FOUND);
        cr_assert_eq(got.u.i, 2);
    }
    cr_assert_eq(bytes[0], 3);
    memcpy(bytes + 1 + 2 + 3 + 1, "ddd", 3);          /* a's third key is now "ddd" */
    cr_assert_eq(cow_pack_lookup(&pa, probe, 3, &got), COW_NOT_FOUND, "the hint is checked");
    cr_assert_eq(cow_pack_lookup(&pa, "ddd", 3, &got), COW_FOUND);
    cr_assert_eq(got.u.i, 3);
    for (int round = 0; round < 20000; round++) {
        int outer = cow_ref_scope_enter();
        for (size_t i = 0; i < cow_blob_len(shape); i++) {
            rng = rng * 1103515245u + 12345u;
            bytes[i] = (uint8_t)(rng >> 16) % 8;        /* small counts and lengths */
        }
        cow_pack_lookup(&pa, probe, 3, &got);
        cow_pack_lookup(&pa, "ddd", 3, &got);
        cow_ref_scope_leave(outer);
    }
    cow_val_release(&pa);
    cow_val_release(&pb);
    cow_val_release(&da);
    cow_val_release(&db);
}

/* A hint names a key by its offset and its position: a shape of other keys
 * at the hint's address (a freed blob's, a store page written again) can
 * hold the probe key at that offset as another position.  Here a's first
 * two keys "a", "bb" become one key "a\2bb": "ccc" keeps its offset but is
 * now the second key, and the hint its lookup left must not say third. */
Test(pack, a_hint_at_the_same_offset_in_another_position_is_not_taken)
{
    static const char *const ka[] = {"a", "bb", "ccc", "d"};
    cow_val va[4] = {cow_val_int(1), cow_val_int(2), cow_val_int(3), cow_val_int(4)};
    cow_val da = dict_of(ka, va, 4), pa = packed(&da), got;
    uint8_t *bytes = (uint8_t *)cow_blob_data((cow_blob *)words_of(&pa)[0]);
    cr_assert_eq(cow_pack_lookup(&pa, "ccc", 3, &got), COW_FOUND);
    cr_assert_eq(got.u.i, 3);
    cr_assert(bytes[0] == 4 && bytes[1] == 1);
    bytes[0] = 3;                                   /* keys "a\2bb", "ccc", "d" */
    bytes[1] = 4;
    cr_assert_eq(cow_pack_lookup(&pa, "ccc", 3, &got), COW_FOUND);
    cr_assert_eq(got.u.i, 2, "the second key's value, not the third's (%lld)", (long long)got.u.i);
    cr_assert_eq(cow_pack_lookup(&pa, "d", 1, &got), COW_FOUND);
    cr_assert_eq(got.u.i, 3);
    bytes[0] = 4;                                   /* as packed, for the release */
    bytes[1] = 1;
    cow_val_release(&pa);
    cow_val_release(&da);
}

/* A caller's memo (cow_pack_lookup_memo) answers as cow_pack_lookup does
 * over records of shapes that hold its key at other positions, read in
 * turn; it names the last heap shape its key was found in. */
Test(pack, a_memo_answers_as_the_lookup_does)
{
    static const char *const ka[] = {"a", "bb", "ccc"}, *const kb[] = {"ccc", "a", "bb"};
    cow_val va[3] = {cow_val_int(1), cow_val_int(2), cow_val_int(3)};
    cow_val vb[3] = {cow_val_int(30), cow_val_int(10), cow_val_int(20)};
    cow_val da = dict_of(ka, va, 3), db = dict_of(kb, vb, 3), pa = packed(&da), pb = packed(&db);
    cow_pack_memo memo = {0}, other = {0};
    cow_val got, want;
    for (int round = 0; round < 6; round++) {
        const cow_val *p = round % 3 == 2 ? &pb : &pa;
        cr_assert_eq(cow_pack_lookup_memo(p, "ccc", 3, &memo, &got), COW_FOUND);
        cr_assert_eq(cow_pack_lookup(p, "ccc", 3, &want), COW_FOUND);
        cr_assert_eq(got.u.i, want.u.i, "round %d: %lld, not %lld", round,
                     (long long)got.u.i, (long long)want.u.i);
        cr_assert_eq(memo.shape, words_of(p)[0], "the memo names the shape read last");
        cr_assert_eq(cow_pack_lookup_memo(p, "zz", 2, &other, &got), COW_NOT_FOUND);
        cr_assert_eq(other.shape, 0, "an absent key is not memoised");
    }
    cow_pack_memo_clear(&memo);
    cr_assert_eq(memo.shape, 0);
    cow_val_release(&pa);
    cow_val_release(&pb);
    cow_val_release(&da);
    cow_val_release(&db);
}

/* A memo holds its shape: with every record and the intern cache gone, the
 * blob lives on (its address can name no other bytes) until the memo is
 * cleared; the suite's leak check sees it freed then. */
Test(pack, a_memo_holds_its_shape)
{
    static const char *const ka[] = {"x", "y"};
    cow_val va[2] = {cow_val_int(7), cow_val_int(8)};
    cow_val da = dict_of(ka, va, 2), pa = packed(&da), got;
    cow_pack_memo memo = {0};
    cr_assert_eq(cow_pack_lookup_memo(&pa, "y", 1, &memo, &got), COW_FOUND);
    cr_assert_eq(got.u.i, 8);
    cr_assert_eq(memo.pos, 1);
    cow_val_release(&pa);
    cow_val_release(&da);
    cow_pack_forget_shapes();
    cr_assert_eq(((cow_blob *)memo.shape)->refcnt, 1, "the memo's reference alone");
    cow_pack_memo_clear(&memo);
}

/* P8: a nested container read in place names the parent's node at its
 * body, with the identity its parent's materialisation gives it. */
Test(pack, a_nested_container_is_read_in_place)
{
    static const char *const keys[] = {"n", "l"};
    cow_val inner[2] = {cow_val_int(5), str_of("x")};
    cow_val vals[2] = {cow_val_int(1), list_of(COW_T_LIST, inner, 2)};
    cow_val d = dict_of(keys, vals, 2), p = packed(&d), got, g, whole, five;
    cr_assert_eq(cow_pack_lookup(&p, "l", 1, &got), COW_FOUND);
    cr_assert_eq(got.tag, COW_T_PACKED);
    cr_assert_eq(got.slen, COW_T_LIST);
    cr_assert_eq(cow_ref_export(&got.u.w), cow_ref_export(&p.u.w), "the parent's node");
    cr_assert_neq(cow_pack_offset(&got), 0);
    cr_assert_eq(cow_pack_index(&got, 0, &five), COW_FOUND);
    cr_assert_eq(five.u.i, 5);
    cr_assert_eq(cow_pack_unpack(&got, &g), COW_OK);
    cr_assert_eq(cow_pack_unpack(&p, &whole), COW_OK);
    const cow_val *l = NULL;
    uint64_t h;
    cow_val k = str_of("l");
    cow_val_hash(&k, &h);
    cr_assert_eq(tu_map_get(cow_val_getmap(&whole), &k, h, &l), COW_FOUND);
    cr_assert(cow_val_equal(&g, l) && cow_val_equal(&got, l));
    cr_assert_eq(cow_val_getvec(&g)->ident, cow_val_getvec(l)->ident, "P5 identity");
    cr_assert_eq(got.aux, cow_val_getvec(l)->ident);
    cow_val_release(&k);
    cow_val_release(&g);
    cow_val_release(&whole);
    cow_val_release(&p);
    cow_val_release(&d);
}

/* A cursor reads every entry in order, keys from the shape, and stops. */
Test(pack, a_cursor_reads_every_entry_in_order)
{
    static const char *const keys[] = {"a", "bb", "c"};
    cow_val inner[1] = {cow_val_int(9)};
    cow_val vals[3] = {cow_val_int(-2), str_of("two"), list_of(COW_T_LIST, inner, 1)};
    cow_val d = dict_of(keys, vals, 3), p = packed(&d), got;
    cow_pack_cursor c;
    const uint8_t *shape;
    const char *k;
    size_t klen;
    cr_assert_eq(cow_pack_cursor_init(&c, &p), COW_OK);
    cr_assert_eq(c.count, 3);
    cr_assert_eq(cow_pack_cursor_shape(&c, &shape), 1 + 2 + 3 + 2);
    cr_assert_eq(shape[0], 3);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(cow_pack_cursor_next(&c, &k, &klen, &got), COW_FOUND);
        cr_assert(klen == strlen(keys[i]) && memcmp(k, keys[i], klen) == 0);
        if (i == 0)
            cr_assert_eq(got.u.i, -2);
        if (i == 2)
            cr_assert(got.tag == COW_T_PACKED && got.slen == COW_T_LIST);
    }
    cr_assert_eq(cow_pack_cursor_next(&c, &k, &klen, &got), COW_NOT_FOUND);
    cow_val_release(&p);
    cow_val_release(&d);
}

/* Hashing goes through the general form: a frozen pack hashes as it. */
Test(pack, hash_and_order_match_the_general_form)
{
    static const char *const keys[] = {"a", "b"};
    cow_val vals[2] = {cow_val_int(1), str_of("two")};
    cow_val d = dict_of(keys, vals, 2), p, hd, hp;
    uint64_t h1, h2;
    d.tag = COW_T_FDICT;
    p = packed(&d);
    cr_assert_eq(cow_val_hash(&d, &h1), COW_OK);
    cr_assert_eq(cow_val_hash(&p, &h2), COW_OK);
    cr_assert_eq(h1, h2);
    cr_assert_eq(cow_val_order(&d, &p), 0);
    hd = d;
    hd.tag = COW_T_DICT;
    hp = p;
    hp.slen = COW_T_DICT;
    cr_assert_eq(cow_val_hash(&hp, &h2), COW_ETYPE, "a packed dict is unhashable");
    (void)hd;
    cow_val_release(&p);
    cow_val_release(&d);
}

/* A visitor that counts what it is shown. */
typedef struct counts { int begins, keys, scalars, ends; } counts;
static int cb_begin(void *c, int tag, size_t n) { ((counts *)c)->begins++; return 0; }
static int cb_key(void *c, const char *k, size_t len) { ((counts *)c)->keys++; return 0; }
static int cb_scalar(void *c, const cow_val *v) { ((counts *)c)->scalars++; return 0; }
static int cb_end(void *c, int tag) { ((counts *)c)->ends++; return 0; }
static const cow_pack_visitor counting = {cb_begin, cb_key, cb_scalar, cb_end};

Test(pack, a_visit_shows_every_entry_in_order)
{
    static const char *const keys[] = {"n", "l", "s"};
    cow_val inner[2] = {cow_val_int(5), str_of("in")};
    cow_val vals[3] = {cow_val_int(1), list_of(COW_T_LIST, inner, 2), str_of("x")};
    cow_val d = dict_of(keys, vals, 3), p = packed(&d);
    counts c = {0};
    cr_assert_eq(cow_pack_visit(&p, &counting, &c), COW_OK);
    cr_assert(c.begins == 2 && c.ends == 2 && c.keys == 3 && c.scalars == 4,
              "%d %d %d %d", c.begins, c.keys, c.scalars, c.ends);
    cow_val_release(&p);
    cow_val_release(&d);
}

/* P3: random item bytes behind a valid header decode to a value or
 * COW_ECORRUPT -- never a read outside the node (ASan) or a crash. */
/* Reads every entry of v by a cursor, and materialises nested ones: on
 * hostile bytes only errors may come back (run under ASan). */
static void
walk_cursor(const cow_val *v)
{
    cow_pack_cursor c;
    const char *k;
    size_t klen;
    cow_val got, g;
    if (cow_pack_cursor_init(&c, v) != COW_OK)
        return;
    while (cow_pack_cursor_next(&c, &k, &klen, &got) == COW_FOUND)
        if (got.tag == COW_T_PACKED && cow_pack_unpack(&got, &g) == COW_OK)
            cow_val_release(&g);
}

/* Reads a lookup's or an index's result every way when it is a nested
 * container: its body was not walked by the lookup (pack.c
 * get_nested_view), so each of these readers meets the hostile bytes on
 * its own checks. */
static void
read_found(int rc, const cow_val *got)
{
    cow_val g;
    size_t n;
    counts c = {0};
    if (rc != COW_FOUND || got->tag != COW_T_PACKED)
        return;
    if (cow_pack_unpack(got, &g) == COW_OK)
        cow_val_release(&g);
    cow_pack_count(got, &n);
    walk_cursor(got);
    if (cow_pack_visit(got, &counting, &c) == COW_OK)
        cr_assert_eq(c.begins, c.ends);
    cow_pack_lookup(got, "b", 1, &g);
    cow_pack_index(got, 0, &g);
}

Test(pack, hostile_items_fail_cleanly)
{
    static const char *const keys[] = {"a", "b", "c"};
    cow_val vals[3] = {cow_val_int(1), str_of("x"), cow_val_none()};
    cow_val d = dict_of(keys, vals, 3), p = packed(&d);
    cow_pack *node = (cow_pack *)p.u.w;
    unsigned nwords = node->size >> COW_PACK_NWORDS_SHIFT;
    uint8_t *items = (uint8_t *)((cow_word *)(node + 1) + nwords);
    size_t nbytes = node->size & COW_PACK_NBYTES_MASK;
    uint32_t rng = 12345;
    for (int round = 0; round < 20000; round++) {
        cow_val got, as_list = p;
        size_t n;
        int outer = cow_ref_scope_enter();
        for (size_t i = 1; i < nbytes; i++) {      /* byte 0: the shape's word index */
            rng = rng * 1103515245u + 12345u;
            items[i] = (uint8_t)(rng >> 16);
        }
        rng = rng * 1103515245u + 12345u;
        items[0] = (uint8_t)((rng >> 16) % 3);     /* in range or not */
        if (cow_pack_unpack(&p, &got) == COW_OK)
            cow_val_release(&got);
        read_found(cow_pack_lookup(&p, "b", 1, &got), &got);
        cow_pack_count(&p, &n);
        walk_cursor(&p);
        {
            counts c = {0};
            if (cow_pack_visit(&p, &counting, &c) == COW_OK)
                cr_assert_eq(c.begins, c.ends);
        }
        as_list.slen = COW_T_LIST;
        if (cow_pack_unpack(&as_list, &got) == COW_OK)
            cow_val_release(&got);
        read_found(cow_pack_index(&as_list, 2, &got), &got);
        walk_cursor(&as_list);
        cow_ref_scope_leave(outer);
    }
    cow_val_release(&p);
    cow_val_release(&d);
}

/* P3 for the skip of a lookup's earlier fields and the in-line decode of
 * fixed-size items: with the node's item bytes cut at every length, a read
 * of a field finds its value exactly when the cut leaves the whole item
 * (and every item before it), and fails with COW_ECORRUPT otherwise: no
 * byte past the cut is taken. */
Test(pack, fixed_size_items_cut_at_every_length)
{
    static const char *const keys[] = {"n", "f", "t", "i8", "i16", "i24", "i32", "i64", "s", "w"};
    /* Each item's bytes, its code included: after the body's shape byte. */
    static const uint32_t sizes[] = {1, 1, 1, 2, 3, 4, 5, 9, 15, 9};
    enum { N = sizeof keys / sizeof keys[0] };
    uint32_t ends[N], end = 1;
    for (size_t i = 0; i < N; i++)
        ends[i] = end += sizes[i];
    cow_val vals[N] = {cow_val_none(), cow_val_bool(0), cow_val_bool(1), cow_val_int(-100),
                       cow_val_int(30000), cow_val_int(-8000000), cow_val_int(2000000000),
                       cow_val_int(INT64_MIN), str_of("fourteen bytes"), cow_val_float(2.5)};
    cow_val want[N];
    for (size_t i = 0; i < N; i++)
        cow_val_copy(&want[i], &vals[i]);
    cow_val d = dict_of(keys, vals, N), p = packed(&d);
    cow_pack *node = (cow_pack *)p.u.w;
    uint32_t full = node->size & COW_PACK_NBYTES_MASK, words = node->size & ~COW_PACK_NBYTES_MASK;
    cr_assert_eq(full, ends[N - 1], "the body is the shape byte and the items");
    for (uint32_t cut = 0; cut <= full; cut++) {
        node->size = words | cut;
        for (size_t i = 0; i < N; i++) {
            cow_val got;
            int outer = cow_ref_scope_enter(), rc = cow_pack_lookup(&p, keys[i], strlen(keys[i]), &got);
            cow_ref_scope_leave(outer);
            if (cut >= ends[i]) {
                cr_assert_eq(rc, COW_FOUND, "field %s cut at %u", keys[i], cut);
                cr_assert(cow_val_equal(&got, &want[i]), "field %s cut at %u", keys[i], cut);
            }
            else
                cr_assert_eq(rc, COW_ECORRUPT, "field %s cut at %u", keys[i], cut);
        }
    }
    node->size = words | full;
    for (size_t i = 0; i < N; i++)
        cow_val_release(&want[i]);
    cow_val_release(&p);
    cow_val_release(&d);
}

Test(pack, allocation_failures_leak_nothing)
{
    static const char *const keys[] = {"a", "b"};
    tu_alloc_install();
    for (long budget = 0; budget < 40; budget++) {
        cow_val tags[2] = {str_of("fifteen bytes!!"), cow_val_int(2)};
        cow_val vals[2] = {cow_val_int(1), list_of(COW_T_LIST, tags, 2)};
        cow_val d = dict_of(keys, vals, 2), p, g;
        int rc;
        tu_fail_after(budget);
        rc = cow_pack_make(&d, &p);
        if (rc == COW_FOUND) {
            if (cow_pack_unpack(&p, &g) == COW_OK)
                cow_val_release(&g);
            cow_val_release(&p);
        }
        else
            cr_assert_eq(rc, COW_ENOMEM);
        tu_fail_after(-1);
        cow_val_release(&d);
        cow_pack_forget_shapes();
        cr_assert_eq(tu_alloc.blocks, 0, "budget %ld: %ld blocks leaked", budget, tu_alloc.blocks);
    }
}

/* The bytes of pack value p's node: its words, then its items. */
static void
node_bytes(const cow_val *p, const uint8_t **bytes, size_t *len)
{
    const cow_pack *pk = (const cow_pack *)p->u.w;
    *bytes = (const uint8_t *)(pk + 1);
    *len = (pk->size >> COW_PACK_NWORDS_SHIFT) * sizeof(cow_word) + (pk->size & COW_PACK_NBYTES_MASK);
}

/* A record's entries: one value of each kind a pack holds inline or by word,
 * and a packed child. */
#define ENTRIES 6
static void
record_entries(cow_val keys[ENTRIES], cow_val vals[ENTRIES])
{
    static const char *const names[ENTRIES] = {"id", "name", "tags", "bio", "score", "none"};
    char bio[300];
    cow_val tags[2] = {cow_val_int(1), str_of("t")}, list = list_of(COW_T_LIST, tags, 2);
    memset(bio, 'b', sizeof bio);
    for (int i = 0; i < ENTRIES; i++)
        keys[i] = str_of(names[i]);
    vals[0] = cow_val_int(70000);
    vals[1] = str_of("x");
    vals[2] = packed(&list);
    cr_assert_eq(cow_val_str(&vals[3], bio, sizeof bio), COW_OK);   /* a word: past 255 */
    vals[4] = cow_val_float(1.5);
    vals[5] = cow_val_none();
    cow_val_release(&list);
}

/* cow_pack_make_dict (a record packed as it is converted) writes the bytes
 * cow_pack_make writes for the general map of the same entries. */
Test(pack, a_dict_packed_from_its_entries_is_its_map_packed)
{
    cow_val keys[ENTRIES], vals[ENTRIES], direct, via_map, g;
    cow_map *m = new_map();
    const uint8_t *a, *b;
    size_t alen, blen;
    record_entries(keys, vals);
    cr_assert_eq(cow_pack_make_dict(keys, vals, ENTRIES, &direct), COW_FOUND);
    for (int i = 0; i < ENTRIES; i++) {
        cow_val k, v;
        cow_val_copy(&k, &keys[i]);
        cow_val_copy(&v, &vals[i]);
        map_put(m, k, v);
    }
    cow_val d = cow_val_map(COW_T_DICT, m);
    cr_assert_eq(cow_pack_make(&d, &via_map), COW_FOUND);
    node_bytes(&direct, &a, &alen);
    node_bytes(&via_map, &b, &blen);
    cr_assert(alen == blen && memcmp(a, b, alen) == 0, "the same node bytes");
    cr_assert_eq(direct.slen, COW_T_DICT);
    cr_assert_neq(direct.aux, via_map.aux, "a new identity");
    cr_assert_eq(cow_pack_unpack(&direct, &g), COW_OK);
    cr_assert(cow_val_equal(&g, &d));
    cow_val_release(&g);
    cow_val_release(&direct);
    cow_val_release(&via_map);
    cow_val_release(&d);
    cow_vals_release(keys, ENTRIES);
    cow_vals_release(vals, ENTRIES);
}

/* A map whose length claims fewer entries than its log holds live (as
 * hostile pages could say) is left general: its keys, 40 of 255 bytes,
 * would overrun the shape's buffer of 32. */
Test(pack, a_map_longer_than_its_length_claims_is_not_packed)
{
    char key[COW_PACK_INLINE_MAX + 1];
    cow_map *m = new_map();
    cow_val d, out;
    for (int i = 0; i < 40; i++) {
        cow_val k;
        memset(key, 'a' + i % 26, COW_PACK_INLINE_MAX);
        snprintf(key, sizeof key, "%02d", i);
        key[2] = 'x';
        cr_assert_eq(cow_val_str(&k, key, COW_PACK_INLINE_MAX), COW_OK);
        map_put(m, k, cow_val_int(i));
    }
    m->live = 5;                        /* the lie */
    d = cow_val_map(COW_T_DICT, m);
    cr_assert_eq(cow_pack_make(&d, &out), COW_NOT_FOUND);
    m->live = 40;
    cow_val_release(&d);
}

/* What cow_pack_make_dict refuses (P2), the entries left as they were. */
Test(pack, a_dict_of_entries_that_do_not_pack)
{
    cow_val keys[COW_PACK_MAX_ITEMS + 1], vals[COW_PACK_MAX_ITEMS + 1], out;
    char name[16];
    for (int i = 0; i <= COW_PACK_MAX_ITEMS; i++) {
        snprintf(name, sizeof name, "k%d", i);
        keys[i] = str_of(name);
        vals[i] = cow_val_int(i);
    }
    cr_assert_eq(cow_pack_make_dict(keys, vals, COW_PACK_MAX_ITEMS + 1, &out), COW_NOT_FOUND,
                 "more entries than a pack holds");
    cow_val_release(&keys[3]);
    keys[3] = cow_val_int(3);
    cr_assert_eq(cow_pack_make_dict(keys, vals, 4, &out), COW_NOT_FOUND, "a key that is no str");
    cr_assert_eq(cow_pack_make_dict(keys, vals, 3, &out), COW_FOUND, "the entries before it");
    cow_val_release(&out);
    cow_vals_release(keys, COW_PACK_MAX_ITEMS + 1);
    cow_vals_release(vals, COW_PACK_MAX_ITEMS + 1);
}

Test(pack, entries_packed_under_allocation_failures_leak_nothing)
{
    tu_alloc_install();
    for (long budget = 0; budget < 40; budget++) {
        cow_val keys[ENTRIES], vals[ENTRIES], p;
        int rc;
        record_entries(keys, vals);
        tu_fail_after(budget);
        rc = cow_pack_make_dict(keys, vals, ENTRIES, &p);
        if (rc == COW_FOUND)
            cow_val_release(&p);
        else
            cr_assert_eq(rc, COW_ENOMEM);
        rc = cow_pack_make_seq(COW_T_TUPLE, vals, ENTRIES, &p);
        tu_fail_after(-1);
        if (rc == COW_FOUND)
            cow_val_release(&p);
        else
            cr_assert_eq(rc, COW_ENOMEM);
        cow_vals_release(keys, ENTRIES);
        cow_vals_release(vals, ENTRIES);
        cow_pack_forget_shapes();
        cr_assert_eq(tu_alloc.blocks, 0, "budget %ld: %ld blocks leaked", budget, tu_alloc.blocks);
    }
}

/* cow_pack_make_seq (a short list or tuple packed as it is converted)
 * writes the bytes cow_pack_make writes for the vector of the same items,
 * and refuses what cow_pack_make refuses. */
Test(pack, a_sequence_packed_from_its_items_is_its_vector_packed)
{
    static const cow_tag tags[] = {COW_T_LIST, COW_T_FLIST, COW_T_TUPLE};
    cow_val keys[ENTRIES], items[ENTRIES], direct, via_vec, many[COW_PACK_MAX_ITEMS + 1];
    const uint8_t *a, *b;
    size_t alen, blen;
    record_entries(keys, items);
    for (size_t t = 0; t < sizeof tags / sizeof *tags; t++) {
        cow_val copies[ENTRIES];
        for (int i = 0; i < ENTRIES; i++)
            cow_val_copy(&copies[i], &items[i]);
        cow_val v = list_of(tags[t], copies, ENTRIES);
        cr_assert_eq(cow_pack_make_seq(tags[t], items, ENTRIES, &direct), COW_FOUND);
        cr_assert_eq(cow_pack_make(&v, &via_vec), COW_FOUND);
        node_bytes(&direct, &a, &alen);
        node_bytes(&via_vec, &b, &blen);
        cr_assert(alen == blen && memcmp(a, b, alen) == 0, "tag %d: the same node bytes", tags[t]);
        cr_assert(direct.slen == tags[t] && cow_val_equal(&direct, &v));
        cow_val_release(&direct);
        cow_val_release(&via_vec);
        cow_val_release(&v);
    }
    cr_assert_eq(cow_pack_make_seq(COW_T_DICT, items, ENTRIES, &direct), COW_NOT_FOUND);
    for (int i = 0; i <= COW_PACK_MAX_ITEMS; i++)
        many[i] = cow_val_int(i);
    cr_assert_eq(cow_pack_make_seq(COW_T_LIST, many, COW_PACK_MAX_ITEMS + 1, &direct), COW_NOT_FOUND);
    cr_assert_eq(cow_pack_make_seq(COW_T_LIST, many, 0, &direct), COW_FOUND, "an empty list packs");
    cow_val_release(&direct);
    cow_vals_release(keys, ENTRIES);
    cow_vals_release(items, ENTRIES);
}

/* ---- batches (P6) ----------------------------------------------------------- */

/* Record i: {"id": i, "name": "n<i>...", "tags": [i, "t"]}, with a name of
 * name_len bytes (past 255 it is a word of the pack). */
static cow_val
record(int64_t i, size_t name_len)
{
    static const char *const keys[] = {"id", "name", "tags"};
    char name[600];
    cow_val tags[2] = {cow_val_int(i), str_of("t")}, vals[3];
    cr_assert_lt(name_len, sizeof name);
    memset(name, 'a' + (int)(i % 26), name_len);
    name[name_len] = 0;
    vals[0] = cow_val_int(i);
    vals[1] = str_of(name);
    vals[2] = list_of(COW_T_LIST, tags, 2);
    return dict_of(keys, vals, 3);
}

/* n records, each packed on its own, and their general forms in gen. */
static void
packed_records(cow_val *vals, cow_val *gen, size_t n, size_t name_len)
{
    for (size_t i = 0; i < n; i++) {
        gen[i] = record((int64_t)i, name_len);
        vals[i] = packed(&gen[i]);
    }
}

/* Members of one batch name one node at distinct offsets past its count and
 * code bytes; each reads, unpacks (same identity), visits and compares as
 * the pack it was, and only its own body; the node lives while a member
 * does.  More than 32 start a second batch. */
Test(pack, records_of_a_leaf_share_one_batch)
{
    enum { N = 40 };
    cow_val vals[N], gen[N], got;
    uint32_t idents[N];
    long live_before;
    packed_records(vals, gen, N, 6);
    for (size_t i = 0; i < N; i++)
        idents[i] = vals[i].aux;
    live_before = cow_pack_live_nodes();
    cr_assert_eq(cow_pack_batch(vals, N, 1), COW_OK);
    cr_assert_eq(cow_pack_live_nodes(), 2, "%ld nodes for two batches (had %ld)",
                 cow_pack_live_nodes(), live_before);
    for (size_t i = 0; i < N; i++) {
        size_t n;
        cr_assert_eq(vals[i].tag, COW_T_PACKED);
        cr_assert_eq(vals[i].aux, idents[i], "a member keeps its identity");
        cr_assert_eq(vals[i].u.w, vals[i < 32 ? 0 : 32].u.w, "member %zu in another node", i);
        cr_assert_geq(cow_pack_offset(&vals[i]), 2, "P6: past the count and code bytes");
        if (i % 32)
            cr_assert_gt(cow_pack_offset(&vals[i]), cow_pack_offset(&vals[i - 1]));
        cr_assert(cow_val_equal(&vals[i], &gen[i]), "member %zu differs from its record", i);
        cr_assert_eq(cow_pack_count(&vals[i], &n), COW_OK);
        cr_assert_eq(n, 3);
        cr_assert_eq(cow_pack_lookup(&vals[i], "id", 2, &got), COW_FOUND);
        cr_assert_eq(got.u.i, (int64_t)i);
        cr_assert_eq(cow_pack_unpack(&vals[i], &got), COW_OK);
        cr_assert_eq(cow_val_getmap(&got)->ident, idents[i]);
        cr_assert(cow_val_equal(&got, &gen[i]));
        cow_val_release(&got);
        {
            counts c = {0};
            cr_assert_eq(cow_pack_visit(&vals[i], &counting, &c), COW_OK);
            cr_assert_eq(c.keys, 3, "a visit reads its own body only");
            cr_assert_eq(c.begins, 2);
        }
        if (i > 0 && i != 32)
            cr_assert(!cow_val_equal(&vals[i], &vals[i - 1]), "two members compare equal");
    }
    cow_vals_release(vals, 31);
    cr_assert_eq(cow_pack_live_nodes(), 2, "a member left keeps its batch");
    cr_assert(cow_val_equal(&vals[31], &gen[31]));
    cow_vals_release(vals + 31, N - 31);
    cow_vals_release(gen, N);
    cr_assert_eq(cow_pack_live_nodes(), 0);
}

/* What is not batched: general values, packs something else also holds (a
 * copy would cost their sharing), members of a batch, a single pack; a
 * batch closes where the node would pass its limits (here: words, one long
 * name each), and a stride skips the keys of a map's log. */
Test(pack, what_is_not_batched)
{
    enum { N = 40 };
    cow_val vals[N], gen[N], shared, kv[6];
    cow_word was;
    packed_records(vals, gen, N, 300);
    cr_assert_eq(cow_pack_batch(vals, N, 1), COW_OK);
    for (size_t i = 0; i < N; i++)
        cr_assert(cow_val_equal(&vals[i], &gen[i]));
    cr_assert_neq(vals[0].u.w, vals[N - 1].u.w, "32 words per node: not one batch");
    cr_assert_eq(vals[0].u.w, vals[1].u.w, "long names still share a node");
    cow_vals_release(vals, N);
    cow_vals_release(gen, N);

    packed_records(vals, gen, 3, 6);
    cow_val_copy(&shared, &vals[1]);
    was = vals[1].u.w;
    kv[0] = gen[0];                     /* a general dict */
    kv[1] = vals[0];
    kv[2] = cow_val_int(7);             /* a map's key, skipped by the stride */
    kv[3] = vals[1];                    /* shared */
    kv[4] = cow_val_int(8);
    kv[5] = vals[2];
    cr_assert_eq(cow_pack_batch(kv + 1, 3, 2), COW_OK);
    cr_assert(kv[3].u.w == was && cow_pack_offset(&kv[3]) == 0, "a shared pack was batched");
    cr_assert_neq(cow_pack_offset(&kv[1]), 0, "the lone packs around it were not");
    cr_assert_eq(kv[1].u.w, kv[5].u.w);
    cr_assert_eq(kv[2].tag, COW_T_INT);
    cow_val_release(&shared);
    was = kv[1].u.w;
    cr_assert_eq(cow_pack_batch(kv + 1, 3, 2), COW_OK);
    cr_assert(kv[1].u.w == was && kv[5].u.w == was, "members were batched again");
    cr_assert_eq(cow_pack_offset(&kv[3]), 0, "a single lone pack was batched");
    cr_assert(cow_val_equal(&kv[1], &gen[0]) && cow_val_equal(&kv[3], &gen[1])
              && cow_val_equal(&kv[5], &gen[2]));
    cr_assert_eq(cow_pack_batch(kv, 1, 1), COW_OK);
    cr_assert_eq(kv[0].tag, COW_T_DICT, "a general value was touched");
    cow_vals_release(kv, 6);
    cow_vals_release(gen + 1, 2);
}

/* P3 for offsets: every offset of a batch node, and past it, read as any
 * container kind: OK or COW_ECORRUPT, never a read outside the node (ASan
 * builds check). */
Test(pack, hostile_offsets_fail_cleanly)
{
    enum { N = 8 };
    static const cow_tag tags[] = {COW_T_DICT, COW_T_LIST, COW_T_TUPLE};
    cow_val vals[N], gen[N];
    size_t nbytes;
    packed_records(vals, gen, N, 6);
    cr_assert_eq(cow_pack_batch(vals, N, 1), COW_OK);
    nbytes = ((cow_pack *)vals[0].u.w)->size & COW_PACK_NBYTES_MASK;
    for (size_t off = 0; off < nbytes + 8; off++) {
        for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
            cow_val v = vals[0], got;
            size_t n;
            int outer = cow_ref_scope_enter();
            v.slen = tags[t];
            cow_pack_set_offset(&v, off);
            if (cow_pack_unpack(&v, &got) == COW_OK)
                cow_val_release(&got);
            cow_pack_count(&v, &n);
            read_found(cow_pack_lookup(&v, "name", 4, &got), &got);
            read_found(cow_pack_lookup(&v, "tags", 4, &got), &got);
            read_found(cow_pack_index(&v, 1, &got), &got);
            walk_cursor(&v);
            {
                counts c = {0};
                cow_pack_visit(&v, &counting, &c);
            }
            cow_ref_scope_leave(outer);
        }
    }
    cow_vals_release(vals, N);
    cow_vals_release(gen, N);
}

/* A batch that cannot be made (no memory) leaves every value as it was, or
 * batched; nothing leaks at any allocation. */
Test(pack, batch_allocation_failures_leak_nothing)
{
    enum { N = 5 };
    tu_alloc_install();
    for (long budget = 0; budget < 8; budget++) {
        cow_val vals[N], gen[N];
        int rc;
        packed_records(vals, gen, N, 6);
        tu_fail_after(budget);
        rc = cow_pack_batch(vals, N, 1);
        tu_fail_after(-1);
        cr_assert(rc == COW_OK || rc == COW_ENOMEM, "budget %ld: %d", budget, rc);
        for (size_t i = 0; i < N; i++)
            cr_assert(cow_val_equal(&vals[i], &gen[i]), "budget %ld: value %zu changed", budget, i);
        cow_vals_release(vals, N);
        cow_vals_release(gen, N);
        cow_pack_forget_shapes();
        cr_assert_eq(tu_alloc.blocks, 0, "budget %ld: %ld blocks leaked", budget, tu_alloc.blocks);
    }
}

/* P7: a str the members of a batch repeat is written once, by word, to an
 * interned blob; it reads back as the str it is -- a view in place, and in
 * canonical form when unpacked (V1: inline up to 14 bytes, a blob past). */
Test(pack, repeated_strs_of_a_batch_are_words)
{
    enum { N = 24 };
    static const char *const keys[] = {"status", "note", "id"};
    static const char *const statuses[] = {"pending", "archived"};
    const char *note = "a note longer than fourteen bytes";
    cow_val vals[N], gen[N], got;
    unsigned nwords;
    for (size_t i = 0; i < N; i++) {
        cow_val fields[3] = {str_of(statuses[i % 2]), str_of(note), cow_val_int((int64_t)i)};
        gen[i] = dict_of(keys, fields, 3);
        vals[i] = packed(&gen[i]);
    }
    cr_assert_eq(cow_pack_batch(vals, N, 1), COW_OK);
    cr_assert_eq(vals[0].u.w, vals[N - 1].u.w, "one batch expected");
    nwords = ((cow_pack *)vals[0].u.w)->size >> COW_PACK_NWORDS_SHIFT;
    cr_assert_eq(nwords, 4, "shape + 3 repeated strs: %u words", nwords);
    for (size_t i = 0; i < N; i++) {
        cr_assert(cow_val_equal(&vals[i], &gen[i]), "member %zu", i);
        cr_assert_eq(cow_pack_lookup(&vals[i], "status", 6, &got), COW_FOUND);
        cr_assert(got.tag == COW_T_STR_VIEW && got.aux == strlen(statuses[i % 2])
                  && memcmp(got.u.ref, statuses[i % 2], got.aux) == 0);
        cr_assert_eq(cow_pack_unpack(&vals[i], &got), COW_OK);
        {
            cow_val k = str_of("status"), k2 = str_of("note");
            const cow_val *s, *n;
            cr_assert_eq(tu_map_get(cow_val_getmap(&got), &k, tu_hash(&k), &s), COW_FOUND);
            cr_assert_eq(tu_map_get(cow_val_getmap(&got), &k2, tu_hash(&k2), &n), COW_FOUND);
            cr_assert_eq(s->tag, COW_T_SSTR, "V1: a short str comes back inline");
            cr_assert_eq(n->tag, COW_T_STR);
            cow_val_release(&k);
            cow_val_release(&k2);
        }
        cr_assert_eq(cow_map_check(cow_val_getmap(&got)), COW_OK);
        cow_val_release(&got);
    }
    cow_vals_release(vals, N);
    cow_vals_release(gen, N);
}

/* P1, P5: a container materialised from a pack and written packs again
 * (cow_pack_repack) only while every container nested in it, at any depth,
 * has the identity its position derives -- the one unpacking gives back. */
Test(pack, a_repack_keeps_every_nested_identity_or_refuses)
{
    static const char *const keys[] = {"n", "l", "d"};
    static const char *const inner_keys[] = {"x"};
    cow_val vals[3], d, p, g, again, inner, dkey;
    uint64_t h;
    vals[0] = cow_val_int(5);
    vals[1] = list_of(COW_T_LIST, (cow_val[]){cow_val_int(1)}, 1);
    vals[2] = dict_of(inner_keys, (cow_val[]){cow_val_int(2)}, 1);
    d = dict_of(keys, vals, 3);
    p = packed(&d);
    cr_assert_eq(cow_pack_unpack(&p, &g), COW_OK);      /* nested identities derived */
    cr_assert_eq(cow_pack_repack(&g, &again), COW_FOUND);
    cr_assert_eq(again.aux, p.aux, "the container's own identity is kept");
    cr_assert(cow_val_equal(&again, &g));
    cow_val_release(&again);
    /* A scalar written: the nested identities still derive. */
    map_put(cow_val_getmap(&g), str_of("n"), cow_val_int(6));
    cr_assert_eq(cow_pack_repack(&g, &again), COW_FOUND);
    cow_val_release(&again);
    /* A container assigned in a nested one's place has another identity:
     * refused (cow_pack_make, which keeps none, packs it). */
    map_put(cow_val_getmap(&g), str_of("l"), list_of(COW_T_LIST, (cow_val[]){cow_val_int(9)}, 1));
    cr_assert_eq(cow_pack_repack(&g, &again), COW_NOT_FOUND);
    cr_assert_eq(cow_pack_make(&g, &again), COW_FOUND);
    cow_val_release(&again);
    cow_val_release(&g);
    /* The same one level down: a list added into the nested dict. */
    cr_assert_eq(cow_pack_unpack(&p, &g), COW_OK);
    dkey = str_of("d");
    cr_assert_eq(cow_val_hash(&dkey, &h), COW_OK);
    cr_assert_eq(cow_map_get(cow_val_getmap(&g), &dkey, h, &inner), COW_FOUND);
    map_put(cow_val_getmap(&inner), str_of("y"), list_of(COW_T_LIST, (cow_val[]){cow_val_int(1)}, 1));
    cr_assert_eq(cow_pack_repack(&g, &again), COW_NOT_FOUND, "a foreign grandchild");
    cow_val_release(&dkey);
    cow_val_release(&g);
    cow_val_release(&p);
    cow_val_release(&d);
}

/* A packed dict with one field's value changed: the new pack of its own that
 * cow_pack_with_field makes equals the general dict so written, keeps the
 * identity (and so the nested ones, P5), takes every width an int or str
 * item has, and leaves the old pack, alone or a batch member (P6), as it
 * was.  What it cannot write is left to the general path. */
Test(pack, a_field_written_into_a_pack_makes_an_equal_pack)
{
    cow_val keys[ENTRIES], vals[ENTRIES], p, gen, g, w, expect, unpacked_old, nested_old, nested_new;
    cow_pack_memo memos[2] = {{0}};     /* "score"'s, "id"'s */
    char long_name[300];
    const int64_t ints[] = {0, 127, 128, -1, 1 << 20, (int64_t)1 << 40, INT64_MIN};
    uint64_t h;
    memset(long_name, 'n', sizeof long_name);
    record_entries(keys, vals);
    cr_assert_eq(cow_pack_make_dict(keys, vals, ENTRIES, &p), COW_FOUND);
    cr_assert_eq(cow_pack_unpack(&p, &gen), COW_OK);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] + 2; i++) {
        cow_val nv = i < sizeof ints / sizeof ints[0] ? cow_val_int(ints[i]) : cow_val_float(-0.5);
        const char *field = i < sizeof ints / sizeof ints[0] ? "id" : "score";
        if (i == sizeof ints / sizeof ints[0] + 1)
            cr_assert_eq(cow_val_str(&nv, long_name, sizeof long_name), COW_OK);
        cr_assert_eq(cow_pack_with_field(&p, field, strlen(field), NULL, &nv, &w), COW_FOUND);
        for (int round = 0; round < 2; round++) {       /* a memo's miss, then its hit */
            cow_val wm;
            cow_pack_memo *memo = &memos[field[0] == 'i'];
            cr_assert_eq(cow_pack_with_field(&p, field, strlen(field), memo, &nv, &wm), COW_FOUND);
            cr_assert(cow_val_equal(&wm, &w), "field %s through a memo, case %zu", field, i);
            cr_assert_eq(memo->shape, words_of(&p)[0]);
            cow_val_release(&wm);
        }
        cr_assert_eq(w.aux, p.aux, "the identity is kept");
        cr_assert_neq(w.u.w, p.u.w, "a new node: the old one is never written (P1)");
        cow_val_copy(&expect, &gen);
        cr_assert_eq(cow_map_own(&expect.u.w), COW_OK);
        map_put(cow_val_getmap(&expect), str_of(field), nv);
        cr_assert(cow_val_equal(&w, &expect), "field %s, case %zu", field, i);
        cr_assert_eq(cow_pack_unpack(&w, &g), COW_OK);
        cr_assert(cow_val_equal(&g, &expect));
        cow_val tk = str_of("tags");
        cr_assert_eq(cow_val_hash(&tk, &h), COW_OK);
        cr_assert_eq(cow_map_get(cow_val_getmap(&g), &tk, h, &nested_new), COW_FOUND);
        cr_assert_eq(cow_pack_unpack(&p, &unpacked_old), COW_OK);
        cr_assert_eq(cow_map_get(cow_val_getmap(&unpacked_old), &tk, h, &nested_old), COW_FOUND);
        cr_assert_eq(cow_val_getvec(&nested_new)->ident, cow_val_getvec(&nested_old)->ident,
                     "a nested container keeps its identity");
        cow_val_release(&tk);
        cow_val_release(&unpacked_old);
        cow_val_release(&g);
        cow_val_release(&expect);
        cow_val_release(&w);
    }
    cr_assert(cow_val_equal(&p, &gen), "the old pack is as it was");
    {   /* Left to the general path: an absent key, a container value. */
        cow_val list = list_of(COW_T_LIST, (cow_val[]){cow_val_int(1)}, 1), lp = packed(&list);
        cow_val one = cow_val_int(1);
        cr_assert_eq(cow_pack_with_field(&p, "absent", 6, NULL, &one, &w), COW_NOT_FOUND);
        cr_assert_eq(cow_pack_with_field(&p, "tags", 4, NULL, &list, &w), COW_NOT_FOUND);
        cr_assert_eq(cow_pack_with_field(&p, "tags", 4, NULL, &lp, &w), COW_NOT_FOUND);
        cow_val_release(&lp);
        cow_val_release(&list);
    }
    {   /* A member of a batch: its own pack, the batch unchanged. */
        enum { N = 3 };
        cow_val recs[N], gens[N], nv = cow_val_int(-7);
        packed_records(recs, gens, N, 6);
        cr_assert_eq(cow_pack_batch(recs, N, 1), COW_OK);
        cr_assert_eq(cow_pack_with_field(&recs[1], "id", 2, NULL, &nv, &w), COW_FOUND);
        cr_assert_eq(cow_pack_offset(&w), 0, "a pack of its own");
        cr_assert_eq(w.aux, recs[1].aux);
        map_put(cow_val_getmap(&gens[1]), str_of("id"), cow_val_int(-7));
        cr_assert(cow_val_equal(&w, &gens[1]));
        cr_assert(cow_val_equal(&recs[0], &gens[0]) && cow_val_equal(&recs[2], &gens[2]));
        cow_val_release(&w);
        cow_vals_release(recs, N);
        cow_vals_release(gens, N);
    }
    cow_pack_memo_clear(&memos[0]);
    cow_pack_memo_clear(&memos[1]);
    cow_val_release(&gen);
    cow_val_release(&p);
    cow_vals_release(keys, ENTRIES);
    cow_vals_release(vals, ENTRIES);
}
