/* What every container object shares: view resync, write-back, copy, thaw.
 * See the view protocol in cowpy.h. */
#include "cowpy.h"

int
cowpy_is_frozen(const CowObject *self)
{
    return cowpy_tag_is_frozen(cowpy_logical_tag(&self->root));
}

int
cowpy_refuse_frozen(CowObject *self)
{
    if (cowpy_resolve(self) < 0)
        return -1;
    return cowpy_is_frozen(self) ? cowpy_begin_write(self) : 0;     /* raises FrozenError */
}

static uint32_t
ident_of(const cow_val *v)
{
    if (v->tag == COW_T_PACKED)
        return v->aux;
    return cow_tag_is_map(v->tag) ? cow_val_getmap(v)->ident : cow_val_getvec(v)->ident;
}

/* What tells two versions of one container apart (a packed one: its word). */
static const void *
node_of(const cow_val *v)
{
    if (v->tag == COW_T_PACKED)
        return (const void *)cow_ref_export(&v->u.w);
    return cow_tag_is_map(v->tag) ? (const void *)cow_val_getmap(v) : (const void *)cow_val_getvec(v);
}

int
cowpy_materialise(CowObject *self)
{
    cow_val general;
    int rc = cow_pack_unpack(&self->root, &general);
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(self), rc);
    if (self->parent)
        cowpy_set_pfrom(self, &self->root);
    cow_val_release(&self->root);
    self->root = general;
    return 0;
}

void
cowpy_detach(CowObject *self)
{
    Py_CLEAR(self->parent);
    cow_val_release(&self->pkey);
}

/* The value now in our slot of the parent into *out (borrowed copy, vec.h),
 * or NULL if the slot is gone. */
static const cow_val *
slot_in_parent(CowObject *self, cow_val *out)
{
    const cow_val *proot = &self->parent->root;
    if (cow_tag_is_map(proot->tag))
        return cow_map_get(cow_val_getmap(proot), &self->pkey, self->phash, out) == COW_FOUND
               ? out : NULL;
    const cow_vecbody *b = &cow_val_getvec(proot)->b;
    if (self->pidx >= b->len)
        return NULL;
    *out = cow_vb_get(b, self->pidx);
    return out;
}

/* Our slot holds a packed container (pack.h P1): the same one we were made
 * from leaves us as we are; another of our identity is materialised afresh
 * (the slot was assigned a version of us); anything else detaches us. */
static int
resync_packed(CowObject *self, const cow_val *cur)
{
    cow_word w = cow_ref_export(&cur->u.w);
    cow_val fresh;
    if (cur->slen != cowpy_logical_tag(&self->root) || cur->aux != ident_of(&self->root)) {
        cowpy_detach(self);
        return 0;
    }
    if (w == self->pfrom && cow_pack_offset(cur) == self->poff)
        return 0;
    cow_val_copy(&fresh, cur);          /* materialised on first use */
    cow_val_release(&self->root);
    self->root = fresh;
    cowpy_set_pfrom(self, cur);
    self->mut++;
    return 0;
}

int
cowpy_resolve_view(CowObject *self)
{
    const cow_val *cur;
    cow_val slot;
    /* A parent that has not moved on may stay packed: our root, read in
     * place from its pack (pack.h P8), is still what its slot holds. */
    if (cowpy_resolve_lazy(self->parent) < 0)
        return -1;
    if (self->parent == NULL || self->parent->mut == self->seen)
        return 0;
    if (cowpy_resolve(self->parent) < 0)
        return -1;
    self->seen = self->parent->mut;
    cur = slot_in_parent(self, &slot);
    if (cur != NULL && cur->tag == COW_T_PACKED)
        return resync_packed(self, cur);
    if (cur == NULL || cur->tag != cowpy_logical_tag(&self->root)
        || ident_of(cur) != ident_of(&self->root)) {
        cowpy_detach(self);          /* the container at our slot was replaced */
        return 0;
    }
    if (node_of(cur) != node_of(&self->root)) {
        cow_val fresh;
        cow_val_copy(&fresh, cur);
        cow_val_release(&self->root);
        self->root = fresh;
        self->mut++;
    }
    return 0;
}

