/*
 * route.c - format and parse the route header.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "route.h"
#include "util.h"

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

int
route_format(const struct route *r, char *buf, size_t size)
{
	int n = snprintf(buf, size,
			 "v=1; mode=%s; tenant=%s; domain=%s; submitter=%s%s%s%s%s",
			 mode_name(r->mode), r->tenant, r->domain, r->submitter,
			 r->mailbox[0] ? "; mailbox=" : "", r->mailbox,
			 r->connector[0] ? "; connector=" : "", r->connector);
	return n < 0 || (size_t)n >= size ? -1 : n;
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

int
route_parse(const char *value, struct route *r, const char **err)
{
	const char *p = value;
	int have_v = 0, have_mode = 0;

	memset(r, 0, sizeof(*r));
	while (*p != '\0') {
		const char *key, *val, *end;
		size_t klen, vlen;

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
		while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		vlen = (size_t)(end - val);
		if (*p == ';')
			p++;
#define KEY(s) (klen == sizeof(s) - 1 && strncmp(key, s, klen) == 0)
		if (KEY("v")) {
			if (vlen != 1 || val[0] != '1') {
				*err = "unknown route version";
				return -1;
			}
			have_v = 1;
		} else if (KEY("mode")) {
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
		} else if (KEY("tenant")) {
			if (take(val, vlen, r->tenant, sizeof(r->tenant)) < 0)
				goto bad;
		} else if (KEY("domain")) {
			if (take(val, vlen, r->domain, sizeof(r->domain)) < 0)
				goto bad;
		} else if (KEY("submitter")) {
			if (take(val, vlen, r->submitter, sizeof(r->submitter)) < 0)
				goto bad;
		} else if (KEY("mailbox")) {
			if (take(val, vlen, r->mailbox, sizeof(r->mailbox)) < 0)
				goto bad;
		} else if (KEY("connector")) {
			if (take(val, vlen, r->connector, sizeof(r->connector)) < 0)
				goto bad;
		} else {
			*err = "unknown key";
			return -1;
		}
#undef KEY
	}
	if (!have_v || !have_mode || r->domain[0] == '\0') {
		*err = "v, mode and domain are required";
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
	return 0;
bad:
	*err = "bad value";
	return -1;
}
