/* chute_fixture — prepares device states and cache contents for the
 * system tests, through the same library calls pairtool and the later
 * downloader use (devstate_*, cache_item_begin/append/commit).
 *
 *   chute_fixture init HOME NAME                 a device (random identity)
 *   chute_fixture add-peer HOME NAME RECIPIENT [LINK_KEY_HEX]
 *                                                prints the folder name
 *   chute_fixture remove-peer HOME NAME
 *   chute_fixture receive HOME PEER ITEM PATH FILE [MODE MTIME]
 *                                                into inbox/<peer>/, prints
 *                                                the final relative path
 *   chute_fixture open-meta HOME PEER ID         the queued item's sealed
 *                                                meta, opened, as JSON
 */
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_keys.h"
#include "cache.h"
#include "devstate.h"
#include "meta.h"
#include "queue.h"

static int die(const char *what, chute_status st)
{
    fprintf(stderr, "chute_fixture: %s: %s\n", what, chute_strstatus(st));
    return 1;
}

static int cmd_init(const char *home, const char *name)
{
    devstate *ds;
    chute_status st = devstate_open(home, 1, &ds);
    if (st) return die("open", st);
    devstate_device d;
    memset(&d, 0, sizeof d);
    age_identity id;
    age_recipient r;
    age_identity_generate(&id);
    age_identity_recipient(&id, &r);
    age_identity_encode(&id, d.identity);
    age_recipient_encode(&r, d.recipient);
    age_identity_wipe(&id);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.relay_url, sizeof d.relay_url, "http://127.0.0.1:9");
    snprintf(d.inbox, sizeof d.inbox, "fixture-inbox");
    snprintf(d.owner_token, sizeof d.owner_token, "fixture-token");
    st = devstate_set_device(ds, &d);
    devstate_device_wipe(&d);
    devstate_close(ds);
    return st ? die("set device", st) : 0;
}

static int cmd_add_peer(const char *home, const char *name, const char *rcpt,
                        const char *key_hex)
{
    devstate *ds;
    chute_status st = devstate_open(home, 0, &ds);
    if (st) return die("open", st);
    devstate_peer p;
    memset(&p, 0, sizeof p);
    snprintf(p.device_name, sizeof p.device_name, "%s", name);
    snprintf(p.recipient, sizeof p.recipient, "%s", rcpt);
    snprintf(p.relay_url, sizeof p.relay_url, "http://127.0.0.1:9");
    snprintf(p.inbox, sizeof p.inbox, "peer-inbox");
    snprintf(p.send_token, sizeof p.send_token, "peer-token");
    size_t n = 0;
    if (key_hex && (sodium_hex2bin(p.link_key, sizeof p.link_key, key_hex,
                                   strlen(key_hex), NULL, &n, NULL) != 0 ||
                    n != sizeof p.link_key)) {
        devstate_close(ds);
        return die("link key", CHUTE_ERR_ARG);
    }
    if (!key_hex) randombytes_buf(p.link_key, sizeof p.link_key);
    st = devstate_add_peer(ds, &p);
    if (!st) printf("%s\n", p.name);
    devstate_peer_wipe(&p);
    devstate_close(ds);
    return st ? die("add peer", st) : 0;
}

static int cmd_remove_peer(const char *home, const char *name)
{
    devstate *ds;
    chute_status st = devstate_open(home, 0, &ds);
    if (st) return die("open", st);
    st = devstate_remove_peer(ds, name);
    devstate_close(ds);
    return st ? die("remove peer", st) : 0;
}

