/* cowstore._cowstore: module init (multi-phase), module state, functions. */
#include "cowpy.h"
#include "cowstore/alloc.h"

static struct PyModuleDef cowpy_module;

cowpy_state *
cowpy_state_of_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, &cowpy_module);
    return mod ? PyModule_GetState(mod) : NULL;
}

cowpy_state *
cowpy_state_of(PyObject *obj)
{
    return cowpy_state_of_type(Py_TYPE(obj));
}

static cowpy_state *
state_of_module(PyObject *mod)
{
    return PyModule_GetState(mod);
}

/* freeze(obj): plain nested data -> cowstore containers, one pass. */
COWPY_ENTRY(static, PyObject *, cowpy_freeze, (PyObject *mod, PyObject *obj), (mod, obj))
{
    return cowpy_freeze_object(state_of_module(mod), obj);
}

/* thaw(x): any value -> plain dict/list/set/tuple/scalars (deep). */
COWPY_ENTRY(static, PyObject *, cowpy_thaw_fn, (PyObject *mod, PyObject *obj), (mod, obj))
{
    cowpy_state *st = state_of_module(mod);
    cow_val v;
    PyObject *res;
    if (cowpy_from_object(st, obj, &v) < 0)
        return NULL;
    res = cowpy_thaw(st, &v);
    cow_val_release(&v);
    return res;
}

static const char *const tag_names[COW_T__COUNT] = {
    [COW_T_DICT] = "dict", [COW_T_FDICT] = "frozendict",
    [COW_T_LIST] = "list", [COW_T_FLIST] = "frozenlist",
    [COW_T_SET] = "set", [COW_T_FSET] = "frozenset",
};

/* The views a dict's keys(), values() and items() make, by COWPY_IT_*. */
static const char *const view_names[COWPY_VIEW_KINDS] = {"keys", "values", "items"};

/* _register(kind, cls): the Python class to build for a container kind, or
 * for a dict view ("keys", "values", "items"). */
COWPY_ENTRY(static, PyObject *, cowpy_register, (PyObject *mod, PyObject *args), (mod, args))
{
    cowpy_state *st = state_of_module(mod);
    const char *kind;
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "sO!:_register", &kind, &PyType_Type, &cls))
        return NULL;
    for (int k = 0; k < COWPY_VIEW_KINDS; k++)
        if (strcmp(view_names[k], kind) == 0)
            return cowpy_register_view(st, k, cls) < 0 ? NULL : Py_NewRef(Py_None);
    for (int t = 0; t < COW_T__COUNT; t++)
        if (tag_names[t] && strcmp(tag_names[t], kind) == 0) {
            cowpy_adopt_dealloc(st, (PyTypeObject *)cls);
            Py_INCREF(cls);
            Py_XSETREF(st->cls[t], cls);
            Py_RETURN_NONE;
        }
    PyErr_Format(PyExc_ValueError, "unknown container kind %s", kind);
    return NULL;
}

/* _live_nodes(): (vector nodes, index nodes) alive, for leak tests. */
COWPY_ENTRY(static, PyObject *, cowpy_live_nodes,
            (PyObject *mod, PyObject *unused), (mod, unused))
{
    return Py_BuildValue("(ll)", cow_vec_live_nodes(), cow_map_live_nodes());
}

/* _debug_checks(on) -> whether they were on: a debug build's validation
 * after each write (wrapper.c), which holds for sound nodes only; tests of
 * damaged pages turn it off.  A release build validates nothing either way. */
static PyObject *
cowpy_set_debug_checks(PyObject *mod, PyObject *on)
{
    int was = cowpy_debug_checks, want = PyObject_IsTrue(on);
    if (want < 0)
        return NULL;
    cowpy_debug_checks = want;
    return PyBool_FromLong(was);
}

