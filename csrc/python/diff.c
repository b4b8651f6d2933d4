/* diff(a, b): the changes between two versions that share structure.
 *
 * Why in C: the versions worth diffing share almost every node, so the work
 * must be proportional to what changed.  Both sides are walked together,
 * every shared node is skipped, and a Python object is made only for what is
 * reported; cowstore/_diff.py is a thin wrapper around _diff().
 *
 * Where to look.  A map's entries live in its log (entry e: key at slot 2e,
 * value at 2e + 1), a list's values in its vector.  cow_vb_diff_blocks names
 * the 32-slot blocks the two sides hold in different nodes: 16 map entries or
 * 32 list values each.  Every other block is one node on both sides (same
 * keys, same values) and is never read.
 *
 * Worked example: a = {"x": 1, "y": 2}; b = a.copy(); b["y"] = 3;
 * del b["x"]; b["x"] = 1.  Block 0 differs: in b, entry 0 is a hole and "x"
 * is entry 2.  Entry 0: a's "x" is entry 2 in b, not earlier, so "x" is
 * compared now (1 vs 1: equal); b's key is a hole.  Entry 1: "y" in one word
 * on both sides, compared once: 2 vs 3 is reported.  Entry 2: a has none;
 * b's "x" is entry 0 in a, earlier: already compared, skipped (D1).
 *
 * The walk is a stack of frames, one per pair of containers being compared
 * (the root pair, then each pair of nested dicts or lists entered):
 *
 *   frames[0]  a, b            blocks [0, 96]  pos 3   <- entry 3 holds "rows"
 *   frames[1]  a["rows"], ...  blocks [32]     pos 40  <- index 40 differs
 *   frames[2]  a["rows"][40]   blocks [0]      pos 1   (the top: walked now)
 *
 * Rules (cited in the code and by tests/python/test_diff.py):
 *  D1  Each key is compared once, where the walk first meets it: blocks in
 *      order, entries in order, a's key before b's at each entry.  A key at
 *      entry p of a and q of b is met at min(p, q): when p != q both entries
 *      lie in differing blocks (a block shared by both holds one key at one
 *      entry), so the later meeting finds the earlier one and skips.
 *  D2  Two values in one word (the same node, or equal inline bytes) are
 *      equal and never looked into, whatever they hold (a NaN included).
 *  D3  Values are compared as they read back: two dicts, or two lists,
 *      frozen or not, are walked (the path grows by the key or index); any
 *      other pair differs when the Python types differ (CowSet against
 *      FrozenSet, 1 against 1.0) or cow_val_equal says so (numpy arrays by
 *      dtype, shape and bytes).  An absent side reads as MISSING.
 *  D4  The walk reads a snapshot of a and b taken at the first next() (diff
 *      stays lazy).  The iterator owns one reference to each root; every
 *      frame borrows copies of its containers (exported words, no
 *      reference), valid while the roots are held.  Values reported are read
 *      from the snapshot; nested mutable ones are views of a and b, resynced
 *      if a or b changed meanwhile (cowpy_snapshot_value).
 *  D5  Pointers into nodes (a frame's readers and current entry) live for one
 *      fill only: between next() calls a store's map may move, so a frame
 *      resumed in a later fill seeks its position again (one leaf walk per
 *      side).  A fill walks until `want` changes are ready or the walk ends;
 *      want doubles from 2 to DIFF_BATCH, so next() once costs about one
 *      change and a full walk pays the seek once per DIFF_BATCH changes.
 *
 * Cost: O(changed blocks * log n) to find the blocks, O(1) per entry of a
 * changed block (two word comparisons), O(depth) objects per change.
 */
#include "cowpy.h"

/* Changes computed ahead by one fill at most (D5): bounds the work and the
 * memory of one next() while making the re-seek after a fill rare. */
#define DIFF_BATCH 64

/* What a step of the walk did. */
enum { STEP_NEXT, STEP_PUSHED, STEP_FULL, STEP_DONE };

/* One level of the walk: two containers of one kind (both dicts or both
 * lists) at the same path. */
