/*
 * log.h - one-line log records on stderr: time, level, worker, message.
 *
 * The level is set once at start-up, before threads exist; records are
 * written with one write(2) each, so lines from several threads never mix.
 */
#ifndef PGVALET_CORE_LOG_H
#define PGVALET_CORE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

void log_init(int verbose);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                              \
	do {                                        \
		if (log_enabled(LOG_DEBUG))         \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
