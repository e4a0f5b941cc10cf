/* test_cache.c — receive/commit, invisibility of partials, random reads,
 * hostile paths and collisions, remove, rename, dedup, counts. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "names.h"
#include "chunkstore.h"
#include "unit.h"

static char dir[] = "/tmp/chute-test-cache-XXXXXX";
static cache *C;

/* The test's own connection to the cache: the index, with the chunk file
 * attached as "d" (so "chunks" names d.chunks). */
static sqlite3 *open_sql(void)
{
    char p[128], sql[256];
    snprintf(p, sizeof p, "%s/c.db", dir);
    snprintf(sql, sizeof sql, "ATTACH DATABASE '%s/c-data.db' AS d", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open(p, &db) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* One number from the cache, on a connection of the test's own. */
static long long sql_count(const char *sql)
{
    sqlite3 *db = open_sql();
    sqlite3_stmt *s = NULL;
    long long n = -1;
    if (db && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* Run sql on a connection of the test's own; SQLite's result code. */
static int sql_exec(const char *sql)
{
    sqlite3 *db = open_sql();
    int rc = db ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_ERROR;
    sqlite3_close(db);
    return rc;
}

static void meta_for(chute_meta *m, const char *path, uint64_t size)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->size = size; m->mode = 0640; m->mtime_sec = 1600000000; m->mtime_nsec = 5;
}

static chute_status receive(const char *item, const char *path,
                            const uint8_t *buf, size_t len, char *out)
{
    cache_txn *t;
    chute_meta m;
    chute_status st = cache_item_begin(C, "alice", item, &t);
    if (st) return st;
    /* odd-sized appends cross chunk boundaries */
    for (size_t o = 0; o < len;) {
        size_t n = len - o < 10007 ? len - o : 10007;
        if ((st = cache_item_append(t, buf + o, n))) { cache_item_abort(t); return st; }
        o += n;
    }
    meta_for(&m, path, len);
    return cache_item_commit(t, &m, out, 4096);
}

static void test_commit_and_random_read(void)
{
    size_t len = 5 * CACHE_CHUNK + 123;
    uint8_t *src = malloc(len), *dst = malloc(len);
    char out[4096];
    if (!src || !dst) { CHECK(0); return; }
    randombytes_buf(src, len);
    CHECK_EQ_INT(receive("item1", "big.bin", src, len, out), CHUTE_OK);
    CHECK(strcmp(out, "big.bin") == 0);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", "big.bin", &n), CHUTE_OK);
    CHECK(!n.is_dir && n.size == len && n.mode == 0640 && n.mtime_sec == 1600000000);
    size_t got;
    CHECK_EQ_INT(cache_read(C, &n, 0, dst, len, &got), CHUTE_OK);
    CHECK(got == len && memcmp(src, dst, len) == 0);
    uint64_t offs[] = {1, CACHE_CHUNK - 1, CACHE_CHUNK, 3 * CACHE_CHUNK + 77, len - 5};
    for (size_t i = 0; i < 5; i++) {
        CHECK_EQ_INT(cache_read(C, &n, offs[i], dst, 100000, &got), CHUTE_OK);
        size_t want = len - offs[i] < 100000 ? len - offs[i] : 100000;
        CHECK(got == want && memcmp(src + offs[i], dst, got) == 0);
    }
    CHECK_EQ_INT(cache_read(C, &n, len, dst, 10, &got), CHUTE_OK);
    CHECK_EQ_INT(got, 0);
    free(src); free(dst);
}

static void test_partial_invisible_and_abort(void)
{
    cache_txn *t;
    cache_node n;
    cache_counts_t k;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "item2", &t), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(t, "hello", 5), CHUTE_OK);
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 1);
    cache_item_abort(t);
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 0);
    /* size mismatch: nothing appears */
    chute_meta m;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "item3", &t), CHUTE_OK);
    cache_item_append(t, "hello", 5);
    meta_for(&m, "short.txt", 6);
    CHECK_EQ_INT(cache_item_commit(t, &m, NULL, 0), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(cache_lookup(C, "alice", "short.txt", &n), CHUTE_ERR_NOT_FOUND);
    bool seen;
    CHECK_EQ_INT(cache_seen(C, "alice", "item3", &seen), CHUTE_OK);
    CHECK(!seen);
    CHECK_EQ_INT(cache_seen(C, "alice", "item1", &seen), CHUTE_OK);
    CHECK(seen);
    CHECK_EQ_INT(cache_item_begin(C, "alice", "item1", &t), CHUTE_ERR_EXISTS);
}

static void test_hostile_paths_and_collisions(void)
{
    char out[4096];
    CHECK_EQ_INT(receive("h1", "../etc/passwd", (const uint8_t *)"x", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "_../etc/passwd") == 0);
    CHECK_EQ_INT(receive("h2", "/abs", (const uint8_t *)"x", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "abs") == 0);
    CHECK_EQ_INT(receive("h3", "a\nb", (const uint8_t *)"x", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "a_b") == 0);
    CHECK_EQ_INT(receive("h4", "x.pdf", (const uint8_t *)"1", 1, out), CHUTE_OK);
    CHECK_EQ_INT(receive("h5", "x.pdf", (const uint8_t *)"2", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "x (2).pdf") == 0);
    CHECK_EQ_INT(receive("h6", "./x.pdf", (const uint8_t *)"3", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "x (3).pdf") == 0);
    /* a folder where a file is: the folder gets a variant name */
    CHECK_EQ_INT(receive("h7", "x.pdf/inner", (const uint8_t *)"4", 1, out), CHUTE_OK);
    CHECK(strcmp(out, "x (4).pdf/inner") == 0);
    CHECK_EQ_INT(receive("h8", "", (const uint8_t *)"", 0, out), CHUTE_OK);
    CHECK(strcmp(out, "unnamed") == 0);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", "_..", &n), CHUTE_OK);
    CHECK(n.is_dir);
    CHECK_EQ_INT(cache_lookup(C, "bob", "x.pdf", &n), CHUTE_ERR_NOT_FOUND);
}

static int count_cb(const char *name, const cache_node *n, void *arg)
{
    (void)name; (void)n; (*(int *)arg)++; return 0;
}

