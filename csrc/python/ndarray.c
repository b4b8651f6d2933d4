/* numpy arrays as leaves: stored by value, read back as read-only views.
 *
 * Writing copies a C-contiguous array's bytes into an NDARRAY blob (header,
 * shape, data; cowstore/value.h).  Reading wraps the blob in an _ArrayBuffer
 * (a tiny object exporting the bytes through the buffer protocol and owning
 * one reference to the value, so the blob -- or the store snapshot under it
 * -- stays alive) and asks numpy for frombuffer(...).reshape(shape): no copy,
 * and numpy marks the array read-only because the buffer is.  numpy is
 * imported only when an array is met: cowstore does not depend on it.
 */
#include "cowpy.h"

typedef struct ArrayBuffer {
    PyObject_HEAD
    cow_val v;              /* owned NDARRAY value */
    const char *data;       /* its array bytes */
    Py_ssize_t len;
} ArrayBuffer;

static int
buffer_get(PyObject *op, Py_buffer *view, int flags)
{
    ArrayBuffer *self = (ArrayBuffer *)op;
    return PyBuffer_FillInfo(view, op, (void *)self->data, self->len, 1, flags);
}

static void
buffer_dealloc(PyObject *op)
{
    ArrayBuffer *self = (ArrayBuffer *)op;
    PyTypeObject *tp = Py_TYPE(op);
    cow_ref_view(self->v.u.w, -1);
    cow_val_release(&self->v);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot buffer_slots[] = {
    {Py_bf_getbuffer, buffer_get},
    {Py_tp_dealloc, buffer_dealloc},
    {Py_tp_doc, "The bytes of a stored numpy array (the base of its read-only view)."},
    {0, NULL},
};

PyType_Spec cowpy_array_buffer_spec = {
    .name = "cowstore._cowstore._ArrayBuffer",
    .basicsize = sizeof(ArrayBuffer),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = buffer_slots,
};

static PyObject *
numpy_module(cowpy_state *st)
{
    if (st->numpy == NULL)
        st->numpy = PyImport_ImportModule("numpy");
    return st->numpy;
}

int
cowpy_is_ndarray(PyObject *obj)
{
    return strcmp(Py_TYPE(obj)->tp_name, "numpy.ndarray") == 0;
}

/* The dtype string of a plain-kind array, or NULL with UnsupportedTypeError. */
static PyObject *
plain_dtype_str(cowpy_state *st, PyObject *arr)
{
    PyObject *dtype = PyObject_GetAttrString(arr, "dtype"), *kind = NULL, *str = NULL;
    const char *k;
    if (dtype == NULL || (kind = PyObject_GetAttrString(dtype, "kind")) == NULL
        || (k = PyUnicode_AsUTF8(kind)) == NULL)
        goto done;
    if (strlen(k) != 1 || strchr(COW_NDARRAY_KINDS, k[0]) == NULL)
        goto unsupported;           /* structured dtypes are kind 'V' */
    str = PyObject_GetAttrString(dtype, "str");
    goto done;
unsupported:
    PyErr_Format(st->UnsupportedTypeError,
                 "cannot store a numpy array of dtype %R: only bool, integer, float and "
                 "complex arrays are supported", dtype);
done:
    Py_XDECREF(kind);
    Py_XDECREF(dtype);
    return str;
}

int
cowpy_ndarray_from(cowpy_state *st, PyObject *obj, cow_val *out)
{
    PyObject *np = numpy_module(st), *arr = NULL, *shape = NULL, *dstr = NULL;
    uint64_t dims[COW_NDARRAY_MAX_DIM];
    Py_buffer view = {0};
    Py_ssize_t ndim;
    const char *ds;
    int rc = -1, code;
    if (np == NULL || (arr = PyObject_CallMethod(np, "ascontiguousarray", "O", obj)) == NULL
        || (dstr = plain_dtype_str(st, arr)) == NULL || (ds = PyUnicode_AsUTF8(dstr)) == NULL
        || (shape = PyObject_GetAttrString(obj, "shape")) == NULL)     /* arr's is 1-d for 0-d */
        goto done;
    if (!PyTuple_Check(shape) || (ndim = PyTuple_GET_SIZE(shape)) > COW_NDARRAY_MAX_DIM) {
        PyErr_Format(st->UnsupportedTypeError,
                     "cannot store a numpy array of more than %d dimensions", COW_NDARRAY_MAX_DIM);
        goto done;
    }
    for (Py_ssize_t i = 0; i < ndim; i++) {
        unsigned long long d = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape, i));
        if (d == (unsigned long long)-1 && PyErr_Occurred())
            goto done;
        dims[i] = d;
    }
    if (PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    code = cow_val_ndarray(out, ds, (uint32_t)ndim, dims, view.buf, (uint64_t)view.len);
    PyBuffer_Release(&view);
    rc = code < 0 ? cowpy_raise_int(st, code) : 0;
done:
    Py_XDECREF(shape);
    Py_XDECREF(dstr);
    Py_XDECREF(arr);
    return rc;
}

PyObject *
cowpy_ndarray_to(cowpy_state *st, const cow_val *v, int copy)
{
    const cow_ndarray_head *head;
    const uint64_t *dims;
    const char *data;
    PyObject *np, *flat = NULL, *shape = NULL, *res = NULL;
    ArrayBuffer *buf;
    if (cow_ndarray_parts(v, &head, &dims, &data) < 0)
        return cowpy_raise(st, COW_ECORRUPT);
    if ((np = numpy_module(st)) == NULL)
        return NULL;
    if ((buf = PyObject_New(ArrayBuffer, st->array_buffer_type)) == NULL)
        return NULL;
    cow_val_copy(&buf->v, v);
    cow_ref_view(buf->v.u.w, +1);
    buf->data = data;
    buf->len = (Py_ssize_t)head->nbytes;
    if ((shape = PyTuple_New(head->ndim)) == NULL)
        goto done;
    for (uint32_t i = 0; i < head->ndim; i++) {
        PyObject *d = PyLong_FromUnsignedLongLong(dims[i]);
        if (d == NULL)
            goto done;
        PyTuple_SET_ITEM(shape, i, d);
    }
    flat = PyObject_CallMethod(np, "frombuffer", "Os", (PyObject *)buf, head->dtype);
    if (flat)
        res = PyObject_CallMethod(flat, copy ? "copy" : "view", NULL);
    if (res)
        Py_SETREF(res, PyObject_CallMethod(res, "reshape", "(O)", shape));  /* () too: 0-d */
    /* The header has the form cow_ndarray_parts checks, so numpy refusing it
     * means a dtype or shape this numpy has no array for ("<f5"): damage. */
    if (res == NULL && (PyErr_ExceptionMatches(PyExc_ValueError)
                        || PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        cowpy_raise(st, COW_ECORRUPT);
    }
done:
    Py_XDECREF(flat);
    Py_XDECREF(shape);
    Py_DECREF(buf);
    return res;
}
