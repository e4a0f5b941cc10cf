/* test_queue.c — queue states, claim order, cancel, move, attrs, reopen. */
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "queue.h"
#include "unit.h"

static char dbpath[] = "/tmp/chute-test-queue-XXXXXX";

static queue *fresh(void)
{
    queue *q = NULL;
    char p[64];
    snprintf(p, sizeof p, "%s/q.db", dbpath);
    CHECK_EQ_INT(queue_open(p, &q), CHUTE_OK);
    return q;
}

/* A queue of its own, for tests that count or claim everything in it. */
static queue *fresh_named(const char *name)
{
    queue *q = NULL;
    char p[96];
    snprintf(p, sizeof p, "%s/%s.db", dbpath, name);
    CHECK_EQ_INT(queue_open(p, &q), CHUTE_OK);
    return q;
}

static void item(queue_item *it, const char *peer, const char *path)
{
    memset(it, 0, sizeof *it);
    queue_new_id(it->id);
    snprintf(it->peer, sizeof it->peer, "%s", peer);
    snprintf(it->path, sizeof it->path, "%s", path);
    it->size = 10; it->blob_size = 200; it->mode = 0644;
    it->mtime_sec = 1700000000;
    it->meta_len = 5;
    memcpy(it->meta, "meta!", 5);
}

static void test_ids(void)
{
    char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];
    queue_new_id(a); queue_new_id(b);
    CHECK_EQ_INT(strlen(a), QUEUE_ID_LEN);
    CHECK(strcmp(a, b) != 0);
    CHECK(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == QUEUE_ID_LEN);
}

static void test_lifecycle(void)
{
    queue *q = fresh();
    queue_item a, b, got;
    item(&a, "home", "a.txt");
    item(&b, "home", "dir/b.txt");
    CHECK_EQ_INT(queue_insert(q, &a, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &a, NULL, NULL), CHUTE_ERR_EXISTS);
    CHECK_EQ_INT(queue_insert(q, &b, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_find_active(q, "home", "a.txt", &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0 && got.state == QUEUE_QUEUED);
    CHECK_EQ_INT(got.meta_len, 5);

    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0 && got.state == QUEUE_UPLOADING && got.attempts == 1);
    CHECK_EQ_INT(queue_set_progress(q, a.id, 100), CHUTE_OK);
    CHECK_EQ_INT(queue_set_sent(q, a.id, 150), CHUTE_OK);   /* a request under way */
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.progress == 100 && got.sent == 150);
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "relay down", 5000), CHUTE_OK);
    /* only an item being sent takes it: the uploader stops on NOT_FOUND */
    CHECK_EQ_INT(queue_set_sent(q, a.id, 160), CHUTE_ERR_NOT_FOUND);
    /* a waits until t=5000, so b is next now */
    CHECK_EQ_INT(queue_claim_next(q, 10, &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    CHECK_EQ_INT(queue_set_sent(q, b.id, 70), CHUTE_OK);
    /* b is being sent: no other worker gets it */
    CHECK_EQ_INT(queue_claim_next(q, 10, &got), CHUTE_ERR_NOT_FOUND);
    /* until a restart requeues it, as after a kill: what its request had
     * sent counts no more */
    CHECK_EQ_INT(queue_requeue_interrupted(q), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED && got.sent == got.progress);
    CHECK_EQ_INT(queue_requeue_interrupted(q), CHUTE_OK);     /* none left: still OK */
    CHECK_EQ_INT(queue_claim_next(q, 10, &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0 && got.attempts == 2);
    CHECK_EQ_INT(queue_set_error(q, b.id, "x"), CHUTE_ERR_NOT_FOUND);  /* not on relay yet */
    CHECK_EQ_INT(queue_mark_uploaded(q, b.id), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_UPLOADED && got.progress == 200);
    CHECK_EQ_INT(queue_set_error(q, b.id, "expired on the relay"), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(strcmp(got.last_error, "expired on the relay") == 0 && got.state == QUEUE_UPLOADED);
    CHECK_EQ_INT(queue_mark_delivered(q, b.id), CHUTE_OK);
    CHECK_EQ_INT(queue_find_active(q, "home", "dir/b.txt", &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_find_latest(q, "home", "dir/b.txt", &got), CHUTE_OK);
    CHECK(got.state == QUEUE_DELIVERED);

    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    /* what the failed request sent is not on the relay: only what is */
    CHECK(strcmp(got.last_error, "relay down") == 0 && got.progress == 100 && got.sent == 100);
    CHECK_EQ_INT(queue_claim_next(q, 5000, &got), CHUTE_OK);
    queue_counts_t k;
    CHECK_EQ_INT(queue_counts(q, &k), CHUTE_OK);
    CHECK(k.uploading == 1 && k.delivered == 1 && k.queued == 0);
    queue_close(q);
}

static void test_cancel(void)
{
    queue *q = fresh();
    queue_item a, b, got;
    item(&a, "p", "x"); item(&b, "p", "y");
    queue_insert(q, &a, NULL, NULL); queue_insert(q, &b, NULL, NULL);
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_OK);            /* never sent */
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_ERR_NOT_FOUND);   /* nothing left */
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    CHECK_EQ_INT(queue_cancel(q, b.id), CHUTE_OK);            /* mid-upload */
    CHECK_EQ_INT(queue_set_progress(q, b.id, 1), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    CHECK_EQ_INT(queue_relay_cancel_done(q, b.id, got.attempts), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_ERR_NOT_FOUND);
    queue_close(q);
}

/* An attempt that failed back to queued may have created the item on the
 * relay: cancelling it owes a DELETE, and its meta is fixed. */
static void test_failed_attempt_owes_relay_cancel(void)
{
    queue *q = fresh();
    queue_item a, got;
    item(&a, "p", "failed-once");
    queue_insert(q, &a, NULL, NULL);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0);
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "relay unreachable", 0), CHUTE_OK);
    CHECK_EQ_INT(queue_update_attrs(q, a.id, 0600, 1, 0, (const uint8_t *)"m", 1),
                 CHUTE_ERR_REFUSED);
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0);
    queue_close(q);
}