static PyMethodDef module_methods[] = {
    {"freeze", cowpy_freeze, METH_O,
     "freeze(obj) -> obj with every dict/list/set converted to cowstore containers."},
    {"thaw", cowpy_thaw_fn, METH_O,
     "thaw(obj) -> plain nested dict/list/set/tuple copy of obj."},
    {"_register", cowpy_register, METH_VARARGS, NULL},
    {"_live_nodes", cowpy_live_nodes, METH_NOARGS, NULL},
    {"_debug_checks", cowpy_set_debug_checks, METH_O, NULL},
    {"_after_fork", cowpy_after_fork, METH_NOARGS, NULL},
    {"_measure", cowpy_measure, METH_O,
     "_measure(values) -> (bytes, nodes) the values would take in an empty store."},
    {"_parcel", cowpy_parcel, METH_O,
     "_parcel(obj) -> bytes: obj's nodes as one self-contained buffer (parcel.h)."},
    {"_open_parcel", cowpy_open_parcel, METH_O,
     "_open_parcel(buffer) -> the value in a parcel, read lazily in place."},
    {"_open_parcels", cowpy_open_parcels, METH_NOARGS, NULL},
    {"_diff", cowpy_diff, METH_VARARGS,
     "_diff(a, b, Change, MISSING) -> iterator of the changes from a to b (shared nodes skipped)."},
    {NULL, NULL, 0, NULL},
};

static int
add_exception(PyObject *mod, PyObject **slot, const char *name, PyObject *bases,
              const char *doc)
{
    char qual[96];
    PyOS_snprintf(qual, sizeof qual, "cowstore.%s", name);
    *slot = PyErr_NewExceptionWithDoc(qual, doc, bases, NULL);
    if (*slot == NULL)
        return -1;
    return PyModule_AddObjectRef(mod, name, *slot);
}

static int
add_exceptions(PyObject *mod, cowpy_state *st)
{
    struct { PyObject **slot; const char *name; PyObject *builtin; const char *doc; } table[] = {
        {&st->UnsupportedTypeError, "UnsupportedTypeError", PyExc_TypeError,
         "A value of a type cowstore cannot store."},
        {&st->CycleError, "CycleError", PyExc_ValueError,
         "A structure that contains itself."},
        {&st->FrozenError, "FrozenError", PyExc_TypeError,
         "A mutation of a frozen (immutable) container."},
        {&st->CowMemoryError, "CowMemoryError", PyExc_MemoryError, "Out of memory."},
        {&st->CowValueError, "CowValueError", PyExc_ValueError, "An invalid value."},
        {&st->CowOverflowError, "CowOverflowError", PyExc_OverflowError,
         "A size beyond cowstore's limits."},
        {&st->StoreError, "StoreError", PyExc_OSError,
         "A store operation failed (the message is LMDB's or cowstore's)."},
        {&st->CorruptStoreError, "CorruptStoreError", PyExc_ValueError,
         "Stored bytes that fail validation."},
        {&st->ReadonlyStoreError, "ReadonlyStoreError", PyExc_PermissionError,
         "A write to a store opened readonly."},
        {&st->ConflictError, "ConflictError", PyExc_RuntimeError,
         "A transaction had to restart because another process wrote meanwhile."},
    };
    if (add_exception(mod, &st->CowstoreError, "CowstoreError", NULL,
                      "Base class of every cowstore exception.") < 0)
        return -1;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        /* store errors after StoreError derive from it */
        PyObject *base = st->StoreError && table[i].slot != &st->StoreError
                         ? st->StoreError : st->CowstoreError;
        PyObject *bases = PyTuple_Pack(2, base, table[i].builtin);
        int rc = bases ? add_exception(mod, table[i].slot, table[i].name, bases, table[i].doc) : -1;
        Py_XDECREF(bases);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
add_type(PyObject *mod, PyTypeObject **slot, PyType_Spec *spec)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(mod, spec, NULL);
    if (*slot == NULL)
        return -1;
    return PyModule_AddType(mod, *slot);
}

/* Core memory comes from CPython's allocator, so tracemalloc sees it; small
 * nodes then come from pymalloc's pools, with no per-block header.  The core
 * is only ever called with the GIL held, as PyMem_Malloc requires. */
