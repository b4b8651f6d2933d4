/* Extension leaves: the values beyond the builtins (datetime, Decimal, UUID,
 * enum members, dataclasses, registered and pickled objects), each one
 * SEXT/EXT value (value.h V8) whose bytes start with a subtype.
 *
 * The binding (csrc/python/ext.c, cowstore/_ext.py) writes and reads the
 * bytes; the core only needs what hashing and equality need, so it reads
 * just the head of each subtype (little-endian, no alignment):
 *
 *   DATETIME, TIME   subtype | u64 word | [i40 offset us] | [zone key]
 *                    word: bits 0..58 local microseconds (since 0001-01-01
 *                    for DATETIME, since midnight for TIME), bit 59 aware,
 *                    bit 60 fold, bits 61..62 zone kind; the offset is there
 *                    when aware.  Equality: naive with naive by local time,
 *                    aware with aware by the instant local - offset (E2).
 *   DECIMAL, FRACTION
 *                    subtype | numeric key | [body: the binding's]
 *                    The key is the value as the simplest number equal to
 *                    it (E1): INT zigzag varint, FLOAT f64, BIG varint
 *                    length + two's-complement bytes, RATIO two such
 *                    integers (reduced numerator, denominator > 1), NAN and
 *                    SNAN nothing, DEC varint length + canonical text (huge
 *                    exponents, compared only with each other).
 *   COMPLEX          subtype | f64 real | f64 imag
 *   others           subtype | bytes; equal when the bytes are (E3)
 *
 * Invariants:
 *  E1  A DECIMAL, FRACTION or COMPLEX equal to an int or float has that
 *      number as its key (imaginary part 0 for COMPLEX) and hashes and
 *      compares as it (value.h V3): 1 == 1.0 == Decimal(1) == Fraction(1)
 *      == complex(1, 0).  Other keys are canonical, so equal values have
 *      byte-equal keys.
 *  E2  Datetimes and times hash by what decides their equality (aware:
 *      instant; naive: local time) and never equal one of the other kind.
 *  E3  Bytes that do not parse (a damaged file) compare by their bytes and
 *      never crash; the binding raises CorruptStoreError when reading them.
 */
#ifndef COWSTORE_EXT_H
#define COWSTORE_EXT_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/value.h"

enum cow_ext_subtype {
    COW_EXT_DATETIME = 1,
    COW_EXT_DATE = 2,
    COW_EXT_TIME = 3,
    COW_EXT_TIMEDELTA = 4,
    COW_EXT_DECIMAL = 5,
    COW_EXT_FRACTION = 6,
    COW_EXT_COMPLEX = 7,
    COW_EXT_UUID = 8,
    COW_EXT_ENUM = 16,          /* class path, value record (binding) */
    COW_EXT_NAMEDTUPLE = 17,
    COW_EXT_DATACLASS = 18,
    COW_EXT_USER = 19,          /* registered with cowstore.register */
    COW_EXT_PICKLE = 20,        /* the opt-in pickle fallback */
    COW_EXT_UNHASHABLE = 0x80   /* flag on object subtypes: not a key */
};

/* Numeric key kinds (E1). */
enum cow_ext_numkey {
    COW_EXT_K_INT = 1,
    COW_EXT_K_FLOAT = 2,
    COW_EXT_K_BIG = 3,
    COW_EXT_K_RATIO = 4,
    COW_EXT_K_NAN = 5,
    COW_EXT_K_SNAN = 6,
    COW_EXT_K_DEC = 7
};

/* A datetime word: the local microseconds' bits, then the flags above them. */
#define COW_EXT_US_BITS 59
#define COW_EXT_AWARE_BIT 59
/* The signed offset of an aware datetime or time: 5 bytes hold +-24 h in
 * microseconds (8.64e10 < 2^39). */
#define COW_EXT_OFFSET_BYTES 5

/* An owned SEXT/EXT value holding a copy of data (V8).  COW_OK, COW_EINVAL
 * (empty), COW_ENOMEM. */
int cow_val_ext(cow_val *out, const void *data, size_t len);

/* What cow_ext_number found: which out-parameter holds the number. */
enum cow_ext_num { COW_EXT_NUM_INT, COW_EXT_NUM_BIG, COW_EXT_NUM_FLOAT };

/* The number an extension value equals (E1), when it equals an int or a
 * float: 1, with *kind COW_EXT_NUM_INT (*i), _BIG (*big, *nbig: minimal
 * two's-complement bytes, value.h V2) or _FLOAT (*f).  0 for every other
 * value. */
int cow_ext_number(const cow_val *v, int *kind, int64_t *i, double *f,
                   const uint8_t **big, size_t *nbig);
int cow_ext_hash(const cow_val *v, uint64_t *out);     /* COW_ETYPE: unhashable */
int cow_ext_equal(const cow_val *a, const cow_val *b); /* neither is a number */
int cow_ext_order(const cow_val *a, const cow_val *b); /* consistent with equal */

#endif
