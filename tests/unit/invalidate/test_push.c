/*
 * test_push.c - the push channel (invalidate/push.h) over real sockets: a
 * unix socket in a fresh temporary directory and a TCP port the kernel
 * picks (PUSH_TCP_ANY_PORT).  Lines are compared byte for byte; the
 * subscriber side is a plain blocking socket read with poll() timeouts,
 * so a missing line fails the test instead of hanging it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "invalidate/push.h"

enum {
	WAIT_MS = 5000,		/* longest wait for any one line */
	LINE_MAX_LEN = 8192,
};

/* ---- helpers ------------------------------------------------------------- */

struct client {
	int fd;
	size_t len;
	char buf[1 << 16];
};

static char tmpdir[64];

static void
sock_path(char *out, size_t len, const char *name)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgvalet-push-XXXXXX");
		assert_non_null(mkdtemp(tmpdir));
	}
	snprintf(out, len, "%s/%s", tmpdir, name);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* unix_name NULL = no unix socket; tcp 0 = none, else any free port. */
static struct push *
push_up(const char *unix_name, bool tcp, int keepalive_ms,
	size_t max_pending)
{
	struct push_config cfg = { .tcp_addr = "127.0.0.1",
				   .keepalive_ms = keepalive_ms,
				   .max_pending = max_pending };
	char err[256] = "";
	struct push *p;

	if (unix_name)
		sock_path(cfg.unix_path, sizeof(cfg.unix_path), unix_name);
	cfg.tcp_port = tcp ? PUSH_TCP_ANY_PORT : 0;
	p = push_new(&cfg, err, sizeof(err));
	if (!p)
		fail_msg("push_new: %s", err);
	assert_int_equal(push_start(p), 0);
	return p;
}

static struct client *
client_new(int fd)
{
	struct client *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->fd = fd;
	return c;
}

static struct client *
client_unix(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sock_path(sa.sun_path, sizeof(sa.sun_path), name);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return client_new(fd);
}

static struct client *
client_tcp(const struct push *p)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_true(push_tcp_port(p) > 0);
	sa.sin_port = htons((uint16_t)push_tcp_port(p));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return client_new(fd);
}

static void
client_free(struct client *c)
{
	close(c->fd);
	free(c);
}

/*
 * The next whole line, without its '\n', into line; its length, or -1 at
 * EOF (a partial last line is dropped, as a subscriber must).
 */
static ssize_t
next_line(struct client *c, char *line, size_t size)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	char *nl;
	size_t n;
	ssize_t r;

	for (;;) {
		nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			n = (size_t)(nl - c->buf);
			assert_true(n < size);
			memcpy(line, c->buf, n);
			line[n] = '\0';
			c->len -= n + 1;
			memmove(c->buf, nl + 1, c->len);
			return (ssize_t)n;
		}
		assert_true(c->len < sizeof(c->buf));
		if (poll(&pfd, 1, WAIT_MS) != 1)
			fail_msg("no line from the push channel in %d ms",
				 WAIT_MS);
		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return -1;
		assert_true(r > 0);
		c->len += (size_t)r;
	}
}

static void
expect_line(struct client *c, const char *want)
{
	char line[LINE_MAX_LEN];

	assert_true(next_line(c, line, sizeof(line)) >= 0);
	assert_string_equal(line, want);
}

static void
expect_eof(struct client *c)
{
	char line[LINE_MAX_LEN];

	while (next_line(c, line, sizeof(line)) >= 0)
		;
}

static uint64_t
num_after(const char *line, const char *key)
{
	const char *s = strstr(line, key);

	assert_non_null(s);
	return strtoull(s + strlen(key), NULL, 10);
}

static uint64_t
seq_of(const char *line)
{
	return num_after(line, "\"seq\":");
}

static struct push_stats
stats(struct push *p)
{
	struct push_stats st;

	push_get_stats(p, &st);
	return st;
}

