/*
 * dns.h - the DNS look-ups the checks need (TXT and MX), behind one small
 * interface so that tests can answer them from a table (STYLE.md habit 8).
 *
 * Errors: 0 with the records (none is a valid answer: NXDOMAIN or no data),
 * -1 when the question could not be answered (SERVFAIL, timeout): err says.
 */
#ifndef M3_DNS_H
#define M3_DNS_H

#include <stddef.h>

#define DNS_TXT_MAX 2048 /* one TXT record, its strings joined */
#define DNS_NAME_MAX 256
#define DNS_RECORDS_MAX 16

struct dns;

/* A canned answer, for tests: type "TXT", "MX" or "A". */
struct dns_fake_rr {
	const char *name;
	const char *type;
	const char *data;
};

/* dns_system - the host's resolver (thread-safe: a resolver state per object) */
struct dns *dns_system(void);
/* dns_fake - answers from a table (rr stays the caller's) */
struct dns *dns_fake(const struct dns_fake_rr *rr, size_t n);
void dns_free(struct dns *d);

int dns_txt(struct dns *d, const char *name, char out[][DNS_TXT_MAX], size_t cap,
	    size_t *n, char *err, size_t errlen);
int dns_mx(struct dns *d, const char *name, char out[][DNS_NAME_MAX], size_t cap,
	   size_t *n, char *err, size_t errlen);

#endif
