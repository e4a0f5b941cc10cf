/* daemon.c — see daemon.h. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool daemon_fork(int *notify_fd, int *exit_code)
{
    int p[2];
    *notify_fd = -1;
    *exit_code = 1;
    if (pipe2(p, O_CLOEXEC) != 0) {
        fprintf(stderr, "chutefs: cannot go to the background: %s\n", strerror(errno));
        return true;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "chutefs: cannot go to the background: %s\n", strerror(errno));
        close(p[0]);
        close(p[1]);
        return true;
    }
    if (pid == 0) {
        close(p[0]);
        if (setsid() < 0)
            fprintf(stderr, "chutefs: setsid: %s\n", strerror(errno));
        *notify_fd = p[1];
        return false;
    }
    close(p[1]);
    unsigned char code;
    ssize_t n;
    do n = read(p[0], &code, 1); while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == 1) {
        *exit_code = code;
    } else {
        /* It died before saying (the pipe closes only with it). */
        int ws;
        if (waitpid(pid, &ws, 0) == pid && WIFEXITED(ws) && WEXITSTATUS(ws) != 0)
            *exit_code = WEXITSTATUS(ws);
        fprintf(stderr, "chutefs: the mount process ended while starting\n");
    }
    return true;
}

void daemon_ready(int notify_fd, int exit_code)
{
    if (notify_fd < 0)
        return;
    unsigned char code = (unsigned char)(exit_code & 0xff);
    ssize_t n;
    do n = write(notify_fd, &code, 1); while (n < 0 && errno == EINTR);
    close(notify_fd);
    if (exit_code != 0)
        return;
    if (chdir("/") != 0)
        fprintf(stderr, "chutefs: chdir /: %s\n", strerror(errno));
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return;
    /* stdio goes nowhere from here, as with fuse_daemonize. */
    (void)dup2(null, STDIN_FILENO);
    (void)dup2(null, STDOUT_FILENO);
    (void)dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO)
        close(null);
}
