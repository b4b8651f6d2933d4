/* Python objects <-> cow_val.
 *
 * Storing copies a plain structure in (value semantics); our own containers
 * are taken in O(1) by retaining their root.  Exact builtin types are
 * accepted (None, bool, int, float, str, bytes, tuple, dict, list, set,
 * frozenset and their cowstore counterparts), numpy arrays, and the
 * extension leaves of ext.c (datetime, Decimal, UUID, enum members,
 * namedtuples, dataclasses, registered classes); anything else raises
 * UnsupportedTypeError naming the type and where it was found, e.g.
 * "cannot store a value of type 'Decimal' (at root['prices'][3])".  A
 * structure that contains itself raises CycleError.  Nothing is half-stored:
 * a failed conversion releases what it built. */
#include "cowpy.h"
#include "cowstore/strset.h"

/* One level of the conversion in progress, for cycle checks and error paths. */
typedef struct conv_frame {
    const struct conv_frame *up;
    PyObject *container;        /* borrowed */
    PyObject *key;              /* borrowed key, or NULL for an index */
    Py_ssize_t index;
} conv_frame;

typedef struct conv_ctx {
    cowpy_state *st;
    int share_strs;             /* long strs go through strs (a container's) */
    cow_strset strs;            /* the long strs converted so far (strset.h) */
} conv_ctx;

static int conv(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out);
static int conv_child(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out);

/* "root['a'][3]" for the frame chain (new reference, or NULL). */
static PyObject *
path_repr(const conv_frame *at)
{
    PyObject *parts = PyList_New(0), *res = NULL, *sep = NULL;
    if (parts == NULL)
        return NULL;
    for (; at; at = at->up) {
        PyObject *s = at->key ? PyUnicode_FromFormat("[%R]", at->key)
                              : PyUnicode_FromFormat("[%zd]", at->index);
        if (s == NULL || PyList_Insert(parts, 0, s) < 0) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
    }
    if ((sep = PyUnicode_FromString("")) == NULL)
        goto done;
    PyObject *joined = PyUnicode_Join(sep, parts);
    if (joined) {
        res = PyUnicode_FromFormat("root%U", joined);
        Py_DECREF(joined);
    }
done:
    Py_XDECREF(sep);
    Py_DECREF(parts);
    return res;
}

/* -1 with exc "cowstore cannot store <what> of type T (at root...)", obj of
 * type T found at `at`, `below` (a str, or NULL) ending the path, and
 * ": <hint>" after it unless hint is NULL or "". */
static int
raise_at(PyObject *exc, const conv_frame *at, const char *what, PyObject *obj, PyObject *below,
         PyObject *hint)
{
    PyObject *path = path_repr(at), *full;
    if (path == NULL)
        return -1;
    full = below ? PyUnicode_Concat(path, below) : Py_NewRef(path);
    Py_DECREF(path);
    if (full == NULL)
        return -1;
    if (hint && PyUnicode_GET_LENGTH(hint) > 0)
        PyErr_Format(exc, "cowstore cannot store %s of type '%.200s' (at %U): %U", what,
                     Py_TYPE(obj)->tp_name, full, hint);
    else
        PyErr_Format(exc, "cowstore cannot store %s of type '%.200s' (at %U)", what,
                     Py_TYPE(obj)->tp_name, full);
    Py_DECREF(full);
    return -1;
}

/* -1 with UnsupportedTypeError for obj, which no conversion took: a record
 * (a dataclass, a namedtuple...) refused for a field is reported as that
 * field's value, at its path (root[0].when), not as the record. */
static int
refuse(conv_ctx *cx, const conv_frame *at, PyObject *obj)
{
    PyObject *inner, *below, *hint;
    int rc = cowpy_ext_refusal(cx->st, "refusal", obj, &inner, &below, &hint);
    if (rc <= 0)
        return rc < 0 ? -1 : raise_at(cx->st->UnsupportedTypeError, at, "a value", obj, NULL, NULL);
    raise_at(cx->st->UnsupportedTypeError, at, "a value", inner, below, hint);
    Py_DECREF(inner);
    Py_DECREF(below);
    Py_DECREF(hint);
    return -1;
}

/* A key at `at` that cowstore cannot hash: -1 with Python's own TypeError
 * if Python cannot hash it either, as dict raises it; else COWPY_NOT_A_KEY
 * with a TypeError naming the value to blame, where it is and why. */
static int
not_a_key(conv_ctx *cx, PyObject *key, const conv_frame *at)
{
    PyObject *inner, *below, *hint;
    int rc;
    if (PyObject_Hash(key) == -1)
        return -1;
    if ((rc = cowpy_ext_refusal(cx->st, "key_refusal", key, &inner, &below, &hint)) <= 0) {
        if (rc == 0)
            PyErr_Format(PyExc_TypeError, "unhashable type: '%.200s'", Py_TYPE(key)->tp_name);
        return -1;
    }
    raise_at(PyExc_TypeError, at, "a key", inner, below, hint);
    Py_DECREF(inner);
    Py_DECREF(below);
    Py_DECREF(hint);
    return PyErr_ExceptionMatches(PyExc_TypeError) ? COWPY_NOT_A_KEY : -1;
}

/* -1, with where it was found added to an UnsupportedTypeError a leaf's
 * own conversion raised (an array's dtype or shape). */
static int
refused_at(cowpy_state *st, const conv_frame *at)
{
    PyObject *type, *value, *tb, *path, *msg;
    if (!PyErr_ExceptionMatches(st->UnsupportedTypeError))
        return -1;
    PyErr_Fetch(&type, &value, &tb);
    if ((path = path_repr(at)) != NULL
        && (msg = PyUnicode_FromFormat("%S (at %U)", value, path)) != NULL) {
        PyErr_SetObject(type, msg);
        Py_DECREF(msg);
    }
    Py_XDECREF(path);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return -1;
}

