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
    if (self->parent != NULL)
        Py_CLEAR(self->pkey_obj);       /* a view's half of the union (cowpy.h) */
    Py_CLEAR(self->parent);
    cow_val_release(&self->pkey);
}

int
cowpy_parent_key(CowObject *self)
{
    cow_val k;
    uint64_t h;
    if (self->pkey_obj == NULL)
        return 0;
    if (cowpy_store_key(self->st, self->pkey_obj, &k, &h) < 0)
        return -1;
    cow_val_release(&self->pkey);
    self->pkey = k;
    self->phash = h;
    Py_CLEAR(self->pkey_obj);
    return 0;
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
    if (cur->slen != cowpy_logical_tag(&self->root) || cur->aux != cow_container_ident(&self->root)) {
        cowpy_detach(self);
        return 0;
    }
    if (w == self->pfrom && cow_pack_offset(cur) == self->poff)
        return 0;
    cow_val_copy(&fresh, cur);          /* materialised on first use */
    cow_val_release(&self->root);
    self->root = fresh;
    cowpy_set_pfrom(self, cur);
    cowpy_root_changed(self);
    return 0;
}

/* Brings view self up to date with its parent, which is up to date: the
 * same container read afresh from its slot, or detached when the slot now
 * holds another one. */
static int
resync_with_parent(CowObject *self)
{
    CowObject *parent = self->parent;
    const cow_val *cur;
    cow_val slot;
    /* A parent that has not moved on may stay packed: our root, read in
     * place from its pack (pack.h P8), is still what its slot holds. */
    if (parent == NULL || parent->mut == self->seen)
        return 0;
    if ((parent->root.tag == COW_T_PACKED && cowpy_materialise(parent) < 0)
        || cowpy_parent_key(self) < 0)
        return -1;
    self->seen = parent->mut;
    cur = slot_in_parent(self, &slot);
    if (cur != NULL && cur->tag == COW_T_PACKED)
        return resync_packed(self, cur);
    if (cur == NULL || cur->tag != cowpy_logical_tag(&self->root)
        || cow_container_ident(cur) != cow_container_ident(&self->root)) {
        cowpy_detach(self);          /* the container at our slot was replaced */
        return 0;
    }
    if (node_of(cur) != node_of(&self->root)) {
        cow_val fresh;
        cow_val_copy(&fresh, cur);
        cow_val_release(&self->root);
        self->root = fresh;
        cowpy_root_changed(self);
    }
    return 0;
}

/* Views of one chain resolved without memory of their own; a longer chain
 * (a walk down deep data, each view holding the one it was read from)
 * takes an array. */
#define CHAIN_ON_STACK 32

/* The views from self up whose chain may have moved on (each one not
 * synced since the last change, up to a detached container or a synced
 * view) into *chain, bottom first; *chain is on_stack or a PyMem array
 * the caller frees.  Their count, or -1 with MemoryError. */
static Py_ssize_t
stale_chain(CowObject *self, CowObject ***chain, CowObject **on_stack)
{
    Py_ssize_t n = 0, cap = CHAIN_ON_STACK;
    *chain = on_stack;
    for (CowObject *v = self; !cowpy_view_is_current(v); v = v->parent) {
        if (n == cap) {
            CowObject **grown = PyMem_New(CowObject *, 2 * (size_t)cap);
            if (grown == NULL) {
                if (*chain != on_stack)
                    PyMem_Free(*chain);
                *chain = on_stack;
                PyErr_NoMemory();
                return -1;
            }
            memcpy(grown, *chain, sizeof grown[0] * (size_t)n);
            if (*chain != on_stack)
                PyMem_Free(*chain);
            *chain = grown;
            cap *= 2;
        }
        (*chain)[n++] = v;
    }
    return n;
}

