/* Persistent insertion-ordered hash map (see map.c). */
#ifndef COWSTORE_MAP_H
#define COWSTORE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/value.h"
#include "cowstore/vec.h"

/* Maps of at most this many log entries keep no hash index: a linear scan of
 * 8 entries beats 2 trie hops and saves the index's memory for small records. */
#define COW_MAP_LINEAR_MAX 8
/* The entry log is compacted once it holds more holes than live entries and at
 * least this many (amortised O(1) per delete). */
#define COW_MAP_COMPACT_MIN 16
/* Entry indices are 32-bit in the index leaves. */
#define COW_MAP_MAX_ENTRIES UINT32_MAX
/* Keys sharing one 32-bit index hash: a collision node counts them in 16 bits. */
#define COW_MAP_MAX_COLLISIONS UINT16_MAX

typedef struct cow_hnode cow_hnode;

typedef struct cow_map {
    uint32_t refcnt;
    uint32_t ident;         /* identity as the user sees it: kept by path
                             * copies (cow_map_own), new for each new map */
    size_t live;            /* entries whose key is not a HOLE */
    cow_vecbody log;        /* entry i: key at 2i, value at 2i+1 */
    cow_word index;         /* (hash, entry) trie; 0 iff entries <= COW_MAP_LINEAR_MAX */
} cow_map;

cow_map *cow_map_new(void);
void cow_map_retain(cow_map *m);
void cow_map_release(cow_map *m);
/* Makes the map *w names exclusively owned and on the heap (copies the
 * header if shared or stored, keeping its identity). */
int cow_map_own(cow_word *w);
cow_map *cow_map_clone(const cow_map *m); /* new identity, shares all nodes, O(1) */
/* Exchanges the entries of a and b, each keeping its refcount and identity:
 * with a clone taken first, puts a map back after a series of writes that
 * failed part way.  Allocates nothing. */
void cow_map_swap(cow_map *a, cow_map *b);
size_t cow_map_len(const cow_map *m);

/* hash is cow_val_hash(key).  Lookups return cow_found or a negative error. */
int cow_map_find(const cow_map *m, const cow_val *key, uint64_t hash, size_t *entry);
/* The value is borrowed by copy (cow_vb_get: valid while the map holds it). */
int cow_map_get(const cow_map *m, const cow_val *key, uint64_t hash, cow_val *val);
/* As cow_map_get, with the stored key: kv[0] the key, kv[1] its value. */
int cow_map_get_entry(const cow_map *m, const cow_val *key, uint64_t hash, cow_val kv[2]);
/* The fast d[k] of a str key [s, s + n) whose cow_val_hash is hash: as
 * cow_map_get, or COW_ASK_GENERAL when that must answer (a stored node on
 * the way, no index, a collision node, a raw key item).  It reads heap
 * nodes only, so it records no error. */
int cow_map_get_str(const cow_map *m, const char *s, size_t n, uint64_t hash, cow_val *val);
/* The same for an int key x of hash cow_val_int_hash(x).  val may be NULL
 * (membership). */
int cow_map_get_int(const cow_map *m, int64_t x, uint64_t hash, cow_val *val);
/* Inserts or replaces: steals key and val.  A replaced key keeps its place.
 * COW_EOVERFLOW when a new key would exceed COW_MAP_MAX_ENTRIES entries or
 * COW_MAP_MAX_COLLISIONS keys of one 32-bit hash. */
int cow_map_set(cow_map *m, cow_val key, uint64_t hash, cow_val val);
/* Inserts key with val unless m holds key already (then m is unchanged:
 * set's add, which keeps the element it has).  Steals key and val.
 * COW_NOT_FOUND (added), COW_FOUND (present) or an error, as cow_map_set's. */
int cow_map_add(cow_map *m, cow_val key, uint64_t hash, cow_val val);
/* Fills an empty map with n entries, kv = key, value, key, value... (all
 * stolen on every path).  The keys must be distinct (the caller checks):
 * no lookups are made, so building a small map costs one or two
 * allocations.  COW_OK or an error (the map left empty). */
int cow_map_fill(cow_map *m, cow_val *kv, size_t n);
/* Builds a map from many entries in one go (a dict or set converted, a set
 * operation's result): each entry is appended to the log with no lookup and
 * its key's hash kept, and the end builds the index once from the hashes
 * (bulk, map.c) instead of an insert per entry.  Keys may repeat (dict keys
 * Python tells apart that cowstore holds equal): the end then merges them
 * as cow_map_set one by one would, a key at its first place with its last
 * value.  Between begin and end the map is incomplete (no index yet): only
 * the builder may touch it. */
typedef struct cow_map_builder {
    cow_map *map;           /* empty at begin; its log grows */
    uint32_t *h32;          /* the index hash of entry i's key: first in
                             * small, then in an allocation */
    size_t cap;             /* room in h32 */
    uint32_t small[COW_MAP_LINEAR_MAX + 1];     /* enough for maps with no index */
} cow_map_builder;
/* Starts building into m, an empty map. */
void cow_map_build_begin(cow_map_builder *b, cow_map *m);
/* Appends (key, val), key's cow_val_hash being hash: steals both on every
 * path.  COW_OK, or an error with the entry not added (call abort). */
int cow_map_build_add(cow_map_builder *b, cow_val key, uint64_t hash, cow_val val);
/* Completes the map: COW_OK, or an error with the map left empty.  The
 * builder is done with either way. */
int cow_map_build_end(cow_map_builder *b);
/* Gives up: the map left empty, the builder done with. */
void cow_map_build_abort(cow_map_builder *b);
/* Removes key; its value is moved to *out (new reference) when out != NULL,
 * else released.  Returns COW_FOUND / COW_NOT_FOUND / error. */
int cow_map_del(cow_map *m, const cow_val *key, uint64_t hash, cow_val *out);
/* Removes key if m holds it (COW_FOUND), else inserts it with val
 * (COW_NOT_FOUND): one lookup, for a symmetric difference.  Steals key and
 * val on every path.  Or an error, m unchanged. */
int cow_map_toggle(cow_map *m, cow_val key, uint64_t hash, cow_val val);
/* Removes the last entry in order: new references in *key and *val. */
int cow_map_popitem(cow_map *m, cow_val *key, cow_val *val);
void cow_map_clear(cow_map *m);

/* Entry access by log position (holes have key tag COW_T_HOLE). */
size_t cow_map_entries(const cow_map *m);
cow_val cow_map_entry_key(const cow_map *m, size_t entry);     /* borrowed copies */
cow_val cow_map_entry_val(const cow_map *m, size_t entry);

/* Order-insensitive equality (dict ==); shares short-cut to 1. */
int cow_map_equal(const cow_map *a, const cow_map *b);
/* Order-insensitive hash of a frozen map or set. */
int cow_map_hash(const cow_map *m, int is_set, uint64_t *out);

int cow_map_check(const cow_map *m);   /* invariants H1..H5; COW_OK or COW_EINVAL */
long cow_map_live_nodes(void);          /* live index nodes, for leak tests */

#endif