/* A worker's create can land after the tracker's DELETE found nothing:
 * the copy it made is owed a DELETE again, even after the cancel was done. */
static void test_a_relay_copy_made_after_its_cancel_is_owed_a_delete_again(void)
{
    queue *q = fresh_named("owed");
    queue_item a, b, got;
    item(&a, "p", "late-create"); item(&b, "p", "still-queued");
    queue_insert(q, &a, NULL, NULL); queue_insert(q, &b, NULL, NULL);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_OK);
    CHECK_EQ_INT(queue_relay_cancel_done(q, a.id, got.attempts), CHUTE_OK);   /* 404: not there yet */
    CHECK_EQ_INT(queue_relay_cancel_owed(q, a.id), CHUTE_OK);   /* then the create landed */
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0 && got.relay_cancel && got.state == QUEUE_CANCELLED);
    /* the other order: the tracker's 404 handled only after the worker's
     * DELETE failed and owed it again; that done must not settle it */
    uint32_t seen = got.attempts;
    CHECK_EQ_INT(queue_relay_cancel_owed(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_relay_cancel_done(q, a.id, seen), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0 && got.relay_cancel);
    CHECK_EQ_INT(queue_relay_cancel_done(q, a.id, got.attempts), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, time(NULL), &got), CHUTE_ERR_NOT_FOUND);
    /* only a cancelled row can owe one: an active one is not touched */
    CHECK_EQ_INT(queue_relay_cancel_owed(q, b.id), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED && !got.relay_cancel);
    queue_close(q);
}

