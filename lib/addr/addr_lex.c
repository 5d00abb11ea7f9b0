/*
 * addr_lex.c - the cursor and the shared pieces of both address grammars
 * (addr_lex.h): errors with their offset, UTF-8, domains and address
 * literals, local parts in their canonical form.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr_lex.h"
#include "util/util.h"

int
ax_fail(struct cur *c, const char *msg)
{
	if (c->err != NULL) {
		c->err->off = (size_t)(c->p - c->base);
		c->err->code = ADDR_EMALFORMED;
		m3_strlcpy(c->err->msg, msg, sizeof(c->err->msg));
	}
	return -1;
}

int
ax_fail_char(struct cur *c, const char *what)
{
	char msg[96];

	if (c->p >= c->end)
		snprintf(msg, sizeof(msg), "%s: unexpected end", what);
	else if (*c->p >= 0x21 && *c->p < 0x7f)
		snprintf(msg, sizeof(msg), "%s: unexpected '%c'", what, *c->p);
	else
		snprintf(msg, sizeof(msg), "%s: unexpected byte 0x%02x", what, *c->p);
	return ax_fail(c, msg);
}

bool
ax_is_atext(int ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch > 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL;
}

/*
 * ax_utf8_step - if the cursor is at a non-ASCII byte, step over one valid
 * UTF-8 sequence and return its length; 0 if not at one; -1 if invalid.
 */
int
ax_utf8_step(struct cur *c)
{
	size_t n;

	if (c->p >= c->end || *c->p < 0x80)
		return 0;
	n = m3_utf8_seq(c->p, (size_t)(c->end - c->p));
	if (n == 0)
		return ax_fail(c, "invalid UTF-8");
	c->p += n;
	return (int)n;
}

int
ax_val_add(struct cur *c, struct val *v, const void *p, size_t n)
{
	if (v->len + n > v->cap)
		return ax_fail(c, v->toolong);
	memcpy(v->buf + v->len, p, n);
	v->len += n;
	v->buf[v->len] = '\0';
	return 0;
}

/* Domains (shared) ------------------------------------------------------ */

int
ax_parse_literal(struct cur *c, char *out)
{
	const unsigned char *start = c->p;
	char tmp[64];
	unsigned char bin[16];
	size_t n;

	c->p++; /* '[' */
	while (c->p < c->end && *c->p != ']') {
		if (*c->p < 0x21 || *c->p > 0x7e || *c->p == '[' || *c->p == '\\')
			return ax_fail_char(c, "address literal");
		c->p++;
	}
	if (c->p >= c->end)
		return ax_fail(c, "address literal: missing ']'");
	n = (size_t)(c->p - start - 1);
	if (n == 0 || n >= sizeof(tmp))
		return ax_fail(c, "address literal: bad length");
	memcpy(tmp, start + 1, n);
	tmp[n] = '\0';
	if (m3_ncasecmp(tmp, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, tmp + 5, bin) != 1)
			return ax_fail(c, "address literal: bad IPv6 address");
	} else if (inet_pton(AF_INET, tmp, bin) != 1) {
		return ax_fail(c, "address literal: not an IPv4 or IPv6: address");
	}
	c->p++; /* ']' */
	memcpy(out, start, n + 2);
	out[n + 2] = '\0';
	return 0;
}

/*
 * parse_domain_at - a domain name or address literal at the cursor.  Labels
 * are letters, digits, hyphens (not at either end) and UTF-8 (U-labels);
 * underscores are accepted because devices use them in host names.
 */
int
ax_parse_domain_at(struct cur *c, char *out)
{
	const unsigned char *start = c->p;
	size_t label = 0, total;
	int last = -1;

	if (ax_peek(c) == '[')
		return ax_parse_literal(c, out);
	for (;;) {
		int ch = ax_peek(c);
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_') {
			c->p++;
			label++;
		} else if (ch == '-') {
			if (label == 0)
				return ax_fail(c, "domain: label starts with '-'");
			c->p++;
			label++;
		} else if (ch >= 0x80) {
			int n = ax_utf8_step(c);
			if (n < 0)
				return -1;
			label += (size_t)n;
		} else if (ch == '.') {
			if (label == 0)
				return ax_fail(c, "domain: empty label");
			if (last == '-')
				return ax_fail(c, "domain: label ends with '-'");
			c->p++;
			label = 0;
		} else {
			break;
		}
		if (label > 63)
			return ax_fail(c, "domain: label longer than 63 octets");
		last = ch;
	}
	if (c->p == start)
		return ax_fail_char(c, "domain");
	if (label == 0)
		return ax_fail(c, last == '.' ? "domain: ends with '.'" : "domain: empty label");
	if (last == '-')
		return ax_fail(c, "domain: label ends with '-'");
	total = (size_t)(c->p - start);
	if (total > ADDR_DOMAIN_MAX)
		return ax_fail(c, "domain: longer than 255 octets");
	memcpy(out, start, total);
	out[total] = '\0';
	return 0;
}

