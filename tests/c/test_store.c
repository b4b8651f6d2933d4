/* Criterion tests for csrc/core/store.c: real LMDB stores in a temporary
 * directory (mkdtemp; every file removed by the suite's teardown).
 *
 * Invariants cited (store.c): ST1 roots and segment refs name live
 * segments, and the state's byte count is their sum -- seen through stats
 * (deleting the only root returns segments and bytes to 0); ST2 a snapshot
 * stays open while values read from it are pinned (values stay valid after
 * other commits, compaction and close); ST4 one handle per file per
 * process.  Commits use COW_STORE_NOSYNC (no fsync) to keep the suite fast;
 * durability itself is LMDB's. */
#define _DEFAULT_SOURCE     /* mkdtemp */

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <lmdb.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/pack.h"
#include "cowstore/ref.h"
#include "cowstore/store.h"
#include "cowstore/twin.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"
#include "cowtest_values.h"

/* ---- a temporary directory per test ------------------------------------------ */

static char tmpdir[64];

/* Path of file `name` inside the test's directory (a static buffer per call
 * site is not needed: callers copy or use it at once). */
static const char *
tpath(const char *name)
{
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void
store_setup(void)
{
    strcpy(tmpdir, "/tmp/cowstore-ctest-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

/* Removes the directory and everything in it (one level of subdirectories:
 * COW_STORE_DIR stores), then checks for leaks. */
static void
store_teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    if (d) {
        while ((e = readdir(d)) != NULL) {
            char sub[512];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof sub, "%s/%s", tmpdir, e->d_name);
            if (unlink(sub) != 0) {
                DIR *d2 = opendir(sub);
                struct dirent *e2;
                while (d2 && (e2 = readdir(d2)) != NULL) {
                    char f[1024];
                    snprintf(f, sizeof f, "%s/%s", sub, e2->d_name);
                    unlink(f);
                }
                if (d2)
                    closedir(d2);
                rmdir(sub);
            }
        }
        closedir(d);
        rmdir(tmpdir);
    }
    tu_leak_check();
}

TestSuite(store, .init = store_setup, .fini = store_teardown);

/* Small map size for a store (grows on demand). */
#define SMALL_MAP ((size_t)1 << 20)

static cow_store *
open_ok(const char *path, unsigned flags)
{
    cow_store *s = NULL;
    int rc = cow_store_open(path, flags, 0, &s);
    cr_assert_eq(rc, COW_OK, "open %s: %s (%s)", path, cow_strerror(rc), cow_store_errmsg());
    cr_assert_not_null(s);
    return s;
}

static void
put_commit(cow_store *s, const char *name, const cow_val *v)
{
    int rc;
    cr_assert_eq(cow_store_begin(s), COW_OK, "begin: %s", cow_store_errmsg());
    cr_assert_eq(cow_store_put(s, name, strlen(name), v), COW_OK, "put: %s", cow_store_errmsg());
    rc = cow_store_commit(s);
    cr_assert_eq(rc, COW_OK, "commit: %s (%s)", cow_strerror(rc), cow_store_errmsg());
}

static void
del_commit(cow_store *s, const char *name)
{
    cr_assert_eq(cow_store_begin(s), COW_OK);
    cr_assert_eq(cow_store_del(s, name, strlen(name)), COW_FOUND);
    cr_assert_eq(cow_store_commit(s), COW_OK, "commit: %s", cow_store_errmsg());
}

/* A new reference to root `name`, which must exist. */
static cow_val
get_ok(cow_store *s, const char *name)
{
    cow_val v;
    int rc = cow_store_get(s, name, strlen(name), &v);
    cr_assert_eq(rc, COW_FOUND, "get %s: %d (%s)", name, rc, cow_store_errmsg());
    return v;
}

static cow_store_stats
stats_of(cow_store *s)
{
    cow_store_stats st;
    cr_assert_eq(cow_store_stats_get(s, &st), COW_OK, "stats: %s", cow_store_errmsg());
    return st;
}

/* ST1 once every root reaching segments is gone: none left, no bytes counted. */
static void
expect_no_segments(cow_store *s)
{
    cow_store_stats st = stats_of(s);
    cr_assert_eq(st.segments, 0, "ST1: %llu segments left", (unsigned long long)st.segments);
    cr_assert_eq(st.segment_bytes, 0, "ST1: %llu segment bytes left",
                 (unsigned long long)st.segment_bytes);
}

/* Root `name` reads back as `model` (tags, identities, order: expect_same). */
static void
expect_root(cow_store *s, const char *name, const cow_val *model)
{
    cow_val v = get_ok(s, name);
    expect_same(model, &v, 0);
    cow_val_release(&v);
}

static void
copy_file(const char *from, const char *to, off_t size)
{
    char buf[1 << 14];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    off_t done = 0;
    cr_assert(in >= 0 && out >= 0, "copy %s -> %s: %s", from, to, strerror(errno));
    while (done < size) {
        ssize_t n = read(in, buf, (size_t)(size - done) < sizeof buf ? (size_t)(size - done) : sizeof buf);
        cr_assert_gt(n, 0, "short read copying %s", from);
        cr_assert_eq(write(out, buf, (size_t)n), n);
        done += n;
    }
    close(in);
    close(out);
}

static off_t
file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_size;
}

/* ---- round trips ------------------------------------------------------------- */

/* put/commit/get round trip: a nested value comes back identical, stored
 * (lazy, pinned while held), and again after the store is closed and
 * reopened; scalar roots come back as themselves; absent names are
 * NOT_FOUND. */
Test(store, round_trip)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(200, 3), n = cow_val_int(-42), str = tu_str("short"), got;
    cow_store_stats st;
    put_commit(s, "rich", &v);
    put_commit(s, "n", &n);
    put_commit(s, "str", &str);
    got = get_ok(s, "rich");
    cr_assert(cow_val_stored(&got), "a container root reads back from pages");
    cr_assert_eq(cow_word_slot(got.u.w), cow_store_slot(s));
    cr_assert_neq(cow_store_word_id(&got), 0);
    st = stats_of(s);
    cr_assert_eq(st.pins, 1, "R3: the value read pins the store");
    cr_assert_eq(st.roots, 3);
    cr_assert_gt(st.segments, 0);
    cr_assert_geq(st.segment_bytes, st.segments * (st.page_size / 2));
    cr_assert_eq(st.format_version, 6);
    expect_same(&v, &got, 0);
    cow_val_release(&got);
    cr_assert_eq(stats_of(s).pins, 0);
    expect_root(s, "n", &n);
    expect_root(s, "str", &str);
    cr_assert_eq(cow_store_get(s, "absent", 6, &got), COW_NOT_FOUND);
    cr_assert_eq(cow_store_get(s, "ric", 3, &got), COW_NOT_FOUND);
    cow_store_close(s);
    s = open_ok(tpath("db"), 0);
    expect_root(s, "rich", &v);
    expect_root(s, "n", &n);
    cow_store_close(s);
    cow_val_release(&v);
    cow_val_release(&str);
}

/* The same through COW_STORE_DIR (LMDB's data.mdb inside a directory). */
Test(store, directory_store)
{
    cow_val v = mk_rich(30, 2);
    cow_store *s;
    cr_assert_eq(mkdir(tpath("dir"), 0755), 0);
    s = open_ok(tpath("dir"), COW_STORE_DIR | COW_STORE_NOSYNC);
    put_commit(s, "x", &v);
    expect_root(s, "x", &v);
    cr_assert_gt(file_size(tpath("dir/data.mdb")), 0);
    cow_store_close(s);
    cow_val_release(&v);
}

/* Inside a transaction reads see its pending puts and deletes; names list
 * them; abort forgets them all. */
