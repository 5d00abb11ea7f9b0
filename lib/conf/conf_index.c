/*
 * conf_index.c - the look-ups by name, and the duplicate checks that come
 * with building them.
 *
 * Each kind of section is indexed as soon as it is built (the next kinds
 * resolve their references through it), in hash tables in the snapshot's
 * arena (util.h's strindex).  A configuration of 20,000 mailboxes and
 * 8,000 submitters loads in time proportional to its size, and the
 * policy's per-message look-ups (submitter by login, subject or client;
 * tenant of a domain; mailbox of an address) cost the same at 10 mailboxes
 * as at 20,000.
 *
 * Where two entries claim the same key, the first in file order keeps it
 * and the second is an error at its own line, naming the first.
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "conf_build.h"
#include "util/util.h"

static struct conf_index *
ix(struct build *b)
{
	if (b->conf->index == NULL)
		b->conf->index = arena_alloc(b->conf->arena, sizeof(*b->conf->index));
	return b->conf->index;
}

static struct strindex *
new_index(struct build *b, size_t n, bool nocase)
{
	struct strindex *x = strindex_new(b->conf->arena, n, nocase);

	if (x == NULL)
		diag_add(b->diag, true, "%s: error: out of memory", b->main_file);
	return x;
}

/* put - key -> i; the index of the entry that had it first, or i */
static size_t
put(struct strindex *x, const char *key, size_t len, size_t i)
{
	size_t first = i;

	if (x != NULL && strindex_put(x, key, len, i, &first) < 0)
		return i;
	return first;
}

static size_t
put_str(struct strindex *x, const char *key, size_t i)
{
	return key != NULL ? put(x, key, strlen(key), i) : i;
}

