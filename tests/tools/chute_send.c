/* chute_send — plays the sending device in the download tests: seals a
 * file exactly as chutefs does (age to the peer's recipient, sealed meta
 * under the link key, PROTOCOL §8) from the sender's state folder and
 * uploads it to the peer's relay inbox with the sender's send token. It
 * can also make the hostile items a receiver must refuse.
 *
 *   chute_send HOME PEER FILE [--name PATH] [--item ID] [--variant V]
 *              [--blob-out F] [--mode OCTAL] [--mtime SECONDS] [--no-upload]
 *              [--pause-at N --pause-file F] [--deferred] [--slow MS]
 *
 * V: good (default); wrong-key (meta sealed under another key);
 * flip (one payload byte flipped); truncate (the blob's last 100 bytes cut);
 * mac (the meta names another header MAC); size (the meta says one byte
 * more); wrong-recipient (the blob is for somebody else).
 * PATH is taken as raw bytes (hostile names: "../x", control bytes...);
 * one longer than a sealed meta can carry (3072 bytes, PROTOCOL §8) is cut
 * there.
 * --pause-at N: upload the first N bytes, print {"paused":N} on stderr, and
 * go on only once F exists (at most 120 s): an upload in progress, for the
 * tests of a receiver that follows one.
 * --deferred: create the item without a size (PROTOCOL §6.5), upload
 * every byte but the last chunk's worth, then declare size and meta and
 * send the rest, as chutefs does for a file sent while it is written
 * (with --pause-at, the pause comes before the declare).
 * --slow MS: send 1 MiB at a time, MS milliseconds apart (a sender that
 * keeps an upload going for a while).
 * Prints {"item":..., "blob_size":N, "header_mac":"<hex>"} on stdout. */
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_fd.h"
#include "age_keys.h"
#include "devstate.h"
#include "meta.h"
#include "relay_client.h"

static int die(const char *what, chute_status st)
{
    fprintf(stderr, "chute_send: %s: %s\n", what, chute_strstatus(st));
    return 1;
}

typedef struct {
    const char *name, *item, *variant, *blob_out;
    long mode;
    long long mtime;
    int no_upload, deferred;
    long slow_ms;
    uint64_t pause_at;
    const char *pause_file;
} options;

