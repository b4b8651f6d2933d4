/* The strerror table for cow_err (see cowstore/errors.h). */
#include "cowstore/errors.h"

const char *
cow_strerror(int code)
{
    switch (code) {
    case COW_OK: return "success";
    case COW_ENOMEM: return "out of memory";
    case COW_EINDEX: return "index out of range";
    case COW_EKEY: return "key not found";
    case COW_EINVAL: return "invalid argument";
    case COW_EOVERFLOW: return "size overflow";
    case COW_ECORRUPT: return "corrupt stored data";
    case COW_ETYPE: return "wrong value type";
    case COW_ESTORE: return "store error";
    case COW_EREADONLY: return "store is readonly";
    case COW_ECLOSED: return "store is closed";
    case COW_ECONFLICT: return "transaction conflict";
    case COW_EDEPTH: return "containers nested too deeply for this operation";
    }
    return "unknown cowstore error";
}
