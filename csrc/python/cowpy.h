/* The CPython binding's shared declarations.
 *
 * One object struct (CowObject) backs every container type: the C base types
 * DictBase, ListBase and SetBase (dict.c, list.c, set.c) hold the hot paths;
 * the Python package subclasses them (CowDict, FrozenDict, ...) for the long
 * tail of the API.  Nodes hold no Python objects, so these objects hold at
 * most one Python reference (their parent) and form no cycles.
 *
 * Views: a container read out of another (d["a"]) is a CowObject whose
 * `parent` is the container it came from and whose (pkey, pidx) say where.
 * Reads first resync the view from its parent (cowpy_resolve); writes go to
 * the view, then are written back into the parent (cowpy_end_write), so
 * d["a"]["b"] = 1 changes d.  A view whose slot in the parent now holds a
 * different container (different ident) detaches and lives on alone.  A
 * resync walks the chain above a view top down, without recursion, and
 * only when some container changed since the view's last one (the state's
 * `changes` count): reads at any depth cost no walk while nothing changes.
 * A write goes back up the chain one C call a level, checked against the
 * recursion limit before anything is written.
 */
#ifndef COWPY_H
#define COWPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cowstore/errors.h"
#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/pack.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

struct cowpy_state;

typedef struct CowObject {
    PyObject_HEAD
    struct cowpy_state *st;     /* module state, cached: hot paths need it */
    cow_val root;               /* DICT/FDICT/SET/FSET (u.map) or LIST/FLIST (u.vec); owned.
                                 * A view read from a packed slot may hold the
                                 * PACKED value until its first cowpy_resolve */
    struct CowObject *parent;   /* strong reference; NULL when detached */
    cow_val pkey;               /* key in a parent map (owned), else NONE */
    uint64_t phash;             /* hash of pkey */
    size_t pidx;                /* index in a parent list */
    uint64_t mut;               /* bumped whenever root changes; 0: fresh from tp_new */
    uint64_t seen;              /* parent->mut when root was last synced */
    uint64_t synced;            /* st->changes when the chain above was last
                                 * resolved (0: never): unchanged since, no
                                 * container has changed (cowpy_resolve_view) */
    union {                     /* one or the other: never both at once */
        PyObject *origin;       /* detached: (Store, root name) when read from
                                 * a store, else NULL */
        PyObject *pkey_obj;     /* a view: the exact str or int a lookup read
                                 * us by, until first needed as pkey
                                 * (cowpy_parent_key); else NULL */
    };
    cow_word pfrom;             /* the pack (exported word; a heap one held) root
                                 * was materialised from while our slot in the
                                 * parent holds it packed; else 0 (pack.h P1) */
    size_t poff;                /* the body offset in that pack (pack.h P6) */
} CowObject;

/* Forgets the pack self's root came from, dropping the reference held on a
 * heap one (cowpy_set_pfrom). */
static inline void
cowpy_clear_pfrom(CowObject *self)
{
    if (self->pfrom && !cow_word_stored(self->pfrom))
        cow_pack_release((cow_pack *)self->pfrom);
    self->pfrom = 0;
}

/* Records that self's root came from packed value v (pack.h P1, P6).  A heap
 * pack is held while remembered: resync_packed tells packs apart by their
 * word, and a freed pack's address, reused for a later version of the same
 * container, would pass for the one self was made from (self kept its old
 * content, and its next write put the old fields back). */
static inline void
cowpy_set_pfrom(CowObject *self, const cow_val *v)
{
    cow_word w = cow_ref_export(&v->u.w);
    if (!cow_word_stored(w))
        cow_pack_retain((cow_pack *)w);     /* first: w may be the pack held now */
    cowpy_clear_pfrom(self);
    self->pfrom = w;
    self->poff = cow_pack_offset(v);
}