static void test_remove_rename(void)
{
    cache_node n;
    cache_counts_t before, after;
    cache_counts(C, &before);
    CHECK_EQ_INT(cache_remove(C, "alice", "big.bin"), CHUTE_OK);
    CHECK_EQ_INT(cache_lookup(C, "alice", "big.bin", &n), CHUTE_ERR_NOT_FOUND);
    cache_counts(C, &after);
    CHECK(after.stored == before.stored - 1);
    CHECK(after.stored_bytes == before.stored_bytes - (5 * CACHE_CHUNK + 123));
    CHECK_EQ_INT(cache_remove(C, "alice", "_.."), CHUTE_ERR_EXISTS);
    CHECK_EQ_INT(cache_rename(C, "alice", "a_b", "renamed", false), CHUTE_OK);
    CHECK_EQ_INT(cache_lookup(C, "alice", "renamed", &n), CHUTE_OK);
    CHECK_EQ_INT(cache_rename(C, "alice", "renamed", "_../moved", false), CHUTE_OK);
    CHECK_EQ_INT(cache_lookup(C, "alice", "_../moved", &n), CHUTE_OK);
    CHECK_EQ_INT(cache_rename(C, "alice", "_..", "_../etc/x", false), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cache_rename(C, "alice", "x.pdf", "x (2).pdf", false), CHUTE_OK);  /* replaces */
    /* mv -n: the target is looked at in the rename's own transaction */
    CHECK_EQ_INT(cache_rename(C, "alice", "_../moved", "x (2).pdf", true), CHUTE_ERR_EXISTS);
    CHECK_EQ_INT(cache_lookup(C, "alice", "_../moved", &n), CHUTE_OK);   /* nothing moved */
    /* a target path or name too long is refused, never cut to fit */
    static char deep[META_PATH_MAX + 16];
    memset(deep, 'd', sizeof deep - 1);
    memcpy(deep, "_../", 4);
    deep[sizeof deep - 3] = '/';
    deep[sizeof deep - 2] = 'x';
    deep[sizeof deep - 1] = '\0';
    CHECK_EQ_INT(cache_rename(C, "alice", "_../moved", deep, false), CHUTE_ERR_LIMIT);
    char longname[NAMES_MAX + 2];
    memset(longname, 'y', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ_INT(cache_rename(C, "alice", "_../moved", longname, false), CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(cache_lookup(C, "alice", "_../moved", &n), CHUTE_OK);
    size_t got; char b;
    CHECK_EQ_INT(cache_lookup(C, "alice", "x (2).pdf", &n), CHUTE_OK);
    CHECK_EQ_INT(cache_read(C, &n, 0, &b, 1, &got), CHUTE_OK);
    CHECK(b == '1');
    int count = 0;
    CHECK_EQ_INT(cache_list(C, "alice", 0, count_cb, &count), CHUTE_OK);
    CHECK(count >= 5);
    CHECK_EQ_INT(cache_remove(C, "alice", "nope"), CHUTE_ERR_NOT_FOUND);
}

static void collect_peer(const char *peer, void *arg)
{
    char *out = arg;
    size_t l = strlen(out);
    snprintf(out + l, 256 - l, "%s;", peer);
}

static void test_a_peer_holds_its_folder_until_its_last_node_goes(void)
{
    bool holds = true;
    char peers[256] = "";
    CHECK_EQ_INT(cache_peer_holds(C, "bob", &holds), CHUTE_OK);
    CHECK(!holds);
    cache_txn *t;
    chute_meta m;
    char out[4096];
    CHECK_EQ_INT(cache_item_begin(C, "bob", "bob-item", &t), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(t, "hi", 2), CHUTE_OK);
    meta_for(&m, "sub/hi.txt", 2);
    CHECK_EQ_INT(cache_item_commit(t, &m, out, sizeof out), CHUTE_OK);
    CHECK_EQ_INT(cache_peer_holds(C, "bob", &holds), CHUTE_OK);
    CHECK(holds);
    CHECK_EQ_INT(cache_each_peer(C, collect_peer, peers), CHUTE_OK);
    CHECK(strcmp(peers, "alice;bob;") == 0);
    /* an empty folder left behind is still the user's to remove */
    CHECK_EQ_INT(cache_remove(C, "bob", "sub/hi.txt"), CHUTE_OK);
    CHECK_EQ_INT(cache_peer_holds(C, "bob", &holds), CHUTE_OK);
    CHECK(holds);
    CHECK_EQ_INT(cache_remove(C, "bob", "sub"), CHUTE_OK);
    CHECK_EQ_INT(cache_peer_holds(C, "bob", &holds), CHUTE_OK);
    CHECK(!holds);
    peers[0] = '\0';
    CHECK_EQ_INT(cache_each_peer(C, collect_peer, peers), CHUTE_OK);
    CHECK(strcmp(peers, "alice;") == 0);
    CHECK_EQ_INT(cache_peer_holds(C, NULL, &holds), CHUTE_ERR_ARG);
}

static int count_q(const char *peer, const char *item, const char *reason,
                   int64_t at, void *arg)
{
    (void)peer; (void)item; (void)reason; (void)at;
    ++*(int *)arg;
    return 0;
}

static void test_quarantine_and_cursor(void)
{
    bool yes = true;
    CHECK_EQ_INT(cache_is_quarantined(C, "alice", "q1", &yes), CHUTE_OK);
    CHECK(!yes);
    CHECK_EQ_INT(cache_quarantine(C, "alice", "q1", "meta does not open"), CHUTE_OK);
    CHECK_EQ_INT(cache_quarantine(C, "alice", "q1", "again"), CHUTE_OK);   /* idempotent */
    CHECK_EQ_INT(cache_is_quarantined(C, "alice", "q1", &yes), CHUTE_OK);
    CHECK(yes);
    CHECK_EQ_INT(cache_is_quarantined(C, "bob", "q1", &yes), CHUTE_OK);
    CHECK(!yes);
    int n = 0;
    CHECK_EQ_INT(cache_quarantine_each(C, count_q, &n), CHUTE_OK);
    CHECK_EQ_INT(n, 1);
    cache_counts_t cc;
    CHECK_EQ_INT(cache_counts(C, &cc), CHUTE_OK);
    CHECK_EQ_INT(cc.quarantined, 1);
    uint64_t seq = 99;
    CHECK_EQ_INT(cache_list_cursor(C, "inbox-a", &seq), CHUTE_OK);
    CHECK_EQ_INT(seq, 0);
    CHECK_EQ_INT(cache_set_list_cursor(C, "inbox-a", 41), CHUTE_OK);
    CHECK_EQ_INT(cache_set_list_cursor(C, "inbox-a", 42), CHUTE_OK);
    CHECK_EQ_INT(cache_list_cursor(C, "inbox-a", &seq), CHUTE_OK);
    CHECK_EQ_INT(seq, 42);
    CHECK_EQ_INT(cache_list_cursor(C, "inbox-b", &seq), CHUTE_OK);
    CHECK_EQ_INT(seq, 0);
}

static bool keep_go_on(const char *peer, const char *item, void *arg)
{
    (void)arg;
    return strcmp(peer, "alice") == 0 && strcmp(item, "go-on") == 0;
}

/* A download suspended (or cut by a crash after some batches) goes on
 * from its whole chunks; the result reads as one file. */
static void test_resume_keeps_whole_chunks(void)
{
    size_t len = 300 * CACHE_CHUNK + 777;   /* more than two 8 MiB batches */
    uint8_t *src = malloc(len), *dst = malloc(len);
    if (!src || !dst) { CHECK(0); free(src); free(dst); return; }
    randombytes_buf(src, len);
    cache_txn *t;
    uint64_t kept = 99;
    CHECK_EQ_INT(cache_item_resume(C, "alice", "res", 1000, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(kept, 0);
    CHECK_EQ_INT(cache_item_append(t, src, 200 * CACHE_CHUNK + 5), CHUTE_OK);
    cache_item_suspend(t);                  /* 200 whole chunks kept, 5 bytes not */
    CHECK_EQ_INT(cache_item_resume(C, "alice", "res", 150, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(kept, 150);                /* capped by the caller */
    cache_item_suspend(t);
    CHECK_EQ_INT(cache_item_resume(C, "alice", "res", 1000, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(kept, 150);                /* the cap dropped the rest */
    CHECK_EQ_INT(cache_item_append(t, src + kept * CACHE_CHUNK, len - kept * CACHE_CHUNK),
                 CHUTE_OK);
    chute_meta m;
    meta_for(&m, "resumed.bin", len);
    CHECK_EQ_INT(cache_item_commit(t, &m, NULL, 0), CHUTE_OK);
    cache_node n;
    size_t got = 0;
    CHECK_EQ_INT(cache_lookup(C, "alice", "resumed.bin", &n), CHUTE_OK);
    CHECK_EQ_INT(cache_read(C, &n, 0, dst, len, &got), CHUTE_OK);
    CHECK(got == len && memcmp(src, dst, len) == 0);
    /* begin (not resume) starts over */
    CHECK_EQ_INT(cache_item_resume(C, "alice", "res2", 10, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(t, src, 3 * CACHE_CHUNK), CHUTE_OK);
    cache_item_suspend(t);
    CHECK_EQ_INT(cache_item_begin(C, "alice", "res2", &t), CHUTE_OK);
    cache_item_suspend(t);
    CHECK_EQ_INT(cache_item_resume(C, "alice", "res2", 10, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(kept, 0);
    cache_item_abort(t);
    free(src); free(dst);
}

/* What a crash mid-download leaves (batches already committed) goes at
 * the next start; received files stay. */
static void test_drop_partials_keeps_files(void)
{
    sqlite3 *db = open_sql();
    CHECK(db != NULL);
    CHECK_EQ_INT(sqlite3_exec(db, "INSERT INTO data(id, peer, item, store) VALUES(900, 'alice', 'cut', 1);"
                                  "INSERT INTO chunks VALUES(900, 0, zeroblob(65536));"
                                  "INSERT INTO chunks VALUES(900, 1, zeroblob(65536));",
                              NULL, NULL, NULL), SQLITE_OK);
    cache_counts_t k;
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 1);
    uint64_t files = k.stored;
    CHECK_EQ_INT(sqlite3_exec(db, "INSERT INTO data(id, peer, item, store) VALUES(901, 'alice', 'go-on', 1);"
                                  "INSERT INTO chunks VALUES(901, 0, zeroblob(65536));",
                              NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(cache_drop_partials(C, keep_go_on, NULL), CHUTE_OK);
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 1);                  /* the one kept */
    CHECK_EQ_INT(k.stored, files);
    CHECK_EQ_INT(cache_drop_partials(C, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 0);
    sqlite3_stmt *s;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks WHERE data=900", -1, &s,
                                    NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    CHECK(files > 0);   /* the earlier tests' files, untouched */
}

static void test_uses_a_rollback_journal(void)
{
    /* WAL would write every received byte twice (db.h). */
    const char *files[] = {"c.db", "c-data.db"};
    for (size_t i = 0; i < 2; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        sqlite3 *db;
        CHECK_EQ_INT(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_stmt *s;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
        /* Only WAL is a property of the file; PERSIST is per connection. */
        CHECK(strcmp((const char *)sqlite3_column_text(s, 0), "wal") != 0);
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
}

/* The tables of a cache as a version before 0.3 made them, chunks in the
 * same file, with one file of 3 chunks and 5 bytes (its bytes: data). */
static const char OLD_SCHEMA[] =
    "CREATE TABLE nodes (id INTEGER PRIMARY KEY, peer TEXT NOT NULL, parent INTEGER NOT NULL,"
    " name TEXT NOT NULL, is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " mode INTEGER NOT NULL, mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,"
    " data INTEGER, UNIQUE(peer, parent, name));"
    "CREATE TABLE data (id INTEGER PRIMARY KEY, peer TEXT NOT NULL, item TEXT NOT NULL,"
    " size INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 0, UNIQUE(peer, item));"
    "CREATE TABLE chunks (data INTEGER NOT NULL, idx INTEGER NOT NULL, bytes BLOB NOT NULL,"
    " PRIMARY KEY(data, idx));"
    "CREATE TABLE received (peer TEXT NOT NULL, item TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY(peer, item));"
    "CREATE TABLE quarantine (peer TEXT NOT NULL, item TEXT NOT NULL, reason TEXT NOT NULL,"
    " at INTEGER NOT NULL, PRIMARY KEY(peer, item));"
    "CREATE TABLE list_cursor (inbox TEXT PRIMARY KEY, seq INTEGER NOT NULL);";

static bool make_old_cache(const char *path, const char *extra_sql, const uint8_t *data,
                           size_t len)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    bool ok = sqlite3_open(path, &db) == SQLITE_OK &&
              sqlite3_exec(db, OLD_SCHEMA, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(db, extra_sql, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(db,
                  "INSERT INTO data VALUES(7, 'alice', 'old1', 196613, 1);"
                  "INSERT INTO nodes VALUES(3, 'alice', 0, 'kept.bin', 0, 196613, 420,"
                  " 1600000000, 0, 7);"
                  "INSERT INTO received VALUES('alice', 'old1', 1600000000);"
                  "INSERT INTO quarantine VALUES('alice', 'bad1', 'tampered', 1600000000);",
                  NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_prepare_v2(db, "INSERT INTO chunks VALUES(7, ?, ?)", -1, &s, NULL) == SQLITE_OK;
    for (size_t i = 0; ok && i * CACHE_CHUNK < len; i++) {
        size_t n = len - i * CACHE_CHUNK < CACHE_CHUNK ? len - i * CACHE_CHUNK : CACHE_CHUNK;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)i);
        sqlite3_bind_blob(s, 2, data + i * CACHE_CHUNK, (int)n, SQLITE_STATIC);
        ok = sqlite3_step(s) == SQLITE_DONE;
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return ok;
}

/* A cache of 0.1 sits in the queue's WAL file: its files, received items
 * and quarantine move over, once, and keep reading. */
static void test_adopts_a_legacy_cache_once(void)
{
    char legacy[128], fresh[128];
    snprintf(legacy, sizeof legacy, "%s/legacy.db", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.db", dir);
    uint8_t data[3 * CACHE_CHUNK + 5];
    randombytes_buf(data, sizeof data);
    CHECK(make_old_cache(legacy, "PRAGMA journal_mode=WAL; CREATE TABLE queue(x);",
                         data, sizeof data));
    cache *c;
    CHECK_EQ_INT(cache_open(fresh, &c), CHUTE_OK);
    CHECK_EQ_INT(cache_adopt_legacy(c, legacy), CHUTE_OK);
    CHECK_EQ_INT(cache_adopt_legacy(c, legacy), CHUTE_OK);   /* nothing left: no-op */
    cache_node n;
    CHECK_EQ_INT(cache_lookup(c, "alice", "kept.bin", &n), CHUTE_OK);
    uint8_t back[sizeof data];
    size_t got = 0;
    CHECK_EQ_INT(cache_read(c, &n, 0, back, sizeof back, &got), CHUTE_OK);
    CHECK(got == sizeof data && memcmp(back, data, got) == 0);
    bool yes = false;
    CHECK_EQ_INT(cache_seen(c, "alice", "old1", &yes), CHUTE_OK);
    CHECK(yes);
    CHECK_EQ_INT(cache_is_quarantined(c, "alice", "bad1", &yes), CHUTE_OK);
    CHECK(yes);
    cache_close(c);
    /* the old file keeps the queue and loses the cache's tables */
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(legacy, &db), SQLITE_OK);
    sqlite3_stmt *s;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT group_concat(name) FROM sqlite_master "
                                        "WHERE type='table'", -1, &s, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 0), "queue") == 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* An inbox.db of 0.2 (its chunks in it, no data.store): its files read as
 * before, a new arrival goes to the chunk file, a resumed partial of its
 * starts over there, and removing an old file frees its chunks in it. */
static void test_reads_and_reaps_a_cache_of_0_2(void)
{
    char old[128];
    snprintf(old, sizeof old, "%s/old02.db", dir);
    uint8_t data[3 * CACHE_CHUNK + 5];
    randombytes_buf(data, sizeof data);
    CHECK(make_old_cache(old, "CREATE TABLE doomed (data INTEGER PRIMARY KEY);"
                              "INSERT INTO data VALUES(8, 'alice', 'half', 0, 0);"
                              "INSERT INTO chunks VALUES(8, 0, zeroblob(65536));",
                         data, sizeof data));
    cache *c;
    CHECK_EQ_INT(cache_open(old, &c), CHUTE_OK);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(c, "alice", "kept.bin", &n), CHUTE_OK);
    CHECK(n.data_in_index);
    uint8_t back[sizeof data];
    size_t got = 0;
    CHECK_EQ_INT(cache_read(c, &n, 0, back, sizeof back, &got), CHUTE_OK);
    CHECK(got == sizeof data && memcmp(back, data, got) == 0);
    /* its partial: resumed from nothing, in the chunk file */
    cache_txn *t;
    uint64_t kept = 99;
    CHECK_EQ_INT(cache_item_resume(c, "alice", "half", 10, &t, &kept), CHUTE_OK);
    CHECK_EQ_INT(kept, 0);
    CHECK_EQ_INT(cache_item_append(t, data, 5), CHUTE_OK);
    chute_meta m;
    meta_for(&m, "half.bin", 5);
    CHECK_EQ_INT(cache_item_commit(t, &m, NULL, 0), CHUTE_OK);
    cache_node h;
    CHECK_EQ_INT(cache_lookup(c, "alice", "half.bin", &h), CHUTE_OK);
    CHECK(!h.data_in_index);
    CHECK_EQ_INT(cache_read(c, &h, 0, back, 5, &got), CHUTE_OK);
    CHECK(got == 5 && memcmp(back, data, 5) == 0);
    CHECK_EQ_INT(cache_remove(c, "alice", "kept.bin"), CHUTE_OK);
    cache_close(c);   /* a close waits for nothing: what is doomed stays */
    CHECK_EQ_INT(cache_open(old, &c), CHUTE_OK);
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(old, &db), SQLITE_OK);
    long long left = -1;
    for (int i = 0; i < 2000 && left != 0; i++) {   /* the reaper, within 20 s */
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM chunks) +"
                                   " (SELECT count(*) FROM doomed)", -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
            left = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        if (left) usleep(10000);
    }
    CHECK_EQ_INT(left, 0);
    sqlite3_close(db);
    cache_close(c);
}

static bool reaped_within(int seconds);

/* Bytes of path in the page cache (mincore over a mapping of it). */
static off_t resident_bytes(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size == 0) { if (fd >= 0) close(fd); return -1; }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return -1;
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (size_t)((sb.st_size + page - 1) / page);
    unsigned char *vec = malloc(pages);
    off_t in = -1;
    if (vec && mincore(map, (size_t)sb.st_size, vec) == 0) {
        in = 0;
        for (size_t i = 0; i < pages; i++) in += (vec[i] & 1) ? page : 0;
    }
    free(vec);
    munmap(map, (size_t)sb.st_size);
    return in;
}

/* 40 MiB received: the committed batches leave the page cache (what is
 * left is the last batch and the tree), and every byte reads back. A
 * second cache opened and closed on the same file meanwhile (the mount
 * and its downloader each have one) leaves the first working. */
static void test_a_big_arrival_is_not_kept_in_memory(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/c.db", dir);
    cache *other;
    CHECK_EQ_INT(cache_open(p, &other), CHUTE_OK);
    size_t len = 40u << 20;
    uint8_t *src = malloc(len), *dst = malloc(1u << 20);
    if (!src || !dst) { CHECK(0); free(src); free(dst); cache_close(other); return; }
    randombytes_buf(src, len);
    cache_txn *t;
    CHECK_EQ_INT(cache_item_begin(other, "alice", "big-arrival", &t), CHUTE_OK);
    for (size_t o = 0; o < len; o += 1u << 20)
        CHECK_EQ_INT(cache_item_append(t, src + o, 1u << 20), CHUTE_OK);
    chute_meta m;
    meta_for(&m, "arrival.bin", len);
    char out[4096];
    CHECK_EQ_INT(cache_item_commit(t, &m, out, sizeof out), CHUTE_OK);
    cache_close(other);
    snprintf(p, sizeof p, "%s/c-data.db", dir);
    off_t in = resident_bytes(p);
    CHECK(in >= 0 && in < (off_t)(len / 2));
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &n), CHUTE_OK);
    int same = n.size == len;
    for (size_t o = 0; same && o < len; o += 1u << 20) {
        size_t got;
        same = cache_read(C, &n, o, dst, 1u << 20, &got) == CHUTE_OK &&
               got == 1u << 20 && memcmp(dst, src + o, got) == 0;
    }
    CHECK(same);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    free(src);
    free(dst);
}

/* Receive len random bytes as item into cache c, in 1 MiB appends, and
 * commit them; out gets the file's path. */
static chute_status receive_random(cache *c, const char *item, size_t len,
                                   char *out, size_t cap)
{
    uint8_t *src = malloc(1u << 20);
    if (!src) return CHUTE_ERR_NOMEM;
    cache_txn *t = NULL;
    chute_status st = cache_item_begin(c, "alice", item, &t);
    for (size_t o = 0; !st && o < len; o += 1u << 20) {
        randombytes_buf(src, 1u << 20);
        st = cache_item_append(t, src, 1u << 20);
    }
    if (st) {
        if (t) cache_item_abort(t);
        free(src);
        return st;
    }
    chute_meta m;
    meta_for(&m, item, len);
    free(src);
    return cache_item_commit(t, &m, out, cap);
}

/* The chunk file's journal is emptied at each commit (TRUNCATE, db.h):
 * after an arrival of several batches, and after the reaper's
 * transactions that free it, nothing is left in it. */
static void test_the_chunk_journal_keeps_nothing_after_a_commit(void)
{
    char j[160];
    snprintf(j, sizeof j, "%s/c-data.db-journal", dir);
    char out[4096];
    CHECK(reaped_within(20));
    chunkstore_set_batch(512);   /* 32 MiB batches: three of them, not 768 MiB */
    CHECK_EQ_INT(receive_random(C, "journal-arrival", 3u * 512 * CACHE_CHUNK,
                                out, sizeof out), CHUTE_OK);   /* three batches */
    chunkstore_set_batch(0);
    struct stat sb;
    CHECK(stat(j, &sb) != 0 || sb.st_size == 0);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    CHECK(reaped_within(20));
    CHECK(stat(j, &sb) != 0 || sb.st_size == 0);
}

/* How many times needle (shorter than 4 KiB) is in the file at path;
 * -1 if it cannot be read. */
static long long occurrences(const char *path, const char *needle)
{
    size_t nl = strlen(needle), keep = nl - 1, have = 0;
    static char buf[(1 << 20) + 4096];
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : -1;
    long long n = 0;
    size_t got;
    while ((got = fread(buf + have, 1, (1 << 20), f)) > 0) {
        have += got;
        for (char *p = buf; (p = memmem(p, have - (size_t)(p - buf), needle, nl)); p++) n++;
        size_t tail = have < keep ? have : keep;   /* a match across two reads */
        memmove(buf, buf + have - tail, tail);
        have = tail;
    }
    fclose(f);
    return n;
}

/* A removed file's plaintext is not left on disk by the cache: not in the
 * chunk file (secure_delete zeroes the pages freed) nor in its journal,
 * which held those pages as they were for a rollback (emptied at each
 * commit); nor is an aborted partial's, freed in place. */
static void test_a_removed_file_leaves_no_plaintext(void)
{
    static const char marker[] = "chute-marker:f00d-cafe";
    size_t len = 4u << 20, ml = sizeof marker - 1;
    uint8_t *buf = malloc(len);
    char out[4096], path[160];
    if (!buf) { CHECK(0); return; }
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)marker[i % ml];
    CHECK(reaped_within(20));
    CHECK_EQ_INT(receive("marked", "marked.bin", buf, len, out), CHUTE_OK);
    cache_txn *t = NULL;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "marked-partial", &t), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(t, buf, len / 2), CHUTE_OK);
    CHECK_EQ_INT(cache_item_checkpoint(t), CHUTE_OK);   /* on disk, then dropped */
    cache_item_abort(t);
    snprintf(path, sizeof path, "%s/c-data.db", dir);
    CHECK(occurrences(path, marker) > 0);   /* the committed file's, still there */
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    CHECK(reaped_within(20));
    CHECK_EQ_INT(occurrences(path, marker), 0);
    snprintf(path, sizeof path, "%s/c-data.db-journal", dir);
    CHECK_EQ_INT(occurrences(path, marker), 0);
    free(buf);
}

/* The background reaper: bounded wait for nothing doomed, no orphans and
 * no free page left in the chunk file (given back: it is done). */
static bool reaped_within(int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        if (sql_count("SELECT (SELECT count(*) FROM doomed) + (SELECT count(*) FROM chunks"
                      " WHERE data NOT IN (SELECT data FROM nodes WHERE data IS NOT NULL))"
                      " + (SELECT count(*) FROM data WHERE complete=1 AND id NOT IN"
                      " (SELECT data FROM nodes WHERE data IS NOT NULL))") == 0 &&
            sql_count("PRAGMA d.freelist_count") == 0)
            return true;
        usleep(10000);
    }
    return false;
}

/* Receive `chunks` whole chunks of random bytes as item (also its path). */
static chute_status receive_chunks(const char *item, size_t chunks, char *out)
{
    static uint8_t buf[5 * CACHE_CHUNK];
    if (chunks * CACHE_CHUNK > sizeof buf) return CHUTE_ERR_ARG;
    randombytes_buf(buf, chunks * CACHE_CHUNK);
    return receive(item, item, buf, chunks * CACHE_CHUNK, out);
}

static void test_removing_a_file_frees_its_chunks_in_the_background(void)
{
    char out[4096], keep[4096];
    CHECK(reaped_within(20));   /* what the tests before removed */
    CHECK_EQ_INT(receive_chunks("reap-keep", 3, keep), CHUTE_OK);
    CHECK_EQ_INT(receive_random(C, "reap-big", 24u << 20, out, sizeof out), CHUTE_OK);
    long long before = sql_count("SELECT count(*) FROM chunks");
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &n), CHUTE_ERR_NOT_FOUND);   /* gone at once */
    CHECK(reaped_within(20));
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM chunks"), before - 384);
    CHECK_EQ_INT(cache_lookup(C, "alice", keep, &n), CHUTE_OK);            /* others stay */
    uint8_t buf[16];
    size_t got;
    CHECK_EQ_INT(cache_read(C, &n, 0, buf, sizeof buf, &got), CHUTE_OK);
    CHECK(got == sizeof buf);
    CHECK_EQ_INT(cache_remove(C, "alice", keep), CHUTE_OK);
    CHECK(reaped_within(20));
}

static void test_a_file_replaced_by_rename_is_reaped(void)
{
    char a[4096], b[4096];
    long long others = sql_count("SELECT count(*) FROM chunks");
    CHECK_EQ_INT(receive_chunks("reap-a", 2, a), CHUTE_OK);
    CHECK_EQ_INT(receive_chunks("reap-b", 5, b), CHUTE_OK);
    CHECK_EQ_INT(cache_rename(C, "alice", a, b, false), CHUTE_OK);
    CHECK(reaped_within(20));
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", b, &n), CHUTE_OK);
    CHECK(n.size == 2 * CACHE_CHUNK);
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM chunks"), others + 2);
    CHECK_EQ_INT(cache_remove(C, "alice", b), CHUTE_OK);
    CHECK(reaped_within(20));
}

/* A crash (or a close) between the unlink and the reaping leaves rows in
 * doomed: the next open frees them. */
static void test_the_next_open_reaps_what_a_crash_left_doomed(void)
{
    char out[4096], p[128];
    long long others = sql_count("SELECT count(*) FROM chunks");
    CHECK_EQ_INT(receive_chunks("reap-crash", 4, out), CHUTE_OK);
    cache_close(C);
    C = NULL;
    long long data = sql_count("SELECT max(id) FROM data");
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM nodes WHERE data=%lld; INSERT INTO doomed VALUES(%lld)",
             data, data);
    snprintf(p, sizeof p, "%s/c.db", dir);
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(p, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM chunks"), others + 4);
    CHECK_EQ_INT(cache_open(p, &C), CHUTE_OK);
    CHECK(reaped_within(20));
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM chunks"), others);
}

/* The reaper's first open of the chunk file can fail (an arrival's batch
 * holds it past the busy timeout; here it is briefly not a database at
 * all): a later pass opens it again and frees what was removed. */
static void test_the_reaper_opens_again_after_a_failed_open(void)
{
    char a[4096], b[4096], p[128], data[128], away[160];
    CHECK(reaped_within(20));
    CHECK_EQ_INT(receive_chunks("reap-retry-a", 2, a), CHUTE_OK);
    CHECK_EQ_INT(receive_chunks("reap-retry-b", 2, b), CHUTE_OK);
    long long before = sql_count("SELECT count(*) FROM chunks");
    cache_close(C);   /* a cache whose reaper has not started yet */
    snprintf(p, sizeof p, "%s/c.db", dir);
    CHECK_EQ_INT(cache_open(p, &C), CHUTE_OK);
    snprintf(data, sizeof data, "%s/c-data.db", dir);
    snprintf(away, sizeof away, "%s.away", data);
    CHECK(rename(data, away) == 0 && mkdir(data, 0700) == 0);
    CHECK_EQ_INT(cache_remove(C, "alice", a), CHUTE_OK);   /* the reaper starts, cannot open */
    usleep(300 * 1000);
    CHECK(rmdir(data) == 0 && rename(away, data) == 0);
    CHECK_EQ_INT(cache_remove(C, "alice", b), CHUTE_OK);
    CHECK(reaped_within(10));
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM chunks"), before - 4);
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* A removed file's pages go back to the filesystem (incremental
 * auto_vacuum, given back by the reaper): the chunk file shrinks by about
 * the file's size, and what stays reads as before. */
static void test_removing_a_file_gives_its_space_back(void)
{
    char out[4096], keep[4096], p[160];
    snprintf(p, sizeof p, "%s/c-data.db", dir);
    CHECK(reaped_within(20));
    CHECK_EQ_INT(sql_count("PRAGMA d.auto_vacuum"), 2);   /* incremental */
    CHECK_EQ_INT(receive_random(C, "shrink-big", 8u << 20, out, sizeof out), CHUTE_OK);
    CHECK_EQ_INT(receive_chunks("shrink-keep", 3, keep), CHUTE_OK);   /* after it, moved */
    long long before = file_size(p);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    CHECK(reaped_within(20));
    CHECK(file_size(p) <= before - (8 << 20));
    cache_node n;
    uint8_t buf[3 * CACHE_CHUNK];
    size_t got = 0;
    CHECK_EQ_INT(cache_lookup(C, "alice", keep, &n), CHUTE_OK);
    CHECK_EQ_INT(cache_read(C, &n, 0, buf, sizeof buf, &got), CHUTE_OK);
    CHECK_EQ_INT(got, sizeof buf);
    CHECK_EQ_INT(cache_remove(C, "alice", keep), CHUTE_OK);
    CHECK(reaped_within(20));
}

/* One number from a chunk file of a test's own. */
static long long chunk_file_count(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long n = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* Wait (bounded) for c's reaper to free what is doomed, then a little for
 * what it does after that. */
static bool doomed_freed(const char *index_path)
{
    for (int i = 0; i < 2000; i++) {
        if (chunk_file_count(index_path, "SELECT count(*) FROM doomed") == 0) {
            usleep(500 * 1000);
            return true;
        }
        usleep(10000);
    }
    return false;
}

/* A chunk file an earlier version made, without auto_vacuum: its free
 * pages are only reused while it holds more than 64 MiB (a VACUUM would
 * copy all that, the file locked); once it holds less, a removal has the
 * reaper rebuild it with auto_vacuum, and it shrinks. */
static void test_an_old_chunk_file_is_rebuilt_once_it_holds_little(void)
{
    char d[] = "/tmp/chute-test-cache-vac-XXXXXX", p[128], data[128], big[4096], small[4096];
    cache *c = NULL;
    if (!mkdtemp(d)) { CHECK(0); return; }
    snprintf(p, sizeof p, "%s/c.db", d);
    snprintf(data, sizeof data, "%s/c-data.db", d);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(data, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA page_size=16384; CREATE TABLE chunks (data INTEGER"
                                  " NOT NULL, idx INTEGER NOT NULL, bytes BLOB NOT NULL,"
                                  " PRIMARY KEY(data, idx))", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(cache_open(p, &c), CHUTE_OK);
    CHECK_EQ_INT(receive_random(c, "old-big", 65u << 20, big, sizeof big), CHUTE_OK);
    CHECK_EQ_INT(receive_random(c, "old-small", 4u << 20, small, sizeof small), CHUTE_OK);
    long long full = file_size(data);
    CHECK_EQ_INT(cache_remove(c, "alice", small), CHUTE_OK);
    CHECK(doomed_freed(p));
    CHECK_EQ_INT(chunk_file_count(data, "PRAGMA auto_vacuum"), 0);   /* 65 MiB: left */
    CHECK(chunk_file_count(data, "PRAGMA freelist_count") > 0);
    CHECK_EQ_INT(file_size(data), full);
    CHECK_EQ_INT(cache_remove(c, "alice", big), CHUTE_OK);
    CHECK(doomed_freed(p));
    CHECK_EQ_INT(chunk_file_count(data, "PRAGMA auto_vacuum"), 2);   /* rebuilt */
    CHECK(file_size(data) < (1 << 20));
    cache_close(c);
    snprintf(p, sizeof p, "rm -rf %s", d);
    if (system(p) != 0) fprintf(stderr, "cleanup failed\n");
}

/* A partial's data row freed under it (two reapers once could: cache.c,
 * reap_some): its commit fails — nothing shown, nothing recorded as
 * received, so the downloader fetches the item again rather than
 * acknowledging a file with no data. The next arrival takes the id again
 * (no AUTOINCREMENT) and lands whole. */
static void test_a_commit_whose_data_row_went_fails(void)
{
    cache_txn *t = NULL;
    chute_meta m;
    CHECK(reaped_within(20));
    CHECK_EQ_INT(cache_item_begin(C, "alice", "row-gone", &t), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(t, "hello", 5), CHUTE_OK);
    long long id = sql_count("SELECT id FROM data WHERE item='row-gone'");
    CHECK_EQ_INT(id, sql_count("SELECT max(id) FROM data"));
    CHECK_EQ_INT(sql_exec("DELETE FROM data WHERE item='row-gone'"), SQLITE_OK);
    meta_for(&m, "row-gone.txt", 5);
    CHECK(cache_item_commit(t, &m, NULL, 0) != CHUTE_OK);
    bool seen = true;
    CHECK_EQ_INT(cache_seen(C, "alice", "row-gone", &seen), CHUTE_OK);
    CHECK(!seen);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", "row-gone.txt", &n), CHUTE_ERR_NOT_FOUND);
    char out[4096];
    CHECK_EQ_INT(receive("took-its-id", "took-its-id.txt", (const uint8_t *)"world!", 6, out),
                 CHUTE_OK);
    CHECK_EQ_INT(sql_count("SELECT id FROM data WHERE item='took-its-id' AND complete=1"), id);
    char back[8];
    size_t got = 0;
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &n), CHUTE_OK);
    CHECK_EQ_INT(cache_read(C, &n, 0, back, sizeof back, &got), CHUTE_OK);
    CHECK(got == 6 && memcmp(back, "world!", 6) == 0);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    CHECK(reaped_within(20));
}

/* An abort whose data row went and whose id a new arrival took leaves
 * the new arrival's row alone: it commits, with its row. */
static void test_an_abort_leaves_a_row_that_took_its_id(void)
{
    cache_txn *a = NULL, *b = NULL;
    chute_meta m;
    char out[4096];
    CHECK(reaped_within(20));
    CHECK_EQ_INT(cache_item_begin(C, "alice", "aborted", &a), CHUTE_OK);
    CHECK_EQ_INT(cache_item_append(a, "hello", 5), CHUTE_OK);
    long long id = sql_count("SELECT id FROM data WHERE item='aborted'");
    CHECK_EQ_INT(sql_exec("DELETE FROM data WHERE item='aborted'"), SQLITE_OK);
    CHECK_EQ_INT(cache_item_begin(C, "alice", "took-aborted-id", &b), CHUTE_OK);
    CHECK_EQ_INT(sql_count("SELECT id FROM data WHERE item='took-aborted-id'"), id);
    cache_item_abort(a);
    CHECK_EQ_INT(cache_item_append(b, "world!", 6), CHUTE_OK);
    meta_for(&m, "took-aborted-id.txt", 6);
    CHECK_EQ_INT(cache_item_commit(b, &m, out, sizeof out), CHUTE_OK);
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM data WHERE item='took-aborted-id' AND complete=1"),
                 1);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
    CHECK(reaped_within(20));
}

/* A reaper that has freed a doomed row's chunks deletes the row only if
 * it is still doomed: here another (the test) freed it first and a new
 * arrival took its id meanwhile — the reaper leaves that row alone. The
 * test holds the index's write lock while the reaper comes to its last
 * step. */
static void test_a_reaper_leaves_a_row_no_longer_doomed(void)
{
    char p[128], out[4096], sql[512];
    snprintf(p, sizeof p, "%s/c.db", dir);
    CHECK(reaped_within(20));
    cache_close(C);
    CHECK_EQ_INT(cache_open_without_reaper(p, &C), CHUTE_OK);
    CHECK_EQ_INT(receive("reaped-twice", "reaped-twice.txt", NULL, 0, out), CHUTE_OK);
    long long id = sql_count("SELECT max(id) FROM data");
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);   /* doomed, no reaper */
    sqlite3 *lock = NULL;
    CHECK_EQ_INT(sqlite3_open(p, &lock), SQLITE_OK);
    sqlite3_busy_timeout(lock, 5000);
    CHECK_EQ_INT(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    cache *r = NULL;
    CHECK_EQ_INT(cache_open(p, &r), CHUTE_OK);   /* its reaper: finds the row, waits */
    usleep(300 * 1000);
    snprintf(sql, sizeof sql,
             "DELETE FROM doomed WHERE data=%lld; DELETE FROM data WHERE id=%lld;"
             " INSERT INTO data(peer, item, store) VALUES('alice', 'took-reaped-id', 1);"
             " COMMIT", id, id);
    CHECK_EQ_INT(sqlite3_exec(lock, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(lock);
    cache_close(r);   /* the reaper's last step is done */
    CHECK_EQ_INT(sql_count("SELECT id FROM data WHERE item='took-reaped-id'"), id);
    CHECK_EQ_INT(sql_exec("DELETE FROM data WHERE item='took-reaped-id'"), SQLITE_OK);
    cache_close(C);
    CHECK_EQ_INT(cache_open(p, &C), CHUTE_OK);
}

/* A folder with 100,000 files of one name: the next arrival still gets a
 * name of its own, after a bounded search, and overwrites none. */
static void test_a_hundred_thousand_files_of_one_name_leave_room_for_one_more(void)
{
    char out[4096];
    uint8_t one = '1';
    CHECK_EQ_INT(receive("same-0", "same.txt", &one, 1, out), CHUTE_OK);
    CHECK(strcmp(out, "same.txt") == 0);
    /* " (2)" … " (100001)" taken, as that many arrivals would have */
    CHECK_EQ_INT(sql_exec("WITH RECURSIVE k(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM k"
                          " WHERE n < 100001) INSERT INTO nodes(peer, parent, name, is_dir, mode,"
                          " mtime_sec, mtime_nsec) SELECT 'alice', (SELECT parent FROM nodes"
                          " WHERE peer='alice' AND name='same.txt'), 'same (' || n || ').txt',"
                          " 0, 420, 0, 0 FROM k"), SQLITE_OK);
    CHECK_EQ_INT(receive("same-next", "same.txt", &one, 1, out), CHUTE_OK);
    CHECK(strncmp(out, "same (", 6) == 0);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &n), CHUTE_OK);
    CHECK(n.size == 1);
    CHECK(sql_count("SELECT count(*) FROM nodes WHERE peer='alice' AND name LIKE 'same%'") == 100002);
}

/* Chunks in the chunk file, asked without waiting: -1 while it is locked. */
static long long chunks_now(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/c-data.db", dir);
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    long long n = -1;
    if (sqlite3_open(p, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* A download's batch, spilled past its page cache, holds the chunk file
 * locked; names, listings and counts come from the index meanwhile, and
 * a checkpoint lets go of the file with what was appended on disk. */
static void test_names_stay_readable_while_a_batch_holds_the_chunks(void)
{
    char out[4096];
    CHECK_EQ_INT(receive_chunks("listed", 2, out), CHUTE_OK);
    long long before = chunks_now();
    cache_txn *t;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "holding", &t), CHUTE_OK);
    static uint8_t chunk[CACHE_CHUNK];
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    CHECK_EQ_INT(chunks_now(), -1);                       /* the file is held */
    cache_node n;
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &n), CHUTE_OK);
    int count = 0;
    CHECK_EQ_INT(cache_list(C, "alice", 0, count_cb, &count), CHUTE_OK);
    CHECK(count > 0);
    cache_counts_t k;
    CHECK_EQ_INT(cache_counts(C, &k), CHUTE_OK);
    CHECK_EQ_INT(k.incoming, 1);
    CHECK_EQ_INT(cache_item_checkpoint(t), CHUTE_OK);
    CHECK_EQ_INT(chunks_now(), before + 100);
    cache_item_abort(t);
    CHECK_EQ_INT(chunks_now(), before);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
}

typedef struct {
    cache_node n;
    atomic_int done;
    chute_status st;
    size_t got;
} reading;

static void *read_in_thread(void *arg)
{
    reading *r = arg;
    uint8_t buf[256];
    r->st = cache_read(C, &r->n, 0, buf, sizeof buf, &r->got);
    atomic_store(&r->done, 1);
    return NULL;
}

/* A read of an inbox file that finds the chunk file held by a download
 * ends the download's batch at its next chunk, instead of waiting for the
 * whole batch (or the busy timeout). */
static void test_a_waiting_reader_ends_the_batch(void)
{
    char out[4096];
    CHECK_EQ_INT(receive_chunks("read-me", 1, out), CHUTE_OK);
    reading r = {.st = CHUTE_ERR_DB};
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &r.n), CHUTE_OK);
    cache_txn *t;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "long-batch", &t), CHUTE_OK);
    static uint8_t chunk[CACHE_CHUNK];
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    CHECK_EQ_INT(chunks_now(), -1);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, read_in_thread, &r), 0);
    /* Go on appending, well short of a full batch, until the read is done. */
    int more = 0;
    for (; more < 300 && !atomic_load(&r.done); more++) {
        usleep(5000);
        CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    }
    pthread_join(th, NULL);
    CHECK_EQ_INT(r.st, CHUTE_OK);
    CHECK_EQ_INT(r.got, 256);
    CHECK(more < 300);
    cache_item_abort(t);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
}

