/*
 * redis.h - where a Redis server is and how to log in to it: the
 * redis:// URL of --bus and --cache-tier, and a blocking connect with a
 * timeout (AUTH, SELECT) for the threads that own a Redis connection.
 *
 * Pure parsing; redis_connect() blocks up to its timeout, so only
 * dedicated threads (never a worker) call it.
 */
#ifndef PGVALET_CORE_REDIS_H
#define PGVALET_CORE_REDIS_H

#include <stddef.h>

struct redisContext;

struct redis_target {
	char host[256], user[128], password[256];
	int port, dbindex;
	char display[300];		/* redis://host:port[/db], no secrets */
};

/*
 * redis://[[user]:password@]host[:port][/db]; 0, or -1 when the URL is
 * not one (the caller names its key in the error).
 */
int redis_target_parse(struct redis_target *t, const char *url);

/*
 * Connect, AUTH (user and password when given), SELECT; every command
 * afterwards times out after timeout_ms too.  NULL with err set.
 */
struct redisContext *redis_connect(const struct redis_target *t,
				   int timeout_ms, char *err, size_t errlen);

#endif
