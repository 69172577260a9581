/*
 * redis.c - Redis URLs and connections (see redis.h).
 */
#include "core/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* Copy [p, end) into out (cap bytes with the NUL); -1 if it does not fit. */
static int
copy_part(char *out, size_t cap, const char *p, const char *end)
{
	size_t n = (size_t)(end - p);

	if (n >= cap)
		return -1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

static int
parse_port_db(struct redis_target *t, const char *colon, const char *end,
	      const char *slash)
{
	char *e;
	long v;

	t->port = 6379;
	if (colon) {
		v = strtol(colon + 1, &e, 10);
		if (e != end || v < 1 || v > 65535)
			return -1;
		t->port = (int)v;
	}
	if (slash && slash[1]) {
		v = strtol(slash + 1, &e, 10);
		if (*e || v < 0 || v > 1000)
			return -1;
		t->dbindex = (int)v;
	}
	return 0;
}

int
redis_target_parse(struct redis_target *t, const char *url)
{
	const char *p, *at, *end, *colon, *slash;

	memset(t, 0, sizeof(*t));
	if (strncmp(url, "redis://", 8) != 0)
		return -1;
	p = url + 8;
	slash = strchr(p, '/');
	end = slash ? slash : p + strlen(p);
	at = memchr(p, '@', (size_t)(end - p));
	if (at) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (copy_part(t->user, sizeof(t->user), p, colon ? colon : at))
			return -1;
		if (colon && copy_part(t->password, sizeof(t->password),
				       colon + 1, at))
			return -1;
		p = at + 1;
	}
	colon = memchr(p, ':', (size_t)(end - p));
	if ((colon ? colon : end) == p ||
	    copy_part(t->host, sizeof(t->host), p, colon ? colon : end) ||
	    parse_port_db(t, colon, end, slash))
		return -1;
	if (t->dbindex)
		snprintf(t->display, sizeof(t->display), "redis://%s:%d/%d",
			 t->host, t->port, t->dbindex);
	else
		snprintf(t->display, sizeof(t->display), "redis://%s:%d",
			 t->host, t->port);
	return 0;
}

/* Run one login command; 0 with err set when it failed. */
static int
login_command(redisContext *c, char *err, size_t errlen, const char *what,
	      int argc, const char **argv)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	int ok = r && r->type != REDIS_REPLY_ERROR;

	if (!ok)
		snprintf(err, errlen, "%s: %s", what, r ? r->str : c->errstr);
	freeReplyObject(r);
	return ok;
}

redisContext *
redis_connect(const struct redis_target *t, int timeout_ms, char *err,
	      size_t errlen)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(t->host, t->port, tv);
	const char *auth[3] = { "AUTH", t->user, t->password };
	const char *sel[2] = { "SELECT", NULL };
	char db[16];

	if (!c || c->err) {
		snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (!t->user[0])	/* AUTH <password>: the default user */
		auth[1] = t->password;
	snprintf(db, sizeof(db), "%d", t->dbindex);
	sel[1] = db;
	if ((t->password[0] &&
	     !login_command(c, err, errlen, "AUTH", t->user[0] ? 3 : 2, auth)) ||
	    (t->dbindex && !login_command(c, err, errlen, "SELECT", 2, sel))) {
		redisFree(c);
		return NULL;
	}
	return c;
}