static const cow_allocator python_allocator = {
    PyMem_Malloc, PyMem_Calloc, PyMem_Realloc, PyMem_Free,
};

static int
cowpy_exec(PyObject *mod)
{
    cowpy_state *st = state_of_module(mod);
    st->changes = 1;                    /* never a new view's synced */
    cow_set_allocator(&python_allocator);
    cow_seed_idents();
    if (add_type(mod, &st->dict_base, &cowpy_dict_spec) < 0
        || add_type(mod, &st->list_base, &cowpy_list_spec) < 0
        || add_type(mod, &st->set_base, &cowpy_set_spec) < 0
        || add_type(mod, &st->iter_type, &cowpy_iter_spec) < 0
        || add_type(mod, &st->diff_type, &cowpy_diff_spec) < 0
        || add_type(mod, &st->store_type, &cowpy_store_spec) < 0
        || add_type(mod, &st->array_buffer_type, &cowpy_array_buffer_spec) < 0)
        return -1;
    return add_exceptions(mod, st);
}

static int
cowpy_traverse(PyObject *mod, visitproc visit, void *arg)
{
    cowpy_state *st = state_of_module(mod);
    Py_VISIT(st->dict_base);
    Py_VISIT(st->list_base);
    Py_VISIT(st->set_base);
    Py_VISIT(st->iter_type);
    Py_VISIT(st->diff_type);
    Py_VISIT(st->store_type);
    Py_VISIT(st->array_buffer_type);
    Py_VISIT(st->numpy);
    Py_VISIT(st->ext);
    Py_VISIT(st->str_encode);
    Py_VISIT(st->str_decode);
    for (int t = 0; t < COW_T__COUNT; t++)
        Py_VISIT(st->cls[t]);
    for (int k = 0; k < COWPY_VIEW_KINDS; k++)
        Py_VISIT(st->view_cls[k]);
    return 0;
}

static int
cowpy_clear(PyObject *mod)
{
    cowpy_state *st = state_of_module(mod);
    Py_CLEAR(st->dict_base);
    Py_CLEAR(st->list_base);
    Py_CLEAR(st->set_base);
    Py_CLEAR(st->iter_type);
    Py_CLEAR(st->diff_type);
    Py_CLEAR(st->store_type);
    Py_CLEAR(st->array_buffer_type);
    Py_CLEAR(st->numpy);
    Py_CLEAR(st->ext);
    Py_CLEAR(st->str_encode);
    Py_CLEAR(st->str_decode);
    for (int t = 0; t < COW_T__COUNT; t++)
        Py_CLEAR(st->cls[t]);
    for (int k = 0; k < COWPY_VIEW_KINDS; k++)
        Py_CLEAR(st->view_cls[k]);
    Py_CLEAR(st->CowstoreError);
    Py_CLEAR(st->UnsupportedTypeError);
    Py_CLEAR(st->CycleError);
    Py_CLEAR(st->FrozenError);
    Py_CLEAR(st->CowMemoryError);
    Py_CLEAR(st->CowValueError);
    Py_CLEAR(st->CowOverflowError);
    Py_CLEAR(st->CorruptStoreError);
    Py_CLEAR(st->StoreError);
    Py_CLEAR(st->ReadonlyStoreError);
    Py_CLEAR(st->ConflictError);
    return 0;
}

static void
cowpy_free(void *mod)
{
    cowpy_clear(mod);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, cowpy_exec},
    {0, NULL},
};

static struct PyModuleDef cowpy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cowstore._cowstore",
    .m_doc = "C core of cowstore: persistent copy-on-write containers.",
    .m_size = sizeof(cowpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = cowpy_traverse,
    .m_clear = cowpy_clear,
    .m_free = cowpy_free,
};

PyMODINIT_FUNC
PyInit__cowstore(void)
{
    return PyModuleDef_Init(&cowpy_module);
}
