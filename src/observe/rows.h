/*
 * rows.h - how the self-optimizer's modules (advisor, audit, nplus1) hand
 * their records to the admin console as rows of text: a callback gets
 * each row's values, in the order of the module's column list, while
 * the module holds its lock (so it must only copy them, never block).
 */
#ifndef PGVALET_OBSERVE_ROWS_H
#define PGVALET_OBSERVE_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

typedef void (*observe_row_fn)(void *arg, const char *const *vals);

/* "2026-11-23 16:41:27" (UTC) for a clock_unix_us() time; "" for 0. */
static inline void
observe_format_time(int64_t us, char *out, size_t len)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (!us || !gmtime_r(&t, &tm)) {
		snprintf(out, len, "%s", "");
		return;
	}
	strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

#endif
