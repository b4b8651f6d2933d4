/* DictBase: the C half of CowDict and FrozenDict (cowstore/_dict.py adds the
 * rest of the dict API).  Hot paths live here: d[k], d[k] = v, del d[k],
 * k in d, len, iteration, get, pop, setdefault, copy. */
#include "cowpy.h"
#include "fast_get.h"
#include <structmember.h>              /* T_OBJECT_EX, READONLY: a view's slot */

#define SELF ((CowObject *)op)

static cow_map *
map_of(PyObject *op)
{
    return cow_val_getmap(&SELF->root);
}

/* Looks key up: 1 found (its stored key and value in kv[0], kv[1]), 0
 * absent, -1 error. */
static int
dict_get_entry(PyObject *op, PyObject *key, cow_val kv[2], uint64_t *hash)
{
    cow_val probe;
    int owned = 0, rc;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if ((rc = cowpy_lookup_key(SELF, key, &probe, hash, &owned)) <= 0)
        return rc;
    rc = cow_map_get_entry(map_of(op), &probe, *hash, kv);
    if (owned)
        cow_val_release(&probe);
    return rc < 0 ? cowpy_raise_int(COWPY_ST(op), rc) : rc == COW_FOUND;
}

/* A nested container v, read in place (pack.h P8) or found by the fast walk
 * of a heap map, as the view d[key] returns: attached to us under key,
 * stored as a key is (no Python code runs before v is used: key is an
 * exact str or int, or a packed root's key). */
static PyObject *
nested_view(PyObject *op, PyObject *key, const cow_val *v)
{
    return cowpy_to_object_under(COWPY_ST(op), v, SELF, key);
}

/* The answer of the quick lookups below when dict_get_entry must give it. */
#define LOOKUP_GENERAL 2

/* d[key] served in place from a packed root (pack.h), for str key of
 * UTF-8 [s, s + n): 1 found (*res set unless res is NULL), 0 absent, -1
 * error. */
static int
packed_lookup(PyObject *op, PyObject *key, const char *s, size_t n, PyObject **res)
{
    cow_val v;
    int rc = cow_pack_lookup_memo(&SELF->root, s, n, cowpy_field_memo(key), &v);
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(op), rc);
    if (rc == COW_FOUND && res) {
        *res = v.tag == COW_T_PACKED ? nested_view(op, key, &v)
                                     : cowpy_scalar_to_object(COWPY_ST(op), &v);
        if (*res == NULL)
            return -1;
    }
    return rc == COW_FOUND;
}

/* The value kv[1] of key kv[0] as a Python object (a view for nested
 * containers). */
static PyObject *
value_of(PyObject *op, const cow_val *kv, uint64_t hash)
{
    return cowpy_to_object(COWPY_ST(op), &kv[1], SELF, &kv[0], hash, 0);
}

/* d[key] for the commonest case -- a str or int key (cowpy_fast_get), a
 * general map on the heap: 1 found (*res set unless res is NULL), 0 absent,
 * -1 error, LOOKUP_GENERAL when the general path must answer.  A nested
 * container is made a view of us here too, keyed by key as the map stores
 * it (an exact str or int is stored as itself): d["a"]["b"] looked "a" up
 * a second time by the general walk (~600 instructions). */
static int
fast_lookup(PyObject *op, PyObject *key, PyObject **res)
{
    cow_val v;
    int rc = cowpy_fast_get(map_of(op), key, res ? &v : NULL);
    if (rc == COW_NOT_FOUND || (rc == COW_FOUND && res == NULL))
        return rc;
    if (rc != COW_FOUND)
        return LOOKUP_GENERAL;
    if (cow_tag_is_map(v.tag) || cow_tag_is_vec(v.tag) || v.tag == COW_T_PACKED)
        *res = nested_view(op, key, &v);
    else
        *res = cowpy_scalar_to_object(COWPY_ST(op), &v);
    return *res ? 1 : -1;
}

/* d[key] for a str or int key, the view resynced first: read in place from
 * a packed root (str keys), or by the fast walks from a heap map.  As
 * fast_lookup; LOOKUP_GENERAL leaves it to dict_get_entry (another key
 * type, lone surrogates, stored maps). */
