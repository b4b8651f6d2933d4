/* Set algebra on the keys of two maps (see set_algebra.c): what CowSet's
 * operators do when both sides are sets of ours, without a Python object per
 * element. */
#ifndef COWSTORE_SET_ALGEBRA_H
#define COWSTORE_SET_ALGEBRA_H

#include "cowstore/map.h"

/* dst gains each key of src that it lacks (with value None), in src's order;
 * with only_in != NULL, only the keys only_in holds too.  A key dst has
 * already keeps dst's form (1 stays 1 when src holds True), as set's
 * update.  COW_OK or an error, dst holding the keys added before it (none
 * when dst was empty: it is filled by a rebuild, all at once). */
int cow_set_add_keys(cow_map *dst, const cow_map *src, const cow_map *only_in);
/* dst loses each key of src.  COW_OK or an error. */
int cow_set_remove_keys(cow_map *dst, const cow_map *src);
/* Each key of src leaves dst if dst holds it, else joins it (value None):
 * symmetric_difference_update, src's keys being distinct.  COW_OK or an
 * error. */
int cow_set_toggle_keys(cow_map *dst, const cow_map *src);
/* dst keeps the keys other holds (keep_found) or lacks (!keep_found), in
 * dst's order.  COW_OK or an error. */
int cow_set_keep_keys(cow_map *dst, const cow_map *other, int keep_found);
/* A filter's choice for one entry of the map: 1 keep, 0 drop, or an
 * error (negative) that stops the filter. */
typedef int (*cow_set_keep)(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash);
/* Keeps the entries of m that keep chooses, in m's order: m is rebuilt from
 * them (no lookups, one index build, no holes) and keeps its identity.
 * keep must not change m (a caller whose keep runs user code filters a map
 * of its own: set.c filters a clone).  COW_OK, or keep's error or
 * COW_ENOMEM with m unchanged. */
int cow_set_filter(cow_map *m, cow_set_keep keep, void *ctx);
/* Whether every key of a is in b (1) or not (0), or an error. */
int cow_set_all_in(const cow_map *a, const cow_map *b);
/* Whether some key of a is in b (1) or none (0), or an error. */
int cow_set_any_in(const cow_map *a, const cow_map *b);

#endif