Test(store, transaction_reads_and_abort)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val a = mk_rich(10, 1), b = tu_str("a value long enough to be a blob"), got;
    put_commit(s, "a", &a);
    cr_assert_eq(cow_store_in_txn(s), 0);
    cr_assert_eq(cow_store_begin(s), COW_OK);
    cr_assert_eq(cow_store_in_txn(s), 1);
    cr_assert_eq(cow_store_begin(s), COW_EINVAL, "nested begin");
    cr_assert_eq(cow_store_compact(s), COW_EINVAL, "compact inside a transaction");
    cr_assert_eq(cow_store_put(s, "b", 1, &b), COW_OK);
    cr_assert_eq(cow_store_del(s, "a", 1), COW_FOUND);
    cr_assert_eq(cow_store_del(s, "a", 1), COW_NOT_FOUND, "deleted in this transaction");
    cr_assert_eq(cow_store_del(s, "zz", 2), COW_NOT_FOUND);
    cr_assert_eq(cow_store_get(s, "a", 1, &got), COW_NOT_FOUND);
    got = get_ok(s, "b");
    expect_same(&b, &got, 0);
    cow_val_release(&got);
    cow_store_abort(s);
    cr_assert_eq(cow_store_in_txn(s), 0);
    cr_assert_eq(cow_store_get(s, "b", 1, &got), COW_NOT_FOUND, "abort keeps nothing");
    expect_root(s, "a", &a);
    cr_assert_eq(stats_of(s).roots, 1);
    /* outside a transaction */
    cr_assert_eq(cow_store_put(s, "b", 1, &b), COW_EINVAL);
    cr_assert_eq(cow_store_del(s, "a", 1), COW_EINVAL);
    cr_assert_eq(cow_store_commit(s), COW_EINVAL);
    cow_store_close(s);
    cow_val_release(&a);
    cow_val_release(&b);
}

/* ---- names ------------------------------------------------------------------------ */

typedef struct name_list {
    char names[16][32];
    size_t n;
    size_t stop_after;      /* visit returns COW_ECONFLICT after this many (0: never) */
} name_list;

static int
collect(void *ctx, const char *name, size_t len)
{
    name_list *l = ctx;
    cr_assert_lt(l->n, 16);
    cr_assert_lt(len, 32);
    memcpy(l->names[l->n], name, len);
    l->names[l->n++][len] = 0;
    return l->stop_after && l->n == l->stop_after ? COW_ECONFLICT : COW_OK;
}

/* Names come in UTF-8 byte order, without deleted ones, with pending new
 * ones inside a transaction; a visitor's error stops the listing and is
 * returned; empty names are refused. */
Test(store, names)
{
    const char *in[] = {"b", "a", "ab", "\xc3\xa9t\xc3\xa9", "Z", "a\x01"};
    const char *sorted[] = {"Z", "a", "a\x01", "ab", "b", "\xc3\xa9t\xc3\xa9"};
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val one = cow_val_int(1);
    name_list l = {0};
    cr_assert_eq(cow_store_names(s, collect, &l), COW_OK);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(cow_store_begin(s), COW_OK);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(cow_store_put(s, in[i], strlen(in[i]), &one), COW_OK);
    cr_assert_eq(cow_store_put(s, "", 0, &one), COW_EINVAL);
    cr_assert_eq(cow_store_commit(s), COW_OK);
    cr_assert_eq(cow_store_names(s, collect, &l), COW_OK);
    cr_assert_eq(l.n, 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(l.names[i], sorted[i]);
    cr_assert_eq(stats_of(s).roots, 6);
    /* pending: "a" deleted, "c" new */
    cr_assert_eq(cow_store_begin(s), COW_OK);
    cr_assert_eq(cow_store_del(s, "a", 1), COW_FOUND);
    cr_assert_eq(cow_store_put(s, "c", 1, &one), COW_OK);
    memset(&l, 0, sizeof l);
    cr_assert_eq(cow_store_names(s, collect, &l), COW_OK);
    cr_assert_eq(l.n, 6);
    for (size_t i = 0; i < l.n; i++)
        cr_assert_str_neq(l.names[i], "a", "a pending delete is listed");
    cr_assert_str_eq(l.names[5], "c", "a pending new name comes last");
    cow_store_abort(s);
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    cr_assert_eq(cow_store_names(s, collect, &l), COW_ECONFLICT);
    cr_assert_eq(l.n, 2);
    cow_store_close(s);
}

/* ---- space ---------------------------------------------------------------------------- */

/* ST1: deleting the only root frees every segment it reached (segments and
 * segment_bytes back to 0); replacing a root by a scalar does the same;
 * a root sharing nodes with a deleted one keeps them alive. */
Test(store, delete_frees_segments)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(300, 3), n = cow_val_none(), got, d, model;
    cow_store_stats st;
    put_commit(s, "only", &v);
    st = stats_of(s);
    cr_assert_gt(st.segments, 0);
    del_commit(s, "only");
    cr_assert_eq(stats_of(s).roots, 0);
    expect_no_segments(s);
    put_commit(s, "only", &v);
    put_commit(s, "only", &n);         /* replaced by a value without segments */
    st = stats_of(s);
    cr_assert_eq(st.segments, 0);
    cr_assert_eq(st.segment_bytes, 0);
    /* b derived from a shares a's nodes; deleting a keeps b whole */
    put_commit(s, "a", &v);
    got = get_ok(s, "a");
    d = own_map(&got);
    cow_val_copy(&model, &v);
    cr_assert_eq(cow_map_own(&model.u.w), COW_OK);
    {
        cow_val k1 = tu_str("new key"), k2 = tu_str("new key");
        cr_assert_eq(cow_map_set(cow_val_getmap(&d), k1, tu_hash(&k2), cow_val_int(5)), COW_OK);
        cr_assert_eq(cow_map_set(cow_val_getmap(&model), k2, tu_hash(&k2), cow_val_int(5)), COW_OK);
    }
    put_commit(s, "b", &d);
    cow_val_release(&d);
    cow_val_release(&got);
    del_commit(s, "a");
    cr_assert_gt(stats_of(s).segments, 0);
    expect_root(s, "b", &model);
    del_commit(s, "b");
    expect_no_segments(s);
    cow_store_close(s);
    cow_val_release(&model);
    cow_val_release(&v);
}

/* A value derived from a stored one with one change commits as a few new
 * segments: the store grows by O(log n), not by another copy. */
Test(store, one_change_commit_is_small)
{
    enum { N = 5000 };
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_map *m = new_map();
    cow_val v, got, d, key = mk_key(17);
    uint64_t before, grown;
    for (int64_t i = 0; i < N; i++)
        map_put(m, mk_key(i), mk_leafval(i));
    v = cow_val_map(COW_T_DICT, m);
    put_commit(s, "big", &v);
    before = stats_of(s).segment_bytes;
    got = get_ok(s, "big");
    d = own_map(&got);
    cr_assert_eq(cow_map_set(cow_val_getmap(&d), key, tu_hash(&key), cow_val_int(0)), COW_OK);
    put_commit(s, "big2", &d);
    grown = stats_of(s).segment_bytes - before;
    cr_assert_lt(grown * 20, before, "one change grew the store by %llu of %llu bytes",
                 (unsigned long long)grown, (unsigned long long)before);
    expect_root(s, "big2", &d);
    expect_root(s, "big", &v);
    cow_val_release(&d);
    cow_val_release(&got);
    cow_store_close(s);
    cow_val_release(&v);
}

/* Garbage bound: replacing a root 200 times by one-change versions derived
 * from the stored one (each writing a new 16 KiB blob that the next version
 * drops, while its other change keeps the segment alive) would pile up
 * 3 MiB of garbage; commit's automatic compaction keeps segment_bytes
 * within its bound of live data, and the last version reads right. */
