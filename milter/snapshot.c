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
#include "spf.h"

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *current;

/*
 * spf_gate - require_spf_pass: mark each domain whose SPF does not pass the
 * tenant's egress_ip (its default sender's domain is the rewrite target).
 * Only a definite answer marks a domain: when DNS cannot answer, the domain
 * stays usable and the log says so (a DNS outage at start must not hold all
 * mail; the next reload checks again).  Each call builds its own resolver
 * and libspf2 server, so nothing is shared between threads.
 */
static void
spf_gate(struct conf *conf)
{
	struct dns *dns;
	size_t i;

	if (!conf->milter.require_spf_pass)
		return;
	dns = dns_system();
	if (dns == NULL) {
		log_errx("require_spf_pass: cannot initialise the resolver; SPF not checked");
		return;
	}
	for (i = 0; i < conf->n_domains; i++) {
		struct domain_policy *d = &conf->domains[i];
		const char *dom = d->default_sender.domain;
		struct spf_report r;
		char err[256];

		if (d->tenant->egress_ip == NULL) {
			log_warnx("require_spf_pass: %s: tenant %s has no egress_ip; not checked",
				  dom, d->tenant->name);
			continue;
		}
		if (spf_inspect(dns, NULL, dom, d->tenant->egress_ip, &r, err, sizeof(err)) < 0) {
			log_warnx("require_spf_pass: %s: SPF could not be checked (%s); "
				  "domain kept in use until the next reload", dom, err);
			continue;
		}
		d->spf_unauthorized = !r.pass;
		if (r.pass)
			log_info("require_spf_pass: %s: SPF passes %s", dom, d->tenant->egress_ip);
		else
			log_errx("require_spf_pass: %s: SPF %s for %s; not used as a rewrite "
				 "target for direct-send or relay (fix: m365ctl doctor)",
				 dom, r.result, d->tenant->egress_ip);
	}
	dns_free(dns);
}

static struct snapshot *
snap_new(struct conf *conf)
{
	struct snapshot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	spf_gate(conf);
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
