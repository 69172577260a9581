/*
 * main.c - flags, env and ini file -> struct config -> server_run(), or
 * `pgvalet clean` (the same options) -> pgvalet_clean().
 */
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/server.h"
#include "invalidate/clean.h"

extern char **environ;

int
main(int argc, char **argv)
{
	static struct server srv;
	struct config cfg;
	char err[512];
	int rc;
	bool clean = argc > 1 && strcmp(argv[1], "clean") == 0;

	if (clean) {	/* pgvalet clean [options]: options as for the proxy */
		argc--;
		argv++;
	}
	switch (config_load(&cfg, argc, argv, environ, err, sizeof(err))) {
	case CONFIG_EXIT:
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "pgvalet: %s\n", err);
		return 2;
	case CONFIG_OK:
		break;
	}
	if (clean)
		return pgvalet_clean(&cfg, stdout);
	log_init(cfg.verbose);
	if (server_init(&srv, &cfg, err, sizeof(err))) {
		fprintf(stderr, "pgvalet: %s\n", err);
		server_free(&srv);
		return 2;
	}
	rc = server_run(&srv);
	server_free(&srv);
	return rc ? 1 : 0;
}
