/* SetBase: the C half of CowSet and FrozenSet, a map whose values are all
 * None (cowstore/_set.py adds the set algebra). */
#include "cowpy.h"
#include "fast_get.h"
#include "cowstore/set_algebra.h"

#define SELF ((CowObject *)op)

static cow_map *
map_of(PyObject *op)
{
    return cow_val_getmap(&SELF->root);
}

/* cowpy_lookup_key for an element, except that a set stands for the
 * frozenset of its elements, as in set's `in`, remove and discard. */
static int
probe_element(PyObject *op, PyObject *key, cow_val *out, uint64_t *hash, int *owned)
{
    PyObject *frozen;
    int rc = cowpy_lookup_key(SELF, key, out, hash, owned);
    if (rc >= 0 || !PySet_Check(key) || !PyErr_ExceptionMatches(PyExc_TypeError))
        return rc;
    PyErr_Clear();
    if ((frozen = PyFrozenSet_New(key)) == NULL)
        return -1;
    rc = cowpy_lookup_key(SELF, frozen, out, hash, owned);      /* *out owns its bytes */
    Py_DECREF(frozen);
    return rc;
}

/* Whether the set holds key: 1, 0, or -1 with an error raised. */
static int
contains_one(PyObject *op, PyObject *key)
{
    cow_val probe;
    uint64_t h;
    size_t e;
    int owned = 0, rc;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if (!cow_word_stored(SELF->root.u.w)
        && (rc = cowpy_fast_get(map_of(op), key, NULL)) != COW_ASK_GENERAL)
        return rc;                      /* a str or int key, by the fast walk */
    if ((rc = probe_element(op, key, &probe, &h, &owned)) <= 0)
        return rc;
    rc = cow_map_find(map_of(op), &probe, h, &e);
    if (owned)
        cow_val_release(&probe);
    return rc < 0 ? cowpy_raise_int(COWPY_ST(op), rc) : rc == COW_FOUND;
}

COWPY_ENTRY(static, int, set_contains, (PyObject *op, PyObject *key), (op, key))
{
    return contains_one(op, key);
}

/* Adds key: 0, or -1 with an error raised. */
static int
add_one(PyObject *op, PyObject *key)
{
    cow_val k;
    uint64_t h;
    int rc;
    if (cowpy_store_key_in(SELF, key, &k, &h) < 0)
        return -1;
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&k);
        return -1;
    }
    if ((rc = cow_map_set(map_of(op), k, h, cow_val_none())) < 0)
        return cowpy_raise_int(COWPY_ST(op), rc);
    return cowpy_end_write(SELF);
}

COWPY_ENTRY(static, PyObject *, set_add, (PyObject *op, PyObject *key), (op, key))
{
    return add_one(op, key) < 0 ? NULL : Py_NewRef(Py_None);
}

/* Removes key if present: 1 removed, 0 absent, -1 error. */
static int
discard_one(PyObject *op, PyObject *key)
{
    cow_val probe;
    uint64_t h;
    int owned = 0, rc;
    if (cowpy_begin_write(SELF) < 0)
        return -1;
    if ((rc = probe_element(op, key, &probe, &h, &owned)) <= 0)
        return rc;
    rc = cow_map_del(map_of(op), &probe, h, NULL);
    if (owned)
        cow_val_release(&probe);
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(op), rc);
    if (rc == COW_FOUND && cowpy_end_write(SELF) < 0)
        return -1;
    return rc == COW_FOUND;
}

COWPY_ENTRY(static, PyObject *, set_discard, (PyObject *op, PyObject *key), (op, key))
{
    return discard_one(op, key) < 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_remove, (PyObject *op, PyObject *key), (op, key))
{
    int rc = discard_one(op, key);
    if (rc == 0)
        _PyErr_SetKeyError(key);
    return rc <= 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_pop, (PyObject *op, PyObject *unused), (op, unused))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val k, v;
    PyObject *res;
    int rc;
    if (cowpy_begin_write(SELF) < 0)
        return NULL;
    if (cow_map_len(map_of(op)) == 0) {
        PyErr_SetString(PyExc_KeyError, "pop from an empty set");
        return NULL;
    }
    if ((rc = cow_map_popitem(map_of(op), &k, &v)) < 0)
        return cowpy_raise(st, rc);
    cow_val_release(&v);
    res = cowpy_to_object(st, &k, NULL, NULL, 0, 0);
    cow_val_release(&k);
    if (cowpy_end_write(SELF) < 0)
        Py_CLEAR(res);
    return res;
}