static int
quick_lookup(PyObject *op, PyObject *key, PyObject **res)
{
    const cow_val *root = &SELF->root;
    const char *s;
    size_t n;
    int is_str = Py_IS_TYPE(key, &PyUnicode_Type);
    if (!is_str && !Py_IS_TYPE(key, &PyLong_Type))
        return LOOKUP_GENERAL;
    if (cowpy_resolve_lazy(SELF) < 0)
        return -1;
    if (root->tag == COW_T_PACKED)
        return is_str && cowpy_str_utf8(key, &s, &n) == 0 ? packed_lookup(op, key, s, n, res)
                                                          : LOOKUP_GENERAL;
    if (cow_tag_is_map(root->tag) && !cow_word_stored(root->u.w))
        return fast_lookup(op, key, res);
    return LOOKUP_GENERAL;
}

/* d[key] for an absent key: a subclass's __missing__(key) answers, as
 * dict_subscript calls it (looked up on the type, bound as a method);
 * otherwise KeyError. */
static PyObject *
missing_key(PyObject *op, PyObject *key)
{
    static PyObject *name;          /* "__missing__", interned for the process */
    PyObject *missing, *bound, *res;
    descrgetfunc bind;
    if ((PyObject *)Py_TYPE(op) == COWPY_ST(op)->cls[cowpy_logical_tag(&SELF->root)])
        missing = NULL;             /* the package's own class has none */
    else if (name == NULL && (name = PyUnicode_InternFromString("__missing__")) == NULL)
        return NULL;
    else
        missing = _PyType_Lookup(Py_TYPE(op), name);   /* borrowed */
    if (missing == NULL) {
        _PyErr_SetKeyError(key);
        return NULL;
    }
    bind = Py_TYPE(missing)->tp_descr_get;
    if ((bound = bind ? bind(missing, op, (PyObject *)Py_TYPE(op)) : Py_NewRef(missing)) == NULL)
        return NULL;
    res = PyObject_CallOneArg(bound, key);
    Py_DECREF(bound);
    return res;
}

COWPY_ENTRY(static, PyObject *, dict_subscript, (PyObject *op, PyObject *key), (op, key))
{
    cow_val kv[2];
    uint64_t hash;
    PyObject *res;
    int rc = quick_lookup(op, key, &res);
    if (rc != LOOKUP_GENERAL)
        return rc == 1 ? res : rc == 0 ? missing_key(op, key) : NULL;
    if ((rc = dict_get_entry(op, key, kv, &hash)) == 1)
        return value_of(op, kv, hash);
    return rc == 0 ? missing_key(op, key) : NULL;
}

/* d[key] = v for a view of a packed record whose shape has key (an exact
 * str) and a scalar v (borrowed): the record written as a new pack of its
 * own, with no general map made and packed again (cow_pack_with_field;
 * pack.h P1).  1 done, 0 when the general path must write it, -1 error. */
static int
packed_set(PyObject *op, PyObject *key, const cow_val *v)
{
    const char *s;
    size_t n;
    cow_val packed;
    int rc;
    if (SELF->parent == NULL || !Py_IS_TYPE(key, &PyUnicode_Type))
        return 0;               /* detached: materialised once, its writes then O(1) */
    if (cowpy_resolve_lazy(SELF) < 0)
        return -1;
    if (SELF->parent == NULL || SELF->root.tag != COW_T_PACKED || SELF->root.slen != COW_T_DICT
        || cowpy_str_utf8(key, &s, &n) < 0)
        return 0;
    if ((rc = cow_pack_with_field(&SELF->root, s, n, cowpy_field_memo(key), v, &packed))
        == COW_NOT_FOUND)
        return 0;
    if (rc < 0)
        return cowpy_raise_int(COWPY_ST(op), rc);
    return cowpy_write_packed(SELF, packed) < 0 ? -1 : 1;
}

