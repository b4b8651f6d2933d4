/* cowstore core error codes.
 *
 * Every fallible core function returns COW_OK (0) or one negative code from this
 * enum; results travel through out-parameters.  Lookups return the tri-state
 * cow_found (found / not found / error) so "absent" is never confused with
 * "failed".  cow_strerror() names each code; the Python binding maps each code
 * to one exception class in one table (csrc/python/errors.c).
 */
#ifndef COWSTORE_ERRORS_H
#define COWSTORE_ERRORS_H

typedef enum cow_err {
    COW_OK = 0,
    COW_ENOMEM = -1,     /* allocation failed */
    COW_EINDEX = -2,     /* index out of range */
    COW_EKEY = -3,       /* key absent where it must be present */
    COW_EINVAL = -4,     /* argument outside the function's domain */
    COW_EOVERFLOW = -5,  /* a size or count would not fit its field */
    COW_ECORRUPT = -6,   /* stored bytes fail validation */
    COW_ETYPE = -7,      /* a value of the wrong kind for the operation */
    COW_ESTORE = -8,     /* LMDB reported an error (its text: cow_store_errmsg) */
    COW_EREADONLY = -9,  /* a write to a store opened readonly */
    COW_ECLOSED = -10,   /* an operation on a closed store */
    COW_ECONFLICT = -11, /* a transaction must restart: another writer interleaved */
    COW_EDEPTH = -12,    /* heap containers nested past a recursive walk's bound */
} cow_err;

/* Lookup outcome: errors are negative cow_err values. */
typedef enum cow_found {
    COW_NOT_FOUND = 0,
    COW_FOUND = 1,
    COW_ASK_GENERAL = 2,    /* a fast path's answer: the general lookup must
                             * give it (a stored node on the way, a rare item) */
} cow_found;

/* Static message for a cow_err code; never NULL. */
const char *cow_strerror(int code);

#endif