static void random_item_id(char out[33])
{
    uint8_t raw[24];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, 33, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Encrypt src into blob for recipient; mac gets the header MAC. */
static chute_status seal_blob(int src, int blob, const char *recipient, int wrong_recipient,
                              uint8_t mac[META_MAC_BYTES])
{
    age_recipient r;
    chute_status st = CHUTE_OK;
    if (wrong_recipient) {
        age_identity other;
        age_identity_generate(&other);
        age_identity_recipient(&other, &r);
        age_identity_wipe(&other);
    } else {
        st = age_recipient_parse(&r, recipient);
    }
    if (!st) st = age_encrypt_fd(src, blob, &r, 1, mac);
    return st;
}

static chute_status damage_blob(int blob, const char *variant)
{
    struct stat sb;
    if (fstat(blob, &sb) != 0) return CHUTE_ERR_IO;
    if (strcmp(variant, "truncate") == 0)
        return ftruncate(blob, sb.st_size > 100 ? sb.st_size - 100 : 0) == 0 ? CHUTE_OK
                                                                          : CHUTE_ERR_IO;
    if (strcmp(variant, "flip") == 0) {
        /* in the payload: the middle of a big blob, else its last byte */
        off_t at = sb.st_size / 2 > 4096 ? sb.st_size / 2 : sb.st_size - 1;
        uint8_t b;
        if (pread(blob, &b, 1, at) != 1) return CHUTE_ERR_IO;
        b ^= 0x01;
        return pwrite(blob, &b, 1, at) == 1 ? CHUTE_OK : CHUTE_ERR_IO;
    }
    return CHUTE_OK;
}

/* Wait (bounded) for the test to create f. */
static chute_status wait_for_file(const char *f)
{
    for (int i = 0; i < 12000; i++) {
        if (access(f, F_OK) == 0) return CHUTE_OK;
        usleep(10000);
    }
    return CHUTE_ERR_EXPIRED;
}

static chute_status upload(const devstate_peer *p, const char *item, const char *meta_b64,
                           int blob, uint64_t size, const options *o)
{
    relay_config cfg = {.base_url = p->relay_url};
    relay_client *c;
    chute_status st = relay_client_new(&cfg, &c);
    if (st) return st;
    relay_item_state is;
    /* Deferred: the last 64 KiB + 16 go after the declare, as the last
     * chunk's flag would wait for the file's end. */
    uint64_t early = size > 65552 ? size - 65552 : 0;
    bool declared = !o->deferred;
    st = o->deferred ? relay_item_create_deferred(c, p->inbox, p->send_token, item, &is)
                     : relay_item_create(c, p->inbox, p->send_token, item, size, meta_b64, &is);
    uint64_t off = st ? 0 : is.offset;
    bool paused = false;
    while (!st && (off < size || !declared)) {
        if (!declared && (off >= early || (o->pause_file && paused))) {
            st = relay_item_create(c, p->inbox, p->send_token, item, size, meta_b64, &is);
            declared = true;
            continue;
        }
        if (o->pause_file && !paused && off >= o->pause_at) {
            fprintf(stderr, "{\"paused\":%llu}\n", (unsigned long long)off);
            st = wait_for_file(o->pause_file);
            paused = true;
            if (st) break;
        }
        uint64_t n = size - off > (64u << 20) ? (64u << 20) : size - off;
        if (o->pause_file && !paused && n > o->pause_at - off) n = o->pause_at - off;
        if (!declared && n > early - off) n = early - off;
        if (o->slow_ms > 0 && n > (1u << 20)) n = 1u << 20;
        if (o->slow_ms > 0) usleep((useconds_t)o->slow_ms * 1000);
        st = relay_item_append_fd(c, p->inbox, p->send_token, item, off, blob, (off_t)off, n,
                                  &off);
    }
    if (st) fprintf(stderr, "chute_send: relay: %s\n", relay_client_error(c));
    relay_client_free(c);
    return st;
}

static int send_file(const char *home, const char *peer, const char *file, const options *o)
{
    devstate *ds;
    chute_status st = devstate_open(home, 0, &ds);
    if (st) return die("state", st);
    devstate_peer p;
    st = devstate_get_peer(ds, peer, &p);
    devstate_close(ds);
    if (st) return die("peer", st);
    int src = open(file, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (src < 0 || fstat(src, &sb) != 0) { devstate_peer_wipe(&p); perror(file); return 1; }
    char blob_path[4096];
    if (o->blob_out) snprintf(blob_path, sizeof blob_path, "%s", o->blob_out);
    else snprintf(blob_path, sizeof blob_path, "%s.chute_send.age", file);
    int blob = open(blob_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (blob < 0) { close(src); devstate_peer_wipe(&p); perror(blob_path); return 1; }

    char item[65];
    if (o->item) snprintf(item, sizeof item, "%s", o->item);
    else random_item_id(item);
    chute_meta *m = calloc(1, sizeof *m);
    uint8_t key[META_KEY_BYTES], sealed[META_SEALED_MAX];
    size_t sealed_len = 0;
    st = m ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = seal_blob(src, blob, p.recipient, strcmp(o->variant, "wrong-recipient") == 0,
                            m->header_mac);
    char mac_hex[2 * META_MAC_BYTES + 1] = "";
    if (!st) {
        sodium_bin2hex(mac_hex, sizeof mac_hex, m->header_mac, META_MAC_BYTES);
        char *copy = strdup(file);
        const char *name = o->name ? o->name : (copy ? basename(copy) : "file");
        snprintf(m->path, sizeof m->path, "%s", name);
        free(copy);
        m->size = (uint64_t)sb.st_size + (strcmp(o->variant, "size") == 0 ? 1 : 0);
        m->mode = o->mode >= 0 ? (uint32_t)o->mode : (uint32_t)(sb.st_mode & 07777);
        m->mtime_sec = o->mtime >= 0 ? o->mtime : sb.st_mtim.tv_sec;
        m->mtime_nsec = o->mtime >= 0 ? 0 : (uint32_t)sb.st_mtim.tv_nsec;
        if (strcmp(o->variant, "mac") == 0) randombytes_buf(m->header_mac, META_MAC_BYTES);
        if (strcmp(o->variant, "wrong-key") == 0) randombytes_buf(key, sizeof key);
        else st = meta_key(p.link_key, key);
    }
    if (!st) st = meta_seal(m, key, item, p.recipient, sealed, sizeof sealed, &sealed_len);
    if (!st && strcmp(o->variant, "meta-version") == 0) sealed[0] = META_VERSION + 1;
    sodium_memzero(key, sizeof key);
    if (!st) st = damage_blob(blob, o->variant);
    struct stat bs;
    if (!st && fstat(blob, &bs) != 0) st = CHUTE_ERR_IO;
    char meta_b64[sodium_base64_ENCODED_LEN(META_SEALED_MAX, sodium_base64_VARIANT_ORIGINAL)];
    if (!st) {
        sodium_bin2base64(meta_b64, sizeof meta_b64, sealed, sealed_len,
                          sodium_base64_VARIANT_ORIGINAL);
        if (!o->no_upload) st = upload(&p, item, meta_b64, blob, (uint64_t)bs.st_size, o);
    }
    close(src);
    close(blob);
    if (!o->blob_out) unlink(blob_path);
    free(m);
    devstate_peer_wipe(&p);
    if (st) return die("send", st);
    printf("{\"item\":\"%s\",\"blob_size\":%lld,\"header_mac\":\"%s\"}\n", item,
           (long long)bs.st_size, mac_hex);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) return 1;
    options o = {.variant = "good", .mode = -1, .mtime = -1};
    static const struct option longs[] = {
        {"name", required_argument, NULL, 'n'}, {"item", required_argument, NULL, 'i'},
        {"variant", required_argument, NULL, 'v'}, {"blob-out", required_argument, NULL, 'b'},
        {"mode", required_argument, NULL, 'm'}, {"mtime", required_argument, NULL, 't'},
        {"no-upload", no_argument, NULL, 'u'}, {"pause-at", required_argument, NULL, 'p'},
        {"pause-file", required_argument, NULL, 'f'}, {"deferred", no_argument, NULL, 'd'},
        {"slow", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'n': o.name = optarg; break;
        case 'i': o.item = optarg; break;
        case 'v': o.variant = optarg; break;
        case 'b': o.blob_out = optarg; break;
        case 'm': o.mode = strtol(optarg, NULL, 8); break;
        case 't': o.mtime = strtoll(optarg, NULL, 10); break;
        case 'u': o.no_upload = 1; break;
        case 'p': o.pause_at = strtoull(optarg, NULL, 10); break;
        case 'f': o.pause_file = optarg; break;
        case 'd': o.deferred = 1; break;
        case 's': o.slow_ms = strtol(optarg, NULL, 10); break;
        default: return 2;
        }
    }
    static const char *variants[] = {"good", "wrong-key", "flip", "truncate", "mac", "size",
                                     "wrong-recipient", "meta-version"};
    int known = 0;
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++)
        known |= strcmp(o.variant, variants[i]) == 0;
    if (argc - optind != 3 || !known) {
        fprintf(stderr, "usage: see the comment at the top of chute_send.c\n");
        return 2;
    }
    return send_file(argv[optind], argv[optind + 1], argv[optind + 2], &o);
}