static int cmd_receive(int argc, char **argv)
{
    const char *home = argv[2], *peer = argv[3], *item = argv[4], *path = argv[5];
    char db[4096];
    snprintf(db, sizeof db, "%s/" CACHE_DB_NAME, home);
    cache *c;
    chute_status st = cache_open_without_reaper(db, &c);
    if (st) return die("cache", st);
    int fd = open(argv[6], O_RDONLY);
    if (fd < 0) { cache_close(c); perror(argv[6]); return 1; }
    /* As the downloader does: a partial with its .part, which a running
     * mount's downloader keeps (it drops partials without one). */
    char part[4096];
    snprintf(part, sizeof part, "%s/spool", home);   /* a home never mounted has none */
    (void)mkdir(part, 0700);
    snprintf(part, sizeof part, "%s/spool/incoming", home);
    (void)mkdir(part, 0700);
    snprintf(part, sizeof part, "%s/spool/incoming/%s.part", home, item);
    int pfd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (pfd < 0) { close(fd); cache_close(c); perror(part); return 1; }
    close(pfd);
    cache_txn *t;
    st = cache_item_begin(c, peer, item, &t);
    uint64_t total = 0;
    static char buf[100003];   /* odd size: appends straddle chunks */
    ssize_t n;
    while (!st && (n = read(fd, buf, sizeof buf)) > 0) {
        st = cache_item_append(t, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(fd);
    if (st) { cache_close(c); unlink(part); return die("append", st); }
    chute_meta *m = calloc(1, sizeof *m);
    if (!m) { cache_item_abort(t); cache_close(c); return 1; }
    snprintf(m->path, sizeof m->path, "%s", path);
    m->size = total;
    m->mode = argc > 7 ? (uint32_t)strtoul(argv[7], NULL, 8) : 0644;
    m->mtime_sec = argc > 8 ? strtoll(argv[8], NULL, 10) : 1700000000;
    char final[META_PATH_MAX + 1];
    st = cache_item_commit(t, m, final, sizeof final);
    free(m);
    cache_close(c);
    unlink(part);
    if (st) return die("commit", st);
    printf("%s\n", final);
    return 0;
}

static int cmd_open_meta(const char *home, const char *peer, const char *id)
{
    char db[4096];
    snprintf(db, sizeof db, "%s/chutefs.db", home);
    devstate *ds;
    queue *q;
    chute_status st = devstate_open(home, 0, &ds);
    if (st) return die("open", st);
    if ((st = queue_open(db, &q))) { devstate_close(ds); return die("queue", st); }
    queue_item *it = malloc(sizeof *it);
    chute_meta *m = malloc(sizeof *m);
    devstate_peer p;
    uint8_t key[META_KEY_BYTES];
    st = it && m ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = queue_get(q, id, it);
    if (!st) st = devstate_get_peer(ds, peer, &p);
    if (!st) {
        st = meta_key(p.link_key, key);
        if (!st) st = meta_open(it->meta, it->meta_len, key, id, p.recipient, m);
        sodium_memzero(key, sizeof key);
        devstate_peer_wipe(&p);
    }
    if (!st) {
        char mac[2 * META_MAC_BYTES + 1];
        sodium_bin2hex(mac, sizeof mac, m->header_mac, META_MAC_BYTES);
        json_t *j = json_pack("{s:s, s:I, s:i, s:I, s:i, s:s}", "path", m->path,
                              "size", (json_int_t)m->size, "mode", (int)m->mode,
                              "mtime", (json_int_t)m->mtime_sec,
                              "mtime_nsec", (int)m->mtime_nsec, "header_mac", mac);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
    }
    free(it);
    free(m);
    queue_close(q);
    devstate_close(ds);
    return st ? die("open meta", st) : 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) return 1;
    if (argc == 4 && strcmp(argv[1], "init") == 0) return cmd_init(argv[2], argv[3]);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "add-peer") == 0)
        return cmd_add_peer(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    if (argc == 4 && strcmp(argv[1], "remove-peer") == 0) return cmd_remove_peer(argv[2], argv[3]);
    if (argc >= 7 && argc <= 9 && strcmp(argv[1], "receive") == 0) return cmd_receive(argc, argv);
    if (argc == 5 && strcmp(argv[1], "open-meta") == 0) return cmd_open_meta(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: see the comment at the top of chute_fixture.c\n");
    return 2;
}