/* The thread notices a closed subscriber a little later. */
static void
wait_subscribers(struct push *p, uint64_t n)
{
	int i;

	for (i = 0; i < WAIT_MS && stats(p).subscribers != n; i++)
		sleep_ms(1);
	assert_int_equal(stats(p).subscribers, n);
}

#define HELLO(seq) "{\"type\":\"hello\",\"version\":1,\"keepalive_ms\":1000," \
		   "\"seq\":" #seq "}"

/* ---- connecting ---------------------------------------------------------- */

static void
test_hello_and_state(void **state)
{
	struct push *p = push_up("hello.sock", true, 0, 0);
	struct client *a, *b;

	(void)state;
	/* Recorded while nobody listens; no event number used up. */
	push_stream_state(p, "app", true);
	push_stream_state(p, "other", true);
	push_stream_state(p, "app", false);
	assert_int_equal(stats(p).events, 0);

	a = client_unix("hello.sock");
	expect_line(a, HELLO(0));
	expect_line(a, "{\"type\":\"state\",\"seq\":0,\"db\":\"app\","
		       "\"stream\":\"down\"}");
	expect_line(a, "{\"type\":\"state\",\"seq\":0,\"db\":\"other\","
		       "\"stream\":\"up\"}");
	assert_int_equal(stats(p).subscribers, 1);

	push_stream_state(p, "app", true);
	expect_line(a, "{\"type\":\"state\",\"seq\":1,\"db\":\"app\","
		       "\"stream\":\"up\"}");

	/* A late subscriber gets the current states, in first-set order. */
	b = client_tcp(p);
	expect_line(b, HELLO(1));
	expect_line(b, "{\"type\":\"state\",\"seq\":1,\"db\":\"app\","
		       "\"stream\":\"up\"}");
	expect_line(b, "{\"type\":\"state\",\"seq\":1,\"db\":\"other\","
		       "\"stream\":\"up\"}");
	push_stream_state(p, "third", false);
	expect_line(a, "{\"type\":\"state\",\"seq\":2,\"db\":\"third\","
		       "\"stream\":\"down\"}");
	expect_line(b, "{\"type\":\"state\",\"seq\":2,\"db\":\"third\","
		       "\"stream\":\"down\"}");
	assert_int_equal(stats(p).subscribers, 2);
	assert_int_equal(stats(p).events, 2);

	client_free(a);
	client_free(b);
	push_free(p);
}

/* ---- events -------------------------------------------------------------- */