static int
conv_int(conv_ctx *cx, PyObject *obj, cow_val *out)
{
    int overflow, rc;
    long long x = PyLong_AsLongLongAndOverflow(obj, &overflow);
    unsigned char *buf;
    size_t n;
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        *out = cow_val_int(x);
        return 0;
    }
    n = _PyLong_NumBits(obj) / 8 + 1;      /* magnitude bits plus a sign bit */
    if ((buf = PyMem_Malloc(n)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (_PyLong_AsByteArray((PyLongObject *)obj, buf, n, 1, 1) < 0) {
        PyMem_Free(buf);
        return -1;
    }
    rc = cow_val_bigint(out, buf, cow_bigint_minimal_len(buf, n));
    PyMem_Free(buf);
    return rc < 0 ? cowpy_raise_int(cx->st, rc) : 0;
}

/* Exact str obj as a cow_val -- through strs unless NULL (equal long strs
 * share one blob) -- and, unless hash is NULL, its hash: both from its
 * UTF-8 at once, the hash as cow_val_hash gives it (the str seed over the
 * bytes), ~100 instructions fewer a key than cow_val_hash's dispatch.  0,
 * or -1 raised (a lone surrogate has no UTF-8). */
static inline int
str_val(cowpy_state *st, cow_strset *strs, PyObject *obj, cow_val *out, uint64_t *hash)
{
    Py_ssize_t n;
    const char *s;
    int rc;
    if (PyUnicode_IS_COMPACT_ASCII(obj)) {      /* the bytes are the str's own */
        s = (const char *)PyUnicode_DATA(obj);
        n = PyUnicode_GET_LENGTH(obj);
    }
    else if ((s = PyUnicode_AsUTF8AndSize(obj, &n)) == NULL)
        return -1;
    rc = strs ? cow_strset_str(strs, s, (size_t)n, out) : cow_val_str(out, s, (size_t)n);
    if (rc < 0)
        return cowpy_raise_int(st, rc);
    if (hash != NULL)
        *hash = cow_hash_bytes(s, (size_t)n, COW_SEED_STR);
    return 0;
}

/* A conversion's str, hashed unless hash is NULL. */
static int
conv_str(conv_ctx *cx, PyObject *obj, cow_val *out, uint64_t *hash)
{
    return str_val(cx->st, cx->share_strs ? &cx->strs : NULL, obj, out, hash);
}

/* A nested container, just converted, in packed form where it fits
 * (pack.h): many small records then cost about their binary bytes. */
static int
pack_child(conv_ctx *cx, cow_val *v)
{
    cow_val packed;
    int rc;
    if (!cow_tag_is_vec(v->tag) && !cow_tag_is_map(v->tag))
        return 0;
    if ((rc = cow_pack_make(v, &packed)) < 0) {
        cow_val_release(v);
        return cowpy_raise_int(cx->st, rc);
    }
    if (rc == COW_FOUND) {
        cow_val_release(v);
        *v = packed;
    }
    return 0;
}

/* Entries converted a vector leaf at a time, so that the records among them
 * share one node (pack.h P6): the entries of a list, or a map's values. */
#define CONV_BLOCK COW_VEC_WIDTH
#define CONV_MAP_BLOCK (COW_VEC_WIDTH / 2)
/* conv_seq packs a sequence straight from one block, and leaves longer ones
 * general: no pack holds more. */
_Static_assert(CONV_BLOCK >= COW_PACK_MAX_ITEMS, "a packable sequence fits one block");

static int
batch_block(conv_ctx *cx, cow_val *vals, size_t n)
{
    int rc = n >= 2 ? cow_pack_batch(vals, n, 1) : COW_OK;
    return rc < 0 ? cowpy_raise_int(cx->st, rc) : 0;
}

/* Batches a block of a vector's entries and appends them; steals them all
 * on every path. */
static int
push_block(conv_ctx *cx, cow_vecbody *b, cow_val *block, size_t n)
{
    int rc = batch_block(cx, block, n), prc;
    for (size_t i = 0; i < n; i++) {
        if (rc < 0)
            cow_val_release(&block[i]);
        else if ((prc = cow_vb_push(b, block[i])) < 0)    /* steals it either way */
            rc = cowpy_raise_int(cx->st, prc);
    }
    return rc;
}

/* push_block of the nblock items of block into *vec, made first if NULL;
 * leaves the block empty.  0, or -1 raised. */
static int
push_items(conv_ctx *cx, cow_vec **vec, cow_val *block, size_t *nblock)
{
    size_t n = *nblock;
    *nblock = 0;
    if (*vec == NULL && (*vec = cow_vec_new()) == NULL) {
        cow_vals_release(block, n);
        return cowpy_raise_int(cx->st, COW_ENOMEM);
    }
    return push_block(cx, &(*vec)->b, block, n);
}

/* Refuses a container already being converted further up (a cycle). */
static int
check_cycle(conv_ctx *cx, PyObject *obj, const conv_frame *at)
{
    for (const conv_frame *f = at; f; f = f->up)
        if (f->container == obj)
            return raise_at(cx->st->CycleError, at, "a self-referencing structure", obj, NULL, NULL);
    return 0;
}

/* Python code that a conversion runs -- a key's __hash__, a registered
 * class's to_data, a dataclass field's property -- may change the list, dict
 * or set being converted: each item is held while it is converted, and a
 * change of size is refused, as dict iteration refuses it (a RuntimeError,
 * the item just converted released). */
static int
size_kept(Py_ssize_t now, Py_ssize_t before, const char *what, cow_val *converted)
{
    if (now == before)
        return 1;
    cow_val_release(converted);
    PyErr_Format(PyExc_RuntimeError, "%s changed size during conversion to cowstore", what);
    return 0;
}

/* The elements of tuple or list `items` -> a vector; obj is the container
 * they came from (the same object, or a subclass's whose own __iter__ made
 * `items`), named in paths and cycle checks.  With want_packed (a value
 * nested in another container), a sequence of one block at most is packed
 * straight from its converted items where it fits, no vector made first
 * (as conv_dict packs a record). */
static int
conv_seq(conv_ctx *cx, PyObject *obj, PyObject *items, const conv_frame *at, cow_tag tag,
         cow_val *out, int want_packed)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    cow_vec *vec = NULL;
    cow_val block[CONV_BLOCK];
    size_t nblock = 0;
    int rc;
    want_packed = want_packed && n <= CONV_BLOCK;
    for (Py_ssize_t i = 0; i < n; i++) {
        conv_frame here = {at, obj, NULL, i};
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        Py_INCREF(item);
        rc = conv_child(cx, item, &here, &block[nblock]);
        Py_DECREF(item);
        if (rc < 0 || !size_kept(PySequence_Fast_GET_SIZE(items), n, "list", &block[nblock]))
            goto fail;
        if (++nblock == CONV_BLOCK && !want_packed && push_items(cx, &vec, block, &nblock) < 0)
            goto fail;
    }
    if (want_packed) {
        if ((rc = cow_pack_make_seq(tag, block, nblock, out)) < 0) {
            cowpy_raise_int(cx->st, rc);
            goto fail;
        }
        if (rc == COW_FOUND) {
            cow_vals_release(block, nblock);
            return 0;
        }
    }
    if ((nblock || vec == NULL) && push_items(cx, &vec, block, &nblock) < 0)
        goto fail;
    cow_vb_trim(&vec->b);
    *out = cow_val_vec(tag, vec);
    return 0;                           /* general: not wanted packed, or refused */
fail:
    cow_vals_release(block, nblock);
    if (vec != NULL)
        cow_vec_release(vec);
    return -1;
}

