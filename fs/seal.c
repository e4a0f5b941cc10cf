/* seal.c — see seal.h. */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_fd.h"
#include "meta.h"
#include "peers.h"
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
    char blob[PATH_MAX];
    if (queue_find_active(fs->q, peer, rel, it) == CHUTE_OK &&
        queue_cancel(fs->q, it->id) == CHUTE_OK &&
        sealed_path(fs, it->id, NULL, blob, sizeof blob) == 0)
        unlink(blob);   /* the row is cancelled: a leftover blob is only space */
    free(it);
    uploader_wake(fs->up);   /* a relay copy may be owed a DELETE */
}

/* Encrypt src to a new blob; fills it->blob_size and mac. */
static chute_status write_blob(chutefs *fs, int src, const devstate_peer *p,
                               queue_item *it, uint8_t mac[META_MAC_BYTES])
{
    age_recipient r;
    chute_status st = age_recipient_parse(&r, p->recipient);
    if (st) return st;
    char tmp[PATH_MAX], final[PATH_MAX];
    if (sealed_path(fs, it->id, ".tmp", tmp, sizeof tmp) ||
        sealed_path(fs, it->id, NULL, final, sizeof final))
        return CHUTE_ERR_ARG;
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) return CHUTE_ERR_IO;
    st = age_encrypt_fd(src, out, &r, 1, mac);
    struct stat sb;
    if (!st && (fsync(out) != 0 || fstat(out, &sb) != 0)) st = CHUTE_ERR_IO;
    if (close(out) != 0 && !st) st = CHUTE_ERR_IO;
    if (!st && rename(tmp, final) != 0) st = CHUTE_ERR_IO;
    if (!st && fsync_dir(fs->sealed) != 0) st = CHUTE_ERR_IO;
    if (st) { unlink(tmp); unlink(final); return st; }
    it->blob_size = (uint64_t)sb.st_size;
    return CHUTE_OK;
}

chute_status seal_file(chutefs *fs, const char *peer, const char *rel)
{
    char path[PATH_MAX];
    if (staging_path(fs, peer, rel, path, sizeof path)) return CHUTE_ERR_ARG;
    if (strlen(rel) > META_PATH_MAX) return CHUTE_ERR_LIMIT;
    devstate_peer *p = malloc(sizeof *p);
    queue_item *it = malloc(sizeof *it);
    chute_status st = p && it ? CHUTE_OK : CHUTE_ERR_NOMEM;
    if (!st) st = peers_get(fs->peers, peer, p);
    if (st) { free(it); if (p) free(p); return st; }
    pthread_mutex_lock(&fs->seal_mu);
    int src = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (src < 0 || fstat(src, &sb) != 0) st = CHUTE_ERR_IO;
    uint8_t mac[META_MAC_BYTES];
    memset(it, 0, sizeof *it);
    queue_new_id(it->id);
    if (!st) st = write_blob(fs, src, p, it, mac);
    if (src >= 0) close(src);
    chute_meta m;
    char replaced[QUEUE_ID_LEN + 1] = "";
    if (!st) {
        fill_meta(&m, rel, &sb, mac);
        snprintf(it->peer, sizeof it->peer, "%s", peer);
        snprintf(it->path, sizeof it->path, "%s", rel);
        it->size = m.size;
        it->mode = m.mode;
        it->mtime_sec = m.mtime_sec;
        it->mtime_nsec = m.mtime_nsec;
        memcpy(it->header_mac, mac, META_MAC_BYTES);
        st = seal_meta(p, &m, it);
        if (!st) st = queue_insert(fs->q, it, replaced);
        if (st) {
            char blob[PATH_MAX];
            if (!sealed_path(fs, it->id, NULL, blob, sizeof blob)) unlink(blob);
        }
    }
    if (replaced[0]) {
        char blob[PATH_MAX];
        if (!sealed_path(fs, replaced, NULL, blob, sizeof blob)) unlink(blob);
    }
    pthread_mutex_unlock(&fs->seal_mu);
    if (!st) uploader_wake(fs->up);   /* durably queued: send it now */
    devstate_peer_wipe(p);
    free(p);
    free(it);
    return st;
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