static void
test_events_exact(void **state)
{
	struct push *p = push_up("events.sock", false, 0, 0);
	struct client *c = client_unix("events.sock");
	const uint64_t tags[] = { 0x9f3c0a1b2c3d4e5full, 1234, UINT64_MAX, 0 };
	const int64_t rows[] = { 5, 6, -7, INT64_MIN, INT64_MAX };
	struct push_stats st;

	(void)state;
	expect_line(c, HELLO(0));

	push_tags(p, "app", tags, 4, "proxy");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":1,\"db\":\"app\","
		       "\"source\":\"proxy\",\"tags\":[\"9f3c0a1b2c3d4e5f\","
		       "\"00000000000004d2\",\"ffffffffffffffff\","
		       "\"0000000000000000\"]}");

	push_rows(p, "app", 16385, "public", "items", tags, 1, rows, 2,
		  "wal");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":2,\"db\":\"app\","
		       "\"source\":\"wal\",\"tags\":[\"9f3c0a1b2c3d4e5f\"],"
		       "\"oid\":16385,\"schema\":\"public\","
		       "\"table\":\"items\",\"rows\":[5,6]}");

	push_rows(p, "app", 4294967295u, "s", "t", tags + 1, 1, rows, 5,
		  "wal");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":3,\"db\":\"app\","
		       "\"source\":\"wal\",\"tags\":[\"00000000000004d2\"],"
		       "\"oid\":4294967295,\"schema\":\"s\",\"table\":\"t\","
		       "\"rows\":[5,6,-7,-9223372036854775808,"
		       "9223372036854775807]}");

	/* The whole table: no rows; unknown oid and schema left out. */
	push_rows(p, "app", 0, NULL, "items", tags, 2, NULL, 0, "wal");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":4,\"db\":\"app\","
		       "\"source\":\"wal\",\"tags\":[\"9f3c0a1b2c3d4e5f\","
		       "\"00000000000004d2\"],\"table\":\"items\"}");
	push_rows(p, "app", 7, "s", "t", tags, 1, rows, 0, "wal");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":5,\"db\":\"app\","
		       "\"source\":\"wal\",\"tags\":[\"9f3c0a1b2c3d4e5f\"],"
		       "\"oid\":7,\"schema\":\"s\",\"table\":\"t\"}");

	push_tags(p, "app", NULL, 0, NULL);
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":6,\"db\":\"app\","
		       "\"tags\":[]}");

	push_flush(p, "app", "a write through the proxy");
	expect_line(c, "{\"type\":\"flush\",\"seq\":7,\"db\":\"app\","
		       "\"reason\":\"a write through the proxy\"}");
	push_flush(p, NULL, "restart");
	expect_line(c, "{\"type\":\"flush\",\"seq\":8,\"db\":null,"
		       "\"reason\":\"restart\"}");
	push_flush(p, "app", NULL);
	expect_line(c, "{\"type\":\"flush\",\"seq\":9,\"db\":\"app\"}");

	push_stream_state(p, "app", false);
	expect_line(c, "{\"type\":\"state\",\"seq\":10,\"db\":\"app\","
		       "\"stream\":\"down\"}");
	push_stream_state(p, "app", true);
	expect_line(c, "{\"type\":\"state\",\"seq\":11,\"db\":\"app\","
		       "\"stream\":\"up\"}");

	st = stats(p);
	assert_int_equal(st.events, 11);
	assert_int_equal(st.subscribers, 1);
	assert_int_equal(st.dropped_slow, 0);
	assert_true(st.bytes_sent > 11 * 30);
	client_free(c);
	push_free(p);
}

static void
test_escaping(void **state)
{
	struct push *p = push_up(NULL, true, 0, 0);
	struct client *c = client_tcp(p);
	const uint64_t tag = 1;

	(void)state;
	expect_line(c, HELLO(0));
	push_rows(p, "d\"b\\", 1, "sch\n\r\t\x01\x1f\x7f",
		  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", &tag, 1, NULL,
		  0, "w\"al");
	expect_line(c, "{\"type\":\"invalidate\",\"seq\":1,"
		       "\"db\":\"d\\\"b\\\\\",\"source\":\"w\\\"al\","
		       "\"tags\":[\"0000000000000001\"],\"oid\":1,"
		       "\"schema\":\"sch\\u000a\\u000d\\u0009\\u0001\\u001f"
		       "\x7f\",\"table\":\"caf\xc3\xa9 \xe2\x82\xac "
		       "\xf0\x9f\x98\x80\"}");

	/*
	 * Not UTF-8 (a LATIN1 database, overlong forms, a surrogate, values
	 * past U+10FFFF, cut sequences): byte by byte as \u00XX.
	 */
	push_flush(p, "\xe9t\xe9", "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 "
		   "\xe2\x82 \xf0\x9f\x98");
	expect_line(c, "{\"type\":\"flush\",\"seq\":2,"
		       "\"db\":\"\\u00e9t\\u00e9\",\"reason\":\"\\u00c0\\u00af "
		       "\\u00ed\\u00a0\\u0080 \\u00f4\\u0090\\u0080\\u0080 "
		       "\\u00e2\\u0082 \\u00f0\\u009f\\u0098\"}");

	push_stream_state(p, "", true);
	expect_line(c, "{\"type\":\"state\",\"seq\":3,\"db\":\"\","
		       "\"stream\":\"up\"}");
	client_free(c);
	push_free(p);
}

