/* Keys of types we never store.
 *
 * An object of a type we cannot store (an IntEnum member, a Decimal, a
 * tuple holding one, any object with its own __eq__ and __hash__) can still
 * equal a stored key in Python's eyes, and dict would find it: a dict lookup
 * asks hash(k) == hash(x), then k == x (the stored key first).  Our maps
 * place keys by a stable hash of their own, which such an object has not,
 * so it is looked for by a scan that asks Python those two questions of
 * every key read back: O(n) objects made per lookup (docs/semantics.md).
 * Keys of the types we store never come here.  The scan reads a snapshot,
 * since __hash__ and __eq__ may run any code, mutating the map included. */
#include "cowpy.h"

/* dict's question: 1 if k (a stored key read back) equals obj, whose hash is
 * want; 0 if not; -1 on error. */
static int
key_matches(PyObject *k, Py_hash_t want, PyObject *obj)
{
    Py_hash_t h = PyObject_Hash(k);
    if (h == -1)
        return -1;
    return h == want ? PyObject_RichCompareBool(k, obj, Py_EQ) : 0;
}

int
cowpy_foreign_key(cowpy_state *st, const cow_val *root, PyObject *obj, cow_val *key,
                  uint64_t *hash)
{
    Py_hash_t want = PyObject_Hash(obj);
    const cow_map *m;
    cow_val snap;
    PyObject *k;
    int rc = 0;
    if (want == -1)
        return -1;
    cow_val_copy(&snap, root);
    m = cow_val_getmap(&snap);
    for (size_t e = 0; e < cow_map_entries(m) && rc == 0; e++) {
        cow_val stored_key = cow_map_entry_key(m, e);
        const cow_val *stored = &stored_key;
        if (stored->tag == COW_T_HOLE)
            continue;
        if ((k = cowpy_to_object(st, stored, NULL, NULL, 0, 0)) == NULL) {
            rc = -1;
            break;
        }
        if ((rc = key_matches(k, want, obj)) == 1) {
            cow_val_copy(key, stored);
            cow_val_hash(key, hash);
        }
        Py_DECREF(k);
    }
    cow_val_release(&snap);
    return rc;
}

int
cowpy_lookup_key(CowObject *self, PyObject *obj, cow_val *out, uint64_t *hash, int *owned)
{
    int rc = cowpy_probe_key(self->st, obj, out, hash, owned);
    if (rc != COWPY_PROBE_FOREIGN)
        return rc;
    if ((rc = cowpy_foreign_key(self->st, &self->root, obj, out, hash)) <= 0)
        return rc;
    *owned = 1;
    if (cowpy_resolve(self) < 0) {          /* == may have written to our parent */
        cow_val_release(out);
        return -1;
    }
    return 1;
}

int
cowpy_store_key_in(CowObject *self, PyObject *obj, cow_val *out, uint64_t *hash)
{
    PyObject *type, *value, *tb;
    int rc;
    if (cowpy_store_key(self->st, obj, out, hash) == 0)
        return 0;
    if (!PyErr_ExceptionMatches(self->st->UnsupportedTypeError))
        return -1;
    PyErr_Fetch(&type, &value, &tb);
    rc = cowpy_resolve(self);
    if (rc == 0 && (rc = cowpy_foreign_key(self->st, &self->root, obj, out, hash)) == 0) {
        PyErr_Restore(type, value, tb);     /* no equal key: it cannot be stored */
        return -1;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return rc > 0 ? 0 : -1;
}
