/* log.c — one line per message, "chuted: LEVEL: text", on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static log_level current = LOG_INFO;
static const char *const names[] = { "debug", "info", "warn", "error" };

void log_set_level(log_level lv) { current = lv; }

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void log_msg(log_level lv, const char *fmt, ...)
{
    if (lv < current)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from threads do not interleave. */
    fprintf(stderr, "chuted: %s: %s\n", names[lv], line);
}
