/* test_devstate.c — the device state database: modes, schema, records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devstate.h"
#include "peername.h"
#include "unit.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/chute-devstate-XXXXXX");
    if (!mkdtemp(tmpdir))
        abort();
}

static void rm_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static devstate_peer sample_peer(const char *device_name)
{
    devstate_peer p;
    memset(&p, 0, sizeof p);
    snprintf(p.device_name, sizeof p.device_name, "%s", device_name);
    snprintf(p.recipient, sizeof p.recipient, "age1example");
    snprintf(p.relay_url, sizeof p.relay_url, "http://127.0.0.1:1");
    snprintf(p.inbox, sizeof p.inbox, "inboxid");
    snprintf(p.send_token, sizeof p.send_token, "sendtoken");
    snprintf(p.granted_sender, sizeof p.granted_sender, "senderid");
    memset(p.link_key, 0x42, sizeof p.link_key);
    return p;
}

static void test_open_creates_private_folder_and_file(void)
{
    make_tmpdir();
    char dir[300];
    snprintf(dir, sizeof dir, "%s/a/b/state", tmpdir);
    devstate *ds;
    CHECK_EQ_INT(devstate_open(dir, 0, &ds), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(devstate_open(dir, 1, &ds), CHUTE_OK);
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    char db[400];
    snprintf(db, sizeof db, "%s/state.db", dir);
    CHECK(stat(db, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    sqlite3_stmt *q;
    CHECK(sqlite3_prepare_v2(devstate_db(ds), "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(q, 0), DEVSTATE_SCHEMA_VERSION);
    sqlite3_finalize(q);
    devstate_close(ds);
    CHECK_EQ_INT(devstate_open(dir, 0, &ds), CHUTE_OK);
    devstate_close(ds);
    rm_tmpdir();
}

/* An existing folder is never chmod-ed: one that others can write is
 * refused, one that is merely readable keeps its mode. */
static void test_existing_folder_keeps_its_mode(void)
{
    make_tmpdir();
    devstate *ds;
    struct stat sb;
    CHECK(chmod(tmpdir, 0777) == 0);
    CHECK_EQ_INT(devstate_dir_usable(tmpdir), CHUTE_ERR_REFUSED);
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_ERR_REFUSED);
    CHECK(stat(tmpdir, &sb) == 0 && (sb.st_mode & 07777) == 0777);
    char db[400];
    snprintf(db, sizeof db, "%s/state.db", tmpdir);
    CHECK(access(db, F_OK) != 0);
    CHECK(chmod(tmpdir, 0755) == 0);
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    devstate_close(ds);
    CHECK(stat(tmpdir, &sb) == 0 && (sb.st_mode & 07777) == 0755);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/not/yet", tmpdir);
    CHECK_EQ_INT(devstate_dir_usable(missing), CHUTE_OK);
    CHECK_EQ_INT(devstate_dir_usable(db), CHUTE_ERR_IO);   /* a file, not a folder */
    rm_tmpdir();
}