Test(store, replacements_stay_bounded)
{
    enum { N = 4000, ROUNDS = 200, BLOB = 16 << 10 };
    /* store.c: compaction once bytes > RATIO * live + SLACK; the loosest
     * values it has used (1.5, 1 MiB), plus one commit's worth */
    const double ratio = 1.5;
    const uint64_t slack = (1u << 20) + 4 * BLOB;
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_map *m = new_map();
    cow_val v, model;
    char *blob = malloc(BLOB);
    uint64_t written = 0, peak = 0, compactions = 0, last_live;
    cr_assert_not_null(blob);
    for (int64_t i = 0; i < N; i++)
        map_put(m, cow_val_int(i), cow_val_int(i));
    v = cow_val_map(COW_T_DICT, m);
    put_commit(s, "r", &v);
    cow_val_copy(&model, &v);
    last_live = stats_of(s).live_bytes;
    for (int r = 0; r < ROUNDS; r++) {
        cow_val got = get_ok(s, "r"), d = own_map(&got);
        cow_val k0 = cow_val_int(0), kj = cow_val_int((int64_t)(r * 37 % N));
        cow_store_stats st;
        memset(blob, 'a' + r % 26, BLOB);
        cr_assert_eq(cow_map_set(cow_val_getmap(&d), k0, tu_hash(&k0), tu_bytes(blob, BLOB)), COW_OK);
        cr_assert_eq(cow_map_set(cow_val_getmap(&d), kj, tu_hash(&kj), cow_val_int(-r)), COW_OK);
        k0 = cow_val_int(0);
        kj = cow_val_int((int64_t)(r * 37 % N));
        cr_assert_eq(cow_map_own(&model.u.w), COW_OK);
        cr_assert_eq(cow_map_set(cow_val_getmap(&model), k0, tu_hash(&k0), tu_bytes(blob, BLOB)), COW_OK);
        cr_assert_eq(cow_map_set(cow_val_getmap(&model), kj, tu_hash(&kj), cow_val_int(-r)), COW_OK);
        put_commit(s, "r", &d);
        cow_val_release(&d);
        cow_val_release(&got);
        written += BLOB;
        st = stats_of(s);
        if (st.segment_bytes > peak)
            peak = st.segment_bytes;
        compactions += st.live_bytes != last_live;
        last_live = st.live_bytes;
        cr_assert_leq((double)st.segment_bytes, ratio * (double)st.live_bytes + (double)slack,
                      "round %d: %llu segment bytes for %llu live", r,
                      (unsigned long long)st.segment_bytes, (unsigned long long)st.live_bytes);
    }
    cr_assert_geq(compactions, 1, "no compaction in %d rounds", ROUNDS);
    cr_assert_lt(peak, written, "peak %llu of %llu written", (unsigned long long)peak,
                 (unsigned long long)written);
    expect_root(s, "r", &model);
    cow_store_close(s);
    free(blob);
    cow_val_release(&model);
    cow_val_release(&v);
}

/* compact rewrites every root into fresh segments: the data reads the same,
 * shared subtrees stay shared (no growth), live_bytes becomes the segment
 * total, and garbage is gone. */
Test(store, compact_keeps_data)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val a = mk_rich(300, 3), b = mk_rich(50, 2), got, d;
    cow_store_stats before, after;
    put_commit(s, "a", &a);
    put_commit(s, "b", &b);
    got = get_ok(s, "a");
    d = own_map(&got);
    {
        cow_val k = cow_val_int(123456);
        cr_assert_eq(cow_map_set(cow_val_getmap(&d), k, tu_hash(&k), cow_val_int(1)), COW_OK);
    }
    put_commit(s, "a2", &d);            /* shares most of a */
    put_commit(s, "b", &a);             /* b's old segments become garbage */
    before = stats_of(s);
    cr_assert_eq(cow_store_compact(s), COW_OK, "compact: %s", cow_store_errmsg());
    after = stats_of(s);
    cr_assert_eq(after.roots, 3);
    expect_root(s, "a", &a);
    expect_root(s, "a2", &d);
    expect_root(s, "b", &a);
    /* got and d held a's old segments through that compaction (SG: pins are
     * marked); let go of, the next compaction keeps only what roots reach */
    cow_val_release(&d);
    cow_val_release(&got);
    cr_assert_eq(cow_store_compact(s), COW_OK);
    after = stats_of(s);
    cr_assert_leq(after.segment_bytes, before.segment_bytes);
    cr_assert_eq(after.live_bytes, after.segment_bytes, "compaction resets live_bytes");
    /* compacting a compacted store changes nothing in size */
    cr_assert_eq(cow_store_compact(s), COW_OK);
    cr_assert_eq(stats_of(s).segment_bytes, after.segment_bytes);
    cow_store_close(s);
    cow_val_release(&a);
    cow_val_release(&b);
}

/* A value read from one store commits into another as a copy, readable
 * after the first store is closed. */
Test(store, copy_between_stores)
{
    cow_store *a = open_ok(tpath("a"), COW_STORE_NOSYNC), *b = open_ok(tpath("b"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(100, 3), got;
    cr_assert_neq(cow_store_slot(a), cow_store_slot(b));
    put_commit(a, "x", &v);
    got = get_ok(a, "x");
    put_commit(b, "y", &got);
    cow_val_release(&got);
    cow_store_close(a);
    expect_root(b, "y", &v);
    cow_store_close(b);
    cow_val_release(&v);
}

/* ---- snapshots and closing ------------------------------------------------------------- */

/* ST2: a value read before a commit replaced its root (and deleted it, and
 * compacted) still reads as it was; new reads see the new root. */
Test(store, snapshot_isolation)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v1 = mk_rich(200, 3), v2 = mk_rich(20, 2), old;
    put_commit(s, "r", &v1);
    old = get_ok(s, "r");
    put_commit(s, "r", &v2);
    expect_same(&v1, &old, 0);
    expect_root(s, "r", &v2);
    del_commit(s, "r");
    cr_assert_eq(cow_store_compact(s), COW_OK);
    for (int i = 0; i < 5; i++)          /* more commits over the freed pages */
        put_commit(s, "other", &v1);
    cow_ref_env_forget(cow_ref_env_at(cow_store_slot(s)));   /* no cached spans */
    expect_same(&v1, &old, 0);
    cr_assert_eq(stats_of(s).pins, 1);
    cow_val_release(&old);
    cr_assert_eq(stats_of(s).pins, 0);
    cow_store_close(s);
    cow_val_release(&v1);
    cow_val_release(&v2);
}

/* A value read before the map had to grow (commit past a small map size)
 * stays valid after the mapping moved. */
Test(store, values_survive_map_growth)
{
    cow_store *s = NULL;
    cow_val small = mk_rich(50, 2), old, big;
    cow_vec *vec = new_vec();
    char raw[4096];
    cr_assert_eq(cow_store_open(tpath("db"), COW_STORE_NOSYNC, SMALL_MAP, &s), COW_OK);
    put_commit(s, "small", &small);
    old = get_ok(s, "small");
    memset(raw, 'q', sizeof raw);
    for (int i = 0; i < 1024; i++)       /* 4 MiB: four times the map */
        cr_assert_eq(cow_vb_push(&vec->b, tu_bytes(raw, sizeof raw)), COW_OK);
    big = cow_val_vec(COW_T_LIST, vec);
    put_commit(s, "big", &big);
    cr_assert_gt(stats_of(s).map_bytes, SMALL_MAP);
    expect_same(&small, &old, 0);
    expect_root(s, "big", &big);
    cow_val_release(&old);
    cow_store_close(s);
    cow_val_release(&big);
    cow_val_release(&small);
}

/* Closing while a value read from the store is alive defers the close: the
 * value stays readable, the handle refuses work (COW_ECLOSED), and the
 * environment really closes (its env slot freed) when the value goes. */
Test(store, deferred_close_while_pinned)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(100, 3), got, tmp;
    unsigned slot;
    put_commit(s, "r", &v);
    got = get_ok(s, "r");
    slot = cow_store_slot(s);
    cow_store_close(s);
    cr_assert_not_null(cow_ref_env_at(slot), "closed while a value was pinned");
    expect_same(&v, &got, 0);
    cr_assert_eq(cow_store_get(s, "r", 1, &tmp), COW_ECLOSED);
    cr_assert_eq(cow_store_begin(s), COW_ECLOSED);
    cow_val_release(&got);
    cr_assert_null(cow_ref_env_at(slot), "the last release must finish the close");
    /* the file opens again as a fresh handle */
    s = open_ok(tpath("db"), 0);
    expect_root(s, "r", &v);
    cow_store_close(s);
    cow_val_release(&v);
}

/* ST4: opening a file already open in this process returns the same handle
 * with one more opener; the first close leaves it working, the second
 * closes it. */
Test(store, same_file_same_handle)
{
    cow_store *a = open_ok(tpath("db"), COW_STORE_NOSYNC), *b;
    cow_val v = mk_rich(20, 1);
    unsigned slot = cow_store_slot(a);
    b = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cr_assert_eq(a, b, "ST4: a second environment on one file");
    /* the same file through another spelling of its path */
    {
        char other[160];
        snprintf(other, sizeof other, "%s/./db", tmpdir);
        cow_store *c = open_ok(other, 0);
        cr_assert_eq(c, a);
        cow_store_close(c);
    }
    put_commit(a, "x", &v);
    cow_store_close(a);
    expect_root(b, "x", &v);
    cr_assert_not_null(cow_ref_env_at(slot));
    cow_store_close(b);
    cr_assert_null(cow_ref_env_at(slot), "two opens, two closes: closed");
    cow_val_release(&v);
}

