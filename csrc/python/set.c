/* SetBase: the C half of CowSet and FrozenSet, a map whose values are all
 * None (cowstore/_set.py adds the set algebra). */
#include "cowpy.h"

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

COWPY_ENTRY(static, int, set_contains, (PyObject *op, PyObject *key), (op, key))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val probe;
    uint64_t h;
    size_t e;
    int owned = 0, rc;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if ((rc = probe_element(op, key, &probe, &h, &owned)) <= 0)
        return rc;
    rc = cow_map_find(map_of(op), &probe, h, &e);
    if (owned)
        cow_val_release(&probe);
    return rc < 0 ? cowpy_raise_int(st, rc) : rc == COW_FOUND;
}

COWPY_ENTRY(static, PyObject *, set_add, (PyObject *op, PyObject *key), (op, key))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val k;
    uint64_t h;
    int rc;
    if (cowpy_store_key_in(SELF, key, &k, &h) < 0)
        return NULL;
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&k);
        return NULL;
    }
    if ((rc = cow_map_set(map_of(op), k, h, cow_val_none())) < 0)
        return cowpy_raise(st, rc);
    if (cowpy_end_write(SELF) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _discard(x) -> True if x was present and is now removed. */
COWPY_ENTRY(static, PyObject *, set_discard_flag, (PyObject *op, PyObject *key), (op, key))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val probe;
    uint64_t h;
    int owned = 0, rc;
    if (cowpy_begin_write(SELF) < 0)
        return NULL;
    if ((rc = probe_element(op, key, &probe, &h, &owned)) <= 0)
        return rc < 0 ? NULL : Py_NewRef(Py_False);
    rc = cow_map_del(map_of(op), &probe, h, NULL);
    if (owned)
        cow_val_release(&probe);
    if (rc < 0)
        return cowpy_raise(st, rc);
    if (rc == COW_FOUND && cowpy_end_write(SELF) < 0)
        return NULL;
    return PyBool_FromLong(rc == COW_FOUND);
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
    {"_discard", set_discard_flag, METH_O, NULL},
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