/* The tag v reads back with: a packed value's is its container's (pack.h). */
static inline int cowpy_logical_tag(const cow_val *v) { return v->tag == COW_T_PACKED ? v->slen : v->tag; }
/* Whether a (logical) tag is one of the frozen containers. */
static inline int
cowpy_tag_is_frozen(int tag)
{
    return tag == COW_T_FDICT || tag == COW_T_FLIST || tag == COW_T_FSET;
}
/* 1 when v reads back as a mutable container: a view that writes back. */
static inline int
cowpy_is_mutable_container(const cow_val *v)
{
    int t = cowpy_logical_tag(v);
    return t == COW_T_DICT || t == COW_T_LIST || t == COW_T_SET;
}

/* The first `mut` of a container made with its content (a copy, a value
 * read back): never fresh, so __init__ on it refills as the builtins do. */
#define COWPY_MUT_MADE 1

/* Kinds of iterators and views: a dict's keys, values or items (the first
 * COWPY_VIEW_KINDS, which have view classes), a list's or set's elements. */
enum { COWPY_IT_KEYS, COWPY_IT_VALUES, COWPY_IT_ITEMS, COWPY_IT_ELEMS };
#define COWPY_VIEW_KINDS 3

/* Module state: the types the package registers and our exceptions. */
typedef struct cowpy_state {
    PyTypeObject *dict_base, *list_base, *set_base, *iter_type, *diff_type;
    PyObject *cls[COW_T__COUNT];    /* Python class for each container tag */
    PyObject *view_cls[COWPY_VIEW_KINDS];   /* keys, values, items views' classes */
    PyObject *CowstoreError, *UnsupportedTypeError, *CycleError, *FrozenError;
    PyObject *CowMemoryError, *CowValueError, *CowOverflowError, *CorruptStoreError;
    PyObject *StoreError, *ReadonlyStoreError, *ConflictError;
    PyTypeObject *store_type, *array_buffer_type;
    PyObject *numpy;            /* imported when the first array is met */
    PyObject *ext;              /* cowstore._ext, imported when first needed */
    PyObject *str_encode, *str_decode;  /* its functions' names, interned */
    uint64_t changes;           /* bumped with every container's mut (from 1:
                                 * a view's synced 0 is never current) */
} cowpy_state;

/* Records that self's root changed: its views resync from it, and every
 * view resolves its chain again on its next read. */
static inline void
cowpy_root_changed(CowObject *self)
{
    self->mut++;
    self->st->changes++;
}

/* Takes a new container object of one of the package's own classes (tag's)
 * off the GC's lists.  CPython tracks the instances of every class a class
 * statement makes, and these hold no reference the GC could follow (the C
 * base has no tp_traverse), so tracking only made each full collection
 * walk them: 19 ms a collection with 300,000 records read out and held.
 * CPython untracks dicts of atomic values for the same reason.  A user's
 * subclass stays tracked: its instances may hold a __dict__ or slots, or be
 * referenced from their own class. */
static inline void
cowpy_untrack_own(const cowpy_state *st, PyObject *obj, int tag)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if ((PyObject *)tp == st->cls[tag] && PyType_IS_GC(tp) && tp->tp_dictoffset == 0
        && tp->tp_basicsize == (Py_ssize_t)sizeof(CowObject))
        PyObject_GC_UnTrack(obj);
}

cowpy_state *cowpy_state_of_type(PyTypeObject *tp);
/* The module state of one of our container objects (cached in it). */
#define COWPY_ST(op) (((CowObject *)(op))->st)
cowpy_state *cowpy_state_of(PyObject *obj);

/* errors.c: raises the exception for a core code; returns NULL. */
PyObject *cowpy_raise(cowpy_state *st, int code);
int cowpy_raise_int(cowpy_state *st, int code);   /* same, returns -1 */

