/* Iterators over a snapshot of a container: they retain the root they
 * started from, so mutating the container while iterating is safe (unlike
 * dict, which raises RuntimeError; documented).  Nested mutable values come
 * out as views attached to the owner, as d[k] would return them.  Like
 * list's, an iterator that reached its end lets go of the container and
 * stays exhausted. */
#include "cowpy.h"

/* The forward reader of a general map or vector (fwd) holds a packed
 * leaf's 32 values decoded: ~540 bytes, which put the whole object past
 * pymalloc's small-object limit (512), so every iterator, a packed
 * record's included, was malloc'd and freed (~250 instructions of a
 * record's items() loop).  It lives in the object's variable tail
 * instead, sized 0 for an iterator over a packed root, which reads by pc. */
typedef struct {
    PyObject_VAR_HEAD
    cowpy_state *st;
    CowObject *owner;       /* strong reference; NULL once exhausted */
    cow_val snap;           /* retained root at creation */
    size_t pos;             /* next entry / element; counts down when reverse */
    int kind;
    int reverse;
    cow_vec_iter *fwd;      /* forward reads: amortised O(1) per step; in the
                             * object's tail, NULL when packed */
    cow_val rev[2];         /* reverse reads: the entry or element last read
                             * (borrowed copies, vec.h) */
    PyObject *last_item;    /* items() result tuple, reused when unshared */
    PyObject *views[2];     /* the last two records' views, renewed when unshared */
    int turn;               /* which of views the next record's may renew */
    int packed;             /* snap is packed: read in place by pc (pack.h P8) */
    cow_pack_cursor pc;
    PyObject *keys;         /* a packed dict's key objects (its shape's), or NULL */
    int is_map;             /* snap is a general map: entries, not elements */
    size_t end;             /* entries or elements snap holds (it never changes) */
    unsigned long moves;    /* cow_ref_moves when fwd or pc last found their place */
} CowIter;

/* The body the forward reader walks: the general map's entry log, or the
 * vector's. */
static const cow_vecbody *
snap_body(CowIter *it)
{
    return it->is_map ? &cow_val_getmap(&it->snap)->log : &cow_val_getvec(&it->snap)->b;
}

/* A store's map moved since fwd or pc last read (ref.h cow_ref_moves): their
 * pointers into pages are stale, so they find their place again from the
 * snapshot's word, at the position they had reached. */
static int
reseat(CowIter *it)
{
    it->moves = cow_ref_moves;
    if (!it->packed) {
        cow_vec_iter_init(it->fwd, snap_body(it), it->fwd->i);
        return 0;
    }
    unsigned done = it->pc.pos;
    int rc = cow_pack_cursor_init(&it->pc, &it->snap);
    for (unsigned i = 0; i < done && rc >= 0; i++) {
        const char *key;
        size_t klen;
        cow_val v;
        rc = cow_pack_cursor_next(&it->pc, &key, &klen, &v);
    }
    return rc < 0 ? cowpy_raise_int(it->st, rc) : 0;
}

/* A forward iterator over a packed root reads it in place, without
 * materialising it: a record's entries cost no container of their own. */
static int
start_packed(CowIter *it)
{
    const uint8_t *shape;
    size_t len;
    int rc = cow_pack_cursor_init(&it->pc, &it->snap);
    if (rc < 0)
        return cowpy_raise_int(it->st, rc);
    it->packed = 1;
    if ((len = cow_pack_cursor_shape(&it->pc, &shape)) == 0)
        return 0;
    if ((it->keys = cowpy_shape_keys(it->st, shape, len)) == NULL)
        return -1;
    Py_INCREF(it->keys);
    return 0;
}

PyObject *
cowpy_iter_new(CowObject *owner, int kind, int reverse)
{
    cowpy_state *st = COWPY_ST(owner);
    CowIter *it;
    int packed;
    if (cowpy_resolve_lazy(owner) < 0)
        return NULL;
    if ((owner->root.tag != COW_T_PACKED || reverse) && cowpy_resolve(owner) < 0)
        return NULL;
    packed = owner->root.tag == COW_T_PACKED;
    it = PyObject_NewVar(CowIter, st->iter_type, packed ? 0 : (Py_ssize_t)sizeof(cow_vec_iter));
    if (it == NULL)
        return NULL;
    it->st = st;
    it->fwd = packed ? NULL : (cow_vec_iter *)(it + 1);
    it->owner = (CowObject *)Py_NewRef(owner);
    cow_val_copy(&it->snap, &owner->root);
    it->kind = kind;
    it->reverse = reverse;
    it->last_item = NULL;
    it->views[0] = it->views[1] = NULL;
    it->turn = 0;
    it->packed = 0;
    it->keys = NULL;
    it->is_map = 0;
    it->end = 0;
    it->pos = 0;
    it->moves = cow_ref_moves;
    if (packed) {
        if (start_packed(it) < 0) {
            Py_DECREF(it);
            return NULL;
        }
        return (PyObject *)it;
    }
    it->is_map = cow_tag_is_map(it->snap.tag);
    it->end = it->is_map ? cow_map_entries(cow_val_getmap(&it->snap)) : cow_val_getvec(&it->snap)->b.len;
    it->pos = reverse ? it->end : 0;
    cow_vec_iter_init(it->fwd, snap_body(it), 0);
    return (PyObject *)it;
}

