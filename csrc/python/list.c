/* ListBase: the C half of CowList and FrozenList (cowstore/_list.py adds the
 * rest of the list API).  Index, append and pop at the end are O(log32 n);
 * insert, delete and slice assignment away from the end rebuild the vector,
 * O(n) like list's memmove, a leaf at a time: the leaves before the change
 * are shared, the rest joined (cow_vb_append_range; docs/semantics.md). */
#include "cowpy.h"

#define SELF ((CowObject *)op)

static cow_vecbody *
body_of(PyObject *op)
{
    return &cow_val_getvec(&SELF->root)->b;
}

COWPY_ENTRY(static, Py_ssize_t, list_len, (PyObject *op), (op))
{
    size_t n;
    int rc;
    if (cowpy_resolve_lazy(SELF) < 0)
        return -1;
    if (SELF->root.tag == COW_T_PACKED)      /* served in place (pack.h) */
        return (rc = cow_pack_count(&SELF->root, &n)) < 0 ? cowpy_raise_int(COWPY_ST(op), rc)
                                                          : (Py_ssize_t)n;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    return (Py_ssize_t)body_of(op)->len;
}

static PyObject *
item_at(PyObject *op, size_t i)
{
    cow_val v = cow_vb_get(body_of(op), i);
    return cowpy_to_object(COWPY_ST(op), &v, SELF, NULL, 0, i);
}

/* l[i] of a packed root, in place (pack.h; a nested container as a view
 * of it, P8): the item, NULL with an error, or NULL without one when the
 * general path must answer (an index out of range). */
static PyObject *
packed_item(PyObject *op, Py_ssize_t i)
{
    cow_val v;
    int rc = i < 0 ? COW_NOT_FOUND : cow_pack_index(&SELF->root, (size_t)i, &v);
    if (rc == COW_FOUND)
        return cowpy_to_object(COWPY_ST(op), &v, SELF, NULL, 0, (size_t)i);
    if (rc < 0)
        cowpy_raise_int(COWPY_ST(op), rc);
    return NULL;
}

COWPY_ENTRY(static, PyObject *, list_item, (PyObject *op, Py_ssize_t i), (op, i))
{
    PyObject *res;
    if (cowpy_resolve_lazy(SELF) < 0)
        return NULL;
    if (SELF->root.tag == COW_T_PACKED && ((res = packed_item(op, i)) || PyErr_Occurred()))
        return res;
    if (cowpy_resolve(SELF) < 0)
        return NULL;
    if (i < 0 || (size_t)i >= body_of(op)->len) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    return item_at(op, (size_t)i);
}

/* ---- converting incoming items ------------------------------------------ */

typedef struct {
    cow_val *vals;
    size_t n;
} val_array;

static void
vals_release(val_array *a)
{
    cow_vals_release(a->vals, a->n);
    PyMem_Free(a->vals);
    a->vals = NULL;
    a->n = 0;
}

/* Appends v (taken over) to a, doubling its room when full. */
static int
vals_push(val_array *a, size_t *room, cow_val v)
{
    cow_val *grown;
    if (a->n == *room) {
        *room = *room ? 2 * *room : 8;
        if ((grown = PyMem_Realloc(a->vals, *room * sizeof(cow_val))) == NULL) {
            cow_val_release(&v);
            PyErr_NoMemory();
            return -1;
        }
        a->vals = grown;
    }
    a->vals[a->n++] = v;
    return 0;
}

/* Converts every item of an iterable, read fully before anything changes
 * (so nothing is half inserted).  Lists and tuples are read in place; other
 * iterables item by item: their __length_hint__ is only a hint, never an
 * allocation.  not_iterable, if given, replaces the TypeError's message. */