/* ---- entry points ----------------------------------------------------------
 *
 * A read of stored bytes that fails validation gets poison and records its
 * error in the calling thread's read scope (cowstore/ref.h).  Every function
 * the interpreter calls through our method and slot tables is an entry,
 * defined with COWPY_ENTRY, which runs the body in a read scope of its own:
 *
 *     COWPY_ENTRY(static, PyObject *, dict_subscript,
 *                 (PyObject *op, PyObject *key), (op, key))
 *     {
 *         ... returns as the slot does: a new reference, or NULL raised ...
 *     }
 *
 * defines dict_subscript (the entry, which the tables name) and
 * dict_subscript_body (the block that follows).  When the body's reads met
 * an error, the entry drops what the body returned and raises that error
 * instead (COW_ECORRUPT: CorruptStoreError, COW_ENOMEM: CowMemoryError),
 * replacing any exception the body set: poison reads as empty, so a
 * KeyError or a short result was a symptom of the damage.  The scope is the
 * thread's and ends with the call, so the call that met an error is the one
 * that raises it: never a later call, never another thread.  A call back
 * into us from Python code the body runs (a key's __eq__, a generator
 * being extended from) is an entry too and reports its own errors; an entry
 * that does another's job calls that one's body (list_len_body), one scope
 * per Python call.  A write whose body met an error raises as well, though
 * what it wrote stays written (poison copied in reads as empty or None).
 *
 * linkage is static, or extern for the entries cowpy.h declares; ret is
 * PyObject * (NULL on error), or int or Py_ssize_t (-1 on error); params
 * and args are the parameter list and the same names as arguments, the
 * first being the object or module the call is made on.  Not entries:
 * tp_new and tp_dealloc, which resolve no word, and the _ArrayBuffer's
 * getbuffer, whose pointer was resolved and checked when it was made. */
#define COWPY_ENTRY(linkage, ret, name, params, args)                           \
    static ret name##_body params;                                              \
    linkage ret name params                                                     \
    {                                                                           \
        int outer_ = cow_ref_scope_enter();                                     \
        ret res_ = name##_body args;                                            \
        int err_ = cow_ref_scope_leave(outer_);                                 \
        return err_ == COW_OK ? res_ : COWPY_READ_FAILED(res_, COWPY_FIRST args, err_); \
    }                                                                           \
    static ret name##_body params

/* The first of a parenthesised argument list: COWPY_FIRST (op, key) is op. */
#define COWPY_FIRST(...) COWPY_FIRST_(__VA_ARGS__, 0)
#define COWPY_FIRST_(first, ...) first
/* An entry's result after its body met read error err: raises it (the state
 * found from self, the object or module called) and returns NULL or -1. */
#define COWPY_READ_FAILED(res, self, err) \
    _Generic((res), PyObject *: cowpy_read_failed, default: cowpy_read_failed_num)( \
        (res), (PyObject *)(self), (err))
PyObject *cowpy_read_failed(PyObject *res, PyObject *self, int err);  /* drops res */
Py_ssize_t cowpy_read_failed_num(Py_ssize_t res, PyObject *self, int err);

/* convert.c */
/* Python -> owned cow_val; on error raises (naming type and path) and
 * returns -1.  Containers of ours are taken by value in O(1). */
int cowpy_from_object(cowpy_state *st, PyObject *obj, cow_val *out);
/* An entry about to be inserted into a container (append, setitem,
 * extend...): converted as cowpy_from_object, then packed if it is a small
 * container (pack.h), as conversion packs nested ones. */
int cowpy_entry_from_object(cowpy_state *st, PyObject *obj, cow_val *out);
/* The same for item `index` of an iterable given whole (extend, the
 * constructor): an error names it as root[index]. */
int cowpy_entry_from_item(cowpy_state *st, PyObject *obj, Py_ssize_t index, cow_val *out);
/* Batches the packed entries among vals[0..n) (pack.h P6); raises on error. */
int cowpy_batch(cowpy_state *st, cow_val *vals, size_t n);
/* After an append filled a vector's tail: batches its packed entries, every
 * stride-th from the stride-th (1: a list's; 2: a map log's values). */
void cowpy_batch_full_tail(cow_vecbody *b, size_t stride);
/* A key for lookups: *owned says whether *out must be released.  Returns 1 on
 * success, 0 if the key is certainly absent (a NaN, a str with lone
 * surrogates, a value no key can be: COWPY_NOT_A_KEY), COWPY_PROBE_FOREIGN if
 * it is hashable but of a type we never store, or holds a str with lone
 * surrogates (a datetime's zone name: only Python can say whether it equals a
 * stored key), -1 with an exception set (unhashable). */