typedef struct {
    cache_node n;
    atomic_int stop, dropping, during;   /* during: reads begun and ended while dropping */
} reading_on;

static void *read_until_stopped(void *arg)
{
    reading_on *r = arg;
    uint8_t buf[256];
    size_t got;
    while (!atomic_load(&r->stop)) {
        int began = atomic_load(&r->dropping);
        chute_status st = cache_read(C, &r->n, 0, buf, sizeof buf, &got);
        if (began && atomic_load(&r->dropping) && st == CHUTE_OK) atomic_fetch_add(&r->during, 1);
        usleep(2000);
    }
    return NULL;
}

/* Dropping a big partial (its sender cancelled it, a chunk failed) frees
 * its chunks a few at a time: inbox reads get in between, instead of
 * waiting for the whole free (seconds per GiB) or failing at the busy
 * timeout. */
static void test_dropping_a_big_partial_lets_readers_in(void)
{
    char out[4096];
    CHECK_EQ_INT(receive_chunks("read-while-dropped", 1, out), CHUTE_OK);
    reading_on r;
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(cache_lookup(C, "alice", out, &r.n), CHUTE_OK);
    cache_txn *t;
    CHECK_EQ_INT(cache_item_begin(C, "alice", "big-partial", &t), CHUTE_OK);
    static uint8_t chunk[CACHE_CHUNK];
    for (int i = 0; i < 2048; i++) {   /* 128 MiB */
        chunk[0] = (uint8_t)i;
        CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    }
    CHECK_EQ_INT(cache_item_checkpoint(t), CHUTE_OK);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, read_until_stopped, &r), 0);
    usleep(20000);
    atomic_store(&r.dropping, 1);
    cache_item_abort(t);
    atomic_store(&r.dropping, 0);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK(atomic_load(&r.during) >= 3);
    CHECK_EQ_INT(sql_count("SELECT count(*) FROM data WHERE complete=0"), 0);
    CHECK_EQ_INT(cache_remove(C, "alice", out), CHUTE_OK);
}

