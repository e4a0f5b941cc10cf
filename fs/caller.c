/* caller.c — see caller.h. */
#define FUSE_USE_VERSION 312
#include "caller.h"

#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The thread group of thread tid, from /proc/<tid>/status (a thread's
 * entry is there even though /proc lists only processes). */
static pid_t thread_group_of(pid_t tid)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char line[128];
    pid_t tgid = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Tgid:", 5) == 0) {
            long v = strtol(line + 5, NULL, 10);
            tgid = v > 0 ? (pid_t)v : 0;
            break;
        }
    }
    fclose(f);
    return tgid;
}

pid_t caller_process(void)
{
    struct fuse_context *ctx = fuse_get_context();
    pid_t tid = ctx ? ctx->pid : 0;
    if (tid <= 0) return 0;
    /* Each FUSE worker thread remembers its last answer: a writer's
     * requests come one after another from the same thread. */
    static _Thread_local pid_t last_tid, last_tgid;
    if (tid == last_tid) return last_tgid;
    pid_t tgid = thread_group_of(tid);
    last_tid = tid;
    last_tgid = tgid;
    return tgid;
}
