/* handle.h — what fi->fh points at for each kind of open file. */
#ifndef CHUTEFS_HANDLE_H
#define CHUTEFS_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "ofiles.h"

typedef enum { H_OUTBOX, H_INBOX, H_STATUS } handle_kind;

typedef struct {
    handle_kind kind;
    int fd;              /* outbox: the staging file */
    int flags;           /* outbox: as opened, to open the file again after a copy-on-write */
    ofile *of;           /* outbox: its open-file record */
    bool flushed;        /* outbox: counted in of->writers_flushed */
    cache_node node;     /* inbox: the file's size and chunks */
    char *text;          /* status: the snapshot taken at open */
    size_t text_len;
} handle;

#endif