static int
vals_from_iterable(cowpy_state *st, PyObject *iterable, val_array *out, const char *not_iterable)
{
    PyObject *it = NULL, *item;
    size_t room = 0;
    cow_val v;
    out->vals = NULL;
    out->n = 0;
    if (PyList_CheckExact(iterable) || PyTuple_CheckExact(iterable)) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(iterable); i++)
            if (cowpy_entry_from_item(st, PySequence_Fast_GET_ITEM(iterable, i), i, &v) < 0
                || vals_push(out, &room, v) < 0)
                goto fail;
        if (cowpy_batch(st, out->vals, out->n) < 0)
            goto fail;
        return 0;
    }
    if ((it = PyObject_GetIter(iterable)) == NULL) {
        if (not_iterable && PyErr_ExceptionMatches(PyExc_TypeError))
            PyErr_SetString(PyExc_TypeError, not_iterable);
        goto fail;
    }
    for (Py_ssize_t i = 0; (item = PyIter_Next(it)) != NULL; i++) {
        int rc = cowpy_entry_from_item(st, item, i, &v);
        Py_DECREF(item);
        if (rc < 0 || vals_push(out, &room, v) < 0)
            goto fail;
    }
    if (PyErr_Occurred() || cowpy_batch(st, out->vals, out->n) < 0)
        goto fail;
    Py_DECREF(it);
    return 0;
fail:
    Py_XDECREF(it);
    vals_release(out);
    return -1;
}

/* ---- splicing ------------------------------------------------------------ */

static int
push_copy(cow_vecbody *dst, const cow_val *v)
{
    cow_val c;
    cow_val_copy(&c, v);
    return cow_vb_push(dst, c);
}

/* A write built on a body of its own lands whole or not at all: with rc
 * COW_OK, fresh takes b's place (the old body released); otherwise fresh
 * is released and b stays as it was.  Returns rc. */
static int
adopt_body(cow_vecbody *b, cow_vecbody *fresh, int rc)
{
    if (rc < 0) {
        cow_vb_clear(fresh);
        return rc;
    }
    cow_vb_clear(b);
    *b = *fresh;
    return rc;
}

/* Pushes the n values of vals (copied) onto b, all or none (a single push
 * fails whole; more go onto a copy sharing b's nodes, adopted once all are
 * in). */
static int
push_all(cow_vecbody *b, const cow_val *vals, size_t n)
{
    cow_vecbody grown;
    int rc = COW_OK;
    if (n == 1)
        return push_copy(b, &vals[0]);
    cow_vb_dup(&grown, b);
    for (size_t i = 0; i < n && rc == COW_OK; i++)
        rc = push_copy(&grown, &vals[i]);
    return adopt_body(b, &grown, rc);
}

/* Cuts b to its first `start` values by popping the rest (del l[a:], no
 * rebuild), all or none: the nodes the pops write are owned first. */
static int
pop_from(cow_vecbody *b, size_t start)
{
    cow_val dead;
    int rc = cow_vb_own(b, start, b->len);
    while (rc == COW_OK && b->len > start && (rc = cow_vb_pop(b, &dead)) == COW_OK)
        cow_val_release(&dead);
    return rc;
}

/* Replaces [start, stop) with ins (whose values are taken over), in one
 * write that fails whole (as list's does).  Appends at the end push in
 * place; anything else rebuilds, a leaf at a time (cow_vb_append_range: the
 * leaves before start are shared).  The bounds are clamped to the length
 * first, as list_ass_slice clamps them: converting ins may have run Python
 * code (a generator, a registered class's to_data) that shortened the list
 * since they were computed. */
static int
list_splice(PyObject *op, size_t start, size_t stop, val_array *ins)
{
    cowpy_state *st = COWPY_ST(op);
    cow_vecbody fresh, *b;
    int rc = COW_OK;
    if (cowpy_begin_write(SELF) < 0)
        goto fail;
    b = body_of(op);
    stop = stop < b->len ? stop : b->len;
    start = start < stop ? start : stop;
    if (start == b->len && stop == b->len) {
        if (ins->n > 0)
            rc = push_all(b, ins->vals, ins->n);
    }
    else if (stop == b->len && ins->n == 0)
        rc = pop_from(b, start);
    else {
        cow_vb_init(&fresh);
        rc = cow_vb_append_range(&fresh, b, 0, start);
        for (size_t i = 0; i < ins->n && rc == COW_OK; i++)
            rc = push_copy(&fresh, &ins->vals[i]);
        if (rc == COW_OK)
            rc = cow_vb_append_range(&fresh, b, stop, b->len);
        rc = adopt_body(b, &fresh, rc);
    }
    vals_release(ins);
    if (rc < 0)
        return cowpy_raise_int(st, rc);
    return cowpy_end_write(SELF);
fail:
    vals_release(ins);
    return -1;
}