typedef struct diff_frame {
    cow_val side[2];        /* the containers compared (borrowed, D4) */
    cow_val unpacked[2];    /* owned: a packed side as a general container
                             * (side is then this), else NONE */
    uint8_t frozen[2];      /* values of this side read back frozen */
    uint8_t is_map;
    uint8_t phase;          /* map entry `pos`: 0 a's key next, 1 b's, 2 done */
    PyObject *obj[2];       /* side as a Python object (new reference), made
                             * when a reported value needs it as parent */
    PyObject *step;         /* path step from the parent (new reference);
                             * NULL at the root */
    size_t at[2];           /* entry (map parent) or index (list parent) of
                             * side in its parent */
    size_t *blocks;         /* first slot of each block that may differ */
    size_t nblocks, capblocks, bi;
    size_t pos;             /* current entry (map) or next index (list) */
    uint64_t epoch;         /* the fill the fields below belong to (D5) */
    cow_vec_iter r[2];      /* readers, just past the current entry / index */
    cow_val k[2], v[2];     /* map: entry pos of each side (borrowed copies:
                             * frames move when the stack grows) */
    uint8_t has[2];         /* side s has a live entry pos */
    int one_map;            /* the two leaves read: cow_word_same's cache */
} diff_frame;

typedef struct {
    PyObject_HEAD
    cowpy_state *st;
    PyObject *args[2];      /* a and b as passed, until the first next() */
    PyObject *change_cls;   /* Change: a tuple subclass (path, old, new) */
    PyObject *missing;      /* MISSING */
    cow_val snap[2];        /* the roots walked (owned, D4) */
    diff_frame *frames;
    size_t depth, cap;
    uint64_t epoch;         /* fills so far */
    int started, want;
    int filling;            /* in fill(): a nested next() (from a finaliser
                             * or another thread) must not walk too */
    int head, nready;       /* ready[head..nready): changes not yet returned */
    PyObject *ready[DIFF_BATCH];
} DiffIter;

/* The single place diff asks whether a stored read met damaged bytes (reads
 * of a bad node return poison and record the error in the read scope of the
 * call, which COWPY_ENTRY raises; see ref.h). */
static int
read_failed(cowpy_state *st)
{
    return cow_ref_error() < 0;
}

static diff_frame *top(DiffIter *it) { return &it->frames[it->depth - 1]; }

static const cow_vecbody *
body_of(const cow_val *v)
{
    return cow_tag_is_map(v->tag) ? &cow_val_getmap(v)->log : &cow_val_getvec(v)->b;
}

/* *src with its word exported but no reference taken: valid while the
 * snapshot is held (D4). */
static cow_val
borrow(const cow_val *src)
{
    cow_val v = *src;
    if (cow_tag_has_word(v.tag))
        v.u.w = cow_ref_export(&src->u.w);
    return v;
}

/* D2: one word, or the same inline value.  one_map: see cow_word_same. */
static int
same_word(const cow_val *a, const cow_val *b, int *one_map)
{
    if (a->tag != b->tag)
        return 0;
    if (a->tag == COW_T_PACKED && cow_pack_offset(a) != cow_pack_offset(b))
        return 0;                       /* two members of one batch (pack.h P6) */
    if (cow_tag_has_word(a->tag))
        return cow_word_same(&a->u.w, &b->u.w, one_map);
    /* Constructors zero what a tag leaves unused, so equal inline values
     * are equal bytes; unequal bytes only mean a full comparison follows. */
    return memcmp(a, b, sizeof *a) == 0;
}

/* The tag a value reads back with, up to representation: one per Python
 * type (D3). */
static int
read_tag(int tag, int frozen)
{
    switch (tag) {
    case COW_T_BIGINT: return COW_T_INT;
    case COW_T_SSTR: return COW_T_STR;
    case COW_T_SBYTES: return COW_T_BYTES;
    case COW_T_SEXT: return COW_T_EXT;
    }
    return frozen ? cowpy_frozen_tag(tag) : tag;
}

static int is_frozen_tag(int t) { return t == COW_T_FDICT || t == COW_T_FLIST || t == COW_T_FSET; }

/* Both DictBase or both ListBase as they read back: walked, not compared. */
static int
same_kind(int ta, int tb)
{
    int da = ta == COW_T_DICT || ta == COW_T_FDICT, db = tb == COW_T_DICT || tb == COW_T_FDICT;
    int la = ta == COW_T_LIST || ta == COW_T_FLIST, lb = tb == COW_T_LIST || tb == COW_T_FLIST;
    return (da && db) || (la && lb);
}

/* ---- frames ---------------------------------------------------------------- */

