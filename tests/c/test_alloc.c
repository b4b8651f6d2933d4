/* Criterion tests for csrc/core/alloc.c: every block the core allocates goes
 * through the installed allocator and comes back to it (the Python binding
 * relies on this to put the core under tracemalloc), and a refused
 * allocation surfaces as COW_ENOMEM. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/alloc.h"
#include "cowstore/map.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"

TestSuite(alloc, .fini = tu_leak_check);

/* A map of n int keys to blob values, plus a copy edited apart from it. */
static void
build_and_drop(int n)
{
    cow_map *m = cow_map_new(), *c;
    cow_vec *v = cow_vec_new(), *vc;
    cr_assert(m && v);
    for (int i = 0; i < n; i++) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), tu_str("value %d, long enough for a blob", i)),
                     COW_OK);
        cr_assert_eq(cow_vb_push(&v->b, tu_str("element %d, long enough for a blob", i)), COW_OK);
    }
    c = cow_map_clone(m);
    vc = cow_vec_clone(v);
    cr_assert(c && vc);
    for (int i = 0; i < n; i += 3) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_del(c, &k, tu_hash(&k), NULL), COW_FOUND);
        cr_assert_eq(cow_vb_set(&vc->b, (size_t)i, cow_val_none()), COW_OK);
    }
    cr_assert_eq(cow_map_check(c), COW_OK);
    cr_assert_eq(cow_vec_check(&vc->b), COW_OK);
    cow_val fd = cow_val_map(COW_T_FDICT, c), fl = cow_val_vec(COW_T_FLIST, vc);
    uint64_t h;
    cr_assert_eq(cow_val_hash(&fd, &h), COW_OK);
    cr_assert_eq(cow_val_hash(&fl, &h), COW_OK);
    cow_val_release(&fd);
    cow_val_release(&fl);
    cow_map_release(m);
    cow_vec_release(v);
}

Test(alloc, every_block_goes_through_the_hook_and_back)
{
    tu_alloc_install();
    cr_assert_eq(tu_alloc.blocks, 0);
    cow_val s = tu_str("a blob well past the inline limit");
    cr_assert_eq(tu_alloc.blocks, 1, "a blob str is one block");
    cow_val_release(&s);
    cr_assert_eq(tu_alloc.blocks, 0);
    build_and_drop(3000);
    cr_assert_gt(tu_alloc.calls, 3000 * 2, "the core allocated elsewhere");
    cr_assert_gt(tu_alloc.reallocs, 0, "index nodes grow in place through realloc");
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks not freed through the hook", tu_alloc.blocks);
}

Test(alloc, the_allocator_is_copied_when_set)
{
    cow_allocator a = {tu_malloc, tu_calloc, tu_realloc, tu_free};
    cow_val s;
    cow_set_allocator(&a);
    memset(&a, 0, sizeof a);            /* the caller's struct may go away */
    s = tu_str("allocated through the copy of the hooks");
    cr_assert_eq(tu_alloc.blocks, 1);
    cow_val_release(&s);
    cr_assert_eq(tu_alloc.blocks, 0);
}

Test(alloc, refused_allocations_surface_as_enomem)
{
    static const char text[] = "a string longer than fourteen bytes";
    static const uint8_t big[9] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0};
    cow_vecbody b;
    cow_val v = cow_val_int(1), blob;
    tu_alloc_install();             /* first: blocks must be freed where made */
    blob = tu_str("pushed, then released on failure");
    cow_vb_init(&b);
    tu_fail_after(0);
    cr_assert_eq(cow_val_str(&v, text, sizeof text - 1), COW_ENOMEM);
    cr_assert(v.tag == COW_T_INT && v.u.i == 1, "a failed constructor must not write *out");
    cr_assert_eq(cow_val_bytes(&v, text, sizeof text - 1), COW_ENOMEM);
    cr_assert_eq(cow_val_bigint(&v, big, sizeof big), COW_ENOMEM);
    cr_assert_eq(cow_val_str(&v, text, COW_INLINE_MAX), COW_OK, "inline needs no block");
    cr_assert_null(cow_vec_new());
    cr_assert_null(cow_map_new());
    cr_assert_eq(cow_vb_push(&b, blob), COW_ENOMEM);
    tu_fail_after(-1);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    cr_assert_eq(tu_alloc.failures, 6);
    cr_assert_eq(tu_alloc.blocks, 0, "a failed push must release the value it stole");
}