static void
iter_dealloc(PyObject *op)
{
    CowIter *it = (CowIter *)op;
    PyTypeObject *tp = Py_TYPE(op);
    cow_val_release(&it->snap);
    Py_XDECREF(it->owner);
    Py_XDECREF(it->last_item);
    Py_XDECREF(it->views[0]);
    Py_XDECREF(it->views[1]);
    Py_XDECREF(it->keys);
    PyObject_Free(op);
    Py_DECREF(tp);
}

/* Next position to yield (its key and value, or element, in *a and *b), or
 * -1 at the end; holes are skipped. */
static Py_ssize_t
next_pos(CowIter *it, const cow_val **a, const cow_val **b)
{
    int is_map = it->is_map;
    if (is_map && !it->reverse) {       /* the common loop: forward over entries */
        while (it->pos < it->end) {
            *a = cow_vec_iter_next(it->fwd);
            *b = cow_vec_iter_next(it->fwd);
            if ((*a)->tag != COW_T_HOLE)
                return (Py_ssize_t)it->pos++;
            it->pos++;
        }
        return -1;
    }
    while (it->reverse ? it->pos > 0 : it->pos < it->end) {
        size_t p = it->reverse ? --it->pos : it->pos++;
        if (!is_map) {
            if (it->reverse) {
                it->rev[0] = cow_vb_get(&cow_val_getvec(&it->snap)->b, p);
                *a = &it->rev[0];
            }
            else
                *a = cow_vec_iter_next(it->fwd);
            return (Py_ssize_t)p;
        }
        it->rev[0] = cow_map_entry_key(cow_val_getmap(&it->snap), p);     /* reverse */
        it->rev[1] = cow_map_entry_val(cow_val_getmap(&it->snap), p);
        *a = &it->rev[0];
        *b = &it->rev[1];
        if ((*a)->tag != COW_T_HOLE)
            return (Py_ssize_t)p;
    }
    return -1;
}

/* The (key, value) tuple, reusing the previous one if nobody kept it. */
static PyObject *
pair_of(CowIter *it, PyObject *pk, PyObject *pv)
{
    PyObject *t = it->last_item;
    if (t && Py_REFCNT(t) == 1) {
        Py_SETREF(((PyTupleObject *)t)->ob_item[0], pk);
        Py_SETREF(((PyTupleObject *)t)->ob_item[1], pv);
        return Py_NewRef(t);
    }
    if ((t = PyTuple_New(2)) == NULL) {
        Py_DECREF(pk);
        Py_DECREF(pv);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, pk);
    PyTuple_SET_ITEM(t, 1, pv);
    Py_XSETREF(it->last_item, Py_NewRef(t));
    return t;
}

static PyObject *
map_step(CowIter *it, cowpy_state *st, size_t e, const cow_val *k, const cow_val *v)
{
    PyObject *pk = NULL, *pv = NULL;
    uint64_t h = 0;
    if (it->kind != COWPY_IT_VALUES && (pk = cowpy_to_object(st, k, NULL, NULL, 0, 0)) == NULL)
        return NULL;
    if (it->kind == COWPY_IT_KEYS)
        return pk;
    if (cowpy_is_mutable_container(v))
        cow_val_hash(k, &h);
    if (!cow_tag_is_map(v->tag) && !cow_tag_is_vec(v->tag) && v->tag != COW_T_PACKED)
        pv = cowpy_scalar_to_object(st, v);     /* no view to make */
    else
        pv = cowpy_snapshot_value(it->owner, &it->snap, v, k, h, e);
    if (pv == NULL) {
        Py_XDECREF(pk);
        return NULL;
    }
    return it->kind == COWPY_IT_VALUES ? pv : pair_of(it, pk, pv);
}

/* At the end: drop the snapshot and the container, as listiterobject
 * clears it_seq, so that nothing more is yielded and nothing kept alive. */
static void
exhaust(CowIter *it)
{
    cow_val_release(&it->snap);     /* leaves it NONE */
    Py_CLEAR(it->owner);
    Py_CLEAR(it->last_item);
    Py_CLEAR(it->views[0]);
    Py_CLEAR(it->views[1]);
    Py_CLEAR(it->keys);
}

/* Entry p of a packed snapshot, v read in place, as owner[k] would return
 * it (k: the key object, a dict's): while owner still holds the very pack,
 * a nested container is a view of owner that needs no resync. */
