/*
 * spfgate.h - require_spf_pass, computed: for each domain policy, whether
 * SPF for its default sender's domain definitely does not authorize the
 * tenant's egress_ip.  A fact of the world at run time, not configuration:
 * the milter computes it for each snapshot (in the worker), the transport
 * when it decides a message itself, m365ctl explain when asked; the policy
 * reads it from struct policy_facts.
 */
#ifndef M3_SPFGATE_H
#define M3_SPFGATE_H

#include <stdbool.h>

#include "conf/conf.h"

enum spfgate_level { SPFGATE_INFO, SPFGATE_WARN, SPFGATE_ERR };

/* Each domain's finding, in words, for the caller to log or print. */
typedef void (*spfgate_report)(void *arg, enum spfgate_level level, const char *line);

/*
 * spfgate_check - unauth (conf->n_domains entries) gets true where SPF
 * definitely fails; a domain that could not be checked (no egress_ip, DNS
 * not answering) stays false, so that a DNS outage never holds mail.
 * Does nothing unless milter { require_spf_pass }.  -1 if the resolver
 * cannot be set up (everything left false, reported).
 */
int spfgate_check(const struct conf *conf, bool *unauth, spfgate_report fn, void *arg);

#endif