static int
add_block(void *arg, size_t start)
{
    diff_frame *f = arg;
    if (f->nblocks == f->capblocks) {
        size_t cap = f->capblocks ? 2 * f->capblocks : 8;
        size_t *blocks = PyMem_Realloc(f->blocks, cap * sizeof *blocks);
        if (blocks == NULL)
            return COW_ENOMEM;
        f->blocks = blocks;
        f->capblocks = cap;
    }
    f->blocks[f->nblocks++] = start;
    return COW_OK;
}

static void
frame_clear(diff_frame *f)
{
    Py_CLEAR(f->obj[0]);
    Py_CLEAR(f->obj[1]);
    Py_CLEAR(f->step);
    cow_val_release(&f->unpacked[0]);
    cow_val_release(&f->unpacked[1]);
    PyMem_Free(f->blocks);
    f->blocks = NULL;
}

/* Pushes a frame comparing containers a and b (borrowed, D4), whose parents
 * read frozen or not; steals step.  Returns 0 or -1 with an exception. */
static int
push_frame(DiffIter *it, const cow_val *a, const cow_val *b, const uint8_t up_frozen[2],
           PyObject *step, size_t at_a, size_t at_b)
{
    diff_frame *f;
    int rc;
    if (it->depth == it->cap) {
        size_t cap = it->cap ? 2 * it->cap : 8;
        diff_frame *frames = PyMem_Realloc(it->frames, cap * sizeof *frames);
        if (frames == NULL) {
            Py_XDECREF(step);
            PyErr_NoMemory();
            return -1;
        }
        it->frames = frames;
        it->cap = cap;
    }
    f = &it->frames[it->depth++];
    memset(f, 0, sizeof *f);            /* epoch 0: seek before reading */
    f->unpacked[0] = f->unpacked[1] = cow_val_none();
    f->step = step;
    for (int s = 0; s < 2; s++) {
        const cow_val *v = s ? b : a;
        if (v->tag != COW_T_PACKED) {
            f->side[s] = borrow(v);
            continue;
        }
        if ((rc = cow_pack_unpack(v, &f->unpacked[s])) < 0) {
            it->depth--;
            frame_clear(f);
            return read_failed(it->st) ? -1 : cowpy_raise_int(it->st, rc);
        }
        f->side[s] = f->unpacked[s];
    }
    f->frozen[0] = up_frozen[0] || is_frozen_tag(f->side[0].tag);
    f->frozen[1] = up_frozen[1] || is_frozen_tag(f->side[1].tag);
    f->is_map = (uint8_t)cow_tag_is_map(f->side[0].tag);
    f->step = step;
    f->at[0] = at_a;
    f->at[1] = at_b;
    rc = cow_vb_diff_blocks(body_of(&f->side[0]), body_of(&f->side[1]), add_block, f);
    if (rc < 0) {
        it->depth--;
        frame_clear(f);
        return read_failed(it->st) ? -1 : cowpy_raise_int(it->st, rc);
    }
    return 0;
}

static void
pop_frame(DiffIter *it)
{
    frame_clear(&it->frames[--it->depth]);
}

/* Frame d's side s as a Python object (borrowed), made from its parent's
 * object as parent[step] would return it, and kept. */
static PyObject *
frame_obj(DiffIter *it, size_t d, int s)
{
    size_t k = d;
    while (it->frames[k].obj[s] == NULL)
        k--;                            /* the root's objects always exist */
    for (k++; k <= d; k++) {
        diff_frame *up = &it->frames[k - 1], *f = &it->frames[k];
        cow_val kcopy;
        const cow_val *key = NULL;
        uint64_t h = 0;
        if (up->is_map) {
            kcopy = cow_map_entry_key(cow_val_getmap(&up->side[s]), f->at[s]);
            key = &kcopy;
            cow_val_hash(key, &h);
        }
        f->obj[s] = cowpy_snapshot_value((CowObject *)up->obj[s], &up->side[s], &f->side[s],
                                         key, h, up->is_map ? 0 : f->at[s]);
        if (f->obj[s] == NULL)
            return NULL;
    }
    return it->frames[d].obj[s];
}

/* ---- reporting ------------------------------------------------------------- */

/* Value v of the top frame's side s, at entry or index `at`, as the top
 * container's [key] would return it (new reference); MISSING when absent. */
