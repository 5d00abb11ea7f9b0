/*
 * route.c - format, parse, sign and verify the route header (see route.h).
 */
#include "config.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "route.h"
#include "util/sbuf.h"
#include "util/util.h"

#define MAC_CONTEXT "m365relay-route"

void
route_from_policy(const struct policy_msg *m, struct route *r)
{
	memset(r, 0, sizeof(*r));
	r->mode = m->mode;
	if (m->tenant != NULL)
		m3_strlcpy(r->tenant, m->tenant->name, sizeof(r->tenant));
	if (m->domain != NULL)
		m3_strlcpy(r->domain, m->domain->name, sizeof(r->domain));
	if (m->submitter != NULL)
		m3_strlcpy(r->submitter, m->submitter->name, sizeof(r->submitter));
	if (m->mailbox != NULL)
		m3_strlcpy(r->mailbox, m->mailbox->name, sizeof(r->mailbox));
	if (m->connector != NULL)
		m3_strlcpy(r->connector, m->connector->name, sizeof(r->connector));
}

/* format - the canonical value; with_mac adds "; mac=" */
static int
format(const struct route *r, bool with_mac, char *buf, size_t size)
{
	struct sbuf b;
	int rc = -1;

	sbuf_init(&b, size > 0 ? size - 1 : 0);
	sbuf_addf(&b, "v=2; mode=%s; tenant=%s; domain=%s; submitter=%s", mode_name(r->mode),
	          r->tenant, r->domain, r->submitter);
	if (r->mailbox[0] != '\0')
		sbuf_addf(&b, "; mailbox=%s", r->mailbox);
	if (r->connector[0] != '\0')
		sbuf_addf(&b, "; connector=%s", r->connector);
	if (r->qid[0] != '\0')
		sbuf_addf(&b, "; qid=%s", r->qid);
	if (r->kid[0] != '\0')
		sbuf_addf(&b, "; key=%s", r->kid);
	if (with_mac && r->mac[0] != '\0')
		sbuf_addf(&b, "; mac=%s", r->mac);
	if (!b.failed && size > 0) {
		memcpy(buf, sbuf_str(&b), b.len + 1);
		rc = (int)b.len;
	}
	sbuf_free(&b);
	return rc;
}

int
route_format(const struct route *r, char *buf, size_t size)
{
	return format(r, false, buf, size);
}

/* Names in the route never hold ';', whitespace or control characters. */
static int
take(const char *v, size_t n, char *out, size_t size)
{
	size_t i;

	if (n == 0 || n >= size)
		return -1;
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == ';' || v[i] == 0x7f)
			return -1;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

