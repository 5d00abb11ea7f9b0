/*
 * certcheck.h - a client certificate as Microsoft 365 will see it: its
 * names against the tenant's accepted domains (the connector matches on
 * CN or SAN, "*.domain" allowed), its key, its chain, its dates.
 *
 * Errors: -1 with err when the files cannot be read at all; every other
 * problem is a finding in the report.
 */
#ifndef M3_CERTCHECK_H
#define M3_CERTCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"

#define CERT_NAMES_MAX 16

struct cert_report {
	char names[CERT_NAMES_MAX][256]; /* CN first, then DNS SANs */
	size_t n_names;
	char matched[256]; /* the name that falls in an accepted domain, or "" */
	bool key_matches;
	bool chain_ok;
	char chain_err[160];
	long days_left;     /* whole days left; negative: expired */
	char not_after[40]; /* "Nov 26 15:44:30 2026 GMT" */
};

/* cert_name_in_domain - whether a certificate name belongs to an accepted domain */
bool cert_name_in_domain(const char *name, const char *domain);
/* cert_inspect - the report; ca_file NULL means the system store */
int cert_inspect(const char *cert_file, const char *key_file, const char *ca_file,
                 const struct tenant *t, struct cert_report *r, char *err, size_t errlen);

#endif
