/* Iterators over a snapshot of a container: they retain the root they
 * started from, so mutating the container while iterating is safe (unlike
 * dict, which raises RuntimeError; documented).  Nested mutable values come
 * out as views attached to the owner, as d[k] would return them. */
#include "cowpy.h"

typedef struct {
    PyObject_HEAD
    CowObject *owner;       /* strong reference */
    cow_val snap;           /* retained root at creation */
    size_t pos;             /* next entry / element; counts down when reverse */
    int kind;
    int reverse;
} CowIter;

PyObject *
cowpy_iter_new(CowObject *owner, int kind, int reverse)
{
    cowpy_state *st = cowpy_state_of((PyObject *)owner);
    CowIter *it;
    if (cowpy_resolve(owner) < 0)
        return NULL;
    if ((it = PyObject_New(CowIter, st->iter_type)) == NULL)
        return NULL;
    Py_INCREF(owner);
    it->owner = owner;
    it->snap = owner->root;
    cow_val_retain(&it->snap);
    it->kind = kind;
    it->reverse = reverse;
    it->pos = cow_tag_is_map(it->snap.tag) ? cow_map_entries(it->snap.u.map)
                                           : it->snap.u.vec->b.len;
    if (!reverse)
        it->pos = 0;
    return (PyObject *)it;
}

static void
iter_dealloc(PyObject *op)
{
    CowIter *it = (CowIter *)op;
    PyTypeObject *tp = Py_TYPE(op);
    cow_val_release(&it->snap);
    Py_DECREF(it->owner);
    PyObject_Free(op);
    Py_DECREF(tp);
}

/* Next position to yield, or -1 at the end; holes are skipped. */
static Py_ssize_t
next_pos(CowIter *it)
{
    int is_map = cow_tag_is_map(it->snap.tag);
    size_t n = is_map ? cow_map_entries(it->snap.u.map) : it->snap.u.vec->b.len;
    while (it->reverse ? it->pos > 0 : it->pos < n) {
        size_t p = it->reverse ? --it->pos : it->pos++;
        if (!is_map || cow_map_entry_key(it->snap.u.map, p)->tag != COW_T_HOLE)
            return (Py_ssize_t)p;
    }
    return -1;
}

/* A value of the snapshot, attached to the owner.  If the owner has moved on
 * since the snapshot, the view must resync before its first use. */
static PyObject *
view_of(CowIter *it, cowpy_state *st, const cow_val *v, const cow_val *k, uint64_t h,
        size_t idx)
{
    PyObject *res = cowpy_to_object(st, v, it->owner, k, h, idx);
    if (res && cowpy_resolve(it->owner) == 0 && (cow_tag_is_map(v->tag) || cow_tag_is_vec(v->tag))
        && it->owner->root.u.map != it->snap.u.map && ((CowObject *)res)->parent)
        ((CowObject *)res)->seen = UINT64_MAX;
    return res;
}

static PyObject *
map_step(CowIter *it, cowpy_state *st, size_t e)
{
    const cow_map *m = it->snap.u.map;
    const cow_val *k = cow_map_entry_key(m, e), *v = cow_map_entry_val(m, e);
    PyObject *pk = NULL, *pv = NULL;
    uint64_t h = 0;
    if (it->kind != COWPY_IT_VALUES && (pk = cowpy_to_object(st, k, NULL, NULL, 0, 0)) == NULL)
        return NULL;
    if (it->kind == COWPY_IT_KEYS)
        return pk;
    if (v->tag == COW_T_DICT || v->tag == COW_T_LIST || v->tag == COW_T_SET)
        cow_val_hash(k, &h);
    if ((pv = view_of(it, st, v, k, h, e)) == NULL) {
        Py_XDECREF(pk);
        return NULL;
    }
    return it->kind == COWPY_IT_VALUES ? pv : Py_BuildValue("(NN)", pk, pv);
}

static PyObject *
iter_next(PyObject *op)
{
    CowIter *it = (CowIter *)op;
    cowpy_state *st = cowpy_state_of((PyObject *)it->owner);
    Py_ssize_t p = next_pos(it);
    if (p < 0)
        return NULL;
    if (cow_tag_is_map(it->snap.tag))
        return map_step(it, st, (size_t)p);
    return view_of(it, st, cow_vb_get(&it->snap.u.vec->b, (size_t)p), NULL, 0, (size_t)p);
}

/* __length_hint__: entries left (an upper bound for maps with holes). */
static PyObject *
iter_length_hint(PyObject *op, PyObject *unused)
{
    CowIter *it = (CowIter *)op;
    size_t n = cow_tag_is_map(it->snap.tag) ? cow_map_entries(it->snap.u.map)
                                            : it->snap.u.vec->b.len;
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
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = iter_slots,
};
