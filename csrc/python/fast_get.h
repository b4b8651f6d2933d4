/* The fast lookup of a str or int key in a heap map, shared by d[k],
 * d.get(k), k in d and k in s; inline, as on d[k]'s path a call costs as
 * much as the checks (+37 instructions a lookup out of line).
 *
 * The general lookup (cowpy_lookup_key, cow_map_find) converts the probe to
 * a cow_val, walks the index through the checks stored nodes need and
 * compares keys by cow_val_equal: ~700 instructions for an int key.  The
 * commonest keys, an exact str or an int that fits 64 bits, go straight to
 * the core's heap-only walks (map.h cow_map_get_str, cow_map_get_int): the
 * str's UTF-8 read in place, the int compared as an int.  Anything else --
 * another type, a subclass (its __eq__ / __hash__), a lone surrogate, a
 * stored node on the way, a map small enough to have no index -- answers
 * COW_ASK_GENERAL and takes the general path. */
#ifndef COWPY_FAST_GET_H
#define COWPY_FAST_GET_H

#include "cowpy.h"

/* The UTF-8 of exact str `str` in [*s, *s + *n) (the str's own bytes, or
 * its cached UTF-8): 0, or -1 for a lone surrogate (no error left set). */
static inline int
cowpy_str_utf8(PyObject *str, const char **s, size_t *n)
{
    Py_ssize_t len;
    if (PyUnicode_IS_COMPACT_ASCII(str)) {      /* the bytes are the str's own */
        *s = (const char *)PyUnicode_DATA(str);
        len = PyUnicode_GET_LENGTH(str);
    }
    else if ((*s = PyUnicode_AsUTF8AndSize(str, &len)) == NULL) {
        PyErr_Clear();                  /* lone surrogates: the general path's */
        return -1;
    }
    *n = (size_t)len;
    return 0;
}

/* Looks key up in heap map m by the core's fast walks when key is an exact
 * str or an int of 64 bits: COW_FOUND (its value, borrowed, in *val unless
 * val is NULL), COW_NOT_FOUND, or COW_ASK_GENERAL (another key, a stored
 * node, no index...: the general lookup must answer).  Raises nothing. */
static inline int
cowpy_fast_get(const cow_map *m, PyObject *key, cow_val *val)
{
    const char *s;
    size_t n;
    long long x;
    int overflow;
    if (Py_IS_TYPE(key, &PyUnicode_Type)) {
        if (cowpy_str_utf8(key, &s, &n) < 0)
            return COW_ASK_GENERAL;
        return cow_map_get_str(m, s, n, cow_hash_bytes(s, n, COW_SEED_STR), val);
    }
    if (Py_IS_TYPE(key, &PyLong_Type)) {
        x = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (overflow)
            return COW_ASK_GENERAL;     /* a big int: stored as such */
        return cow_map_get_int(m, (int64_t)x, cow_val_int_hash((int64_t)x), val);
    }
    return COW_ASK_GENERAL;
}

#endif
