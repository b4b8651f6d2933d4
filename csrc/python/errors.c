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
    case COW_EDEPTH: return PyExc_RecursionError;
    }
    return st->CowValueError;
}

PyObject *
cowpy_raise(cowpy_state *st, int code)
{
    PyErr_SetString(exception_for(st, code), cow_strerror(code));
    return NULL;
}

/* The module state for an entry's first argument: the module itself for a
 * module function, else the module that defined the object's type. */
static cowpy_state *
state_of_entry(PyObject *self)
{
    return PyModule_Check(self) ? PyModule_GetState(self) : cowpy_state_of(self);
}

PyObject *
cowpy_read_failed(PyObject *res, PyObject *self, int err)
{
    cowpy_state *st;
    Py_XDECREF(res);
    PyErr_Clear();                  /* a symptom of the poison: see cowpy.h */
    if ((st = state_of_entry(self)) == NULL)
        return NULL;
    return cowpy_raise(st, err);
}

Py_ssize_t
cowpy_read_failed_num(Py_ssize_t res, PyObject *self, int err)
{
    cowpy_read_failed(NULL, self, err);
    return -1;
}

int
cowpy_raise_int(cowpy_state *st, int code)
{
    cowpy_raise(st, code);
    return -1;
}