/* ---- readonly ------------------------------------------------------------------------- */

/* A readonly store reads but refuses transactions (COW_EREADONLY); opening
 * it for writing while it is open readonly here is refused too; a missing
 * file is not created. */
Test(store, readonly)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC), *ro, *rw = NULL;
    cow_val v = mk_rich(40, 2);
    put_commit(s, "x", &v);
    cow_store_close(s);
    ro = open_ok(tpath("db"), COW_STORE_READONLY);
    expect_root(ro, "x", &v);
    cr_assert_eq(cow_store_begin(ro), COW_EREADONLY);
    cr_assert_eq(cow_store_compact(ro), COW_EREADONLY);
    cr_assert_eq(cow_store_in_txn(ro), 0);
    cr_assert_eq(cow_store_open(tpath("db"), 0, 0, &rw), COW_EREADONLY);
    cr_assert_null(rw);
    cow_store_close(ro);
    cr_assert_lt(cow_store_open(tpath("missing"), COW_STORE_READONLY, 0, &rw), 0);
    cr_assert_null(rw);
    cr_assert_eq(access(tpath("missing"), F_OK), -1, "readonly open created a file");
    cow_val_release(&v);
}

/* ---- bad files -------------------------------------------------------------------------- */

/* A copy of a store file cut short (one page, half the file, just past the
 * two meta pages) fails to open with COW_ECORRUPT -- never a SIGBUS on the
 * first read past its end -- readonly or not. */
Test(store, truncated_copy_fails_cleanly)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC), *t = NULL;
    cow_val v = mk_rich(400, 3);
    cow_store_stats st;
    off_t size;
    put_commit(s, "x", &v);
    st = stats_of(s);
    cow_store_close(s);
    size = file_size(tpath("db"));
    cr_assert_geq((uint64_t)size, st.file_bytes);
    cr_assert_gt(st.file_bytes, 8 * st.page_size, "the file must be big enough to cut");
    {
        off_t cuts[] = {(off_t)st.file_bytes - (off_t)st.page_size, (off_t)st.file_bytes / 2,
                        3 * (off_t)st.page_size};
        for (size_t i = 0; i < 3; i++)
            for (unsigned ro = 0; ro < 2; ro++) {
                int rc;
                unlink(tpath("cut"));
                unlink(tpath("cut-lock"));
                copy_file(tpath("db"), tpath("cut"), cuts[i]);
                rc = cow_store_open(tpath("cut"), ro ? COW_STORE_READONLY : 0, 0, &t);
                cr_assert_eq(rc, COW_ECORRUPT, "cut at %lld (readonly %u): %d (%s)",
                             (long long)cuts[i], ro, rc, cow_store_errmsg());
                cr_assert_null(t);
                cr_assert_gt(strlen(cow_store_errmsg()), 0);
            }
    }
    /* the intact copy opens */
    copy_file(tpath("db"), tpath("whole"), size);
    s = open_ok(tpath("whole"), COW_STORE_READONLY);
    expect_root(s, "x", &v);
    cow_store_close(s);
    cow_val_release(&v);
}

/* Files that are not cowstore stores fail to open with an error and no
 * handle: text, a run of zeros past LMDB's meta pages, and a real LMDB
 * environment without cowstore's databases or with a wrong format record. */