enum { COWPY_PROBE_FOREIGN = 2 };
int cowpy_probe_key(cowpy_state *st, PyObject *obj, cow_val *out, uint64_t *hash, int *owned);
/* An owned key to store (hashable, not NaN); returns -1 with exception, or
 * COWPY_NOT_A_KEY with a TypeError for a value Python hashes but cowstore
 * cannot (one compared by identity: what a store reads back is a copy), which
 * no stored key equals. */
enum { COWPY_NOT_A_KEY = -2 };
int cowpy_store_key(cowpy_state *st, PyObject *obj, cow_val *out, uint64_t *hash);
/* foreign.c: keys of types we never store, found by Python's hash and ==.
 * cowpy_foreign_key: the key of the map `root` equal to obj, copied to *key
 * with its hash: 1 found, 0 absent, -1 error.
 * cowpy_lookup_key: cowpy_probe_key, a foreign key replaced by the stored
 * key equal to it: 1 (*out to look for), 0 absent, -1 error.
 * cowpy_store_key_in: cowpy_store_key, except that a foreign key equal to a
 * stored one gives that one (dict keeps the key first inserted). */
int cowpy_foreign_key(cowpy_state *st, const cow_val *root, PyObject *obj, cow_val *key,
                      uint64_t *hash);
int cowpy_lookup_key(CowObject *self, PyObject *obj, cow_val *out, uint64_t *hash,
                     int *owned);
int cowpy_store_key_in(CowObject *self, PyObject *obj, cow_val *out, uint64_t *hash);
/* cow_val -> new reference.  Mutable containers become views attached to
 * parent at (key, idx) when parent is not NULL. */
PyObject *cowpy_to_object(cowpy_state *st, const cow_val *v, CowObject *parent,
                          const cow_val *key, uint64_t hash, size_t idx);
/* cowpy_to_object of the value v that parent (a dict) holds under key, an
 * exact str or int whose conversion succeeds (a lookup's): a view keeps
 * the key object, converted only when a resync or write needs it. */
PyObject *cowpy_to_object_under(cowpy_state *st, const cow_val *v, CowObject *parent,
                                PyObject *key);
/* cowpy_to_object of a value that is no container (no map, no list, no
 * tuple) and no pack -- a number, a str, bytes, an extension leaf -- in a
 * frame of two arguments, not six.  Callers rule the others out first. */
PyObject *cowpy_scalar_to_object(cowpy_state *st, const cow_val *v);
/* The tag v reads back with out of a frozen container: DICT, LIST and SET
 * become their frozen counterparts, every other tag stays. */
int cowpy_frozen_tag(int tag);
/* freeze(obj): plain nested data as our containers (new reference). */
PyObject *cowpy_freeze_object(cowpy_state *st, PyObject *obj);
/* Deep conversion to plain dict/list/set/tuple values (new reference). */
PyObject *cowpy_thaw(cowpy_state *st, const cow_val *v);
/* cowpy_thaw, but nested frozen containers stay themselves (FrozenDict,
 * FrozenList, FrozenSet sharing their nodes): what pickles a container by
 * value and reads back with every type it held. */
PyObject *cowpy_contents(cowpy_state *st, const cow_val *v);
/* A new detached wrapper of the registered class for v's tag; steals v. */
PyObject *cowpy_wrap(cowpy_state *st, cow_val v);
/* A SET of a dict's keys, in their order (CowSet(iterable) keeps the
 * iterable's order, building it through dict.fromkeys). */
int cowpy_set_from_keys(cowpy_state *st, PyObject *dict, cow_val *out);

/* 2^64 / golden ratio: spreads addresses over slots. */
#define COWPY_ADDRESS_MUL 0x9e3779b97f4a7c15ULL

