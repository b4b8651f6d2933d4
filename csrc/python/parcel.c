/* Parcels from Python: _parcel(obj) -> bytes, _open_parcel(buffer) -> value.
 *
 * An opened parcel holds a Py_buffer of the object it was read from (bytes,
 * a PickleBuffer from pickle protocol 5, an mmap, Ray's shared memory) for
 * as long as any value read from it lives (parcel.h P2): the core calls
 * release_view then.  A buffer that is not 8-byte aligned (a frame cut at
 * any offset) is copied once into a bytes object, which is.
 */
#include "cowpy.h"
#include "cowstore/alloc.h"
#include "cowstore/parcel.h"

/* Called by the core when the last value read from the parcel is gone; may
 * run wherever a value is released, so it takes the GIL itself. */
static void
release_view(void *owner)
{
    Py_buffer *view = owner;
    PyGILState_STATE g = PyGILState_Ensure();
    PyBuffer_Release(view);
    PyMem_Free(view);
    PyGILState_Release(g);
}

static int
is_container(const cow_val *v)
{
    int t = cowpy_logical_tag(v);
    return cow_tag_is_map(t) || t == COW_T_LIST || t == COW_T_FLIST;
}

/* _parcel(obj) -> bytes: obj's nodes as a parcel (parcel.h). */
COWPY_ENTRY(extern, PyObject *, cowpy_parcel, (PyObject *mod, PyObject *obj), (mod, obj))
{
    cowpy_state *st = PyModule_GetState(mod);
    cow_parcel_out out;
    PyObject *res = NULL;
    cow_val v;
    int rc;
    if (cowpy_from_object(st, obj, &v) < 0)
        return NULL;
    if ((rc = cow_parcel_build(&v, &out)) == COW_EOVERFLOW && out.oversized) {
        PyErr_SetString(st->CowOverflowError,
                        "cannot make a parcel of a single value (an array, a string) of 4 GiB "
                        "or more: split it, or share it through a store file");
        goto fail;
    }
    if (rc == COW_EOVERFLOW) {
        PyErr_SetString(st->CowOverflowError,
                        "cannot make a parcel of containers nested this deep: a parcel, as a "
                        "store, takes 256 levels (small containers packed into their parent "
                        "do not count)");
        goto fail;
    }
    if (rc < 0) {
        cowpy_raise(st, rc);
        goto fail;
    }
    if ((res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cow_parcel_size(&out))) == NULL)
        goto fail;
    cow_parcel_emit(&out, PyBytes_AS_STRING(res));
fail:
    cow_parcel_out_free(&out);
    cow_val_release(&v);
    return res;
}

/* A contiguous view of obj, 8-byte aligned (copied into bytes if not). */
static Py_buffer *
aligned_view(PyObject *obj)
{
    Py_buffer *view = PyMem_Calloc(1, sizeof *view);
    PyObject *copy = NULL;
    if (view == NULL)
        return (Py_buffer *)PyErr_NoMemory();
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        goto fail;
    if ((uintptr_t)view->buf % COW_REF_UNIT == 0)
        return view;
    copy = PyBytes_FromStringAndSize(view->buf, view->len);
    PyBuffer_Release(view);
    if (copy == NULL || PyObject_GetBuffer(copy, view, PyBUF_SIMPLE) < 0)
        goto fail;
    Py_DECREF(copy);
    return view;
fail:
    Py_XDECREF(copy);
    PyMem_Free(view);
    return NULL;
}

/* The error for bytes cow_parcel_open refused as corrupt: a parcel of
 * another format version says so (a Dask client and its workers may run
 * different cowstore versions); anything else is damage. */
static PyObject *
refuse_parcel(cowpy_state *st, PyObject *obj)
{
    Py_buffer view;
    uint32_t version;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    version = cow_parcel_version(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (version == 0 || (version >= COW_PARCEL_VERSION_OLDEST_READ && version <= COW_PARCEL_VERSION))
        return cowpy_raise(st, COW_ECORRUPT);
    PyErr_Format(st->CorruptStoreError,
                 "a parcel of format %u, made by another version of cowstore; this one reads "
                 "format %u: run the same cowstore version where values are pickled and "
                 "where they are loaded", (unsigned)version, COW_PARCEL_VERSION);
    return NULL;
}

/* _open_parcel(buffer) -> the value, read lazily in place. */
COWPY_ENTRY(extern, PyObject *, cowpy_open_parcel, (PyObject *mod, PyObject *obj), (mod, obj))
{
    cowpy_state *st = PyModule_GetState(mod);
    Py_buffer *view;
    PyObject *res;
    cow_val v;
    int rc;
    if ((view = aligned_view(obj)) == NULL)
        return NULL;
    if ((rc = cow_parcel_open(view->buf, (size_t)view->len, release_view, view, &v)) < 0) {
        PyBuffer_Release(view);
        PyMem_Free(view);
        if (rc == COW_EOVERFLOW) {
            PyErr_SetString(st->CowOverflowError,
                            "too many parcels and stores open at once (at most 127)");
            return NULL;
        }
        return rc == COW_ECORRUPT ? refuse_parcel(st, obj) : cowpy_raise(st, rc);
    }
    if (is_container(&v))
        return cowpy_wrap(st, v);
    res = cowpy_to_object(st, &v, NULL, NULL, 0, 0);
    cow_val_release(&v);
    return res;
}

/* _open_parcels() -> how many parcels are open (tests, leaks). */
COWPY_ENTRY(extern, PyObject *, cowpy_open_parcels, (PyObject *mod, PyObject *unused),
            (mod, unused))
{
    return PyLong_FromLong(cow_parcel_open_count());
}