static uint32_t
refcnt_of(const cow_val *v)
{
    return cow_tag_is_map(v->tag) ? cow_val_getmap(v)->refcnt : cow_val_getvec(v)->refcnt;
}

/* Makes every node from the root down to our slot in the parent exclusively
 * owned (copying shared ones; no value changes).  Afterwards, if only that
 * slot and this view hold our container, nothing else can see it, and it may
 * be written in place: nested writes then cost no copies.  1 when the slot
 * holds our very node, 0 when it holds another (our root was copied by a
 * begin_write that no end_write followed -- a discard of an absent element,
 * a write that failed -- and the two references may then be ours and
 * anyone's), -1 with an error raised. */
static int
own_path_to_slot(CowObject *self)
{
    CowObject *parent = self->parent;
    cow_val *proot, cur = cow_val_hole();
    size_t e;
    int rc;
    if (cowpy_begin_write(parent) < 0)
        return -1;
    proot = &parent->root;
    if (cow_tag_is_vec(proot->tag)) {
        cow_vecbody *b = &cow_val_getvec(proot)->b;
        if ((rc = cow_vb_own(b, self->pidx, self->pidx + 1)) == COW_OK)
            cur = cow_vb_get(b, self->pidx);
    }
    else if ((rc = cow_map_find(cow_val_getmap(proot), &self->pkey, self->phash, &e)) == COW_FOUND
             && (rc = cow_vb_own(&cow_val_getmap(proot)->log, 2 * e + 1, 2 * e + 2)) == COW_OK)
        cur = cow_vb_get(&cow_val_getmap(proot)->log, 2 * e + 1);
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(self), rc);
    return cur.tag == self->root.tag && node_of(&cur) == node_of(&self->root);
}

/* A view's container is held by its slot in the parent and by the view:
 * two references, both "ours" once the parent's path is owned. */
enum { VIEW_EXCLUSIVE_REFS = 2 };

int
cowpy_begin_write(CowObject *self)
{
    const cow_val *r = &self->root;
    int rc;
    /* The common write: a detached, unfrozen heap container owned already
     * (its node read straight from the word: it is not stored). */
    if (self->parent == NULL && !cow_word_stored(r->u.w)
        && ((r->tag == COW_T_DICT || r->tag == COW_T_SET) ? ((const cow_map *)r->u.w)->refcnt == 1
            : r->tag == COW_T_LIST && ((const cow_vec *)r->u.w)->refcnt == 1))
        return 0;
    if (cowpy_resolve(self) < 0)
        return -1;
    if (cowpy_is_frozen(self)) {
        PyErr_Format(COWPY_ST(self)->FrozenError,
                     "'%.200s' object is immutable", Py_TYPE(self)->tp_name);
        return -1;
    }
    if (self->parent && refcnt_of(&self->root) == VIEW_EXCLUSIVE_REFS) {
        if ((rc = own_path_to_slot(self)) < 0)
            return -1;
        if (rc == 1 && refcnt_of(&self->root) == VIEW_EXCLUSIVE_REFS)
            return 0;                /* only the parent's slot and we see it */
    }
    rc = cow_tag_is_map(self->root.tag) ? cow_map_own(&self->root.u.w)
                                        : cow_vec_own(&self->root.u.w);
    return rc < 0 ? cowpy_raise_int(COWPY_ST(self), rc) : 0;
}

int cowpy_debug_checks = 1;

#ifdef COW_DEBUG
/* Debug builds (COWSTORE_DEBUG=1) validate the core's invariants after every
 * write, so the whole Python suite doubles as an invariant test.  A check is
 * O(n): containers past this size (the store tests' 10^5-entry maps,
 * written thousands of times) are left to the Criterion tests.  The checks
 * hold for containers made of sound nodes: tests that feed damaged pages
 * (whose nodes a write copies to the heap as they are) turn them off
 * (_cowstore._debug_checks). */
