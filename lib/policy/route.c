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

int
route_parse(const char *value, struct route *r, const char **err)
{
	const char *p = value;
	unsigned seen = 0; /* each key at most once */
	int have_v = 0, have_mode = 0;

	memset(r, 0, sizeof(*r));
	if (strlen(value) > ROUTE_TEXT_MAX) {
		*err = "too long";
		return -1;
	}
	while (*p != '\0') {
		static const char *const keys[] = {"v",         "mode",    "tenant",    "domain",
		                                   "submitter", "mailbox", "connector", "qid",
		                                   "key",       "mac"};
		const char *key, *val, *end;
		size_t klen, vlen, k;
		int bad = 0;

		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p == '\0')
			break;
		key = p;
		while (*p != '\0' && *p != '=' && *p != ';')
			p++;
		if (*p != '=') {
			*err = "expected key=value";
			return -1;
		}
		klen = (size_t)(p - key);
		val = ++p;
		while (*p != '\0' && *p != ';')
			p++;
		end = p;
		while (end > val &&
		       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
			end--;
		vlen = (size_t)(end - val);
		if (*p == ';')
			p++;
		for (k = 0; k < NELEM(keys); k++)
			if (klen == strlen(keys[k]) && strncmp(key, keys[k], klen) == 0)
				break;
		if (k == NELEM(keys)) {
			*err = "unknown key";
			return -1;
		}
		if (seen & (1u << k)) {
			*err = "a key given twice";
			return -1;
		}
		seen |= 1u << k;
		switch (k) {
		case 0:
			if (vlen != 1 || val[0] != '2') {
				*err = "unknown route version";
				return -1;
			}
			have_v = 1;
			break;
		case 1:
			if (vlen == 9 && strncmp(val, "smtp-auth", 9) == 0)
				r->mode = MODE_SMTP_AUTH;
			else if (vlen == 11 && strncmp(val, "direct-send", 11) == 0)
				r->mode = MODE_DIRECT_SEND;
			else if (vlen == 5 && strncmp(val, "relay", 5) == 0)
				r->mode = MODE_RELAY;
			else {
				*err = "unknown mode";
				return -1;
			}
			have_mode = 1;
			break;
		case 2:
			bad = take(val, vlen, r->tenant, sizeof(r->tenant));
			break;
		case 3:
			bad = take(val, vlen, r->domain, sizeof(r->domain));
			break;
		case 4:
			bad = take(val, vlen, r->submitter, sizeof(r->submitter));
			break;
		case 5:
			bad = take(val, vlen, r->mailbox, sizeof(r->mailbox));
			break;
		case 6:
			bad = take(val, vlen, r->connector, sizeof(r->connector));
			break;
		case 7:
			bad = take(val, vlen, r->qid, sizeof(r->qid));
			break;
		case 8:
			bad = take_hex(val, vlen, ROUTE_KID_LEN, r->kid);
			break;
		case 9:
			bad = take_hex(val, vlen, 64, r->mac);
			break;
		}
		if (bad) {
			*err = "bad value";
			return -1;
		}
	}
	if (!have_v || !have_mode || r->domain[0] == '\0' || r->tenant[0] == '\0' ||
	    r->submitter[0] == '\0') {
		*err = "v, mode, tenant, domain and submitter are required";
		return -1;
	}
	if (r->mode == MODE_SMTP_AUTH && r->mailbox[0] == '\0') {
		*err = "smtp-auth needs a mailbox";
		return -1;
	}
	if (r->mode == MODE_RELAY && r->connector[0] == '\0') {
		*err = "relay needs a connector";
		return -1;
	}
	if ((r->mac[0] != '\0') != (r->kid[0] != '\0')) {
		*err = "key and mac go together";
		return -1;
	}
	return 0;
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
