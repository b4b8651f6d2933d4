/* Parcels: one value's nodes as a single read-only buffer that can travel
 * (pickle protocol 5, Dask frames, Ray's object store) and be read in place.
 *
 * Why: a store file only exists on its own host.  A parcel holds the nodes a
 * value reaches, in the store's node format, with page words naming
 * segments of the parcel itself, so any process that has the bytes -- a
 * `bytes`, an mmap, shared memory -- reads the value lazily and zero-copy,
 * as it reads a store: the parcel is registered as one more env of the ref
 * table (ref.h) whose segment lookup reads the parcel's own table.
 * ("Parcel", not "pack": cow_pack is a packed container, pack.h.)
 *
 * Layout (native byte order, every offset a multiple of 8):
 *
 *   0   cow_parcel_head (48 bytes)
 *         magic "COWPRCL1" | version u32 | nsegs u32 | size u64 | 0 u64
 *         root: the value, a cow_val whose word is in page form
 *   48  segment table: nsegs x {offset u64, length u64}, segment id i+1
 *       at entry i, offsets from byte 0 of the parcel
 *   ..  the segments, as the segment writer made them (segment.c)
 *
 * Invariants:
 *  P1  size is the parcel's length; the table lies inside it; every segment
 *      span is checked by the resolver (ref.c R2) against the buffer before
 *      it is read, so a hostile parcel reads as poison + COW_ECORRUPT.
 *  P2  an open parcel's env stays registered, and its buffer owned, while
 *      any heap word names it (env pins > 0); when the last pin goes the env
 *      is removed and release(owner) is called, once.
 */
#ifndef COWSTORE_PARCEL_H
#define COWSTORE_PARCEL_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/ref.h"
#include "cowstore/value.h"

#define COW_PARCEL_MAGIC "COWPRCL1"
#define COW_PARCEL_MAGIC_LEN 8
/* 4: 8-byte blob headers (store format 6, value.h), so versions 1 to 3
 * are refused; 3: hash index leaves without their hash (store format 5, map.c), so
 * versions 1 and 2 are refused; 2: packed values may name a body inside a
 * batch (pack.h P6). */
#define COW_PARCEL_VERSION 4u
#define COW_PARCEL_VERSION_OLDEST_READ 4u
/* Segments close at this size: few table entries, few segment-cache misses;
 * a node still starts in the first 128 MiB of its segment (ref.h). */
#define COW_PARCEL_SEG_TARGET ((size_t)1 << 20)

typedef struct cow_parcel_head {
    char magic[COW_PARCEL_MAGIC_LEN];
    uint32_t version;
    uint32_t nsegs;
    uint64_t size;      /* bytes of the whole parcel (P1) */
    uint64_t reserved;  /* 0 */
    cow_val root;       /* page form */
} cow_parcel_head;

_Static_assert(sizeof(cow_parcel_head) == 48, "parcel header is 48 bytes");

/* ---- writing ------------------------------------------------------------- */

/* A parcel being built: the segments back to back, then assembled. */
typedef struct cow_parcel_out {
    char *body;                 /* segments, in id order */
    size_t len, cap;
    uint64_t (*spans)[2];       /* per segment id - 1: (offset in body, length) */
    uint32_t nsegs, capsegs;
    cow_val root;               /* page form */
    int oversized;              /* a segment past COW_PARCEL_SEG_MAX was refused */
} cow_parcel_out;

/* The most bytes of one segment (a reader refuses more: ref.c), so of one
 * node: an array or a string. */
#define COW_PARCEL_SEG_MAX ((size_t)UINT32_MAX)

/* Serialises every node v reaches (heap or any store's) into *out.  COW_OK,
 * or an error (COW_ECORRUPT for a source failing validation, COW_ENOMEM,
 * COW_EOVERFLOW: nested too deep, or out->oversized); *out is to be freed
 * either way. */
int cow_parcel_build(const cow_val *v, cow_parcel_out *out);
/* Bytes of the assembled parcel. */
size_t cow_parcel_size(const cow_parcel_out *out);
/* Writes the parcel into dst (cow_parcel_size bytes). */
void cow_parcel_emit(const cow_parcel_out *out, char *dst);
void cow_parcel_out_free(cow_parcel_out *out);

/* ---- reading ------------------------------------------------------------- */

typedef void (*cow_parcel_release)(void *owner);

/* Opens the parcel in buf (len bytes, 8-byte aligned, never written while
 * open) and gives its value, heap form, owned, in *root.  On COW_OK the
 * parcel owns `owner` and calls release(owner) once, when no value read
 * from it is alive any more (P2; at once when the value names no node).  On
 * error (COW_ECORRUPT: not a parcel or a bad header; COW_EINVAL: buf not
 * aligned; COW_EOVERFLOW: no free env slot; COW_ENOMEM) nothing is kept and
 * release is not called. */
int cow_parcel_open(const void *buf, size_t len, cow_parcel_release release, void *owner,
                    cow_val *root);
/* The format version a parcel's header states, or 0 when buf does not start
 * with a parcel's magic: tells a parcel of another cowstore version (which
 * cow_parcel_open refuses as COW_ECORRUPT) from other bytes. */
uint32_t cow_parcel_version(const void *buf, size_t len);
/* Parcels open now (their envs registered). */
long cow_parcel_open_count(void);

#endif
