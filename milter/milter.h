/*
 * milter.h - m365-milter's internal interfaces.
 *
 * Lifetimes: main.c wires; daemon.c owns the process (pid file, privileges,
 * the supervisor that turns SIGHUP into a reload and restarts a crashed
 * worker); snapshot.c owns the configuration in the worker (refcounted,
 * swapped whole on reload); callbacks.c is the only file that calls smfi_*.
 */
#ifndef M3_MILTER_H
#define M3_MILTER_H

#include <stdbool.h>

#include "conf/conf.h"
#include "policy/policy.h"
#include "store/store.h"
#include "util/sbuf.h"

/* snapshot.c ----------------------------------------------------------------- */

struct snapshot {
	struct conf *conf;
	bool *spf_unauthorized;    /* per conf->domains (worker only; NULL: none) */
	struct policy_facts facts; /* what the policy is given with conf */
	unsigned refs;             /* holders, plus one while it is the current snapshot */
};

/* snap_init - make conf the current snapshot (takes ownership); no facts */
void snap_init(struct conf *conf);
/* snap_worker_init - in a new worker: the current snapshot, with its facts */
int snap_worker_init(void);
/* snap_get - take a reference to the current snapshot */
struct snapshot *snap_get(void);
/* snap_put - drop a reference (NULL is fine); frees a replaced snapshot */
void snap_put(struct snapshot *s);
/* snap_reload - load path; swap it in only if it is valid; 0 if swapped.
 * worker: compute the facts and log the reload (the supervisor only checks) */
int snap_reload(const char *path, bool worker);
/* snap_shutdown - drop the current snapshot */
void snap_shutdown(void);

/* callbacks.c ------------------------------------------------------------------ */

/* milter_register - smfi_register with our callbacks; -1 on failure */
int milter_register(void);
/* milter_open - smfi_setconn/settimeout/opensocket for the configured socket */
int milter_open(const struct conf *conf);
/* milter_run - smfi_main; returns when libmilter stops */
int milter_run(void);

/* storehandle.c ------------------------------------------------------------------ */

/* mstore_get - the store for conf, read-locked (mstore_put after); NULL (err set) if it cannot
 * open */
struct store *mstore_get(const struct conf *conf, struct store_err *err);
/* mstore_put - done with what mstore_get returned */
void mstore_put(void);
/* mstore_health - after each store operation: log a change of health, count failures */
void mstore_health(int rc, const struct store_err *e);
/* mstore_flush - the store's counters to disk (every second, from the reload thread) */
void mstore_flush(void);
/* mstore_health_read - failures so far, and whether the last operation worked */
void mstore_health_read(unsigned long *errors, bool *up);

/* admit.c ------------------------------------------------------------------------ */

/* admission - step 6 for an accepted message: the mailbox's windows; r says no if over */
void admission(const struct conf *conf, const struct policy_msg *m, struct reply *r);

/* metrics.c ---------------------------------------------------------------------- */

/* metrics_count - one message's verdict, for the metrics */
void metrics_count(enum verdict v, enum reason reason);
/* metrics_render - the Prometheus text page into b (b->failed: not whole) */
void metrics_render(struct sbuf *b);

/*
 * metrics_start - serve metrics_render() on milter { metrics_listen }, if
 * set (worker only, once, after the fork; libmicrohttpd's own thread); -1
 * (logged) if it cannot, which the worker survives
 */
int metrics_start(const struct conf *conf);

/* daemon.c --------------------------------------------------------------------- */

struct daemon_opts {
	const char *conf_file;
	bool foreground;
};

/* daemon_run - privileges, pid file, supervisor and worker; the exit status */
int daemon_run(const struct daemon_opts *o, struct conf *conf);

#endif