static PyObject *
value_obj(DiffIter *it, int s, const cow_val *v, size_t at)
{
    size_t d = it->depth - 1;
    diff_frame *f;
    cow_val kcopy;
    const cow_val *key = NULL;
    uint64_t h = 0;
    PyObject *parent;
    if (v == NULL)
        return Py_NewRef(it->missing);
    if (!cowpy_is_mutable_container(v))
        return cowpy_to_object(it->st, v, NULL, NULL, 0, 0);
    if ((parent = frame_obj(it, d, s)) == NULL)
        return NULL;
    f = &it->frames[d];
    if (f->is_map) {
        kcopy = cow_map_entry_key(cow_val_getmap(&f->side[s]), at);
        key = &kcopy;
        cow_val_hash(key, &h);
    }
    return cowpy_snapshot_value((CowObject *)parent, &f->side[s], v, key, h, f->is_map ? 0 : at);
}

/* The path to the top frame plus step (stolen): a new tuple. */
static PyObject *
path_to(DiffIter *it, PyObject *step)
{
    PyObject *path = PyTuple_New((Py_ssize_t)it->depth);
    if (path == NULL) {
        Py_DECREF(step);
        return NULL;
    }
    for (size_t d = 1; d < it->depth; d++)
        PyTuple_SET_ITEM(path, d - 1, Py_NewRef(it->frames[d].step));
    PyTuple_SET_ITEM(path, it->depth - 1, step);
    return path;
}

/* Queues Change(path, old, new), made without Change.__new__'s argument
 * tuple; steals all three (NULL for a failed one).  Returns 0 or -1. */
static int
add_change(DiffIter *it, PyObject *path, PyObject *old, PyObject *new)
{
    PyTypeObject *cls = (PyTypeObject *)it->change_cls;
    PyObject *ch = path && old && new ? cls->tp_alloc(cls, 3) : NULL;
    if (ch == NULL) {
        Py_XDECREF(path);
        Py_XDECREF(old);
        Py_XDECREF(new);
        return -1;
    }
    PyTuple_SET_ITEM(ch, 0, path);
    PyTuple_SET_ITEM(ch, 1, old);
    PyTuple_SET_ITEM(ch, 2, new);
    it->ready[it->nready++] = ch;
    return 0;
}

/* The path step for a map key or a list index (new reference). */
static PyObject *
step_obj(DiffIter *it, const cow_val *key, size_t idx)
{
    return key ? cowpy_to_object(it->st, key, NULL, NULL, 0, 0) : PyLong_FromSize_t(idx);
}

/* Queues the Change at key (or index at_a) of the top frame: STEP_NEXT, or
 * STEP_FULL once `want` changes are ready, or -1 on error. */
static int
report(DiffIter *it, const cow_val *key, const cow_val *old, const cow_val *new,
       size_t at_a, size_t at_b)
{
    PyObject *path = NULL, *po = NULL, *pn = NULL;
    PyObject *step = step_obj(it, key, at_a);
    if (step && (path = path_to(it, step)) && (po = value_obj(it, 0, old, at_a)))
        pn = value_obj(it, 1, new, at_b);
    if (add_change(it, path, po, pn) < 0)
        return -1;
    return it->nready < it->want ? STEP_NEXT : STEP_FULL;
}

/* ---- comparing one key or index -------------------------------------------- */

/* Whether two extension leaves are of one type (their subtype byte, ext.h):
 * Decimal(1), Fraction(1) and 1+0j are equal, yet a change of type is a
 * change (D3), as it is at the top level. */
static int
same_ext_type(const cow_val *a, const cow_val *b)
{
    const char *pa, *pb;
    size_t na, nb;
    if (a->tag != COW_T_SEXT && a->tag != COW_T_EXT)
        return 1;
    cow_val_span(a, &pa, &na);
    cow_val_span(b, &pb, &nb);
    return na > 0 && nb > 0 && pa[0] == pb[0];
}

/* Compares the top frame's values at one key (key != NULL) or index: old at
 * entry/index at_a of a, new at at_b of b, either NULL when absent (D2, D3);
 * in_leaves when both lie in the leaves the frame reads.  Equal: STEP_NEXT;
 * reported: as report(); nested pair entered: STEP_PUSHED; -1 on error. */