static int
dict_set(PyObject *op, PyObject *key, PyObject *value)
{
    cowpy_state *st = COWPY_ST(op);
    cow_val k, v;
    uint64_t h;
    size_t log_len;
    int rc;
    if (cowpy_store_key_in(SELF, key, &k, &h) < 0)
        return -1;
    if (cowpy_entry_from_object(st, value, &v) < 0) {
        cow_val_release(&k);
        return -1;
    }
    if ((rc = packed_set(op, key, &v)) != 0) {
        cow_val_release(&k);
        cow_val_release(&v);
        return rc < 0 ? -1 : 0;
    }
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&k);
        cow_val_release(&v);
        return -1;
    }
    log_len = map_of(op)->log.len;
    if ((rc = cow_map_set(map_of(op), k, h, v)) < 0)
        return cowpy_raise_int(st, rc);
    if (map_of(op)->log.len > log_len)              /* a new entry: the log grew */
        cowpy_batch_full_tail(&map_of(op)->log, 2);
    return cowpy_end_write(SELF);
}

/* Removes key: 1 removed (value in *out if out), 0 absent, -1 error. */
static int
dict_remove(PyObject *op, PyObject *key, cow_val *out)
{
    cowpy_state *st = COWPY_ST(op);
    cow_val probe;
    uint64_t h;
    int owned = 0, rc;
    if (cowpy_refuse_frozen(SELF) < 0)
        return -1;
    if ((rc = cowpy_lookup_key(SELF, key, &probe, &h, &owned)) <= 0)
        return rc;
    if ((rc = cowpy_begin_write(SELF)) == 0)
        rc = cow_map_del(map_of(op), &probe, h, out);
    if (owned)
        cow_val_release(&probe);
    if (rc < 0)
        return PyErr_Occurred() ? -1 : cowpy_raise_int(st, rc);
    if (rc == COW_NOT_FOUND)
        return 0;
    return cowpy_end_write(SELF) < 0 ? -1 : 1;
}

COWPY_ENTRY(static, int, dict_ass_subscript,
            (PyObject *op, PyObject *key, PyObject *value), (op, key, value))
{
    int rc;
    if (value)
        return dict_set(op, key, value);
    if ((rc = dict_remove(op, key, NULL)) == 0)
        _PyErr_SetKeyError(key);
    return rc > 0 ? 0 : -1;
}

COWPY_ENTRY(static, int, dict_contains, (PyObject *op, PyObject *key), (op, key))
{
    cow_val kv[2];
    uint64_t hash;
    int rc = quick_lookup(op, key, NULL);
    return rc != LOOKUP_GENERAL ? rc : dict_get_entry(op, key, kv, &hash);
}

COWPY_ENTRY(static, PyObject *, dict_get,
            (PyObject *op, PyObject *const *args, Py_ssize_t nargs), (op, args, nargs))
{
    cow_val kv[2];
    uint64_t hash;
    int rc;
    PyObject *res;
    if (!_PyArg_CheckPositional("get", nargs, 1, 2))
        return NULL;
    if ((rc = quick_lookup(op, args[0], &res)) != LOOKUP_GENERAL) {
        if (rc < 0)
            return NULL;
        return rc ? res : Py_NewRef(nargs > 1 ? args[1] : Py_None);
    }
    if ((rc = dict_get_entry(op, args[0], kv, &hash)) < 0)
        return NULL;
    if (rc)
        return value_of(op, kv, hash);
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

/* pop(key[, default]) */
COWPY_ENTRY(static, PyObject *, dict_pop,
            (PyObject *op, PyObject *const *args, Py_ssize_t nargs), (op, args, nargs))
{
    cow_val out;
    PyObject *res;
    int rc;
    if (!_PyArg_CheckPositional("pop", nargs, 1, 2))
        return NULL;
    if ((rc = dict_remove(op, args[0], &out)) < 0)
        return NULL;
    if (rc == 0) {
        if (nargs > 1)
            return Py_NewRef(args[1]);
        _PyErr_SetKeyError(args[0]);
        return NULL;
    }
    res = cowpy_to_object(COWPY_ST(op), &out, NULL, NULL, 0, 0);
    cow_val_release(&out);
    return res;
}

COWPY_ENTRY(static, PyObject *, dict_popitem, (PyObject *op, PyObject *unused), (op, unused))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val k, v;
    PyObject *pk, *pv;
    int rc;
    if (cowpy_begin_write(SELF) < 0)
        return NULL;
    if (cow_map_len(map_of(op)) == 0) {
        PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
        return NULL;
    }
    if ((rc = cow_map_popitem(map_of(op), &k, &v)) < 0)
        return cowpy_raise(st, rc);
    pk = cowpy_to_object(st, &k, NULL, NULL, 0, 0);
    pv = cowpy_to_object(st, &v, NULL, NULL, 0, 0);
    cow_val_release(&k);
    cow_val_release(&v);
    if (cowpy_end_write(SELF) < 0 || pk == NULL || pv == NULL) {
        Py_XDECREF(pk);
        Py_XDECREF(pv);
        return NULL;
    }
    return Py_BuildValue("(NN)", pk, pv);
}