static int
key_of(conv_ctx *cx, PyObject *key, const conv_frame *at, cow_val *out, uint64_t *hash)
{
    int rc;
    if (Py_TYPE(key) == &PyUnicode_Type)        /* the commonest key */
        return conv_str(cx, key, out, hash);
    if (conv(cx, key, at, out) < 0)
        return -1;
    if ((rc = cow_val_hash(out, hash)) < 0) {
        cow_val_release(out);
        return not_a_key(cx, key, at);
    }
    if ((out->tag == COW_T_FLOAT && out->u.f != out->u.f)
        || ((out->tag == COW_T_SEXT || out->tag == COW_T_EXT) && !cow_val_equal(out, out))) {
        /* a float NaN, or a leaf holding one (Decimal('NaN'), complex);
         * after the hash check: a signaling NaN is unhashable, as in Python */
        cow_val_release(out);
        PyErr_SetString(cx->st->CowValueError,
                        "cowstore cannot use NaN as a key (NaN is not equal to itself)");
        return -1;
    }
    return 0;
}

/* Appends (key, value) to the map being built; steals both on every path.
 * Maps are built in bulk (map.h cow_map_builder): no lookup per entry, one
 * index build at the end, and keys cowstore holds equal (Python told them
 * apart) merged there as inserts would merge them. */
static int
map_put(conv_ctx *cx, cow_map_builder *mb, cow_val k, uint64_t h, cow_val v)
{
    int rc = cow_map_build_add(mb, k, h, v);
    return rc < 0 ? cowpy_raise_int(cx->st, rc) : 0;
}

/* Completes the map being built: 0, or -1 raised. */
static int
map_done(conv_ctx *cx, cow_map_builder *mb)
{
    int rc = cow_map_build_end(mb);
    return rc < 0 ? cowpy_raise_int(cx->st, rc) : 0;
}

/* A block of a map's entries, converted, not yet inserted. */
typedef struct conv_entries {
    cow_val keys[CONV_MAP_BLOCK], vals[CONV_MAP_BLOCK];
    uint64_t hashes[CONV_MAP_BLOCK];
    size_t n;
} conv_entries;

/* Batches the block's values and inserts the entries; steals them all on
 * every path and leaves the block empty. */
static int
put_entries(conv_ctx *cx, cow_map_builder *mb, conv_entries *e)
{
    int rc = batch_block(cx, e->vals, e->n);
    for (size_t i = 0; i < e->n; i++) {
        if (rc == 0)
            rc = map_put(cx, mb, e->keys[i], e->hashes[i], e->vals[i]);
        else {
            cow_val_release(&e->keys[i]);
            cow_val_release(&e->vals[i]);
        }
    }
    e->n = 0;
    return rc;
}

/* Converts (key, value), both held, into the block's next slot (not yet
 * counted); on failure nothing is left there. */
static int
dict_entry(conv_ctx *cx, PyObject *key, PyObject *value, const conv_frame *at, conv_entries *e)
{
    conv_frame here = {at->up, at->container, key, 0};
    if (key_of(cx, key, &here, &e->keys[e->n], &e->hashes[e->n]) < 0)
        return -1;
    if (conv_child(cx, value, &here, &e->vals[e->n]) < 0) {
        cow_val_release(&e->keys[e->n]);
        return -1;
    }
    return 0;
}

/* The next (key, value) of dict obj, as new references: 1, or 0 at the
 * end, -1 raised.  A subclass with an __iter__ of its own (OrderedDict)
 * is read as dict(obj) reads it, through the list of its keys() (`keys`)
 * and its __getitem__, so that its order and overrides hold. */
static int
next_entry(PyObject *obj, PyObject *keys, Py_ssize_t *pos, PyObject **key, PyObject **value)
{
    if (keys == NULL) {
        if (!PyDict_Next(obj, pos, key, value))
            return 0;
        Py_INCREF(*value);
    }
    else {
        if (*pos >= PyList_GET_SIZE(keys))
            return 0;
        *key = PyList_GET_ITEM(keys, (*pos)++);
        if ((*value = PyObject_GetItem(obj, *key)) == NULL)
            return -1;
    }
    Py_INCREF(*key);
    return 1;
}

/* A new map and its builder, for conv_dict: 0, or -1 raised. */
static int
start_map(conv_ctx *cx, cow_map **map, cow_map_builder *mb)
{
    if ((*map = cow_map_new()) == NULL)
        return cowpy_raise_int(cx->st, COW_ENOMEM);
    cow_map_build_begin(mb, *map);
    return 0;
}

/* The entries of a dict converted so far, e (fewer than a block), as a
 * packed value straight away: 1 packed (e's entries released), 0 when they
 * do not pack (P2: e untouched), -1 raised. */
static int
pack_entries(conv_ctx *cx, conv_entries *e, cow_val *out)
{
    int rc = cow_pack_make_dict(e->keys, e->vals, e->n, out);
    if (rc < 0)
        return cowpy_raise_int(cx->st, rc);
    if (rc == COW_NOT_FOUND)
        return 0;
    cow_vals_release(e->keys, e->n);
    cow_vals_release(e->vals, e->n);
    e->n = 0;
    return 1;
}

/* A dict -> a general map, or with want_packed (a value nested in another
 * container) a packed value where it fits, made straight from the entries
 * of a dict smaller than a block: a record makes no general map to pack
 * and drop (~3,600 instructions of the ~12,500 a 6-field record's freeze
 * took).  The map is made at the first full block. */
static int
conv_dict(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out, int want_packed)
{
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(obj);
    PyObject *key, *value, *keys = NULL;
    cow_map *map = NULL;
    cow_map_builder mb;
    conv_frame self = {at, obj, NULL, 0};
    conv_entries e;
    int more, rc;
    e.n = 0;
    if (Py_TYPE(obj)->tp_iter != PyDict_Type.tp_iter && (keys = PyMapping_Keys(obj)) == NULL)
        return -1;
    while ((more = next_entry(obj, keys, &pos, &key, &value)) != 0) {
        if (more < 0)
            goto fail;
        rc = dict_entry(cx, key, value, &self, &e);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto fail;
        if (PyDict_GET_SIZE(obj) != size) {
            cow_val_release(&e.keys[e.n]);
            size_kept(PyDict_GET_SIZE(obj), size, "dict", &e.vals[e.n]);
            goto fail;
        }
        if (++e.n == CONV_MAP_BLOCK
            && ((map == NULL && start_map(cx, &map, &mb) < 0) || put_entries(cx, &mb, &e) < 0))
            goto fail;
    }
    Py_CLEAR(keys);
    if (map == NULL && want_packed) {
        if ((rc = pack_entries(cx, &e, out)) > 0)
            return 0;
        if (rc < 0)
            goto fail;
        want_packed = 0;                /* they do not pack: a general map */
    }
    if ((map == NULL && start_map(cx, &map, &mb) < 0) || (e.n && put_entries(cx, &mb, &e) < 0))
        goto fail;
    if (map_done(cx, &mb) < 0) {
        cow_map_release(map);
        return -1;
    }
    *out = cow_val_map(COW_T_DICT, map);
    return want_packed ? pack_child(cx, out) : 0;
fail:
    Py_XDECREF(keys);
    cow_vals_release(e.keys, e.n);
    cow_vals_release(e.vals, e.n);
    if (map != NULL) {
        cow_map_build_abort(&mb);
        cow_map_release(map);
    }
    return -1;
}