static void test_insert_replaces(void)
{
    queue *q = fresh();
    queue_item a, b, got;
    char old[QUEUE_ID_LEN + 1];
    item(&a, "r", "same.txt"); item(&b, "r", "same.txt");
    CHECK_EQ_INT(queue_insert(q, &a, NULL, old), CHUTE_OK);
    CHECK(old[0] == '\0');
    CHECK_EQ_INT(queue_insert(q, &b, NULL, old), CHUTE_OK);
    CHECK(strcmp(old, a.id) == 0);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_CANCELLED && !got.relay_cancel);
    CHECK_EQ_INT(queue_find_active(q, "r", "same.txt", &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    queue_close(q);
}

static int count_fn(const queue_item *it, void *arg) { (void)it; (*(int *)arg)++; return 0; }

static void test_move_attrs_reopen(void)
{
    queue *q = fresh();
    queue_item a, b, c, got;
    item(&a, "m", "d/one"); item(&b, "m", "d/sub/two"); item(&c, "m", "dd/three");
    queue_insert(q, &a, NULL, NULL); queue_insert(q, &b, NULL, NULL); queue_insert(q, &c, NULL, NULL);
    CHECK_EQ_INT(queue_move(q, "m", "d", "e"), CHUTE_OK);
    CHECK_EQ_INT(queue_find_active(q, "m", "e/one", &got), CHUTE_OK);
    CHECK_EQ_INT(queue_find_active(q, "m", "e/sub/two", &got), CHUTE_OK);
    CHECK_EQ_INT(queue_find_active(q, "m", "dd/three", &got), CHUTE_OK);
    CHECK_EQ_INT(queue_update_attrs(q, a.id, 0600, 42, 7, (const uint8_t *)"new", 3), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.mode == 0600 && got.mtime_sec == 42 && got.meta_len == 3);
    queue_claim_next(q, 0, &got);
    CHECK_EQ_INT(queue_update_attrs(q, a.id, 0644, 1, 1, (const uint8_t *)"x", 1), CHUTE_ERR_REFUSED);
    queue_close(q);
    /* survives close/reopen, as across a kill */
    q = fresh();
    int n = 0;
    CHECK_EQ_INT(queue_each_active(q, count_fn, &n), CHUTE_OK);
    CHECK(n >= 3);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_UPLOADING);
    queue_close(q);
}

