/* The core's allocator hooks (see cowstore/alloc.h). */
#include <stdlib.h>

#include "cowstore/alloc.h"

cow_allocator cow_alloc = {malloc, calloc, realloc, free};

void
cow_set_allocator(const cow_allocator *a)
{
    cow_alloc = *a;
}