/* The elements of a set or frozenset, or the keys of a dict (a set in their
 * insertion order), at the next position; 0 at the end. */
static int
next_element(PyObject *obj, Py_ssize_t *pos, PyObject **key)
{
    Py_hash_t pyhash;
    if (PyDict_Check(obj))
        return PyDict_Next(obj, pos, key, NULL);
    return _PySet_NextEntry(obj, pos, key, &pyhash);
}

static Py_ssize_t
elements_in(PyObject *obj)
{
    return PyDict_Check(obj) ? PyDict_GET_SIZE(obj) : PySet_GET_SIZE(obj);
}

static int
conv_set(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out)
{
    Py_ssize_t pos = 0, size = elements_in(obj);
    PyObject *key;
    cow_map *map = cow_map_new();
    cow_map_builder mb;
    cow_val k;
    uint64_t h;
    if (map == NULL)
        return cowpy_raise_int(cx->st, COW_ENOMEM);
    cow_map_build_begin(&mb, map);
    while (next_element(obj, &pos, &key)) {
        int rc;
        Py_INCREF(key);
        rc = key_of(cx, key, at, &k, &h);
        Py_DECREF(key);
        if (rc < 0 || !size_kept(elements_in(obj), size, PyDict_Check(obj) ? "dict" : "set", &k)
            || map_put(cx, &mb, k, h, cow_val_none()) < 0)
            goto fail;
    }
    if (map_done(cx, &mb) < 0)
        goto release;
    *out = cow_val_map(PyFrozenSet_CheckExact(obj) ? COW_T_FSET : COW_T_SET, map);
    return 0;
fail:
    cow_map_build_abort(&mb);
release:
    cow_map_release(map);
    return -1;
}

/* A list, or a subclass's items as list(obj) gives them: through its own
 * __iter__ if it has one. */
static int
conv_list(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out, int want_packed)
{
    PyObject *items;
    int rc;
    if (Py_TYPE(obj)->tp_iter == PyList_Type.tp_iter)
        return conv_seq(cx, obj, obj, at, COW_T_LIST, out, want_packed);
    if ((items = PySequence_List(obj)) == NULL)
        return -1;
    rc = conv_seq(cx, obj, items, at, COW_T_LIST, out, want_packed);
    Py_DECREF(items);
    return rc;
}

static int
conv_container(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out, int want_packed)
{
    int rc;
    if (check_cycle(cx, obj, at) < 0)
        return -1;
    if (Py_EnterRecursiveCall(" while converting to cowstore"))
        return -1;
    if (PyTuple_CheckExact(obj))
        rc = conv_seq(cx, obj, obj, at, COW_T_TUPLE, out, want_packed);
    else if (PyList_Check(obj))
        rc = conv_list(cx, obj, at, out, want_packed);
    else if (PyDict_Check(obj))
        rc = conv_dict(cx, obj, at, out, want_packed);
    else
        rc = conv_set(cx, obj, at, out);
    Py_LeaveRecursiveCall();
    return rc;
}

static int
conv(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out)
{
    PyTypeObject *tp = Py_TYPE(obj);
    int rc;
    if (tp == &PyUnicode_Type)
        return conv_str(cx, obj, out, NULL);
    if (tp == &PyLong_Type)
        return conv_int(cx, obj, out);
    if (obj == Py_None) {
        *out = cow_val_none();
        return 0;
    }
    if (tp == &PyBool_Type) {
        *out = cow_val_bool(obj == Py_True);
        return 0;
    }
    if (tp == &PyFloat_Type) {
        *out = cow_val_float(PyFloat_AS_DOUBLE(obj));
        return 0;
    }
    if (tp == &PyBytes_Type) {
        rc = cow_val_bytes(out, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
        return rc < 0 ? cowpy_raise_int(cx->st, rc) : 0;
    }
    if (cowpy_is_ours(cx->st, obj)) {
        CowObject *c = (CowObject *)obj;
        if (cowpy_resolve(c) < 0)
            return -1;
        cow_val_copy(out, &c->root);
        return 0;
    }
    if (tp == &PyTuple_Type || PyList_Check(obj) || PyDict_Check(obj)
        || PySet_CheckExact(obj) || PyFrozenSet_CheckExact(obj))
        return conv_container(cx, obj, at, out, 0);
    if (cowpy_is_ndarray(obj))
        return cowpy_ndarray_from(cx->st, obj, out) < 0 ? refused_at(cx->st, at) : 0;
    if ((rc = cowpy_ext_from(cx->st, obj, out)) != 0)
        return rc < 0 ? -1 : 0;
    return refuse(cx, at, obj);
}

/* A value nested in a container: conv, then packed where it fits
 * (pack_child); an exact dict, list or tuple is packed as it is converted
 * (conv_dict, conv_seq).  Steals nothing; *out is set only on success. */
static int
conv_child(conv_ctx *cx, PyObject *obj, const conv_frame *at, cow_val *out)
{
    if (PyDict_CheckExact(obj) || PyList_CheckExact(obj) || PyTuple_CheckExact(obj))
        return conv_container(cx, obj, at, out, 1);
    if (conv(cx, obj, at, out) < 0)
        return -1;
    return pack_child(cx, out);
}

/* A conversion of obj whole: equal long strs within it share one blob
 * (strset.h), which a lone str has no use for. */
static void
ctx_open(conv_ctx *cx, cowpy_state *st, PyObject *obj)
{
    cx->st = st;
    cx->share_strs = Py_TYPE(obj) != &PyUnicode_Type;
    cow_strset_init(&cx->strs);
}

static int
ctx_close(conv_ctx *cx, int rc)
{
    cow_strset_free(&cx->strs);
    return rc;
}

int
cowpy_from_object(cowpy_state *st, PyObject *obj, cow_val *out)
{
    conv_ctx cx;
    ctx_open(&cx, st, obj);
    return ctx_close(&cx, conv(&cx, obj, NULL, out));
}

/* Whether obj converts to a scalar with no help from a conv_ctx's state:
 * no str to share, nothing nested (the common value of d[k] = v). */
static int
is_plain_scalar(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    return tp == &PyLong_Type || tp == &PyUnicode_Type || tp == &PyFloat_Type
           || tp == &PyBool_Type || obj == Py_None;
}

/* cowpy_entry_from_object of anything but an int64, found at `at` (NULL:
 * the value itself) for error messages. */
static int
entry_general(cowpy_state *st, PyObject *obj, const conv_frame *at, cow_val *out)
{
    conv_ctx cx;
    int rc;
    if (is_plain_scalar(obj)) {
        cx = (conv_ctx){st};
        return conv(&cx, obj, at, out);
    }
    ctx_open(&cx, st, obj);
    rc = conv_child(&cx, obj, at, out);
    return ctx_close(&cx, rc);
}

/* Whether int obj fits one digit (PyLong_SHIFT bits), read from the
 * object with no call: CPython 3.11's layout, a sign in the size.  Other
 * versions answer 0 and take PyLong_AsLongLongAndOverflow. */
static inline int
one_digit_int(PyObject *obj, long long *x)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    Py_ssize_t size = Py_SIZE(obj);
    if (size < -1 || size > 1)
        return 0;
    *x = (long long)size * (long long)((PyLongObject *)obj)->ob_digit[0];
    return 1;
#else
    (void)obj, (void)x;
    return 0;
#endif
}

