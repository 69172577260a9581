/*
 * pgurl.c - postgresql:// URL parser (the subset of libpq's URI grammar
 * that a single-host proxy needs).
 *
 *   postgresql://[user[:password]@][host|[v6addr]][:port][/dbname][?k=v&...]
 *
 * The user info ends at the last '@' before the first '/' or '?', as in
 * libpq.  An '@' further right almost always means an unescaped '/', '?'
 * or '@' inside a password, so it is refused: guessing would risk echoing
 * part of the password in an error message.
 */
#include "core/pgurl.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { PGURL_DEFAULT_PORT = 5432, PGURL_MAX_PORT = 65535 };

static const char PGURL_DEFAULT_HOST[] = "127.0.0.1";

static const char *const sslmode_names[] = {
	[SSLMODE_DISABLE] = "disable",
	[SSLMODE_ALLOW] = "allow",
	[SSLMODE_PREFER] = "prefer",
	[SSLMODE_REQUIRE] = "require",
	[SSLMODE_VERIFY_CA] = "verify-ca",
	[SSLMODE_VERIFY_FULL] = "verify-full",
};

/*
 * libpq knobs that pgvalet decides itself (its own connect timeout and
 * application name), so a URL copied from an application still works.
 * 'options' is deliberately absent: dropping a search_path silently would
 * change query results.
 */
static const char *const ignored_params[] = {
	"application_name",
	"fallback_application_name",
	"connect_timeout",
	"keepalives",
	"keepalives_idle",
	"keepalives_interval",
	"keepalives_count",
	"tcp_user_timeout",
};

/* Query parameters that fill a string field of struct pg_url. */
struct pgurl_field {
	const char *param;
	size_t offset;
	size_t size;
};

#define PGURL_FIELD(f)                                                         \
	offsetof(struct pg_url, f), sizeof(((struct pg_url *)0)->f)

static const struct pgurl_field string_params[] = {
	{ "host", PGURL_FIELD(host) },
	{ "user", PGURL_FIELD(user) },
	{ "password", PGURL_FIELD(password) },
	{ "dbname", PGURL_FIELD(dbname) },
	{ "sslrootcert", PGURL_FIELD(sslrootcert) },
	{ "sslcert", PGURL_FIELD(sslcert) },
	{ "sslkey", PGURL_FIELD(sslkey) },
};

#define PGURL_COUNT(a) (sizeof(a) / sizeof((a)[0]))

__attribute__((format(printf, 3, 4))) static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode [s, s + n) into dst (cap bytes, NUL included).  'what'
 * names the field in errors; the value itself is never echoed because it
 * may be the password.
 */
static int
decode_into(const char *s, size_t n, char *dst, size_t cap, const char *what,
	    char *err, size_t errlen)
{
	size_t i = 0, used = 0;

	while (i < n) {
		char c = s[i];

		if (c == '%') {
			int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
			int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;

			if (hi < 0 || lo < 0) {
				set_err(err, errlen,
					"bad percent-escape in %s: "
					"expected %%XX",
					what);
				return -1;
			}
			c = (char)(hi * 16 + lo);
			if (c == '\0') {
				set_err(err, errlen, "%s contains %%00", what);
				return -1;
			}
			i += 3;
		} else {
			i++;
		}
		if (used + 1 >= cap) {
			set_err(err, errlen, "%s is too long: max %zu bytes",
				what, cap - 1);
			return -1;
		}
		dst[used++] = c;
	}
	dst[used] = '\0';
	return 0;
}

/* Return the first byte after "postgresql://" or "postgres://", or NULL. */
static const char *
skip_scheme(const char *url)
{
	static const char *const schemes[] = { "postgresql://", "postgres://" };
	size_t i;

	for (i = 0; i < PGURL_COUNT(schemes); i++) {
		size_t n = strlen(schemes[i]);

		if (strncasecmp(url, schemes[i], n) == 0)
			return url + n;
	}
	return NULL;
}

static int
parse_port(const char *s, size_t n, int *port, char *err, size_t errlen)
{
	size_t i;
	long v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > PGURL_MAX_PORT)
			break;
		v = v * 10 + (s[i] - '0');
	}
	if (n == 0 || i < n || v < 1 || v > PGURL_MAX_PORT) {
		set_err(err, errlen,
			"invalid port '%.*s': expected a number 1..65535",
			(int)(n > 16 ? 16 : n), s);
		return -1;
	}
	*port = (int)v;
	return 0;
}

/* Parse "[v6]" or "[v6]:port" in [s, end); s points at '['. */
static int
parse_v6_host(const char *s, const char *end, struct pg_url *out, char *err,
	      size_t errlen)
{
	const char *close = memchr(s, ']', (size_t)(end - s));

	if (close == NULL) {
		set_err(err, errlen, "missing ']' after IPv6 host");
		return -1;
	}
	if (decode_into(s + 1, (size_t)(close - s - 1), out->host,
			sizeof(out->host), "host", err, errlen) < 0)
		return -1;
	if (strchr(out->host, ':') == NULL) {
		set_err(err, errlen, "'[%s]' is not an IPv6 address",
			out->host);
		return -1;
	}
	if (close + 1 == end)
		return 0;
	if (close[1] != ':') {
		set_err(err, errlen, "unexpected '%c' after ']' in host",
			close[1]);
		return -1;
	}
	return parse_port(close + 2, (size_t)(end - close - 2), &out->port,
			  err, errlen);
}

