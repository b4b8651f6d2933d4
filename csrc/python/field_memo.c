/* Field memos: where a key lies in a shape (pack.h cow_pack_memo), one per
 * key object, so r[k] over many records of one shape finds k's field
 * without comparing keys.  A program reads fields with a few key objects
 * (literals, interned), so the table is chosen by the key's address and
 * holds a reference to the key: while it does, that address is that str.
 * Bounded (a key object evicts another's memo, and the shape it holds),
 * and used under the GIL only. */
#include "cowpy.h"

#define FIELD_MEMO_BITS 8

typedef struct field_memo_slot {
    PyObject *key;              /* an exact str, held; NULL when empty */
    cow_pack_memo memo;         /* its memo: empty when just taken */
} field_memo_slot;

static field_memo_slot field_memos[1u << FIELD_MEMO_BITS];

cow_pack_memo *
cowpy_field_memo(PyObject *key)
{
    field_memo_slot *slot = &field_memos[cowpy_address_slot(key, FIELD_MEMO_BITS)];
    if (slot->key != key) {
        cow_pack_memo_clear(&slot->memo);
        Py_XSETREF(slot->key, Py_NewRef(key));
    }
    return &slot->memo;
}