static void test_age_parts_round_trip_and_legacy_rows_have_none(void)
{
    queue *q = fresh();
    queue_item a, b;
    item(&a, "home", "age.txt");
    item(&b, "home", "legacy.txt");
    queue_age in, out;
    memset(&in, 0, sizeof in);
    in.header_len = 170;
    randombytes_buf(in.header, in.header_len);
    randombytes_buf(in.nonce, sizeof in.nonce);
    randombytes_buf(in.file_key, sizeof in.file_key);
    CHECK_EQ_INT(queue_insert(q, &a, &in, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &b, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_get_age(q, a.id, &out), CHUTE_OK);
    CHECK_EQ_INT(out.header_len, 170);
    CHECK_MEM(out.header, in.header, 170);
    CHECK_MEM(out.nonce, in.nonce, sizeof in.nonce);
    CHECK_MEM(out.file_key, in.file_key, sizeof in.file_key);
    queue_age_wipe(&out);
    CHECK_EQ_INT(out.header_len, 0);
    CHECK_EQ_INT(queue_get_age(q, b.id, &out), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get_age(q, "nosuchitemnosuchitem00", &out), CHUTE_ERR_NOT_FOUND);
    in.header_len = QUEUE_AGE_HEADER_MAX + 1;
    item(&a, "home", "too-long.txt");
    CHECK_EQ_INT(queue_insert(q, &a, &in, NULL), CHUTE_ERR_ARG);
    queue_close(q);
}

/* A chutefs.db of the version that sealed whole blobs: its rows must still
 * be there, and still go as .age, after this version opens it. */
static void test_queue_of_the_previous_version_is_migrated_not_lost(void)
{
    char p[96];
    snprintf(p, sizeof p, "%s/old.db", dbpath);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(p, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db,
        "CREATE TABLE queue ("
        " id TEXT PRIMARY KEY, peer TEXT NOT NULL, path TEXT NOT NULL,"
        " state INTEGER NOT NULL, size INTEGER NOT NULL, blob_size INTEGER NOT NULL,"
        " progress INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL,"
        " mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,"
        " header_mac BLOB NOT NULL, meta BLOB NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',"
        " next_attempt INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
        " updated INTEGER NOT NULL, relay_cancel INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO queue(id,peer,path,state,size,blob_size,mode,mtime_sec,mtime_nsec,"
        " header_mac,meta,created,updated) VALUES('OLDOLDOLDOLDOLDOLDOLD0','home',"
        " 'old.txt',0,10,200,420,1,0,zeroblob(32),x'6d657461',1,1);",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    for (int round = 0; round < 2; round++) {   /* the second open finds it done */
        queue *q = NULL;
        CHECK_EQ_INT(queue_open(p, &q), CHUTE_OK);
        if (!q) return;
        queue_item got;
        queue_age age;
        if (round == 0) {   /* the old row is due and claimed like any other */
            CHECK_EQ_INT(queue_claim_next(q, 10, &got), CHUTE_OK);
            CHECK(strcmp(got.id, "OLDOLDOLDOLDOLDOLDOLD0") == 0);
        }
        CHECK_EQ_INT(queue_get(q, "OLDOLDOLDOLDOLDOLDOLD0", &got), CHUTE_OK);
        CHECK(strcmp(got.path, "old.txt") == 0 && got.blob_size == 200);
        CHECK_EQ_INT(queue_get_age(q, got.id, &age), CHUTE_ERR_NOT_FOUND);
        queue_item n;
        item(&n, "home", round ? "new2.txt" : "new.txt");
        memset(&age, 0, sizeof age);
        age.header_len = 3;
        CHECK_EQ_INT(queue_insert(q, &n, &age, NULL), CHUTE_OK);
        CHECK_EQ_INT(queue_get_age(q, n.id, &age), CHUTE_OK);
        queue_close(q);
    }
}

static queue_age some_age(void)
{
    queue_age a;
    memset(&a, 0, sizeof a);
    a.header_len = 100;
    randombytes_buf(a.header, a.header_len);
    randombytes_buf(a.file_key, sizeof a.file_key);
    return a;
}

/* A file sent while written: claimed like any row, invisible at its path
 * and replacing nothing until sealed, then an ordinary item that replaces
 * the older one at its (new) path. */
static void test_growing_row_is_claimed_hidden_then_sealed_in_place(void)
{
    queue *q = fresh_named("growing");
    queue_item old, g, got;
    queue_age age = some_age();
    item(&old, "home", "log.txt");
    CHECK_EQ_INT(queue_insert(q, &old, &age, NULL), CHUTE_OK);
    item(&g, "home", "log.txt");
    g.growing = true;
    g.size = g.blob_size = 0;
    g.meta_len = 0;
    CHECK_EQ_INT(queue_insert(q, &g, NULL, NULL), CHUTE_ERR_ARG);   /* needs its age parts */
    char replaced[QUEUE_ID_LEN + 1] = "x";
    CHECK_EQ_INT(queue_insert(q, &g, &age, replaced), CHUTE_OK);
    CHECK(replaced[0] == '\0');                       /* the older item stays queued */
    CHECK_EQ_INT(queue_find_active(q, "home", "log.txt", &got), CHUTE_OK);
    CHECK(strcmp(got.id, old.id) == 0);
    queue_counts_t n;
    CHECK_EQ_INT(queue_counts(q, &n), CHUTE_OK);
    CHECK(n.queued == 1);                              /* still being written */
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);    /* the older one first */
    CHECK(strcmp(got.id, old.id) == 0);
    CHECK_EQ_INT(queue_claim_next_sealed(q, 0, &got), CHUTE_ERR_NOT_FOUND);  /* passed over */
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, g.id) == 0 && got.growing && got.state == QUEUE_UPLOADING);
    CHECK_EQ_INT(queue_set_progress(q, g.id, 4096), CHUTE_OK);

    /* closed under another name: sealed there, replacing nothing at log.txt */
    snprintf(g.path, sizeof g.path, "%s", "log-final.txt");
    g.size = 1000; g.blob_size = 1200; g.mode = 0600;
    memcpy(g.meta, "sealed", 6); g.meta_len = 6;
    CHECK_EQ_INT(queue_seal_growing(q, &g, replaced), CHUTE_OK);
    CHECK(replaced[0] == '\0');
    CHECK_EQ_INT(queue_get(q, g.id, &got), CHUTE_OK);
    CHECK(!got.growing && got.state == QUEUE_UPLOADING && got.progress == 4096);
    CHECK(got.size == 1000 && got.blob_size == 1200 && got.meta_len == 6);
    CHECK(strcmp(got.path, "log-final.txt") == 0);
    CHECK_EQ_INT(queue_seal_growing(q, &g, replaced), CHUTE_ERR_NOT_FOUND);   /* once */

    /* one more at log.txt, sealed there: the older item is replaced */
    queue_item h;
    item(&h, "home", "log.txt");
    h.growing = true;
    CHECK_EQ_INT(queue_insert(q, &h, &age, NULL), CHUTE_OK);
    h.growing = false;
    CHECK_EQ_INT(queue_seal_growing(q, &h, replaced), CHUTE_OK);
    CHECK(strcmp(replaced, old.id) == 0);
    CHECK_EQ_INT(queue_get(q, old.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_CANCELLED && got.relay_cancel);
    queue_close(q);
}

