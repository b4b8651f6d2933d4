/* Extension leaves in the binding: Python objects <-> SEXT/EXT values.
 *
 * The bytes of each leaf (datetime, Decimal, UUID, class records, ...) are
 * written and read by cowstore/_ext.py, imported when the first such value
 * is met, as numpy is: its encode(obj) gives the bytes or None (a type
 * cowstore cannot store), its decode(bytes) a fresh object or
 * CorruptStoreError.  The core only hashes and compares the bytes
 * (cowstore/ext.h). */
#include "cowpy.h"
#include "cowstore/ext.h"

static PyObject *
ext_module(cowpy_state *st)
{
    if (st->ext == NULL) {
        if (st->str_encode == NULL && (st->str_encode = PyUnicode_InternFromString("encode")) == NULL)
            return NULL;
        if (st->str_decode == NULL && (st->str_decode = PyUnicode_InternFromString("decode")) == NULL)
            return NULL;
        st->ext = PyImport_ImportModule("cowstore._ext");
    }
    return st->ext;
}

int
cowpy_ext_from(cowpy_state *st, PyObject *obj, cow_val *out)
{
    PyObject *mod = ext_module(st), *data = NULL;
    int res = -1, rc;
    if (mod == NULL)
        return -1;
    /* CallMethodObjArgs: a tuple (a namedtuple) is one argument, not many */
    if ((data = PyObject_CallMethodObjArgs(mod, st->str_encode, obj, NULL)) == NULL)
        goto done;
    if (data == Py_None) {
        res = 0;
        goto done;
    }
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "cowstore._ext.encode must return bytes");
        goto done;
    }
    rc = cow_val_ext(out, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
    res = rc < 0 ? cowpy_raise_int(st, rc) : 1;
done:
    Py_XDECREF(data);
    return res;
}

int
cowpy_ext_refusal(cowpy_state *st, const char *helper, PyObject *obj, PyObject **inner,
                  PyObject **below, PyObject **hint)
{
    PyObject *mod = ext_module(st), *fn, *res;
    int rc = -1;
    if (mod == NULL || (fn = PyObject_GetAttrString(mod, helper)) == NULL)
        return -1;
    res = PyObject_CallOneArg(fn, obj);     /* a namedtuple is one argument */
    Py_DECREF(fn);
    if (res == NULL)
        return -1;
    if (res == Py_None)
        rc = 0;
    else if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3
             || !PyUnicode_Check(PyTuple_GET_ITEM(res, 1)) || !PyUnicode_Check(PyTuple_GET_ITEM(res, 2)))
        PyErr_SetString(PyExc_TypeError,
                        "cowstore._ext's refusals must return None or (value, str, str)");
    else {
        *inner = Py_NewRef(PyTuple_GET_ITEM(res, 0));
        *below = Py_NewRef(PyTuple_GET_ITEM(res, 1));
        *hint = Py_NewRef(PyTuple_GET_ITEM(res, 2));
        rc = 1;
    }
    Py_DECREF(res);
    return rc;
}

PyObject *
cowpy_ext_to(cowpy_state *st, const cow_val *v)
{
    PyObject *mod = ext_module(st), *data = NULL, *res = NULL;
    const char *p;
    size_t n;
    if (mod == NULL)
        return NULL;
    cow_val_span(v, &p, &n);
    if (n == 0)
        return cowpy_raise(st, COW_ECORRUPT);      /* V8; pages may lie */
    if ((data = PyBytes_FromStringAndSize(p, (Py_ssize_t)n)) == NULL)
        return NULL;
    res = PyObject_CallMethodObjArgs(mod, st->str_decode, data, NULL);
    Py_DECREF(data);
    return res;
}
