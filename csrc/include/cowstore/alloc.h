/* The core's allocator: every node, blob and header comes from here.
 *
 * The default is the C library's; the Python binding installs CPython's
 * allocator (PyMem_Malloc and friends) so tracemalloc sees the core's memory
 * and small nodes come from pymalloc's pools.  Set it once, before anything is
 * allocated: memory must be freed by the allocator that made it. */
#ifndef COWSTORE_ALLOC_H
#define COWSTORE_ALLOC_H

#include <stddef.h>

typedef struct cow_allocator {
    void *(*malloc)(size_t size);
    void *(*calloc)(size_t count, size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
} cow_allocator;

extern cow_allocator cow_alloc;

void cow_set_allocator(const cow_allocator *a);

static inline void *cow_malloc(size_t size) { return cow_alloc.malloc(size); }
static inline void *cow_calloc(size_t n, size_t size) { return cow_alloc.calloc(n, size); }
static inline void *cow_realloc(void *p, size_t size) { return cow_alloc.realloc(p, size); }
static inline void cow_free(void *p) { cow_alloc.free(p); }

#endif
