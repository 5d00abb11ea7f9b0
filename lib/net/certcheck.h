/*
 * certcheck.h - a client certificate as Microsoft 365 will see it: its
 * names against the tenant's accepted domains (the connector matches on
 * CN or SAN, "*.domain" allowed), its key, its chain, its dates.
 *
 * Errors: -1 with struct cert_err when the certificate file cannot be read
 * (CERT_EREAD) or holds no PEM certificate (CERT_EFORMAT); every other
 * problem is a finding in the report.
 */
#ifndef M3_CERTCHECK_H
#define M3_CERTCHECK_H

#include <stdbool.h>
#include <limits.h>
#include <stddef.h>

#include "conf/conf.h"

#define CERT_NAMES_MAX 16

enum cert_code {
	CERT_OK,
	CERT_EREAD,   /* the file cannot be opened */
	CERT_EFORMAT, /* no PEM certificate in it */
};

struct cert_err {
	enum cert_code code;
	char msg[PATH_MAX + 64];
};

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
                 const struct tenant *t, struct cert_report *r, struct cert_err *err);

#endif
