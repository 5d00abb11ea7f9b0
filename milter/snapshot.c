/*
 * snapshot.c - the worker's configuration: one immutable snapshot at a time,
 * refcounted so that a reload never pulls a configuration out from under a
 * message in flight.  A reload builds the whole new configuration first and
 * swaps it in only if it loaded without error (all or nothing).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/log.h"
#include "milter.h"
#include "net/spfgate.h"

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *current;

/* gate_log - spfgate.h's findings, into the log */
static void
gate_log(void *arg, enum spfgate_level lvl, const char *line)
{
	(void)arg;
	if (lvl == SPFGATE_INFO)
		log_info("%s", line);
	else if (lvl == SPFGATE_WARN)
		log_warnx("%s", line);
	else
		log_errx("%s", line);
}

/*
 * snap_new - a snapshot of conf.  Only a worker's snapshots carry the
 * require_spf_pass facts (with_facts): the supervisor keeps the file
 * checked and parsed for the next worker, and the look-ups and their log
 * lines happen once per reload, in the worker that uses them.
 */
static struct snapshot *
snap_new(struct conf *conf, bool with_facts)
{
	struct snapshot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if (with_facts && conf->n_domains > 0) {
		s->spf_unauthorized = calloc(conf->n_domains, sizeof(bool));
		if (s->spf_unauthorized == NULL) {
			free(s);
			return NULL;
		}
		spfgate_check(conf, s->spf_unauthorized, gate_log, NULL);
	}
	s->facts.spf_unauthorized = s->spf_unauthorized;
	s->conf = conf;
	s->refs = 1; /* the "current" reference */
	return s;
}

static void
snap_free(struct snapshot *s)
{
	conf_free(s->conf);
	free(s->spf_unauthorized);
	free(s);
}

void
snap_init(struct conf *conf)
{
	current = snap_new(conf, false);
}

int
snap_worker_init(void)
{
	struct snapshot *s;

	if (current == NULL)
		return -1;
	/* A worker starts with the supervisor's snapshot, without facts: it
	 * is this process's own copy, and no thread uses it yet. */
	s = snap_new(current->conf, true);
	if (s == NULL)
		return -1;
	current->conf = NULL;
	snap_put(current);
	current = s;
	return 0;
}

struct snapshot *
snap_get(void)
{
	struct snapshot *s;

	pthread_mutex_lock(&snap_lock);
	s = current;
	if (s != NULL)
		s->refs++;
	pthread_mutex_unlock(&snap_lock);
	return s;
}

void
snap_put(struct snapshot *s)
{
	int last;

	if (s == NULL)
		return;
	pthread_mutex_lock(&snap_lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&snap_lock);
	if (last)
		snap_free(s);
}

int
snap_reload(const char *path, bool worker)
{
	struct conf *conf;
	struct snapshot *s, *old;

	/* The supervisor checked the file first and logged its warnings. */
	conf = conf_load_logged(path, !worker);
	if (conf == NULL) {
		log_errx("reload: %s has errors; keeping the running configuration", path);
		return -1;
	}
	s = snap_new(conf, worker);
	if (s == NULL) {
		conf_free(conf);
		log_errx("reload: out of memory; keeping the running configuration");
		return -1;
	}
	pthread_mutex_lock(&snap_lock);
	old = current;
	current = s;
	pthread_mutex_unlock(&snap_lock);
	snap_put(old);
	if (worker)
		log_info("reload: configuration %s loaded", path);
	return 0;
}

void
snap_shutdown(void)
{
	struct snapshot *old;

	pthread_mutex_lock(&snap_lock);
	old = current;
	current = NULL;
	pthread_mutex_unlock(&snap_lock);
	snap_put(old);
}
