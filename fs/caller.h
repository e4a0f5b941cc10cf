/* caller.h — which process a FUSE request came from.
 *
 * FUSE names the calling thread. A close by a process other than the one
 * that wrote — a child closing the descriptors it inherited, at its exec
 * or exit — is not the end of the writing, so the outbox tells processes
 * apart by their thread group (the PID a user sees), not by thread. */
#ifndef CHUTEFS_CALLER_H
#define CHUTEFS_CALLER_H

#include <sys/types.h>

/* The process (thread group) of the thread serving the current request;
 * 0 when it cannot be told: a request from the kernel itself, a caller
 * outside the mount's PID namespace, a thread already gone. */
pid_t caller_process(void);

#endif