int
cowpy_entry_from_object(cowpy_state *st, PyObject *obj, cow_val *out)
{
    if (Py_TYPE(obj) == &PyLong_Type) {     /* the commonest value: an int64 */
        int overflow;
        long long x;
        if (one_digit_int(obj, &x)) {
            *out = cow_val_int(x);
            return 0;
        }
        x = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred())) {
            *out = cow_val_int(x);
            return 0;
        }
        PyErr_Clear();                  /* conv_int raises it again, or makes a bigint */
    }
    return entry_general(st, obj, NULL, out);
}

int
cowpy_entry_from_item(cowpy_state *st, PyObject *obj, Py_ssize_t index, cow_val *out)
{
    conv_frame at = {NULL, NULL, NULL, index};
    if (Py_TYPE(obj) == &PyLong_Type)
        return cowpy_entry_from_object(st, obj, out);  /* an int: stored, or no path needed */
    return entry_general(st, obj, &at, out);
}

int
cowpy_batch(cowpy_state *st, cow_val *vals, size_t n)
{
    conv_ctx cx = {st};
    return batch_block(&cx, vals, n);
}

void
cowpy_batch_full_tail(cow_vecbody *b, size_t stride)
{
    cow_val *vals = cow_vb_full_tail(b);
    if (vals != NULL)   /* out of memory: the values stay as they are, unbatched */
        (void)cow_pack_batch(vals + stride - 1, COW_VEC_WIDTH / stride, stride);
}

int
cowpy_set_from_keys(cowpy_state *st, PyObject *dict, cow_val *out)
{
    conv_ctx cx;
    ctx_open(&cx, st, dict);
    return ctx_close(&cx, conv_set(&cx, dict, NULL, out));
}

/* cowpy_store_key of anything but a str: a conv_ctx, zeroed, which the
 * str path has no use for. */
static int
store_key_general(cowpy_state *st, PyObject *obj, cow_val *out, uint64_t *hash)
{
    conv_ctx cx = {st};
    return key_of(&cx, obj, NULL, out, hash);
}

int
cowpy_store_key(cowpy_state *st, PyObject *obj, cow_val *out, uint64_t *hash)
{
    if (Py_TYPE(obj) == &PyUnicode_Type)         /* the commonest key: no conv_ctx */
        return str_val(st, NULL, obj, out, hash);
    return store_key_general(st, obj, out, hash);
}

int
cowpy_probe_key(cowpy_state *st, PyObject *obj, cow_val *out, uint64_t *hash, int *owned)
{
    Py_ssize_t n;
    const char *s;
    int rc;
    if (Py_TYPE(obj) == &PyUnicode_Type) {
        if ((s = PyUnicode_AsUTF8AndSize(obj, &n)) == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear();                    /* lone surrogates: never stored, so absent */
            return 0;
        }
        if ((size_t)n <= UINT32_MAX) {         /* the hot path: no copy, no dispatch */
            *out = cow_val_str_view(s, (size_t)n);
            *owned = 0;
            *hash = cow_hash_bytes(s, (size_t)n, COW_SEED_STR);
            return 1;
        }
    }
    if (!cowpy_is_ours(st, obj) && PyObject_Hash(obj) == -1)
        return -1;                            /* unhashable: TypeError as dict */
    if ((rc = cowpy_store_key(st, obj, out, hash)) < 0) {
        if (rc == COWPY_NOT_A_KEY || PyErr_ExceptionMatches(st->CowValueError)) {
            PyErr_Clear();                    /* no stored key equals it; NaN: nothing does */
            return 0;
        }
        if (!PyErr_ExceptionMatches(st->UnsupportedTypeError)
            && !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear();                        /* a type (or a str inside) we never store */
        return COWPY_PROBE_FOREIGN;
    }
    *owned = 1;
    return 1;
}

/* ---- cow_val -> Python --------------------------------------------------- */

/* *v, if packed, replaced by the general container it holds (pack.h P1). */
static int
unpack_in_place(cowpy_state *st, cow_val *v)
{
    cow_val g;
    int rc;
    if (v->tag != COW_T_PACKED)
        return 0;
    rc = cow_pack_unpack(v, &g);
    cow_val_release(v);
    if (rc < 0)
        return cowpy_raise_int(st, rc);
    *v = g;
    return 0;
}

/* A new container object of the class for `tag` holding v (stolen). */
static PyObject *
wrap_as(cowpy_state *st, cow_val v, int tag)
{
    PyTypeObject *cls = (PyTypeObject *)st->cls[tag];
    CowObject *obj;
    if (cls == NULL) {
        cow_val_release(&v);
        PyErr_SetString(PyExc_RuntimeError, "cowstore container classes not registered");
        return NULL;
    }
    if ((obj = (CowObject *)cls->tp_alloc(cls, 0)) == NULL) {
        cow_val_release(&v);
        return NULL;
    }
    obj->st = st;
    obj->root = v;
    obj->pkey = cow_val_none();
    obj->mut = COWPY_MUT_MADE;
    cowpy_untrack_own(st, (PyObject *)obj, tag);
    return (PyObject *)obj;
}

PyObject *
cowpy_wrap(cowpy_state *st, cow_val v)
{
    if (unpack_in_place(st, &v) < 0)
        return NULL;
    return wrap_as(st, v, v.tag);
}

/* Makes obj a view of parent's slot (key, or index idx). */
static void
attach(CowObject *obj, CowObject *parent, const cow_val *key, uint64_t hash, size_t idx)
{
    Py_INCREF(parent);
    obj->parent = parent;
    obj->seen = parent->mut;
    /* As current as the parent it is read from, whose root it matches */
    obj->synced = cowpy_view_is_current(parent) ? parent->st->changes : 0;
    obj->pidx = idx;
    obj->phash = hash;
    if (key)
        cow_val_copy(&obj->pkey, key);
}

/* A thaw's walk in this thread: whether nested frozen containers are kept
 * as themselves (cowpy_contents), and how deep it is. */
static COW_THREAD_LOCAL int thaw_keeps_frozen;
static COW_THREAD_LOCAL int thaw_level;
static PyObject *thaw_value(cowpy_state *st, const cow_val *v);

/* The tuple of a tuple's vector, which the caller holds while it is walked:
 * an extension decoder runs Python code, which may drop the container the
 * tuple was read from. */
static PyObject *
tuple_of(cowpy_state *st, const cow_vec *vec, int thaw)
{
    PyObject *t = PyTuple_New((Py_ssize_t)vec->b.len), *item;
    cow_vec_iter it;
    const cow_val *e;
    Py_ssize_t i = 0;
    if (t == NULL)
        return NULL;
    cow_vec_iter_init(&it, &vec->b, 0);
    while ((e = cow_vec_iter_next(&it)) != NULL) {
        item = thaw ? thaw_value(st, e) : cowpy_to_object(st, e, NULL, NULL, 0, 0);
        if (item == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i++, item);
    }
    return t;
}

/* Whether the n bytes at p are all ASCII, a word at a time. */
static int
is_ascii(const char *p, size_t n)
{
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + sizeof w <= n; i += sizeof w) {
        memcpy(&w, p + i, sizeof w);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= (uint8_t)p[i];
    return (acc & high) == 0;
}

/* A new compact ASCII str of length n >= 1, its bytes to write (NULL, no
 * error set, when out of memory).  On CPython 3.11 it is laid out here as
 * PyUnicode_New lays it out -- the header, the bytes, a NUL -- with its
 * state written as one word: PyUnicode_New sets five bit-fields one by one
 * and takes half the cost of a short str read (~45 of ~95 instructions).
 * Other versions call PyUnicode_New. */
static PyObject *
alloc_ascii_str(size_t n)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(Py_DEBUG)
    PyASCIIObject *s = PyObject_Malloc(sizeof *s + n + 1);
    PyASCIIObject model = {.state = {.kind = PyUnicode_1BYTE_KIND, .compact = 1, .ascii = 1,
                                     .ready = 1}};
    if (s == NULL)
        return NULL;
    memcpy(&s->state, &model.state, sizeof model.state);
    s->length = (Py_ssize_t)n;
    s->hash = -1;
    s->wstr = NULL;
    ((char *)(s + 1))[n] = '\0';
    Py_SET_TYPE(s, &PyUnicode_Type);    /* PyObject_Init's work: str is no heap type */
    _Py_NewReference((PyObject *)s);
    return (PyObject *)s;
#else
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s == NULL)
        PyErr_Clear();
    return s;