/* The slice of the n indices from start to stop by step that
 * PySlice_AdjustIndices gave for some length, fixed: the same indices at
 * any length (a negative step's stop of -1, "through index 0", becomes
 * None; no index, an empty slice). */
static PyObject *
fixed_slice(Py_ssize_t start, Py_ssize_t stop, Py_ssize_t step, Py_ssize_t n)
{
    PyObject *a, *b = NULL, *c = PyLong_FromSsize_t(step), *res = NULL;
    if (n == 0)
        start = stop = 0;
    a = PyLong_FromSsize_t(start);
    if (a && c && (b = stop < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(stop)) != NULL)
        res = PySlice_New(a, b, c);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    return res;
}

/* Extended-slice assignment or deletion of the indices [start, stop) by
 * step, done the way list does it on a plain list of our items, then
 * stored back.  As list does, the value is read before the items (its
 * generator may write to the list: that write is kept) and the indices
 * are the ones computed before reading it. */
static int
list_assign_extended(PyObject *op, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t step,
                     Py_ssize_t n, PyObject *value)
{
    PyObject *seq = NULL, *plain = NULL, *slice = NULL;
    val_array all;
    Py_ssize_t len;
    int rc = -1;
    if (value && (seq = PySequence_Fast(value, "must assign iterable to extended slice")) == NULL)
        return -1;
    if ((plain = PySequence_List(op)) != NULL && (slice = fixed_slice(start, stop, step, n)) != NULL)
        rc = seq ? PyObject_SetItem(plain, slice, seq) : PyObject_DelItem(plain, slice);
    if (rc == 0)
        rc = vals_from_iterable(COWPY_ST(op), plain, &all, NULL);
    Py_XDECREF(seq);
    Py_XDECREF(plain);
    Py_XDECREF(slice);
    if (rc < 0)
        return -1;
    if ((len = list_len_body(op)) < 0) {
        vals_release(&all);
        return -1;
    }
    return list_splice(op, 0, (size_t)len, &all);
}

static int
list_set_index(PyObject *op, Py_ssize_t i, PyObject *value)
{
    cowpy_state *st = COWPY_ST(op);
    val_array none = {NULL, 0};
    cow_val v;
    int rc;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if (i < 0)
        i += (Py_ssize_t)body_of(op)->len;
    if (i < 0 || (size_t)i >= body_of(op)->len) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    if (value == NULL)
        return list_splice(op, (size_t)i, (size_t)i + 1, &none);
    if (cowpy_entry_from_object(st, value, &v) < 0)
        return -1;
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&v);
        return -1;
    }
    if ((rc = cow_vb_set(body_of(op), (size_t)i, v)) < 0)
        return cowpy_raise_int(st, rc);
    return cowpy_end_write(SELF);
}