/* The slot of a table of 2^bits slots for the object or bytes at address
 * p (key_cache.c, field_memo.c). */
static inline size_t
cowpy_address_slot(const void *p, unsigned bits)
{
    return (size_t)(((uint64_t)(uintptr_t)p * COWPY_ADDRESS_MUL) >> (64 - bits));
}

/* key_cache.c: the key objects of a packed dict's shape (its blob's bytes,
 * pack.h), interned and cached: a borrowed tuple, valid until the next
 * call; and one key's str from its UTF-8, interned and cached (a new
 * reference).  NULL with an exception (CorruptStoreError for bad bytes). */
PyObject *cowpy_shape_keys(cowpy_state *st, const uint8_t *shape, size_t len);
PyObject *cowpy_key_object(cowpy_state *st, const char *utf8, size_t len);
/* A str a pack repeats (pack.h P7) from its blob's bytes: as
 * cowpy_key_object, its cache slot found by their address. */
PyObject *cowpy_repeated_str(cowpy_state *st, const char *utf8, size_t len);

/* field_memo.c: the memo (pack.h cow_pack_memo) that reads of exact str
 * key share, from a bounded table; borrowed, valid until the next call. */
cow_pack_memo *cowpy_field_memo(PyObject *key);

/* wrapper.c */
int cowpy_is_ours(cowpy_state *st, PyObject *obj);   /* one of our containers? */
/* Whether self is up to date without a look at the chain above it: it is
 * detached, no container changed since its chain was last resolved, or it
 * is a view of a detached parent that has not moved on. */
static inline int
cowpy_view_is_current(const CowObject *self)
{
    const CowObject *parent = self->parent;
    return parent == NULL || self->synced == self->st->changes
           || (parent->parent == NULL && parent->mut == self->seen);
}
int cowpy_resolve_view(CowObject *self);
/* Makes self->pkey and phash the key a view's parent map holds it under,
 * converting pkey_obj if it still has one: 0, or -1 with an error. */
int cowpy_parent_key(CowObject *self);
/* Replaces a packed root by the general container it holds (same content and
 * identity; mut unchanged, as nothing a reader sees changes). */
int cowpy_materialise(CowObject *self);
/* Brings a view up to date with its parent, and the parent with its own
 * (a no-op for a detached container, the common case, so it is inlined). */
static inline int
cowpy_resolve(CowObject *self)
{
    if (!cowpy_view_is_current(self) && cowpy_resolve_view(self) < 0)
        return -1;
    return self->root.tag == COW_T_PACKED ? cowpy_materialise(self) : 0;
}
/* The view resynced, its root possibly still packed: for the read paths
 * that serve a packed root in place (dict.c, list.c). */
static inline int
cowpy_resolve_lazy(CowObject *self)
{
    return cowpy_view_is_current(self) ? 0 : cowpy_resolve_view(self);
}
int cowpy_begin_write(CowObject *self);         /* resolve, refuse frozen, own root */
int cowpy_end_write(CowObject *self);           /* bump mut, write back into parent */
/* A view's write made without materialising: its packed root replaced by
 * `packed` (stolen: a new pack of the same container, cow_pack_with_field),
 * written back up the chain as cowpy_end_write does.  0, or -1 with an
 * error raised (RecursionError before anything is written, as writes). */
int cowpy_write_packed(CowObject *self, cow_val packed);
/* Whether a debug build (COW_DEBUG) validates a container after each write:
 * 1 unless a test that feeds damaged pages turned it off. */
extern int cowpy_debug_checks;
void cowpy_detach(CowObject *self);
void cowpy_object_dealloc(PyObject *self);
/* Gives cls, one of the package's own classes being registered, a
 * deallocator of ours when it adds nothing to its C base (wrapper.c). */
void cowpy_adopt_dealloc(cowpy_state *st, PyTypeObject *cls);
int cowpy_is_frozen(const CowObject *self);
/* A mutator's first check: -1 with FrozenError when self is frozen, so that
 * it raises whatever its arguments (an existing key, an empty list), as
 * every write does; 0 otherwise, with nothing owned or copied yet. */
