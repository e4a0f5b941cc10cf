/* statusfile.c — see statusfile.h. */
#include "statusfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "downloader.h"
#include "handle.h"
#include "reach.h"
#include "report.h"
#include "reseal.h"

/* report_text, plus what only the running mount knows: files closed but
 * not queued (reseal.h), why downloads fail now, and items on the relay
 * from senders that are no current peer's (left there, not acked). */
static chute_status status_text(chutefs *fs, char **out)
{
    char relay_buf[RELAY_REACH_ERROR_MAX + 64];
    chute_status s = report_text(fs->q, fs->c,
                                 relay_reach_text(&fs->reach, relay_buf, sizeof relay_buf), out);
    if (s) return s;
    char *unqueued = NULL;
    if ((s = resealer_text(fs->reseal, &unqueued))) { free(*out); *out = NULL; return s; }
    char failing[192];
    downloader_failing(fs->dl, failing, sizeof failing);
    unsigned long n = downloader_unclaimed(fs->dl);
    if (!failing[0] && !n && !unqueued[0]) { free(unqueued); return CHUTE_OK; }
    char fail_line[sizeof failing + 16] = "", unclaimed_line[96] = "", *more = NULL;
    if (failing[0]) snprintf(fail_line, sizeof fail_line, "receiving: %s\n", failing);
    if (n)
        snprintf(unclaimed_line, sizeof unclaimed_line,
                 "unclaimed: %lu (from no current peer; left on the relay)\n", n);
    if (asprintf(&more, "%s%s%s%s", *out, fail_line, unclaimed_line, unqueued) < 0) more = NULL;
    free(unqueued);
    free(*out);
    *out = more;
    return more ? CHUTE_OK : CHUTE_ERR_NOMEM;
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
