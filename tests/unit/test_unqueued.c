/* test_unqueued.c — the walk that finds files closed whole but not queued. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "unit.h"
#include "unqueued.h"

static char root[64];

static void put(const char *rel, const char *data, int marked)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(data, f);
    fclose(f);
    if (marked) CHECK_EQ_INT(lsetxattr(path, UNQUEUED_XATTR, "1", 1, 0), 0);
}

static void dir(const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK_EQ_INT(mkdir(path, 0700), 0);
}

typedef struct {
    char seen[8][128];
    long long size[8];
    nlink_t nlink[8];
    int n, stop_after;
} found;

static int note(const char *peer, const char *path, const struct stat *st, void *arg)
{
    found *f = arg;
    if (f->n < 8) {
        snprintf(f->seen[f->n], sizeof f->seen[0], "%s|%s", peer, path);
        f->size[f->n] = st->st_size;
        f->nlink[f->n] = st->st_nlink;
    }
    f->n++;
    return f->stop_after && f->n >= f->stop_after;
}

static int index_of(const found *f, const char *what)
{
    for (int i = 0; i < f->n && i < 8; i++)
        if (strcmp(f->seen[i], what) == 0) return i;
    return -1;
}

static int xattrs_work(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/probe", root);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return 0;
    int ok = fsetxattr(fd, UNQUEUED_XATTR, "1", 1, 0) == 0;
    close(fd);
    unlink(path);
    return ok;
}

static void test_finds_marked_files_in_peer_folders_only(void)
{
    dir("home");
    dir("home/trip");
    dir("office");
    put("home/photo.jpg", "12345", 1);
    put("home/trip/day1.jpg", "abc", 1);
    put("home/plain.txt", "not marked", 0);
    put("office/draft.odt", "xy", 1);
    put("stray.txt", "level 1: no peer", 1);
    char target[256], sym[256];
    snprintf(target, sizeof target, "%s/home/photo.jpg", root);
    snprintf(sym, sizeof sym, "%s/home/link", root);
    CHECK_EQ_INT(symlink(target, sym), 0);     /* never followed */

    found f = {0};
    CHECK_EQ_INT(unqueued_each(root, note, &f), CHUTE_OK);
    CHECK_EQ_INT(f.n, 3);
    int i = index_of(&f, "home|photo.jpg");
    CHECK(i >= 0);
    if (i >= 0) { CHECK_EQ_INT(f.size[i], 5); CHECK_EQ_INT(f.nlink[i], 1); }
    CHECK(index_of(&f, "home|trip/day1.jpg") >= 0);
    CHECK(index_of(&f, "office|draft.odt") >= 0);

    /* queued after all (a second link, as the sealed copy has): still
     * reported, with its link count, for the caller to decide */
    char queued[256];
    snprintf(queued, sizeof queued, "%s/queued-link", root);
    CHECK_EQ_INT(link(target, queued), 0);
    found g = {0};
    CHECK_EQ_INT(unqueued_each(root, note, &g), CHUTE_OK);
    i = index_of(&g, "home|photo.jpg");
    CHECK(i >= 0);
    if (i >= 0) CHECK_EQ_INT(g.nlink[i], 2);
}

static void test_callback_stops_the_walk(void)
{
    found f = { .stop_after = 1 };
    CHECK_EQ_INT(unqueued_each(root, note, &f), CHUTE_OK);
    CHECK_EQ_INT(f.n, 1);
}

static void test_a_missing_folder_is_not_found(void)
{
    char gone[128];
    snprintf(gone, sizeof gone, "%s/no-such-folder", root);
    found f = {0};
    CHECK_EQ_INT(unqueued_each(gone, note, &f), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(f.n, 0);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/chute-test-unqueued-XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    if (!xattrs_work()) {
        printf("skipped: no user xattrs on /tmp\n");
        rmdir(root);
        return 0;
    }
    RUN(test_finds_marked_files_in_peer_folders_only);
    RUN(test_callback_stops_the_walk);
    RUN(test_a_missing_folder_is_not_found);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return unit_done();
}
