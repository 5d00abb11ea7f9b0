/*
 * dns.h - the DNS look-ups the checks need (TXT and MX), behind one small
 * interface so that tests can answer them from a table.
 *
 * Errors: 0 with the records (none is a valid answer: NXDOMAIN or no data;
 * dns_nxdomain() tells them apart),
 * -1 when the question could not be answered, with struct dns_err: DNS_ETEMP
 * (SERVFAIL, timeout: ask again later), DNS_EANSWER (an answer that cannot
 * be read or is too long), DNS_ELOCAL (memory).
 */
#ifndef M3_DNS_H
#define M3_DNS_H

#include <stdbool.h>
#include <stddef.h>

#define DNS_TXT_MAX      2048 /* one TXT record, its strings joined */
#define DNS_NAME_MAX     256
#define DNS_RECORDS_MAX  16
#define DNS_ANSWER_FIRST 8192  /* the first buffer a query gets */
#define DNS_ANSWER_MAX   65535 /* the largest DNS message (over TCP) */

struct dns;

enum dns_code {
	DNS_OK,
	DNS_ETEMP,   /* no answer now: server failure, timeout, refused */
	DNS_EANSWER, /* an answer came but cannot be read */
	DNS_ELOCAL,  /* our side: memory */
};

struct dns_err {
	enum dns_code code;
	char msg[DNS_NAME_MAX + 64];
};

/* A canned answer, for tests: type "TXT", "MX" or "A"; "NXDOMAIN" says
 * the name does not exist, "SERVFAIL" that asking it fails (DNS_ETEMP). */
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

/* dns_txt - the TXT records of name that keep() accepts (NULL: all), at most cap */
int dns_txt(struct dns *d, const char *name, bool (*keep)(const char *), char out[][DNS_TXT_MAX],
            size_t cap, size_t *n, struct dns_err *err);
/* dns_parse_txt - the TXT records of an answer message (strings joined); -1 if malformed */
int dns_parse_txt(const unsigned char *msg, size_t len, bool (*keep)(const char *),
                  char out[][DNS_TXT_MAX], size_t cap, size_t *n);
/* dns_parse_mx - the MX host names of an answer message; -1 if malformed */
int dns_parse_mx(const unsigned char *msg, size_t len, char out[][DNS_NAME_MAX], size_t cap,
                 size_t *n);
int dns_mx(struct dns *d, const char *name, char out[][DNS_NAME_MAX], size_t cap, size_t *n,
           struct dns_err *err);
/* dns_nxdomain - whether the last question's name does not exist at all
 * (NXDOMAIN; a fake table says so with type "NXDOMAIN"), as opposed to
 * existing without records of the type asked */
bool dns_nxdomain(const struct dns *d);

#endif
