/* seal.c — see seal.h. */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "age_header.h"
#include "age_stream.h"
#include "growing.h"
#include "meta.h"
#include "ofiles.h"
#include "peers.h"
#include "prealloc.h"
#include "staging.h"
#include "uploader.h"

/* Seal m for item id to peer p into it->meta. */
static chute_status seal_meta(const devstate_peer *p, const chute_meta *m,
                              queue_item *it)
{
    uint8_t key[META_KEY_BYTES];
    chute_status st = meta_key(p->link_key, key);
    if (!st) st = meta_seal(m, key, it->id, p->recipient, it->meta,
                            sizeof it->meta, &it->meta_len);
    sodium_memzero(key, sizeof key);
    snprintf(it->recipient, sizeof it->recipient, "%s", p->recipient);
    return st;
}

static void fill_meta(chute_meta *m, const char *rel, const struct stat *sb,
                      const uint8_t mac[META_MAC_BYTES])
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", rel);
    m->size = (uint64_t)sb->st_size;
    m->mode = sb->st_mode & 07777;
    m->mtime_sec = sb->st_mtim.tv_sec;
    m->mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
    memcpy(m->header_mac, mac, META_MAC_BYTES);
}

void seal_cancel(chutefs *fs, const char *peer, const char *rel)
{
    queue_item *it = malloc(sizeof *it);
    if (!it) return;
    /* After a seal in progress, whose row would land after our look. */
    pthread_mutex_lock(&fs->seal_mu);
    if (queue_find_active(fs->q, peer, rel, it) == CHUTE_OK &&
        queue_cancel(fs->q, it->id) == CHUTE_OK)
        sealed_unlink(fs, it->id);   /* the row is cancelled: a leftover is only space */
    pthread_mutex_unlock(&fs->seal_mu);
    free(it);
    uploader_wake(fs->up);   /* a relay copy may be owed a DELETE */
}

/* A fresh file key and nonce, and the age header that gives the key to
 * the peer; the bytes of the blob follow from these and the plaintext. */
static chute_status make_age(const devstate_peer *p, queue_age *age,
                             uint8_t mac[META_MAC_BYTES])
{
    age_recipient r;
    chute_status st = age_recipient_parse(&r, p->recipient);
    if (st) return st;
    memset(age, 0, sizeof *age);
    randombytes_buf(age->file_key, sizeof age->file_key);
    randombytes_buf(age->nonce, sizeof age->nonce);
    uint8_t *header = NULL;
    size_t len = 0;
    st = age_header_build(age->file_key, &r, 1, &header, &len, mac);
    if (!st && len > sizeof age->header) st = CHUTE_ERR_LIMIT;
    if (!st) {
        memcpy(age->header, header, len);
        age->header_len = len;
    }
    free(header);
    return st;
}

/* fsync what was written, before the seal holds writers up: the second
 * fsync, after the link, then has little left to do.
 *
 * A file whose fsync failed is marked as a failed write is (staging.h)
 * and never sealed: Linux reports a writeback error once and drops the
 * lost pages, so the next fsync would pass and the seal send what the
 * disk holds, not what was written. */
static chute_status presync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_IO;
    chute_status st = staging_is_cut(fd) ? CHUTE_ERR_REFUSED : CHUTE_OK;
    if (!st && fsync(fd) != 0) {
        staging_mark_cut(fd);
        st = CHUTE_ERR_IO;
    }
    close(fd);
    return st;
}

/* Hard-link the staging file to sealed/<id>.plain and make file and link
 * durable; sb gets the plaintext's attributes as linked. From the link
 * on, writes to the staging path go to a copy (copy-on-write, outbox.c),
 * so the item's plaintext never changes. */
static chute_status link_plain(chutefs *fs, const char *path, const char *id,
                               bool marked_only, struct stat *sb)
{
    char plain[PATH_MAX];
    if (sealed_path(fs, id, ".plain", plain, sizeof plain)) return CHUTE_ERR_ARG;
    ofiles_content_excl(fs->open);
    /* Under the lock the inode at path cannot change: open it now (for
     * writing if it may be, to give back its blocks reserved ahead). */
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    bool writable = fd >= 0;
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    chute_status st = fd >= 0 && fstat(fd, sb) == 0 ? CHUTE_OK : CHUTE_ERR_IO;
    if (!st && !S_ISREG(sb->st_mode)) st = CHUTE_ERR_ARG;
    if (!st && staging_is_cut(fd)) st = CHUTE_ERR_REFUSED;   /* since presync */
    /* A retry seals only what is still as it was closed (staging.h). */
    if (!st && marked_only && !staging_is_unsealed(fd)) st = CHUTE_ERR_NOT_FOUND;
    if (!st && writable) (void)prealloc_trim(fd);   /* advice: keeps its times */
    if (!st && link(path, plain) != 0)
        st = errno == ENOSPC || errno == EDQUOT ? CHUTE_ERR_FULL : CHUTE_ERR_IO;
    ofiles_content_unlock(fs->open);
    if (!st) {
        if (fsync(fd) != 0) {
            staging_mark_cut(fd);           /* as in presync */
            st = CHUTE_ERR_IO;
        } else if (fsync_dir(fs->sealed) != 0) {
            st = CHUTE_ERR_IO;
        }
        if (st) unlink(plain);
    }
    if (fd >= 0) close(fd);
    return st;
}