int cowpy_refuse_frozen(CowObject *self);
PyObject *cowpy_copy(PyObject *self, PyObject *unused);
/* Value v read out of snap -- a retained copy of owner's root taken earlier --
 * as owner[k] would return it (new reference): a nested mutable container is
 * a view attached to owner, resynced before first use if owner has moved on
 * since the snapshot. */
PyObject *cowpy_snapshot_value(CowObject *owner, const cow_val *snap, const cow_val *v,
                               const cow_val *key, uint64_t hash, size_t idx);
/* Makes obj -- of one of the package's classes, its only reference the
 * caller's, so no one sees it change -- the container object cowpy_to_object
 * makes of packed dict or list v at parent's index idx, without allocating:
 * 1 done, 0 when v needs an object of another class (obj unchanged).  A
 * loop over records needs one view per record (iter.c). */
int cowpy_packed_view_renew(CowObject *obj, const cow_val *v, CowObject *parent, size_t idx);
/* The check that ends cowpy_snapshot_value, for a value res made for owner
 * from snap: a view resyncs before first use if owner has moved on. */
int cowpy_snapshot_mark(CowObject *owner, const cow_val *snap, const cow_val *v, PyObject *res);
/* _swap(other) of lists and sets: exchanges op's and other's contents
 * (exchange, which allocates nothing), each keeping its identity, in one
 * write of both; a write-back that fails swaps them back.  TypeError
 * ("_swap needs a <what>") unless other is a `base`.  New reference (None). */
PyObject *cowpy_swap_contents(PyObject *op, PyObject *other, PyTypeObject *base, const char *what,
                              void (*exchange)(CowObject *a, CowObject *b));
/* A new detached container holding v (stolen), of the package's class for
 * v's tag (a copy or slice of a user's subclass is the package's type, as
 * dict and list give theirs), or op's type if none is registered. */
PyObject *cowpy_new_like(PyObject *op, cow_val v);
/* tp_new of the bases: an empty `tag` container, or `frozen_tag` when type
 * subclasses the registered frozen class. */
PyObject *cowpy_new_empty(PyTypeObject *type, cow_tag tag, cow_tag frozen_tag);
/* _init(src): fill an empty, detached container from a plain or cowstore
 * container of the same kind (O(1) for ours; a set-kind one also from a
 * dict's keys).  Lets frozen ones be built.  _fresh(): whether the container
 * is new from tp_new and never initialised, so __init__ may use _init; on
 * any other, __init__ refills it as the builtin's does (the Python half). */
PyObject *cowpy_init_from(PyObject *op, PyObject *src);
PyObject *cowpy_fresh_method(PyObject *op, PyObject *unused);
PyObject *cowpy_deepcopy(PyObject *self, PyObject *memo);
PyObject *cowpy_thaw_method(PyObject *self, PyObject *unused);
PyObject *cowpy_contents_method(PyObject *self, PyObject *unused);
PyObject *cowpy_small_method(PyObject *self, PyObject *budget);
PyObject *cowpy_hash_method(PyObject *self, PyObject *unused);
PyObject *cowpy_equal_method(PyObject *self, PyObject *other);
PyObject *cowpy_same_method(PyObject *self, PyObject *other);
PyObject *cowpy_attached_method(PyObject *self, PyObject *unused);
/* store.c: where a store-backed container came from (pickling by reference). */
PyObject *cowpy_origin_method(PyObject *self, PyObject *unused);
PyObject *cowpy_set_origin_method(PyObject *self, PyObject *origin);
PyObject *cowpy_after_fork(PyObject *mod, PyObject *unused);
PyObject *cowpy_measure(PyObject *mod, PyObject *values);
/* parcel.c: values as self-contained buffers (cowstore/parcel.h). */
PyObject *cowpy_parcel(PyObject *mod, PyObject *obj);
PyObject *cowpy_open_parcel(PyObject *mod, PyObject *obj);
PyObject *cowpy_open_parcels(PyObject *mod, PyObject *unused);
PyObject *cowpy_root_word_method(PyObject *self, PyObject *unused);
PyObject *cowpy_adopt_method(PyObject *self, PyObject *args);