static PyObject *
packed_value(CowIter *it, const cow_val *v, PyObject *key, size_t p)
{
    cow_val k = cow_val_none();
    uint64_t h = 0;
    PyObject *res;
    if (v->tag != COW_T_PACKED)         /* a pack's containers are all packed */
        return cowpy_scalar_to_object(it->st, v);
    if (!cowpy_is_mutable_container(v))
        return cowpy_to_object(it->st, v, NULL, NULL, 0, 0);
    if (it->owner->root.tag == COW_T_PACKED && it->owner->root.u.w == it->snap.u.w
        && cow_pack_offset(&it->owner->root) == cow_pack_offset(&it->snap))
        return key ? cowpy_to_object_under(it->st, v, it->owner, key)
                   : cowpy_to_object(it->st, v, it->owner, NULL, 0, p);
    if (key && cowpy_store_key(it->st, key, &k, &h) < 0)
        return NULL;
    res = cowpy_snapshot_value(it->owner, &it->snap, v, key ? &k : NULL, h, p);
    cow_val_release(&k);
    return res;
}

static PyObject *
packed_step(CowIter *it)
{
    const char *key = NULL;
    size_t klen = 0, p = it->pc.pos;
    PyObject *k = NULL, *pv;
    cow_val v;
    int rc = cow_pack_cursor_next(&it->pc, &key, &klen, &v);
    if (rc != COW_FOUND) {
        exhaust(it);
        return rc < 0 ? cowpy_raise(it->st, rc) : NULL;
    }
    if (it->keys)
        k = PyTuple_GET_ITEM(it->keys, (Py_ssize_t)p);     /* borrowed */
    if (it->kind == COWPY_IT_KEYS && k)
        return Py_NewRef(k);
    if ((pv = packed_value(it, &v, k, p)) == NULL)
        return NULL;
    return it->kind == COWPY_IT_ITEMS && k ? pair_of(it, Py_NewRef(k), pv) : pv;
}

/* Element p, packed record v, as a view: the view made two records ago is
 * made over for it when nothing else holds it -- `for r in rows` keeps the
 * last record's view bound to r while the next is made, so the one before
 * is free -- saving an object's allocation, set-up and free per record. */
static PyObject *
record_view(CowIter *it, const cow_val *v, size_t p)
{
    PyObject *res = it->views[it->turn];
    if (res && Py_REFCNT(res) == 1 && cowpy_packed_view_renew((CowObject *)res, v, it->owner, p))
        Py_INCREF(res);
    else if ((res = cowpy_to_object(it->st, v, it->owner, NULL, 0, p)) == NULL)
        return NULL;
    else
        Py_XSETREF(it->views[it->turn], Py_NewRef(res));
    it->turn ^= 1;
    if (cowpy_snapshot_mark(it->owner, &it->snap, v, res) < 0)
        Py_CLEAR(res);
    return res;
}

COWPY_ENTRY(static, PyObject *, iter_next, (PyObject *op), (op))
{
    CowIter *it = (CowIter *)op;
    cowpy_state *st = it->st;
    const cow_val *a = NULL, *b = NULL;
    Py_ssize_t p;
    if (it->owner == NULL)
        return NULL;
    if (it->moves != cow_ref_moves && reseat(it) < 0)
        return NULL;
    if (it->packed)
        return packed_step(it);
    if ((p = next_pos(it, &a, &b)) < 0) {
        exhaust(it);
        return NULL;                /* the end (COWPY_ENTRY raises if poison ended it) */
    }
    if (it->is_map)
        return map_step(it, st, (size_t)p, a, b);
    if (a->tag == COW_T_INT)            /* the commonest element: no view to make */
        return PyLong_FromLongLong(a->u.i);
    if (a->tag == COW_T_PACKED && a->slen != COW_T_TUPLE)
        return record_view(it, a, (size_t)p);
    return cowpy_snapshot_value(it->owner, &it->snap, a, NULL, 0, (size_t)p);
}

/* __length_hint__: entries left (an upper bound for maps with holes). */
COWPY_ENTRY(static, PyObject *, iter_length_hint,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowIter *it = (CowIter *)op;
    size_t n;
    if (it->owner == NULL)
        return PyLong_FromLong(0);
    if (it->packed)
        return PyLong_FromSize_t(it->pc.count - it->pc.pos);
    n = it->end;
    return PyLong_FromSize_t(it->reverse ? it->pos : n - it->pos);
}

static PyMethodDef iter_methods[] = {
    {"__length_hint__", iter_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot iter_slots[] = {
    {Py_tp_dealloc, iter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, iter_next},
    {Py_tp_methods, iter_methods},
    {0, NULL},
};

PyType_Spec cowpy_iter_spec = {
    .name = "cowstore._cowstore.Iterator",
    .basicsize = sizeof(CowIter),
    .itemsize = 1,                      /* the tail: bytes of fwd, or none */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = iter_slots,
};
