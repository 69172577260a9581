/*
 * main.c - flags, env and ini file -> struct config -> server_run().
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/log.h"
#include "core/server.h"

extern char **environ;

int
main(int argc, char **argv)
{
	static struct server srv;
	struct config cfg;
	char err[512];
	int rc;

	switch (config_load(&cfg, argc, argv, environ, err, sizeof(err))) {
	case CONFIG_EXIT:
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "pgvalet: %s\n", err);
		return 2;
	case CONFIG_OK:
		break;
	}
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