/* len() and clear() shared by the map-backed bases (DictBase, SetBase). */
Py_ssize_t cowpy_map_len(PyObject *op);
PyObject *cowpy_map_clear(PyObject *op, PyObject *unused);

/* The method-table entries every container base shares. */
#define COWPY_COMMON_METHODS \
    {"copy", cowpy_copy, METH_NOARGS, "An O(1) copy sharing structure."}, \
    {"__copy__", cowpy_copy, METH_NOARGS, NULL}, \
    {"__deepcopy__", cowpy_deepcopy, METH_O, NULL}, \
    {"_init", cowpy_init_from, METH_O, NULL}, \
    {"_fresh", cowpy_fresh_method, METH_NOARGS, NULL}, \
    {"_thaw", cowpy_thaw_method, METH_NOARGS, NULL}, \
    {"_contents", cowpy_contents_method, METH_NOARGS, NULL}, \
    {"_small", cowpy_small_method, METH_VARARGS, NULL}, \
    {"_hash", cowpy_hash_method, METH_NOARGS, NULL}, \
    {"_equal", cowpy_equal_method, METH_O, NULL}, \
    {"_shares", cowpy_same_method, METH_O, NULL}, \
    {"_attached", cowpy_attached_method, METH_NOARGS, NULL}, \
    {"_origin", cowpy_origin_method, METH_NOARGS, NULL}, \
    {"_set_origin", cowpy_set_origin_method, METH_O, NULL}, \
    {"_root_word", cowpy_root_word_method, METH_NOARGS, NULL}, \
    {"_adopt", cowpy_adopt_method, METH_VARARGS, NULL},

/* diff.c: module function _diff(a, b, Change, MISSING) -> lazy iterator. */
PyObject *cowpy_diff(PyObject *mod, PyObject *args);

/* iter.c: iterator over a snapshot; kind selects what each step yields. */
/* dict.c: registers the Python class of the keys (kind COWPY_IT_KEYS),
 * values or items views, and gives it its C __iter__; -1 with an error. */
int cowpy_register_view(cowpy_state *st, int kind, PyObject *cls);
PyObject *cowpy_iter_new(CowObject *owner, int kind, int reverse);

extern PyType_Spec cowpy_dict_spec, cowpy_list_spec, cowpy_set_spec, cowpy_iter_spec;
extern PyType_Spec cowpy_diff_spec;
extern PyType_Spec cowpy_store_spec, cowpy_array_buffer_spec;

/* ndarray.c: numpy arrays as leaves. */
int cowpy_is_ndarray(PyObject *obj);
int cowpy_ndarray_from(cowpy_state *st, PyObject *obj, cow_val *out);
/* A read-only view of an NDARRAY value (a writable copy when copy). */
PyObject *cowpy_ndarray_to(cowpy_state *st, const cow_val *v, int copy);

/* ext.c: extension leaves (datetime, Decimal, UUID, class records).
 * 1 stored into *out, 0 a type cowstore cannot store (nothing raised), -1
 * raised. */
int cowpy_ext_from(cowpy_state *st, PyObject *obj, cow_val *out);
/* Why cowpy_ext_from refused obj (`helper` "refusal"), or why a key Python
 * hashes has no cowstore hash ("key_refusal"): 1 with new references to the
 * value to blame (*inner: obj, or a value inside a record or tuple), where it
 * sits below obj (*below, a str: ".when[2]", or "") and a hint ("" or why: a
 * class that cannot be imported back); 0 when obj's type is simply not
 * stored; -1 on error. */
int cowpy_ext_refusal(cowpy_state *st, const char *helper, PyObject *obj, PyObject **inner,
                      PyObject **below, PyObject **hint);
/* A fresh object from an SEXT/EXT value (new reference), or NULL raised. */
PyObject *cowpy_ext_to(cowpy_state *st, const cow_val *v);

#endif
