/*
 * spf.c - SPF and MX inspection (see spf.h).
 */
#include "config.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf.h>
#include <spf2/spf_dns_resolv.h>
#include <spf2/spf_dns_zone.h>

#include "addr/cidr.h"
#include "util/sbuf.h"
#include "spf.h"
#include "util/util.h"

#define DEPTH_MAX 10

static bool
is_spf(const char *txt)
{
	return m3_ncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == ' ' || txt[6] == '\0');
}

/* The SPF record(s) of a name: two at most (a second one is an error),
 * however many other TXT records the name has. */
static int
records(struct dns *dns, const char *name, char out[][DNS_TXT_MAX], size_t *n, struct dns_err *err)
{
	return dns_txt(dns, name, is_spf, out, 2, n, err);
}

/* The mechanism name of a term ("+include:x" -> "include"), and its argument. */
static void
term(const char *t, char *name, size_t size, const char **arg)
{
	size_t i = 0;

	if (*t == '+' || *t == '-' || *t == '~' || *t == '?')
		t++;
	while (t[i] && t[i] != ':' && t[i] != '/' && t[i] != '=' && i + 1 < size) {
		name[i] = t[i];
		i++;
	}
	name[i] = '\0';
	m3_lower(name);
	*arg = t[i] == ':' || t[i] == '=' ? t + i + 1 : NULL;
}

/*
 * walk - count the DNS look-ups of a record and the records it includes,
 * and notice the Microsoft include (RFC 7208 4.6.4: include, a, mx, ptr,
 * exists and redirect cost one each).  Once past the limit it stops
 * following includes, so the count is then a lower bound.
 */
static void
walk(struct dns *dns, const char *record, int depth, struct spf_report *r)
{
	char copy[DNS_TXT_MAX], *save = NULL, *t;

	m3_strlcpy(copy, record, sizeof(copy));
	for (t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		char name[32], sub[2][DNS_TXT_MAX];
		struct dns_err e;
		const char *arg;
		size_t n;

		term(t, name, sizeof(name), &arg);
		if (strcmp(name, "a") == 0 || strcmp(name, "mx") == 0 || strcmp(name, "ptr") == 0 ||
		    strcmp(name, "exists") == 0) {
			r->lookups++;
		} else if ((strcmp(name, "include") == 0 || strcmp(name, "redirect") == 0) &&
		           arg != NULL) {
			r->lookups++;
			if (m3_casecmp(arg, SPF_M365_INCLUDE) == 0 &&
			    strcmp(name, "include") == 0) {
				r->has_m365_include = true;
				continue; /* Microsoft's own: counted once, not walked */
			}
			/* Past the limit the verdict is known (permerror), and a
			 * hostile record could otherwise fan out exponentially. */
			if (depth < DEPTH_MAX && r->lookups <= SPF_MAX_LOOKUPS &&
			    strchr(arg, '%') == NULL && records(dns, arg, sub, &n, &e) == 0 &&
			    n == 1)
				walk(dns, sub[0], depth + 1, r);
		}
	}
}

/* suggest - the record to publish: the existing mechanisms kept, the
 * egress IP and Microsoft's include added if missing, "~all" at the end. */
static void
suggest(const struct spf_report *r, char recs[][DNS_TXT_MAX], size_t n, const char *egress_ip,
        char *out, size_t size)
{
	struct ipaddr ip;
	char copy[DNS_TXT_MAX], *save = NULL, *t, all[8] = "~all";
	struct sbuf b;
	size_t i;
	bool have_ip = false;

	if (size == 0)
		return;
	/* A term that does not fit is left out; the record stays whole. */
	sbuf_init(&b, size - 1);
	sbuf_adds(&b, "v=spf1");
	if (egress_ip != NULL && !r->pass) {
		ip_parse(egress_ip, &ip);
		sbuf_addf(&b, " %s:%s", ip.family == AF_INET6 ? "ip6" : "ip4", egress_ip);
		have_ip = true;
	}
	for (i = 0; i < n; i++) {
		m3_strlcpy(copy, recs[i], sizeof(copy));
		for (t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
			char name[32];
			const char *arg;
			term(t, name, sizeof(name), &arg);
			if (strcmp(name, "v") == 0 || m3_casecmp(t, "v=spf1") == 0)
				continue;
			if (strcmp(name, "all") == 0) {
				if (t[0] == '-')
					m3_strlcpy(all, "-all",
					           sizeof(all)); /* keep a strict policy */
				continue;
			}
			if (strcmp(name, "redirect") == 0)
				continue; /* incompatible with an "all"; its target is to merge by
				             hand */
			if (have_ip && (strcmp(name, "ip4") == 0 || strcmp(name, "ip6") == 0) &&
			    arg != NULL && strcmp(arg, egress_ip) == 0)
				continue;
			if (strstr(sbuf_str(&b), t) == NULL) /* two records merged: no duplicates */
				sbuf_addf(&b, " %s", t);
		}
	}
	if (strstr(sbuf_str(&b), "include:" SPF_M365_INCLUDE) == NULL)
		sbuf_adds(&b, " include:" SPF_M365_INCLUDE);
	sbuf_addf(&b, " %s", all);
	m3_strlcpy(out, sbuf_str(&b), size);
	sbuf_free(&b);
}