/* A batch whose commit fails takes its chunks with it: the commit of the
 * file must fail then too, not show a file with a hole (the storer's idle
 * checkpoint can be that commit, with no chunk left to append after it).
 * The disk fills here by a file size limit on a cache of its own. */
static void test_a_batch_lost_in_a_checkpoint_fails_the_file(void)
{
    char d[] = "/tmp/chute-test-cache-lost-XXXXXX", p[128], out[4096];
    cache *c = NULL;
    if (!mkdtemp(d)) { CHECK(0); return; }
    snprintf(p, sizeof p, "%s/c.db", d);
    CHECK_EQ_INT(cache_open(p, &c), CHUTE_OK);
    cache_txn *t = NULL;
    CHECK_EQ_INT(cache_item_begin(c, "alice", "lost", &t), CHUTE_OK);
    static uint8_t chunk[CACHE_CHUNK];
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    struct stat sb;
    snprintf(p, sizeof p, "%s/c-data.db", d);
    CHECK_EQ_INT(stat(p, &sb), 0);
    struct rlimit was, full = {.rlim_cur = (rlim_t)sb.st_size};
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &was), 0);
    full.rlim_max = was.rlim_max;
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &full), 0);
    CHECK(cache_item_checkpoint(t) != CHUTE_OK);        /* the disk is "full" */
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &was), 0);
    signal(SIGXFSZ, old);
    /* room again, but the ten chunks are gone: nothing may commit */
    CHECK(cache_item_append(t, chunk, sizeof chunk) != CHUTE_OK);
    chute_meta m;
    meta_for(&m, "lost.bin", 11 * CACHE_CHUNK);
    CHECK(cache_item_commit(t, &m, out, sizeof out) != CHUTE_OK);
    cache_node n;
    CHECK_EQ_INT(cache_lookup(c, "alice", "lost.bin", &n), CHUTE_ERR_NOT_FOUND);
    /* the next try of the item starts over and lands whole */
    CHECK_EQ_INT(cache_item_begin(c, "alice", "lost", &t), CHUTE_OK);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(cache_item_append(t, chunk, sizeof chunk), CHUTE_OK);
    meta_for(&m, "lost.bin", 10 * CACHE_CHUNK);
    CHECK_EQ_INT(cache_item_commit(t, &m, out, sizeof out), CHUTE_OK);
    size_t got = 0;
    static uint8_t back[CACHE_CHUNK];
    CHECK_EQ_INT(cache_lookup(c, "alice", "lost.bin", &n), CHUTE_OK);
    CHECK_EQ_INT(cache_read(c, &n, 9 * CACHE_CHUNK, back, sizeof back, &got), CHUTE_OK);
    CHECK_EQ_INT(got, CACHE_CHUNK);
    cache_close(c);
    snprintf(p, sizeof p, "rm -rf %s", d);
    if (system(p) != 0) fprintf(stderr, "cleanup failed\n");
}