static void test_newer_schema_is_refused(void)
{
    make_tmpdir();
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    CHECK(sqlite3_exec(devstate_db(ds), "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    devstate_close(ds);
    CHECK_EQ_INT(devstate_open(tmpdir, 0, &ds), CHUTE_ERR_UNSUPPORTED);
    rm_tmpdir();
}

static void test_device_is_recorded_once(void)
{
    make_tmpdir();
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    devstate_device d, got;
    CHECK_EQ_INT(devstate_get_device(ds, &got), CHUTE_ERR_NOT_FOUND);
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "laptop");
    snprintf(d.identity, sizeof d.identity, "AGE-SECRET-KEY-1XYZ");
    snprintf(d.recipient, sizeof d.recipient, "age1xyz");
    snprintf(d.relay_url, sizeof d.relay_url, "http://127.0.0.1:9");
    snprintf(d.inbox, sizeof d.inbox, "inbox");
    snprintf(d.owner_token, sizeof d.owner_token, "owner");
    CHECK_EQ_INT(devstate_set_device(ds, &d), CHUTE_OK);
    CHECK_EQ_INT(devstate_set_device(ds, &d), CHUTE_ERR_EXISTS);
    CHECK_EQ_INT(devstate_get_device(ds, &got), CHUTE_OK);
    CHECK(strcmp(got.name, "laptop") == 0);
    CHECK(strcmp(got.identity, "AGE-SECRET-KEY-1XYZ") == 0);
    CHECK(strcmp(got.owner_token, "owner") == 0);
    CHECK(strcmp(got.cacert, "") == 0);
    CHECK(strcmp(got.access_token, "") == 0);
    CHECK(got.created > 0);
    CHECK_EQ_INT(devstate_set_access_token(ds, "private relay token"), CHUTE_OK);
    CHECK_EQ_INT(devstate_get_device(ds, &got), CHUTE_OK);
    CHECK(strcmp(got.access_token, "private relay token") == 0);
    CHECK(strcmp(got.owner_token, "owner") == 0);
    devstate_device_wipe(&got);
    devstate_close(ds);
    rm_tmpdir();
}

/* A state.db made by schema 1 (before access tokens) opens, migrates and
 * keeps its device; the relay it names needs no access token. */
static void test_schema_1_is_migrated(void)
{
    make_tmpdir();
    char db[400];
    snprintf(db, sizeof db, "%s/state.db", tmpdir);
    sqlite3 *raw;
    CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw,
        "CREATE TABLE device (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL,"
        " identity TEXT NOT NULL, recipient TEXT NOT NULL, relay_url TEXT NOT NULL,"
        " cacert TEXT NOT NULL DEFAULT '', pin TEXT NOT NULL DEFAULT '', inbox TEXT NOT NULL,"
        " owner_token TEXT NOT NULL, created INTEGER NOT NULL);"
        "CREATE TABLE peers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " device_name TEXT NOT NULL, recipient TEXT NOT NULL, relay_url TEXT NOT NULL,"
        " inbox TEXT NOT NULL, send_token TEXT NOT NULL, granted_sender TEXT NOT NULL,"
        " link_key BLOB NOT NULL CHECK (length(link_key) = 32), paired_at INTEGER NOT NULL,"
        " gone_at INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO device VALUES (1, 'old', 'AGE-SECRET-KEY-1OLD', 'age1old',"
        " 'http://127.0.0.1:9', '', '', 'inbox', 'owner', 1700000000);"
        "PRAGMA user_version = 1;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 0, &ds), CHUTE_OK);
    devstate_device got;
    CHECK_EQ_INT(devstate_get_device(ds, &got), CHUTE_OK);
    CHECK(strcmp(got.name, "old") == 0);
    CHECK(strcmp(got.access_token, "") == 0);
    CHECK_EQ_INT(got.created, 1700000000);
    devstate_device_wipe(&got);
    devstate_close(ds);
    rm_tmpdir();
}

static void test_peers_get_distinct_folder_names(void)
{
    make_tmpdir();
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    devstate_peer a = sample_peer("home"), b = sample_peer("home"), c = sample_peer("work");
    CHECK_EQ_INT(devstate_add_peer(ds, &a), CHUTE_OK);
    CHECK_EQ_INT(devstate_add_peer(ds, &b), CHUTE_OK);
    CHECK_EQ_INT(devstate_add_peer(ds, &c), CHUTE_OK);
    CHECK(strcmp(a.name, "home") == 0);
    CHECK(strcmp(b.name, "home-2") == 0);
    CHECK(strcmp(c.name, "work") == 0);
    devstate_peer *list;
    size_t n;
    CHECK_EQ_INT(devstate_list_peers(ds, &list, &n), CHUTE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(strcmp(list[0].name, "home") == 0);
        CHECK(strcmp(list[1].name, "home-2") == 0);
        CHECK(strcmp(list[1].device_name, "home") == 0);
        CHECK(list[2].link_key[0] == 0x42);
    }
    devstate_peers_free(list, n);
    char folder[PEERNAME_MAX + 1];
    CHECK_EQ_INT(devstate_find_peer_by_recipient(ds, "age1example", folder), CHUTE_OK);
    CHECK(strcmp(folder, "home") == 0);   /* the first paired */
    CHECK_EQ_INT(devstate_find_peer_by_recipient(ds, "age1other", folder), CHUTE_ERR_NOT_FOUND);
    devstate_peer got;
    CHECK_EQ_INT(devstate_get_peer(ds, "home-2", &got), CHUTE_OK);
    CHECK(strcmp(got.send_token, "sendtoken") == 0);
    CHECK_EQ_INT(devstate_remove_peer(ds, "home-2"), CHUTE_OK);
    CHECK_EQ_INT(devstate_remove_peer(ds, "home-2"), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(devstate_get_peer(ds, "home-2", &got), CHUTE_ERR_NOT_FOUND);
    size_t count;
    CHECK_EQ_INT(devstate_count_peers(ds, &count), CHUTE_OK);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(got.gone_at, 0);
    CHECK_EQ_INT(devstate_mark_peer_gone(ds, "home"), CHUTE_OK);
    CHECK_EQ_INT(devstate_get_peer(ds, "home", &got), CHUTE_OK);
    long long first = got.gone_at;
    CHECK(first > 0);
    CHECK_EQ_INT(devstate_mark_peer_gone(ds, "home"), CHUTE_OK);   /* the first time counts */
    CHECK_EQ_INT(devstate_get_peer(ds, "home", &got), CHUTE_OK);
    CHECK_EQ_INT(got.gone_at, first);
    devstate_peer bad = sample_peer("../etc");
    CHECK_EQ_INT(devstate_add_peer(ds, &bad), CHUTE_ERR_ARG);
    devstate_close(ds);
    rm_tmpdir();
}

static void test_peername_rules(void)
{
    CHECK(peername_ok("home"));
    CHECK(peername_ok("Anna's laptop"));
    CHECK(peername_ok("b\xc3\xbcro"));            /* büro */
    CHECK(!peername_ok(""));
    CHECK(!peername_ok("."));
    CHECK(!peername_ok(".."));
    CHECK(!peername_ok(".hidden"));
    CHECK(!peername_ok("-rf"));
    CHECK(!peername_ok("a/b"));
    CHECK(!peername_ok("a\\b"));
    CHECK(!peername_ok("tab\there"));
    CHECK(!peername_ok("del\x7f"));
    CHECK(!peername_ok("c1\xc2\x85"));            /* U+0085 */
    CHECK(!peername_ok("bad\xc3"));               /* truncated UTF-8 */
    CHECK(!peername_ok("over\xc0\xaflong"));
    CHECK(!peername_ok("backup~"));
    CHECK(!peername_ok("evil\xe2\x80\xaetxt.exe"));   /* U+202E RLO */
    CHECK(!peername_ok("zero\xe2\x80\x8bwidth"));     /* U+200B */
    CHECK(!peername_ok("\xef\xbb\xbf" "bom"));           /* U+FEFF */
    CHECK(peername_ok("\xe6\x97\xa5\xe6\x9c\xac"));  /* 日本 */
    char longname[PEERNAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(!peername_ok(longname));
    longname[PEERNAME_MAX] = '\0';
    CHECK(peername_ok(longname));
    char out[PEERNAME_MAX + 1];
    CHECK_EQ_INT(peername_candidate(longname, 12, out, sizeof out), 0);
    CHECK_EQ_INT(strlen(out), PEERNAME_MAX);
    CHECK(strcmp(out + PEERNAME_MAX - 3, "-12") == 0);
    CHECK(peername_ok(out));
    CHECK_EQ_INT(peername_candidate("home", 1, out, sizeof out), 0);
    CHECK(strcmp(out, "home") == 0);
}

static void test_peername_quote_escapes_quotes(void)
{
    char q[PEERNAME_QUOTED_MAX];
    CHECK_EQ_INT(peername_quote("home", q, sizeof q), 0);
    CHECK(strcmp(q, "\"home\"") == 0);
    CHECK_EQ_INT(peername_quote("x\" Check: 482 913", q, sizeof q), 0);
    CHECK(strcmp(q, "\"x\\\" Check: 482 913\"") == 0);
    char all[PEERNAME_MAX + 1];   /* the worst case fits PEERNAME_QUOTED_MAX */
    memset(all, '"', PEERNAME_MAX);
    all[PEERNAME_MAX] = '\0';
    CHECK_EQ_INT(peername_quote(all, q, sizeof q), 0);
    CHECK_EQ_INT(strlen(q), 2 * PEERNAME_MAX + 2);
    char small[8];
    CHECK_EQ_INT(peername_quote("too long", small, sizeof small), -1);
    CHECK(small[0] == '\0');
}

static void test_resolve_dir_order(void)
{
    char out[512];
    setenv("CHUTE_HOME", "/x/chute-home", 1);
    CHECK_EQ_INT(devstate_resolve_dir("/opt/dir", out, sizeof out), CHUTE_OK);
    CHECK(strcmp(out, "/opt/dir") == 0);
    CHECK_EQ_INT(devstate_resolve_dir(NULL, out, sizeof out), CHUTE_OK);
    CHECK(strcmp(out, "/x/chute-home") == 0);
    unsetenv("CHUTE_HOME");
    setenv("XDG_DATA_HOME", "/x/data", 1);
    CHECK_EQ_INT(devstate_resolve_dir(NULL, out, sizeof out), CHUTE_OK);
    CHECK(strcmp(out, "/x/data/chute") == 0);
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/x/home", 1);
    CHECK_EQ_INT(devstate_resolve_dir(NULL, out, sizeof out), CHUTE_OK);
    CHECK(strcmp(out, "/x/home/.local/share/chute") == 0);
}

static devstate_peer peer_of(const char *device_name, const char *recipient)
{
    devstate_peer p = sample_peer(device_name);
    snprintf(p.recipient, sizeof p.recipient, "%s", recipient);
    return p;
}

/* The mount keeps an unpaired peer's queue and received files under its
 * folder name: another device must not inherit them by its name. */
static void test_an_unpaired_peers_folder_goes_to_no_other_device(void)
{
    make_tmpdir();
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    devstate_peer b = peer_of("home", "age1bbbb");
    CHECK_EQ_INT(devstate_add_peer(ds, &b), CHUTE_OK);
    CHECK(strcmp(b.name, "home") == 0);
    CHECK_EQ_INT(devstate_remove_peer(ds, "home"), CHUTE_OK);
    devstate_peer c = peer_of("home", "age1cccc");          /* another device */
    CHECK_EQ_INT(devstate_add_peer(ds, &c), CHUTE_OK);
    CHECK(strcmp(c.name, "home-2") == 0);
    devstate_peer again = peer_of("home", "age1bbbb");      /* the first, back */
    CHECK_EQ_INT(devstate_add_peer(ds, &again), CHUTE_OK);
    CHECK(strcmp(again.name, "home") == 0);
    /* whatever it calls itself now, the same device gets its folder back */
    CHECK_EQ_INT(devstate_remove_peer(ds, "home"), CHUTE_OK);
    devstate_peer renamed = peer_of("work-laptop", "age1bbbb");
    CHECK_EQ_INT(devstate_add_peer(ds, &renamed), CHUTE_OK);
    CHECK(strcmp(renamed.name, "home") == 0);
    CHECK(strcmp(renamed.device_name, "work-laptop") == 0);
    /* and once current again, its folder is an ordinary taken name */
    CHECK_EQ_INT(devstate_remove_peer(ds, "home-2"), CHUTE_OK);
    devstate_peer d = peer_of("home", "age1dddd");
    CHECK_EQ_INT(devstate_add_peer(ds, &d), CHUTE_OK);
    CHECK(strcmp(d.name, "home-3") == 0);
    devstate_close(ds);
    rm_tmpdir();
}

/* Does the file at path hold needle anywhere? */
static int file_holds(const char *path, const void *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static unsigned char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0) return 1;
    return 0;
}

/* A mount keeps the state open: the unpaired peer's keys must not wait
 * for its unmount to leave the files. */
static void test_an_unpaired_peers_keys_leave_the_files_at_once(void)
{
    make_tmpdir();
    devstate *ds, *mount;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    CHECK_EQ_INT(devstate_open(tmpdir, 0, &mount), CHUTE_OK);
    devstate_peer p = sample_peer("home");
    snprintf(p.send_token, sizeof p.send_token, "SENDTOKEN-that-must-go-away");
    memset(p.link_key, 0xA7, sizeof p.link_key);
    CHECK_EQ_INT(devstate_add_peer(ds, &p), CHUTE_OK);
    size_t count;
    CHECK_EQ_INT(devstate_count_peers(mount, &count), CHUTE_OK);   /* the mount reads */
    CHECK_EQ_INT(devstate_remove_peer(ds, "home"), CHUTE_OK);
    char db[400], wal[400];
    snprintf(db, sizeof db, "%s/state.db", tmpdir);
    snprintf(wal, sizeof wal, "%s/state.db-wal", tmpdir);
    const char *tok = "SENDTOKEN-that-must-go-away";
    CHECK(!file_holds(db, tok, strlen(tok)) && !file_holds(wal, tok, strlen(tok)));
    CHECK(!file_holds(db, p.link_key, sizeof p.link_key));
    CHECK(!file_holds(wal, p.link_key, sizeof p.link_key));
    devstate_close(mount);
    devstate_close(ds);
    rm_tmpdir();
}

static void test_a_folder_others_can_write_is_refused_at_every_open(void)
{
    make_tmpdir();
    devstate *ds;
    CHECK_EQ_INT(devstate_open(tmpdir, 1, &ds), CHUTE_OK);
    devstate_close(ds);
    CHECK_EQ_INT(chmod(tmpdir, 0777), 0);
    CHECK_EQ_INT(devstate_open(tmpdir, 0, &ds), CHUTE_ERR_REFUSED);
    CHECK_EQ_INT(chmod(tmpdir, 0750), 0);
    CHECK_EQ_INT(devstate_open(tmpdir, 0, &ds), CHUTE_OK);
    devstate_close(ds);
    rm_tmpdir();
}

int main(void)
{
    RUN(test_open_creates_private_folder_and_file);
    RUN(test_existing_folder_keeps_its_mode);
    RUN(test_newer_schema_is_refused);
    RUN(test_device_is_recorded_once);
    RUN(test_schema_1_is_migrated);
    RUN(test_peers_get_distinct_folder_names);
    RUN(test_an_unpaired_peers_folder_goes_to_no_other_device);
    RUN(test_an_unpaired_peers_keys_leave_the_files_at_once);
    RUN(test_a_folder_others_can_write_is_refused_at_every_open);
    RUN(test_peername_rules);
    RUN(test_peername_quote_escapes_quotes);
    RUN(test_resolve_dir_order);
    return unit_done();
}