#endif
}

/* A str of n >= 1 ASCII bytes at p (NULL, no error set, when out of
 * memory: the general path raises it again). */
static PyObject *
new_ascii_str(const char *p, size_t n)
{
    PyObject *s = alloc_ascii_str(n);
    if (s != NULL)
        cow_copy_bytes(PyUnicode_1BYTE_DATA(s), p, n);
    return s;
}

/* Keys and short values are mostly ASCII: a str of those bytes made
 * directly (PyUnicode_DecodeUTF8 dispatches through its error handling
 * first).  NULL, no error set, for other bytes, one byte (CPython's own
 * cached strs) and long ones. */
#define ASCII_FAST_MAX 64
static PyObject *
ascii_str(const char *p, size_t n)
{
    if (n < 2 || n > ASCII_FAST_MAX || !is_ascii(p, n))
        return NULL;
    return new_ascii_str(p, n);
}

static PyObject *
scalar_to_object(cowpy_state *st, const cow_val *v)
{
    const char *p;
    size_t n;
    switch (v->tag) {
    case COW_T_NONE: Py_RETURN_NONE;
    case COW_T_BOOL: return PyBool_FromLong((long)v->u.i);
    case COW_T_INT: return PyLong_FromLongLong(v->u.i);
    case COW_T_FLOAT: return PyFloat_FromDouble(v->u.f);
    case COW_T_NDARRAY: return cowpy_ndarray_to(st, v, 0);
    case COW_T_SEXT:
    case COW_T_EXT: return cowpy_ext_to(st, v);
    }
    cow_val_span(v, &p, &n);
    if (v->tag == COW_T_STR_VIEW && v->slen == COW_VIEW_REPEATED)
        return cowpy_repeated_str(st, p, n);   /* one object per content (key_cache.c) */
    if (cow_tag_is_str(v->tag)) {
        PyObject *s = ascii_str(p, n);
        if (s != NULL)
            return s;
        s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "strict");
        /* Strings are kept as valid UTF-8 (lone surrogates are refused on
         * the way in), so bytes that do not decode were damaged in a file. */
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            cowpy_raise(st, COW_ECORRUPT);
        }
        return s;
    }
    if (cow_tag_is_bytes(v->tag))
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (v->tag == COW_T_BIGINT)
        return _PyLong_FromByteArray((const unsigned char *)p, n, 1, 1);
    return cowpy_raise(st, COW_ECORRUPT);
}

int
cowpy_frozen_tag(int tag)
{
    switch (tag) {
    case COW_T_DICT: return COW_T_FDICT;
    case COW_T_LIST: return COW_T_FLIST;
    case COW_T_SET: return COW_T_FSET;
    }
    return tag;
}

/* The parent a container read out of parent is a view of, or NULL, with
 * *tag as it reads back: inside a frozen container it reads frozen, and a
 * frozen value needs no write-back. */
static CowObject *
view_parent(CowObject *parent, uint8_t *tag)
{
    if (parent && cowpy_is_frozen(parent)) {
        *tag = (uint8_t)cowpy_frozen_tag(*tag);
        return NULL;
    }
    return parent && *tag == cowpy_frozen_tag(*tag) ? NULL : parent;
}

PyObject *
cowpy_to_object_under(cowpy_state *st, const cow_val *v, CowObject *parent, PyObject *key)
{
    PyObject *res = cowpy_to_object(st, v, parent, NULL, 0, 0);
    /* a view is of the class for v's tag (a frozen one has no parent) */
    if (res != NULL && (PyObject *)Py_TYPE(res) == st->cls[cowpy_logical_tag(v)]
        && ((CowObject *)res)->parent == parent)
        ((CowObject *)res)->pkey_obj = Py_NewRef(key);
    return res;
}

/* A packed value read out (pack.h P1): a tuple is built at once; a dict or
 * list becomes a container holding the pack, materialised on the first use
 * that needs the general form (cowpy_resolve) -- reads of scalar entries
 * are served from the pack.  A view remembers the pack it came from, so
 * that resyncing does not detach it. */
static PyObject *
packed_to_object(cowpy_state *st, const cow_val *v, CowObject *parent,
                 const cow_val *key, uint64_t hash, size_t idx)
{
    cow_val g;
    PyObject *res;
    CowObject *obj;
    cow_val_copy(&g, v);
    if (v->slen == COW_T_TUPLE) {
        if (unpack_in_place(st, &g) < 0)
            return NULL;
        res = cowpy_to_object(st, &g, parent, key, hash, idx);
        cow_val_release(&g);
        return res;
    }
    parent = view_parent(parent, &g.slen);
    if ((obj = (CowObject *)wrap_as(st, g, g.slen)) == NULL)
        return NULL;
    if (parent) {
        attach(obj, parent, key, hash, idx);
        cowpy_set_pfrom(obj, v);
    }
    return (PyObject *)obj;
}