/* setdefault(key, default=None) */
COWPY_ENTRY(static, PyObject *, dict_setdefault,
            (PyObject *op, PyObject *const *args, Py_ssize_t nargs), (op, args, nargs))
{
    cow_val kv[2];
    uint64_t hash;
    int rc;
    if (!_PyArg_CheckPositional("setdefault", nargs, 1, 2) || cowpy_refuse_frozen(SELF) < 0)
        return NULL;
    if ((rc = dict_get_entry(op, args[0], kv, &hash)) < 0)
        return NULL;
    if (rc == 0) {
        if (dict_set(op, args[0], nargs > 1 ? args[1] : Py_None) < 0)
            return NULL;
        if ((rc = dict_get_entry(op, args[0], kv, &hash)) <= 0)
            return NULL;
    }
    return value_of(op, kv, hash);
}

/* _iter(kind, reverse): iterator over keys (0), values (1) or items (2). */
COWPY_ENTRY(static, PyObject *, dict_iter_kind, (PyObject *op, PyObject *args), (op, args))
{
    int kind, reverse = 0;
    if (!PyArg_ParseTuple(args, "i|p:_iter", &kind, &reverse))
        return NULL;
    if (kind < COWPY_IT_KEYS || kind > COWPY_IT_ITEMS) {
        PyErr_SetString(PyExc_ValueError, "bad iterator kind");
        return NULL;
    }
    return cowpy_iter_new(SELF, kind, reverse);
}

COWPY_ENTRY(static, PyObject *, dict_iter, (PyObject *op), (op))
{
    return cowpy_iter_new(SELF, COWPY_IT_KEYS, 0);
}

/* ---- views ----------------------------------------------------------------
 * keys(), values() and items() return the classes of cowstore/_dict.py,
 * made here without running their Python __init__, and each class's
 * __iter__ is a C method: a loop over a record's items() runs no Python
 * frame of ours (it cost about a third of the loop). */

/* "_mapping", a view's container: interned at the first registration, for
 * the process (view_iter has no module state: the view classes are not
 * ours). */
static PyObject *view_mapping_name;

/* The address of the "_mapping" slot (MappingView's __slots__) of view, an
 * instance of type tp, or NULL when tp's "_mapping" is something else (a
 * user's property): read and written there, a view skips the generic
 * attribute protocol (about 290 of the 5,900 instructions a six-key
 * record's items() loop took). */
static PyObject **
view_mapping_slot(PyTypeObject *tp, PyObject *view)
{
    PyObject *d = _PyType_Lookup(tp, view_mapping_name);     /* borrowed, cached */
    PyMemberDef *m;
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
        return NULL;
    m = ((PyMemberDescrObject *)d)->d_member;
    return m->type == T_OBJECT_EX && !(m->flags & READONLY) ? (PyObject **)((char *)view + m->offset)
                                                            : NULL;
}

static PyObject *
make_view(PyObject *op, int kind)
{
    PyTypeObject *cls = (PyTypeObject *)COWPY_ST(op)->view_cls[kind];
    PyObject *view, **slot;
    if (cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowstore view classes not registered");
        return NULL;
    }
    if ((view = cls->tp_alloc(cls, 0)) == NULL)
        return NULL;
    if ((slot = view_mapping_slot(cls, view)) != NULL)
        *slot = Py_NewRef(op);          /* a new object's slot is NULL */
    else if (PyObject_SetAttr(view, view_mapping_name, op) < 0)
        Py_CLEAR(view);
    return view;
}

static PyObject *dict_keys(PyObject *op, PyObject *unused) { return make_view(op, COWPY_IT_KEYS); }
static PyObject *dict_values(PyObject *op, PyObject *unused) { return make_view(op, COWPY_IT_VALUES); }
static PyObject *dict_items(PyObject *op, PyObject *unused) { return make_view(op, COWPY_IT_ITEMS); }

