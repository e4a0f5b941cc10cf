/* statusfile.c — see statusfile.h. */
#include "statusfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "downloader.h"
#include "handle.h"
#include "report.h"
#include "uploader.h"

/* The relay as the two workers last saw it: the uploader's view carries a
 * time and the last error, the downloader's (our own inbox) only whether it
 * answered. Say both only when they disagree. */
#define RELAY_TEXT_MAX 600

static const char *relay_text(chutefs *fs, char *buf, size_t cap)
{
    char up_buf[RELAY_TEXT_MAX - 64];
    const char *up = uploader_relay_text(fs->up, up_buf, sizeof up_buf);
    const char *dl = downloader_relay_state(fs->dl);
    if (strcmp(up, "unknown") == 0)
        return dl;
    bool up_ok = strncmp(up, "reachable", 9) == 0;
    if (strcmp(dl, "unknown") == 0 || up_ok == (strcmp(dl, "reachable") == 0))
        snprintf(buf, cap, "%s", up);
    else
        snprintf(buf, cap, "%s (own inbox: %s)", up, dl);
    return buf;
}

/* report_text, plus what only the running mount knows: items on the relay
 * from senders that are no current peer's (left there, not acked). */
static chute_status status_text(chutefs *fs, char **out)
{
    char relay_buf[RELAY_TEXT_MAX];
    chute_status s = report_text(fs->q, fs->c, relay_text(fs, relay_buf, sizeof relay_buf), out);
    unsigned long n = downloader_unclaimed(fs->dl);
    if (s || !n) return s;
    char *more = NULL;
    if (asprintf(&more, "%sunclaimed: %lu (from no current peer; left on the relay)\n",
                 *out, n) < 0) {
        free(*out);
        *out = NULL;
        return CHUTE_ERR_NOMEM;
    }
    free(*out);
    *out = more;
    return CHUTE_OK;
}

int statusfile_getattr(chutefs *fs, struct stat *st)
{
    char *text = NULL;
    chute_status s = status_text(fs, &text);
    if (s) return chutefs_errno(s);
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = (off_t)strlen(text);
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
    free(text);
    return 0;
}

int statusfile_open(chutefs *fs, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EACCES;
    handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->kind = H_STATUS;
    chute_status s = status_text(fs, &h->text);
    if (s) { free(h); return chutefs_errno(s); }
    h->text_len = strlen(h->text);
    /* The size changes between stat and read: read what is there. */
    fi->direct_io = 1;
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

int statusfile_read(char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    if (off < 0) return -EINVAL;
    if ((size_t)off >= h->text_len) return 0;
    size_t n = h->text_len - (size_t)off;
    if (n > size) n = size;
    memcpy(buf, h->text + off, n);
    return (int)n;
}

int statusfile_release(struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    free(h->text);
    free(h);
    return 0;
}