static int
compare(DiffIter *it, const cow_val *key, const cow_val *old, const cow_val *new,
        size_t at_a, size_t at_b, int in_leaves)
{
    diff_frame *f = top(it);
    int ta, tb;
    if (old && new) {
        if (same_word(old, new, in_leaves ? &f->one_map : NULL))
            return STEP_NEXT;
        ta = read_tag(cowpy_logical_tag(old), f->frozen[0]);
        tb = read_tag(cowpy_logical_tag(new), f->frozen[1]);
        if (same_kind(ta, tb)) {
            uint8_t frozen[2] = {f->frozen[0], f->frozen[1]};
            PyObject *step = step_obj(it, key, at_a);
            if (step == NULL || push_frame(it, old, new, frozen, step, at_a, at_b) < 0)
                return -1;
            return STEP_PUSHED;
        }
        if (ta == tb && cow_val_equal(old, new) && same_ext_type(old, new))
            return STEP_NEXT;
    }
    return report(it, key, old, new, at_a, at_b);
}

/* Where key lies in side s of the top frame: 1 (*entry, *val set), 0 absent,
 * -1 on error. */
static int
find_in(DiffIter *it, int s, const cow_val *key, size_t *entry, cow_val *val)
{
    const cow_map *m = cow_val_getmap(&top(it)->side[s]);
    uint64_t h;
    int rc = cow_val_hash(key, &h);
    if (rc == COW_OK)
        rc = cow_map_find(m, key, h, entry);
    if (rc < 0)
        return read_failed(it->st) ? -1 : cowpy_raise_int(it->st, rc);
    if (rc == COW_FOUND)
        *val = cow_map_entry_val(m, *entry);
    return rc == COW_FOUND;
}

/* One side's key at entry `pos` met for the first time (D1): compares it
 * with its value on the other side.  s is the side the key was read from. */
static int
meet_key(DiffIter *it, int s, const cow_val *key, const cow_val *val, size_t pos)
{
    cow_val found;
    const cow_val *other = NULL;
    size_t at = 0;
    int rc = find_in(it, !s, key, &at, &found);
    if (rc < 0)
        return -1;
    if (rc == 1)
        other = &found;
    if (rc == 1 && (s == 0 ? at < pos : at <= pos))
        return STEP_NEXT;               /* met at the other side's entry */
    return s == 0 ? compare(it, key, val, other, pos, at, 0)
                  : compare(it, key, other, val, at, pos, 0);
}

/* The top frame's map entry `pos` from its phase on (f->k, f->v). */
static int
map_entry(DiffIter *it, diff_frame *f)
{
    /* Copies on this stack: compare and meet_key may push a frame, which
     * moves f and the values it holds. */
    cow_val kv[4] = {f->k[0], f->v[0], f->k[1], f->v[1]};
    const cow_val *k0 = f->has[0] ? &kv[0] : NULL, *k1 = f->has[1] ? &kv[2] : NULL;
    const cow_val *v0 = &kv[1], *v1 = &kv[3];
    size_t pos = f->pos;
    int rc;
    if (f->phase == 0) {
        f->phase = 1;
        if (k0 && k1 && same_word(k0, k1, &f->one_map)) {
            f->phase = 2;               /* one key at one entry: met once */
            return compare(it, k0, v0, v1, pos, pos, 1);
        }
        if (k0 && (rc = meet_key(it, 0, k0, v0, pos)) != STEP_NEXT)
            return rc;                  /* f may have moved: not read again */
    }
    if (f->phase == 1) {
        f->phase = 2;
        if (k1)
            return meet_key(it, 1, k1, v1, pos);
    }
    return STEP_NEXT;
}

/* ---- walking a frame ------------------------------------------------------- */

/* Reads the next map entry of side s of f (f->has[s] 0 past the end or at
 * a hole). */
static void
read_entry(diff_frame *f, int s)
{
    const cow_val *k = cow_vec_iter_next(&f->r[s]);
    const cow_val *v = k ? cow_vec_iter_next(&f->r[s]) : NULL;
    f->has[s] = k != NULL && v != NULL && k->tag != COW_T_HOLE;
    if (f->has[s]) {
        f->k[s] = borrow(k);            /* exported: copies leave the pages */
        f->v[s] = borrow(v);
    }
}

