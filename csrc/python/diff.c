/* _changed(a, b): where two containers of one kind may differ, found by
 * walking their vectors side by side and skipping every shared node, so the
 * cost is O(changed blocks * log n), not O(n).  For maps it returns the keys
 * of the entries in differing log blocks of either side; for lists, the
 * indices in differing blocks.  cowstore.diff() compares just those. */
#include "cowpy.h"

typedef struct {
    cowpy_state *st;
    const cow_vecbody *sides[2];
    const cow_map *maps[2];     /* NULL for lists */
    PyObject *out;
} diff_ctx;

static int
add_key(diff_ctx *cx, const cow_map *m, size_t entry)
{
    const cow_val *k;
    PyObject *pk;
    int rc;
    if (entry >= cow_map_entries(m))
        return 0;
    k = cow_map_entry_key(m, entry);
    if (k->tag == COW_T_HOLE)
        return 0;
    if ((pk = cowpy_to_object(cx->st, k, NULL, NULL, 0, 0)) == NULL)
        return -1;
    rc = PyList_Append(cx->out, pk);
    Py_DECREF(pk);
    return rc;
}

static int
visit_block(void *arg, size_t start)
{
    diff_ctx *cx = arg;
    size_t end = start + COW_VEC_WIDTH;
    for (size_t i = start; i < end; i++) {
        if (cx->maps[0]) {
            if (i % 2 == 0 && (add_key(cx, cx->maps[0], i / 2) < 0
                               || add_key(cx, cx->maps[1], i / 2) < 0))
                return COW_ENOMEM;
            continue;
        }
        if (i >= cx->sides[0]->len && i >= cx->sides[1]->len)
            break;
        PyObject *idx = PyLong_FromSize_t(i);
        int rc = idx ? PyList_Append(cx->out, idx) : -1;
        Py_XDECREF(idx);
        if (rc < 0)
            return COW_ENOMEM;
    }
    return COW_OK;
}

COWPY_ENTRY(extern, PyObject *, cowpy_changed, (PyObject *mod, PyObject *args), (mod, args))
{
    CowObject *a, *b;
    diff_ctx cx = {0};
    int rc;
    if (!PyArg_ParseTuple(args, "OO:_changed", &a, &b))
        return NULL;
    cx.st = PyModule_GetState(mod);
    if (!cowpy_is_ours(cx.st, (PyObject *)a) || !cowpy_is_ours(cx.st, (PyObject *)b)) {
        PyErr_SetString(PyExc_TypeError, "_changed needs cowstore containers");
        return NULL;
    }
    if (cowpy_resolve(a) < 0 || cowpy_resolve(b) < 0)
        return NULL;
    if (cow_tag_is_map(a->root.tag) != cow_tag_is_map(b->root.tag)) {
        PyErr_SetString(PyExc_TypeError, "_changed needs two containers of one kind");
        return NULL;
    }
    if (cow_tag_is_map(a->root.tag)) {
        cx.maps[0] = cow_val_getmap(&a->root);
        cx.maps[1] = cow_val_getmap(&b->root);
        cx.sides[0] = &cx.maps[0]->log;
        cx.sides[1] = &cx.maps[1]->log;
    }
    else {
        cx.sides[0] = &cow_val_getvec(&a->root)->b;
        cx.sides[1] = &cow_val_getvec(&b->root)->b;
    }
    if ((cx.out = PyList_New(0)) == NULL)
        return NULL;
    rc = cow_vb_diff_blocks(cx.sides[0], cx.sides[1], visit_block, &cx);
    if (rc < 0) {
        Py_CLEAR(cx.out);
        if (!PyErr_Occurred())
            cowpy_raise(cx.st, rc);
    }
    return cx.out;
}