/* The iterator collections.abc's view class of this kind gives: for a
 * view a user made of a mapping that is not ours (its _iter is ours). */
static PyObject *
abc_view_iter(PyObject *view, int kind)
{
    static const char *const abc_names[COWPY_VIEW_KINDS] = {"KeysView", "ValuesView", "ItemsView"};
    PyObject *abc = PyImport_ImportModule("collections.abc"), *cls = NULL, *res = NULL;
    if (abc != NULL && (cls = PyObject_GetAttrString(abc, abc_names[kind])) != NULL)
        res = PyObject_CallMethod(cls, "__iter__", "O", view);
    Py_XDECREF(cls);
    Py_XDECREF(abc);
    return res;
}

/* iter(view): an iterator of the view's container, or of whatever
 * _mapping a user gave the view: through its _iter, else as
 * collections.abc's views iterate. */
static PyObject *
view_iter(PyObject *view, int kind)
{
    PyObject *res, *m, **slot = view_mapping_slot(Py_TYPE(view), view);
    if (slot && *slot)
        m = Py_NewRef(*slot);
    else if ((m = PyObject_GetAttr(view, view_mapping_name)) == NULL)
        return NULL;                    /* unset: AttributeError, as Python's getattr */
    if (Py_TYPE(m)->tp_iter == dict_iter) {
        int outer = cow_ref_scope_enter();
        res = cowpy_iter_new((CowObject *)m, kind, 0);
        int err = cow_ref_scope_leave(outer);
        if (err != COW_OK)
            res = cowpy_read_failed(res, m, err);
    }
    else if (PyObject_HasAttrString(m, "_iter"))
        res = PyObject_CallMethod(m, "_iter", "i", kind);
    else
        res = abc_view_iter(view, kind);
    Py_DECREF(m);
    return res;
}

static PyObject *keys_iter(PyObject *view) { return view_iter(view, COWPY_IT_KEYS); }
static PyObject *values_iter(PyObject *view) { return view_iter(view, COWPY_IT_VALUES); }
static PyObject *items_iter(PyObject *view) { return view_iter(view, COWPY_IT_ITEMS); }

static const getiterfunc view_iters[COWPY_VIEW_KINDS] = {keys_iter, values_iter, items_iter};

/* A slot wrapper __iter__ for cls that calls fn, as list.__iter__ calls
 * list's tp_iter: made with the slot definition list's wrapper carries,
 * which CPython recognises when the attribute is set, making fn the
 * class's tp_iter itself.  iter(view) then calls fn directly, not a method
 * found by name and called through vectorcall (about 150 of the 5,500
 * instructions a six-key record's items() loop took).  Were that
 * recognition to go, the wrapper would still be called, through the
 * generic slot. */
static PyObject *
iter_slot_wrapper(PyObject *cls, getiterfunc fn)
{
    PyObject *proto = PyDict_GetItemString(PyList_Type.tp_dict, "__iter__");    /* borrowed */
    if (proto == NULL || !Py_IS_TYPE(proto, &PyWrapperDescr_Type)) {
        PyErr_SetString(PyExc_RuntimeError, "list.__iter__ is not a slot wrapper");
        return NULL;
    }
    return PyDescr_NewWrapper((PyTypeObject *)cls, ((PyWrapperDescrObject *)proto)->d_base,
                              (void *)fn);
}

int
cowpy_register_view(cowpy_state *st, int kind, PyObject *cls)
{
    PyObject *descr;
    int rc;
    if (view_mapping_name == NULL && (view_mapping_name = PyUnicode_InternFromString("_mapping")) == NULL)
        return -1;
    if ((descr = iter_slot_wrapper(cls, view_iters[kind])) == NULL)
        return -1;
    rc = PyObject_SetAttrString(cls, "__iter__", descr);
    Py_DECREF(descr);
    if (rc < 0)
        return -1;
    Py_INCREF(cls);
    Py_XSETREF(st->view_cls[kind], cls);
    return 0;
}

/* An empty map's update by heap map src: dst takes a clone of src's
 * entries, O(1) whatever their number, sharing src's nodes (the commonest
 * update, CowDict().update(d) or CowDict.fromkeys(keys), was a set per
 * entry). */