/* Growing rows a crash left: cancelled at the next start, the relay copy
 * owed a DELETE once any attempt was made; sealed rows are untouched. */
static void test_growing_rows_of_an_earlier_run_are_cancelled(void)
{
    queue *q = fresh_named("crashed");
    queue_item a, b, c, got;
    queue_age age = some_age();
    item(&a, "home", "never-claimed.bin");
    item(&b, "home", "claimed.bin");
    item(&c, "home", "sealed.bin");
    a.growing = b.growing = true;
    CHECK_EQ_INT(queue_insert(q, &a, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &b, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &c, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);   /* a */
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "down", 0), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);   /* a again */
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "down", 0), CHUTE_OK);
    queue_close(q);
    q = fresh_named("crashed");
    CHECK_EQ_INT(queue_cancel_growing(q), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel_growing(q), CHUTE_OK);          /* none left: still OK */
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_CANCELLED && got.relay_cancel);  /* attempted */
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_CANCELLED && !got.relay_cancel); /* never sent */
    CHECK_EQ_INT(queue_get(q, c.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED);
    CHECK_EQ_INT(queue_seal_growing(q, &a, NULL), CHUTE_ERR_NOT_FOUND);
    queue_close(q);
}

/* A growing row cancelled at start (its file never closed) forgets its
 * key as any cancelled row does: no copy of the file then opens it. */
static void test_cancelled_growing_rows_forget_their_key(void)
{
    queue *q = fresh_named("growforget");
    queue_item a, c, got;
    queue_age age = some_age(), out;
    item(&a, "home", "growing.bin");
    item(&c, "home", "sealed.bin");
    a.growing = true;
    CHECK_EQ_INT(queue_insert(q, &a, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &c, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel_growing(q), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_CANCELLED);
    CHECK_EQ_INT(queue_get_age(q, a.id, &out), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get_age(q, c.id, &out), CHUTE_OK);   /* still owed */
    queue_close(q);
    char p[96];
    snprintf(p, sizeof p, "%s/growforget.db", dbpath);
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *s;
    int left = -1;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM queue WHERE growing=1 AND "
                                        "(file_key IS NOT NULL OR age_nonce IS NOT NULL "
                                        "OR age_header IS NOT NULL)", -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW) left = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    CHECK_EQ_INT(left, 0);
}

/* Once delivered or cancelled, an item's key is gone from the file, and
 * a queue an earlier version left with such keys loses them at open. */
