/* Reading roots, and the writer's pending operations on them.
 *
 * Puts and deletes inside a transaction are kept as pending operations (one
 * per name) and applied at commit (store_txn.c); the writer's own reads see
 * them, other threads' reads see the last commit (ST5). */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "store_impl.h"

/* The pending operation on `name` of the calling thread's transaction, or
 * NULL: other threads never see the writer's pending operations (ST5). */
static pending_op *
find_op(cow_store *s, const char *name, size_t nlen)
{
    if (!store_owns_txn(s))
        return NULL;
    for (size_t i = 0; i < s->nops; i++)
        if (s->ops[i].nlen == nlen && memcmp(s->ops[i].name, name, nlen) == 0)
            return &s->ops[i];
    return NULL;
}

/* A root record's value, checked: the 16 bytes in page form (LMDB keeps
 * small values only 2-byte aligned, so they are copied out). */
int
store_root_record(const MDB_val *v, cow_val *out)
{
    if (v->mv_size != sizeof *out)
        return store_msg(COW_ECORRUPT, "corrupt root record");
    memcpy(out, v->mv_data, sizeof *out);
    if (cow_val_check_stored(out) < 0)
        return store_msg(COW_ECORRUPT, "corrupt root record");
    return COW_OK;
}

/* Root `name` read in txn (store_root_record). */
static int
read_root(cow_store *s, MDB_txn *txn, const char *name, size_t nlen, cow_val *out)
{
    MDB_val k = {nlen, (void *)name}, v;
    int mrc;
    if (nlen == 0 || nlen > (size_t)mdb_env_get_maxkeysize(s->env))
        return COW_NOT_FOUND;
    mrc = mdb_get(txn, s->roots, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return COW_NOT_FOUND;
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "reading a root");
    return store_root_record(&v, out) < 0 ? COW_ECORRUPT : COW_FOUND;
}

int
cow_store_get(cow_store *s, const char *name, size_t nlen, cow_val *out)
{
    cow_val page;
    pending_op *op;
    int rc;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if ((op = find_op(s, name, nlen)) != NULL) {
        if (op->del)
            return COW_NOT_FOUND;
        cow_val_copy(out, &op->v);
        return COW_FOUND;
    }
    if (!store_owns_txn(s) && (rc = store_refresh_snapshot(s)) < 0)
        return rc;
    if ((rc = read_root(s, s->cur, name, nlen, &page)) != COW_FOUND)
        return rc;
    store_val_to_heap(s, &page);
    *out = page;
    cow_val_retain(out);            /* pins the snapshot */
    return COW_FOUND;
}

int
cow_store_names(cow_store *s, int (*visit)(void *ctx, const char *name, size_t len), void *ctx)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, mrc;
    int own;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if (!(own = store_owns_txn(s)) && (rc = store_refresh_snapshot(s)) < 0)
        return rc;
    if ((mrc = mdb_cursor_open(s->cur, s->roots, &c)) != 0)
        return store_mdb_fail(s, mrc, "listing roots");
    rc = COW_OK;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == COW_OK;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pending_op *op = find_op(s, k.mv_data, k.mv_size);
        if (op == NULL || !op->del)
            rc = visit(ctx, k.mv_data, k.mv_size);
    }
    mdb_cursor_close(c);
    if (rc == COW_OK && mrc != MDB_NOTFOUND)
        rc = store_mdb_fail(s, mrc, "listing roots");
    for (size_t i = 0; own && i < s->nops && rc == COW_OK; i++) {     /* new names */
        cow_val page;
        if (!s->ops[i].del && read_root(s, s->cur, s->ops[i].name, s->ops[i].nlen, &page) == COW_NOT_FOUND)
            rc = visit(ctx, s->ops[i].name, s->ops[i].nlen);
    }
    return rc;
}

static int
add_op(cow_store *s, const char *name, size_t nlen, int del, const cow_val *v)
{
    pending_op *op = find_op(s, name, nlen);
    if (nlen == 0 || nlen > (size_t)mdb_env_get_maxkeysize(s->env))
        return store_msg(COW_EINVAL, "root names must be 1 to 511 bytes of UTF-8");
    if (op == NULL) {
        if (s->nops == s->capops) {
            size_t cap = s->capops ? s->capops * 2 : 4;
            pending_op *o = cow_realloc(s->ops, cap * sizeof *o);
            if (o == NULL)
                return COW_ENOMEM;
            s->ops = o;
            s->capops = cap;
        }
        op = &s->ops[s->nops];
        if ((op->name = cow_malloc(nlen)) == NULL)
            return COW_ENOMEM;
        memcpy(op->name, name, nlen);
        op->nlen = nlen;
        op->v = cow_val_none();
        s->nops++;
    }
    cow_val_release(&op->v);
    op->del = del;
    if (!del)
        cow_val_copy(&op->v, v);
    return COW_OK;
}

int
cow_store_put(cow_store *s, const char *name, size_t nlen, const cow_val *v)
{
    int rc;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if (!store_owns_txn(s))
        return store_msg(COW_EINVAL, "put outside a transaction (none is open in this thread)");
    return add_op(s, name, nlen, 0, v);
}

int
cow_store_del(cow_store *s, const char *name, size_t nlen)
{
    cow_val cur;
    int rc;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if (!store_owns_txn(s))
        return store_msg(COW_EINVAL, "delete outside a transaction (none is open in this thread)");
    if ((rc = cow_store_get(s, name, nlen, &cur)) != COW_FOUND)
        return rc;
    cow_val_release(&cur);
    rc = add_op(s, name, nlen, 1, NULL);
    return rc < 0 ? rc : COW_FOUND;
}

/* Releases n operations' names and values (not the array). */
void
store_free_ops(pending_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cow_free(ops[i].name);
        cow_val_release(&ops[i].v);
    }
}

void
store_clear_ops(cow_store *s)
{
    store_free_ops(s->ops, s->nops);
    s->nops = 0;
}
