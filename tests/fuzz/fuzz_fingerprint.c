/*
 * fuzz_fingerprint.c - the literal-blind shape hash (observe/fingerprint.h,
 * fp_shape_hash) on arbitrary statement text, in a heap buffer of exactly
 * 'size' bytes (no NUL after it) so ASan reports any read past the end.
 * It must be deterministic and never 0 (0 marks an empty cache slot).
 */
#include <string.h>

#include "fuzz.h"
#include "observe/fingerprint.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 16);
	uint64_t h;

	if (!text)
		return 0;
	if (size)
		memcpy(text, data, size);
	h = fp_shape_hash(text, size);
	FUZZ_CHECK(h != 0);
	FUZZ_CHECK(fp_shape_hash(text, size) == h);
	/* The same bytes at another address hash the same. */
	{
		char *copy = malloc(size ? size : 1);

		if (copy) {
			if (size)
				memcpy(copy, text, size);
			FUZZ_CHECK(fp_shape_hash(copy, size) == h);
			free(copy);
		}
	}
	free(text);
	return 0;
}
