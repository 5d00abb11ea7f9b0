/*
 * snapshot.c - the worker's configuration: one immutable snapshot at a time,
 * refcounted so that a reload never pulls a configuration out from under a
 * message in flight.  A reload builds the whole new configuration first and
 * swaps it in only if it loaded without error (all or nothing).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "milter.h"

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *current;

static struct snapshot *
snap_new(struct conf *conf)
{
	struct snapshot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->conf = conf;
	s->refs = 1; /* the "current" reference */
	return s;
}

void
snap_init(struct conf *conf)
{
	current = snap_new(conf);
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
	if (last) {
		conf_free(s->conf);
		free(s);
	}
}

int
snap_reload(const char *path)
{
	struct conf *conf;
	struct snapshot *s, *old;

	conf = conf_load_logged(path, true);
	if (conf == NULL) {
		log_errx("reload: %s has errors; keeping the running configuration",
			 path);
		return -1;
	}
	s = snap_new(conf);
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
