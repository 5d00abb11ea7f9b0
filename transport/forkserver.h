/*
 * forkserver.h - the handoff daemon's workers (forkserver.c), as the
 * delivery code they run sees them (main.c pipe_main).
 */
#ifndef M3_FORKSERVER_H
#define M3_FORKSERVER_H

#include <limits.h>
#include <stdint.h>

#include "conf/conf.h"
#include "pool.h"

/* What a worker keeps from one handed-over delivery to the next: the
 * configuration and, for it, the sessions to Microsoft 365 and the store
 * handle (pool.h). */
struct handoff_worker {
	const struct conf *conf; /* NULL until the first delivery */
	char conf_file[PATH_MAX];
	uint64_t conf_at; /* CLOCK_MONOTONIC ms of the load */
	struct pool pool; /* for conf; valid while conf is */
};

/* handoff_conf - the configuration of conf_file for a delivery in worker
 * w: the one kept while every file it was read from stats as it did and
 * it is younger than HANDOFF_CONF_S seconds, else read again (the kept
 * sessions closed first); NULL if it has errors */
const struct conf *handoff_conf(struct handoff_worker *w, const char *conf_file);

/* forkserver_serve - m365-transport -D: take m365-handoff's requests on
 * path until SIGTERM, each run by run() in one of the daemon's worker
 * processes; the exit status */
int forkserver_serve(const char *path, int (*run)(int, char **, struct handoff_worker *));

#endif
