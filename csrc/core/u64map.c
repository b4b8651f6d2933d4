/* cow_u64map: linear probing over a power-of-two table kept at most half
 * full, so a probe sequence is short and always ends at an empty cell.
 *
 * Invariants:
 *  U1  cap is 0 or a power of two, and len <= cap / 2.
 *  U2  every key is in the run of full cells starting at its home cell
 *      (hash & (cap - 1)): a deletion moves later keys of the run back into
 *      the hole when their home allows, so runs never break.
 */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/hash.h"
#include "cowstore/u64map.h"

/* First table size: enough for one small commit without growing. */
#define U64MAP_MIN_CAP 64

void
cow_u64map_init(cow_u64map *m)
{
    memset(m, 0, sizeof *m);
}

void
cow_u64map_free(cow_u64map *m)
{
    cow_free(m->cells);
    cow_u64map_init(m);
}

void
cow_u64map_clear(cow_u64map *m)
{
    if (m->cap)
        memset(m->cells, 0, m->cap * sizeof *m->cells);
    m->len = 0;
}

static size_t
home(const cow_u64map *m, uint64_t key)
{
    return (size_t)cow_hash_mix64(key) & (m->cap - 1);
}

int
cow_u64map_get(const cow_u64map *m, uint64_t key, uint64_t *val)
{
    if (m->cap == 0)
        return COW_NOT_FOUND;
    for (size_t i = home(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->cells[i].key == 0)
            return COW_NOT_FOUND;
        if (m->cells[i].key == key) {
            *val = m->cells[i].val;
            return COW_FOUND;
        }
    }
}

/* The cell holding key, or the empty one where it goes (cap > 0). */
static size_t
cell_of(const cow_u64map *m, uint64_t key)
{
    size_t i = home(m, key);
    while (m->cells[i].key != 0 && m->cells[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void
place(cow_u64map *m, uint64_t key, uint64_t val)
{
    size_t i = cell_of(m, key);
    m->len += m->cells[i].key == 0;
    m->cells[i] = (cow_u64cell){key, val};
}

static int
grow(cow_u64map *m)
{
    cow_u64map bigger;
    bigger.cap = m->cap ? m->cap * 2 : U64MAP_MIN_CAP;
    bigger.len = 0;
    if ((bigger.cells = cow_calloc(bigger.cap, sizeof *bigger.cells)) == NULL)
        return COW_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->cells[i].key)
            place(&bigger, m->cells[i].key, m->cells[i].val);
    cow_u64map_free(m);
    *m = bigger;
    return COW_OK;
}

int
cow_u64map_reserve(cow_u64map *m, size_t n)
{
    int rc;
    while ((m->len + n) * 2 > m->cap)   /* U1 */
        if ((rc = grow(m)) < 0)
            return rc;
    return COW_OK;
}

int
cow_u64map_put(cow_u64map *m, uint64_t key, uint64_t val)
{
    int rc;
    if ((m->len + 1) * 2 > m->cap && (rc = grow(m)) < 0)   /* U1 */
        return rc;
    place(m, key, val);
    return COW_OK;
}

int
cow_u64map_add(cow_u64map *m, uint64_t key, uint64_t delta, uint64_t *now)
{
    size_t i;
    int rc;
    if ((m->len + 1) * 2 > m->cap && (rc = grow(m)) < 0)   /* U1 */
        return rc;
    i = cell_of(m, key);
    if (m->cells[i].key == 0) {
        m->cells[i].key = key;
        m->cells[i].val = 0;
        m->len++;
    }
    *now = m->cells[i].val += delta;
    return COW_OK;
}

/* Whether cell `cell` lies cyclically in [from, to): a key homed at `from`
 * and now at `to` may move back into it. */
static int
cyclic_between(size_t from, size_t cell, size_t to)
{
    return from <= to ? from <= cell && cell < to : from <= cell || cell < to;
}

int
cow_u64map_del(cow_u64map *m, uint64_t key)
{
    size_t hole, i, mask = m->cap - 1;
    if (m->cap == 0)
        return COW_NOT_FOUND;
    for (hole = home(m, key); m->cells[hole].key != key; hole = (hole + 1) & mask)
        if (m->cells[hole].key == 0)
            return COW_NOT_FOUND;
    for (i = (hole + 1) & mask; m->cells[i].key != 0; i = (i + 1) & mask) {
        if (cyclic_between(home(m, m->cells[i].key), hole, i)) {   /* U2: it may move back */
            m->cells[hole] = m->cells[i];
            hole = i;
        }
    }
    m->cells[hole].key = 0;
    m->len--;
    return COW_FOUND;
}
