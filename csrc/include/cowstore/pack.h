/* Packed containers: a small dict, list or tuple -- nested ones included --
 * as one compact immutable node, the same bytes in the heap and in pages.
 *
 * Why: a general map or vector spends a 16-byte cow_val on every key and
 * value, a header and a log or tail node on every container, and repeats the
 * keys of every record.  Data read from JSON is mostly many small records of
 * a few shapes; packed, a record costs about its msgpack bytes without the
 * keys, which live once per shape.
 *
 * A packed value is a cow_val tagged COW_T_PACKED:
 *
 *   tag = COW_T_PACKED, slen = the container's own tag (DICT, FDICT, LIST,
 *   FLIST or TUPLE), inl = u16 offset of its body in the node's items (0:
 *   the node's own container; else a member of a batch, P6), aux = its
 *   identity, u.w = the pack node (a cow_word).
 *
 * Pack node bytes (8-byte header, then the words, then the items):
 *
 *   +--------+---------------------+-------------------+------------------+
 *   | refcnt | nbytes:24 nwords:8  | cow_word words[k] | uint8 items[n]   |
 *   |  u32   |        u32          | blobs (see below) | the container's  |
 *   +--------+---------------------+-------------------+ body, then pad   |
 *
 * Every word names a blob: a shape (a dict's key tuple, below) or a long
 * str, bytes or int.  Items (one byte code, then its payload, little-endian):
 *
 *   0x00 None   0x01 False   0x02 True
 *   0x03..0x07  int in 1, 2, 3, 4, 8 bytes (the narrowest that holds it)
 *   0x08        float, 8 bytes
 *   0x09 0x0a 0x0b   str / bytes / big int held by word (u8 word index)
 *   0x0c 0x0d   str / bytes inline: u8 length (<= 255), the bytes
 *   0x0e 0x0f   an extension leaf (ext.h: datetime, Decimal, ...) inline
 *               (u8 length 1..14, the bytes) / by word (u8 word index)
 *   0x10..0x14  a nested DICT, FDICT, LIST, FLIST, TUPLE: its body
 *   0x15        a repeated str by word (P7): u8 word index
 *   0x20..0x2e  str of 0..14 bytes inline: the bytes
 *   0x80..0xff  int 0..127
 *
 * Bodies: a dict is u8 shape word index, then one item per key of the shape
 * in its order; a list or tuple is u8 count, then the items.  A shape blob is
 * u8 key count, then per key u8 length and its UTF-8 bytes: keys are str.
 *
 * Invariants (cited as P1.. by tests):
 *  P1  a pack is never written: copies share it; a write goes to a general
 *      container materialised from it (cow_pack_unpack), which keeps the
 *      identity, so views (csrc/python) follow the value from packed to
 *      general.  A container written back into a slot that held it packed
 *      is packed anew (cow_pack_repack) when every container nested in it
 *      still has the identity P5 derives for its position.
 *  P2  only values that decode exactly are packed: None, bools, ints, floats,
 *      str, bytes, extension leaves, and dicts with str keys, lists and
 *      tuples of those, within
 *      the limits below; anything else (sets, arrays, non-str keys, bigger
 *      containers) keeps the general form.
 *  P3  decoding checks every length, code and word index against the node:
 *      hostile pages give COW_ECORRUPT, never a read outside the node.
 *  P4  shapes are interned per process (a bounded cache): records made with
 *      the same keys share one shape blob, and one stored copy per commit.
 *  P5  a nested container's identity is not stored: it is derived from its
 *      parent's and its position (the same at every materialisation), which
 *      is all views need; packing gives a nested container that identity.
 *  P6  a batch is one node holding the bodies of up to 32 packed containers
 *      (COW_PACK_BATCH_MAX_BYTES at most) that are entries of one list or
 *      map (cow_pack_batch): its items are a list body of them, and each
 *      entry's value names the node with the offset of its body (never 0:
 *      past the count and the item's code).
 *      Entries of one vector leaf share their shape words and one header,
 *      and lose their padding.  A member is read, copied and written as a
 *      pack of its own is; copying one keeps the whole batch alive.
 *  P7  in a batch, a str its members repeat (a status, a tag: where the
 *      repeats save more than a word) is written by word (code 0x15) to a
 *      blob of 1..255 bytes interned per process, as shapes are: two bytes
 *      an occurrence.  It reads back as the str it is (V1: inline when
 *      short).  Every other str of a pack is inline or, past 255 bytes, a
 *      word (0x09) of a blob longer than 255.
 *  P8  a nested container read in place (cow_pack_lookup, cursors) is a
 *      packed value naming its parent's node at the offset of its body, as
 *      a batch member does (P6), with the identity P5 derives: it reads,
 *      compares and materialises as the same container of its materialised
 *      parent, and holds the parent's whole node while it lives.
 */