static int
take_entries(cow_map *dst, const cow_map *src)
{
    cow_map *taken = cow_map_clone(src);
    if (taken == NULL)
        return COW_ENOMEM;
    cow_map_swap(dst, taken);
    cow_map_release(taken);                 /* dst's holes, if any */
    return COW_OK;
}

/* Sets every entry of src in dst, all or nothing (as dict's update): for
 * two or more, dst is cloned first, O(1), and the clone's entries come back
 * if a set fails part way (a clone makes the sets copy their paths:
 * d.update({k: v}) 351 -> 581 ns with one; a single set fails whole by
 * itself).  COW_OK or an error. */
static int
set_entries(cow_map *dst, const cow_map *src)
{
    cow_map *saved = NULL;
    cow_val k, v;
    uint64_t h;
    int rc = COW_OK;
    if (src->live > 1 && (saved = cow_map_clone(dst)) == NULL)
        return COW_ENOMEM;
    for (size_t e = 0; e < cow_map_entries(src) && rc == COW_OK; e++) {
        k = cow_map_entry_key(src, e);
        if (k.tag == COW_T_HOLE)
            continue;
        v = cow_map_entry_val(src, e);
        cow_val_retain(&k);
        cow_val_retain(&v);
        cow_val_hash(&k, &h);
        rc = cow_map_set(dst, k, h, v);
    }
    if (rc < 0 && saved != NULL)
        cow_map_swap(dst, saved);
    if (saved != NULL)
        cow_map_release(saved);
    return rc;
}

/* _merge(src): insert every pair of a dict or cowstore dict, one write. */
COWPY_ENTRY(static, PyObject *, dict_merge, (PyObject *op, PyObject *src), (op, src))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val other;
    int rc;
    if (cowpy_from_object(st, src, &other) < 0)
        return NULL;
    if (other.tag != COW_T_DICT && other.tag != COW_T_FDICT) {
        cow_val_release(&other);
        PyErr_SetString(PyExc_TypeError, "_merge needs a mapping");
        return NULL;
    }
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&other);
        return NULL;
    }
    if (map_of(op)->live == 0 && !cow_word_stored(other.u.w))
        rc = take_entries(map_of(op), cow_val_getmap(&other));
    else
        rc = set_entries(map_of(op), cow_val_getmap(&other));
    cow_val_release(&other);
    if (rc < 0)
        return cowpy_raise(st, rc);
    if (cowpy_end_write(SELF) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
dict_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return cowpy_new_empty(type, COW_T_DICT, COW_T_FDICT);
}

static PyMethodDef dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL,
     "D.get(k[,d]) -> D[k] if k in D, else d (default None)."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL,
     "D.pop(k[,d]) -> remove k and return its value, else d or KeyError."},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return the last (key, value) pair."},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "D.setdefault(k[,d]) -> D.get(k,d), also set D[k]=d if k not in D."},
    {"clear", cowpy_map_clear, METH_NOARGS, "Remove all items."},
    {"_iter", dict_iter_kind, METH_VARARGS, NULL},
    {"keys", dict_keys, METH_NOARGS, "D.keys() -> a set-like view of D's keys."},
    {"values", dict_values, METH_NOARGS, "D.values() -> a view of D's values."},
    {"items", dict_items, METH_NOARGS, "D.items() -> a set-like view of D's items."},
    {"_merge", dict_merge, METH_O, NULL},
    COWPY_COMMON_METHODS
    {NULL, NULL, 0, NULL},
};

static PyType_Slot dict_slots[] = {
    {Py_tp_new, dict_new},
    {Py_tp_dealloc, cowpy_object_dealloc},
    {Py_tp_iter, dict_iter},
    {Py_tp_methods, dict_methods},
    {Py_mp_length, cowpy_map_len},
    {Py_mp_subscript, dict_subscript},
    {Py_mp_ass_subscript, dict_ass_subscript},
    {Py_sq_contains, dict_contains},
    {Py_tp_doc, "C base of CowDict and FrozenDict."},
    {0, NULL},
};

PyType_Spec cowpy_dict_spec = {
    .name = "cowstore._cowstore.DictBase",
    .basicsize = sizeof(CowObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = dict_slots,
};