static void test_delivered_and_cancelled_items_forget_their_key(void)
{
    queue *q = fresh_named("forget");
    queue_item a, b, c, got;
    queue_age in, out;
    memset(&in, 0, sizeof in);
    in.header_len = 100;
    randombytes_buf(in.header, in.header_len);
    randombytes_buf(in.nonce, sizeof in.nonce);
    randombytes_buf(in.file_key, sizeof in.file_key);
    item(&a, "home", "delivered.txt");
    item(&b, "home", "cancelled.txt");
    item(&c, "home", "queued.txt");
    CHECK_EQ_INT(queue_insert(q, &a, &in, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &b, &in, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &c, &in, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0);
    CHECK_EQ_INT(queue_mark_uploaded(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_mark_delivered(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel(q, b.id), CHUTE_OK);
    CHECK_EQ_INT(queue_get_age(q, a.id, &out), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get_age(q, b.id, &out), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get_age(q, c.id, &out), CHUTE_OK);   /* still owed */
    queue_close(q);

    char p[96];
    snprintf(p, sizeof p, "%s/forget.db", dbpath);
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(p, &db), SQLITE_OK);
    int keys = -1;
    sqlite3_stmt *s;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM queue WHERE file_key IS NOT NULL",
                                    -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW) keys = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    CHECK_EQ_INT(keys, 1);
    /* as an earlier version left it: a delivered row with its key */
    sqlite3_stmt *u;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "UPDATE queue SET state=3 WHERE id=?", -1, &u, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(u, 1, c.id, -1, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(u), SQLITE_DONE);
    sqlite3_finalize(u);
    sqlite3_close(db);
    q = fresh_named("forget");
    CHECK_EQ_INT(queue_get_age(q, c.id, &out), CHUTE_ERR_NOT_FOUND);
    queue_close(q);
}

/* A DELETE owed on a relay that keeps failing waits on its own row; the
 * next owed one goes meanwhile. */
static void test_a_failing_relay_cancel_does_not_hold_up_the_others(void)
{
    queue *q = fresh_named("cancels");
    queue_item a, b, got;
    item(&a, "away", "a.txt");
    item(&b, "home", "b.txt");
    queue_insert(q, &a, NULL, NULL);
    queue_insert(q, &b, NULL, NULL);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_cancel(q, b.id), CHUTE_OK);
    int64_t now = time(NULL);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now, &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0);
    CHECK_EQ_INT(queue_relay_cancel_failed(q, a.id, now + 60), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now, &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    CHECK_EQ_INT(queue_relay_cancel_done(q, b.id, got.attempts), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now, &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now + 60, &got), CHUTE_OK);   /* its turn again */
    CHECK(strcmp(got.id, a.id) == 0);
    CHECK_EQ_INT(got.attempts, 1);
    queue_close(q);
}

/* The delivery checks walk only what is whole on the relay. */
static int count_visit(const queue_item *it, void *arg)
{
    (void)it;
    (*(int *)arg)++;
    return 0;
}

static void test_each_uploaded_walks_only_items_on_the_relay(void)
{
    queue *q = fresh_named("uploaded");
    queue_item a, b, c, got;
    item(&a, "home", "a"); item(&b, "home", "b"); item(&c, "home", "c");
    queue_insert(q, &a, NULL, NULL);
    queue_insert(q, &b, NULL, NULL);
    queue_insert(q, &c, NULL, NULL);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_mark_uploaded(q, got.id), CHUTE_OK);
    int n = 0;
    CHECK_EQ_INT(queue_each_uploaded(q, count_visit, &n), CHUTE_OK);
    CHECK_EQ_INT(n, 1);
    n = 0;
    CHECK_EQ_INT(queue_each_active(q, count_visit, &n), CHUTE_OK);
    CHECK_EQ_INT(n, 3);
    queue_close(q);
}

/* Paired again: the item goes under a new id from byte 0, and one on
 * the relay of the old pairing is queued again, due now. */
