/* Key objects, cached: the str objects of dict keys read out of packs and
 * maps, made once per process and shared, as json.loads shares the keys of
 * its records (its key memo).
 *
 * Three direct-mapped tables, all bounded, all used under the GIL only.
 * Each slot keeps a copy of the bytes its object was made from and is
 * checked against them, so an entry stays right when the bytes it came
 * from are freed or their store closed, whatever reuses the address:
 *  - a packed dict shape's keys (pack.h P4) as one tuple, for iterating
 *    packed records: records of one key set share a shape, so a loop over
 *    them makes no key object;
 *  - single keys up to KEY_CACHE_MAX_BYTES, for thaw: 200,000 thawed
 *    records took 917 bytes each with a str per key per record, against
 *    json.loads' 604;
 *  - the strs a pack's records repeat (pack.h P7: a status, a tag), which
 *    its writer found worth sharing.
 * Shapes and repeated strs live in blobs interned per process (P4, P7), so
 * the same address keeps coming back: their slot is chosen by the address,
 * without hashing the bytes (an address reused for other bytes costs a
 * miss).  Single keys come from everywhere and are chosen by content.  A
 * program of many key sets evicts; memory stays bounded. */
#include "cowpy.h"

#define SHAPE_KEYS_BITS 8
#define SHAPE_KEYS_SLOTS (1u << SHAPE_KEYS_BITS)
#define KEY_CACHE_SLOTS 1024
#define REPEATED_BITS 8
#define REPEATED_SLOTS (1u << REPEATED_BITS)
/* Longer keys are made afresh: rare, and costly to compare. */
#define KEY_CACHE_MAX_BYTES 64
static const uint64_t KEY_CACHE_SEED = 0xa54ff53a5f1d36f1ULL;

/* A slot of either table: the bytes it was made from, and the object. */
typedef struct key_slot {
    uint8_t *bytes;         /* owned copy, or NULL for an empty slot */
    size_t len;
    PyObject *obj;          /* a shape's tuple of interned str, or one str */
} key_slot;

static key_slot shape_slots[SHAPE_KEYS_SLOTS];
static key_slot key_slots[KEY_CACHE_SLOTS];
static key_slot repeated_slots[REPEATED_SLOTS];

/* Fills *slot with obj (stolen) made from bytes [s, s + len). */
static PyObject *
slot_fill(key_slot *slot, const uint8_t *s, size_t len, PyObject *obj)
{
    uint8_t *copy = PyMem_Malloc(len ? len : 1);
    if (copy == NULL) {
        Py_DECREF(obj);
        return PyErr_NoMemory();
    }
    memcpy(copy, s, len);
    PyMem_Free(slot->bytes);
    Py_XSETREF(slot->obj, obj);
    slot->bytes = copy;
    slot->len = len;
    return obj;
}

static int
slot_holds(const key_slot *slot, const uint8_t *s, size_t len)
{
    return slot->bytes && slot->len == len && cow_bytes_equal(slot->bytes, s, len);
}

/* A str of UTF-8 [s, s + len), interned; CorruptStoreError for bytes that
 * do not decode (keys are kept valid: only damaged pages have them). */
static PyObject *
key_str(cowpy_state *st, const char *s, size_t len)
{
    PyObject *k = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
    if (k == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            cowpy_raise(st, COW_ECORRUPT);
        }
        return NULL;
    }
    PyUnicode_InternInPlace(&k);
    return k;
}

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
        if (p >= end || (size_t)(end - p - 1) < *p) {
            cowpy_raise(st, COW_ECORRUPT);
            goto fail;
        }
        if ((k = key_str(st, (const char *)p + 1, *p)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(keys, i, k);
    }
    return keys;
fail:
    Py_DECREF(keys);
    return NULL;
}

PyObject *
cowpy_shape_keys(cowpy_state *st, const uint8_t *shape, size_t len)
{
    key_slot *slot = &shape_slots[cowpy_address_slot(shape, SHAPE_KEYS_BITS)];
    PyObject *keys;
    if (slot_holds(slot, shape, len))
        return slot->obj;
    if ((keys = keys_of_shape(st, shape, len)) == NULL)
        return NULL;
    return slot_fill(slot, shape, len, keys);
}

/* The str of UTF-8 [s, s + len) held by *slot, made and cached there when
 * the slot holds other bytes (a new reference). */
static PyObject *
cached_str(cowpy_state *st, key_slot *slot, const uint8_t *s, size_t len)
{
    PyObject *k;
    if (slot_holds(slot, s, len))
        return Py_NewRef(slot->obj);
    if ((k = key_str(st, (const char *)s, len)) == NULL)
        return NULL;
    return slot_fill(slot, s, len, k) ? Py_NewRef(k) : NULL;
}

PyObject *
cowpy_key_object(cowpy_state *st, const char *utf8, size_t len)
{
    const uint8_t *s = (const uint8_t *)utf8;
    if (len > KEY_CACHE_MAX_BYTES)
        return key_str(st, utf8, len);
    return cached_str(st, &key_slots[cow_hash_bytes(s, len, KEY_CACHE_SEED) % KEY_CACHE_SLOTS],
                      s, len);
}

PyObject *
cowpy_repeated_str(cowpy_state *st, const char *utf8, size_t len)
{
    return cached_str(st, &repeated_slots[cowpy_address_slot(utf8, REPEATED_BITS)],
                      (const uint8_t *)utf8, len);
}