COWPY_ENTRY(static, PyObject *, set_iter, (PyObject *op), (op))
{
    return cowpy_iter_new(SELF, COWPY_IT_KEYS, 0);
}

/* ---- bulk operations: the set algebra of cowstore/_set.py ----------------
 * Between two sets of ours (CowSet, FrozenSet: their own classes, so no
 * subclass's __iter__ or __contains__ is bypassed) the core does the work
 * on the maps' keys (set_algebra.h), making no Python object.  With any
 * other iterable the loop runs here, element by element through the single
 * operations above, each its own write, so that a user's __eq__ or iterator
 * that touches this set meets it consistent. */

/* Whether obj is a set of our own classes (not a subclass). */
static int
is_own_set(cowpy_state *st, PyObject *obj)
{
    return (PyObject *)Py_TYPE(obj) == st->cls[COW_T_SET]
           || (PyObject *)Py_TYPE(obj) == st->cls[COW_T_FSET];
}

/* A snapshot of obj's map (a new reference, in *out) when obj is a set of
 * ours: 1; 0 when it is anything else; -1 with an error raised. */
static int
own_set_snapshot(PyObject *op, PyObject *obj, cow_val *out)
{
    if (!is_own_set(COWPY_ST(op), obj))
        return 0;
    if (cowpy_resolve((CowObject *)obj) < 0)
        return -1;
    cow_val_copy(out, &((CowObject *)obj)->root);
    return 1;
}

/* The bulk operations. */
typedef enum bulk_op {
    BULK_ADD,           /* update: add each element */
    BULK_REMOVE,        /* difference_update: discard each */
    BULK_TOGGLE,        /* symmetric_difference_update: discard, else add */
    BULK_KEEP,          /* intersection_update: keep those in other */
    BULK_DROP,          /* difference_update walking self: drop those in other */
} bulk_op;

/* Ends a bulk write whose core call returned rc: 0, or -1 with an error
 * raised.  A change made in place may have stopped half way (an allocation
 * failing, corrupt pages): what it made stays made, as set's methods leave
 * it, and is written back like any change -- else a view's parent would not
 * see it -- before the core's error is raised. */
static int
bulk_end_write(PyObject *op, int rc)
{
    if (cowpy_end_write(SELF) < 0)
        return -1;
    return rc < 0 ? cowpy_raise_int(COWPY_ST(op), rc) : 0;
}

/* One bulk operation on our map with the map of a set of ours, snap
 * (released): 0, or -1 with an error raised. */
static int
bulk_core(PyObject *op, bulk_op how, cow_val *snap)
{
    const cow_map *src = cow_val_getmap(snap);
    int rc = cowpy_begin_write(SELF);
    if (rc == 0) {
        cow_map *dst = map_of(op);
        rc = how == BULK_ADD ? cow_set_add_keys(dst, src, NULL)
             : how == BULK_REMOVE ? cow_set_remove_keys(dst, src)
             : how == BULK_TOGGLE ? cow_set_toggle_keys(dst, src)
             : cow_set_keep_keys(dst, src, how == BULK_KEEP);
        rc = bulk_end_write(op, rc);
    }
    cow_val_release(snap);
    return rc;
}

/* An element of an iterable a bulk method walks must be hashable, as set's
 * methods hash each (TypeError otherwise): only `in`, remove and discard
 * let a set stand for its frozenset (probe_element).  0, or -1 raised. */
static int
hashable_element(PyObject *item)
{
    return PyObject_Hash(item) == -1 ? -1 : 0;
}

/* BULK_ADD, BULK_REMOVE or BULK_TOGGLE with one element: 0 or -1. */
static int
bulk_one(PyObject *op, bulk_op how, PyObject *item)
{
    int rc;
    if (how == BULK_ADD)
        return add_one(op, item);
    rc = discard_one(op, item);
    return how == BULK_TOGGLE && rc == 0 ? add_one(op, item) : rc < 0 ? -1 : 0;
}

/* A filter by other's `in` (cow_set_keep): keeps an element whose
 * membership is `keep`. */
typedef struct contains_filter {
    cowpy_state *st;
    PyObject *other;
    int keep;
} contains_filter;

static int
in_other_as_wanted(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    contains_filter *f = ctx;
    PyObject *obj = cowpy_to_object(f->st, key, NULL, NULL, 0, 0);
    int in = obj ? PySequence_Contains(f->other, obj) : -1;
    Py_XDECREF(obj);
    return in < 0 ? COW_EINVAL : in == f->keep;      /* EINVAL: raised here */
}