Test(store, foreign_files_fail_cleanly)
{
    cow_store *s = NULL;
    FILE *f = fopen(tpath("text"), "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 2000; i++)
        fputs("this is not an LMDB file at all\n", f);
    fclose(f);
    cr_assert_lt(cow_store_open(tpath("text"), 0, 0, &s), 0);
    cr_assert_null(s);
    cr_assert_lt(cow_store_open(tpath("text"), COW_STORE_READONLY, 0, &s), 0);
    cr_assert_null(s);
    {
        static const char zeros[1 << 16];
        f = fopen(tpath("zeros"), "w");
        cr_assert_not_null(f);
        fwrite(zeros, 1, sizeof zeros, f);
        fclose(f);
        cr_assert_lt(cow_store_open(tpath("zeros"), COW_STORE_READONLY, 0, &s), 0);
        cr_assert_null(s);
    }
    /* plain LMDB files: one with another database, one whose "meta" holds
     * a format record of the wrong magic */
    for (int kind = 0; kind < 2; kind++) {
        const char *p = tpath(kind ? "badfmt" : "plain");
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {3, "key"}, val = {5, "value"};
        uint32_t rec[6] = {1, 2, 1, 0x01020304, 16, 8};
        cr_assert_eq(mdb_env_create(&env), 0);
        mdb_env_set_maxdbs(env, 4);
        cr_assert_eq(mdb_env_open(env, p, MDB_NOSUBDIR, 0644), 0);
        cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
        if (kind == 0) {
            cr_assert_eq(mdb_dbi_open(txn, "other", MDB_CREATE, &dbi), 0);
            cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
        }
        else {
            const char *dbs[] = {"meta", "roots", "segs"};
            for (int i = 0; i < 3; i++)
                cr_assert_eq(mdb_dbi_open(txn, dbs[i], MDB_CREATE | (i >= 2 ? MDB_INTEGERKEY : 0), &dbi), 0);
            cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
            k.mv_size = 6;
            k.mv_data = "format";
            val.mv_size = sizeof rec;
            val.mv_data = rec;
            cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
        }
        cr_assert_eq(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        cr_assert_eq(cow_store_open(p, COW_STORE_READONLY, 0, &s), COW_ECORRUPT,
                     "%s: %s", p, cow_store_errmsg());
        cr_assert_null(s);
        if (kind == 1) {
            cr_assert_eq(cow_store_open(p, 0, 0, &s), COW_ECORRUPT, "%s", cow_store_errmsg());
            cr_assert_null(s);
        }
    }
}

/* The format version of the store at p, read straight through LMDB (and
 * then, if set >= 0, replaced by set). */
static uint32_t
format_version(const char *p, int set)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {6, "format"}, v;
    uint32_t rec[6], was;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    cr_assert_eq(mdb_env_open(env, p, MDB_NOSUBDIR, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    memcpy(rec, v.mv_data, sizeof rec);
    was = rec[2];
    if (set >= 0) {
        rec[2] = (uint32_t)set;
        v.mv_data = rec;
        cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return was;
}

/* Files of formats 1 to 5 are refused with the message that says how to
 * convert them (their index nodes have the old layout), by a readonly open
 * too, which writes nothing; a later format is refused as unsupported. */
Test(store, format_versions)
{
    const char *p = tpath("fmt");
    cow_store *s = open_ok(p, 0);
    cow_val v = mk_rich(20, 2), got;
    put_commit(s, "x", &v);
    cow_store_close(s);
    s = open_ok(p, COW_STORE_READONLY);
    got = get_ok(s, "x");
    expect_same(&v, &got, 0);
    cow_val_release(&got);
    cow_store_close(s);
    for (int old = 5; old >= 1; old--) {
        char want[64];
        format_version(p, old);
        cr_assert_eq(cow_store_open(p, old % 2 ? COW_STORE_READONLY : 0, 0, &s), COW_ESTORE);
        cr_assert_null(s);
        snprintf(want, sizeof want, "format %d, written by cowstore 0.%d", old, old);
        cr_assert_not_null(strstr(cow_store_errmsg(), want), "%s", cow_store_errmsg());
        cr_assert_not_null(strstr(cow_store_errmsg(), "cowstore export"));
        cr_assert_eq(format_version(p, -1), (uint32_t)old, "a refused open writes nothing");
    }
    format_version(p, 7);
    cr_assert_eq(cow_store_open(p, COW_STORE_READONLY, 0, &s), COW_ECORRUPT);
    cr_assert_null(s);
    format_version(p, 6);
    s = open_ok(p, COW_STORE_READONLY);
    got = get_ok(s, "x");
    expect_same(&v, &got, 0);
    cow_val_release(&got);
    cow_store_close(s);
    cow_val_release(&v);
}

/* A packed record (pack.h) is stored as one node with page-form words for
 * its shape and long strings; read back, it unpacks to the value put and is
 * read in place, and a second commit of a record of the same shape writes
 * the shape again only because it is a new commit's heap node. */
Test(store, packed_values_round_trip)
{
    cow_store *s = open_ok(tpath("packed"), COW_STORE_NOSYNC);
    cow_map *rec = new_map(), *root = new_map();
    char digits[301];
    cow_val r, p, got, inner, g, view, long_str;
    memset(digits, '7', 300);
    digits[300] = 0;
    cr_assert_eq(cow_val_str(&long_str, digits, 300), COW_OK);
    const cow_val *slot;
    map_put(rec, tu_str("id"), cow_val_int(70000));
    map_put(rec, tu_str("text"), long_str);
    r = cow_val_map(COW_T_DICT, rec);
    cr_assert_eq(cow_pack_make(&r, &p), COW_FOUND);
    map_put(root, tu_str("rec"), p);
    {
        cow_val top = cow_val_map(COW_T_DICT, root);
        put_commit(s, "root", &top);
        got = get_ok(s, "root");
        cow_val_release(&top);
    }
    {
        cow_val k = tu_str("rec");
        cr_assert_eq(tu_map_get(cow_val_getmap(&got), &k, tu_hash(&k), &slot), COW_FOUND);
        cow_val_release(&k);
    }
    cr_assert_eq(slot->tag, COW_T_PACKED);
    cr_assert(cow_val_stored(slot));
    cow_val_copy(&inner, slot);
    cr_assert_eq(cow_pack_unpack(&inner, &g), COW_OK);
    cr_assert(cow_val_equal(&g, &r));
    cr_assert_eq(cow_pack_lookup(&inner, "text", 4, &view), COW_FOUND);
    cr_assert_eq(view.tag, COW_T_STR);
    cr_assert(cow_word_stored(view.u.w), "a long str stays in pages");
    cr_assert_eq(cow_pack_lookup(&inner, "id", 2, &view), COW_FOUND);
    cr_assert_eq(view.u.i, 70000);
    {
        cow_pack_memo memo = {0};       /* a shape in pages is not memoised */
        cr_assert_eq(cow_pack_lookup_memo(&inner, "id", 2, &memo, &view), COW_FOUND);
        cr_assert_eq(view.u.i, 70000);
        cr_assert_eq(memo.shape, 0);
    }
    cow_val_release(&g);
    cow_val_release(&inner);
    cow_val_release(&got);
    cow_val_release(&r);
    cow_store_close(s);
    cow_pack_forget_shapes();
}

/* Batched records (pack.h P6) are stored as one node: read back, the
 * members name one stored node at their offsets and each equals its
 * record; a corrupt offset in a stored value reads as corruption. */
Test(store, batched_records_round_trip)
{
    enum { N = 20 };
    cow_store *s = open_ok(tpath("batch"), COW_STORE_NOSYNC);
    cow_val recs[N], vals[N], list, got, bad, g;
    cow_vec *vec = new_vec();
    for (int64_t i = 0; i < N; i++) {
        cow_map *m = new_map();
        map_put(m, tu_str("id"), cow_val_int(i * 1000));
        map_put(m, tu_str("name"), tu_str("record %lld", (long long)i));
        recs[i] = cow_val_map(COW_T_DICT, m);
        cr_assert_eq(cow_pack_make(&recs[i], &vals[i]), COW_FOUND);
    }
    cr_assert_eq(cow_pack_batch(vals, N, 1), COW_OK);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(cow_vb_push(&vec->b, vals[i]), COW_OK);
    list = cow_val_vec(COW_T_LIST, vec);
    put_commit(s, "l", &list);
    got = get_ok(s, "l");
    for (size_t i = 0; i < N; i++) {
        const cow_val *slot = tu_vb_get(&cow_val_getvec(&got)->b, i);
        cr_assert(slot->tag == COW_T_PACKED && cow_val_stored(slot));
        cr_assert_neq(cow_pack_offset(slot), 0);
        cr_assert_eq(slot->u.w, tu_vb_get(&cow_val_getvec(&got)->b, 0)->u.w,
                     "member %zu stored apart from its batch", i);
        cr_assert(cow_val_equal(slot, &recs[i]), "member %zu reads back wrong", i);
    }
    cow_val_copy(&bad, tu_vb_get(&cow_val_getvec(&got)->b, 3));
    cow_pack_set_offset(&bad, 4000);
    cr_assert_eq(cow_pack_unpack(&bad, &g), COW_ECORRUPT);
    cow_val_release(&bad);
    cow_val_release(&got);
    cow_val_release(&list);
    for (size_t i = 0; i < N; i++)
        cow_val_release(&recs[i]);
    cow_store_close(s);
    cow_pack_forget_shapes();
}

/* ---- snapshots kept for pinned values ----------------------------------------------------- */

/* ST2: holding a value across many commits keeps at most the snapshots it
 * needs -- none beyond cur when its segments survive, one when a commit
 * deleted them -- so reader slots (4096) and LMDB's free pages are not
 * exhausted by a long-lived value. */
Test(store, pinned_value_keeps_few_snapshots)
{
    enum { COMMITS = 150 };
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val keep = mk_rich(50, 2), held, held_gone;
    cow_store_stats st;
    put_commit(s, "keep", &keep);
    put_commit(s, "gone", &keep);
    held = get_ok(s, "keep");
    held_gone = get_ok(s, "gone");
    del_commit(s, "gone");               /* held_gone's segments are deleted now */
    for (int i = 0; i < COMMITS; i++) {
        cow_val n = cow_val_int(i);
        put_commit(s, "counter", &n);
    }
    st = stats_of(s);
    /* readers_used is LMDB's high-water mark of reader slots: it would
     * reach COMMITS if every snapshot were kept */
    cr_assert_leq(st.readers_used, 3, "%llu reader slots held after %d commits",
                  (unsigned long long)st.readers_used, COMMITS);
    expect_same(&keep, &held, 0);
    expect_same(&keep, &held_gone, 0);
    cow_val_release(&held_gone);
    cow_val_release(&held);
    cr_assert_eq(stats_of(s).pins, 0);
    cow_store_close(s);
    cow_val_release(&keep);
}

/* ---- fork (ST3) ------------------------------------------------------------------------------ */

/* After fork the child reopens the store on first use (never touching the
 * parent's LMDB handles), still reads the values read before the fork, and
 * commits; the parent sees the child's commit and keeps working. */
Test(store, fork_child_reopens)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(60, 2), held, n = cow_val_int(99);
    pid_t pid;
    int status = -1;
    put_commit(s, "x", &v);
    held = get_ok(s, "x");
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* the child: no Criterion asserts (they would report from here) */
        cow_val got;
        int ok = cow_val_equal(&held, &v) && tu_read_error() == COW_OK
                 && cow_store_get(s, "x", 1, &got) == COW_FOUND && cow_val_equal(&got, &v)
                 && cow_store_begin(s) == COW_OK && cow_store_put(s, "child", 5, &n) == COW_OK
                 && cow_store_commit(s) == COW_OK;
        _exit(ok ? 0 : 1);          /* skips LeakSanitizer: the parent's handles stay */
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d)", status);
    expect_root(s, "child", &n);
    expect_same(&v, &held, 0);
    put_commit(s, "parent", &n);
    cow_val_release(&held);
    cow_store_close(s);
    cow_val_release(&v);
}

/* ---- hostile records ----------------------------------------------------------------------- */

/* Opens the store file with LMDB directly (the cowstore handle must be
 * closed: one environment per file per process) and runs edit on it. */
static void
raw_edit(const char *path, void (*edit)(MDB_txn *txn, MDB_dbi roots, MDB_dbi segs, void *ctx),
         void *ctx)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi roots, segs;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    cr_assert_eq(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "roots", 0, &roots), 0);
    cr_assert_eq(mdb_dbi_open(txn, "segs", MDB_INTEGERKEY, &segs), 0);
    edit(txn, roots, segs, ctx);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void
raw_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
}

/* Segment id for hostile roots: far above what the store handed out. */
#define HOSTILE_SEG 90000u

typedef struct hostile_ctx {
    uint32_t x_seg;         /* segment of root "x" */
    int tiny_aligned;       /* LMDB happened to place the tiny segment 8-aligned */
} hostile_ctx;