/* Lines that differ in kind and length, numbered from 1. */
static void
push_mixed(struct push *p, unsigned i)
{
	uint64_t tags[8];
	int64_t rows[3] = { (int64_t)i, -(int64_t)i, 42 };
	unsigned k;

	for (k = 0; k < 8; k++)
		tags[k] = (uint64_t)i * 0x9e3779b97f4a7c15ull + k;
	switch (i % 4) {
	case 0:
		push_tags(p, "app", tags, 1 + i % 8, "proxy");
		break;
	case 1:
		push_rows(p, "app", i, "public", "items", tags, 2, rows, 3,
			  "wal");
		break;
	case 2:
		push_flush(p, i % 8 ? "app" : NULL, "flush");
		break;
	default:
		push_stream_state(p, i % 8 == 3 ? "app" : "other", i % 2);
		break;
	}
}

static void
test_two_subscribers(void **state)
{
	struct push *p = push_up("two.sock", true, 0, 0);
	struct client *a = client_unix("two.sock"), *b = client_tcp(p);
	char la[LINE_MAX_LEN], lb[LINE_MAX_LEN];
	unsigned i, n = 2000;

	(void)state;
	expect_line(a, HELLO(0));
	expect_line(b, HELLO(0));
	for (i = 1; i <= n; i++)
		push_mixed(p, i);
	for (i = 1; i <= n; i++) {
		assert_true(next_line(a, la, sizeof(la)) > 0);
		assert_true(next_line(b, lb, sizeof(lb)) > 0);
		assert_string_equal(la, lb);
		assert_int_equal(seq_of(la), i);
	}
	assert_int_equal(stats(p).events, n);
	client_free(a);
	client_free(b);
	push_free(p);
}

/*
 * One event at a time, each read before the next: every wake-up must get
 * through (the keepalive is far off, so nothing else would flush it).
 */
static void
test_ping_pong(void **state)
{
	struct push *p = push_up("pingpong.sock", true, 60000, 0);
	struct client *a = client_unix("pingpong.sock"), *b = client_tcp(p);
	char line[LINE_MAX_LEN];
	uint64_t tag;
	unsigned i;

	(void)state;
	expect_line(a, "{\"type\":\"hello\",\"version\":1,"
		       "\"keepalive_ms\":60000,\"seq\":0}");
	expect_line(b, "{\"type\":\"hello\",\"version\":1,"
		       "\"keepalive_ms\":60000,\"seq\":0}");
	for (i = 1; i <= 5000; i++) {
		tag = i;
		push_tags(p, "app", &tag, 1, "proxy");
		assert_true(next_line(i % 2 ? a : b, line, sizeof(line)) > 0);
		assert_int_equal(seq_of(line), i);
		assert_true(next_line(i % 2 ? b : a, line, sizeof(line)) > 0);
		assert_int_equal(seq_of(line), i);
	}
	client_free(a);
	client_free(b);
	push_free(p);
}

struct producer {
	struct push *p;
	unsigned from, n;
};

static void *
producer_main(void *arg)
{
	struct producer *pr = arg;
	unsigned i;

	for (i = 0; i < pr->n; i++)
		push_mixed(pr->p, pr->from + i);
	return NULL;
}

/*
 * Producers on several threads: one gap-free sequence, the same for every
 * subscriber, and no wake-up lost (no keepalive would flush it).
 */
