/*
 * spf.h - what Microsoft 365 will think of the gateway's mail for a domain:
 * SPF (the verdict for the egress IP comes from libspf2; the structure of
 * the record - how many, the Microsoft include, the DNS look-up count,
 * "+all" - from our own reading) and the domain's MX.
 *
 * Thread safety: every spf_inspect() builds its own libspf2 server and DNS
 * layer and frees them, so calls from several threads share nothing (the
 * milter checks domains at start and reload only, but need not care).
 *
 * Errors: -1 with struct spf_err when the domain's record could not be
 * read: SPF_ETEMP (DNS did not answer: ask again later), SPF_EANSWER (an
 * answer that cannot be read), SPF_ELOCAL (memory, libspf2).  A missing or
 * broken record is a finding in the report, not an error.
 */
#ifndef M3_SPF_H
#define M3_SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "dns.h"

#define SPF_M365_INCLUDE "spf.protection.outlook.com"
#define SPF_MAX_LOOKUPS  10 /* RFC 7208 4.6.4 */

enum spf_code {
	SPF_OK,
	SPF_ETEMP,   /* DNS gave no answer now */
	SPF_EANSWER, /* DNS answered something unreadable */
	SPF_ELOCAL,  /* memory, libspf2 */
};

struct spf_err {
	enum spf_code code;
	char msg[DNS_NAME_MAX + 64];
};

struct spf_report {
	size_t n_records; /* "v=spf1" records at the domain (more than one is an error) */
	bool nxdomain;    /* the domain itself does not exist in DNS */
	char record[DNS_TXT_MAX];
	bool
	    has_m365_include; /* include:spf.protection.outlook.com, directly or through includes */
	int lookups;          /* DNS-querying terms, through includes and redirects */
	bool plus_all;        /* "+all" or a bare "all": anybody passes */
	bool pass;            /* the egress IP passes */
	char result[16];      /* libspf2's verdict: pass, fail, softfail, ... */
	char suggestion[DNS_TXT_MAX + 128]; /* the record to publish, or "" if fine */
};

/*
 * spf_inspect - the report for domain and the gateway's egress_ip.
 * zone, if not NULL, is a libspf2 DNS layer to evaluate with (tests: a
 * zone built from the same table as dns); NULL uses the host's resolver.
 */
int spf_inspect(struct dns *dns, void *zone, const char *domain, const char *egress_ip,
                struct spf_report *r, struct spf_err *err);

/* spf_zone_new - a libspf2 zone layer from a table (TXT and A records) */
void *spf_zone_new(const struct dns_fake_rr *rr, size_t n);
void spf_zone_free(void *zone);

/* mx_endpoint_form - "contoso-com.mail.protection.outlook.com" for contoso.com */
void mx_endpoint_form(const char *domain, char *buf, size_t size);

#endif