#ifndef COWSTORE_PACK_H
#define COWSTORE_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/ref.h"
#include "cowstore/value.h"

/* Limits of one pack (P2): item bytes fit the header's 24 bits with room to
 * spare, and a pack stays small enough that materialising it is cheap. */
#define COW_PACK_MAX_BYTES 4096
#define COW_PACK_MAX_WORDS 32
/* Most entries of one packed dict, list or tuple. */
#define COW_PACK_MAX_ITEMS 32
/* Longest str or bytes kept inline (a u8 length); longer ones are words. */
#define COW_PACK_INLINE_MAX 255
/* Deepest nesting inside one pack (each level costs >= 6 bytes anyway). */
#define COW_PACK_MAX_DEPTH 64
/* Most bytes of a batch's words and items (P6).  A store segment fills one
 * page and a node never spans two, so big nodes waste page space: batches of
 * up to 4 KiB made the botocore corpus file 1.33x its JSON (segments 1.01x)
 * with one open segment; at 512..1024 bytes it was 1.13-1.14x, as without
 * batches (and 1.01x once segments were filled best fit, segment.c S3). */
#define COW_PACK_BATCH_MAX_BYTES 1024

typedef struct cow_pack {
    uint32_t refcnt;
    uint32_t size;          /* nbytes | nwords << 24 */
} cow_pack;

#define COW_PACK_NBYTES_MASK 0xffffffu
#define COW_PACK_NWORDS_SHIFT 24

/* The identity of container v, packed (its aux) or general (its node's):
 * what views and P5 tell containers apart by. */
uint32_t cow_container_ident(const cow_val *v);
/* Packs v (a general DICT, FDICT, LIST, FLIST or TUPLE; its packed children
 * are inlined) into *out.  COW_FOUND (packed: *out owned); COW_NOT_FOUND
 * when v cannot be packed (P2: *out untouched); or an error. */
int cow_pack_make(const cow_val *v, cow_val *out);
/* cow_pack_make for a container materialised from a pack and written
 * since (P1): COW_NOT_FOUND also when a container nested in it has not the
 * identity its position derives (P5) -- one assigned there since, which
 * the pack would read back as the one it replaced. */
int cow_pack_repack(const cow_val *v, cow_val *out);
/* cow_pack_make of the DICT of n entries keys[i]: vals[i] (borrowed;
 * distinct keys, as a Python dict's str keys are), a new identity, with no
 * general map made first: the conversion of a record. */
int cow_pack_make_dict(const cow_val *keys, const cow_val *vals, size_t n, cow_val *out);
/* The same for the LIST, FLIST or TUPLE (tag) of n items (borrowed). */
int cow_pack_make_seq(int tag, const cow_val *items, size_t n, cow_val *out);
/* *out = the general container a packed value holds (owned, same identity
 * and tag, nested containers general too).  COW_OK, COW_ENOMEM or
 * COW_ECORRUPT. */
int cow_pack_unpack(const cow_val *v, cow_val *out);
/* Reading one entry in place, without materialising (the hot reads of a
 * record).  Results are borrowed, valid while v is held: inline str/bytes
 * as *_VIEW values into the node (V4: never stored), words exported without
 * a reference, and a nested container as a packed value of its own naming
 * v's node at its body's offset (P8). */
/* d[key] for a packed dict and a str key: COW_FOUND, COW_NOT_FOUND or an
 * error. */
int cow_pack_lookup(const cow_val *v, const char *key, size_t klen, cow_val *out);
/* A caller's memo of where one key lies in one shape, for reading the same
 * field of many records: zeroed is empty; it holds a reference to the
 * shape it names until cleared (pack.c). */
typedef struct cow_pack_memo {
    cow_word shape;     /* a heap shape blob, or 0 */
    uint8_t pos;        /* the key's position in it */
    uint8_t count;      /* its keys */
} cow_pack_memo;
/* cow_pack_lookup, the key's position read from *memo when v's shape is the
 * one it names, else found and memoised there.  A memo serves one key:
 * the caller gives each key its own. */