static void
test_threads(void **state)
{
	enum { THREADS = 4, EACH = 3000 };
	struct push *p = push_up("threads.sock", true, 60000, 0);
	struct client *a = client_unix("threads.sock"), *b = client_tcp(p);
	struct producer pr[THREADS];
	pthread_t t[THREADS];
	char la[LINE_MAX_LEN], lb[LINE_MAX_LEN];
	unsigned i;

	(void)state;
	expect_line(a, "{\"type\":\"hello\",\"version\":1,"
		       "\"keepalive_ms\":60000,\"seq\":0}");
	expect_line(b, "{\"type\":\"hello\",\"version\":1,"
		       "\"keepalive_ms\":60000,\"seq\":0}");
	for (i = 0; i < THREADS; i++) {
		pr[i] = (struct producer){ p, 1 + i * EACH, EACH };
		assert_int_equal(pthread_create(&t[i], NULL, producer_main,
						&pr[i]), 0);
	}
	for (i = 1; i <= THREADS * EACH; i++) {
		assert_true(next_line(a, la, sizeof(la)) > 0);
		assert_true(next_line(b, lb, sizeof(lb)) > 0);
		assert_string_equal(la, lb);
		assert_int_equal(seq_of(la), i);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(stats(p).events, THREADS * EACH);
	client_free(a);
	client_free(b);
	push_free(p);
}

static void
test_keepalive(void **state)
{
	struct push *p = push_up("ka.sock", false, 50, 0);
	struct client *c = client_unix("ka.sock");
	char line[LINE_MAX_LEN];
	uint64_t t0, t, n = 0;

	(void)state;
	expect_line(c, "{\"type\":\"hello\",\"version\":1,\"keepalive_ms\":50,"
		       "\"seq\":0}");
	assert_true(next_line(c, line, sizeof(line)) > 0);
	assert_non_null(strstr(line, "{\"type\":\"keepalive\",\"seq\":0,"
				     "\"time_ms\":"));
	t = num_after(line, "\"time_ms\":");
	assert_true(t + 5000 > now_ms() && t < now_ms() + 5000);

	push_flush(p, "app", "x");
	expect_line(c, "{\"type\":\"flush\",\"seq\":1,\"db\":\"app\","
		       "\"reason\":\"x\"}");
	/* Keepalives repeat the latest event's number, and do not flood. */
	t0 = now_ms();
	while (now_ms() < t0 + 500) {
		assert_true(next_line(c, line, sizeof(line)) > 0);
		assert_non_null(strstr(line, "{\"type\":\"keepalive\","
					     "\"seq\":1,\"time_ms\":"));
		n++;
	}
	assert_true(n >= 3);
	assert_true(n <= 12);
	assert_int_equal(stats(p).events, 1);
	client_free(c);
	push_free(p);
}

/* ---- slow and vanishing subscribers -------------------------------------- */

static void
test_slow_dropped(void **state)
{
	struct push *p = push_up("slow.sock", true, 0, 64 * 1024);
	struct client *slow = client_unix("slow.sock"), *ok = client_tcp(p);
	char line[LINE_MAX_LEN];
	unsigned i, round, seq = 0;
	uint64_t tags[20];
	int64_t rows[20];
	struct push_stats st;

	(void)state;
	expect_line(slow, HELLO(0));
	expect_line(ok, HELLO(0));
	for (i = 0; i < 20; i++) {
		tags[i] = 0x0123456789abcdefull * (i + 1);
		rows[i] = 1000000 + i;
	}
	/*
	 * 'slow' never reads: the kernel's buffer fills, then 64 KB queue.
	 * 'ok' reads each round (about 13 KB) before the next.  Its count
	 * can lag by what the thread has just sent (the count is updated
	 * after send() returns), so a round stays well under half of 64 KB.
	 */
	for (round = 0; round < 5000 && !stats(p).dropped_slow; round++) {
		for (i = 0; i < 20; i++)
			push_rows(p, "app", 16385, "public", "items", tags,
				  20, rows, 20, "wal");
		for (i = 0; i < 20; i++) {
			assert_true(next_line(ok, line, sizeof(line)) > 0);
			assert_int_equal(seq_of(line), ++seq);
		}
	}
	st = stats(p);
	assert_int_equal(st.dropped_slow, 1);
	assert_true(round > 1);	/* more than max_pending was sent first */
	expect_eof(slow);
	wait_subscribers(p, 1);

	push_flush(p, "app", "still here");
	assert_true(next_line(ok, line, sizeof(line)) > 0);
	assert_int_equal(seq_of(line), ++seq);
	assert_non_null(strstr(line, "\"still here\""));
	client_free(slow);
	client_free(ok);
	push_free(p);
}

static void
test_subscriber_input_and_eof(void **state)
{
	struct push *p = push_up("eof.sock", true, 0, 0);
	struct client *a = client_unix("eof.sock"), *b = client_tcp(p);
	char junk[10000];

	(void)state;
	expect_line(a, HELLO(0));
	expect_line(b, HELLO(0));
	/* What a subscriber says is read and ignored. */
	memset(junk, '{', sizeof(junk));
	assert_int_equal(send(a->fd, junk, sizeof(junk), 0), sizeof(junk));
	assert_int_equal(send(b->fd, "hello\n", 6, 0), 6);
	push_flush(p, "app", "x");
	expect_line(a, "{\"type\":\"flush\",\"seq\":1,\"db\":\"app\","
		       "\"reason\":\"x\"}");
	expect_line(b, "{\"type\":\"flush\",\"seq\":1,\"db\":\"app\","
		       "\"reason\":\"x\"}");
	assert_int_equal(stats(p).subscribers, 2);

	/* EOF closes; half-closing counts too. */
	client_free(a);
	wait_subscribers(p, 1);
	assert_int_equal(shutdown(b->fd, SHUT_WR), 0);
	expect_eof(b);
	wait_subscribers(p, 0);
	assert_int_equal(stats(p).dropped_slow, 0);
	client_free(b);
	push_free(p);
}

/* A subscriber reset mid-stream: EPIPE for the thread, no SIGPIPE. */
static void
test_reset_while_sending(void **state)
{
	struct push *p = push_up(NULL, true, 0, 0);
	struct client *c = client_tcp(p);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	uint64_t tags[64] = { 0 };
	int i;

	(void)state;
	expect_line(c, HELLO(0));
	for (i = 0; i < 2000; i++)
		push_tags(p, "app", tags, 64, "proxy");
	assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg,
				    sizeof(lg)), 0);
	client_free(c);
	for (i = 0; i < 2000; i++)
		push_tags(p, "app", tags, 64, "proxy");
	wait_subscribers(p, 0);
	push_free(p);
}

