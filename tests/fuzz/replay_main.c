/*
 * replay_main.c - run a fuzz target over saved inputs without libFuzzer,
 * so a plain gcc build can replay the corpus in `make test` (and under
 * `make asan`).  Each argument is a file, or a directory whose regular
 * files are all run.  Each input is read into a heap buffer of exactly
 * its size, as libFuzzer does, so ASan still sees overreads.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long len;
	size_t n;

	if (!f) {
		perror(path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto fail;
	/* malloc(0) may return NULL; an empty input is still an input. */
	data = malloc(len ? (size_t)len : 1);
	if (!data)
		goto fail;
	n = fread(data, 1, (size_t)len, f);
	if (n != (size_t)len)
		goto fail;
	fclose(f);
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
fail:
	perror(path);
	free(data);
	fclose(f);
	return -1;
}

static int
run_dir(const char *dir, size_t *count)
{
	struct dirent **list;
	char path[4096];
	struct stat st;
	int i, n, rc = 0;

	/* Sorted, so a failure names the same file on every run. */
	n = scandir(dir, &list, NULL, alphasort);
	if (n < 0) {
		perror(dir);
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				rc = -1;
			else
				(*count)++;
		}
		free(list[i]);
	}
	free(list);
	return rc;
}

int
main(int argc, char **argv)
{
	struct stat st;
	size_t count = 0;
	int i, rc = 0;

	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) < 0)
				rc = 1;
		} else if (run_file(argv[i]) < 0) {
			rc = 1;
		} else {
			count++;
		}
	}
	printf("%s: %zu inputs replayed\n", argv[0], count);
	return rc;
}