#define COWPY_DEBUG_CHECK_MAX 5000

static int
check_root(CowObject *self)
{
    const cow_val *r = &self->root;
    size_t n = cow_tag_is_map(r->tag) ? cow_map_entries(cow_val_getmap(r))
                                      : cow_val_getvec(r)->b.len;
    if (n > COWPY_DEBUG_CHECK_MAX || !cowpy_debug_checks)
        return 0;
    int rc = cow_tag_is_map(r->tag) ? cow_map_check(cow_val_getmap(r))
                                    : cow_vec_check(&cow_val_getvec(r)->b);
    if (rc < 0)
        PyErr_SetString(PyExc_SystemError, "cowstore core invariant violated");
    return rc < 0 ? -1 : 0;
}
#else
static int check_root(CowObject *self) { return 0; }
#endif

int
cowpy_end_write(CowObject *self)
{
    CowObject *parent = self->parent;
    cow_val child, key;
    int rc;
    self->mut++;
    cowpy_clear_pfrom(self);         /* root and the pack it came from now differ */
    if (check_root(self) < 0)
        return -1;
    if (parent == NULL)
        return 0;
    cow_val_copy(&child, &self->root);
    if (cowpy_begin_write(parent) < 0) {
        cow_val_release(&child);
        return -1;
    }
    if (cow_tag_is_map(parent->root.tag)) {
        cow_val_copy(&key, &self->pkey);
        rc = cow_map_set(cow_val_getmap(&parent->root), key, self->phash, child);
    }
    else
        rc = cow_vb_set(&cow_val_getvec(&parent->root)->b, self->pidx, child);
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(self), rc);
    if (cowpy_end_write(parent) < 0)
        return -1;
    self->seen = parent->mut;
    return 0;
}