int cow_pack_lookup_memo(const cow_val *v, const char *key, size_t klen, cow_pack_memo *memo,
                         cow_val *out);
void cow_pack_memo_clear(cow_pack_memo *memo);
/* d[key] = val for a packed dict v whose shape has key and a scalar val
 * (borrowed): the dict so written as a new pack of its own (P1: v is not
 * touched), v's identity kept, into *out (owned): COW_FOUND; COW_NOT_FOUND
 * when key is not in the shape, val is a container (its identity would be
 * derived, P5) or does not pack (P2): the caller writes a general map;
 * COW_ECORRUPT or COW_ENOMEM.  The key is found as cow_pack_lookup_memo
 * finds it (memo may be NULL). */
int cow_pack_with_field(const cow_val *v, const char *key, size_t klen, cow_pack_memo *memo,
                        const cow_val *val, cow_val *out);
/* l[i] for a packed list or tuple (0 <= i): as cow_pack_lookup. */
int cow_pack_index(const cow_val *v, size_t i, cow_val *out);
/* len(): COW_OK or COW_ECORRUPT. */
int cow_pack_count(const cow_val *v, size_t *n);

/* A reader of a pack's items (pack.c): every read is checked against end. */
typedef struct cow_pack_reader {
    const uint8_t *p, *end;
    const cow_pack *node;
} cow_pack_reader;

/* Iteration in place: a packed container's entries in order, each read as
 * cow_pack_lookup reads one, in O(1) per entry. */
typedef struct cow_pack_cursor {
    cow_pack_reader in;
    const cow_val *v;               /* the container (held by the caller) */
    const uint8_t *shape;           /* a dict's shape blob (see above), else NULL */
    const uint8_t *keys, *kend;     /* the shape's keys not yet read */
    unsigned count, pos;            /* entries, and entries read */
} cow_pack_cursor;
/* Starts at the first entry of v (held while the cursor is used): COW_OK or
 * COW_ECORRUPT. */
int cow_pack_cursor_init(cow_pack_cursor *c, const cow_val *v);
/* The next entry: COW_FOUND with *val (and, for a dict, its key's UTF-8 in
 * *key, *klen), COW_NOT_FOUND after the last, or an error. */
int cow_pack_cursor_next(cow_pack_cursor *c, const char **key, size_t *klen, cow_val *val);
/* Bytes of a dict cursor's shape blob (its key count, then each key as u8
 * length and UTF-8): 0 for a list. */
size_t cow_pack_cursor_shape(const cow_pack_cursor *c, const uint8_t **shape);

/* A walk over a pack's whole content in order, for readers that build
 * something else from it (thaw): begin(tag, n) opens a container of n
 * entries, whose entries follow -- each of a dict's values after key() --
 * and end(tag) closes it; scalars are borrowed as by cow_pack_lookup.  A
 * callback's nonzero result stops the walk and is returned. */
typedef struct cow_pack_visitor {
    int (*begin)(void *ctx, int tag, size_t n);
    int (*key)(void *ctx, const char *utf8, size_t len);
    int (*scalar)(void *ctx, const cow_val *v);
    int (*end)(void *ctx, int tag);
} cow_pack_visitor;
/* COW_OK, a callback's result, or COW_ECORRUPT. */
int cow_pack_visit(const cow_val *v, const cow_pack_visitor *vis, void *ctx);

/* The body offset of a packed value (P6), and setting it. */
static inline size_t
cow_pack_offset(const cow_val *v)
{
    return (size_t)v->inl[0] | (size_t)v->inl[1] << 8;
}
static inline void
cow_pack_set_offset(cow_val *v, size_t off)
{
    v->inl[0] = (uint8_t)off;
    v->inl[1] = (uint8_t)(off >> 8);
}

/* Batches (P6) the packed values among vals[0], vals[stride], ...
 * (n of them) that are packs of their own nothing else holds: each run that
 * fits one node becomes members of one batch.  Values stay equal; only
 * their nodes change.  COW_OK or an error (the values as they were or
 * batched, every one valid). */
int cow_pack_batch(cow_val *vals, size_t n, size_t stride);

void cow_pack_retain(cow_pack *p);
void cow_pack_release(cow_pack *p);
/* Drops the interned shapes (P4), as at exit. */
void cow_pack_forget_shapes(void);
/* Live pack nodes in this process (for leak tests). */
long cow_pack_live_nodes(void);

#endif