/* Positions the readers of f at its entry or index pos for this fill (D5). */
static void
seek(DiffIter *it, diff_frame *f)
{
    for (int s = 0; s < 2; s++) {
        cow_vec_iter_init(&f->r[s], body_of(&f->side[s]), f->is_map ? 2 * f->pos : f->pos);
        if (f->is_map)
            read_entry(f, s);
    }
    f->one_map = -1;
    f->epoch = it->epoch;
}

/* Runs the top frame (a map) until it is full, descends or ends. */
static int
map_step(DiffIter *it)
{
    diff_frame *f = top(it);
    for (; f->bi < f->nblocks; f->bi++, f->epoch = 0) {
        size_t first = f->blocks[f->bi] / 2, end = first + COW_VEC_WIDTH / 2;
        if (f->pos < first) {
            f->pos = first;
            f->phase = 0;
        }
        if (f->epoch != it->epoch)
            seek(it, f);
        while (f->pos < end) {
            int rc = map_entry(it, f);
            if (rc != STEP_NEXT)
                return rc;              /* f->phase says where to resume */
            f->pos++;
            f->phase = 0;
            read_entry(f, 0);
            read_entry(f, 1);
        }
    }
    return STEP_DONE;
}

/* Runs the top frame (a list) until it is full, descends or ends. */
static int
list_step(DiffIter *it)
{
    diff_frame *f = top(it);
    for (; f->bi < f->nblocks; f->bi++, f->epoch = 0) {
        size_t first = f->blocks[f->bi], end = first + COW_VEC_WIDTH;
        if (f->pos < first)
            f->pos = first;
        if (f->epoch != it->epoch)
            seek(it, f);
        while (f->pos < end) {
            const cow_val *a = cow_vec_iter_next(&f->r[0]), *b = cow_vec_iter_next(&f->r[1]);
            cow_val ab[2];              /* on this stack: a push moves f */
            size_t i = f->pos++;
            int rc;
            if (a == NULL && b == NULL)
                break;                  /* past both ends */
            if (a)
                ab[0] = borrow(a);
            if (b)
                ab[1] = borrow(b);
            if ((rc = compare(it, NULL, a ? &ab[0] : NULL, b ? &ab[1] : NULL, i, i, 1)) != STEP_NEXT)
                return rc;
        }
    }
    return STEP_DONE;
}

/* ---- the iterator ---------------------------------------------------------- */

/* x, or freeze(x) when it is not one of our containers (new reference). */
static PyObject *
ours_or_frozen(cowpy_state *st, PyObject *x)
{
    return cowpy_is_ours(st, x) ? Py_NewRef(x) : cowpy_freeze_object(st, x);
}

/* diff of two values that are not two dicts or two lists: one Change at the
 * root or none (D3 with the objects' own types).  Returns 0 or -1. */
static int
whole_value(DiffIter *it, PyObject *a, PyObject *b)
{
    cow_val va = cow_val_none(), vb = cow_val_none();
    int differs = Py_TYPE(a) != Py_TYPE(b), rc = -1;
    if (!differs) {
        if (cowpy_from_object(it->st, a, &va) < 0 || cowpy_from_object(it->st, b, &vb) < 0)
            goto done;
        differs = !same_word(&va, &vb, NULL) && !cow_val_equal(&va, &vb);
    }
    if (read_failed(it->st)
        || (differs && add_change(it, PyTuple_New(0), Py_NewRef(a), Py_NewRef(b)) < 0))
        goto done;
    rc = 0;
done:
    cow_val_release(&va);
    cow_val_release(&vb);
    return rc;
}

/* Takes the snapshot of two dicts or two lists and pushes the root frame
 * (D4).  Returns 0 or -1. */
static int
start_walk(DiffIter *it, CowObject *a, CowObject *b)
{
    static const uint8_t thawed[2] = {0, 0};
    cow_val_copy(&it->snap[0], &a->root);
    cow_val_copy(&it->snap[1], &b->root);
    if (push_frame(it, &it->snap[0], &it->snap[1], thawed, NULL, 0, 0) < 0)
        return -1;
    it->frames[0].obj[0] = Py_NewRef(a);
    it->frames[0].obj[1] = Py_NewRef(b);
    return 0;
}

/* The first fill: freezes plain arguments, then starts the walk (two dicts
 * or two lists) or compares the whole values.  Returns 0 or -1. */
