/* The key objects of packed dicts' shapes (pack.h P4), cached.
 *
 * Iterating a packed record reads its keys from its shape, which records of
 * one key set share.  Making a str per key per record would cost more than
 * the rest of the iteration; json.loads shares its key objects across
 * records the same way (its key memo).  So the keys of a shape are made
 * once, interned, and kept in a tuple found by the shape's bytes: keyed by
 * content, not by the blob's address, an entry stays right when the blob is
 * freed or its store closed, whatever reuses the address.
 *
 * Direct-mapped and bounded: a program of many key sets evicts, and memory
 * stays SHAPE_KEYS_SLOTS tuples.  Used under the GIL only. */
#include "cowpy.h"

#define SHAPE_KEYS_SLOTS 256
static const uint64_t SHAPE_KEYS_SEED = 0x3c6ef372fe94f82bULL;

typedef struct shape_keys_slot {
    uint8_t *bytes;         /* the shape blob's bytes (owned copy), or NULL */
    size_t len;
    PyObject *keys;         /* tuple of interned str, one per key in order */
} shape_keys_slot;

static shape_keys_slot slots[SHAPE_KEYS_SLOTS];

/* A tuple of the keys of shape bytes [s, s + len): u8 count, then per key
 * u8 length and UTF-8.  Every length is checked (the bytes may come from a
 * hostile file): NULL with CorruptStoreError when they do not add up. */
static PyObject *
keys_of_shape(cowpy_state *st, const uint8_t *s, size_t len)
{
    const uint8_t *p = s + 1, *end = s + len;
    PyObject *keys, *k;
    if (len == 0)
        return cowpy_raise(st, COW_ECORRUPT);
    if ((keys = PyTuple_New(s[0])) == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < s[0]; i++, p += 1 + *p) {
        if (p >= end || (size_t)(end - p - 1) < *p)
            goto corrupt;
        if ((k = PyUnicode_DecodeUTF8((const char *)p + 1, *p, "strict")) == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                goto fail;
            PyErr_Clear();
            goto corrupt;
        }
        PyUnicode_InternInPlace(&k);
        PyTuple_SET_ITEM(keys, i, k);
    }
    return keys;
corrupt:
    cowpy_raise(st, COW_ECORRUPT);
fail:
    Py_DECREF(keys);
    return NULL;
}

PyObject *
cowpy_shape_keys(cowpy_state *st, const uint8_t *shape, size_t len)
{
    shape_keys_slot *slot = &slots[cow_hash_bytes(shape, len, SHAPE_KEYS_SEED) % SHAPE_KEYS_SLOTS];
    PyObject *keys;
    uint8_t *copy;
    if (slot->bytes && slot->len == len && memcmp(slot->bytes, shape, len) == 0)
        return slot->keys;
    if ((keys = keys_of_shape(st, shape, len)) == NULL)
        return NULL;
    if ((copy = PyMem_Malloc(len ? len : 1)) == NULL) {
        Py_DECREF(keys);
        return PyErr_NoMemory();
    }
    memcpy(copy, shape, len);
    PyMem_Free(slot->bytes);
    Py_XSETREF(slot->keys, keys);
    slot->bytes = copy;
    slot->len = len;
    return keys;
}