/* BULK_KEEP or BULK_DROP by other's `in`: filters a clone of our map (ours
 * alone, whatever other's __contains__ does to this set), then puts it in
 * place.  0 or -1. */
static int
keep_by_contains(PyObject *op, bulk_op how, PyObject *other)
{
    contains_filter f = {COWPY_ST(op), other, how == BULK_KEEP};
    cow_map *kept;
    int rc;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if ((kept = cow_map_clone(map_of(op))) == NULL)
        return cowpy_raise_int(f.st, COW_ENOMEM);
    if ((rc = cow_set_filter(kept, in_other_as_wanted, &f)) < 0)
        rc = PyErr_Occurred() ? -1 : cowpy_raise_int(f.st, rc);
    else if ((rc = cowpy_begin_write(SELF)) == 0) {
        cow_map_swap(map_of(op), kept);
        rc = cowpy_end_write(SELF);
    }
    cow_map_release(kept);
    return rc;
}

/* Applies `how` with other: 0, or -1 with an error raised (what came
 * before it applied, as set's own methods leave it). */
static int
bulk_apply(PyObject *op, bulk_op how, PyObject *other)
{
    PyObject *it, *item;
    cow_val snap;
    int rc = own_set_snapshot(op, other, &snap);
    if (rc != 0)
        return rc < 0 ? -1 : bulk_core(op, how, &snap);
    if (how == BULK_KEEP || how == BULK_DROP)
        return keep_by_contains(op, how, other);
    if ((it = PyObject_GetIter(other)) == NULL)
        return -1;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        if ((rc = hashable_element(item)) == 0)
            rc = bulk_one(op, how, item);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : 0;
}

COWPY_ENTRY(static, PyObject *, set_add_all, (PyObject *op, PyObject *other), (op, other))
{
    return bulk_apply(op, BULK_ADD, other) < 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_discard_all, (PyObject *op, PyObject *other), (op, other))
{
    return bulk_apply(op, BULK_REMOVE, other) < 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_toggle_all, (PyObject *op, PyObject *other), (op, other))
{
    return bulk_apply(op, BULK_TOGGLE, other) < 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_keep_in, (PyObject *op, PyObject *other), (op, other))
{
    return bulk_apply(op, BULK_KEEP, other) < 0 ? NULL : Py_NewRef(Py_None);
}

COWPY_ENTRY(static, PyObject *, set_drop_in, (PyObject *op, PyObject *other), (op, other))
{
    return bulk_apply(op, BULK_DROP, other) < 0 ? NULL : Py_NewRef(Py_None);
}

/* Adds each key of the map in *from that the map in *in holds (both
 * released): 0 or -1. */
static int
add_found_core(PyObject *op, cow_val *from, cow_val *in)
{
    int rc = cowpy_begin_write(SELF);
    if (rc == 0) {
        rc = cow_set_add_keys(map_of(op), cow_val_getmap(from), cow_val_getmap(in));
        rc = bulk_end_write(op, rc);
    }
    cow_val_release(from);
    cow_val_release(in);
    return rc;
}

/* Adds each element of iterable that `among` holds: 0 or -1. */
static int
add_found(PyObject *op, PyObject *iterable, PyObject *among)
{
    cow_val from, in;
    PyObject *it, *item;
    int rc = own_set_snapshot(op, among, &in);
    if (rc > 0) {
        if ((rc = own_set_snapshot(op, iterable, &from)) > 0)
            return add_found_core(op, &from, &in);
        cow_val_release(&in);
    }
    if (rc < 0 || (it = PyObject_GetIter(iterable)) == NULL)
        return -1;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        if ((rc = hashable_element(item)) == 0 && (rc = PySequence_Contains(among, item)) > 0)
            rc = add_one(op, item);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : 0;
}

/* _add_found(iterable, among): adds each element of iterable that the set
 * among holds -- an intersection keeping iterable's elements, in its
 * order, as set's keeps the side it walks. */
COWPY_ENTRY(static, PyObject *, set_add_found, (PyObject *op, PyObject *args), (op, args))
{
    PyObject *iterable, *among;
    if (!PyArg_ParseTuple(args, "OO!:_add_found", &iterable, COWPY_ST(op)->set_base, &among))
        return NULL;
    return add_found(op, iterable, among) < 0 ? NULL : Py_NewRef(Py_None);
}