/* take_hex - exactly n lower-case hex digits */
static int
take_hex(const char *v, size_t vlen, size_t n, char *out)
{
	size_t i;

	if (vlen != n)
		return -1;
	for (i = 0; i < n; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
			return -1;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

/* The keys of a route, in the order it is written. */
enum rkey {
	K_V,
	K_MODE,
	K_TENANT,
	K_DOMAIN,
	K_SUBMITTER,
	K_MAILBOX,
	K_CONNECTOR,
	K_QID,
	K_KEY,
	K_MAC,
	K_COUNT
};

static const char *const rkey_names[K_COUNT] = {
    "v", "mode", "tenant", "domain", "submitter", "mailbox", "connector", "qid", "key", "mac"};

static bool
is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* next_pair - the next "key=value" at *pp (the value trimmed); 0 at the end, 1 for a pair, -1 bad
 */
static int
next_pair(const char **pp, const char **key, size_t *klen, const char **val, size_t *vlen)
{
	const char *p = *pp, *end;

	while (is_ws(*p))
		p++;
	if (*p == '\0')
		return 0;
	*key = p;
	while (*p != '\0' && *p != '=' && *p != ';')
		p++;
	if (*p != '=')
		return -1;
	*klen = (size_t)(p - *key);
	*val = ++p;
	while (*p != '\0' && *p != ';')
		p++;
	for (end = p; end > *val && is_ws(end[-1]); end--)
		;
	*vlen = (size_t)(end - *val);
	*pp = *p == ';' ? p + 1 : p;
	return 1;
}

/* route_value - key k's value into r; -1 with err */
static int
route_value(struct route *r, enum rkey k, const char *val, size_t vlen, const char **err)
{
	int bad = 0;

	switch (k) {
	case K_V:
		if (vlen != 1 || val[0] != '2') {
			*err = "unknown route version";
			return -1;
		}
		return 0;
	case K_MODE:
		if (mode_parse(val, vlen, &r->mode) < 0 || r->mode == MODE_AUTO) {
			*err = "unknown mode";
			return -1;
		}
		return 0;
	case K_TENANT:
		bad = take(val, vlen, r->tenant, sizeof(r->tenant));
		break;
	case K_DOMAIN:
		bad = take(val, vlen, r->domain, sizeof(r->domain));
		break;
	case K_SUBMITTER:
		bad = take(val, vlen, r->submitter, sizeof(r->submitter));
		break;
	case K_MAILBOX:
		bad = take(val, vlen, r->mailbox, sizeof(r->mailbox));
		break;
	case K_CONNECTOR:
		bad = take(val, vlen, r->connector, sizeof(r->connector));
		break;
	case K_QID:
		bad = take(val, vlen, r->qid, sizeof(r->qid));
		break;
	case K_KEY:
		bad = take_hex(val, vlen, ROUTE_KID_LEN, r->kid);
		break;
	case K_MAC:
		bad = take_hex(val, vlen, 64, r->mac);
		break;
	case K_COUNT:
		break;
	}
	if (bad)
		*err = "bad value";
	return bad ? -1 : 0;
}

/* route_complete - what every route holds, given the keys seen */
static int
route_complete(const struct route *r, unsigned seen, const char **err)
{
	if (!(seen & (1u << K_V)) || !(seen & (1u << K_MODE)) || r->domain[0] == '\0' ||
	    r->tenant[0] == '\0' || r->submitter[0] == '\0')
		*err = "v, mode, tenant, domain and submitter are required";
	else if (mode_has_mailbox(r->mode) && r->mailbox[0] == '\0')
		*err = "smtp-auth, graph and hve need a mailbox";
	else if (r->mode == MODE_RELAY && r->connector[0] == '\0')
		*err = "relay needs a connector";
	else if ((r->mac[0] != '\0') != (r->kid[0] != '\0'))
		*err = "key and mac go together";
	else
		return 0;
	return -1;
}

int
route_parse(const char *value, struct route *r, const char **err)
{
	const char *p = value, *key, *val;
	unsigned seen = 0; /* each key at most once */
	size_t klen, vlen, k;
	int rc;

	memset(r, 0, sizeof(*r));
	if (strlen(value) > ROUTE_TEXT_MAX) {
		*err = "too long";
		return -1;
	}
	while ((rc = next_pair(&p, &key, &klen, &val, &vlen)) > 0) {
		for (k = 0; k < K_COUNT; k++)
			if (klen == strlen(rkey_names[k]) && strncmp(key, rkey_names[k], klen) == 0)
				break;
		if (k == K_COUNT) {
			*err = "unknown key";
			return -1;
		}
		if (seen & (1u << k)) {
			*err = "a key given twice";
			return -1;
		}
		seen |= 1u << k;
		if (route_value(r, (enum rkey)k, val, vlen, err) < 0)
			return -1;
	}
	if (rc < 0) {
		*err = "expected key=value";
		return -1;
	}
	return route_complete(r, seen, err);
}

/* mac - hex HMAC-SHA-256 of the context, the sender and the canonical value */
static int
mac(const struct route *r, const struct addr *a, const struct route_key *key, char hex[65])
{
	char canon[ROUTE_TEXT_MAX], sender[ADDR_TEXT_MAX + 1] = "";
	struct addr folded;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	struct sbuf b;
	int n = route_format(r, canon, sizeof(canon)), rc = -1;

	if (n < 0)
		return -1;
	if (a != NULL && !addr_is_null(a)) {
		folded = *a;
		m3_lower(folded.domain);
		if (addr_format(&folded, sender, sizeof(sender)) < 0)
			return -1;
	}
	sbuf_init(&b, sizeof(MAC_CONTEXT) + ADDR_TEXT_MAX + 2 + (size_t)n);
	sbuf_adds(&b, MAC_CONTEXT "\n");
	sbuf_adds(&b, sender);
	sbuf_adds(&b, "\n");
	sbuf_add(&b, canon, (size_t)n);
	if (!b.failed &&
	    HMAC(EVP_sha256(), key->secret, (int)key->len, (const unsigned char *)b.s, b.len, md,
	         &len) != NULL &&
	    len == 32) {
		m3_hex(md, len, hex);
		rc = 0;
	}
	sbuf_free(&b);
	return rc;
}

int
route_sign(struct route *r, const char *qid, const struct addr *sender, const struct route_key *key,
           char *buf, size_t size)
{
	if (take(qid, strlen(qid), r->qid, sizeof(r->qid)) < 0)
		return -1;
	m3_strlcpy(r->kid, key->id, sizeof(r->kid));
	r->mac[0] = '\0';
	if (mac(r, sender, key, r->mac) < 0)
		return -1;
	return format(r, true, buf, size);
}

enum route_trust
route_verify(const struct route *r, const char *qid, const struct addr *sender,
             const struct route_key *keys, size_t n)
{
	char hex[65];
	size_t i;

	if (r->mac[0] == '\0')
		return ROUTE_UNSIGNED;
	for (i = 0; i < n; i++) {
		if (strcmp(keys[i].id, r->kid) != 0)
			continue;
		if (mac(r, sender, &keys[i], hex) < 0 || CRYPTO_memcmp(hex, r->mac, 64) != 0)
			return ROUTE_FORGED;
		return strcmp(r->qid, qid) == 0 ? ROUTE_TRUSTED : ROUTE_OTHER_QUEUE_ID;
	}
	return n == 0 ? ROUTE_UNSIGNED : ROUTE_UNKNOWN_KEY;
}

const char *
route_trust_text(enum route_trust t)
{
	switch (t) {
	case ROUTE_TRUSTED:
		return "signed by m365-milter for this message";
	case ROUTE_UNSIGNED:
		return "not signed, or no route_key_file to check it with";
	case ROUTE_UNKNOWN_KEY:
		return "signed with a key route_key_file does not hold";
	case ROUTE_FORGED:
		return "its signature does not verify (forged, or the sender was "
		       "rewritten after the milter)";
	case ROUTE_OTHER_QUEUE_ID:
		return "signed for another queue id (requeued, or re-injected by a "
		       "content filter)";
	}
	return "?";
}