int
cowpy_packed_view_renew(CowObject *obj, const cow_val *v, CowObject *parent, size_t idx)
{
    uint8_t tag = v->slen;
    CowObject *p;
    if (v->tag != COW_T_PACKED || v->slen == COW_T_TUPLE)
        return 0;
    p = view_parent(parent, &tag);
    if ((PyObject *)Py_TYPE(obj) != obj->st->cls[tag])
        return 0;
    Py_XINCREF(p);                      /* alive while the old parent is let go */
    cow_val_release(&obj->root);
    cowpy_clear_pfrom(obj);
    cowpy_detach(obj);
    Py_CLEAR(obj->origin);
    cow_val_copy(&obj->root, v);
    obj->root.slen = tag;
    obj->pkey = cow_val_none();
    obj->phash = 0;
    obj->pidx = 0;
    obj->seen = obj->synced = 0;
    obj->mut = COWPY_MUT_MADE;          /* no view has obj for parent: none resyncs */
    if (p) {
        attach(obj, p, NULL, 0, idx);
        cowpy_set_pfrom(obj, v);
        Py_DECREF(p);
    }
    return 1;
}

/* An inline str of 2..14 ASCII bytes, or a view of 2..16 (a record's
 * field read in place), as a str (NULL, no error set, for any other
 * value): the commonest keys and short values, checked and copied a word
 * at a time. */
static PyObject *
short_ascii_str(const cow_val *v)
{
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t w[2];
    const char *p;
    size_t n;
    if (v->tag == COW_T_SSTR && v->slen >= 2 && v->slen <= COW_INLINE_MAX) {
        memcpy(w, v, sizeof w);     /* its tag and length bytes are ASCII too */
        p = (const char *)v + COW_INLINE_OFFSET;
        n = v->slen;
    }
    else if (v->tag == COW_T_STR_VIEW && v->aux >= 2 && v->aux <= sizeof w && v->slen == 0) {
        p = v->u.ref;
        n = v->aux;
        w[0] = w[1] = 0;
        cow_copy_short(w, p, n);
    }
    else
        return NULL;
    return ((w[0] | w[1]) & high) != 0 ? NULL : new_ascii_str(p, n);
}

/* cowpy_to_object of anything but an int. */
static PyObject *
to_object_general(cowpy_state *st, const cow_val *v, CowObject *parent,
                  const cow_val *key, uint64_t hash, size_t idx)
{
    CowObject *obj;
    cow_val own;
    PyObject *s;
    if ((s = short_ascii_str(v)) != NULL)   /* the next hottest case */
        return s;
    if (v->tag == COW_T_PACKED)
        return packed_to_object(st, v, parent, key, hash, idx);
    if (!cow_tag_is_map(v->tag) && !cow_tag_is_vec(v->tag))
        return scalar_to_object(st, v);
    cow_val_copy(&own, v);
    if (own.tag == COW_T_TUPLE) {       /* held while walked (tuple_of) */
        s = tuple_of(st, cow_val_getvec(&own), 0);
        cow_val_release(&own);
        return s;
    }
    parent = view_parent(parent, &own.tag);
    if ((obj = (CowObject *)cowpy_wrap(st, own)) == NULL)
        return NULL;
    if (parent)
        attach(obj, parent, key, hash, idx);
    return (PyObject *)obj;
}

PyObject *
cowpy_scalar_to_object(cowpy_state *st, const cow_val *v)
{
    PyObject *s;
    if (v->tag == COW_T_INT)
        return PyLong_FromLongLong(v->u.i);
    if (v->tag == COW_T_STR_VIEW && v->slen == COW_VIEW_REPEATED)
        return cowpy_repeated_str(st, v->u.ref, v->aux);   /* a record's status, tag */
    if ((s = short_ascii_str(v)) != NULL)
        return s;
    return scalar_to_object(st, v);
}

/* The commonest value, an int, is made here with no frame of our own (gcc
 * set up to_object_general's before testing the tag). */
PyObject *
cowpy_to_object(cowpy_state *st, const cow_val *v, CowObject *parent,
                const cow_val *key, uint64_t hash, size_t idx)
{
    if (v->tag == COW_T_INT)
        return PyLong_FromLongLong(v->u.i);
    return to_object_general(st, v, parent, key, hash, idx);
}

PyObject *
cowpy_freeze_object(cowpy_state *st, PyObject *obj)
{
    cow_val v;
    PyObject *res;
    if (cowpy_from_object(st, obj, &v) < 0)
        return NULL;
    if (cow_tag_is_map(v.tag) || v.tag == COW_T_LIST || v.tag == COW_T_FLIST)
        return cowpy_wrap(st, v);
    res = cowpy_to_object(st, &v, NULL, NULL, 0, 0);
    cow_val_release(&v);
    return res;
}

static PyObject *
key_object_of(cowpy_state *st, const cow_val *k)
{
    const char *p;
    size_t n;
    cow_val_span(k, &p, &n);
    return cowpy_key_object(st, p, n);
}

static PyObject *
thaw_map(cowpy_state *st, const cow_map *m, int as_set, int frozen)
{
    PyObject *res = as_set ? (frozen ? PyFrozenSet_New(NULL) : PySet_New(NULL)) : PyDict_New();
    if (res == NULL)
        return NULL;
    for (size_t e = 0; e < cow_map_entries(m); e++) {
        cow_val kv = cow_map_entry_key(m, e), vv;
        const cow_val *k = &kv;
        PyObject *pk, *pv = NULL;
        int rc;
        if (k->tag == COW_T_HOLE)
            continue;
        /* Keys stay hashable: frozen maps and lists come back as ours;
         * str keys are shared (key_cache.c). */
        pk = (k->tag == COW_T_FDICT || k->tag == COW_T_FLIST) ? cowpy_to_object(st, k, NULL, NULL, 0, 0)
             : cow_tag_is_str(k->tag) ? key_object_of(st, k) : thaw_value(st, k);
        if (pk && !as_set)
            pv = thaw_value(st, (vv = cow_map_entry_val(m, e), &vv));
        rc = pk == NULL || (!as_set && pv == NULL) ? -1
             : as_set ? PySet_Add(res, pk) : PyDict_SetItem(res, pk, pv);
        Py_XDECREF(pk);
        Py_XDECREF(pv);
        if (rc < 0) {
            Py_DECREF(res);
            return NULL;
        }
    }
    return res;
}

