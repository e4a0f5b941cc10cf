/* daemon.h — going to the background the way a mount needs it.
 *
 * fuse_main forks into the background after the file system was set up,
 * but SQLite's POSIX locks belong to the process that took them: the
 * forked mount held none, and the next program to close the database
 * (pairtool status) deleted its WAL under it. So chutefs forks first,
 * sets up in the child, and the parent waits for the child's word — its
 * errors still reach the terminal, and its exit status is the parent's. */
#ifndef CHUTE_FS_DAEMON_H
#define CHUTE_FS_DAEMON_H

#include <stdbool.h>

/* Fork. In the parent, waits until the child calls daemon_ready (or dies)
 * and returns true with *exit_code to exit with. In the child returns
 * false with *notify_fd to pass to daemon_ready; the child leads a new
 * session. On a failure to fork returns true with *exit_code 1. */
bool daemon_fork(int *notify_fd, int *exit_code);

/* In the child: tell the waiting parent exit_code (0: the mount is up).
 * On 0 the child then lets go of the terminal (stdio to /dev/null, cwd
 * "/"). notify_fd is closed either way; -1 (foreground) does nothing. */
void daemon_ready(int notify_fd, int exit_code);

#endif
