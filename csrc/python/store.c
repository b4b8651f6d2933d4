/* _Store: the binding of the core's LMDB store (cowstore/store.h).
 *
 * Thin on purpose: names are UTF-8 bytes, values go through convert.c, and
 * every core error becomes one exception with the store's own message.  The
 * Python class cowstore.Store (cowstore/_store.py) adds the API sugar:
 * mapping methods, transactions as a context manager, anonymous stores,
 * fork handling and pickling by reference. */
#include "cowpy.h"
#include "cowstore/segment.h"
#include "cowstore/store.h"

typedef struct StoreObject {
    PyObject_HEAD
    cowpy_state *st;
    cow_store *s;           /* NULL once closed */
    int txn_open;           /* a transaction begun through this handle is open */
    unsigned long txn_thread;   /* the thread that began it */
} StoreObject;

#define STORE(op) ((StoreObject *)(op))

static PyObject *
exception_for_store(cowpy_state *st, int code)
{
    switch (code) {
    case COW_ECORRUPT: return st->CorruptStoreError;
    case COW_EREADONLY: return st->ReadonlyStoreError;
    case COW_ECONFLICT: return st->ConflictError;
    case COW_ENOMEM: return st->CowMemoryError;
    case COW_EOVERFLOW: return st->CowOverflowError;
    }
    return st->StoreError;
}

/* Raises the exception for a store error with the store's message. */
static PyObject *
store_raise(StoreObject *self, int code)
{
    const char *msg = cow_store_errmsg();
    PyErr_SetString(exception_for_store(self ? self->st : NULL, code), msg[0] ? msg : cow_strerror(code));
    return NULL;
}

static int
check_open(StoreObject *self)
{
    if (self->s == NULL) {
        PyErr_SetString(self->st->StoreError, "store is closed");
        return -1;
    }
    return 0;
}

static const char *
name_utf8(PyObject *name, Py_ssize_t *len)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "root names are str, not %.200s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(name, len);
}

static void *
release_gil(void)
{
    return PyEval_SaveThread();
}

static void
acquire_gil(void *token)
{
    PyEval_RestoreThread(token);
}

/* _Store(path, flags, map_size) */
static PyObject *
store_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    cowpy_state *st = cowpy_state_of_type(type);
    const char *path;
    unsigned int flags;
    Py_ssize_t map_size;
    StoreObject *self;
    cow_store *s;
    int rc;
    if (st == NULL || !PyArg_ParseTuple(args, "sIn:_Store", &path, &flags, &map_size))
        return NULL;
    if (map_size < 0) {
        PyErr_SetString(PyExc_ValueError, "map_size must be positive");
        return NULL;
    }
    cow_store_set_block_hooks(release_gil, acquire_gil);
    if ((rc = cow_store_open(path, flags, (size_t)map_size, &s)) < 0) {
        PyErr_SetString(exception_for_store(st, rc), cow_store_errmsg());
        return NULL;
    }
    if ((self = (StoreObject *)type->tp_alloc(type, 0)) == NULL) {
        cow_store_close(s);
        return NULL;
    }
    self->st = st;
    self->s = s;
    return (PyObject *)self;
}

static void
store_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    cow_store_close(STORE(op)->s);      /* deferred while values are alive */
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* Whether a transaction begun through this handle is open in another
 * thread: only that thread can end it (its commit or abort comes through
 * this handle), so closing the handle under it would leave LMDB's writer
 * lock held for as long as that thread lives. */
static int
txn_elsewhere(const StoreObject *self)
{
    return self->txn_open && self->txn_thread != PyThread_get_thread_ident();
}

/* Notes that the calling thread's transaction through this handle ended
 * (committed, aborted, or failed and aborted by the core). */
static void
txn_ended(StoreObject *self)
{
    if (self->txn_open && self->txn_thread == PyThread_get_thread_ident())
        self->txn_open = 0;
}

/* close(): a transaction this thread has open on the store is aborted; one
 * another thread has open through this handle refuses it (StoreError). */