void
cowpy_object_dealloc(PyObject *op)
{
    CowObject *self = (CowObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    cow_val_release(&self->root);
    cowpy_clear_pfrom(self);
    cowpy_detach(self);
    Py_CLEAR(self->origin);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* *v (borrowed) -> a new header of its own (owned) with a new identity,
 * sharing every node: O(1). */
static int
clone_root(cowpy_state *st, cow_val *v)
{
    void *c = cow_tag_is_map(v->tag) ? (void *)cow_map_clone(cow_val_getmap(v))
                                     : (void *)cow_vec_clone(cow_val_getvec(v));
    if (c == NULL)
        return cowpy_raise_int(st, COW_ENOMEM);
    v->u.w = cow_word_of(c);
    return 0;
}

PyObject *
cowpy_new_like(PyObject *op, cow_val v)
{
    PyObject *own = COWPY_ST(op)->cls[v.tag];
    PyTypeObject *tp = own ? (PyTypeObject *)own : Py_TYPE(op);
    PyObject *res = tp->tp_alloc(tp, 0);
    if (res == NULL) {
        cow_val_release(&v);
        return NULL;
    }
    ((CowObject *)res)->st = COWPY_ST(op);
    ((CowObject *)res)->root = v;
    ((CowObject *)res)->pkey = cow_val_none();
    ((CowObject *)res)->mut = COWPY_MUT_MADE;
    cowpy_untrack_own(COWPY_ST(op), res, v.tag);
    return res;
}

/* copy() / __copy__: a new, detached container sharing every node: O(1). */
COWPY_ENTRY(extern, PyObject *, cowpy_copy, (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    cow_val v;
    if (cowpy_resolve(self) < 0)
        return NULL;
    v = self->root;
    if (clone_root(COWPY_ST(op), &v) < 0)
        return NULL;
    return cowpy_new_like(op, v);
}

PyObject *
cowpy_new_empty(PyTypeObject *type, cow_tag tag, cow_tag frozen_tag)
{
    cowpy_state *st = cowpy_state_of_type(type);
    PyObject *frozen_cls = st ? st->cls[frozen_tag] : NULL;
    CowObject *self;
    cow_val root;
    if (st == NULL)
        return NULL;
    if (frozen_cls && PyType_IsSubtype(type, (PyTypeObject *)frozen_cls))
        tag = frozen_tag;
    root = cow_tag_is_map(tag) ? cow_val_map(tag, cow_map_new()) : cow_val_vec(tag, cow_vec_new());
    if (root.u.w == 0)
        return cowpy_raise(st, COW_ENOMEM);
    if ((self = (CowObject *)type->tp_alloc(type, 0)) == NULL) {
        cow_val_release(&root);
        return NULL;
    }
    self->st = st;
    self->root = root;
    self->pkey = cow_val_none();
    cowpy_untrack_own(st, (PyObject *)self, tag);
    return (PyObject *)self;
}

static int
same_kind(int a, int b)
{
    if (cow_tag_is_vec(a) || cow_tag_is_vec(b))
        return cow_tag_is_vec(a) && cow_tag_is_vec(b);
    return cow_tag_is_set(a) == cow_tag_is_set(b);
}

static size_t
root_len(const cow_val *root)
{
    return cow_tag_is_map(root->tag) ? cow_map_len(cow_val_getmap(root))
                                     : cow_vec_len(cow_val_getvec(root));
}

COWPY_ENTRY(extern, PyObject *, cowpy_init_from, (PyObject *op, PyObject *src), (op, src))
{
    CowObject *self = (CowObject *)op;
    cowpy_state *st = COWPY_ST(op);
    cow_val v;
    int rc;
    if (cowpy_resolve(self) < 0)
        return NULL;
    if (self->parent != NULL || root_len(&self->root) != 0) {
        PyErr_SetString(PyExc_TypeError, "_init needs an empty, detached container");
        return NULL;
    }
    rc = cow_tag_is_set(self->root.tag) && PyDict_CheckExact(src)
             ? cowpy_set_from_keys(st, src, &v) : cowpy_from_object(st, src, &v);
    if (rc < 0)
        return NULL;
    if (!same_kind(v.tag, self->root.tag)) {
        cow_val_release(&v);
        PyErr_Format(PyExc_TypeError, "cannot initialise a %.200s from a %.200s",
                     Py_TYPE(op)->tp_name, Py_TYPE(src)->tp_name);
        return NULL;
    }
    v.tag = self->root.tag;
    if (refcnt_of(&v) > 1) {           /* taken from a container: new identity */
        cow_val taken = v;
        rc = clone_root(st, &v);
        cow_val_release(&taken);       /* the clone holds its nodes */
        if (rc < 0)
            return NULL;
    }
    cow_val_release(&self->root);
    self->root = v;
    self->mut++;                       /* initialised: no longer fresh */
    Py_RETURN_NONE;
}

COWPY_ENTRY(extern, PyObject *, cowpy_fresh_method, (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    return PyBool_FromLong(self->mut == 0 && self->parent == NULL
                           && root_len(&self->root) == 0);
}

/* __deepcopy__: values are immutable or copied on write, so a deep copy is
 * the same O(1) copy. */
COWPY_ENTRY(extern, PyObject *, cowpy_deepcopy, (PyObject *self, PyObject *memo), (self, memo))
{
    return cowpy_copy_body(self, NULL);
}

/* Spends *budget on the entries v holds, nested ones included (a packed
 * container, a few KiB at most, counts as one entry, or as its own
 * entries with packs_open; an array as its 8-byte words): 0 while it
 * lasts, -1 once spent, the walk stopping there (so it reads at most about
 * budget entries, however big v is). */
static int
spend_entries(const cow_val *v, Py_ssize_t *budget, int packs_open)
{
    size_t n;
    const cow_ndarray_head *head;
    const uint64_t *dims;
    const char *data;
    const cow_vecbody *b;
    cow_vec_iter it;
    const cow_val *e;
    if (v->tag == COW_T_NDARRAY && cow_ndarray_parts(v, &head, &dims, &data) == COW_OK)
        return (*budget -= (Py_ssize_t)(head->nbytes / sizeof(uint64_t)) + 1) < 0 ? -1 : 0;
    if (v->tag == COW_T_PACKED && packs_open && cow_pack_count(v, &n) == COW_OK)
        return (*budget -= (Py_ssize_t)n + 1) < 0 ? -1 : 0;
    if (!cow_tag_is_map(v->tag) && !cow_tag_is_vec(v->tag))
        return --*budget < 0 ? -1 : 0;
    b = cow_tag_is_map(v->tag) ? &cow_val_getmap(v)->log : &cow_val_getvec(v)->b;
    if ((*budget -= (Py_ssize_t)b->len) < 0)
        return -1;
    cow_vec_iter_init(&it, b, 0);
    while ((e = cow_vec_iter_next(&it)) != NULL)
        if ((cow_tag_is_map(e->tag) || cow_tag_is_vec(e->tag) || e->tag == COW_T_NDARRAY
             || (packs_open && e->tag == COW_T_PACKED))
            && spend_entries(e, budget, packs_open) < 0)
            return -1;
    return 0;
}

/* _small(budget, packs_open=False): whether the container holds at most
 * budget entries, nested ones included (JSON output dumps such a value in
 * one piece and streams a bigger one entry by entry, a packed record being
 * small whatever its fields; pickling sends a small one by its contents,
 * counting a packed record's fields too). */
COWPY_ENTRY(extern, PyObject *, cowpy_small_method, (PyObject *op, PyObject *args), (op, args))
{
    CowObject *self = (CowObject *)op;
    Py_ssize_t budget;
    int packs_open = 0;
    if (!PyArg_ParseTuple(args, "n|p:_small", &budget, &packs_open))
        return NULL;
    if (cowpy_resolve(self) < 0)
        return NULL;
    return PyBool_FromLong(spend_entries(&self->root, &budget, packs_open) == 0);
}

COWPY_ENTRY(extern, PyObject *, cowpy_thaw_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    if (cowpy_resolve(self) < 0)
        return NULL;
    return cowpy_thaw(COWPY_ST(op), &self->root);
}

COWPY_ENTRY(extern, PyObject *, cowpy_contents_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    if (cowpy_resolve(self) < 0)
        return NULL;
    return cowpy_contents(COWPY_ST(op), &self->root);
}

/* _hash(): content hash of a frozen container (stable across processes). */
COWPY_ENTRY(extern, PyObject *, cowpy_hash_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    uint64_t h;
    if (cowpy_resolve(self) < 0)
        return NULL;
    if (cow_val_hash(&self->root, &h) < 0) {
        PyErr_Format(PyExc_TypeError, "unhashable type: '%.200s'", Py_TYPE(op)->tp_name);
        return NULL;
    }
    return PyLong_FromSsize_t((Py_ssize_t)(h >> 2));   /* never -1 */
}

int
cowpy_snapshot_mark(CowObject *owner, const cow_val *snap, const cow_val *v, PyObject *res)
{
    if (!cowpy_is_mutable_container(v))
        return 0;
    if (cowpy_resolve(owner) < 0)
        return -1;
    if (owner->root.u.w != snap->u.w && ((CowObject *)res)->parent)
        ((CowObject *)res)->seen = UINT64_MAX;   /* resync from owner first */
    return 0;
}

PyObject *
cowpy_snapshot_value(CowObject *owner, const cow_val *snap, const cow_val *v,
                     const cow_val *key, uint64_t hash, size_t idx)
{
    PyObject *res = cowpy_to_object(owner->st, v, owner, key, hash, idx);
    if (res != NULL && cowpy_snapshot_mark(owner, snap, v, res) < 0)
        Py_CLEAR(res);
    return res;
}

PyObject *
cowpy_swap_contents(PyObject *op, PyObject *other, PyTypeObject *base, const char *what,
                    void (*exchange)(CowObject *a, CowObject *b))
{
    CowObject *a = (CowObject *)op, *b = (CowObject *)other;
    if (!PyObject_TypeCheck(other, base)) {
        PyErr_Format(PyExc_TypeError, "_swap needs a %s", what);
        return NULL;
    }
    if (cowpy_begin_write(a) < 0 || cowpy_begin_write(b) < 0)
        return NULL;
    exchange(a, b);
    if (cowpy_end_write(a) < 0 || cowpy_end_write(b) < 0) {
        exchange(a, b);                 /* a view whose write-back failed: back as it was */
        return NULL;
    }
    Py_RETURN_NONE;
}

int
cowpy_is_ours(cowpy_state *st, PyObject *op)
{
    return PyObject_TypeCheck(op, st->dict_base) || PyObject_TypeCheck(op, st->list_base)
           || PyObject_TypeCheck(op, st->set_base);
}

/* _equal(other): structural equality with another cowstore container. */
COWPY_ENTRY(extern, PyObject *, cowpy_equal_method,
            (PyObject *op, PyObject *other), (op, other))
{
    CowObject *a = (CowObject *)op, *b = (CowObject *)other;
    if (!cowpy_is_ours(COWPY_ST(op), other))
        Py_RETURN_NOTIMPLEMENTED;
    if (cowpy_resolve(a) < 0 || cowpy_resolve(b) < 0)
        return NULL;
    return PyBool_FromLong(cow_val_equal(&a->root, &b->root));
}

/* _shares(other): True when both hold the very same nodes (diff short-cut). */
COWPY_ENTRY(extern, PyObject *, cowpy_same_method, (PyObject *op, PyObject *other), (op, other))
{
    CowObject *a = (CowObject *)op, *b = (CowObject *)other;
    if (!cowpy_is_ours(COWPY_ST(op), other))
        Py_RETURN_FALSE;
    if (cowpy_resolve(a) < 0 || cowpy_resolve(b) < 0)
        return NULL;
    if (cow_tag_is_map(a->root.tag) && cow_tag_is_map(b->root.tag))
        return PyBool_FromLong(cow_vb_same(&cow_val_getmap(&a->root)->log,
                                           &cow_val_getmap(&b->root)->log));
    if (cow_tag_is_vec(a->root.tag) && cow_tag_is_vec(b->root.tag))
        return PyBool_FromLong(cow_vb_same(&cow_val_getvec(&a->root)->b,
                                           &cow_val_getvec(&b->root)->b));
    Py_RETURN_FALSE;
}

/* _attached(): whether writes still reach a parent container (for tests). */
COWPY_ENTRY(extern, PyObject *, cowpy_attached_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    if (cowpy_resolve(self) < 0)
        return NULL;
    return PyBool_FromLong(self->parent != NULL);
}

/* len() of the map-backed bases (dict and set). */
COWPY_ENTRY(extern, Py_ssize_t, cowpy_map_len, (PyObject *op), (op))
{
    CowObject *self = (CowObject *)op;
    size_t n;
    int rc;
    if (cowpy_resolve_lazy(self) < 0)
        return -1;
    if (self->root.tag == COW_T_PACKED)
        return (rc = cow_pack_count(&self->root, &n)) < 0 ? cowpy_raise_int(self->st, rc)
                                                          : (Py_ssize_t)n;
    if (cowpy_resolve(self) < 0)
        return -1;
    return (Py_ssize_t)cow_map_len(cow_val_getmap(&self->root));
}

/* clear() of the map-backed bases. */
COWPY_ENTRY(extern, PyObject *, cowpy_map_clear, (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    if (cowpy_begin_write(self) < 0)
        return NULL;
    cow_map_clear(cow_val_getmap(&self->root));
    if (cowpy_end_write(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}