static PyObject *
thaw_list(cowpy_state *st, const cow_vec *vec)
{
    PyObject *res = PyList_New((Py_ssize_t)vec->b.len), *item;
    cow_vec_iter it;
    const cow_val *e;
    Py_ssize_t i = 0;
    if (res == NULL)
        return NULL;
    cow_vec_iter_init(&it, &vec->b, 0);
    while ((e = cow_vec_iter_next(&it)) != NULL) {
        if ((item = thaw_value(st, e)) == NULL) {
            Py_DECREF(res);
            return NULL;
        }
        PyList_SET_ITEM(res, i++, item);
    }
    return res;
}

/* Thawing a pack goes straight from its bytes to Python objects
 * (cow_pack_visit), with no general container in between: a stack of the
 * containers being filled. */
#define THAW_PYERR 1                    /* a callback's "a Python error is set" */
#define THAW_STACK (COW_PACK_MAX_DEPTH + 1)

typedef struct thaw_ctx {
    cowpy_state *st;
    int depth;
    PyObject *open[THAW_STACK];         /* containers being filled (owned) */
    PyObject *key[THAW_STACK];          /* a dict's key waiting for its value (owned) */
    Py_ssize_t fill[THAW_STACK];        /* a list's or tuple's next index */
    PyObject *result;
} thaw_ctx;

/* Puts obj (stolen) into the innermost open container, or makes it the result. */
static int
thaw_put(thaw_ctx *t, PyObject *obj)
{
    PyObject *top;
    int rc = 0;
    if (obj == NULL)
        return THAW_PYERR;
    if (t->depth == 0) {
        t->result = obj;
        return 0;
    }
    top = t->open[t->depth - 1];
    if (PyDict_CheckExact(top)) {
        rc = PyDict_SetItem(top, t->key[t->depth - 1], obj);
        Py_CLEAR(t->key[t->depth - 1]);
        Py_DECREF(obj);
        return rc < 0 ? THAW_PYERR : 0;
    }
    if (PyList_CheckExact(top))
        PyList_SET_ITEM(top, t->fill[t->depth - 1]++, obj);
    else
        PyTuple_SET_ITEM(top, t->fill[t->depth - 1]++, obj);
    return 0;
}

static int
thaw_begin(void *ctx, int tag, size_t n)
{
    thaw_ctx *t = ctx;
    PyObject *c = cow_tag_is_map(tag) ? PyDict_New()
                  : tag == COW_T_TUPLE ? PyTuple_New((Py_ssize_t)n) : PyList_New((Py_ssize_t)n);
    if (c == NULL)
        return THAW_PYERR;
    if (t->depth == THAW_STACK) {       /* cow_pack_visit bounds the depth first */
        Py_DECREF(c);
        return COW_ECORRUPT;
    }
    t->open[t->depth] = c;
    t->key[t->depth] = NULL;
    t->fill[t->depth++] = 0;
    return 0;
}

static int
thaw_key(void *ctx, const char *utf8, size_t len)
{
    thaw_ctx *t = ctx;
    PyObject *k = cowpy_key_object(t->st, utf8, len);     /* shared, as json.loads' */
    if (k == NULL)
        return THAW_PYERR;
    Py_XSETREF(t->key[t->depth - 1], k);
    return 0;
}

static int
thaw_scalar(void *ctx, const cow_val *v)
{
    thaw_ctx *t = ctx;
    return thaw_put(t, scalar_to_object(t->st, v));
}

static int
thaw_end(void *ctx, int tag)
{
    thaw_ctx *t = ctx;
    PyObject *c = t->open[--t->depth];
    Py_CLEAR(t->key[t->depth]);
    if (thaw_keeps_frozen && t->depth > 0 && cowpy_tag_is_frozen(tag)) {
        PyObject *plain = c;            /* a nested frozen one, kept (cowpy_contents) */
        c = PyObject_CallOneArg(t->st->cls[tag], plain);
        Py_DECREF(plain);
    }
    return thaw_put(t, c);
}

static const cow_pack_visitor thaw_visitor = {thaw_begin, thaw_key, thaw_scalar, thaw_end};

static PyObject *
thaw_packed(cowpy_state *st, const cow_val *v)
{
    thaw_ctx t = {st, 0, {NULL}, {NULL}, {0}, NULL};
    int rc = cow_pack_visit(v, &thaw_visitor, &t);
    while (t.depth > 0) {               /* an error: drop what was being built */
        t.depth--;
        Py_DECREF(t.open[t.depth]);
        Py_XDECREF(t.key[t.depth]);
    }
    if (rc == COW_OK)
        return t.result;
    Py_XDECREF(t.result);
    if (rc == THAW_PYERR)
        return NULL;
    return PyErr_Occurred() ? NULL : cowpy_raise(st, rc);
}

static PyObject *
thaw_value(cowpy_state *st, const cow_val *v)
{
    PyObject *res;
    cow_val held;
    if (thaw_keeps_frozen && thaw_level > 0 && cowpy_tag_is_frozen(cowpy_logical_tag(v)))
        return cowpy_to_object(st, v, NULL, NULL, 0, 0);    /* itself, sharing its nodes */
    if (Py_EnterRecursiveCall(" while thawing"))
        return NULL;
    thaw_level++;
    /* What is walked is held: an extension decoder runs Python code, which
     * may drop or write to the container that holds v. */
    cow_val_copy(&held, v);
    switch (held.tag) {
    case COW_T_TUPLE: res = tuple_of(st, cow_val_getvec(&held), 1); break;
    case COW_T_LIST:
    case COW_T_FLIST: res = thaw_list(st, cow_val_getvec(&held)); break;
    case COW_T_DICT:
    case COW_T_FDICT: res = thaw_map(st, cow_val_getmap(&held), 0, 0); break;
    case COW_T_SET: res = thaw_map(st, cow_val_getmap(&held), 1, 0); break;
    case COW_T_FSET: res = thaw_map(st, cow_val_getmap(&held), 1, 1); break;
    case COW_T_NDARRAY: res = cowpy_ndarray_to(st, &held, 1); break;
    case COW_T_PACKED: res = thaw_packed(st, &held); break;
    default: res = scalar_to_object(st, &held);
    }
    cow_val_release(&held);
    thaw_level--;
    Py_LeaveRecursiveCall();
    return res;
}

/* A thaw from the top, keeping nested frozen containers or not; the
 * thread's outer walk (Python code run by a walk may thaw) is restored. */
static PyObject *
thaw_from_top(cowpy_state *st, const cow_val *v, int keep_frozen)
{
    int outer_keeps = thaw_keeps_frozen, outer_level = thaw_level;
    PyObject *res;
    thaw_keeps_frozen = keep_frozen;
    thaw_level = 0;
    res = thaw_value(st, v);
    thaw_keeps_frozen = outer_keeps;
    thaw_level = outer_level;
    return res;
}

PyObject *
cowpy_thaw(cowpy_state *st, const cow_val *v)
{
    return thaw_from_top(st, v, 0);
}

PyObject *
cowpy_contents(cowpy_state *st, const cow_val *v)
{
    return thaw_from_top(st, v, 1);
}