/* the key of an address: local@domain */
static size_t
addr_key(const struct addr *a, char *key, size_t size)
{
	int n = snprintf(key, size, "%s@%s", a->local, a->domain);
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

int
index_tenants(struct build *b)
{
	struct conf *c = b->conf;
	struct conf_index *x = ix(b);
	size_t i, j, n = 0;

	if (x == NULL)
		return -1;
	for (i = 0; i < c->n_tenants; i++)
		n += c->tenants[i].n_accepted;
	x->tenant = new_index(b, c->n_tenants, false);
	x->accepted = new_index(b, n, true);
	if (x->tenant == NULL || x->accepted == NULL)
		return -1;
	for (i = 0; i < c->n_tenants; i++) {
		const struct tenant *t = &c->tenants[i];
		put_str(x->tenant, t->name, i);
		/* An accepted domain belongs to one tenant. */
		for (j = 0; j < t->n_accepted; j++) {
			size_t k = put_str(x->accepted, t->accepted[j], i);
			if (k != i)
				berr(b, t->loc,
				     "accepted domain %s is in tenant \"%s\" and tenant \"%s\"",
				     t->accepted[j], c->tenants[k].name, t->name);
		}
	}
	return 0;
}

#define INDEX_BY_NAME(fn, field, arr, n)                                                           \
	int fn(struct build *b)                                                                    \
	{                                                                                          \
		struct conf_index *x = ix(b);                                                      \
		size_t i;                                                                          \
		if (x == NULL || (x->field = new_index(b, b->conf->n, false)) == NULL)             \
			return -1;                                                                 \
		for (i = 0; i < b->conf->n; i++)                                                   \
			put_str(x->field, b->conf->arr[i].name, i);                                \
		return 0;                                                                          \
	}
INDEX_BY_NAME(index_apps, app, apps, n_apps)
INDEX_BY_NAME(index_connectors, connector, connectors, n_connectors)

int
index_mailboxes(struct build *b)
{
	struct conf *c = b->conf;
	struct conf_index *x = ix(b);
	char key[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	size_t i, len;

	if (x == NULL || (x->mailbox = new_index(b, c->n_mailboxes, true)) == NULL)
		return -1;
	/* Two sections for one address are reported with the section names. */
	for (i = 0; i < c->n_mailboxes; i++)
		if (c->mailboxes[i].addr.local[0] != '\0' &&
		    (len = addr_key(&c->mailboxes[i].addr, key, sizeof(key))) > 0)
			put(x->mailbox, key, len, i);
	return 0;
}

int
index_domains(struct build *b)
{
	struct conf *c = b->conf;
	struct conf_index *x = ix(b);
	size_t i, k;

	if (x == NULL || (x->domain = new_index(b, c->n_domains, true)) == NULL)
		return -1;
	for (i = 0; i < c->n_domains; i++) {
		const struct domain_policy *d = &c->domains[i];
		if (d->name == NULL)
			continue;
		k = put_str(x->domain, d->name, i);
		/* Twice in one file is reported with the section names; in
		 * both files, here (neither file's marks see the other). */
		if (k != i && strcmp(d->loc.file, c->domains[k].loc.file) != 0)
			berr(b, d->loc, "domain \"%s\" is defined twice (first at %s:%d)", d->name,
			     c->domains[k].loc.file, c->domains[k].loc.line);
	}
	return 0;
}

int
index_submitters(struct build *b)
{
	struct conf *c = b->conf;
	struct conf_index *x = ix(b);
	size_t i, j, k, n_login = 0, n_subject = 0, n_client = 0;

	if (x == NULL)
		return -1;
	for (i = 0; i < c->n_submitters; i++) {
		n_login += c->submitters[i].n_sasl_logins;
		n_subject += c->submitters[i].n_cert_subjects;
		n_client += c->submitters[i].n_clients;
	}
	x->submitter = new_index(b, c->n_submitters, false);
	x->login = new_index(b, n_login, true);
	x->subject = new_index(b, n_subject, false);
	x->client = new_index(b, n_client, false);
	if (x->submitter == NULL || x->login == NULL || x->subject == NULL || x->client == NULL)
		return -1;
	/* A client block, login or subject names one submitter. */
	for (i = 0; i < c->n_submitters; i++) {
		const struct submitter *s = &c->submitters[i];
		put_str(x->submitter, s->name, i);
		for (j = 0; j < s->n_clients; j++) {
			const struct cidr *cl = &s->clients[j];
			char key[CIDR_KEY_MAX], ip[64];
			k = put(x->client, key, cidr_key(&cl->net, cl->prefix, key), i);
			if (cl->net.family == AF_INET)
				x->v4_prefix[cl->prefix <= 32 ? cl->prefix : 32] = 1;
			else
				x->v6_prefix[cl->prefix <= 128 ? cl->prefix : 128] = 1;
			if (k != i) {
				ip_format(&cl->net, ip, sizeof(ip));
				berr(b, s->loc,
				     "submitter \"%s\": client %s/%u is already submitter \"%s\"",
				     s->name, ip, cl->prefix, c->submitters[k].name);
			}
		}
		for (j = 0; j < s->n_sasl_logins; j++)
			if ((k = put_str(x->login, s->sasl_logins[j], i)) != i)
				berr(b, s->loc,
				     "submitter \"%s\": SASL login \"%s\" is already submitter "
				     "\"%s\"",
				     s->name, s->sasl_logins[j], c->submitters[k].name);
		for (j = 0; j < s->n_cert_subjects; j++)
			if ((k = put_str(x->subject, s->cert_subjects[j], i)) != i)
				berr(b, s->loc,
				     "submitter \"%s\": certificate subject \"%s\" is already "
				     "submitter \"%s\"",
				     s->name, s->cert_subjects[j], c->submitters[k].name);
	}
	return 0;
}

/* Look-ups ------------------------------------------------------------------------ */

static bool
lookup(const struct strindex *x, const char *key, size_t *i)
{
	return key != NULL && strindex_get(x, key, strlen(key), i);
}

#define FIND_BY_NAME(fn, type, field, arr)                                                         \
	const type *fn(const struct conf *conf, const char *name)                                  \
	{                                                                                          \
		size_t i;                                                                          \
		if (conf->index == NULL || !lookup(conf->index->field, name, &i))                  \
			return NULL;                                                               \
		return &conf->arr[i];                                                              \
	}
FIND_BY_NAME(find_tenant, struct tenant, tenant, tenants)
FIND_BY_NAME(find_app, struct app, app, apps)
FIND_BY_NAME(find_connector, struct connector, connector, connectors)
FIND_BY_NAME(find_submitter, struct submitter, submitter, submitters)
FIND_BY_NAME(conf_domain, struct domain_policy, domain, domains)
FIND_BY_NAME(conf_submitter_login, struct submitter, login, submitters)
FIND_BY_NAME(conf_submitter_subject, struct submitter, subject, submitters)

/* The tenant whose accepted domains hold domain: the name itself, then
 * "*.parent" patterns from the nearest parent up. */
const struct tenant *
conf_tenant_of_domain(const struct conf *conf, const char *domain)
{
	char key[ADDR_DOMAIN_MAX + 2];
	size_t len = strlen(domain), i;
	const char *p;

	if (conf->index == NULL || len > ADDR_DOMAIN_MAX)
		return NULL;
	if (strindex_get(conf->index->accepted, domain, len, &i))
		return &conf->tenants[i];
	for (p = strchr(domain, '.'); p != NULL && p[1] != '\0'; p = strchr(p + 1, '.')) {
		if (p == domain)
			continue; /* "*.x" needs at least one label before .x */
		key[0] = '*';
		memcpy(key + 1, p, len - (size_t)(p - domain));
		if (strindex_get(conf->index->accepted, key, 1 + len - (size_t)(p - domain), &i))
			return &conf->tenants[i];
	}
	return NULL;
}

const struct mailbox_conf *
conf_mailbox(const struct conf *conf, const struct addr *a)
{
	char key[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	size_t len, i;

	if (conf->index == NULL || (len = addr_key(a, key, sizeof(key))) == 0 ||
	    !strindex_get(conf->index->mailbox, key, len, &i))
		return NULL;
	return &conf->mailboxes[i];
}

/* The most specific block holding ip, as in a routing table. */
const struct submitter *
conf_submitter_client(const struct conf *conf, const struct ipaddr *ip)
{
	const struct conf_index *x = conf->index;
	const unsigned char *used;
	char key[CIDR_KEY_MAX];
	unsigned p, max;
	size_t i;

	if (x == NULL)
		return NULL;
	used = ip->family == AF_INET ? x->v4_prefix : x->v6_prefix;
	max = ip->family == AF_INET ? 32 : 128;
	for (p = max + 1; p-- > 0;)
		if (used[p] && strindex_get(x->client, key, cidr_key(ip, p, key), &i))
			return &conf->submitters[i];
	return NULL;
}