static int
start(DiffIter *it)
{
    PyObject *a = NULL, *b = NULL;
    int rc = -1;
    it->started = 1;
    if ((a = ours_or_frozen(it->st, it->args[0])) == NULL
        || (b = ours_or_frozen(it->st, it->args[1])) == NULL)
        goto done;
    Py_CLEAR(it->args[0]);
    Py_CLEAR(it->args[1]);
    if (cowpy_is_ours(it->st, a) && cowpy_is_ours(it->st, b)) {
        CowObject *ca = (CowObject *)a, *cb = (CowObject *)b;
        if (cowpy_resolve(ca) < 0 || cowpy_resolve(cb) < 0)
            goto done;
        if (same_kind(ca->root.tag, cb->root.tag)) {
            rc = start_walk(it, ca, cb);
            goto done;
        }
    }
    rc = whole_value(it, a, b);
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return rc;
}

/* Walks until `want` changes are ready or the walk ends (D5).  0 or -1. */
static int
fill(DiffIter *it)
{
    it->head = it->nready = 0;
    it->epoch++;
    if (!it->started && start(it) < 0)
        return -1;
    while (it->depth > 0 && it->nready < it->want) {
        int rc = top(it)->is_map ? map_step(it) : list_step(it);
        if (rc < 0)
            return -1;
        if (rc == STEP_DONE)
            pop_frame(it);
    }
    if (it->want < DIFF_BATCH)
        it->want *= 2;
    return read_failed(it->st) ? -1 : 0;
}

/* Ends the walk and drops what it had ready (after an error). */
static void
drop(DiffIter *it)
{
    while (it->depth > 0)
        pop_frame(it);
    while (it->head < it->nready)
        Py_DECREF(it->ready[it->head++]);
}

COWPY_ENTRY(static, PyObject *, diff_next, (PyObject *op), (op))
{
    DiffIter *it = (DiffIter *)op;
    int rc;
    if (it->filling) {
        PyErr_SetString(PyExc_ValueError, "diff iterator already executing");
        return NULL;
    }
    if (it->head == it->nready && (it->depth > 0 || !it->started)) {
        it->filling = 1;
        rc = fill(it);
        it->filling = 0;
        if (rc < 0) {
            drop(it);
            return NULL;
        }
    }
    if (it->head == it->nready)
        return NULL;
    return it->ready[it->head++];       /* the buffer's reference, handed on */
}

static void
diff_dealloc(PyObject *op)
{
    DiffIter *it = (DiffIter *)op;
    PyTypeObject *tp = Py_TYPE(op);
    drop(it);
    PyMem_Free(it->frames);
    cow_val_release(&it->snap[0]);
    cow_val_release(&it->snap[1]);
    Py_XDECREF(it->args[0]);
    Py_XDECREF(it->args[1]);
    Py_DECREF(it->change_cls);
    Py_DECREF(it->missing);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyType_Slot diff_slots[] = {
    {Py_tp_dealloc, diff_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, diff_next},
    {Py_tp_doc, "Changes between two values, computed as they are consumed."},
    {0, NULL},
};

PyType_Spec cowpy_diff_spec = {
    .name = "cowstore._cowstore.DiffIterator",
    .basicsize = sizeof(DiffIter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = diff_slots,
};

/* _diff(a, b, Change, MISSING): an iterator of Change records; nothing is
 * read before its first next(). */
COWPY_ENTRY(extern, PyObject *, cowpy_diff, (PyObject *mod, PyObject *args), (mod, args))
{
    cowpy_state *st = PyModule_GetState(mod);
    PyObject *a, *b, *cls, *missing;
    DiffIter *it;
    if (!PyArg_ParseTuple(args, "OOOO:_diff", &a, &b, &cls, &missing))
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "_diff needs a tuple subclass for its records");
        return NULL;
    }
    if ((it = PyObject_New(DiffIter, st->diff_type)) == NULL)
        return NULL;
    it->st = st;
    it->args[0] = Py_NewRef(a);
    it->args[1] = Py_NewRef(b);
    it->change_cls = Py_NewRef(cls);
    it->missing = Py_NewRef(missing);
    it->snap[0] = it->snap[1] = cow_val_none();
    it->frames = NULL;
    it->depth = it->cap = 0;
    it->epoch = 0;
    it->started = 0;
    it->filling = 0;
    it->want = 2;
    it->head = it->nready = 0;
    return (PyObject *)it;
}