static void
plant_hostile(MDB_txn *txn, MDB_dbi roots, MDB_dbi segs, void *ctx)
{
    hostile_ctx *h = ctx;
    cow_val r;
    MDB_val k = {sizeof h->x_seg, &h->x_seg}, cur;
    uint64_t small[3] = {0};
    char *junk;
    memset(&r, 0, sizeof r);
    r.tag = 200;
    raw_put(txn, roots, "bad_tag", 7, &r, sizeof r);
    r.tag = COW_T_DICT;
    r.u.w = 0x1000;                                  /* a heap pointer in a file */
    raw_put(txn, roots, "heap_word", 9, &r, sizeof r);
    r.u.w = cow_word_make(77777, 0, 0);              /* no such segment */
    raw_put(txn, roots, "no_seg", 6, &r, sizeof r);
    r.u.w = cow_word_make(h->x_seg, 0, 5);           /* slot bits in a file */
    raw_put(txn, roots, "slot_word", 9, &r, sizeof r);
    raw_put(txn, roots, "short", 5, &r, 5);
    /* a tiny segment holding a well-formed empty blob: LMDB keeps it in a
     * leaf page, only 2-byte aligned */
    small[0] = COW_REFCNT_STORED;
    raw_put(txn, segs, &(uint32_t){HOSTILE_SEG}, sizeof(uint32_t), small, sizeof small);
    {
        uint32_t id = HOSTILE_SEG;
        MDB_val tk = {sizeof id, &id};
        cr_assert_eq(mdb_get(txn, segs, &tk, &cur), 0);
        h->tiny_aligned = (uintptr_t)cur.mv_data % COW_REF_UNIT == 0;
    }
    r.tag = COW_T_STR;
    r.u.w = cow_word_make(HOSTILE_SEG, 0, 0);
    raw_put(txn, roots, "tiny_seg", 8, &r, sizeof r);
    /* x's segment overwritten with junk of the same length */
    cr_assert_eq(mdb_get(txn, segs, &k, &cur), 0);
    junk = malloc(cur.mv_size);
    cr_assert_not_null(junk);
    for (size_t i = 0; i < cur.mv_size; i++)
        junk[i] = (char)(i * 131 + 7);
    raw_put(txn, segs, &h->x_seg, sizeof h->x_seg, junk, cur.mv_size);
    free(junk);
}

/* Roots and segments planted in the file with LMDB directly -- a bad tag,
 * a heap pointer, slot bits, a missing segment, a short record, a segment
 * LMDB keeps unaligned in a leaf page, a segment of junk -- read as
 * COW_ECORRUPT or as poison with COW_ECORRUPT recorded, never a crash; a
 * commit that would have to decref a missing segment fails and leaves the
 * store as it was. */
Test(store, hostile_records_fail_cleanly)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(100, 3), got, one = cow_val_int(1);
    hostile_ctx h;
    const char *corrupt_roots[] = {"bad_tag", "heap_word", "slot_word", "short"};
    const char *poison_roots[] = {"no_seg", "x", "tiny_seg"};
    put_commit(s, "x", &v);
    got = get_ok(s, "x");
    h.x_seg = (uint32_t)(cow_store_word_id(&got) >> COW_REF_SEG_SHIFT);
    cow_val_release(&got);
    cow_store_close(s);
    raw_edit(tpath("db"), plant_hostile, &h);
    s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(cow_store_get(s, corrupt_roots[i], strlen(corrupt_roots[i]), &got), COW_ECORRUPT,
                     "root %s", corrupt_roots[i]);
    for (size_t i = 0; i < (h.tiny_aligned ? 2 : 3); i++) {   /* aligned: a fine blob */
        const char *p;
        size_t n;
        got = get_ok(s, poison_roots[i]);
        if (cow_tag_is_map(got.tag))
            cr_assert_eq(cow_map_len(cow_val_getmap(&got)), 0, "root %s", poison_roots[i]);
        else
            cow_val_span(&got, &p, &n);
        cr_assert_eq(tu_read_error(), COW_ECORRUPT, "root %s read without an error",
                     poison_roots[i]);
        cow_val_release(&got);
    }
    /* replacing a root that names a missing segment cannot decref it */
    cr_assert_eq(cow_store_begin(s), COW_OK);
    cr_assert_eq(cow_store_put(s, "no_seg", 6, &one), COW_OK);
    cr_assert_eq(cow_store_commit(s), COW_ECORRUPT, "%s", cow_store_errmsg());
    got = get_ok(s, "no_seg");
    cr_assert_eq(got.tag, COW_T_DICT, "a failed commit changed the store");
    cow_val_release(&got);
    cow_store_close(s);
    cow_val_release(&v);
}

/* ---- stored twins (twin.h) ------------------------------------------------------------------ */

/* A big map with a copy taken before it is committed: */
static cow_val
big_map(int n)
{
    cow_map *m = new_map();
    for (int64_t i = 0; i < n; i++)
        map_put(m, mk_key(i), mk_leafval(i));
    return cow_val_map(COW_T_DICT, m);
}

static cow_val
copy_of(const cow_val *v)
{
    cow_map *c = cow_map_clone(cow_val_getmap(v));
    cr_assert_not_null(c);
    return cow_val_map(v->tag, c);
}

/* Sets key 17 of a map held exclusively (a copy's fresh header). */
static void
change_one_key(cow_val *v)
{
    cow_val key = mk_key(17);
    cr_assert_eq(cow_map_set(cow_val_getmap(v), key, tu_hash(&key), cow_val_int(-1)), COW_OK);
}

static int
count_block(void *ctx, size_t index)
{
    (*(size_t *)ctx)++;
    return COW_OK;
}

/* Entry-log blocks cow_vb_diff_blocks finds differing between two maps. */
static size_t
diff_block_count(const cow_val *a, const cow_val *b)
{
    size_t n = 0;
    cr_assert_eq(cow_vb_diff_blocks(&cow_val_getmap(a)->log, &cow_val_getmap(b)->log,
                                    count_block, &n), COW_OK);
    return n;
}

/* Copies keep sharing: a copy taken *before* the original was committed
 * commits only its change, like one derived from the stored root -- the
 * nodes it still shares are written as their twins' words, and a diff
 * against the stored version sees only the changed block (a node is the
 * same as its twin).  T1: a twinned node reads as shared (owning it copies
 * it).  T2: once the heap values are gone, no twin is left. */
Test(store, copy_before_commit_keeps_sharing)
{
    enum { N = 5000 };
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = big_map(N), c = copy_of(&v), owned, stored;
    uint64_t before, grown;
    put_commit(s, "big", &v);
    cr_assert_gt(cow_twin_count(), 0, "the commit recorded no twins");
    cr_assert(cow_val_getmap(&v)->refcnt & COW_REFCNT_TWIN, "T1: the header has no twin bit");
    owned = v;
    cow_val_retain(&owned);
    cr_assert_eq(cow_map_own(&owned.u.w), COW_OK);
    cr_assert_neq(cow_val_getmap(&owned), cow_val_getmap(&v), "T1: a twinned header was owned in place");
    cow_val_release(&owned);
    before = stats_of(s).segment_bytes;
    change_one_key(&c);
    put_commit(s, "copy", &c);
    grown = stats_of(s).segment_bytes - before;
    cr_assert_lt(grown * 20, before, "the copy rewrote %llu of %llu bytes",
                 (unsigned long long)grown, (unsigned long long)before);
    expect_root(s, "copy", &c);
    expect_root(s, "big", &v);
    stored = get_ok(s, "big");
    cr_assert_eq(diff_block_count(&v, &stored), 0, "a node and its twin differ to diff");
    cr_assert_eq(diff_block_count(&c, &stored), 1, "diff visits more than the changed block");
    cow_val_release(&stored);
    cow_val_release(&c);
    cow_val_release(&v);
    cr_assert_eq(cow_twin_count(), 0, "T2: twins outlived their nodes");
    cow_store_close(s);
}

/* T3: a twin whose segment was swept (its root deleted, nothing pinning
 * it) is not trusted: the copy's commit writes those nodes again, and the
 * copy reads back whole after a reopen. */
Test(store, twin_of_swept_segment_is_rewritten)
{
    enum { N = 2000 };
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = big_map(N), c = copy_of(&v);
    put_commit(s, "big", &v);
    del_commit(s, "big");
    expect_no_segments(s);
    change_one_key(&c);
    put_commit(s, "copy", &c);
    cow_store_close(s);
    s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    expect_root(s, "copy", &c);
    del_commit(s, "copy");
    expect_no_segments(s);
    cow_store_close(s);
    cow_val_release(&c);
    cow_val_release(&v);
}