static chute_status seal_at(chutefs *fs, const char *peer, const char *rel,
                            bool marked_only)
{
    char path[PATH_MAX];
    if (staging_path(fs, peer, rel, path, sizeof path)) return CHUTE_ERR_ARG;
    if (strlen(rel) > META_PATH_MAX) return CHUTE_ERR_LIMIT;
    devstate_peer *p = malloc(sizeof *p);
    queue_item *it = malloc(sizeof *it);
    queue_age *age = malloc(sizeof *age);
    chute_status st = p && it && age ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = peers_get(fs->peers, peer, p);
    if (!st) st = presync(path);
    if (st) { free(it); free(age); if (p) { devstate_peer_wipe(p); free(p); } return st; }
    uint8_t mac[META_MAC_BYTES];
    memset(it, 0, sizeof *it);
    queue_new_id(it->id);
    st = make_age(p, age, mac);
    pthread_mutex_lock(&fs->seal_mu);
    struct stat sb;
    bool linked = false;
    if (!st) st = link_plain(fs, path, it->id, marked_only, &sb);
    if (!st) linked = true;
    chute_meta m;
    char replaced[QUEUE_ID_LEN + 1] = "";
    if (!st) {
        fill_meta(&m, rel, &sb, mac);
        snprintf(it->peer, sizeof it->peer, "%s", peer);
        snprintf(it->path, sizeof it->path, "%s", rel);
        it->size = m.size;
        it->blob_size = age->header_len + age_payload_size(m.size);
        it->mode = m.mode;
        it->mtime_sec = m.mtime_sec;
        it->mtime_nsec = m.mtime_nsec;
        memcpy(it->header_mac, mac, META_MAC_BYTES);
        /* An empty file may hold a name for a download about to start
         * beside it (uploader.c, download_beside): a moment for it to. */
        if (m.size == 0) it->next_attempt = (int64_t)time(NULL) + SEAL_EMPTY_GRACE_S;
        st = seal_meta(p, &m, it);
        if (!st) st = queue_insert(fs->q, it, age, replaced);
    }
    if (st && linked) sealed_unlink(fs, it->id);
    if (replaced[0]) sealed_unlink(fs, replaced);
    char plain[PATH_MAX];
    /* Queued: no longer owed a seal. Through the item's link, the inode
     * sealed, whatever is at the path by now. */
    if (!st && sealed_path(fs, it->id, ".plain", plain, sizeof plain) == 0)
        staging_clear_unsealed_at(plain);
    pthread_mutex_unlock(&fs->seal_mu);
    if (!st) uploader_wake(fs->up);   /* durably queued: send it now */
    queue_age_wipe(age);
    devstate_peer_wipe(p);
    free(p);
    free(it);
    free(age);
    return st;
}

chute_status seal_file(chutefs *fs, const char *peer, const char *rel)
{
    return seal_at(fs, peer, rel, false);
}

chute_status seal_file_marked(chutefs *fs, const char *peer, const char *rel)
{
    return seal_at(fs, peer, rel, true);
}

bool seal_failure_passes(chute_status st)
{
    return st == CHUTE_ERR_NOMEM || st == CHUTE_ERR_IO || st == CHUTE_ERR_DB ||
           st == CHUTE_ERR_FULL;
}