COWPY_ENTRY(static, int, list_ass_subscript,
            (PyObject *op, PyObject *item, PyObject *value), (op, item, value))
{
    Py_ssize_t start, stop, step, len, n;
    val_array ins = {NULL, 0};
    if (PyIndex_Check(item)) {
        Py_ssize_t i = PyNumber_AsSsize_t(item, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return -1;
        return list_set_index(op, i, value);
    }
    if (!PySlice_Check(item)) {
        PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %.200s",
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    if (PySlice_Unpack(item, &start, &stop, &step) < 0 || (len = list_len_body(op)) < 0)
        return -1;
    n = PySlice_AdjustIndices(len, &start, &stop, step);
    if (step != 1)
        return list_assign_extended(op, start, stop, step, n, value);
    if (value && vals_from_iterable(COWPY_ST(op), value, &ins, "can only assign an iterable") < 0)
        return -1;
    if (stop < start)
        stop = start;
    return list_splice(op, (size_t)start, (size_t)stop, &ins);
}

COWPY_ENTRY(static, int, list_ass_item,
            (PyObject *op, Py_ssize_t i, PyObject *value), (op, i, value))
{
    return list_set_index(op, i, value);
}

/* A new container of our type holding the elements of a slice. */
static PyObject *
list_slice(PyObject *op, Py_ssize_t start, Py_ssize_t step, Py_ssize_t count)
{
    cowpy_state *st = COWPY_ST(op);
    cow_vec *vec;
    int rc = COW_OK;
    if (cowpy_resolve(SELF) < 0)        /* a packed root: read the general form */
        return NULL;
    if ((vec = cow_vec_new()) == NULL)
        return cowpy_raise(st, COW_ENOMEM);
    if (step == 1 && count > 0)
        rc = cow_vb_append_range(&vec->b, body_of(op), (size_t)start, (size_t)(start + count));
    else for (Py_ssize_t k = 0; k < count && rc == COW_OK; k++) {
        cow_val v = cow_vb_get(body_of(op), (size_t)(start + k * step));
        rc = push_copy(&vec->b, &v);
    }
    if (rc < 0) {
        cow_vec_release(vec);
        return cowpy_raise(st, rc);
    }
    return cowpy_new_like(op, cow_val_vec(SELF->root.tag, vec));
}

COWPY_ENTRY(static, PyObject *, list_subscript, (PyObject *op, PyObject *item), (op, item))
{
    Py_ssize_t start, stop, step, len;
    if (PyIndex_Check(item)) {
        Py_ssize_t i = PyNumber_AsSsize_t(item, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0 && (len = list_len_body(op)) >= 0)
            i += len;
        return list_item_body(op, i);
    }
    if (!PySlice_Check(item)) {
        PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %.200s",
                     Py_TYPE(item)->tp_name);
        return NULL;
    }
    if (PySlice_Unpack(item, &start, &stop, &step) < 0 || (len = list_len_body(op)) < 0)
        return NULL;
    return list_slice(op, start, step, PySlice_AdjustIndices(len, &start, &stop, step));
}

/* ---- searching ------------------------------------------------------------
 *
 * list compares `item == x` for each item, and Python answers with x's
 * reflected __eq__ when the item's declines.  A probe of a type we store is
 * converted once and compared in the core, whose equality is Python's for
 * those types.  Any other probe (an IntEnum member, a Decimal, an object
 * with its own __eq__) may still equal an item, so it is compared in Python
 * against each item read back: O(n) objects made (docs/semantics.md). */

typedef struct {
    PyObject *obj;              /* borrowed */
    cow_val val;                /* obj converted, when native */
    int native;                 /* 1: compared in the core; 0: by Python's == */
} list_probe;

static int
probe_init(PyObject *op, PyObject *x, list_probe *p)
{
    cowpy_state *st = COWPY_ST(op);
    p->obj = x;
    p->native = 0;
    if (cowpy_resolve(SELF) < 0)
        return -1;
    if (cowpy_from_object(st, x, &p->val) == 0) {
        p->native = 1;
        return 0;
    }
    /* Nor can a probe holding lone surrogates or a NaN key be converted, yet
     * list answers `in` for it (False: no stored item equals it): Python's
     * == says so too. */
    if (!PyErr_ExceptionMatches(st->UnsupportedTypeError)
        && !PyErr_ExceptionMatches(st->CycleError)
        && !PyErr_ExceptionMatches(st->CowValueError)
        && !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return -1;
    PyErr_Clear();
    return 0;
}

static void
probe_release(list_probe *p)
{
    if (p->native)
        cow_val_release(&p->val);
}

/* 1 if item e equals the probe, 0 if not, -1 on error. */
static int
probe_match(cowpy_state *st, const cow_val *e, list_probe *p)
{
    PyObject *item;
    int rc;
    if (p->native)
        return cow_val_equal(e, &p->val);
    if ((item = cowpy_to_object(st, e, NULL, NULL, 0, 0)) == NULL)
        return -1;
    rc = PyObject_RichCompareBool(item, p->obj, Py_EQ);     /* item first, as list */
    Py_DECREF(item);
    return rc;
}

/* Items [start, stop) equal to the probe: the first one's index in *res
 * (-1 if none), or with all, how many.  A Python == may run any code, the
 * list's mutation included, so this reads a snapshot.  -1 on error. */
static int
list_scan(PyObject *op, list_probe *p, size_t start, size_t stop, int all, Py_ssize_t *res)
{
    cow_val snap;
    cow_vec_iter it;
    const cow_val *e;
    int eq = 0;
    cow_val_copy(&snap, &SELF->root);
    cow_vec_iter_init(&it, &cow_val_getvec(&snap)->b, start);
    *res = all ? 0 : -1;
    for (size_t i = start; i < stop && (e = cow_vec_iter_next(&it)) != NULL; i++) {
        if ((eq = probe_match(COWPY_ST(op), e, p)) < 0)
            break;
        if (eq && !all) {
            *res = (Py_ssize_t)i;
            break;
        }
        *res += eq;
    }
    cow_val_release(&snap);
    return eq < 0 ? -1 : 0;
}

/* The first index of x in [start, stop), -1 if absent, -2 on error. */
static Py_ssize_t
list_find(PyObject *op, PyObject *x, size_t start, size_t stop)
{
    list_probe p;
    Py_ssize_t found;
    int rc;
    if (probe_init(op, x, &p) < 0)
        return -2;
    rc = list_scan(op, &p, start, stop, 0, &found);
    probe_release(&p);
    return rc < 0 ? -2 : found;
}

COWPY_ENTRY(static, int, list_contains, (PyObject *op, PyObject *x), (op, x))
{
    Py_ssize_t i = list_find(op, x, 0, SIZE_MAX);
    return i == -2 ? -1 : i >= 0;
}

static Py_ssize_t
clamp_index(Py_ssize_t i, Py_ssize_t len)
{
    if (i < 0)
        i = i + len < 0 ? 0 : i + len;
    return i > len ? len : i;
}

/* index(x[, start[, stop]]) */
COWPY_ENTRY(static, PyObject *, list_index, (PyObject *op, PyObject *args), (op, args))
{
    PyObject *x;
    Py_ssize_t start = 0, stop = PY_SSIZE_T_MAX, len, found;
    if (!PyArg_ParseTuple(args, "O|O&O&:index", &x, _PyEval_SliceIndexNotNone, &start,
                          _PyEval_SliceIndexNotNone, &stop)
        || (len = list_len(op)) < 0)
        return NULL;
    start = clamp_index(start, len);
    stop = clamp_index(stop, len);
    if ((found = list_find(op, x, (size_t)start, (size_t)stop)) == -2)
        return NULL;
    if (found < 0) {
        PyErr_Format(PyExc_ValueError, "%R is not in list", x);
        return NULL;
    }
    return PyLong_FromSsize_t(found);
}

COWPY_ENTRY(static, PyObject *, list_count, (PyObject *op, PyObject *x), (op, x))
{
    list_probe p;
    Py_ssize_t n;
    int rc;
    if (probe_init(op, x, &p) < 0)
        return NULL;
    rc = list_scan(op, &p, 0, SIZE_MAX, 1, &n);
    probe_release(&p);
    return rc < 0 ? NULL : PyLong_FromSsize_t(n);
}

COWPY_ENTRY(static, PyObject *, list_remove, (PyObject *op, PyObject *x), (op, x))
{
    val_array none = {NULL, 0};
    Py_ssize_t i = cowpy_refuse_frozen(SELF) < 0 ? -2 : list_find(op, x, 0, SIZE_MAX);
    if (i == -2)
        return NULL;
    if (i < 0 || (size_t)i >= body_of(op)->len) {       /* == may have shortened the list */
        PyErr_SetString(PyExc_ValueError, "list.remove(x): x not in list");
        return NULL;
    }
    if (list_splice(op, (size_t)i, (size_t)i + 1, &none) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- mutation at the ends ------------------------------------------------- */

COWPY_ENTRY(static, PyObject *, list_append, (PyObject *op, PyObject *x), (op, x))
{
    cowpy_state *st = COWPY_ST(op);
    cow_val v;
    int rc;
    if (cowpy_entry_from_object(st, x, &v) < 0)
        return NULL;
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&v);
        return NULL;
    }
    if ((rc = cow_vb_push(body_of(op), v)) < 0)
        return cowpy_raise(st, rc);
    cowpy_batch_full_tail(body_of(op), 1);
    if (cowpy_end_write(SELF) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Whether obj is one of the package's own lists (not a user's subclass,
 * whose __iter__ extend must call, as list.extend does). */
static int
is_own_list(cowpy_state *st, PyObject *obj)
{
    return (PyObject *)Py_TYPE(obj) == st->cls[COW_T_LIST]
           || (PyObject *)Py_TYPE(obj) == st->cls[COW_T_FLIST];
}

/* extend by one of our own lists: its values appended a leaf at a time
 * (cow_vb_append_range), with no Python object made, from a snapshot of
 * its root (so l.extend(l) reads l as it was), into a copy of our body that
 * replaces it only once complete (a failed extend changes nothing). */
static int
extend_from_own_list(PyObject *op, PyObject *other)
{
    cowpy_state *st = COWPY_ST(op);
    cow_vecbody *b, grown;
    cow_val snap;
    int rc;
    if (cowpy_resolve((CowObject *)other) < 0)
        return -1;
    cow_val_copy(&snap, &((CowObject *)other)->root);
    if (cowpy_begin_write(SELF) < 0) {
        cow_val_release(&snap);
        return -1;
    }
    b = body_of(op);
    cow_vb_dup(&grown, b);
    rc = cow_vb_append_range(&grown, &cow_val_getvec(&snap)->b, 0, SIZE_MAX);
    cow_val_release(&snap);
    if (adopt_body(b, &grown, rc) < 0)
        return cowpy_raise_int(st, rc);
    return cowpy_end_write(SELF);
}

COWPY_ENTRY(static, PyObject *, list_extend, (PyObject *op, PyObject *iterable), (op, iterable))
{
    val_array ins;
    Py_ssize_t len;
    if (is_own_list(COWPY_ST(op), iterable))
        return extend_from_own_list(op, iterable) < 0 ? NULL : Py_NewRef(Py_None);
    if (vals_from_iterable(COWPY_ST(op), iterable, &ins, NULL) < 0)
        return NULL;
    if ((len = list_len_body(op)) < 0) {
        vals_release(&ins);
        return NULL;
    }
    if (list_splice(op, (size_t)len, (size_t)len, &ins) < 0)
        return NULL;
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, list_insert, (PyObject *op, PyObject *args), (op, args))
{
    Py_ssize_t i, len;
    PyObject *x, *one;
    val_array ins;
    if (!PyArg_ParseTuple(args, "nO:insert", &i, &x) || (len = list_len_body(op)) < 0)
        return NULL;
    i = clamp_index(i, len);
    if ((one = PyTuple_Pack(1, x)) == NULL)
        return NULL;
    int rc = vals_from_iterable(COWPY_ST(op), one, &ins, NULL);
    Py_DECREF(one);
    if (rc < 0 || list_splice(op, (size_t)i, (size_t)i, &ins) < 0)
        return NULL;
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, list_pop, (PyObject *op, PyObject *args), (op, args))
{
    cowpy_state *st = COWPY_ST(op);
    Py_ssize_t i = -1, len;
    val_array none = {NULL, 0};
    cow_val v;
    PyObject *res;
    int rc;
    if (!PyArg_ParseTuple(args, "|n:pop", &i) || cowpy_refuse_frozen(SELF) < 0
        || (len = list_len_body(op)) < 0)
        return NULL;
    if (len == 0 || (i < 0 ? i + len < 0 : i >= len)) {
        PyErr_SetString(PyExc_IndexError, len ? "pop index out of range" : "pop from empty list");
        return NULL;
    }
    if (i < 0)
        i += len;
    if (cowpy_begin_write(SELF) < 0)
        return NULL;
    if (i == len - 1) {
        if ((rc = cow_vb_pop(body_of(op), &v)) < 0)
            return cowpy_raise(st, rc);
        rc = cowpy_end_write(SELF);
    }
    else {
        v = cow_vb_get(body_of(op), (size_t)i);
        cow_val_retain(&v);
        rc = list_splice(op, (size_t)i, (size_t)i + 1, &none);
    }
    res = rc < 0 ? NULL : cowpy_to_object(st, &v, NULL, NULL, 0, 0);
    cow_val_release(&v);
    return res;
}

COWPY_ENTRY(static, PyObject *, list_clear, (PyObject *op, PyObject *unused), (op, unused))
{
    if (cowpy_begin_write(SELF) < 0)
        return NULL;
    cow_vb_clear(body_of(op));
    if (cowpy_end_write(SELF) < 0)
        return NULL;
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, list_reverse, (PyObject *op, PyObject *unused), (op, unused))
{
    val_array all;
    size_t n;
    if (cowpy_resolve(SELF) < 0)
        return NULL;
    n = body_of(op)->len;
    if ((all.vals = PyMem_Malloc((n ? n : 1) * sizeof(cow_val))) == NULL)
        return PyErr_NoMemory();
    for (all.n = 0; all.n < n; all.n++) {
        all.vals[all.n] = cow_vb_get(body_of(op), n - 1 - all.n);
        cow_val_retain(&all.vals[all.n]);
    }
    if (list_splice(op, 0, n, &all) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _writes(): a count of the list's changes, for sort to notice that the key
 * function or a comparison changed the list. */
COWPY_ENTRY(static, PyObject *, list_writes, (PyObject *op, PyObject *unused), (op, unused))
{
    if (cowpy_resolve(SELF) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(SELF->mut);
}

/* Exchanges two lists' bodies (cowpy_swap_contents). */
static void
swap_bodies(CowObject *a, CowObject *b)
{
    cow_vecbody t = *body_of((PyObject *)a);
    *body_of((PyObject *)a) = *body_of((PyObject *)b);
    *body_of((PyObject *)b) = t;
}

/* _swap(other): exchanges the items of this list and other (a list too),
 * each keeping its identity (cowpy_swap_contents): sort parks the items in
 * another list this way and gets them back whatever happens, MemoryError
 * included. */
COWPY_ENTRY(static, PyObject *, list_swap, (PyObject *op, PyObject *other), (op, other))
{
    return cowpy_swap_contents(op, other, COWPY_ST(op)->list_base, "list", swap_bodies);
}

COWPY_ENTRY(static, PyObject *, list_iter, (PyObject *op), (op))
{
    return cowpy_iter_new(SELF, COWPY_IT_ELEMS, 0);
}

COWPY_ENTRY(static, PyObject *, list_reversed, (PyObject *op, PyObject *unused), (op, unused))
{
    return cowpy_iter_new(SELF, COWPY_IT_ELEMS, 1);
}

static PyObject *
list_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return cowpy_new_empty(type, COW_T_LIST, COW_T_FLIST);
}

static PyMethodDef list_methods[] = {
    {"append", list_append, METH_O, "Append object to the end of the list."},
    {"extend", list_extend, METH_O, "Extend list by appending elements from the iterable."},
    {"insert", list_insert, METH_VARARGS, "Insert object before index."},
    {"pop", list_pop, METH_VARARGS, "Remove and return item at index (default last)."},
    {"remove", list_remove, METH_O, "Remove first occurrence of value."},
    {"index", list_index, METH_VARARGS, "Return first index of value."},
    {"count", list_count, METH_O, "Return number of occurrences of value."},
    {"clear", list_clear, METH_NOARGS, "Remove all items from list."},
    {"reverse", list_reverse, METH_NOARGS, "Reverse *IN PLACE*."},
    {"__reversed__", list_reversed, METH_NOARGS, NULL},
    {"_writes", list_writes, METH_NOARGS, NULL},
    {"_swap", list_swap, METH_O, NULL},
    COWPY_COMMON_METHODS
    {NULL, NULL, 0, NULL},
};

static PyType_Slot list_slots[] = {
    {Py_tp_new, list_new},
    {Py_tp_dealloc, cowpy_object_dealloc},
    {Py_tp_iter, list_iter},
    {Py_tp_methods, list_methods},
    {Py_sq_length, list_len},
    {Py_sq_item, list_item},
    {Py_sq_ass_item, list_ass_item},
    {Py_sq_contains, list_contains},
    {Py_mp_length, list_len},
    {Py_mp_subscript, list_subscript},
    {Py_mp_ass_subscript, list_ass_subscript},
    {Py_tp_doc, "C base of CowList and FrozenList."},
    {0, NULL},
};

PyType_Spec cowpy_list_spec = {
    .name = "cowstore._cowstore.ListBase",
    .basicsize = sizeof(CowObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_SEQUENCE,
    .slots = list_slots,
};
