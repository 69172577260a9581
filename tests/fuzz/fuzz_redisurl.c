/*
 * fuzz_redisurl.c - the redis:// URL parser of --bus and --cache-tier
 * (core/redis.h) on arbitrary text, NUL-terminated in an exact-size heap
 * copy.  The URL comes from configuration, not the network, but its
 * display goes to log lines and must not carry the credentials.
 *
 * On success: every field terminated and in range; the display is exactly
 * "redis://host:port[/db]" and, read back, names the same server with no
 * user or password; the URL rebuilt from the fields parses to the same
 * fields.
 */
#include <stdio.h>
#include <string.h>

#include "core/redis.h"
#include "fuzz.h"

static void
check_terminated(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, 0, cap) != NULL);
}

static void
check_same(const struct redis_target *a, const struct redis_target *b)
{
	FUZZ_CHECK(strcmp(a->host, b->host) == 0);
	FUZZ_CHECK(strcmp(a->user, b->user) == 0);
	FUZZ_CHECK(strcmp(a->password, b->password) == 0);
	FUZZ_CHECK(a->port == b->port && a->dbindex == b->dbindex);
	FUZZ_CHECK(strcmp(a->display, b->display) == 0);
}

static void
check_ok(const struct redis_target *t)
{
	struct redis_target d, r;
	char want[sizeof(t->display)];
	char url[16 + sizeof(t->user) + sizeof(t->password) +
		 sizeof(t->host) + 16];

	check_terminated(t->host, sizeof(t->host));
	check_terminated(t->user, sizeof(t->user));
	check_terminated(t->password, sizeof(t->password));
	check_terminated(t->display, sizeof(t->display));
	FUZZ_CHECK(t->host[0] != '\0');
	FUZZ_CHECK(!strpbrk(t->host, ":/"));
	FUZZ_CHECK(!strpbrk(t->user, ":/@"));
	FUZZ_CHECK(!strpbrk(t->password, "/@"));
	FUZZ_CHECK(t->port >= 1 && t->port <= 65535);
	FUZZ_CHECK(t->dbindex >= 0 && t->dbindex <= 1000);

	/* the display: never truncated, nothing but host, port and db */
	if (t->dbindex)
		snprintf(want, sizeof(want), "redis://%s:%d/%d", t->host,
			 t->port, t->dbindex);
	else
		snprintf(want, sizeof(want), "redis://%s:%d", t->host, t->port);
	FUZZ_CHECK(strlen(want) + 1 < sizeof(want));
	FUZZ_CHECK(strcmp(t->display, want) == 0);
	/* read back it names the same server ('@' in a host aside: the
	 * display has no user part to set it apart) */
	if (!strchr(t->host, '@')) {
		FUZZ_CHECK(redis_target_parse(&d, t->display) == 0);
		FUZZ_CHECK(strcmp(d.host, t->host) == 0);
		FUZZ_CHECK(d.port == t->port && d.dbindex == t->dbindex);
		FUZZ_CHECK(d.user[0] == '\0' && d.password[0] == '\0');
		FUZZ_CHECK(strcmp(d.display, t->display) == 0);
	}

	/* the canonical URL of the fields says the same */
	snprintf(url, sizeof(url), "redis://%s:%s@%s:%d/%d", t->user,
		 t->password, t->host, t->port, t->dbindex);
	FUZZ_CHECK(redis_target_parse(&r, url) == 0);
	check_same(&r, t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct redis_target t;
	char *url = malloc(size + 1);

	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = 0;
	if (redis_target_parse(&t, url) == 0)
		check_ok(&t);
	free(url);
	return 0;
}
