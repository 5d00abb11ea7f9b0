/*
 * spfgate.c - require_spf_pass over every domain policy (spfgate.h).
 * Each call builds its own resolver and libspf2 server: nothing is shared
 * between threads or callers.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "dns.h"
#include "spf.h"
#include "spfgate.h"

static void say(spfgate_report fn, void *arg, enum spfgate_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
say(spfgate_report fn, void *arg, enum spfgate_level lvl, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (fn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fn(arg, lvl, line);
}

int
spfgate_check(const struct conf *conf, bool *unauth, spfgate_report fn, void *arg)
{
	struct dns *dns;
	size_t i;

	for (i = 0; i < conf->n_domains; i++)
		unauth[i] = false;
	if (!conf->milter.require_spf_pass)
		return 0;
	dns = dns_system();
	if (dns == NULL) {
		say(fn, arg, SPFGATE_ERR,
		    "require_spf_pass: cannot initialise the resolver; SPF not checked");
		return -1;
	}
	for (i = 0; i < conf->n_domains; i++) {
		const struct domain_policy *d = &conf->domains[i];
		const char *dom = d->default_sender.domain;
		struct spf_report r;
		struct spf_err err;

		if (d->tenant->egress_ip == NULL) {
			say(fn, arg, SPFGATE_WARN,
			    "require_spf_pass: %s: tenant %s has no egress_ip; not checked", dom,
			    d->tenant->name);
			continue;
		}
		if (spf_inspect(dns, NULL, dom, d->tenant->egress_ip, &r, &err) < 0) {
			/* every failure alike: the domain keeps its last state */
			say(fn, arg, SPFGATE_WARN,
			    "require_spf_pass: %s: SPF could not be checked (%s); domain kept "
			    "in use until the next check",
			    dom, err.msg);
			continue;
		}
		unauth[i] = !r.pass;
		if (r.pass)
			say(fn, arg, SPFGATE_INFO, "require_spf_pass: %s: SPF passes %s", dom,
			    d->tenant->egress_ip);
		else
			say(fn, arg, SPFGATE_ERR,
			    "require_spf_pass: %s: SPF %s for %s; not used as a rewrite target "
			    "for direct-send or relay (fix: m365ctl doctor)",
			    dom, r.result, d->tenant->egress_ip);
	}
	dns_free(dns);
	return 0;
}
