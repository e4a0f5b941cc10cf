/* log.h — leveled log lines on stderr. Never pass a token or secret. */
#ifndef CHUTED_LOG_H
#define CHUTED_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_set_level(log_level lv);
/* "debug", "info", "warn", "error" → level; -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