/* T3: compaction and close forget the store's twins and clear their nodes'
 * bits (owned in place again); a later commit -- to the same store or to
 * another that reuses the env slot -- writes the value whole and right. */
Test(store, twins_are_forgotten_at_compaction_and_close)
{
    cow_store *s = open_ok(tpath("a"), COW_STORE_NOSYNC), *t;
    cow_val v = big_map(500);
    put_commit(s, "v", &v);
    cr_assert_gt(cow_twin_count(), 0);
    cr_assert_eq(cow_store_compact(s), COW_OK, "compact: %s", cow_store_errmsg());
    cr_assert_eq(cow_twin_count(), 0, "compaction kept twins of moved segments");
    cr_assert_eq(cow_val_getmap(&v)->refcnt, 1, "the twin bit outlived its twin");
    put_commit(s, "w", &v);
    expect_root(s, "w", &v);
    cow_store_close(s);
    cr_assert_eq(cow_twin_count(), 0, "closing kept twins of the store");
    t = open_ok(tpath("b"), COW_STORE_NOSYNC);
    put_commit(t, "v", &v);
    expect_root(t, "v", &v);
    cow_store_close(t);
    cow_val_release(&v);
}

/* ---- values whose segments were freed -------------------------------------------------------- */

/* A value read before its root was deleted can be committed again, as is
 * or changed: holding it kept its segments (sweeps mark pins), so they are
 * referenced again, and the store stays consistent -- deleting everything
 * frees everything.  (Segments another process swept are copied instead:
 * test_segment's writer tests and the multi-process pytest cover that.) */
Test(store, recommit_value_of_freed_segments)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val v = mk_rich(150, 3), old, d, model, k1 = tu_str("added after the delete");
    cow_val k2;
    put_commit(s, "a", &v);
    old = get_ok(s, "a");
    del_commit(s, "a");
    cr_assert_gt(stats_of(s).segments, 0, "a value held keeps its segments");
    put_commit(s, "same", &old);            /* unchanged: its segments are named again */
    d = own_map(&old);
    cow_val_copy(&k2, &k1);
    cr_assert_eq(cow_map_set(cow_val_getmap(&d), k1, tu_hash(&k2), cow_val_int(3)), COW_OK);
    cow_val_copy(&model, &v);
    cr_assert_eq(cow_map_own(&model.u.w), COW_OK);
    cr_assert_eq(cow_map_set(cow_val_getmap(&model), k2, tu_hash(&k2), cow_val_int(3)), COW_OK);
    put_commit(s, "changed", &d);
    cr_assert_eq(cow_store_compact(s), COW_OK, "compact: %s", cow_store_errmsg());
    expect_root(s, "same", &v);
    expect_root(s, "changed", &model);
    cow_val_release(&d);
    cow_val_release(&old);
    del_commit(s, "same");
    del_commit(s, "changed");
    expect_no_segments(s);
    cow_store_close(s);
    cow_val_release(&model);
    cow_val_release(&v);
}

/* Root names: 1 to the LMDB key limit (511 bytes); longer or empty names
 * are refused on put and absent on get; one transaction's last put or
 * delete of a name wins. */
Test(store, name_limits_and_last_write_wins)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    char name[600];
    cow_val a = cow_val_int(1), b = tu_str("second value, long enough for a blob"), got;
    memset(name, 'n', sizeof name);
    cr_assert_eq(cow_store_begin(s), COW_OK);
    cr_assert_eq(cow_store_put(s, name, 511, &a), COW_OK);
    cr_assert_eq(cow_store_put(s, name, 512, &a), COW_EINVAL);
    cr_assert_eq(cow_store_put(s, name, 0, &a), COW_EINVAL);
    cr_assert_eq(cow_store_put(s, "k", 1, &a), COW_OK);
    cr_assert_eq(cow_store_put(s, "k", 1, &b), COW_OK);
    cr_assert_eq(cow_store_put(s, "gone", 4, &a), COW_OK);
    cr_assert_eq(cow_store_del(s, "gone", 4), COW_FOUND);
    cr_assert_eq(cow_store_commit(s), COW_OK);
    cr_assert_eq(cow_store_get(s, name, 512, &got), COW_NOT_FOUND);
    cr_assert_eq(cow_store_get(s, name, 0, &got), COW_NOT_FOUND);
    got = get_ok(s, "k");
    expect_same(&b, &got, 0);
    cow_val_release(&got);
    cr_assert_eq(cow_store_get(s, "gone", 4, &got), COW_NOT_FOUND);
    cr_assert_eq(cow_store_get(s, name, 511, &got), COW_FOUND);
    cr_assert_eq(stats_of(s).roots, 2);
    cow_store_close(s);
    cow_val_release(&b);
}

/* Bulk mode (an import appending in batches): every commit's new segments
 * count as live, so live_bytes stays equal to segment_bytes (ST1's sum), and
 * no sweep or compaction runs however the store grows (one transaction per
 * commit, segments only grow); after it, an ordinary commit does not
 * mistake the loaded data for garbage either (its sweep would read a page
 * of every segment).  A value read before the batches (pinned, its pages
 * unmapped by each bulk commit) still reads right. */
Test(store, bulk_appends_count_as_live_and_never_sweep_or_compact)
{
    enum { BATCHES = 40, PER_BATCH = 500 };
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_vec *vec = new_vec();
    cow_val v, first, model;
    int64_t next = 0;
    for (; next < PER_BATCH; next++)
        cr_assert_eq(cow_vb_push(&vec->b, mk_leafval(next)), COW_OK);
    v = cow_val_vec(COW_T_LIST, vec);
    put_commit(s, "rows", &v);
    cow_val_copy(&model, &v);
    first = get_ok(s, "rows");
    cow_store_set_bulk(s, 1);
    for (int b = 1; b < BATCHES; b++) {
        cow_val got = get_ok(s, "rows");
        cow_store_stats st, last = stats_of(s);
        cr_assert_eq(cow_vec_own(&got.u.w), COW_OK);
        cr_assert_eq(cow_vec_own(&model.u.w), COW_OK);
        for (int i = 0; i < PER_BATCH; i++, next++) {
            cr_assert_eq(cow_vb_push(&((cow_vec *)got.u.w)->b, mk_leafval(next)), COW_OK);
            cr_assert_eq(cow_vb_push(&((cow_vec *)model.u.w)->b, mk_leafval(next)), COW_OK);
        }
        put_commit(s, "rows", &got);
        cow_val_release(&got);
        st = stats_of(s);
        cr_assert_eq(st.last_txn, last.last_txn + 1, "batch %d compacted", b);
        cr_assert_gt(st.segment_bytes, last.segment_bytes, "batch %d swept", b);
        cr_assert_eq(st.live_bytes, st.segment_bytes, "batch %d: %llu live of %llu", b,
                     (unsigned long long)st.live_bytes, (unsigned long long)st.segment_bytes);
    }
    expect_root(s, "rows", &model);
    expect_same(&v, &first, 0);                 /* read before the unmapping commits */
    cow_store_set_bulk(s, 0);
    {
        cow_store_stats before = stats_of(s), after;
        cow_val one = cow_val_int(1);
        put_commit(s, "small", &one);
        after = stats_of(s);
        cr_assert_eq(after.last_txn, before.last_txn + 1, "an ordinary commit compacted");
        cr_assert_geq(after.live_bytes, before.live_bytes, "an ordinary commit swept");
    }
    cow_val_release(&first);
    cow_store_close(s);
    cow_val_release(&model);
    cow_val_release(&v);
}

/* A list of n values in many segments. */
static cow_val
mk_long_list(int64_t from, int64_t n)
{
    cow_vec *vec = new_vec();
    for (int64_t i = from; i < from + n; i++)
        cr_assert_eq(cow_vb_push(&vec->b, mk_leafval(i)), COW_OK);
    return cow_val_vec(COW_T_LIST, vec);
}

/* Deleting a root frees what only it reached, in a store past the eager
 * sweep's budget too: live bytes only grow between sweeps, so the deleted
 * root's reach is taken off them and the store looks outgrown.  A root
 * moved to another name in the same commit is not garbage: nothing is
 * taken off, nothing swept. */