int main(void)
{
    char p[128];
    if (sodium_init() < 0 || !mkdtemp(dir)) return 1;
    snprintf(p, sizeof p, "%s/c.db", dir);
    if (cache_open(p, &C) != CHUTE_OK) return 1;
    RUN(test_commit_and_random_read);
    RUN(test_partial_invisible_and_abort);
    RUN(test_hostile_paths_and_collisions);
    RUN(test_remove_rename);
    RUN(test_a_peer_holds_its_folder_until_its_last_node_goes);
    RUN(test_quarantine_and_cursor);
    RUN(test_resume_keeps_whole_chunks);
    RUN(test_drop_partials_keeps_files);
    RUN(test_uses_a_rollback_journal);
    RUN(test_adopts_a_legacy_cache_once);
    RUN(test_reads_and_reaps_a_cache_of_0_2);
    RUN(test_a_big_arrival_is_not_kept_in_memory);
    RUN(test_the_chunk_journal_keeps_nothing_after_a_commit);
    RUN(test_a_removed_file_leaves_no_plaintext);
    RUN(test_removing_a_file_frees_its_chunks_in_the_background);
    RUN(test_a_file_replaced_by_rename_is_reaped);
    RUN(test_the_next_open_reaps_what_a_crash_left_doomed);
    RUN(test_the_reaper_opens_again_after_a_failed_open);
    RUN(test_removing_a_file_gives_its_space_back);
    RUN(test_an_old_chunk_file_is_rebuilt_once_it_holds_little);
    RUN(test_a_commit_whose_data_row_went_fails);
    RUN(test_an_abort_leaves_a_row_that_took_its_id);
    RUN(test_a_reaper_leaves_a_row_no_longer_doomed);
    RUN(test_a_hundred_thousand_files_of_one_name_leave_room_for_one_more);
    RUN(test_names_stay_readable_while_a_batch_holds_the_chunks);
    RUN(test_a_waiting_reader_ends_the_batch);
    RUN(test_dropping_a_big_partial_lets_readers_in);
    RUN(test_a_batch_lost_in_a_checkpoint_fails_the_file);
    cache_close(C);
    snprintf(p, sizeof p, "rm -rf %s", dir);
    if (system(p) != 0) fprintf(stderr, "cleanup failed\n");
    return unit_done();
}