/* Whether we hold every element of iterable (want_all) or some element:
 * 1 or 0, -1 with an error raised.  A subclass of ours is asked by its own
 * `in`, as the Python loops this replaced asked it. */
static int
holds_elements(PyObject *op, PyObject *iterable, int want_all)
{
    PyObject *it, *item;
    cow_val snap;
    int own = is_own_set(COWPY_ST(op), op);
    int rc = cowpy_resolve(SELF), answer = want_all;
    if (rc == 0 && own && (rc = own_set_snapshot(op, iterable, &snap)) > 0) {
        const cow_map *a = cow_val_getmap(&snap);
        rc = want_all ? cow_set_all_in(a, map_of(op)) : cow_set_any_in(a, map_of(op));
        cow_val_release(&snap);
        return rc < 0 ? cowpy_raise_int(COWPY_ST(op), rc) : rc;
    }
    if (rc < 0 || (it = PyObject_GetIter(iterable)) == NULL)
        return -1;
    while (rc == 0 && answer == want_all && (item = PyIter_Next(it)) != NULL) {
        if ((rc = hashable_element(item)) == 0
            && (rc = own ? contains_one(op, item) : PySequence_Contains(op, item)) >= 0
            && rc != want_all)
            answer = !want_all;         /* one missing (all) or one found (any) */
        rc = rc < 0 ? -1 : 0;
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : answer;
}

COWPY_ENTRY(static, PyObject *, set_holds_all, (PyObject *op, PyObject *iterable), (op, iterable))
{
    int rc = holds_elements(op, iterable, 1);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

COWPY_ENTRY(static, PyObject *, set_holds_any, (PyObject *op, PyObject *iterable), (op, iterable))
{
    int rc = holds_elements(op, iterable, 0);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

/* Exchanges two sets' entries (cowpy_swap_contents). */
static void
swap_maps(CowObject *a, CowObject *b)
{
    cow_map_swap(map_of((PyObject *)a), map_of((PyObject *)b));
}

/* _swap(other): exchanges the elements of this set and other (a set too),
 * each keeping its identity (cowpy_swap_contents): the in-place operators
 * change a copy and swap it in, so a MemoryError leaves the set as it was. */
COWPY_ENTRY(static, PyObject *, set_swap, (PyObject *op, PyObject *other), (op, other))
{
    return cowpy_swap_contents(op, other, COWPY_ST(op)->set_base, "set", swap_maps);
}

static PyObject *
set_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return cowpy_new_empty(type, COW_T_SET, COW_T_FSET);
}

static PyMethodDef set_methods[] = {
    {"add", set_add, METH_O, "Add an element to a set."},
    {"pop", set_pop, METH_NOARGS, "Remove and return the most recently added element."},
    {"clear", cowpy_map_clear, METH_NOARGS, "Remove all elements from this set."},
    {"discard", set_discard, METH_O,
     "Remove an element from a set if it is a member.\n\nUnlike set.remove(), the discard() method does not raise\nan exception when an element is missing from the set."},
    {"remove", set_remove, METH_O,
     "Remove an element from a set; it must be a member.\n\nIf the element is not a member, raise a KeyError."},
    {"_add_all", set_add_all, METH_O, NULL},
    {"_discard_all", set_discard_all, METH_O, NULL},
    {"_toggle_all", set_toggle_all, METH_O, NULL},
    {"_keep_in", set_keep_in, METH_O, NULL},
    {"_drop_in", set_drop_in, METH_O, NULL},
    {"_add_found", set_add_found, METH_VARARGS, NULL},
    {"_holds_all", set_holds_all, METH_O, NULL},
    {"_holds_any", set_holds_any, METH_O, NULL},
    {"_swap", set_swap, METH_O, NULL},
    COWPY_COMMON_METHODS
    {NULL, NULL, 0, NULL},
};

static PyType_Slot set_slots[] = {
    {Py_tp_new, set_new},
    {Py_tp_dealloc, cowpy_object_dealloc},
    {Py_tp_iter, set_iter},
    {Py_tp_methods, set_methods},
    {Py_sq_length, cowpy_map_len},
    {Py_sq_contains, set_contains},
    {Py_tp_doc, "C base of CowSet and FrozenSet."},
    {0, NULL},
};

PyType_Spec cowpy_set_spec = {
    .name = "cowstore._cowstore.SetBase",
    .basicsize = sizeof(CowObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = set_slots,
};
