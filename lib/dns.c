/*
 * dns.c - TXT and MX look-ups through the host's resolver (res_nquery, one
 * resolver state per object), or from a table for tests.
 */
#include "config.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "util.h"

struct dns {
	struct __res_state res;
	const struct dns_fake_rr *fake;
	size_t n_fake;
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
fake(struct dns *d, const char *name, const char *type, char *out, size_t width,
     size_t cap, size_t *n)
{
	size_t i;

	*n = 0;
	for (i = 0; i < d->n_fake && *n < cap; i++)
		if (m3_casecmp(d->fake[i].name, name) == 0 &&
		    strcmp(d->fake[i].type, type) == 0)
			m3_strlcpy(out + (*n)++ * width, d->fake[i].data, width);
	return 0;
}

/* query - 0 with the answer in buf, 1 for "no such data", -1 on failure */
static int
query(struct dns *d, const char *name, int type, unsigned char *buf, int size,
      int *len, char *err, size_t errlen)
{
	*len = res_nquery(&d->res, name, ns_c_in, type, buf, size);
	if (*len >= 0)
		return 0;
	switch (d->res.res_h_errno) {
	case HOST_NOT_FOUND:
	case NO_DATA:
		return 1;
	default:
		snprintf(err, errlen, "DNS query for %s failed (%s)", name,
			 d->res.res_h_errno == TRY_AGAIN ? "server failure or timeout"
							 : "no answer");
		return -1;
	}
}

/* answer - query, then open the answer for parsing; query()'s return values */
static int
answer(struct dns *d, const char *name, int type, unsigned char *buf, int size,
       ns_msg *msg, char *err, size_t errlen)
{
	int len, rc = query(d, name, type, buf, size, &len, err, errlen);

	if (rc != 0)
		return rc;
	if (ns_initparse(buf, len, msg) < 0) {
		snprintf(err, errlen, "DNS answer for %s is malformed", name);
		return -1;
	}
	return 0;
}

int
dns_txt(struct dns *d, const char *name, char out[][DNS_TXT_MAX], size_t cap,
	size_t *n, char *err, size_t errlen)
{
	unsigned char buf[8192];
	ns_msg msg;
	ns_rr rr;
	int i, rc;

	if (d->fake != NULL)
		return fake(d, name, "TXT", out[0], DNS_TXT_MAX, cap, n);
	*n = 0;
	rc = answer(d, name, ns_t_txt, buf, sizeof(buf), &msg, err, errlen);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	for (i = 0; i < ns_msg_count(msg, ns_s_an) && *n < cap; i++) {
		const unsigned char *p, *end;
		size_t o = 0;
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_txt)
			continue;
		/* A TXT record is character-strings: join them (RFC 7208 3.3). */
		p = ns_rr_rdata(rr);
		end = p + ns_rr_rdlen(rr);
		while (p < end) {
			size_t l = *p++;
			if (p + l > end)
				break;
			if (o + l >= DNS_TXT_MAX)
				l = DNS_TXT_MAX - 1 - o;
			memcpy(out[*n] + o, p, l);
			o += l;
			p += l;
		}
		out[*n][o] = '\0';
		(*n)++;
	}
	return 0;
}

int
dns_mx(struct dns *d, const char *name, char out[][DNS_NAME_MAX], size_t cap,
       size_t *n, char *err, size_t errlen)
{
	unsigned char buf[8192];
	ns_msg msg;
	ns_rr rr;
	int i, rc;

	if (d->fake != NULL)
		return fake(d, name, "MX", out[0], DNS_NAME_MAX, cap, n);
	*n = 0;
	rc = answer(d, name, ns_t_mx, buf, sizeof(buf), &msg, err, errlen);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	for (i = 0; i < ns_msg_count(msg, ns_s_an) && *n < cap; i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_mx ||
		    ns_rr_rdlen(rr) < 3)
			continue;
		if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2,
				       out[*n], DNS_NAME_MAX) < 0)
			continue;
		(*n)++;
	}
	return 0;
}