static int
evaluate(void *zone, const char *domain, const char *egress_ip, struct spf_report *r)
{
	SPF_server_t *server;
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	SPF_result_t res;
	struct ipaddr ip;
	char from[320];

	server = zone != NULL ? SPF_server_new_dns(zone, 0) : SPF_server_new(SPF_DNS_CACHE, 0);
	if (server == NULL)
		return -1;
	req = SPF_request_new(server);
	if (req == NULL) {
		SPF_server_free(server);
		return -1;
	}
	snprintf(from, sizeof(from), "postmaster@%s", domain);
	if (ip_parse(egress_ip, &ip) == 0 && ip.family == AF_INET6)
		SPF_request_set_ipv6_str(req, egress_ip);
	else
		SPF_request_set_ipv4_str(req, egress_ip);
	SPF_request_set_env_from(req, from);
	SPF_request_query_mailfrom(req, &resp);
	res = resp != NULL ? SPF_response_result(resp) : SPF_RESULT_TEMPERROR;
	r->pass = res == SPF_RESULT_PASS;
	m3_strlcpy(r->result, SPF_strresult(res), sizeof(r->result));
	if (resp != NULL)
		SPF_response_free(resp);
	SPF_request_free(req);
	/* A zone layer belongs to the caller: keep the server from freeing it. */
	if (zone != NULL)
		server->destroy_resolver = 0;
	SPF_server_free(server);
	return 0;
}

int
spf_inspect(struct dns *dns, void *zone, const char *domain, const char *egress_ip,
            struct spf_report *r, struct spf_err *err)
{
	static const enum spf_code from_dns[] = {[DNS_OK] = SPF_ELOCAL,
	                                         [DNS_ETEMP] = SPF_ETEMP,
	                                         [DNS_EANSWER] = SPF_EANSWER,
	                                         [DNS_ELOCAL] = SPF_ELOCAL};
	char recs[2][DNS_TXT_MAX];
	char copy[DNS_TXT_MAX], *save = NULL, *t;
	struct dns_err de;

	memset(r, 0, sizeof(*r));
	if (records(dns, domain, recs, &r->n_records, &de) < 0)
		return M3_FAIL(err, from_dns[de.code], "%s", de.msg);
	r->nxdomain = r->n_records == 0 && dns_nxdomain(dns);
	if (r->n_records > 0) {
		m3_strlcpy(r->record, recs[0], sizeof(r->record));
		walk(dns, recs[0], 0, r);
		m3_strlcpy(copy, recs[0], sizeof(copy));
		for (t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
			if (m3_casecmp(t, "+all") == 0 || m3_casecmp(t, "all") == 0)
				r->plus_all = true;
	}
	if (egress_ip != NULL && evaluate(zone, domain, egress_ip, r) < 0)
		return M3_FAIL(err, SPF_ELOCAL, "libspf2 could not evaluate %s", domain);
	if (r->n_records != 1 || !r->has_m365_include || r->plus_all ||
	    (egress_ip != NULL && !r->pass))
		suggest(r, recs, r->n_records, egress_ip, r->suggestion, sizeof(r->suggestion));
	return 0;
}

void *
spf_zone_new(const struct dns_fake_rr *rr, size_t n)
{
	SPF_dns_server_t *z = SPF_dns_zone_new(NULL, "m365relay-test", 0);
	size_t i;

	for (i = 0; z != NULL && i < n; i++) {
		if (strcmp(rr[i].type, "TXT") == 0)
			SPF_dns_zone_add_str(z, rr[i].name, ns_t_txt, NETDB_SUCCESS, rr[i].data);
		else if (strcmp(rr[i].type, "A") == 0)
			SPF_dns_zone_add_str(z, rr[i].name, ns_t_a, NETDB_SUCCESS, rr[i].data);
	}
	return z;
}

void
spf_zone_free(void *zone)
{
	if (zone != NULL)
		SPF_dns_free(zone);
}

void
mx_endpoint_form(const char *domain, char *buf, size_t size)
{
	size_t i, o = 0;

	for (i = 0; domain[i] && o + 1 < size; i++)
		buf[o++] = domain[i] == '.'
		               ? '-'
		               : (char)((domain[i] >= 'A' && domain[i] <= 'Z') ? domain[i] + 32
		                                                               : domain[i]);
	buf[o] = '\0';
	m3_strlcat(buf, ".mail.protection.outlook.com", size);
}