chute_status seal_refresh_attrs(chutefs *fs, const char *peer, const char *rel)
{
    char path[PATH_MAX];
    struct stat sb;
    if (staging_path(fs, peer, rel, path, sizeof path) || lstat(path, &sb) != 0)
        return CHUTE_ERR_NOT_FOUND;
    devstate_peer *p = malloc(sizeof *p);
    queue_item *it = malloc(sizeof *it);
    chute_status st = p && it ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = queue_find_active(fs->q, peer, rel, it);
    if (!st && (it->state != QUEUE_QUEUED || it->progress)) st = CHUTE_ERR_REFUSED;
    if (!st) st = peers_get(fs->peers, peer, p);
    if (!st) {
        chute_meta m;
        fill_meta(&m, it->path, &sb, it->header_mac);
        m.size = it->size;   /* the blob's size, whatever the file says now */
        st = seal_meta(p, &m, it);
        if (!st) st = queue_update_attrs(fs->q, it->id, m.mode, m.mtime_sec,
                                         m.mtime_nsec, it->meta, it->meta_len);
    }
    if (p) { devstate_peer_wipe(p); free(p); }
    free(it);
    return st;
}

/* The meta of it under p's link key, opened into m. */
static chute_status open_meta(const queue_item *it, const devstate_peer *p, chute_meta *m)
{
    uint8_t key[META_KEY_BYTES];
    chute_status st = meta_key(p->link_key, key);
    if (!st) st = meta_open(it->meta, it->meta_len, key, it->id, p->recipient, m);
    sodium_memzero(key, sizeof key);
    sodium_memzero(m, sizeof *m);
    return st;
}

bool seal_meta_is_current(const queue_item *it, const devstate_peer *p)
{
    chute_meta m;
    return open_meta(it, p, &m) == CHUTE_OK;
}

chute_status seal_renew_id(chutefs *fs, queue_item *it, const devstate_peer *p)
{
    char old_id[QUEUE_ID_LEN + 1];
    memcpy(old_id, it->id, sizeof old_id);
    queue_new_id(it->id);
    chute_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.path, sizeof m.path, "%s", it->path);
    m.size = it->size;
    m.mode = it->mode;
    m.mtime_sec = it->mtime_sec;
    m.mtime_nsec = it->mtime_nsec;
    memcpy(m.header_mac, it->header_mac, META_MAC_BYTES);
    chute_status st = seal_meta(p, &m, it);
    sodium_memzero(&m, sizeof m);
    /* Under seal_mu, as a seal: a cancel (which finds the row by path)
     * and the orphan sweep see the old id or the new one, whole. */
    pthread_mutex_lock(&fs->seal_mu);
    /* A sealed file gone missing is an error to report, not a cancel. */
    int rc = st ? 0 : sealed_link(fs, old_id, it->id);
    if (!st && rc) st = rc == -ENOENT ? CHUTE_ERR_TRUNCATED : CHUTE_ERR_IO;
    if (!st) {
        st = queue_renew_id(fs->q, old_id, it->id, it->meta, it->meta_len);
        sealed_unlink(fs, st ? it->id : old_id);
    }
    pthread_mutex_unlock(&fs->seal_mu);
    if (st) {
        memcpy(it->id, old_id, sizeof old_id);
        return st;
    }
    it->progress = 0;
    it->sent = 0;
    return CHUTE_OK;
}

chute_status seal_meta_for_pairing(chutefs *fs, queue_item *it, const devstate_peer *p)
{
    chute_meta m;
    chute_status st = open_meta(it, p, &m);
    /* It opens, so it was sealed for this recipient (the meta binds it):
     * a row from before recipients were kept learns it here. */
    if (st == CHUTE_OK && !it->recipient[0]) {
        snprintf(it->recipient, sizeof it->recipient, "%s", p->recipient);
        if (queue_note_recipient(fs->q, it->id, p->recipient) != CHUTE_OK)
            fprintf(stderr, "chutefs: cannot note whom item %s is for (its next try will)\n",
                    it->id);
        return CHUTE_OK;   /* the item goes all the same */
    }
    if (st != CHUTE_ERR_AUTH) return st;
    if (!it->recipient[0]) return CHUTE_ERR_UNSUPPORTED;
    if (strcmp(it->recipient, p->recipient) != 0) return CHUTE_ERR_REFUSED;
    return seal_renew_id(fs, it, p);
}