int
cowpy_resolve_view(CowObject *self)
{
    CowObject *on_stack[CHAIN_ON_STACK], **chain;
    Py_ssize_t n = stale_chain(self, &chain, on_stack);
    int rc = n < 0 ? -1 : 0;
    /* Top down, so each view's parent is up to date when it resyncs: an
     * iteration, where a recursion up the chain overflowed the C stack on a
     * walk 100,000 views deep, and was repeated for every read. */
    while (n > 0 && rc == 0) {
        CowObject *v = chain[--n];
        if ((rc = resync_with_parent(v)) == 0)
            v->synced = v->st->changes;
    }
    if (chain != on_stack)
        PyMem_Free(chain);
    return rc;
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
static int begin_write(CowObject *self);

static int
own_path_to_slot(CowObject *self)
{
    CowObject *parent = self->parent;
    cow_val *proot, cur = cow_val_hole();
    size_t e;
    int rc;
    if (cowpy_parent_key(self) < 0)
        return -1;
    /* One C call per level of the chain above (chain_fits checked it). */
    if (Py_EnterRecursiveCall(" while writing into a nested container"))
        return -1;
    rc = begin_write(parent);
    Py_LeaveRecursiveCall();
    if (rc < 0)
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

/* The C calls a write into a view makes beyond one per level of the chain
 * above it (own_path_to_slot, write_back), with a margin. */
#define WRITE_CALLS_EXTRA 2

/* Whether a write into view self, and its write back up the chain, fit the
 * recursion limit: RecursionError if not, raised before anything is
 * written (a write stopped halfway up would leave the view changed and its
 * parents not). */
static int
chain_fits(const CowObject *self)
{
    Py_ssize_t need = WRITE_CALLS_EXTRA, entered = 0;
    for (const CowObject *v = self->parent; v != NULL; v = v->parent)
        need++;
    while (entered < need && Py_EnterRecursiveCall(" while writing into a nested container") == 0)
        entered++;
    for (Py_ssize_t i = 0; i < entered; i++)
        Py_LeaveRecursiveCall();
    return entered == need ? 0 : -1;
}

int
cowpy_begin_write(CowObject *self)
{
    const cow_val *r = &self->root;
    /* The common write: a detached, unfrozen heap container owned already
     * (its node read straight from the word: it is not stored). */
    if (self->parent == NULL && !cow_word_stored(r->u.w)
        && ((r->tag == COW_T_DICT || r->tag == COW_T_SET) ? ((const cow_map *)r->u.w)->refcnt == 1
            : r->tag == COW_T_LIST && ((const cow_vec *)r->u.w)->refcnt == 1))
        return 0;
    if (self->parent != NULL && chain_fits(self) < 0)
        return -1;
    return begin_write(self);
}

/* cowpy_begin_write for any container, a parent up the chain included. */
static int
begin_write(CowObject *self)
{
    int rc;
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
    if (r->tag == COW_T_PACKED)
        return 0;                       /* a pack is checked as it is read (pack.h P3) */
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

/* cowpy_end_write's write of `value` (self's root, or its pack) into self's
 * slot of the parent, then the parent's own end_write.  A pack written so
 * is then what pfrom names, as for a view read from a packed slot. */
static int
write_back(CowObject *self, const cow_val *value)
{
    CowObject *parent = self->parent;
    cow_val child, key;
    int rc;
    if (cowpy_parent_key(self) < 0)
        return -1;
    cow_val_copy(&child, value);
    if (begin_write(parent) < 0) {
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
    self->synced = self->st->changes;    /* the chain above holds our root */
    if (value->tag == COW_T_PACKED)
        cowpy_set_pfrom(self, value);    /* our slot holds that pack (P1) */
    return 0;
}

/* A view whose slot held it packed (pfrom) writes it back packed, if it
 * still packs (pack.h P1, P2, P5): a record written in place stays at
 * about its packed size (the benchmark's six fields: ~80 bytes a record
 * once each was written, against ~340 as general maps), so updating every
 * record of a dataset does not multiply its memory.  (A scalar written
 * into a field makes its pack without this: dict.c packed_set.)  The view
 * keeps the general container it wrote, with pfrom naming the pack its
 * slot now holds (the state of a view materialised from its slot), so its
 * next write is in place again and only packs anew.  What no longer packs (a
 * list grown past 32 items, a set value, a container assigned into it)
 * goes back general; a detached container is never packed again: its
 * writes stay O(1).  1 with the pack in *packed, 0 when it stays general,
 * -1 with an error raised. */
static int
repack_for_slot(CowObject *self, cow_val *packed)
{
    int rc;
    if (self->root.tag == COW_T_PACKED)
        return 0;                       /* written as a pack already (cowpy_write_packed) */
    if ((rc = cow_pack_repack(&self->root, packed)) == COW_NOT_FOUND)
        return 0;
    return rc < 0 ? cowpy_raise_int(COWPY_ST(self), rc) : 1;
}

int
cowpy_end_write(CowObject *self)
{
    cow_val packed;
    int rc, was_packed = self->pfrom != 0, repacked = 0;
    cowpy_root_changed(self);
    cowpy_clear_pfrom(self);         /* root and the pack it came from now differ */
    if (check_root(self) < 0)
        return -1;
    if (self->parent == NULL)
        return 0;
    /* A parent whose own slot holds it packed is packed again after our
     * write back, with us inside: packing us first would be lost work. */
    if (was_packed && self->parent->pfrom == 0 && (repacked = repack_for_slot(self, &packed)) < 0)
        return -1;
    /* One C call per level of the chain (chain_fits checked it): past the
     * recursion limit, a RecursionError rather than an overflowed C stack. */
    if (Py_EnterRecursiveCall(" while writing into a nested container"))
        rc = -1;
    else {
        rc = write_back(self, repacked ? &packed : &self->root);
        Py_LeaveRecursiveCall();
    }
    if (repacked)
        cow_val_release(&packed);
    return rc;
}

int
cowpy_write_packed(CowObject *self, cow_val packed)
{
    if (chain_fits(self) < 0) {
        cow_val_release(&packed);
        return -1;
    }
    cow_val_release(&self->root);
    self->root = packed;
    return cowpy_end_write(self);
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

/* tp_dealloc of the package's own classes (cowpy_adopt_dealloc): what
 * subtype_dealloc does for a class that adds nothing to the C base, without
 * its walks up the bases for slots, a dict and weak references (~60 of
 * the ~800 instructions a view read out of a container costs).  The trashcan
 * stays where freeing a view frees its parent: a chain of views frees one
 * into the next.  A __del__ set on the class later runs as subtype_dealloc
 * runs it.  A user's subclass keeps subtype_dealloc, which calls this as
 * its base's dealloc. */
static void
own_class_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    const CowObject *parent;
    PyObject_GC_UnTrack(op);
    if (tp->tp_dealloc == own_class_dealloc && tp->tp_finalize != NULL) {
        PyObject_GC_Track(op);
        if (PyObject_CallFinalizerFromDealloc(op) < 0)
            return;                     /* resurrected */
        PyObject_GC_UnTrack(op);
    }
    parent = ((CowObject *)op)->parent; /* after __del__, which may detach us */
    if (parent == NULL || Py_REFCNT(parent) > 1) {
        cowpy_object_dealloc(op);       /* frees nothing of ours in turn */
        return;
    }
    Py_TRASHCAN_BEGIN(op, own_class_dealloc)
    cowpy_object_dealloc(op);
    Py_TRASHCAN_END
}

void
cowpy_adopt_dealloc(cowpy_state *st, PyTypeObject *cls)
{
    const PyTypeObject *base = cls->tp_base;
    while (base != NULL && base != st->dict_base && base != st->list_base && base != st->set_base)
        base = base->tp_base;
    /* Only a class a class statement made over one of our C bases, adding
     * no dict, weak references, slots or finalizer: subtype_dealloc would
     * have nothing to do but call the base's. */
    if (base != NULL && PyType_HasFeature(cls, Py_TPFLAGS_HEAPTYPE) && PyType_IS_GC(cls)
        && cls->tp_dictoffset == 0 && cls->tp_weaklistoffset == 0 && cls->tp_finalize == NULL
        && cls->tp_del == NULL && cls->tp_basicsize == base->tp_basicsize
        && cls->tp_free == PyObject_GC_Del)
        cls->tp_dealloc = own_class_dealloc;
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
    cowpy_root_changed(self);          /* initialised: no longer fresh */
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
    if (owner->root.u.w != snap->u.w && ((CowObject *)res)->parent) {
        ((CowObject *)res)->seen = UINT64_MAX;   /* resync from owner first */
        ((CowObject *)res)->synced = 0;
    }
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
