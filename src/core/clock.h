/*
 * clock.h - the two clocks pgvalet reads: monotonic milliseconds (timers,
 * timeouts, ages) and wall-clock time (log lines, keepalives, comparing
 * with Postgres' commit timestamps).  Pure, any thread.
 */
#ifndef PGVALET_CORE_CLOCK_H
#define PGVALET_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Unix time in microseconds. */
static inline int64_t
clock_unix_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