COWPY_ENTRY(static, PyObject *, store_close, (PyObject *op, PyObject *unused), (op, unused))
{
    if (txn_elsewhere(STORE(op))) {
        PyErr_SetString(STORE(op)->st->StoreError,
                        "another thread is inside a transaction on this store handle: close "
                        "it after that transaction ends (or from that thread)");
        return NULL;
    }
    txn_ended(STORE(op));
    if (STORE(op)->s)
        cow_store_abort(STORE(op)->s);
    cow_store_close(STORE(op)->s);
    STORE(op)->s = NULL;
    Py_RETURN_NONE;
}

/* Values that come back as lazy containers rather than converted objects. */
static int
is_container(const cow_val *v)
{
    return cow_tag_is_map(v->tag) || v->tag == COW_T_LIST || v->tag == COW_T_FLIST;
}

/* _get(name) -> value, or KeyError.  Containers come back backed by the
 * store's pages, read lazily. */
COWPY_ENTRY(static, PyObject *, store_get, (PyObject *op, PyObject *name), (op, name))
{
    StoreObject *self = STORE(op);
    Py_ssize_t len;
    const char *utf8;
    cow_val v;
    PyObject *res;
    int rc;
    if (check_open(self) < 0 || (utf8 = name_utf8(name, &len)) == NULL)
        return NULL;
    rc = cow_store_get(self->s, utf8, (size_t)len, &v);
    if (rc == COW_NOT_FOUND) {
        PyErr_SetObject(PyExc_KeyError, name);
        return NULL;
    }
    if (rc < 0)
        return store_raise(self, rc);
    if (is_container(&v))
        return cowpy_wrap(self->st, v);
    res = cowpy_to_object(self->st, &v, NULL, NULL, 0, 0);
    cow_val_release(&v);
    return res;
}

COWPY_ENTRY(static, PyObject *, store_begin, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    int rc;
    if (check_open(self) < 0)
        return NULL;
    if ((rc = cow_store_begin(self->s)) < 0)
        return store_raise(self, rc);
    self->txn_open = 1;
    self->txn_thread = PyThread_get_thread_ident();
    Py_RETURN_NONE;
}

/* _put(name, obj): converted now (so a bad value raises before anything is
 * written), written at _commit. */
COWPY_ENTRY(static, PyObject *, store_put, (PyObject *op, PyObject *args), (op, args))
{
    StoreObject *self = STORE(op);
    PyObject *name, *obj;
    Py_ssize_t len;
    const char *utf8;
    cow_val v;
    int rc;
    if (!PyArg_ParseTuple(args, "OO:_put", &name, &obj) || check_open(self) < 0
        || (utf8 = name_utf8(name, &len)) == NULL)
        return NULL;
    if (cowpy_from_object(self->st, obj, &v) < 0)
        return NULL;
    rc = cow_store_put(self->s, utf8, (size_t)len, &v);
    cow_val_release(&v);
    if (rc < 0)
        return store_raise(self, rc);
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, store_delete, (PyObject *op, PyObject *name), (op, name))
{
    StoreObject *self = STORE(op);
    Py_ssize_t len;
    const char *utf8;
    int rc;
    if (check_open(self) < 0 || (utf8 = name_utf8(name, &len)) == NULL)
        return NULL;
    rc = cow_store_del(self->s, utf8, (size_t)len);
    if (rc == COW_NOT_FOUND) {
        PyErr_SetObject(PyExc_KeyError, name);
        return NULL;
    }
    if (rc < 0)
        return store_raise(self, rc);
    Py_RETURN_NONE;
}

typedef struct committed_ctx {
    cowpy_state *st;
    PyObject *dict;         /* name -> the stored twin of the container put */
} committed_ctx;

/* One container put by the commit, added to ctx's dict. */
static int
collect_committed(void *ctx, const char *name, size_t nlen, const cow_val *value)
{
    committed_ctx *cx = ctx;
    PyObject *key = NULL, *wrapped = NULL;
    cow_val v;
    int rc = COW_ENOMEM;
    if (!is_container(value))
        return COW_OK;
    cow_val_copy(&v, value);
    if ((wrapped = cowpy_wrap(cx->st, v)) == NULL)
        goto done;
    if ((key = PyUnicode_DecodeUTF8(name, (Py_ssize_t)nlen, "surrogateescape")) == NULL)
        goto done;
    if (PyDict_SetItem(cx->dict, key, wrapped) == 0)
        rc = COW_OK;
done:
    Py_XDECREF(key);
    Py_XDECREF(wrapped);
    return rc;
}

