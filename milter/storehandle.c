/*
 * storehandle.c - the worker's handle on the state store: opened on first
 * use (never before the fork: an LMDB environment must not cross one),
 * reopened when a reload changes the store settings, shared by the
 * milter's threads under a read lock; and the store's health, logged once
 * per change (failing / recovered) and counted for the metrics.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "milter.h"
#include "util/log.h"
#include "util/util.h"

static pthread_rwlock_t store_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct store *cur_store;
static struct store_conf cur_store_conf;
static char cur_path[1024], cur_host[256], cur_prefix[64];
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static bool store_failing;
static unsigned long store_errors;

static bool
same_store(const struct store_conf *a, const struct store_conf *b)
{
	return a->backend == b->backend && strcmp(a->path ? a->path : "", cur_path) == 0 &&
	       strcmp(a->redis_host ? a->redis_host : "", cur_host) == 0 &&
	       a->redis_port == b->redis_port && a->redis_db == b->redis_db &&
	       strcmp(a->prefix ? a->prefix : "", cur_prefix) == 0 && a->size_mb == b->size_mb;
}

void
mstore_health(int rc, const struct store_err *e)
{
	pthread_mutex_lock(&health_lock);
	if (rc == STORE_FAIL) {
		store_errors++;
		if (!store_failing)
			log_errx("state store failing: %s (answering on_error until it "
			         "recovers)",
			         e->msg);
		store_failing = true;
	} else if (store_failing) {
		log_info("state store recovered");
		store_failing = false;
	}
	pthread_mutex_unlock(&health_lock);
}

struct store *
mstore_get(const struct conf *conf, struct store_err *err)
{
	pthread_rwlock_rdlock(&store_lock);
	if (cur_store != NULL && same_store(&conf->store, &cur_store_conf))
		return cur_store;
	pthread_rwlock_unlock(&store_lock);
	pthread_rwlock_wrlock(&store_lock);
	if (cur_store == NULL || !same_store(&conf->store, &cur_store_conf)) {
		store_close(cur_store);
		cur_store = store_open(conf, err);
		cur_store_conf = conf->store;
		m3_strlcpy(cur_path, conf->store.path ? conf->store.path : "", sizeof(cur_path));
		m3_strlcpy(cur_host, conf->store.redis_host ? conf->store.redis_host : "",
		           sizeof(cur_host));
		m3_strlcpy(cur_prefix, conf->store.prefix ? conf->store.prefix : "",
		           sizeof(cur_prefix));
	}
	pthread_rwlock_unlock(&store_lock);
	pthread_rwlock_rdlock(&store_lock);
	if (cur_store == NULL) {
		pthread_rwlock_unlock(&store_lock);
		return NULL;
	}
	return cur_store;
}

void
mstore_put(void)
{
	pthread_rwlock_unlock(&store_lock);
}

void
mstore_flush(void)
{
	struct store_err e;

	pthread_rwlock_rdlock(&store_lock);
	if (cur_store != NULL && store_sync(cur_store, &e) != STORE_OK)
		mstore_health(STORE_FAIL, &e);
	pthread_rwlock_unlock(&store_lock);
}

void
mstore_health_read(unsigned long *errors, bool *up)
{
	pthread_mutex_lock(&health_lock);
	*errors = store_errors;
	*up = !store_failing;
	pthread_mutex_unlock(&health_lock);
}