static void test_an_item_of_an_earlier_pairing_is_renewed_or_sent_again(void)
{
    queue *q = fresh_named("renew");
    queue_item a, b, got;
    item(&a, "home", "a"); item(&b, "home", "b");
    queue_insert(q, &a, NULL, NULL);
    queue_insert(q, &b, NULL, NULL);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_set_progress(q, got.id, 120), CHUTE_OK);
    char fresh_id[QUEUE_ID_LEN + 1];
    queue_new_id(fresh_id);
    CHECK_EQ_INT(queue_renew_id(q, got.id, fresh_id, (const uint8_t *)"new meta", 8), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, got.id, &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_get(q, fresh_id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_UPLOADING && got.progress == 0 && got.sent == 0);
    CHECK(got.meta_len == 8 && memcmp(got.meta, "new meta", 8) == 0);
    char other_id[QUEUE_ID_LEN + 1];
    queue_new_id(other_id);
    CHECK_EQ_INT(queue_renew_id(q, "no-such-item", other_id, (const uint8_t *)"m", 1),
                 CHUTE_ERR_NOT_FOUND);
    /* on the relay, waiting for the peer: queued again, due now */
    CHECK_EQ_INT(queue_mark_uploaded(q, fresh_id), CHUTE_OK);
    CHECK_EQ_INT(queue_send_again(q, fresh_id, "sent again"), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, fresh_id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED && got.progress == 0 && got.next_attempt == 0);
    CHECK(strcmp(got.last_error, "sent again") == 0);
    CHECK_EQ_INT(queue_send_again(q, fresh_id, "twice"), CHUTE_ERR_NOT_FOUND);
    /* a claim put back (waiting for something local) is no attempt */
    uint32_t tried = got.attempts;
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, fresh_id) == 0 && got.attempts == tried + 1);
    CHECK_EQ_INT(queue_put_back(q, fresh_id, "waiting", 12345), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, fresh_id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED && got.attempts == tried && got.next_attempt == 12345);
    CHECK(strcmp(got.last_error, "waiting") == 0);
    CHECK_EQ_INT(queue_put_back(q, fresh_id, "again", 0), CHUTE_ERR_NOT_FOUND);   /* not claimed */
    /* a cancelled item is neither */
    CHECK_EQ_INT(queue_cancel(q, b.id), CHUTE_OK);
    queue_new_id(fresh_id);
    CHECK_EQ_INT(queue_renew_id(q, b.id, fresh_id, (const uint8_t *)"m", 1), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_renew_id(q, b.id, "short", (const uint8_t *)"m", 1), CHUTE_ERR_ARG);
    queue_close(q);
}

/* A peer's relay that does not answer holds up only its items: the claim
 * passes over them, and its coming back releases only them. */
static void test_claims_and_releases_by_peer(void)
{
    queue *q = fresh_named("bypeer");
    queue_item a, b, c, got;
    item(&a, "far", "a"); item(&b, "home", "b"); item(&c, "near", "c");
    CHECK_EQ_INT(queue_insert(q, &a, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &b, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &c, NULL, NULL), CHUTE_OK);
    const char *skip[] = {"far", "near"};
    CHECK_EQ_INT(queue_claim_next_except(q, 0, false, skip, 2, &got), CHUTE_OK);
    CHECK(strcmp(got.id, b.id) == 0);
    CHECK_EQ_INT(queue_claim_next_except(q, 0, true, skip, 2, &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_claim_next_except(q, 0, true, skip, QUEUE_SKIP_MAX + 1, &got),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(queue_claim_next_except(q, 0, true, skip, 1, &got), CHUTE_OK);
    CHECK(strcmp(got.id, c.id) == 0);
    CHECK_EQ_INT(queue_mark_failed(q, c.id, "relay unreachable: x", 1000), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK(strcmp(got.id, a.id) == 0);
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "relay unreachable: y", 1000), CHUTE_OK);
    CHECK_EQ_INT(queue_retry_now_for(q, "relay unreachable: ", skip, 1), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.next_attempt == 0);
    CHECK_EQ_INT(queue_get(q, c.id, &got), CHUTE_OK);
    CHECK(got.next_attempt == 1000);                  /* near's relay is not back */
    CHECK_EQ_INT(queue_retry_now_for(q, "relay unreachable: ", skip, 0), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, c.id, &got), CHUTE_OK);
    CHECK(got.next_attempt == 1000);                  /* no peers: none */
    CHECK_EQ_INT(queue_retry_now(q, "relay unreachable: "), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, c.id, &got), CHUTE_OK);
    CHECK(got.next_attempt == 0);
    queue_close(q);
}