/* _commit() -> {name: stored value} for the containers put, read back from
 * the commit's own pages (what each put container may adopt). */
COWPY_ENTRY(static, PyObject *, store_commit, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    committed_ctx cx = {self->st, NULL};
    int rc;
    if (check_open(self) < 0 || (cx.dict = PyDict_New()) == NULL)
        return NULL;
    rc = cow_store_commit_each(self->s, collect_committed, &cx);
    if (!cow_store_in_txn(self->s))
        txn_ended(self);                /* committed, or failed and aborted */
    if (rc < 0) {
        Py_DECREF(cx.dict);
        return PyErr_Occurred() ? NULL : store_raise(self, rc);
    }
    return cx.dict;
}

COWPY_ENTRY(static, PyObject *, store_abort, (PyObject *op, PyObject *unused), (op, unused))
{
    txn_ended(STORE(op));
    if (STORE(op)->s)
        cow_store_abort(STORE(op)->s);
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, store_in_txn, (PyObject *op, PyObject *unused), (op, unused))
{
    return PyBool_FromLong(STORE(op)->s && cow_store_in_txn(STORE(op)->s));
}

typedef struct names_ctx {
    PyObject *list;
    cowpy_state *st;
} names_ctx;

/* Names are written from str only: one that is not UTF-8 was damaged in
 * LMDB's pages. */
static int
append_name(void *ctx, const char *name, size_t len)
{
    names_ctx *cx = ctx;
    PyObject *s = PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, NULL);
    int rc;
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_SetString(cx->st->CorruptStoreError,
                        "corrupt store: a root name is not UTF-8 (damaged pages)");
        return COW_ECORRUPT;
    }
    rc = s ? PyList_Append(cx->list, s) : -1;
    Py_XDECREF(s);
    return rc < 0 ? COW_ENOMEM : COW_OK;
}

COWPY_ENTRY(static, PyObject *, store_names, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    PyObject *list;
    int rc;
    if (check_open(self) < 0 || (list = PyList_New(0)) == NULL)
        return NULL;
    names_ctx cx = {list, self->st};
    if ((rc = cow_store_names(self->s, append_name, &cx)) < 0) {
        Py_DECREF(list);
        return PyErr_Occurred() ? NULL : store_raise(self, rc);
    }
    return list;
}

/* {database name: {entries, depth, branch_pages, leaf_pages, overflow_pages}}:
 * a new reference. */
static PyObject *
lmdb_stats(const cow_store_stats *x)
{
    static const char *const names[COW_STORE_NDBS] = {"meta", "roots", "segs"};
    PyObject *dict = PyDict_New(), *one;
    for (int i = 0; dict != NULL && i < COW_STORE_NDBS; i++) {
        const cow_store_db_stats *d = &x->dbs[i];
        one = Py_BuildValue("{sKsKsKsKsK}", "entries", (unsigned long long)d->entries,
                            "depth", (unsigned long long)d->depth,
                            "branch_pages", (unsigned long long)d->branch_pages,
                            "leaf_pages", (unsigned long long)d->leaf_pages,
                            "overflow_pages", (unsigned long long)d->overflow_pages);
        if (one == NULL || PyDict_SetItemString(dict, names[i], one) < 0)
            Py_CLEAR(dict);
        Py_XDECREF(one);
    }
    return dict;
}

COWPY_ENTRY(static, PyObject *, store_stats, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    cow_store_stats x;
    PyObject *lmdb;
    int rc;
    if (check_open(self) < 0)
        return NULL;
    if ((rc = cow_store_stats_get(self->s, &x)) < 0)
        return store_raise(self, rc);
    if ((lmdb = lmdb_stats(&x)) == NULL)
        return NULL;
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsIsKsN}",
        "roots", (unsigned long long)x.roots, "segments", (unsigned long long)x.segments,
        "segment_bytes", (unsigned long long)x.segment_bytes,
        "live_bytes", (unsigned long long)x.live_bytes,
        "file_bytes", (unsigned long long)x.file_bytes, "map_bytes", (unsigned long long)x.map_bytes,
        "page_size", (unsigned long long)x.page_size, "last_txn", (unsigned long long)x.last_txn,
        "readers_used", (unsigned long long)x.readers_used,
        "readers_max", (unsigned long long)x.readers_max,
        "pins", (unsigned long long)x.pins, "format_version", x.format_version,
        "free_pages", (unsigned long long)x.free_pages, "lmdb", lmdb);
}