chute_status seal_grow_start(chutefs *fs, const char *peer, const char *rel,
                             uint64_t size, growing **out)
{
    *out = NULL;
    char path[PATH_MAX];
    if (staging_path(fs, peer, rel, path, sizeof path)) return CHUTE_ERR_ARG;
    if (strlen(rel) > META_PATH_MAX) return CHUTE_ERR_LIMIT;
    devstate_peer *p = malloc(sizeof *p);
    queue_item *it = calloc(1, sizeof *it);
    queue_age *age = malloc(sizeof *age);
    chute_status st = p && it && age ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = peers_get(fs->peers, peer, p);
    int fd = -1;
    if (!st) {
        queue_new_id(it->id);
        snprintf(it->peer, sizeof it->peer, "%s", peer);
        snprintf(it->path, sizeof it->path, "%s", rel);
        it->growing = true;
        snprintf(it->recipient, sizeof it->recipient, "%s", p->recipient);
        st = make_age(p, age, it->header_mac);
    }
    if (!st && (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) st = CHUTE_ERR_IO;
    /* Registered first: a worker that claims the row finds it. */
    if (!st) st = growing_add(fs->growing, it->id, fd, size, out);
    if (!st) {
        fd = -1;   /* the entry's now */
        st = queue_insert(fs->q, it, age, NULL);
        if (st) {
            growing_finish(*out, GROWING_CANCELLED, 0);
            growing_release(fs->growing, *out);
            *out = NULL;
        }
    }
    if (fd >= 0) close(fd);
    if (!st) uploader_wake(fs->up);
    queue_age_wipe(age);
    if (p) devstate_peer_wipe(p);
    free(p);
    free(it);
    free(age);
    return st;
}

void seal_grow_cancel(chutefs *fs, growing *g)
{
    if (!g) return;
    growing_finish(g, GROWING_CANCELLED, 0);
    /* Claimed or attempted: its relay copy is owed a DELETE (queue.h). */
    (void)queue_cancel(fs->q, growing_id(g));
    growing_release(fs->growing, g);
    uploader_wake(fs->up);
}

/* The growing row g becomes an ordinary item, if the staging file is
 * still the inode it was read from and `size` bytes long. */
static chute_status seal_grown(chutefs *fs, const char *peer, const char *rel,
                               const char *path, growing *g, uint64_t size)
{
    devstate_peer *p = malloc(sizeof *p);
    queue_item *it = malloc(sizeof *it);
    queue_age *age = malloc(sizeof *age);
    chute_status st = p && it && age ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = peers_get(fs->peers, peer, p);
    if (!st) st = presync(path);
    if (!st) st = queue_get(fs->q, growing_id(g), it);
    if (!st && !it->growing) st = CHUTE_ERR_NOT_FOUND;
    if (!st) st = queue_get_age(fs->q, it->id, age);
    struct stat sb, gb;
    bool linked = false;
    char replaced[QUEUE_ID_LEN + 1] = "";
    pthread_mutex_lock(&fs->seal_mu);
    if (!st) st = link_plain(fs, path, it->id, false, &sb);
    if (!st) linked = true;
    if (!st && (fstat(growing_fd(g), &gb) != 0 || gb.st_ino != sb.st_ino ||
                gb.st_dev != sb.st_dev || (uint64_t)sb.st_size != size))
        st = CHUTE_ERR_REFUSED;   /* not the bytes sent so far */
    if (!st) {
        chute_meta m;
        fill_meta(&m, rel, &sb, it->header_mac);
        snprintf(it->path, sizeof it->path, "%s", rel);
        it->size = m.size;
        it->blob_size = age->header_len + age_payload_size(m.size);
        it->mode = m.mode;
        it->mtime_sec = m.mtime_sec;
        it->mtime_nsec = m.mtime_nsec;
        /* Its header was made for the peer of that name then: another
         * device (a re-pair under the name) could not open it. */
        if (it->recipient[0] && strcmp(it->recipient, p->recipient) != 0)
            st = CHUTE_ERR_REFUSED;
        if (!st) st = seal_meta(p, &m, it);
        if (!st) st = queue_seal_growing(fs->q, it, replaced);
    }
    if (st && linked) sealed_unlink(fs, it->id);
    if (replaced[0]) sealed_unlink(fs, replaced);
    pthread_mutex_unlock(&fs->seal_mu);
    queue_age_wipe(age);
    if (p) devstate_peer_wipe(p);
    free(p);
    free(it);
    free(age);
    return st;
}

chute_status seal_file_grown(chutefs *fs, const char *peer, const char *rel,
                             growing *g, uint64_t size)
{
    if (!g) return seal_file(fs, peer, rel);
    char path[PATH_MAX];
    chute_status st = staging_path(fs, peer, rel, path, sizeof path) ? CHUTE_ERR_ARG
                      : strlen(rel) > META_PATH_MAX ? CHUTE_ERR_LIMIT
                      : seal_grown(fs, peer, rel, path, g, size);
    if (st) {   /* it goes the usual way, as a new item */
        seal_grow_cancel(fs, g);
        return seal_file(fs, peer, rel);
    }
    growing_finish(g, GROWING_SEALED, size);
    growing_release(fs->growing, g);
    uploader_wake(fs->up);
    return CHUTE_OK;
}