static int
parse_host_port(const char *s, const char *end, struct pg_url *out,
		char *err, size_t errlen)
{
	const char *colon;

	if (s < end && *s == '[')
		return parse_v6_host(s, end, out, err, errlen);
	colon = memchr(s, ':', (size_t)(end - s));
	if (decode_into(s, (size_t)((colon ? colon : end) - s), out->host,
			sizeof(out->host), "host", err, errlen) < 0)
		return -1;
	if (colon == NULL)
		return 0;
	return parse_port(colon + 1, (size_t)(end - colon - 1), &out->port,
			  err, errlen);
}

static int
parse_userinfo(const char *s, const char *at, struct pg_url *out, char *err,
	       size_t errlen)
{
	const char *colon = memchr(s, ':', (size_t)(at - s));

	if (decode_into(s, (size_t)((colon ? colon : at) - s), out->user,
			sizeof(out->user), "user", err, errlen) < 0)
		return -1;
	if (colon == NULL)
		return 0;
	return decode_into(colon + 1, (size_t)(at - colon - 1), out->password,
			   sizeof(out->password), "password", err, errlen);
}

static int
parse_sslmode(const char *v, enum ssl_mode *mode, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < PGURL_COUNT(sslmode_names); i++) {
		if (strcmp(v, sslmode_names[i]) == 0) {
			*mode = (enum ssl_mode)i;
			return 0;
		}
	}
	set_err(err, errlen,
		"invalid sslmode '%s': expected disable, allow, prefer, "
		"require, verify-ca or verify-full",
		v);
	return -1;
}

static int
is_ignored_param(const char *key)
{
	size_t i;

	for (i = 0; i < PGURL_COUNT(ignored_params); i++)
		if (strcmp(key, ignored_params[i]) == 0)
			return 1;
	return 0;
}

/* Apply one decoded key and the raw value [v, v_end). */
static int
apply_param(const char *key, const char *v, const char *v_end,
	    struct pg_url *out, char *err, size_t errlen)
{
	char buf[512];
	size_t i;

	for (i = 0; i < PGURL_COUNT(string_params); i++) {
		const struct pgurl_field *f = &string_params[i];

		if (strcmp(key, f->param) == 0)
			return decode_into(v, (size_t)(v_end - v),
					   (char *)out + f->offset, f->size,
					   f->param, err, errlen);
	}
	if (strcmp(key, "port") == 0)
		return parse_port(v, (size_t)(v_end - v), &out->port, err,
				  errlen);
	if (strcmp(key, "sslmode") == 0) {
		if (decode_into(v, (size_t)(v_end - v), buf, sizeof(buf),
				"sslmode", err, errlen) < 0)
			return -1;
		return parse_sslmode(buf, &out->sslmode, err, errlen);
	}
	if (is_ignored_param(key))
		return 0;
	set_err(err, errlen, "unsupported query parameter '%s'", key);
	return -1;
}

static int
parse_query(const char *q, struct pg_url *out, char *err, size_t errlen)
{
	char key[64];

	while (*q != '\0') {
		const char *end = q + strcspn(q, "&");
		const char *eq = memchr(q, '=', (size_t)(end - q));

		if (end == q) {
			q++;		/* tolerate "&&" and a trailing '&' */
			continue;
		}
		if (eq == NULL) {
			set_err(err, errlen,
				"query parameter '%.*s' has no value",
				(int)(end - q > 64 ? 64 : end - q), q);
			return -1;
		}
		if (decode_into(q, (size_t)(eq - q), key, sizeof(key),
				"query parameter name", err, errlen) < 0)
			return -1;
		if (apply_param(key, eq + 1, end, out, err, errlen) < 0)
			return -1;
		q = *end == '&' ? end + 1 : end;
	}
	return 0;
}

/* Split the URL into user info, host and port, dbname and query. */
static int
parse_parts(const char *p, struct pg_url *out, char *err, size_t errlen)
{
	const char *auth_end = p + strcspn(p, "/?");
	const char *query = strchr(auth_end, '?');
	const char *host = p, *at = NULL, *c;

	for (c = p; c < auth_end; c++)
		if (*c == '@')
			at = c;
	if (strchr(auth_end, '@') != NULL) {
		set_err(err, errlen,
			"unexpected '@' after the host; percent-encode '@', "
			"'/' and '?' in the user or password (%%40, %%2F, "
			"%%3F)");
		return -1;
	}
	if (at != NULL) {
		if (parse_userinfo(p, at, out, err, errlen) < 0)
			return -1;
		host = at + 1;
	}
	if (parse_host_port(host, auth_end, out, err, errlen) < 0)
		return -1;
	if (*auth_end == '/' &&
	    decode_into(auth_end + 1,
			(size_t)((query ? query : auth_end + strlen(auth_end)) -
				 auth_end - 1),
			out->dbname, sizeof(out->dbname), "database name", err,
			errlen) < 0)
		return -1;
	return query ? parse_query(query + 1, out, err, errlen) : 0;
}