int
addr_parse_domain(const char *s, size_t len, struct addr_err *err)
{
	struct cur c = {(const unsigned char *)s, (const unsigned char *)s,
	                (const unsigned char *)s + len, err, ""};
	char out[ADDR_DOMAIN_MAX + 1];

	if (ax_parse_domain_at(&c, out) < 0)
		return -1;
	if (c.p != c.end)
		return ax_fail_char(&c, "domain");
	return 0;
}

/* Local parts ------------------------------------------------------------ */

/* is_dot_atom - whether a local-part value can go on the wire unquoted */
bool
ax_is_dot_atom(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (ch >= 0x80) {
			size_t n = m3_utf8_seq((const unsigned char *)s + i, len - i);
			if (n == 0)
				return false;
			i += n - 1;
		} else if (!ax_is_atext(ch)) {
			return false;
		}
	}
	return true;
}

/* canon_local - the wire form of a local-part value: dot-atom, or quoted */
int
ax_canon_local(struct cur *c, const char *v, size_t len, char *out)
{
	size_t i, o = 0;

	if (len == 0)
		return ax_fail(c, "empty local part");
	for (i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return ax_fail(c, "control character in local part "
			                  "(cannot be sent over SMTP)");
	if (ax_is_dot_atom(v, len)) {
		if (len > ADDR_LOCAL_MAX)
			return ax_fail(c, "local part longer than 64 octets");
		memcpy(out, v, len);
		out[len] = '\0';
		return 0;
	}
	out[o++] = '"';
	for (i = 0; i < len; i++) {
		if (o + 3 > ADDR_LOCAL_MAX + 1)
			return ax_fail(c, "local part longer than 64 octets");
		if (v[i] == '"' || v[i] == '\\')
			out[o++] = '\\';
		out[o++] = v[i];
	}
	out[o++] = '"';
	if (o > ADDR_LOCAL_MAX)
		return ax_fail(c, "local part longer than 64 octets");
	out[o] = '\0';
	return 0;
}

/*
 * read_qstring - a quoted string at the cursor; its value (quoted pairs
 * undone, folds removed) is appended to v.  smtp selects RFC 5321's stricter
 * qtextSMTP (no folding, no tabs).
 */
int
ax_read_qstring(struct cur *c, struct val *v, bool smtp)
{
	c->p++; /* '"' */
	for (;;) {
		int ch = ax_peek(c);
		unsigned char b;
		if (ch < 0)
			return ax_fail(c, "quoted string: missing closing '\"'");
		if (ch == '"') {
			c->p++;
			return 0;
		}
		if (ch == '\\') {
			c->p++;
			ch = ax_peek(c);
			if (ch < 0x20 || ch == 0x7f) {
				if (!(ch == '\t' && !smtp))
					return ax_fail_char(c, "quoted pair");
			}
			if (ch >= 0x80)
				continue; /* a quoted UTF-8 character: taken next round */
			b = (unsigned char)ch;
			c->p++;
			if (ax_val_add(c, v, &b, 1) < 0)
				return -1;
			continue;
		}
		if (ch >= 0x80) {
			const unsigned char *s = c->p;
			if (ax_utf8_step(c) < 0)
				return -1;
			if (ax_val_add(c, v, s, (size_t)(c->p - s)) < 0)
				return -1;
			continue;
		}
		if (!smtp && (ch == '\r' || ch == '\n')) {
			c->p++; /* unfold */
			continue;
		}
		if (ch == '\t' && !smtp)
			ch = ' ';
		if (ch < 0x20 || ch == 0x7f)
			return ax_fail_char(c, "quoted string");
		b = (unsigned char)ch;
		c->p++;
		if (ax_val_add(c, v, &b, 1) < 0)
			return -1;
	}
}

/* read_atom - 1*atext (plus UTF-8) appended to v */
int
ax_read_atom(struct cur *c, struct val *v)
{
	const unsigned char *s = c->p;

	for (;;) {
		int ch = ax_peek(c);
		if (ch >= 0x80) {
			if (ax_utf8_step(c) < 0)
				return -1;
		} else if (ch >= 0 && ax_is_atext(ch)) {
			c->p++;
		} else {
			break;
		}
	}
	if (c->p == s)
		return ax_fail_char(c, "address");
	return ax_val_add(c, v, s, (size_t)(c->p - s));
}