COWPY_ENTRY(static, PyObject *, store_compact, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    int rc;
    if (check_open(self) < 0)
        return NULL;
    if ((rc = cow_store_compact(self->s)) < 0)
        return store_raise(self, rc);
    Py_RETURN_NONE;
}

COWPY_ENTRY(static, PyObject *, store_bulk, (PyObject *op, PyObject *on), (op, on))
{
    StoreObject *self = STORE(op);
    int flag = PyObject_IsTrue(on);
    if (flag < 0 || check_open(self) < 0)
        return NULL;
    cow_store_set_bulk(self->s, flag);
    Py_RETURN_NONE;
}

/* _sweep_at_commit(): cow_store_sweep_at_commit, inside a transaction. */
COWPY_ENTRY(static, PyObject *, store_sweep_at_commit, (PyObject *op, PyObject *unused), (op, unused))
{
    StoreObject *self = STORE(op);
    int rc;
    if (check_open(self) < 0)
        return NULL;
    if ((rc = cow_store_sweep_at_commit(self->s)) < 0)
        return store_raise(self, rc);
    Py_RETURN_NONE;
}

/* _measure(values) -> (bytes, nodes): what the values (a sequence) would
 * take written together into an empty store, shared nodes once; a module
 * function. */
COWPY_ENTRY(extern, PyObject *, cowpy_measure, (PyObject *mod, PyObject *values), (mod, values))
{
    cowpy_state *st = PyModule_GetState(mod);
    PyObject *seq = NULL, *res = NULL;
    cow_val *vals = NULL;
    Py_ssize_t n, done = 0;
    uint64_t bytes, nodes;
    int rc;
    if ((seq = PySequence_Fast(values, "_measure() takes a sequence of values")) == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    if ((vals = PyMem_Calloc(n ? (size_t)n : 1, sizeof *vals)) == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (; done < n; done++)
        if (cowpy_from_object(st, PySequence_Fast_GET_ITEM(seq, done), &vals[done]) < 0)
            goto fail;
    if ((rc = cow_segw_measure(vals, (size_t)n, &bytes, &nodes)) < 0) {
        cowpy_raise(st, rc);
        goto fail;
    }
    res = Py_BuildValue("KK", (unsigned long long)bytes, (unsigned long long)nodes);
fail:
    for (Py_ssize_t i = 0; i < done; i++)
        cow_val_release(&vals[i]);
    PyMem_Free(vals);
    Py_DECREF(seq);
    return res;
}

/* _after_fork(): in a forked child, reopen every store of this process
 * (each entry point would also do it lazily); a module function. */
COWPY_ENTRY(extern, PyObject *, cowpy_after_fork,
            (PyObject *mod, PyObject *unused), (mod, unused))
{
    cowpy_state *st = PyModule_GetState(mod);
    int rc = cow_store_after_fork_all();
    cow_seed_idents();                  /* apart from the parent's (value.h) */
    if (rc < 0) {
        PyErr_SetString(exception_for_store(st, rc), cow_store_errmsg());
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef store_methods[] = {
    {"close", store_close, METH_NOARGS, "Close; values already read stay readable."},
    {"_get", store_get, METH_O, NULL},
    {"_begin", store_begin, METH_NOARGS, NULL},
    {"_put", store_put, METH_VARARGS, NULL},
    {"_delete", store_delete, METH_O, NULL},
    {"_commit", store_commit, METH_NOARGS, NULL},
    {"_abort", store_abort, METH_NOARGS, NULL},
    {"_in_txn", store_in_txn, METH_NOARGS, NULL},
    {"_names", store_names, METH_NOARGS, NULL},
    {"_stats", store_stats, METH_NOARGS, NULL},
    {"_compact", store_compact, METH_NOARGS, NULL},
    {"_bulk", store_bulk, METH_O, NULL},
    {"_sweep_at_commit", store_sweep_at_commit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot store_slots[] = {
    {Py_tp_new, store_new},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_methods, store_methods},
    {Py_tp_doc, "The C half of cowstore.Store (use cowstore.open)."},
    {0, NULL},
};

PyType_Spec cowpy_store_spec = {
    .name = "cowstore._cowstore._Store",
    .basicsize = sizeof(StoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = store_slots,
};

/* ---- references to stored values (pickling) -------------------------------- */

/* _origin(): None, or (origin, path, word) when this container is unchanged
 * from what the store holds at origin's root name, down `path` (a tuple of
 * keys and indices); word identifies the node, so a reader can check it
 * finds the same one. */
/* The stored word c reads: its root's, or that of the stored pack its root
 * was materialised from, or its nearest view ancestor's was (pack.h P1: a
 * write anywhere below a materialised view clears its pfrom, so a heap root
 * under one still equals the pack's content); 0 when c is on the heap. */
static uint64_t
stored_word_id(const CowObject *c)
{
    cow_val packed = {0};
    if (cow_val_stored(&c->root))
        return cow_store_word_id(&c->root);
    for (; c && !cow_val_stored(&c->root); c = c->parent)
        if (c->pfrom) {
            packed.tag = COW_T_PACKED;
            packed.u.w = c->pfrom;
            cow_pack_set_offset(&packed, c->poff);
            return cow_store_word_id(&packed);
        }
    return 0;
}

COWPY_ENTRY(extern, PyObject *, cowpy_origin_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op, *top = self;
    PyObject *path = NULL, *step = NULL, *res = NULL;
    if (cowpy_resolve(self) < 0)
        return NULL;
    if ((path = PyList_New(0)) == NULL)
        return NULL;
    for (CowObject *c = self; c; c = c->parent) {
        if (stored_word_id(c) == 0)
            goto none;
        top = c;
        if (c->parent == NULL)
            break;
        if (cowpy_parent_key(c) < 0)
            goto fail;
        step = cow_tag_is_map(c->parent->root.tag)
                   ? cowpy_to_object(COWPY_ST(op), &c->pkey, NULL, NULL, 0, 0)
                   : PyLong_FromSize_t(c->pidx);
        if (step == NULL || PyList_Insert(path, 0, step) < 0)
            goto fail;
        Py_CLEAR(step);
    }
    if (top->origin == NULL)
        goto none;
    PyObject *tuple = PyList_AsTuple(path);
    if (tuple)
        res = Py_BuildValue("(ONK)", top->origin, tuple,
                            (unsigned long long)stored_word_id(self));
    Py_DECREF(path);
    return res;
none:
    Py_DECREF(path);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(step);
    Py_DECREF(path);
    return NULL;
}

/* _root_word(): identifies the root's current nodes (changes on any write). */
COWPY_ENTRY(extern, PyObject *, cowpy_root_word_method,
            (PyObject *op, PyObject *unused), (op, unused))
{
    CowObject *self = (CowObject *)op;
    if (cowpy_resolve(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong((unsigned long long)self->root.u.w);
}

/* _adopt(committed, word): after `store[name] = self` committed, take the
 * stored root in place of our heap nodes (same content, same identity), so
 * the next commit of self writes only what changes after this one.  Only if
 * self is a detached root still at `word` (unchanged since the put). */
COWPY_ENTRY(extern, PyObject *, cowpy_adopt_method, (PyObject *op, PyObject *args), (op, args))
{
    CowObject *self = (CowObject *)op, *other;
    unsigned long long word;
    if (!PyArg_ParseTuple(args, "OK:_adopt", &other, &word))
        return NULL;
    if (!cowpy_is_ours(COWPY_ST(op), (PyObject *)other) || self->parent || other->parent
        || self->root.u.w != (cow_word)word || other->root.tag != self->root.tag)
        Py_RETURN_FALSE;
    cow_val_release(&self->root);
    cow_val_copy(&self->root, &other->root);
    cowpy_root_changed(self);
    Py_RETURN_TRUE;
}

/* _set_origin(origin): marks a container just read from a store. */
COWPY_ENTRY(extern, PyObject *, cowpy_set_origin_method,
            (PyObject *op, PyObject *origin), (op, origin))
{
    CowObject *self = (CowObject *)op;
    if (self->parent != NULL)           /* a view's slot holds its key object */
        Py_RETURN_NONE;
    Py_INCREF(origin);
    Py_XSETREF(self->origin, origin);
    Py_RETURN_NONE;
}