int
pgurl_parse(const char *url, struct pg_url *out, char *err, size_t errlen)
{
	const char *p = url ? skip_scheme(url) : NULL;

	memset(out, 0, sizeof(*out));
	out->port = PGURL_DEFAULT_PORT;
	out->sslmode = SSLMODE_PREFER;
	if (p == NULL) {
		set_err(err, errlen,
			"not a postgresql:// or postgres:// URL");
		return -1;
	}
	if (parse_parts(p, out, err, errlen) < 0)
		return -1;
	if (strchr(out->host, ',') != NULL) {
		set_err(err, errlen, "multiple hosts are not supported");
		return -1;
	}
	if (out->host[0] == '\0')
		memcpy(out->host, PGURL_DEFAULT_HOST,
		       sizeof(PGURL_DEFAULT_HOST));
	if (out->dbname[0] == '\0')
		memcpy(out->dbname, out->user, sizeof(out->user));
	return 0;
}

/* A bounded string builder that remembers whether anything was cut. */
struct pgurl_sink {
	char *buf;
	size_t cap;
	size_t used;
	int overflow;
};

static void
sink_put(struct pgurl_sink *s, const char *p, size_t n)
{
	size_t room = s->cap > s->used ? s->cap - s->used - 1 : 0;

	if (n > room) {
		n = room;
		s->overflow = 1;
	}
	memcpy(s->buf + s->used, p, n);
	s->used += n;
	s->buf[s->used] = '\0';
}

static int
is_unreserved(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

/* Append s, percent-encoding what would not survive a re-parse. */
static void
sink_put_encoded(struct pgurl_sink *s, const char *str)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *str != '\0'; str++) {
		unsigned char c = (unsigned char)*str;
		char esc[3] = { '%', hex[c >> 4], hex[c & 15] };

		if (is_unreserved(*str))
			sink_put(s, str, 1);
		else
			sink_put(s, esc, 3);
	}
}

void
pgurl_display(const struct pg_url *u, char *out, size_t len)
{
	struct pgurl_sink s = { out, len, 0, 0 };
	char port[16];

	if (len == 0)
		return;
	out[0] = '\0';
	sink_put(&s, "postgresql://", 13);
	if (u->user[0] != '\0') {
		sink_put_encoded(&s, u->user);
		sink_put(&s, "@", 1);
	}
	if (strchr(u->host, ':') != NULL) {
		sink_put(&s, "[", 1);
		sink_put(&s, u->host, strlen(u->host));
		sink_put(&s, "]", 1);
	} else {
		sink_put_encoded(&s, u->host);
	}
	snprintf(port, sizeof(port), ":%d/", u->port);
	sink_put(&s, port, strlen(port));
	sink_put_encoded(&s, u->dbname);
}

/* Does the query segment [seg, end) set the password? */
static int
is_password_param(const char *seg, const char *end)
{
	const char *eq = memchr(seg, '=', (size_t)(end - seg));
	size_t klen = (size_t)((eq ? eq : end) - seg);
	char key[256];

	/* Percent-encoding only grows a key: a long raw key is not ours. */
	if (klen >= sizeof(key))
		return 0;
	if (decode_into(seg, klen, key, sizeof(key), "", NULL, 0) < 0)
		return 1;	/* unreadable: drop it rather than leak it */
	return strcmp(key, "password") == 0;
}

int
pgurl_redact(const char *url, char *out, size_t len)
{
	struct pgurl_sink s = { out, len, 0, 0 };
	const char *p = url ? skip_scheme(url) : NULL;
	const char *auth_end, *query, *at = NULL, *c;
	char sep = '?';

	if (len == 0)
		return -1;
	out[0] = '\0';
	if (p == NULL)
		return -1;
	auth_end = p + strcspn(p, "/?");
	if (strchr(auth_end, '@') != NULL)
		return -1;	/* see parse_parts(): the password may leak */
	query = strchr(auth_end, '?');
	for (c = p; c < auth_end; c++)
		if (*c == '@')
			at = c;
	sink_put(&s, url, (size_t)(p - url));
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		sink_put(&s, p, (size_t)((colon ? colon : at) - p));
		p = at;		/* copy from the '@' on */
	}
	sink_put(&s, p, (size_t)((query ? query : p + strlen(p)) - p));
	for (c = query; c != NULL && *c != '\0';) {
		const char *seg = c + 1, *end = seg + strcspn(seg, "&");

		if (end > seg && !is_password_param(seg, end)) {
			sink_put(&s, &sep, 1);
			sink_put(&s, seg, (size_t)(end - seg));
			sep = '&';
		}
		c = *end ? end : NULL;
	}
	if (s.overflow) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

const char *
pgurl_sslmode_name(enum ssl_mode mode)
{
	if ((unsigned)mode >= PGURL_COUNT(sslmode_names))
		return "?";
	return sslmode_names[mode];
}