static void
test_free_with_subscribers(void **state)
{
	struct push *p = push_up("free.sock", true, 0, 0);
	struct client *c[4];
	uint64_t tags[32] = { 0 };
	int i;

	(void)state;
	c[0] = client_unix("free.sock");
	c[1] = client_unix("free.sock");
	c[2] = client_tcp(p);
	c[3] = client_tcp(p);
	for (i = 0; i < 4; i++)
		expect_line(c[i], HELLO(0));
	push_stream_state(p, "app", true);
	/* Leave plenty queued, unread. */
	for (i = 0; i < 3000; i++)
		push_tags(p, "app", tags, 32, "proxy");
	push_free(p);
	for (i = 0; i < 4; i++) {
		expect_eof(c[i]);
		client_free(c[i]);
	}
}

/* ---- set-up -------------------------------------------------------------- */

static void
test_live_socket_refused(void **state)
{
	struct push_config cfg = { .tcp_port = 0 };
	struct push *p = push_up("live.sock", false, 0, 0), *q;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256], want[256];
	struct client *c;
	struct stat st;
	int fd;

	(void)state;
	sock_path(cfg.unix_path, sizeof(cfg.unix_path), "live.sock");
	q = push_new(&cfg, err, sizeof(err));
	assert_null(q);
	snprintf(want, sizeof(want), "push channel: cannot listen on %s: "
		 "another process is listening there", cfg.unix_path);
	assert_string_equal(err, want);
	/* The live one is untouched. */
	c = client_unix("live.sock");
	expect_line(c, HELLO(0));
	client_free(c);
	push_free(p);
	/* push_free removes the socket file. */
	assert_int_equal(stat(cfg.unix_path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* A stale socket (its process died) is replaced. */
	sock_path(sa.sun_path, sizeof(sa.sun_path), "stale.sock");
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(stat(sa.sun_path, &st), 0);
	p = push_up("stale.sock", false, 0, 0);
	assert_int_equal(stat(sa.sun_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0777);
	c = client_unix("stale.sock");
	expect_line(c, HELLO(0));
	client_free(c);
	push_free(p);

	/* Anything else at the path is left alone. */
	sock_path(cfg.unix_path, sizeof(cfg.unix_path), "file");
	fd = open(cfg.unix_path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(push_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "is not a socket"));
	assert_int_equal(stat(cfg.unix_path, &st), 0);
	unlink(cfg.unix_path);
}

static void
test_tcp_in_use(void **state)
{
	struct push *p = push_up(NULL, true, 0, 0);
	struct push_config cfg = { .tcp_addr = "127.0.0.1" };
	char err[256], want[256];

	(void)state;
	cfg.tcp_port = push_tcp_port(p);
	assert_null(push_new(&cfg, err, sizeof(err)));
	snprintf(want, sizeof(want), "push channel: cannot listen on "
		 "127.0.0.1:%d: Address already in use", cfg.tcp_port);
	assert_string_equal(err, want);

	snprintf(cfg.tcp_addr, sizeof(cfg.tcp_addr), "localhost");
	assert_null(push_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid address 'localhost'"));
	cfg.tcp_port = 70000;
	assert_null(push_new(&cfg, err, sizeof(err)));
	assert_string_equal(err, "push channel: invalid port 70000");
	push_free(p);
}

/* Nobody subscribed: events are dropped at once, states remembered. */
static void
test_no_subscribers(void **state)
{
	struct push *p = push_up("none.sock", true, 0, 0);
	uint64_t tag = 5;
	int64_t row = 1;
	struct client *c;
	int i;

	(void)state;
	for (i = 0; i < 10000; i++) {
		push_tags(p, "app", &tag, 1, "proxy");
		push_rows(p, "app", 1, "s", "t", &tag, 1, &row, 1, "wal");
		push_flush(p, NULL, "x");
	}
	push_stream_state(p, "app", true);
	assert_int_equal(stats(p).events, 0);
	assert_int_equal(stats(p).bytes_sent, 0);
	c = client_unix("none.sock");
	expect_line(c, HELLO(0));
	expect_line(c, "{\"type\":\"state\",\"seq\":0,\"db\":\"app\","
		       "\"stream\":\"up\"}");
	client_free(c);
	push_free(p);

	/* Never started, nothing to listen on: still fine to call. */
	{
		struct push_config cfg = { .tcp_port = 0 };
		char err[256];

		p = push_new(&cfg, err, sizeof(err));
		assert_non_null(p);
		assert_int_equal(push_tcp_port(p), 0);
		push_tags(p, "app", &tag, 1, "proxy");
		push_stream_state(p, "app", false);
		push_free(p);
	}
}

static int
teardown_all(void **state)
{
	(void)state;
	if (tmpdir[0])
		rmdir(tmpdir);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_and_state),
		cmocka_unit_test(test_events_exact),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_two_subscribers),
		cmocka_unit_test(test_ping_pong),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_slow_dropped),
		cmocka_unit_test(test_subscriber_input_and_eof),
		cmocka_unit_test(test_reset_while_sending),
		cmocka_unit_test(test_free_with_subscribers),
		cmocka_unit_test(test_live_socket_refused),
		cmocka_unit_test(test_tcp_in_use),
		cmocka_unit_test(test_no_subscribers),
	};

	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
