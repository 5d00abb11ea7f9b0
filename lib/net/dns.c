/*
 * dns.c - TXT and MX look-ups through the host's resolver (res_nquery, one
 * resolver state per object), or from a table for tests.
 */
#include "config.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <netdb.h>
#include <resolv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "util/util.h"

struct dns {
	struct __res_state res;
	const struct dns_fake_rr *fake;
	size_t n_fake;
	bool nxdomain; /* the last question's name does not exist */
};

struct dns *
dns_system(void)
{
	struct dns *d = calloc(1, sizeof(*d));

	if (d != NULL && res_ninit(&d->res) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

struct dns *
dns_fake(const struct dns_fake_rr *rr, size_t n)
{
	struct dns *d = calloc(1, sizeof(*d));

	if (d != NULL) {
		d->fake = rr;
		d->n_fake = n;
	}
	return d;
}

void
dns_free(struct dns *d)
{
	if (d != NULL && d->fake == NULL)
		res_nclose(&d->res);
	free(d);
}

static int
fake(struct dns *d, const char *name, const char *type, bool (*keep)(const char *), char *out,
     size_t width, size_t cap, size_t *n, struct dns_err *err)
{
	size_t i;

	*n = 0;
	d->nxdomain = false;
	for (i = 0; i < d->n_fake; i++) {
		if (m3_casecmp(d->fake[i].name, name) != 0)
			continue;
		if (strcmp(d->fake[i].type, "NXDOMAIN") == 0)
			d->nxdomain = true;
		if (strcmp(d->fake[i].type, "SERVFAIL") == 0)
			return M3_FAIL(err, DNS_ETEMP, "DNS query for %s failed (%s)", name,
			               "server failure or timeout");
	}
	for (i = 0; i < d->n_fake && *n < cap; i++)
		if (m3_casecmp(d->fake[i].name, name) == 0 && strcmp(d->fake[i].type, type) == 0 &&
		    (keep == NULL || keep(d->fake[i].data)))
			m3_strlcpy(out + (*n)++ * width, d->fake[i].data, width);
	return 0;
}

/*
 * query - the answer to (name, type) in *buf (malloc'd, *len bytes): 0,
 * 1 for "no such data", -1 on failure.  res_nquery() returns the length
 * of the whole answer even when only part of it fit the buffer (a long
 * TXT set over TCP): the answer is asked again with room for the largest
 * DNS message, and its length is never taken past the buffer.
 */
static int
query(struct dns *d, const char *name, int type, unsigned char **buf, int *len, struct dns_err *err)
{
	static const int sizes[] = {DNS_ANSWER_FIRST, DNS_ANSWER_MAX};
	size_t i;

	*buf = NULL;
	d->nxdomain = false;
	for (i = 0; i < NELEM(sizes); i++) {
		free(*buf);
		*buf = malloc((size_t)sizes[i]);
		if (*buf == NULL)
			return M3_FAIL(err, DNS_ELOCAL, "out of memory");
		*len = res_nquery(&d->res, name, ns_c_in, type, *buf, sizes[i]);
		if (*len < 0)
			break;
		if (*len <= sizes[i])
			return 0;
	}
	if (*len > 0)
		return M3_FAIL(err, DNS_EANSWER, "DNS answer for %s is longer than %d bytes", name,
		               DNS_ANSWER_MAX);
	switch (d->res.res_h_errno) {
	case HOST_NOT_FOUND:
		d->nxdomain = true;
		return 1;
	case NO_DATA:
		return 1;
	default:
		return M3_FAIL(err, DNS_ETEMP, "DNS query for %s failed (%s)", name,
		               d->res.res_h_errno == TRY_AGAIN ? "server failure or timeout"
		                                               : "no answer");
	}
}

/* answers - the message parsed (bounded); -1 if it is not a DNS message */
static int
answers(const unsigned char *msg, size_t len, ns_msg *m)
{
	return len > DNS_ANSWER_MAX || ns_initparse(msg, (int)len, m) < 0 ? -1 : 0;
}

/* next_rr - the next answer record of type, from *i on; false when there is none */
static bool
next_rr(ns_msg *m, int *i, ns_type type, ns_rr *rr)
{
	while (*i < ns_msg_count(*m, ns_s_an)) {
		if (ns_parserr(m, ns_s_an, (*i)++, rr) == 0 && ns_rr_type(*rr) == type)
			return true;
	}
	return false;
}

int
dns_parse_txt(const unsigned char *msg, size_t len, bool (*keep)(const char *),
              char out[][DNS_TXT_MAX], size_t cap, size_t *n)
{
	ns_msg m;
	ns_rr rr;
	int i = 0;

	*n = 0;
	if (answers(msg, len, &m) < 0)
		return -1;
	while (*n < cap && next_rr(&m, &i, ns_t_txt, &rr)) {
		const unsigned char *p, *end;
		size_t o = 0;
		/* A TXT record is character-strings: join them (RFC 7208 3.3). */
		p = ns_rr_rdata(rr);
		end = p + ns_rr_rdlen(rr);
		while (p < end) {
			size_t l = *p++;
			if (l > (size_t)(end - p))
				break;
			if (o + l >= DNS_TXT_MAX)
				l = DNS_TXT_MAX - 1 - o;
			memcpy(out[*n] + o, p, l);
			o += l;
			p += l;
		}
		out[*n][o] = '\0';
		if (keep == NULL || keep(out[*n]))
			(*n)++;
	}
	return 0;
}

int
dns_parse_mx(const unsigned char *msg, size_t len, char out[][DNS_NAME_MAX], size_t cap, size_t *n)
{
	ns_msg m;
	ns_rr rr;
	int i = 0;

	*n = 0;
	if (answers(msg, len, &m) < 0)
		return -1;
	while (*n < cap && next_rr(&m, &i, ns_t_mx, &rr)) {
		if (ns_rr_rdlen(rr) < 3)
			continue;
		if (ns_name_uncompress(ns_msg_base(m), ns_msg_end(m), ns_rr_rdata(rr) + 2, out[*n],
		                       DNS_NAME_MAX) < 0)
			continue;
		(*n)++;
	}
	return 0;
}

/* lookup - query and parse with fn; 0 (records, maybe none) or -1 */
static int
lookup(struct dns *d, const char *name, int type,
       int (*fn)(const unsigned char *, size_t, bool (*)(const char *), void *, size_t, size_t *),
       bool (*keep)(const char *), void *out, size_t cap, size_t *n, struct dns_err *err)
{
	unsigned char *buf;
	int len, rc = query(d, name, type, &buf, &len, err);

	*n = 0;
	if (rc == 0 && fn(buf, (size_t)len, keep, out, cap, n) < 0)
		rc = M3_FAIL(err, DNS_EANSWER, "DNS answer for %s is malformed", name);
	free(buf);
	return rc < 0 ? -1 : 0;
}

static int
parse_txt(const unsigned char *m, size_t len, bool (*keep)(const char *), void *out, size_t cap,
          size_t *n)
{
	return dns_parse_txt(m, len, keep, out, cap, n);
}

static int
parse_mx(const unsigned char *m, size_t len, bool (*keep)(const char *), void *out, size_t cap,
         size_t *n)
{
	(void)keep;
	return dns_parse_mx(m, len, out, cap, n);
}

int
dns_txt(struct dns *d, const char *name, bool (*keep)(const char *), char out[][DNS_TXT_MAX],
        size_t cap, size_t *n, struct dns_err *err)
{
	if (d->fake != NULL)
		return fake(d, name, "TXT", keep, out[0], DNS_TXT_MAX, cap, n, err);
	return lookup(d, name, ns_t_txt, parse_txt, keep, out, cap, n, err);
}

int
dns_mx(struct dns *d, const char *name, char out[][DNS_NAME_MAX], size_t cap, size_t *n,
       struct dns_err *err)
{
	if (d->fake != NULL)
		return fake(d, name, "MX", NULL, out[0], DNS_NAME_MAX, cap, n, err);
	return lookup(d, name, ns_t_mx, parse_mx, NULL, out, cap, n, err);
}

bool
dns_nxdomain(const struct dns *d)
{
	return d->nxdomain;
}
