/* Introspection: the store's counts and LMDB's own figures. */
#include <string.h>

#include "cowstore/errors.h"
#include "store_impl.h"

/* Pages on LMDB's freelist (database 0): each record is an ID list whose
 * first word counts the page numbers after it. */
static int
count_free_pages(cow_store *s, uint64_t *out)
{
    MDB_cursor *c;
    MDB_val k, v;
    int mrc;
    *out = 0;
    if ((mrc = mdb_cursor_open(s->cur, 0, &c)) != 0)
        return store_mdb_fail(s, mrc, "reading the freelist");
    while ((mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
        size_t n;
        if (v.mv_size < sizeof n)
            continue;
        memcpy(&n, v.mv_data, sizeof n);
        if (n < v.mv_size / sizeof n)       /* a hostile count is not believed */
            *out += n;
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? COW_OK : store_mdb_fail(s, mrc, "reading the freelist");
}

static int
db_stats(cow_store *s, MDB_dbi dbi, cow_store_db_stats *out)
{
    MDB_stat st;
    int mrc = mdb_stat(s->cur, dbi, &st);
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "reading statistics");
    out->entries = st.ms_entries;
    out->depth = st.ms_depth;
    out->branch_pages = st.ms_branch_pages;
    out->leaf_pages = st.ms_leaf_pages;
    out->overflow_pages = st.ms_overflow_pages;
    return COW_OK;
}

int
cow_store_stats_get(cow_store *s, cow_store_stats *out)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_val k = {5, "state"}, v;
    MDB_dbi dbis[COW_STORE_NDBS];
    store_state state = {0};
    int rc;
    if ((rc = store_enter(s)) < 0 || (!store_owns_txn(s) && (rc = store_refresh_snapshot(s)) < 0))
        return rc;
    memset(out, 0, sizeof *out);
    dbis[COW_STORE_DB_META] = s->meta;
    dbis[COW_STORE_DB_ROOTS] = s->roots;
    dbis[COW_STORE_DB_SEGS] = s->segs;
    for (int i = 0; i < COW_STORE_NDBS; i++)
        if ((rc = db_stats(s, dbis[i], &out->dbs[i])) < 0)
            return rc;
    if ((rc = count_free_pages(s, &out->free_pages)) < 0)
        return rc;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    if (mdb_get(s->cur, s->meta, &k, &v) == 0 && v.mv_size == sizeof state)
        memcpy(&state, v.mv_data, sizeof state);
    out->roots = out->dbs[COW_STORE_DB_ROOTS].entries;
    out->segments = state.nsegs;
    out->segment_bytes = state.seg_bytes;
    out->live_bytes = state.live_bytes;
    out->page_size = st.ms_psize;
    out->file_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    out->map_bytes = info.me_mapsize;
    out->last_txn = info.me_last_txnid;
    out->readers_used = info.me_numreaders;
    out->readers_max = info.me_maxreaders;
    out->pins = (uint64_t)s->ref.pins;
    out->format_version = COW_STORE_FORMAT;
    return COW_OK;
}
