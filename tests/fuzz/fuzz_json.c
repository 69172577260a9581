/*
 * fuzz_json.c - the dashboard's request-body reader (http/json.h,
 * json_flat_parse) on arbitrary bytes, in a heap buffer of exactly 'size'
 * bytes so ASan reports any read past the end.  Every string value it
 * yields, written back with json_put_str(), must parse again.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "http/json.h"

static int
ignore(const char *key, const struct json_value *v, void *arg)
{
	(void)key;
	(void)v;
	(void)arg;
	return 0;
}

static int
check_member(const char *key, const struct json_value *v, void *arg)
{
	char *buf = NULL, err[128];
	size_t len = 0;
	FILE *f;

	(void)arg;
	FUZZ_CHECK(memchr(key, 0, JSON_KEY_MAX) != NULL);
	FUZZ_CHECK(memchr(v->raw, 0, sizeof(v->raw)) != NULL);
	if (v->type != JSON_STRING)
		return 0;
	FUZZ_CHECK(memchr(v->text, 0, sizeof(v->text)) != NULL);
	f = open_memstream(&buf, &len);
	if (!f)
		return 0;
	fputs("{\"k\":", f);
	json_put_str(f, v->text);
	fputc('}', f);
	if (fclose(f) == 0)
		FUZZ_CHECK(json_flat_parse(buf, len, ignore, NULL, err,
					   sizeof(err)) == 0);
	free(buf);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1), err[128];
	int rc;

	if (!text)
		return 0;
	if (size)
		memcpy(text, data, size);
	err[0] = '\0';
	rc = json_flat_parse(text, size, check_member, NULL, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(rc == 0 || err[0] != '\0');
	free(text);
	return 0;
}