/* Items left uploading with no worker on them go back; held ones stay. */
static void test_requeue_unheld_leaves_the_held(void)
{
    queue *q = fresh_named("unheld");
    queue_item a, b, got;
    item(&a, "home", "a"); item(&b, "home", "b");
    CHECK_EQ_INT(queue_insert(q, &a, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_insert(q, &b, NULL, NULL), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, 0, &got), CHUTE_OK);
    const char *held[] = {b.id};
    CHECK_EQ_INT(queue_requeue_unheld(q, held, 1), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, a.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_UPLOADING);
    CHECK_EQ_INT(queue_requeue_unheld(q, held, 1), CHUTE_OK);   /* none: still OK */
    CHECK_EQ_INT(queue_requeue_unheld(q, NULL, 0), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, b.id, &got), CHUTE_OK);
    CHECK(got.state == QUEUE_QUEUED);
    queue_close(q);
}

/* A next try set by a wall clock since put back (days ahead) is due, and
 * so is a DELETE owed so; one within any backoff still waits. */
static void test_a_next_try_past_any_backoff_is_due(void)
{
    queue *q = fresh_named("clockback");
    queue_item a, got;
    item(&a, "home", "a");
    CHECK_EQ_INT(queue_insert(q, &a, NULL, NULL), CHUTE_OK);
    int64_t now = 1800000000;
    CHECK_EQ_INT(queue_claim_next(q, now, &got), CHUTE_OK);
    CHECK_EQ_INT(queue_mark_failed(q, a.id, "refused", now + 6 * 3600), CHUTE_OK);
    CHECK_EQ_INT(queue_claim_next(q, now, &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_claim_next(q, now - 3 * 86400, &got), CHUTE_OK);   /* clock set back */
    CHECK_EQ_INT(queue_cancel(q, a.id), CHUTE_OK);
    CHECK_EQ_INT(queue_relay_cancel_failed(q, a.id, now + 600), CHUTE_OK);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now, &got), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(queue_next_relay_cancel(q, now - 86400, &got), CHUTE_OK);
    queue_close(q);
}

int main(void)
{
    if (sodium_init() < 0 || !mkdtemp(dbpath)) return 1;
    RUN(test_ids);
    RUN(test_lifecycle);
    RUN(test_cancel);
    RUN(test_failed_attempt_owes_relay_cancel);
    RUN(test_a_relay_copy_made_after_its_cancel_is_owed_a_delete_again);
    RUN(test_move_attrs_reopen);
    RUN(test_insert_replaces);
    RUN(test_age_parts_round_trip_and_legacy_rows_have_none);
    RUN(test_queue_of_the_previous_version_is_migrated_not_lost);
    RUN(test_growing_row_is_claimed_hidden_then_sealed_in_place);
    RUN(test_growing_rows_of_an_earlier_run_are_cancelled);
    RUN(test_delivered_and_cancelled_items_forget_their_key);
    RUN(test_cancelled_growing_rows_forget_their_key);
    RUN(test_a_failing_relay_cancel_does_not_hold_up_the_others);
    RUN(test_each_uploaded_walks_only_items_on_the_relay);
    RUN(test_an_item_of_an_earlier_pairing_is_renewed_or_sent_again);
    RUN(test_claims_and_releases_by_peer);
    RUN(test_requeue_unheld_leaves_the_held);
    RUN(test_a_next_try_past_any_backoff_is_due);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dbpath);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return unit_done();
}
