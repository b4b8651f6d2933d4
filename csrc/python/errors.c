/* The one table from core error codes to Python exceptions.
 *
 * cowstore's own classes subclass CowstoreError and the builtin a user would
 * catch for the same failure (MemoryError, ValueError, ...).  Protocol errors
 * that dict/list raise themselves (KeyError, IndexError, unhashable TypeError)
 * stay the builtins, exactly as dict and list raise them. */
#include "cowpy.h"

static PyObject *
exception_for(cowpy_state *st, int code)
{
    switch (code) {
    case COW_ENOMEM: return st->CowMemoryError;
    case COW_EINDEX: return PyExc_IndexError;
    case COW_EKEY: return PyExc_KeyError;
    case COW_EOVERFLOW: return st->CowOverflowError;
    case COW_ECORRUPT: return st->CorruptStoreError;
    case COW_ETYPE: return st->UnsupportedTypeError;
    }
    return st->CowValueError;
}

PyObject *
cowpy_raise(cowpy_state *st, int code)
{
    PyErr_SetString(exception_for(st, code), cow_strerror(code));
    return NULL;
}

int
cowpy_raise_corrupt(cowpy_state *st)
{
    PyErr_SetString(st->CorruptStoreError,
                    "corrupt stored data: a node or reference failed validation");
    return -1;
}

int
cowpy_stored_error(cowpy_state *st)
{
    if (cow_ref_take_error() == COW_OK)
        return 0;
    return cowpy_raise_corrupt(st);
}

PyObject *
cowpy_checked(cowpy_state *st, PyObject *res)
{
    if (res && cowpy_stored_error(st) < 0)
        Py_CLEAR(res);
    return res;
}

int
cowpy_raise_int(cowpy_state *st, int code)
{
    cowpy_raise(st, code);
    return -1;
}