Test(store, deleting_a_root_frees_it_past_the_eager_sweep)
{
    enum { VALUES = 150000, EAGER_SWEEP = 256 };     /* store_impl.h COW_STORE_EAGER_SWEEP */
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_val a = mk_long_list(0, VALUES), b = mk_long_list(VALUES, VALUES), got;
    cow_store_stats one, two, after;
    put_commit(s, "a", &a);
    one = stats_of(s);
    put_commit(s, "b", &b);
    two = stats_of(s);
    cr_assert_gt(two.segments - one.segments, 2 * EAGER_SWEEP, "%llu segments",
                 (unsigned long long)two.segments);
    del_commit(s, "b");
    after = stats_of(s);
    cr_assert_leq(after.segment_bytes, one.segment_bytes + (one.segment_bytes >> 4),
                  "%llu bytes kept of %llu", (unsigned long long)after.segment_bytes,
                  (unsigned long long)two.segment_bytes);
    cr_assert_eq(after.live_bytes, after.segment_bytes);
    cr_assert_eq(cow_store_sweep_at_commit(s), COW_EINVAL, "asked outside a transaction");
    cr_assert_eq(cow_store_begin(s), COW_OK);
    got = get_ok(s, "a");
    cr_assert_eq(cow_store_put(s, "c", 1, &got), COW_OK);
    cr_assert_eq(cow_store_del(s, "a", 1), COW_FOUND);
    cr_assert_eq(cow_store_commit(s), COW_OK, "commit: %s", cow_store_errmsg());
    cow_val_release(&got);
    two = stats_of(s);
    cr_assert_eq(two.segment_bytes, after.segment_bytes);
    cr_assert_eq(two.live_bytes, after.live_bytes, "a moved root counted as deleted");
    got = get_ok(s, "c");
    expect_same(&a, &got, 0);
    cow_val_release(&got);
    cow_store_close(s);
    cow_val_release(&a);
    cow_val_release(&b);
}

/* stats reports LMDB's figures per database: one overflow-page value per
 * segment, a roots entry per root, and pages freed by deleting a root on
 * the freelist. */
Test(store, stats_give_lmdb_figures_and_free_pages)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    cow_map *m = new_map();
    cow_val v, one = cow_val_int(1);
    cow_store_stats st;
    for (int64_t i = 0; i < 3000; i++)
        map_put(m, mk_key(i), mk_leafval(i));
    v = cow_val_map(COW_T_DICT, m);
    put_commit(s, "big", &v);
    put_commit(s, "small", &one);
    st = stats_of(s);
    cr_assert_eq(st.dbs[COW_STORE_DB_ROOTS].entries, 2);
    cr_assert_eq(st.dbs[COW_STORE_DB_SEGS].entries, st.segments);
    cr_assert_geq(st.dbs[COW_STORE_DB_SEGS].overflow_pages, st.segments);
    cr_assert_geq(st.dbs[COW_STORE_DB_META].entries, 2);
    del_commit(s, "big");
    put_commit(s, "small", &one);   /* a later commit puts the freed pages on the list */
    st = stats_of(s);
    cr_assert_eq(st.segments, 0);
    cr_assert_gt(st.free_pages, 10, "only %llu free pages", (unsigned long long)st.free_pages);
    cow_store_close(s);
    cow_val_release(&v);
}

/* ---- threads (ST5) ------------------------------------------------------------------- */

/* The binding's GIL, as the core sees it: one lock every caller holds,
 * let go of only inside the block hooks. */
static pthread_mutex_t fake_gil = PTHREAD_MUTEX_INITIALIZER;

static void *
gil_release(void)
{
    pthread_mutex_unlock(&fake_gil);
    return NULL;
}

static void
gil_acquire(void *token)
{
    pthread_mutex_lock(&fake_gil);
}

enum { WRITER_THREADS = 4, INCREMENTS = 50 };

typedef struct counter_job {
    cow_store *s;
    int failures;           /* calls that did not return COW_OK / COW_FOUND */
    int saw_pending;        /* another thread's pending write was visible */
} counter_job;

/* One read-modify-write of root "c" in a transaction of this thread. */
static void
increment(counter_job *j)
{
    cow_val v, next;
    if (cow_store_begin(j->s) != COW_OK) {
        j->failures++;
        return;
    }
    if (cow_store_get(j->s, "c", 1, &v) != COW_FOUND) {
        j->failures++;
        cow_store_abort(j->s);
        return;
    }
    next = cow_val_int(v.u.i + 1);
    j->failures += cow_store_put(j->s, "c", 1, &next) != COW_OK;
    j->failures += cow_store_commit(j->s) != COW_OK;
}

static void *
count_up(void *arg)
{
    counter_job *j = arg;
    pthread_mutex_lock(&fake_gil);
    for (int i = 0; i < INCREMENTS; i++)
        increment(j);
    pthread_mutex_unlock(&fake_gil);
    return NULL;
}

/* Threads sharing one handle take turns at the writer gate: every
 * increment lands, no transaction sees or ends another's. */
Test(store, threads_take_turns_writing)
{
    cow_store *s = open_ok(tpath("db"), COW_STORE_NOSYNC);
    pthread_t th[WRITER_THREADS];
    counter_job jobs[WRITER_THREADS];
    cow_val zero = cow_val_int(0), got;
    put_commit(s, "c", &zero);
    cow_store_set_block_hooks(gil_release, gil_acquire);     /* the workers hold the GIL */
    for (int i = 0; i < WRITER_THREADS; i++) {
        jobs[i] = (counter_job){s, 0, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, count_up, &jobs[i]), 0);
    }
    for (int i = 0; i < WRITER_THREADS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(jobs[i].failures, 0, "thread %d: %d failed calls", i, jobs[i].failures);
    }
    cow_store_set_block_hooks(NULL, NULL);
    got = get_ok(s, "c");
    cr_assert_eq(got.u.i, WRITER_THREADS * INCREMENTS);
    cow_store_close(s);
}

typedef struct pending_job {
    cow_store *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage;              /* 1: writer put "p"; 2: reader looked */
    int reader_found, reader_in_txn, reader_put;
} pending_job;

static void
advance(pending_job *j, int stage)
{
    pthread_mutex_lock(&j->lock);
    j->stage = stage;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static void
await_stage(pending_job *j, int stage)
{
    pthread_mutex_lock(&j->lock);
    while (j->stage < stage)
        pthread_cond_wait(&j->cond, &j->lock);
    pthread_mutex_unlock(&j->lock);
}

static void *
look_while_pending(void *arg)
{
    pending_job *j = arg;
    cow_val v, one = cow_val_int(1);
    await_stage(j, 1);
    j->reader_found = cow_store_get(j->s, "p", 1, &v);
    if (j->reader_found == COW_FOUND)
        cow_val_release(&v);
    j->reader_in_txn = cow_store_in_txn(j->s);
    j->reader_put = cow_store_put(j->s, "q", 1, &one);      /* not its transaction */
    advance(j, 2);
    return NULL;
}

/* Another thread neither sees a transaction's pending puts nor can add to
 * it; the writer's own reads see them. */
Test(store, pending_writes_belong_to_their_thread)
{
    pending_job j = {.s = open_ok(tpath("db"), COW_STORE_NOSYNC)};
    cow_val one = cow_val_int(1), got;
    pthread_t reader;
    pthread_mutex_init(&j.lock, NULL);
    pthread_cond_init(&j.cond, NULL);
    cr_assert_eq(pthread_create(&reader, NULL, look_while_pending, &j), 0);
    cr_assert_eq(cow_store_begin(j.s), COW_OK);
    cr_assert_eq(cow_store_put(j.s, "p", 1, &one), COW_OK);
    got = get_ok(j.s, "p");
    advance(&j, 1);
    await_stage(&j, 2);
    cr_assert_eq(cow_store_commit(j.s), COW_OK, "%s", cow_store_errmsg());
    cr_assert_eq(pthread_join(reader, NULL), 0);
    cr_assert_eq(j.reader_found, COW_NOT_FOUND, "pending put visible to another thread");
    cr_assert_eq(j.reader_in_txn, 0);
    cr_assert_eq(j.reader_put, COW_EINVAL);
    cr_assert_eq(cow_store_get(j.s, "q", 1, &got), COW_NOT_FOUND);
    got = get_ok(j.s, "p");
    cr_assert_eq(got.u.i, 1);
    cow_store_close(j.s);
    pthread_mutex_destroy(&j.lock);
    pthread_cond_destroy(&j.cond);
}
